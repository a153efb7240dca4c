//! The webhook parsers and signature checks against hostile and odd input: they must never
//! panic, whatever the bytes, and a signature must bind the exact body. Case counts are bounded
//! so the whole file runs in a few seconds in a debug build.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchboard::gateway::channels::{SignatureError, line, twilio};
use switchboard::gateway::model::event::{Attachment, EventKind, InboundEvent, Message};
use switchboard::signing;

const RECEIVED: i64 = 1_700_000_000_000;

/// Bounded cases; no regression files, which proptest cannot place beside an integration test
/// (a failure prints its minimal input instead).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A string from a list that matters to the parser, or anything.
fn one_of_or_any(known: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(known).prop_map(Value::from),
        1 => any_json(),
    ]
}

const EVENT_TYPES: &[&str] = &[
    "message", "unsend", "follow", "unfollow", "join", "leave", "memberJoined", "memberLeft", "postback", "videoPlayComplete", "beacon",
    "accountLink", "membership", "module", "activated", "deactivated", "botSuspended", "botResumed", "delivery", "somethingNew",
];
const MESSAGE_TYPES: &[&str] = &["text", "image", "video", "audio", "file", "location", "sticker", "hologram"];
const MESSAGE_FIELDS: &[&str] = &[
    "text", "contentProvider", "fileName", "fileSize", "title", "address", "latitude", "longitude", "packageId", "stickerId", "keywords",
    "duration", "quoteToken",
];

/// A field value that is usually the right type for `field` and sometimes anything.
fn message_field(field: &'static str) -> BoxedStrategy<Value> {
    let right: BoxedStrategy<Value> = match field {
        "contentProvider" => (prop::sample::select(&["line", "external", ""][..]), ".{0,10}")
            .prop_map(|(t, url)| json!({"type": t, "originalContentUrl": url}))
            .boxed(),
        "fileSize" | "duration" => any::<i64>().prop_map(Value::from).boxed(),
        "latitude" | "longitude" => any::<f64>().prop_map(Value::from).boxed(),
        "keywords" => prop::collection::vec(".{0,5}", 0..3).prop_map(|k| json!(k)).boxed(),
        _ => ".{0,10}".prop_map(Value::String).boxed(),
    };
    prop_oneof![3 => right, 1 => any_json()].boxed()
}

/// A plausible message object with some fields of the wrong type.
fn message_object() -> impl Strategy<Value = Value> {
    let fields = prop::sample::subsequence(MESSAGE_FIELDS, 0..=MESSAGE_FIELDS.len())
        .prop_flat_map(|names| names.into_iter().map(|name| message_field(name).prop_map(move |v| (name, v))).collect::<Vec<_>>());
    (one_of_or_any(MESSAGE_TYPES), prop_oneof![3 => "[0-9]{1,6}".prop_map(Value::String), 1 => any_json()], fields).prop_map(
        |(message_type, id, fields)| {
            let mut object: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            object.insert("type".into(), message_type);
            object.insert("id".into(), id);
            Value::Object(object)
        },
    )
}

/// A plausible event: each field present or not, usually of the right type.
fn event_object() -> impl Strategy<Value = Value> {
    let id = prop_oneof![8 => "[0-9A-Z]{26}".prop_map(Value::String), 1 => any_json()];
    let source = prop_oneof![
        3 => (prop::sample::select(&["user", "group", "room"][..]), prop::option::of("U[0-9a-f]{4}"))
            .prop_map(|(t, user)| json!({"type": t, "userId": user, "groupId": "C1"})),
        1 => any_json(),
    ];
    let timestamp = prop_oneof![3 => any::<i64>().prop_map(Value::from), 1 => any_json()];
    // The type and what goes with it are drawn together, so that most message and postback
    // events have a body to read and some have a body that does not fit their type.
    let typed = prop_oneof![
        4 => prop::option::weighted(0.9, message_object()).prop_map(|m| (json!("message"), m.map(|m| ("message", m)))),
        1 => prop_oneof![".{0,10}".prop_map(|d| json!({"data": d})), any_json()].prop_map(|p| (json!("postback"), Some(("postback", p)))),
        2 => one_of_or_any(EVENT_TYPES).prop_map(|t| (t, None)),
        1 => (one_of_or_any(EVENT_TYPES), any_json()).prop_map(|(t, v)| (t, Some(("message", v)))),
    ];
    (typed, prop::option::weighted(0.95, id), prop::option::of(source), prop::option::of(timestamp), prop::option::of(".{0,8}"))
        .prop_map(|((event_type, body), id, source, timestamp, reply_token)| {
            let mut event = Map::new();
            event.insert("type".into(), event_type);
            event.insert("mode".into(), json!("active"));
            let fields = [("webhookEventId", id), ("source", source), ("timestamp", timestamp), ("replyToken", reply_token.map(Value::from))];
            event.extend(fields.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))));
            if let Some((key, value)) = body {
                event.insert(key.into(), value);
            }
            Value::Object(event)
        })
}

