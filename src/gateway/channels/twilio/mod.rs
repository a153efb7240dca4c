//! Twilio's WhatsApp: the `X-Twilio-Signature` check over the configured public URL, the
//! inbound message webhook (form or JSON), the empty TwiML that acknowledges it, outgoing
//! messages as one Twilio message each, and their status callbacks. Twilio has no retry key: a crash between Twilio accepting
//! a message and the store recording it sends that message again after the restart.

mod indicators;
pub mod receipt;
pub mod signature;
pub mod webhook;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::indicators::{Chat, IndicatorError, Shown};
use super::{Answer, Channel, Fetched, Profiles, Receipts, Rejection, Webhook, answer, refused};
use crate::gateway::metrics::ProviderLabel;
use crate::gateway::model::event::{InboundEvent, Message};
use crate::gateway::model::outbound::{OutContent, Outcome, TWILIO_WINDOW_CLOSED, WINDOW_CLOSED};
use crate::gateway::model::queue::QueuedSend;
use crate::providers::twilio::{MessageContent, MessageSender, OutgoingMessage};
use crate::providers::{Secret, TwilioClient};

/// Twilio's signature header.
const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The TwiML that tells Twilio not to answer the customer itself.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

/// A Twilio account's WhatsApp numbers.
#[derive(Clone, Debug)]
pub struct Twilio {
    /// Client for the REST API.
    pub client: TwilioClient,
    /// Key of `X-Twilio-Signature`.
    pub auth_token: Secret,
    /// The public URL Twilio calls, which it signs.
    pub callback_url: String,
    /// The public URL of the status callbacks, beside it.
    pub status_url: url::Url,
}

impl Twilio {
    /// The public URL of the status callbacks, beside the webhook: `…/{account}/status`.
    pub fn status_url(callback_url: &str) -> Result<url::Url, url::ParseError> {
        url::Url::parse(&format!("{}/status", callback_url.strip_suffix("/webhook").unwrap_or(callback_url)))
    }

    /// Whether the webhook carries the JSON variant of the parameters.
    fn json(webhook: &Webhook<'_>) -> bool {
        webhook.header(header::CONTENT_TYPE.as_str()).is_some_and(|t| t.trim_start().starts_with("application/json"))
    }

    /// Checks the signature of a request Twilio made to `url` (never the Host header's).
    fn verify_at(&self, url: &str, webhook: &Webhook<'_>) -> Result<(), Rejection> {
        let url = match webhook.query {
            Some(q) => format!("{url}?{q}"),
            None => url.to_owned(),
        };
        signature::verify(self.auth_token.expose(), &url, webhook.body, Self::json(webhook), webhook.header(SIGNATURE_HEADER))
            .map_err(|_| Rejection { status: StatusCode::FORBIDDEN, text: "invalid or missing X-Twilio-Signature\n" })
    }
}

impl Channel for Twilio {
    fn label(&self) -> ProviderLabel {
        ProviderLabel::Twilio
    }

    fn verify(&self, webhook: &Webhook<'_>) -> Result<(), Rejection> {
        self.verify_at(&self.callback_url, webhook)
    }

    fn parse(&self, webhook: &Webhook<'_>, received_ms: i64) -> Result<Vec<InboundEvent>, String> {
        let event = if Self::json(webhook) { webhook::parse_json(webhook.body, received_ms) } else { webhook::parse_form(webhook.body, received_ms) };
        event.map(|e| vec![e]).map_err(|e| e.to_string())
    }

