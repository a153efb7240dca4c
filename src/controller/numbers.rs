//! Where each WhatsApp number of an account lives at Twilio, judged from the lists Twilio gave:
//! an incoming phone number, a WhatsApp sender (not every sender is an incoming number of the
//! account), and, with a Messaging Service, the service's pool (its phone numbers and its
//! channel senders). A number found nowhere, or outside the service, would receive nothing.

use crate::api::account::WhatsAppNumber;
use crate::providers::twilio::{IncomingNumber, ServiceNumber, ServiceSender, WhatsAppSender};

/// Reason of a number that is not in the account.
pub const NUMBER_NOT_FOUND: &str = "NumberNotFound";
/// Reason of a number that is in the account but not in its Messaging Service.
pub const NUMBER_NOT_IN_SERVICE: &str = "NumberNotInService";

/// What Twilio listed for the account.
pub struct Lists<'a> {
    /// The incoming phone numbers.
    pub incoming: &'a [IncomingNumber],
    /// The WhatsApp senders; empty when they were not needed (see [`needs_senders`]).
    pub senders: &'a [WhatsAppSender],
    /// The Messaging Service's pool, when the account names one.
    pub service: Option<Pool<'a>>,
}

/// A Messaging Service's pool.
pub struct Pool<'a> {
    /// The service SID.
    pub sid: &'a str,
    /// Its phone numbers.
    pub numbers: &'a [ServiceNumber],
    /// Its channel senders; empty when they were not needed (see [`needs_service_senders`]).
    pub senders: &'a [ServiceSender],
}

/// Where a number's inbound URL is set, or why it cannot be.
#[derive(Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// An incoming phone number: its own inbound URL.
    Number(&'a IncomingNumber),
    /// A WhatsApp sender (by SID): its webhook.
    Sender(String),
    /// In the Messaging Service's pool: the service's inbound URL serves it.
    Service,
    /// Not a number of the account ([`NUMBER_NOT_FOUND`]), with what was looked at.
    NotFound(String),
    /// In the account but not in its Messaging Service ([`NUMBER_NOT_IN_SERVICE`]).
    NotInService(String),
}

/// Whether the senders list is needed: for a number given by sender SID, or one that is not an
/// incoming number.
pub fn needs_senders(numbers: &[WhatsAppNumber], incoming: &[IncomingNumber]) -> bool {
    numbers.iter().any(|n| n.sender_sid.is_some() || !incoming.iter().any(|i| i.phone_number == n.number))
}

/// Whether the service's channel senders are needed: for a number not among its phone numbers.
pub fn needs_service_senders(numbers: &[WhatsAppNumber], pool: &[ServiceNumber]) -> bool {
    numbers.iter().any(|n| !pool.iter().any(|p| p.phone_number == n.number))
}

