//! Parses a LINE webhook body (`CallbackRequest` in LINE's webhook.yml) into inbound events.
//!
//! Only the envelope is strict: the body must be an object with a string `destination` and an
//! array `events`, and every event an object with a string `webhookEventId`, because an event
//! that cannot be told apart from its redelivery cannot be recorded safely. Anything else an
//! event holds is read leniently: an event whose fields have unexpected types, or a message
//! event without a usable message, becomes [`EventKind::Other`] with the event kept as
//! received, so one odd event never makes LINE redeliver the whole batch.
//!
//! Events in `standby` mode (another channel owns the chat) are parsed like any other; whether
//! to act on them is the processor's decision, made from the stored raw event if needed.
//!
//! A message's `details` hold the message object as received minus `id` and `type` (and a text
//! message's `text`), so that the desk gets every field (quote tokens, emojis, mentions, image
//! sets, durations, coordinates, sticker IDs) without this module choosing among them. A type
//! this build does not know keeps the whole message object.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::gateway::model::event::{Attachment, Customer, EventKind, InboundEvent, Message};

/// A parsed webhook body.
#[derive(Clone, Debug, PartialEq)]
pub struct LineWebhook {
    /// The bot user ID the events were sent to.
    pub destination: String,
    /// The events, in the order LINE listed them; empty for LINE's connectivity check.
    pub events: Vec<InboundEvent>,
}

/// Why a body was refused (the gateway answers 400 with the message). Messages name positions
/// and fields, never echo the input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON but not a webhook envelope.
    #[error("the body must be a JSON object with a string `destination` and an array `events`")]
    Envelope,
    /// An event is not a JSON object.
    #[error("event {index} is not a JSON object")]
    EventNotObject {
        /// The event's position in `events`, from 0.
        index: usize,
    },
    /// An event has no ID to deduplicate it by.
    #[error("event {index} has no string `webhookEventId`")]
    MissingEventId {
        /// The event's position in `events`, from 0.
        index: usize,
    },
}

/// Parses a webhook body. `received_ms` stands in for an event's `timestamp` when it has none.
pub fn parse(body: &[u8], received_ms: i64) -> Result<LineWebhook, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let Value::Object(mut envelope) = value else { return Err(ParseError::Envelope) };
    let Some(Value::String(destination)) = envelope.remove("destination") else { return Err(ParseError::Envelope) };
    let Some(Value::Array(events)) = envelope.remove("events") else { return Err(ParseError::Envelope) };
    let events = events.into_iter().enumerate().map(|(index, event)| parse_event(index, event, received_ms)).collect::<Result<_, _>>()?;
    Ok(LineWebhook { destination, events })
}

/// Parses one event; only a missing object or ID is an error.
fn parse_event(index: usize, event: Value, received_ms: i64) -> Result<InboundEvent, ParseError> {
    let Value::Object(fields) = &event else { return Err(ParseError::EventNotObject { index }) };
    let provider_event_id = str_field(fields, "webhookEventId").ok_or(ParseError::MissingEventId { index })?.to_owned();
    let timestamp_ms = fields.get("timestamp").and_then(Value::as_i64).unwrap_or(received_ms);
    // Group and room events carry the user only for messages; without one there is no single
    // customer to attach the event to.
    let customer = fields
        .get("source")
        .and_then(Value::as_object)
        .and_then(|source| non_empty(source, "userId"))
        .map(|id| Customer { id: id.to_owned(), ..Customer::default() });
    let reply_token = non_empty(fields, "replyToken").map(str::to_owned);
    let event_type = str_field(fields, "type").unwrap_or_default();
    let kind = match event_type {
        "message" => fields.get("message").and_then(Value::as_object).and_then(parse_message).map(EventKind::Message),
        "follow" => Some(EventKind::Follow),
        "unfollow" => Some(EventKind::Unfollow),
        "postback" => {
            fields.get("postback").and_then(|p| p.get("data")).and_then(Value::as_str).map(|data| EventKind::Postback { data: data.to_owned() })
        }
        _ => None,
    };
    let kind = kind.unwrap_or_else(|| EventKind::Other { event_type: event_type.to_owned(), raw: event.clone() });
    Ok(InboundEvent { provider_event_id, timestamp_ms, customer, to: None, reply_token, kind })
}