    fn acknowledge(&self) -> Response {
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], EMPTY_TWIML).into_response()
    }

    fn send<'a>(&'a self, message: &'a QueuedSend, _now_ms: i64) -> BoxFuture<'a, Answer> {
        async move {
            let Some(from) = &message.sender else { return refused("provider_rejected", None, "the workstream has no sending number").into() };
            let content = match twilio_content(&message.contents) {
                Ok(content) => content,
                Err(detail) => return refused("provider_rejected", None, &detail).into(),
            };
            let outgoing = OutgoingMessage { to: message.recipient.clone(), from: MessageSender::Address(from.clone()), content, status_callback: Some(self.status_url.clone()) };
            let sent = match self.client.send_message(&outgoing).await {
                // Twilio can answer 201 for a message that already failed.
                Ok(sent) if sent.error_code.is_some() || sent.status.as_deref() == Some("failed") => {
                    refused("provider_rejected", sent.error_code, sent.error_message.as_deref().unwrap_or("failed")).into()
                }
                sent => answer(sent.map(|s| vec![s.sid])),
            };
            window_closed(sent)
        }
        .boxed()
    }

    fn content<'a>(&'a self, _message: &'a Message, _limit: u64) -> Option<BoxFuture<'a, Result<Fetched, String>>> {
        None
    }

    fn media<'a>(&'a self, url: &'a str, limit: u64) -> Option<BoxFuture<'a, Result<Fetched, String>>> {
        Some(async move { self.client.media(url, limit).await.map(|m| (m.content_type, m.bytes)).map_err(|e| e.to_string()) }.boxed())
    }

    fn profiles(&self) -> Option<&dyn Profiles> {
        None
    }

    fn mark_read<'a>(&'a self, _chat: Chat<'a>) -> BoxFuture<'a, Result<Shown, IndicatorError>> {
        indicators::mark_read()
    }

    fn typing<'a>(&'a self, chat: Chat<'a>, _seconds: u32) -> BoxFuture<'a, Result<Shown, IndicatorError>> {
        indicators::typing(&self.client, chat)
    }

    fn receipts(&self) -> Option<&dyn Receipts> {
        Some(self)
    }
}

impl Receipts for Twilio {
    fn verify(&self, callback: &Webhook<'_>) -> Result<(), Rejection> {
        self.verify_at(self.status_url.as_str(), callback)
    }

    fn parse(&self, callback: &Webhook<'_>, received_ms: i64) -> Result<Option<InboundEvent>, String> {
        receipt::parse_form(callback.body, received_ms).map_err(|e| e.to_string())
    }
}

/// Twilio's "outside the window" is the gateway's own `session_window_closed`, so the desk
/// handles both alike.
fn window_closed(answer: Answer) -> Answer {
    match answer {
        Answer::Outcome(Outcome::Refused(e)) if e.provider_code == Some(TWILIO_WINDOW_CLOSED) => {
            refused(WINDOW_CLOSED, e.provider_code, "WhatsApp's 24-hour window is closed (Twilio 63016); send an approved template").into()
        }
        other => other,
    }
}

/// The Twilio message for the contents: texts are joined into one body; an attachment goes as
/// media with its caption; a template by its Content SID. A send holds texts, or one attachment,
/// or one template, never a mix.
pub fn twilio_content(contents: &[OutContent]) -> Result<MessageContent, String> {
    match contents {
        [OutContent::Attachment { url, caption, .. }] => {
            let url = url::Url::parse(url).map_err(|e| format!("attachment URL: {e}"))?;
            Ok(MessageContent::Media { caption: caption.clone(), urls: vec![url] })
        }
        [OutContent::Template { content_sid: Some(sid), variables, .. }] => Ok(MessageContent::Template { content_sid: sid.clone(), variables: variables.clone() }),
        [OutContent::Template { name, .. }] => Err(format!("template {name} has no approved Content SID")),
        texts if !texts.is_empty() && texts.iter().all(|c| matches!(c, OutContent::Text { .. })) => Ok(MessageContent::Text(
            texts.iter().filter_map(|c| if let OutContent::Text { text } = c { Some(text.as_str()) } else { None }).collect::<Vec<_>>().join("\n\n"),
        )),
        _ => Err("a WhatsApp message holds texts, one attachment or one template".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gateway::channels::test_contents::{attachment, text};

    #[test]
    fn twilio_gets_one_kind_of_content_per_message() {
        assert_eq!(twilio_content(&[text("a"), text("b")]), Ok(MessageContent::Text("a\n\nb".into())));
        let media = twilio_content(&[attachment("https://x/r.pdf", None, None)]).unwrap();
        assert!(matches!(media, MessageContent::Media { caption: Some(ref c), ref urls } if c == "here" && urls.len() == 1));
        let template = OutContent::Template { name: "t".into(), language: "en".into(), variables: BTreeMap::new(), text: "x".into(), content_sid: None };
        assert!(twilio_content(&[template]).unwrap_err().contains("no approved Content SID"));
        assert!(twilio_content(&[text("a"), attachment("https://x/y", None, None)]).is_err());
        assert!(twilio_content(&[]).is_err());
    }
}