/// Where `number` lives.
pub fn place<'a>(number: &WhatsAppNumber, lists: &Lists<'a>) -> Place<'a> {
    let address = format!("whatsapp:{}", number.number);
    let sender = match &number.sender_sid {
        Some(sid) => match lists.senders.iter().find(|s| &s.sid == sid) {
            None => return Place::NotFound(format!("the account has no WhatsApp sender {sid}")),
            Some(s) if s.sender_id.as_deref().is_some_and(|id| id != address) => {
                return Place::NotFound(format!("WhatsApp sender {sid} is {}, not {address}", s.sender_id.as_deref().unwrap_or_default()));
            }
            Some(s) => Some(s),
        },
        None => lists.senders.iter().find(|s| s.sender_id.as_deref() == Some(address.as_str())),
    };
    let incoming = lists.incoming.iter().find(|n| n.phone_number == number.number);
    let nowhere = || Place::NotFound("neither an incoming phone number nor a WhatsApp sender of the account".to_owned());
    if let Some(pool) = &lists.service {
        if incoming.is_none() && sender.is_none() {
            return nowhere();
        }
        let pooled = pool.numbers.iter().any(|p| p.phone_number == number.number)
            || pool.senders.iter().any(|s| s.sender.as_deref() == Some(address.as_str()) || sender.is_some_and(|own| own.sid == s.sid));
        return if pooled {
            Place::Service
        } else {
            Place::NotInService(format!("not among the phone numbers or senders of Messaging Service {}", pool.sid))
        };
    }
    // A sender named in the spec wins; otherwise the number's own inbound URL.
    match (sender, incoming) {
        (Some(sender), _) if number.sender_sid.is_some() => Place::Sender(sender.sid.clone()),
        (_, Some(found)) => Place::Number(found),
        (Some(sender), None) => Place::Sender(sender.sid.clone()),
        (None, None) => nowhere(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: &str, sender_sid: Option<&str>) -> WhatsAppNumber {
        WhatsAppNumber { name: "support".into(), number: n.into(), sender_sid: sender_sid.map(str::to_owned) }
    }

    fn incoming(n: &str) -> IncomingNumber {
        IncomingNumber { sid: format!("PN{n}"), phone_number: n.into(), sms_url: None, sms_method: None, sms_application_sid: None }
    }

    fn sender(sid: &str, n: &str) -> WhatsAppSender {
        WhatsAppSender { sid: sid.into(), status: None, sender_id: Some(format!("whatsapp:{n}")), webhook: None }
    }

    #[test]
    fn numbers_are_found_as_incoming_numbers_or_senders() {
        let numbers = [incoming("+1")];
        let senders = [sender("XE2", "+2")];
        let lists = Lists { incoming: &numbers, senders: &senders, service: None };
        assert_eq!(place(&number("+1", None), &lists), Place::Number(&numbers[0]));
        assert_eq!(place(&number("+2", None), &lists), Place::Sender("XE2".into()));
        assert_eq!(place(&number("+2", Some("XE2")), &lists), Place::Sender("XE2".into()));
        assert!(matches!(place(&number("+9", None), &lists), Place::NotFound(m) if m.contains("neither")));
        assert!(matches!(place(&number("+2", Some("XE3")), &lists), Place::NotFound(m) if m.contains("no WhatsApp sender XE3")));
        assert!(matches!(place(&number("+1", Some("XE2")), &lists), Place::NotFound(m) if m.contains("XE2 is whatsapp:+2, not whatsapp:+1")));
    }

    #[test]
    fn with_a_service_numbers_must_be_in_its_pool() {
        let numbers = [incoming("+1"), incoming("+3")];
        let senders = [sender("XE2", "+2")];
        let pool_numbers = [ServiceNumber { sid: "PN+1".into(), phone_number: "+1".into() }];
        let pool_senders = [ServiceSender { sid: "XE2".into(), sender: Some("whatsapp:+2".into()) }];
        let pool = Pool { sid: "MG1", numbers: &pool_numbers, senders: &pool_senders };
        let lists = Lists { incoming: &numbers, senders: &senders, service: Some(pool) };
        assert_eq!(place(&number("+1", None), &lists), Place::Service);
        assert_eq!(place(&number("+2", None), &lists), Place::Service);
        assert!(matches!(place(&number("+3", None), &lists), Place::NotInService(m) if m.contains("MG1")));
        assert!(matches!(place(&number("+9", None), &lists), Place::NotFound(_)));
    }

    #[test]
    fn the_slower_lists_are_read_only_when_needed() {
        let numbers = [incoming("+1")];
        assert!(!needs_senders(&[number("+1", None)], &numbers));
        assert!(needs_senders(&[number("+1", Some("XE1"))], &numbers));
        assert!(needs_senders(&[number("+1", None), number("+2", None)], &numbers));
        let pool = [ServiceNumber { sid: "PN1".into(), phone_number: "+1".into() }];
        assert!(!needs_service_senders(&[number("+1", None)], &pool));
        assert!(needs_service_senders(&[number("+2", None)], &pool));
    }
}
