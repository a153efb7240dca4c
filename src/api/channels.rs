//! The provider channels a MessagingAccount claims — its LINE channel, its Twilio numbers and
//! Messaging Service — and the rule that each belongs to one account: two accounts on one
//! channel would fight over its webhook, and deleting either would unregister it for both.

use std::fmt;

use super::account::MessagingAccountSpec;

/// A provider-side thing that has one webhook, so one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// A LINE Messaging API channel, by channel ID.
    Line(String),
    /// A phone number (E.164) used for WhatsApp through Twilio.
    TwilioNumber(String),
    /// A Twilio Messaging Service (`MG…`), whose inbound URL serves all its numbers.
    MessagingService(String),
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(id) => write!(f, "LINE channel {id}"),
            Self::TwilioNumber(number) => write!(f, "WhatsApp number {number}"),
            Self::MessagingService(sid) => write!(f, "Twilio Messaging Service {sid}"),
        }
    }
}

/// One channel an account claims, with the field that claims it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// What is claimed.
    pub channel: Channel,
    /// The path of the field naming it, e.g. `spec.twilioWhatsApp.numbers[1].number`.
    pub field: String,
}

/// Every channel the spec claims, in field order.
pub fn claims(spec: &MessagingAccountSpec) -> Vec<Claim> {
    let mut claims = Vec::new();
    if let Some(line) = &spec.line {
        claims.push(Claim { channel: Channel::Line(line.channel_id.clone()), field: "spec.line.channelId".to_owned() });
    }
    if let Some(twilio) = &spec.twilio_whatsapp {
        if let Some(service) = &twilio.messaging_service_sid {
            claims.push(Claim { channel: Channel::MessagingService(service.clone()), field: "spec.twilioWhatsApp.messagingServiceSid".to_owned() });
        }
        for (i, number) in twilio.numbers.iter().enumerate() {
            let field = format!("spec.twilioWhatsApp.numbers[{i}].number");
            claims.push(Claim { channel: Channel::TwilioNumber(number.number.clone()), field });
        }
    }
    claims
}

/// A channel of this account that an account ahead of it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict<H> {
    /// This account's claim.
    pub claim: Claim,
    /// Who holds the channel.
    pub holder: H,
}

/// The first of `spec`'s claims (in field order) that one of the accounts `ahead` of it also
/// makes, with the first such account: the oldest claimant holds a channel, whatever else it
/// claims, so that a newcomer never takes a channel over and the holder does not change while
/// the accounts ahead keep their specs.
pub fn first_conflict<'a, H: Clone + 'a>(
    spec: &MessagingAccountSpec,
    ahead: impl IntoIterator<Item = (H, &'a MessagingAccountSpec)>,
) -> Option<Conflict<H>> {
    let ahead: Vec<(H, Vec<Channel>)> = ahead.into_iter().map(|(h, s)| (h, claims(s).into_iter().map(|c| c.channel).collect())).collect();
    claims(spec).into_iter().find_map(|claim| {
        let (holder, _) = ahead.iter().find(|(_, channels)| channels.contains(&claim.channel))?;
        Some(Conflict { claim, holder: holder.clone() })
    })
}

/// Whether two specs claim a channel in common.
pub fn overlap(a: &MessagingAccountSpec, b: &MessagingAccountSpec) -> bool {
    let theirs: Vec<Channel> = claims(b).into_iter().map(|c| c.channel).collect();
    claims(a).iter().any(|c| theirs.contains(&c.channel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::account::{LineAccount, TwilioWhatsAppAccount, WhatsAppNumber};

    fn line(channel_id: &str) -> MessagingAccountSpec {
        let mut spec: MessagingAccountSpec = serde_json::from_value(serde_json::json!({
            "webhook": {"publicBaseUrl": "https://chat.example"}, "dataTransfer": {"acknowledged": true}
        }))
        .unwrap();
        spec.line = Some(LineAccount { channel_id: channel_id.into(), ..Default::default() });
        spec
    }

    fn twilio(service: Option<&str>, numbers: &[&str]) -> MessagingAccountSpec {
        let mut spec = line("1");
        spec.line = None;
        spec.twilio_whatsapp = Some(TwilioWhatsAppAccount {
            messaging_service_sid: service.map(str::to_owned),
            numbers: numbers.iter().enumerate().map(|(i, n)| WhatsAppNumber { name: format!("n{i}"), number: (*n).into(), sender_sid: None }).collect(),
            ..Default::default()
        });
        spec
    }

    #[test]
    fn every_channel_is_claimed_with_its_field() {
        assert_eq!(claims(&line("1657")), [Claim { channel: Channel::Line("1657".into()), field: "spec.line.channelId".into() }]);
        let wa = claims(&twilio(Some("MG1"), &["+14155550100", "+14155550101"]));
        let fields: Vec<_> = wa.iter().map(|c| (c.channel.to_string(), c.field.as_str())).collect();
        assert_eq!(fields, [
            ("Twilio Messaging Service MG1".to_owned(), "spec.twilioWhatsApp.messagingServiceSid"),
            ("WhatsApp number +14155550100".to_owned(), "spec.twilioWhatsApp.numbers[0].number"),
            ("WhatsApp number +14155550101".to_owned(), "spec.twilioWhatsApp.numbers[1].number"),
        ]);
    }

    #[test]
    fn the_first_account_ahead_holds_a_shared_channel() {
        let (a, b, c) = (line("1"), line("2"), line("1"));
        assert_eq!(first_conflict(&c, [("a", &a), ("b", &b)]).map(|x| (x.holder, x.claim.field)), Some(("a", "spec.line.channelId".into())));
        assert_eq!(first_conflict(&b, [("a", &a)]), None);
        assert_eq!(first_conflict(&a, std::iter::empty::<(&str, &MessagingAccountSpec)>()), None);
        // A LINE channel and a Twilio number never collide, even with the same digits.
        assert_eq!(first_conflict(&twilio(None, &["+1"]), [("a", &line("+1"))]), None);
    }

    #[test]
    fn a_shared_number_or_service_is_a_conflict_in_field_order() {
        let holder = twilio(Some("MG1"), &["+14155550100"]);
        let number_only = twilio(None, &["+14155550199", "+14155550100"]);
        let conflict = first_conflict(&number_only, [("h", &holder)]).unwrap();
        assert_eq!((conflict.claim.field.as_str(), conflict.claim.channel.to_string()), ("spec.twilioWhatsApp.numbers[1].number", "WhatsApp number +14155550100".to_owned()));
        let service_only = twilio(Some("MG1"), &["+14155550101"]);
        assert_eq!(first_conflict(&service_only, [("h", &holder)]).unwrap().claim.field, "spec.twilioWhatsApp.messagingServiceSid");
        assert!(overlap(&holder, &service_only) && overlap(&service_only, &holder));
        assert!(!overlap(&holder, &twilio(Some("MG2"), &["+14155550101"])));
    }
}