const FORM_KEYS: &[&str] = &[
    "MessageSid", "From", "To", "Body", "ProfileName", "NumMedia", "MediaUrl0", "MediaUrl1", "MediaUrl2", "MediaUrl9", "MediaUrl10",
    "MediaContentType0", "MediaContentType1", "MediaContentType2", "Latitude", "Longitude", "Address", "Label", "ButtonPayload", "ButtonText",
];

const CONTENT_TYPES: &[&str] = &["image/jpeg", "video/mp4", "audio/ogg", "application/pdf", ""];

/// Form pairs drawn mostly from the parameters Twilio sends, with values that are sometimes apt.
fn form_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![4 => prop::sample::select(FORM_KEYS).prop_map(str::to_owned), 1 => ".{0,10}"];
    let value = prop_oneof![
        "[0-9]{1,2}",
        "whatsapp:\\+[0-9]{1,16}",
        prop::sample::select(CONTENT_TYPES).prop_map(str::to_owned),
        ".{0,16}",
    ];
    // The required parameters and a consistent set of media usually come first, so that most
    // cases get past them; the random pairs after them can still contradict them.
    let required = prop::option::weighted(0.8, ("SM[0-9a-f]{4}", "whatsapp:\\+[0-9]{1,16}", "whatsapp:\\+[0-9]{1,16}"));
    let media = prop::option::weighted(0.5, prop::collection::vec((".{0,12}", prop::sample::select(CONTENT_TYPES)), 0..=4));
    (required, media, prop::collection::vec((key, value), 0..16)).prop_map(|(required, media, random)| {
        let mut pairs = Vec::new();
        if let Some((sid, from, to)) = required {
            pairs.extend([("MessageSid".to_owned(), sid), ("From".to_owned(), from), ("To".to_owned(), to)]);
        }
        if let Some(media) = media {
            pairs.push(("NumMedia".to_owned(), media.len().to_string()));
            for (index, (url, content_type)) in media.into_iter().enumerate() {
                pairs.extend([(format!("MediaUrl{index}"), url), (format!("MediaContentType{index}"), content_type.to_owned())]);
            }
        }
        pairs.extend(random);
        pairs
    })
}

