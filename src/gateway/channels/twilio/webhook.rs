//! Parses Twilio's inbound WhatsApp message webhook into an inbound event: the usual
//! form-urlencoded body, or the JSON object of the same parameters that comes with the
//! `bodySHA256` signature variant. Both go through [`parse_params`].
//!
//! Twilio adds parameters without notice, so unknown ones are ignored here (the signature check
//! covers them all). For a repeated key the first value counts. `NumMedia` is not trusted: it is
//! bounded by Twilio's limit of 10 media per message, and every attachment it announces must be
//! there, so that no attachment is silently dropped.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::gateway::model::event::{Attachment, Customer, EventKind, InboundEvent, Message};

/// The most media Twilio attaches to one message.
pub const MAX_MEDIA: usize = 10;

/// The parameters kept in a message's `details` when present: location pins, quick-reply
/// buttons, reply context and Twilio's own message type, passed on as received.
const DETAIL_PARAMS: &[&str] = &[
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "ButtonPayload",
    "ButtonText",
    "OriginalRepliedMessageSid",
    "OriginalRepliedMessageSender",
    "MessageType",
];

/// The prefix Twilio puts on WhatsApp addresses.
const WHATSAPP_PREFIX: &str = "whatsapp:";

/// The longest key an error message repeats: the input is the sender's, not ours to echo.
const MAX_ECHOED_KEY: usize = 40;

/// Why a webhook body was refused (the gateway answers 400 with the message).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The JSON body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    /// The JSON body is not an object of scalar values.
    #[error("the body must be a JSON object of string values")]
    NotAnObject,
    /// A JSON parameter is an array or an object.
    #[error("parameter {0:?} is not a string")]
    NotAString(String),
    /// A required parameter is absent or empty.
    #[error("parameter {0} is missing")]
    Missing(&'static str),
    /// `NumMedia` is not a number or more than Twilio sends.
    #[error("NumMedia must be a whole number from 0 to {MAX_MEDIA}")]
    NumMedia,
    /// `NumMedia` announces an attachment whose URL is missing.
    #[error("NumMedia announces {announced} attachments but MediaUrl{index} is missing")]
    MissingMedia {
        /// How many attachments `NumMedia` announced.
        announced: usize,
        /// The first index without a URL.
        index: usize,
    },
}

/// Parses a form-urlencoded body. Undecodable bytes become U+FFFD, as in the signature check,
/// so the two always see the same parameters.
pub fn parse_form(body: &[u8], received_ms: i64) -> Result<InboundEvent, ParseError> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    parse_params(&params, received_ms)
}

/// Parses a JSON object of parameters. Twilio sends strings; numbers and booleans are taken as
/// their text and nulls skipped, but nested values are refused rather than guessed at.
pub fn parse_json(body: &[u8], received_ms: i64) -> Result<InboundEvent, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let Value::Object(object) = value else { return Err(ParseError::NotAnObject) };
    let mut params = Vec::with_capacity(object.len());
    for (key, value) in object {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            Value::Array(_) | Value::Object(_) => return Err(ParseError::NotAString(key.chars().take(MAX_ECHOED_KEY).collect())),
        };
        params.push((key, value));
    }
    parse_params(&params, received_ms)
}