/// The message of a message event; `None` when it has no string `id` and `type`.
fn parse_message(message: &Map<String, Value>) -> Option<Message> {
    let id = str_field(message, "id")?.to_owned();
    let message_type = str_field(message, "type")?.to_owned();
    let mut details = message.clone();
    details.remove("id");
    details.remove("type");
    // The gateway marks messages as read itself (the agent API's read call), so the token is
    // kept apart from what the desk gets as details.
    let read_token = details.remove("markAsReadToken").and_then(|t| t.as_str().filter(|t| !t.trim().is_empty()).map(str::to_owned));
    let (text, attachments) = match message_type.as_str() {
        "text" => (details.remove("text").and_then(|t| t.as_str().map(str::to_owned)), Vec::new()),
        "image" | "video" | "audio" => (None, vec![content_attachment(message)]),
        "file" => {
            let attachment = Attachment {
                file_name: non_empty(message, "fileName").map(str::to_owned),
                size: message.get("fileSize").and_then(size),
                ..content_attachment(message)
            };
            (None, vec![attachment])
        }
        "location" => (location_text(message), Vec::new()),
        // A message sticker carries the text the customer typed on it.
        "sticker" => (non_empty(message, "text").map(str::to_owned), Vec::new()),
        _ => {
            let mut details = message.clone();
            details.remove("markAsReadToken");
            return Some(Message { id, message_type, details: Some(Value::Object(details)), read_token, ..Message::default() });
        }
    };
    let details = (!details.is_empty()).then_some(Value::Object(details));
    Some(Message { id, message_type, text, attachments, details, read_token, ..Message::default() })
}

/// The attachment of a media message: the content is behind LINE's content API unless an
/// external provider hosts it.
fn content_attachment(message: &Map<String, Value>) -> Attachment {
    let provider = message.get("contentProvider").and_then(Value::as_object);
    let url = provider.filter(|p| str_field(p, "type") == Some("external")).and_then(|p| non_empty(p, "originalContentUrl")).map(str::to_owned);
    Attachment { url, ..Attachment::default() }
}

