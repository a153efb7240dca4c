//! Twilio's status callback (`StatusCallback` on each message the gateway sends): the message's
//! SID, its status, and for a failure Twilio's error code, which becomes one of the gateway's
//! failure codes the desk acts on; the raw code always goes along as `providerCode`.

use crate::gateway::model::event::{EventKind, InboundEvent};
use crate::gateway::model::outbound::{SendError, WINDOW_CLOSED};
use crate::gateway::model::receipt::{Receipt, Reported};

/// The failure code of a Twilio error code a desk acts on, by Twilio's error pages and its
/// table of WhatsApp error codes (the README lists them); None for the others.
fn failure_code(code: i64) -> Option<&'static str> {
    Some(match code {
        63016 => WINDOW_CLOSED,
        63003 | 63024 | 21211 | 21614 => "invalid_recipient",
        63014 => "recipient_blocked",
        63017 | 63018 => "rate_limited",
        63005 | 63021 | 63030 => "content_rejected",
        63027 | 63028 => "template_rejected",
        63019 => "media_unavailable",
        63013 => "policy_violation",
        63032 | 63049 => "not_delivered_by_whatsapp",
        63012 | 63023 => "provider_error",
        _ => return None,
    })
}

/// The failure of a message Twilio reports `failed` or `undelivered`.
fn failure(status: &str, code: Option<&str>, message: Option<&str>) -> SendError {
    let provider_code = code.and_then(|c| c.parse::<i64>().ok());
    let mapped = provider_code.and_then(failure_code).unwrap_or("undelivered");
    let message = match (message, provider_code) {
        (Some(m), _) => m.to_owned(),
        (None, Some(c)) => format!("Twilio reported the message {status} (error {c})"),
        (None, None) => format!("Twilio reported the message {status}"),
    };
    SendError { code: mapped.to_owned(), provider_code, message }
}

/// Why a status callback was refused (answered with 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("parameter {0} is missing")]
pub struct Missing(&'static str);

/// The receipt event of a status callback's form body, dated `received_ms` (Twilio sends no
/// time); None for a status that tells nothing the desk waits for (`queued`, `sending`, …).
/// Its event ID is the SID and the status, so a repeated callback is recorded once.
pub fn parse_form(body: &[u8], received_ms: i64) -> Result<Option<InboundEvent>, Missing> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let sid = get("MessageSid").ok_or(Missing("MessageSid"))?;
    let status = get("MessageStatus").ok_or(Missing("MessageStatus"))?;
    let (reported, error) = match status {
        "sent" => (Reported::Sent, None),
        "delivered" => (Reported::Delivered, None),
        "read" => (Reported::Read, None),
        "failed" | "undelivered" => (Reported::Failed, Some(failure(status, get("ErrorCode"), get("ErrorMessage")))),
        _ => return Ok(None),
    };
    Ok(Some(InboundEvent {
        provider_event_id: format!("{sid}/{status}"),
        timestamp_ms: received_ms,
        customer: None,
        to: None,
        reply_token: None,
        kind: EventKind::Receipt(Receipt { provider_message_id: sid.to_owned(), reported, error }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(body: &str) -> Option<Receipt> {
        match parse_form(body.as_bytes(), 7).expect("parses")?.kind {
            EventKind::Receipt(r) => Some(r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_become_receipts_and_a_repeat_has_the_same_id() {
        let r = receipt("MessageSid=SM1&MessageStatus=delivered&AccountSid=AC1").unwrap();
        assert_eq!((r.provider_message_id.as_str(), r.reported, r.error), ("SM1", Reported::Delivered, None));
        let event = parse_form(b"MessageStatus=read&MessageSid=SM1", 7).unwrap().unwrap();
        assert_eq!(event.provider_event_id, "SM1/read");
        assert_eq!(event.timestamp_ms, 7);
        for status in ["queued", "accepted", "sending", "scheduled", "receiving", "received", "canceled"] {
            assert_eq!(receipt(&format!("MessageSid=SM1&MessageStatus={status}")), None, "{status}");
        }
        assert_eq!(parse_form(b"MessageStatus=sent", 7), Err(Missing("MessageSid")));
        assert_eq!(parse_form(b"MessageSid=SM1&MessageStatus=", 7), Err(Missing("MessageStatus")));
    }

    #[test]
    fn failures_carry_the_mapped_code_and_the_raw_one() {
        let r = receipt("MessageSid=SM1&MessageStatus=failed&ErrorCode=63016&ErrorMessage=outside+the+window").unwrap();
        assert_eq!(r.reported, Reported::Failed);
        assert_eq!(r.error, Some(SendError { code: "session_window_closed".into(), provider_code: Some(63016), message: "outside the window".into() }));
        let r = receipt("MessageSid=SM1&MessageStatus=undelivered&ErrorCode=63024").unwrap();
        let error = r.error.unwrap();
        assert_eq!((error.code.as_str(), error.provider_code), ("invalid_recipient", Some(63024)));
        assert_eq!(error.message, "Twilio reported the message undelivered (error 63024)");
        let unknown = receipt("MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30008").unwrap().error.unwrap();
        assert_eq!((unknown.code.as_str(), unknown.provider_code), ("undelivered", Some(30008)), "an unmapped code keeps the raw one");
        let none = receipt("MessageSid=SM1&MessageStatus=failed&ErrorCode=abc").unwrap().error.unwrap();
        assert_eq!((none.code.as_str(), none.provider_code), ("undelivered", None));
        for (code, mapped) in [(63018, "rate_limited"), (63014, "recipient_blocked"), (63013, "policy_violation"), (63049, "not_delivered_by_whatsapp")] {
            assert_eq!(failure_code(code), Some(mapped));
        }
    }
}