/// Parses the parameters of an inbound message, in the order received. Twilio sends no event
/// time, so the event is dated `received_ms`.
pub fn parse_params(params: &[(String, String)], received_ms: i64) -> Result<InboundEvent, ParseError> {
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let message_sid = get("MessageSid").ok_or(ParseError::Missing("MessageSid"))?;
    let from = get("From").ok_or(ParseError::Missing("From"))?;
    let to = get("To").ok_or(ParseError::Missing("To"))?;

    let announced = match get("NumMedia") {
        None => 0,
        Some(n) => n.parse::<usize>().ok().filter(|&n| n <= MAX_MEDIA).ok_or(ParseError::NumMedia)?,
    };
    let attachments = (0..announced)
        .map(|index| {
            let url = get(&format!("MediaUrl{index}")).ok_or(ParseError::MissingMedia { announced, index })?;
            let content_type = get(&format!("MediaContentType{index}"));
            Ok(Attachment { url: Some(url.to_owned()), content_type: content_type.map(str::to_owned), ..Attachment::default() })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let details: Map<String, Value> =
        DETAIL_PARAMS.iter().filter_map(|&key| get(key).map(|value| (key.to_owned(), Value::String(value.to_owned())))).collect();
    let is_location = get("Latitude").is_some() && get("Longitude").is_some();
    let message_type = match attachments.first() {
        Some(first) => broad_type(first.content_type.as_deref()),
        None if is_location => "location",
        None => "text",
    };
    // The body keeps its own spacing; only a blank one counts as no text.
    let body = params.iter().find(|(k, _)| k == "Body").map(|(_, v)| v.as_str()).filter(|v| !v.trim().is_empty());
    let text = match body {
        Some(body) => Some(body.to_owned()),
        None if is_location => location_text(&get),
        None => None,
    };

    let phone_number = e164(from.strip_prefix(WHATSAPP_PREFIX).unwrap_or(from));
    let customer = Customer { id: from.to_owned(), display_name: get("ProfileName").map(str::to_owned), phone_number };
    Ok(InboundEvent {
        provider_event_id: message_sid.to_owned(),
        timestamp_ms: received_ms,
        customer: Some(customer),
        to: Some(to.strip_prefix(WHATSAPP_PREFIX).unwrap_or(to).to_owned()),
        reply_token: None,
        kind: EventKind::Message(Message {
            id: message_sid.to_owned(),
            message_type: message_type.to_owned(),
            text,
            attachments,
            details: (!details.is_empty()).then_some(Value::Object(details)),
            rejected_attachments: Vec::new(),
            read_token: None,
        }),
    })
}

/// The message type named after an attachment's MIME type.
fn broad_type(content_type: Option<&str>) -> &'static str {
    let top = content_type.and_then(|t| t.split('/').next()).map(|t| t.trim().to_ascii_lowercase());
    match top.as_deref() {
        Some("image") => "image",
        Some("video") => "video",
        Some("audio") => "audio",
        _ => "file",
    }
}

/// A readable form of a shared location: "label, address", or the coordinates.
fn location_text<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    let named: Vec<&str> = ["Label", "Address"].iter().filter_map(|&key| get(key)).collect();
    if !named.is_empty() {
        return Some(named.join(", "));
    }
    Some(format!("{}, {}", get("Latitude")?, get("Longitude")?))
}