/// A file size: a number in the spec, a string in some older payloads.
fn size(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A readable form of a location for agents and routing rules: "title, address", or the
/// coordinates when neither is given.
fn location_text(message: &Map<String, Value>) -> Option<String> {
    let named: Vec<&str> = ["title", "address"].iter().filter_map(|key| non_empty(message, key)).collect();
    if !named.is_empty() {
        return Some(named.join(", "));
    }
    let latitude = message.get("latitude").and_then(Value::as_f64)?;
    let longitude = message.get("longitude").and_then(Value::as_f64)?;
    Some(format!("{latitude}, {longitude}"))
}

/// A string field.
fn str_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// A string field that is not empty.
fn non_empty<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    str_field(object, key).filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RECEIVED: i64 = 1_700_000_000_000;

    fn parse_value(body: Value) -> Result<LineWebhook, ParseError> {
        parse(body.to_string().as_bytes(), RECEIVED)
    }

    fn line_event(extra: Value) -> Value {
        let mut event = json!({
            "mode": "active",
            "timestamp": 1_692_251_666_727_i64,
            "source": {"type": "user", "userId": "U4af4980629"},
            "webhookEventId": "01H810YECXQQZ37VAXPF6H9E6T",
            "deliveryContext": {"isRedelivery": false},
        });
        if let (Some(event), Value::Object(extra)) = (event.as_object_mut(), extra) {
            event.extend(extra);
        }
        event
    }

    fn only_event(extra: Value) -> InboundEvent {
        let mut parsed = parse_value(json!({"destination": "Uxxx", "events": [line_event(extra)]})).expect("parses");
        assert_eq!(parsed.events.len(), 1);
        parsed.events.remove(0)
    }

    fn message(message: Value) -> Message {
        match only_event(json!({"type": "message", "replyToken": "rt", "message": message})).kind {
            EventKind::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn an_empty_event_list_is_the_connectivity_check() {
        let parsed = parse(br#"{"destination":"U0123456789abcdef0123456789abcdef","events":[]}"#, RECEIVED).expect("parses");
        assert_eq!(parsed, LineWebhook { destination: "U0123456789abcdef0123456789abcdef".into(), events: vec![] });
    }

    #[test]
    fn the_envelope_is_strict() {
        assert!(matches!(parse(b"", RECEIVED), Err(ParseError::Json(_))));
        assert!(matches!(parse(b"{", RECEIVED), Err(ParseError::Json(_))));
        for body in [json!([]), json!("x"), json!({}), json!({"destination": 1, "events": []}), json!({"destination": "U", "events": {}})] {
            assert_eq!(parse_value(body), Err(ParseError::Envelope));
        }
        assert_eq!(parse_value(json!({"destination": "U", "events": [line_event(json!({"type": "follow"})), 3]})), Err(ParseError::EventNotObject { index: 1 }));
        assert_eq!(
            parse_value(json!({"destination": "U", "events": [{"type": "follow", "webhookEventId": 7}]})),
            Err(ParseError::MissingEventId { index: 0 })
        );
    }

    #[test]
    fn common_fields() {
        let event = only_event(json!({"type": "follow", "replyToken": "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA", "follow": {"isUnblocked": false}}));
        assert_eq!(event.provider_event_id, "01H810YECXQQZ37VAXPF6H9E6T");
        assert_eq!(event.timestamp_ms, 1_692_251_666_727);
        assert_eq!(event.customer, Some(Customer { id: "U4af4980629".into(), ..Customer::default() }));
        assert_eq!(event.reply_token.as_deref(), Some("nHuyWiB7yP5Zw52FIkcQobQuGDXCTA"));
        assert_eq!(event.to, None);
        assert_eq!(event.kind, EventKind::Follow);

        // Missing or odd timestamps fall back to the time received; a group without a user has
        // no customer.
        let event = only_event(json!({"type": "join", "timestamp": "soon", "source": {"type": "group", "groupId": "Ca56f9"}}));
        assert_eq!(event.timestamp_ms, RECEIVED);
        assert_eq!(event.customer, None);
        assert!(matches!(event.kind, EventKind::Other { ref event_type, .. } if event_type == "join"));
        let event = only_event(json!({"type": "unfollow", "mode": "standby", "source": {"type": "room", "roomId": "R1", "userId": "U2"}}));
        assert_eq!(event.customer.map(|c| c.id), Some("U2".to_owned()));
        assert_eq!(event.kind, EventKind::Unfollow);
    }

    #[test]
    fn message_types() {
        let text = message(json!({"id": "1", "type": "text", "text": "Hello", "quoteToken": "q1", "emojis": []}));
        assert_eq!((text.id.as_str(), text.message_type.as_str(), text.text.as_deref()), ("1", "text", Some("Hello")));
        assert!(text.attachments.is_empty());
        assert_eq!(text.details, Some(json!({"quoteToken": "q1", "emojis": []})));

        let image = message(json!({"id": "2", "type": "image", "contentProvider": {"type": "line"}, "quoteToken": "q2"}));
        assert_eq!(image.attachments, vec![Attachment::default()]);
        let external = message(json!({"id": "3", "type": "image", "contentProvider": {"type": "external", "originalContentUrl": "https://e/x.jpg", "previewImageUrl": "https://e/p.jpg"}}));
        assert_eq!(external.attachments[0].url.as_deref(), Some("https://e/x.jpg"));

        let video = message(json!({"id": "4", "type": "video", "duration": 60000, "contentProvider": {"type": "line"}}));
        assert_eq!((video.message_type.as_str(), video.attachments.len()), ("video", 1));
        assert_eq!(video.details.as_ref().and_then(|d| d.get("duration")), Some(&json!(60000)));

        let file = message(json!({"id": "5", "type": "file", "fileName": "report.pdf", "fileSize": 2138}));
        assert_eq!(file.attachments, vec![Attachment { file_name: Some("report.pdf".into()), size: Some(2138), ..Attachment::default() }]);
        let old_file = message(json!({"id": "5", "type": "file", "fileName": "a", "fileSize": "12"}));
        assert_eq!(old_file.attachments[0].size, Some(12));

        let location = message(json!({"id": "6", "type": "location", "title": "my location", "address": "Tokyo", "latitude": 35.65910807942215, "longitude": 139.70372892916203}));
        assert_eq!(location.text.as_deref(), Some("my location, Tokyo"));
        assert_eq!(location.details.as_ref().and_then(|d| d.get("latitude")), Some(&json!(35.65910807942215)));
        let bare = message(json!({"id": "6", "type": "location", "latitude": 1.5, "longitude": -2.0}));
        assert_eq!(bare.text.as_deref(), Some("1.5, -2"));

        let sticker = message(json!({"id": "7", "type": "sticker", "packageId": "1", "stickerId": "1", "stickerResourceType": "STATIC", "keywords": ["hi"]}));
        assert_eq!(sticker.text, None);
        assert_eq!(sticker.details.as_ref().and_then(|d| d.get("keywords")), Some(&json!(["hi"])));

        let unknown = json!({"id": "8", "type": "hologram", "depth": 3});
        assert_eq!(message(unknown.clone()), Message { id: "8".into(), message_type: "hologram".into(), details: Some(unknown), ..Message::default() });
    }

    #[test]
    fn the_mark_as_read_token_is_kept_apart_from_the_details() {
        let text = message(json!({"id": "1", "type": "text", "text": "Hi", "quoteToken": "q1", "markAsReadToken": "30yhdy232"}));
        assert_eq!(text.read_token.as_deref(), Some("30yhdy232"));
        assert_eq!(text.details, Some(json!({"quoteToken": "q1"})));
        let unknown = message(json!({"id": "8", "type": "hologram", "markAsReadToken": "m8"}));
        assert_eq!((unknown.read_token.as_deref(), unknown.details), (Some("m8"), Some(json!({"id": "8", "type": "hologram"}))));
        // Chat off in the Official Account Manager: LINE sends no token.
        assert_eq!(message(json!({"id": "2", "type": "text", "text": "Hi"})).read_token, None);
        assert_eq!(message(json!({"id": "3", "type": "sticker", "packageId": "1", "stickerId": "2", "markAsReadToken": " "})).read_token, None);
    }

    #[test]
    fn odd_events_are_kept_as_other() {
        for extra in [
            json!({"type": "message"}),
            json!({"type": "message", "message": "hi"}),
            json!({"type": "message", "message": {"type": "text", "text": "no id"}}),
            json!({"type": "postback", "postback": {"data": 5}}),
            json!({"type": 17}),
            json!({"source": []}),
        ] {
            let event = only_event(extra.clone());
            let EventKind::Other { raw, .. } = event.kind else { panic!("{extra} was not kept as other") };
            assert_eq!(raw, line_event(extra));
        }
    }

    #[test]
    fn postback() {
        let event = only_event(json!({"type": "postback", "replyToken": "r", "postback": {"data": "action=buy&itemid=111", "params": {"date": "2017-09-03"}}}));
        assert_eq!(event.kind, EventKind::Postback { data: "action=buy&itemid=111".into() });
    }
}