fn form_body(pairs: &[(String, String)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
}

fn decoded(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn message(event: &InboundEvent) -> &Message {
    match &event.kind {
        EventKind::Message(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn nothing_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256), header in prop::option::of(".{0,40}"),
                                         url in ".{0,40}", json_body in any::<bool>()) {
        let _ = line::webhook::parse(&body, RECEIVED);
        let _ = twilio::webhook::parse_form(&body, RECEIVED);
        let _ = twilio::webhook::parse_json(&body, RECEIVED);
        let _ = line::signature::verify("secret", &body, header.as_deref());
        let _ = twilio::signature::verify("token", &url, &body, json_body, header.as_deref());
        let _ = twilio::signature::verify("token", &format!("https://{url}"), &body, json_body, header.as_deref());
    }

    #[test]
    fn nothing_panics_on_arbitrary_json(value in any_json()) {
        let body = value.to_string().into_bytes();
        let _ = line::webhook::parse(&body, RECEIVED);
        let _ = twilio::webhook::parse_json(&body, RECEIVED);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn line_bodies_keep_every_event_with_an_id(events in prop::collection::vec(event_object(), 0..6)) {
        let body = json!({"destination": "U0123456789abcdef0123456789abcdef", "events": events}).to_string();
        let all_have_ids = events.iter().all(|e| e.get("webhookEventId").is_some_and(Value::is_string));
        match line::webhook::parse(body.as_bytes(), RECEIVED) {
            Ok(parsed) => {
                prop_assert!(all_have_ids);
                prop_assert_eq!(parsed.events.len(), events.len());
                for (event, raw) in parsed.events.iter().zip(&events) {
                    prop_assert_eq!(Some(event.provider_event_id.as_str()), raw.get("webhookEventId").and_then(Value::as_str));
                    if let EventKind::Message(m) = &event.kind {
                        prop_assert!(m.attachments.len() <= 1);
                    }
                }
            }
            Err(line::webhook::ParseError::MissingEventId { index }) => prop_assert!(!events[index].get("webhookEventId").is_some_and(Value::is_string)),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn twilio_params_parse_or_fail_cleanly(pairs in form_pairs()) {
        let form = twilio::webhook::parse_form(&form_body(&pairs), RECEIVED);
        let object: Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        let _ = twilio::webhook::parse_json(Value::Object(object).to_string().as_bytes(), RECEIVED);
        if let Ok(event) = form {
            let announced = pairs.iter().find(|(k, _)| k == "NumMedia").map_or(0, |(_, v)| v.trim().parse::<usize>().unwrap_or(0));
            prop_assert_eq!(message(&event).attachments.len(), announced);
            prop_assert!(announced <= twilio::webhook::MAX_MEDIA);
        }
    }

    #[test]
    fn a_line_signature_binds_every_byte(body in prop::collection::vec(any::<u8>(), 1..200), secret in ".{1,20}",
                                         index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let signature = signing::line_signature(&secret, &body);
        prop_assert_eq!(line::signature::verify(&secret, &body, Some(&signature)), Ok(()));
        let mut tampered = body.clone();
        tampered[index.index(body.len())] ^= flip;
        prop_assert_eq!(line::signature::verify(&secret, &tampered, Some(&signature)), Err(SignatureError::Invalid));
    }

    #[test]
    fn a_twilio_json_signature_binds_every_byte(body in prop::collection::vec(any::<u8>(), 1..200), token in ".{1,20}",
                                                with_port in any::<bool>(), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let signed_url = format!("https://gw.example.com{}/hook?bodySHA256={}", if with_port { ":443" } else { "" }, signing::body_sha256_hex(&body));
        let requested = format!("https://gw.example.com/hook?bodySHA256={}", signing::body_sha256_hex(&body));
        let signature = signing::twilio_signature(&token, &signed_url, &[]);
        prop_assert_eq!(twilio::signature::verify(&token, &requested, &body, true, Some(&signature)), Ok(()));
        let mut tampered = body.clone();
        tampered[index.index(body.len())] ^= flip;
        prop_assert_eq!(twilio::signature::verify(&token, &requested, &tampered, true, Some(&signature)), Err(SignatureError::Invalid));
    }

    /// Twilio signs the decoded parameters, not the bytes: a change that decodes the same (`+`
    /// for a space, two invalid UTF-8 bytes) still verifies, and any other change fails.
    #[test]
    fn a_twilio_form_signature_binds_the_parameters(pairs in form_pairs(), token in ".{1,20}", index in any::<prop::sample::Index>(),
                                                    flip in 1u8..=255) {
        let url = "https://gw.example.com/switchboard/ns/acct/webhook?x=%2F";
        let body = form_body(&pairs);
        let signature = signing::twilio_signature(&token, url, &decoded(&body));
        prop_assert_eq!(twilio::signature::verify(&token, url, &body, false, Some(&signature)), Ok(()));
        prop_assume!(!body.is_empty());
        let mut tampered = body.clone();
        tampered[index.index(body.len())] ^= flip;
        // The verifier also tries the received pairs without exact duplicates (twilio-node's way).
        let same_params = {
            let (mut signed, mut received) = (decoded(&body), decoded(&tampered));
            signed.sort();
            received.sort();
            signed == received || {
                received.dedup();
                signed == received
            }
        };
        let expected = if same_params { Ok(()) } else { Err(SignatureError::Invalid) };
        prop_assert_eq!(twilio::signature::verify(&token, url, &tampered, false, Some(&signature)), expected);
    }
}

#[test]
fn a_realistic_line_body_with_every_message_type() {
    let source = json!({"type": "user", "userId": "U4af4980629a1b2c3d4e5f6a7b8c9d0e1"});
    let event = |id: &str, extra: Value| {
        let mut event = json!({
            "mode": "active", "timestamp": 1_625_665_242_211_i64, "source": source, "webhookEventId": id,
            "deliveryContext": {"isRedelivery": false},
        });
        if let (Some(event), Value::Object(extra)) = (event.as_object_mut(), extra) {
            event.extend(extra);
        }
        event
    };
    let message_event = |id: &str, message: Value| event(id, json!({"type": "message", "replyToken": format!("rt-{id}"), "message": message}));
    let body = json!({
        "destination": "Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "events": [
            message_event("E01", json!({"type": "text", "id": "468789577898262530", "quoteToken": "q1", "text": "@example Hello, world! (love)",
                "emojis": [{"index": 23, "length": 6, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"}],
                "mention": {"mentionees": [{"index": 0, "length": 8, "type": "user", "userId": "U49585cd0d5"}]}})),
            message_event("E02", json!({"type": "image", "id": "354718705033693859", "quoteToken": "q2", "contentProvider": {"type": "line"},
                "imageSet": {"id": "E005D41A7288F41B65593ED38FF6E9834B046AB36A37921A56BC236F13A91855", "index": 1, "total": 2}})),
            message_event("E03", json!({"type": "image", "id": "354718705033693861", "quoteToken": "q3",
                "contentProvider": {"type": "external", "originalContentUrl": "https://example.com/original.jpg", "previewImageUrl": "https://example.com/preview.jpg"}})),
            message_event("E04", json!({"type": "video", "id": "325708", "quoteToken": "q4", "duration": 60000, "contentProvider": {"type": "line"}})),
            message_event("E05", json!({"type": "audio", "id": "325709", "duration": 60000,
                "contentProvider": {"type": "external", "originalContentUrl": "https://example.com/a.m4a"}})),
            message_event("E06", json!({"type": "file", "id": "325710", "fileName": "file.txt", "fileSize": 2138})),
            message_event("E07", json!({"type": "location", "id": "325711", "title": "my location", "address": "1-3 Kioicho, Chiyoda-ku, Tokyo",
                "latitude": 35.67966, "longitude": 139.73669})),
            message_event("E08", json!({"type": "sticker", "id": "1501597916", "quoteToken": "q8", "stickerId": "52002738", "packageId": "11537",
                "stickerResourceType": "ANIMATION", "keywords": ["cony", "sally", "Staring", "hi"]})),
            message_event("E09", json!({"type": "hologram", "id": "325713", "depth": 3})),
            event("E10", json!({"type": "follow", "replyToken": "rt-follow", "follow": {"isUnblocked": false}})),
            event("E11", json!({"type": "unfollow"})),
            event("E12", json!({"type": "postback", "replyToken": "rt-pb", "postback": {"data": "storeId=12345", "params": {"datetime": "2017-12-25T01:00"}}})),
            event("E13", json!({"type": "join", "replyToken": "rt-join", "source": {"type": "group", "groupId": "Ca56f94637c"}})),
            event("E14", json!({"type": "unsend", "unsend": {"messageId": "325708"}})),
            event("E15", json!({"type": "videoPlayComplete", "replyToken": "rt-v", "videoPlayComplete": {"trackingId": "track-id"}})),
            event("E16", json!({"type": "memberJoined", "source": {"type": "group", "groupId": "C4af"}, "joined": {"members": [{"type": "user", "userId": "U4af"}]}})),
            event("E17", json!({"type": "delivery", "delivery": {"data": "pnp"}})),
        ],
    });
    let parsed = line::webhook::parse(body.to_string().as_bytes(), RECEIVED).expect("parses");
    assert_eq!(parsed.destination, "Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    let ids: Vec<&str> = parsed.events.iter().map(|e| e.provider_event_id.as_str()).collect();
    assert_eq!(ids, (1..=17).map(|n| format!("E{n:02}")).collect::<Vec<_>>());
    assert!(parsed.events.iter().all(|e| e.timestamp_ms == 1_625_665_242_211));

    let messages: Vec<&Message> = parsed.events[..9].iter().map(message).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.message_type.as_str()).collect();
    assert_eq!(types, ["text", "image", "image", "video", "audio", "file", "location", "sticker", "hologram"]);
    assert_eq!(messages[0].text.as_deref(), Some("@example Hello, world! (love)"));
    assert!(messages[0].details.as_ref().is_some_and(|d| d.get("mention").is_some() && d.get("emojis").is_some()));
    assert_eq!(messages[1].attachments, [Attachment::default()]);
    assert_eq!(messages[1].details.as_ref().and_then(|d| d.pointer("/imageSet/total")), Some(&json!(2)));
    assert_eq!(messages[2].attachments[0].url.as_deref(), Some("https://example.com/original.jpg"));
    assert_eq!(messages[3].attachments, [Attachment::default()]);
    assert_eq!(messages[4].attachments[0].url.as_deref(), Some("https://example.com/a.m4a"));
    assert_eq!(messages[5].attachments, [Attachment { file_name: Some("file.txt".into()), size: Some(2138), ..Attachment::default() }]);
    assert_eq!(messages[6].text.as_deref(), Some("my location, 1-3 Kioicho, Chiyoda-ku, Tokyo"));
    assert_eq!(messages[6].details.as_ref().and_then(|d| d.get("longitude")), Some(&json!(139.73669)));
    assert!(messages[7].attachments.is_empty());
    assert_eq!(messages[7].details.as_ref().and_then(|d| d.get("stickerId")), Some(&json!("52002738")));
    assert_eq!(messages[8].details, Some(json!({"type": "hologram", "id": "325713", "depth": 3})));
    assert!(messages.iter().all(|m| !m.id.is_empty()));
    assert_eq!(parsed.events[0].reply_token.as_deref(), Some("rt-E01"));
    assert_eq!(parsed.events[0].customer.as_ref().map(|c| c.id.as_str()), Some("U4af4980629a1b2c3d4e5f6a7b8c9d0e1"));

    assert_eq!(parsed.events[9].kind, EventKind::Follow);
    assert_eq!(parsed.events[9].reply_token.as_deref(), Some("rt-follow"));
    assert_eq!(parsed.events[10].kind, EventKind::Unfollow);
    assert_eq!(parsed.events[11].kind, EventKind::Postback { data: "storeId=12345".into() });
    let others: Vec<&str> = parsed.events[12..]
        .iter()
        .map(|e| match &e.kind {
            EventKind::Other { event_type, raw } => {
                assert_eq!(raw.get("webhookEventId").and_then(Value::as_str), Some(e.provider_event_id.as_str()));
                event_type.as_str()
            }
            other => panic!("not other: {other:?}"),
        })
        .collect();
    assert_eq!(others, ["join", "unsend", "videoPlayComplete", "memberJoined", "delivery"]);
    assert_eq!(parsed.events[12].customer, None, "a group without a user has no customer");
}

#[test]
fn a_twilio_form_with_three_attachments_keeps_them_in_order() {
    let pairs: Vec<(String, String)> = [
        ("SmsMessageSid", "MM0123456789abcdef0123456789abcdef"),
        ("NumMedia", "3"),
        ("ProfileName", "Grace"),
        ("MediaContentType2", "application/pdf"),
        ("MediaUrl2", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME3"),
        ("MediaContentType0", "image/jpeg"),
        ("MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"),
        ("MediaContentType1", "image/png"),
        ("MediaUrl1", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2"),
        ("WaId", "15555550123"),
        ("SmsStatus", "received"),
        ("Body", "the receipts"),
        ("To", "whatsapp:+15555550100"),
        ("NumSegments", "1"),
        ("MessageSid", "MM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "whatsapp:+15555550123"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let body = form_body(&pairs);
    let url = "https://gw.example.com/switchboard/support/whatsapp/webhook";
    let signature = signing::twilio_signature("token", url, &pairs);
    assert_eq!(twilio::signature::verify("token", url, &body, false, Some(&signature)), Ok(()));

    let event = twilio::webhook::parse_form(&body, RECEIVED).expect("parses");
    assert_eq!(event.provider_event_id, "MM0123456789abcdef0123456789abcdef");
    assert_eq!(event.customer.as_ref().and_then(|c| c.display_name.as_deref()), Some("Grace"));
    let message = message(&event);
    assert_eq!(message.message_type, "image");
    assert_eq!(message.text.as_deref(), Some("the receipts"));
    let media: Vec<(&str, &str)> =
        message.attachments.iter().map(|a| (a.url.as_deref().unwrap_or_default(), a.content_type.as_deref().unwrap_or_default())).collect();
    assert_eq!(
        media,
        [
            ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", "image/jpeg"),
            ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2", "image/png"),
            ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME3", "application/pdf"),
        ]
    );
}