/// The number when it is in E.164 form (`+` and up to 15 digits).
fn e164(number: &str) -> Option<String> {
    let digits = number.strip_prefix('+')?;
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| number.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RECEIVED: i64 = 1_700_000_000_000;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
    }

    const BASE: &[(&str, &str)] = &[
        ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "whatsapp:+15555550123"),
        ("To", "whatsapp:+15555550100"),
        ("ProfileName", "Ada"),
        ("WaId", "15555550123"),
        ("NumSegments", "1"),
        ("ApiVersion", "2010-04-01"),
    ];

    fn with(extra: &[(&str, &str)]) -> Vec<u8> {
        let mut pairs = BASE.to_vec();
        pairs.extend_from_slice(extra);
        form(&pairs)
    }

    fn message(event: &InboundEvent) -> &Message {
        match &event.kind {
            EventKind::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn a_text_message() {
        let event = parse_form(&with(&[("Body", "Hello there"), ("NumMedia", "0")]), RECEIVED).expect("parses");
        assert_eq!(event.provider_event_id, "SM0123456789abcdef0123456789abcdef");
        assert_eq!(event.timestamp_ms, RECEIVED);
        assert_eq!(
            event.customer,
            Some(Customer { id: "whatsapp:+15555550123".into(), display_name: Some("Ada".into()), phone_number: Some("+15555550123".into()) })
        );
        assert_eq!(event.to.as_deref(), Some("+15555550100"));
        assert_eq!(event.reply_token, None);
        let message = message(&event);
        assert_eq!(message.id, "SM0123456789abcdef0123456789abcdef");
        assert_eq!(message.message_type, "text");
        assert_eq!(message.text.as_deref(), Some("Hello there"));
        assert!(message.attachments.is_empty());
        assert_eq!(message.details, None);
    }

    #[test]
    fn media_in_order_with_the_first_naming_the_type() {
        let body = with(&[
            ("Body", "see these"),
            ("NumMedia", "2"),
            ("MediaContentType1", "application/pdf"),
            ("MediaUrl1", "https://api.twilio.com/m/ME2"),
            ("MediaContentType0", "video/mp4"),
            ("MediaUrl0", "https://api.twilio.com/m/ME1"),
        ]);
        let event = parse_form(&body, RECEIVED).expect("parses");
        let message = message(&event);
        assert_eq!(message.message_type, "video");
        assert_eq!(message.text.as_deref(), Some("see these"));
        let urls: Vec<_> = message.attachments.iter().map(|a| (a.url.as_deref(), a.content_type.as_deref())).collect();
        assert_eq!(urls, [(Some("https://api.twilio.com/m/ME1"), Some("video/mp4")), (Some("https://api.twilio.com/m/ME2"), Some("application/pdf"))]);

        let audio = parse_form(&with(&[("NumMedia", "1"), ("MediaUrl0", "u"), ("MediaContentType0", "audio/ogg; codecs=opus")]), RECEIVED).expect("parses");
        assert_eq!(message_type(&audio), "audio");
        assert_eq!(self::message(&audio).text, None);
        let untyped = parse_form(&with(&[("NumMedia", "1"), ("MediaUrl0", "u")]), RECEIVED).expect("parses");
        assert_eq!(message_type(&untyped), "file");
    }

    fn message_type(event: &InboundEvent) -> &str {
        &message(event).message_type
    }

    #[test]
    fn num_media_is_not_trusted() {
        assert_eq!(parse_form(&with(&[("NumMedia", "2"), ("MediaUrl0", "u")]), RECEIVED), Err(ParseError::MissingMedia { announced: 2, index: 1 }));
        assert_eq!(parse_form(&with(&[("NumMedia", "11")]), RECEIVED), Err(ParseError::NumMedia));
        assert_eq!(parse_form(&with(&[("NumMedia", "-1")]), RECEIVED), Err(ParseError::NumMedia));
        assert_eq!(parse_form(&with(&[("NumMedia", "99999999999999999999999")]), RECEIVED), Err(ParseError::NumMedia));
        assert_eq!(parse_form(&with(&[("NumMedia", "many")]), RECEIVED), Err(ParseError::NumMedia));
    }

    #[test]
    fn required_parameters() {
        for key in ["MessageSid", "From", "To"] {
            let pairs: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != key).collect();
            assert_eq!(parse_form(&form(&pairs), RECEIVED), Err(ParseError::Missing(key)));
        }
        assert_eq!(parse_form(b"", RECEIVED), Err(ParseError::Missing("MessageSid")));
    }

    #[test]
    fn a_location() {
        let body = with(&[("Latitude", "51.5072"), ("Longitude", "-0.1276"), ("Address", "Trafalgar Square"), ("Label", "Meet here")]);
        let event = parse_form(&body, RECEIVED).expect("parses");
        let message = message(&event);
        assert_eq!(message.message_type, "location");
        assert_eq!(message.text.as_deref(), Some("Meet here, Trafalgar Square"));
        assert_eq!(message.details, Some(json!({"Latitude": "51.5072", "Longitude": "-0.1276", "Address": "Trafalgar Square", "Label": "Meet here"})));
        let bare = parse_form(&with(&[("Latitude", "1"), ("Longitude", "2")]), RECEIVED).expect("parses");
        assert_eq!(self::message(&bare).text.as_deref(), Some("1, 2"));
    }

    #[test]
    fn a_button_reply() {
        let event = parse_form(&with(&[("Body", "Yes"), ("ButtonText", "Yes"), ("ButtonPayload", "confirm:42")]), RECEIVED).expect("parses");
        let message = message(&event);
        assert_eq!(message.message_type, "text");
        assert_eq!(message.details, Some(json!({"ButtonPayload": "confirm:42", "ButtonText": "Yes"})));
    }

    #[test]
    fn addresses_that_are_not_whatsapp_or_not_e164() {
        let pairs = [("MessageSid", "SM1"), ("From", "+15555550123"), ("To", "whatsapp:+15555550100")];
        let event = parse_form(&form(&pairs), RECEIVED).expect("parses");
        let customer = event.customer.expect("customer");
        assert_eq!((customer.id.as_str(), customer.phone_number.as_deref()), ("+15555550123", Some("+15555550123")));
        let pairs = [("MessageSid", "SM1"), ("From", "whatsapp:someone"), ("To", "x")];
        let event = parse_form(&form(&pairs), RECEIVED).expect("parses");
        assert_eq!(event.customer.and_then(|c| c.phone_number), None);
        assert_eq!(event.to.as_deref(), Some("x"));
    }

    #[test]
    fn the_json_variant() {
        let body = json!({"MessageSid": "SM1", "From": "whatsapp:+15555550123", "To": "whatsapp:+15555550100", "Body": "Hi", "NumMedia": 0, "Extra": null, "Flag": true});
        let event = parse_json(body.to_string().as_bytes(), RECEIVED).expect("parses");
        assert_eq!(message(&event).text.as_deref(), Some("Hi"));
        assert_eq!(parse_json(b"[]", RECEIVED), Err(ParseError::NotAnObject));
        assert!(matches!(parse_json(b"{", RECEIVED), Err(ParseError::Json(_))));
        let long_key = "K".repeat(1000);
        let nested = json!({ long_key.as_str(): {"a": 1} });
        assert_eq!(parse_json(nested.to_string().as_bytes(), RECEIVED), Err(ParseError::NotAString("K".repeat(MAX_ECHOED_KEY))));
    }
}
