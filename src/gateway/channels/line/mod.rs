//! LINE: the `x-line-signature` check, the webhook's events, the plain 200 that acknowledges
//! them, outgoing messages as LINE message objects, and reply-or-push: the conversation's reply
//! token while it is fresh (it works once, within a minute), else a push with the message's
//! `X-Line-Retry-Key`, so that a retry after a lost answer cannot send twice.

pub mod signature;
pub mod webhook;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::indicators::{Chat, IndicatorError, Shown};
use super::{Answer, Channel, Fetched, Profiles, Receipts, Rejection, Webhook, answer};
use crate::gateway::model::file::extension;
use crate::gateway::metrics::ProviderLabel;
use crate::gateway::model::conversation::CustomerProfile;
use crate::gateway::model::event::{InboundEvent, Message};
use crate::gateway::model::outbound::{OutContent, Outcome};
use crate::gateway::model::queue::QueuedSend;
use crate::providers::line::{LineMessage, PushOutcome, SendOptions};
use crate::providers::{LineClient, ProviderError, Secret};

/// LINE's signature header.
const SIGNATURE_HEADER: &str = "x-line-signature";

/// A LINE channel.
#[derive(Clone, Debug)]
pub struct Line {
    /// Client for the Messaging API.
    pub client: LineClient,
    /// Key of `x-line-signature`.
    pub channel_secret: Secret,
}

impl Channel for Line {
    fn label(&self) -> ProviderLabel {
        ProviderLabel::Line
    }

    fn verify(&self, webhook: &Webhook<'_>) -> Result<(), Rejection> {
        signature::verify(self.channel_secret.expose(), webhook.body, webhook.header(SIGNATURE_HEADER))
            .map_err(|_| Rejection { status: StatusCode::UNAUTHORIZED, text: "invalid or missing x-line-signature\n" })
    }

    fn parse(&self, webhook: &Webhook<'_>, received_ms: i64) -> Result<Vec<InboundEvent>, String> {
        webhook::parse(webhook.body, received_ms).map(|w| w.events).map_err(|e| e.to_string())
    }

    fn acknowledge(&self) -> Response {
        StatusCode::OK.into_response()
    }

    fn send<'a>(&'a self, message: &'a QueuedSend, now_ms: i64) -> BoxFuture<'a, Answer> {
        async move {
            let messages = line_messages(&message.contents);
            if let Some(token) = message.reply_token.as_deref().filter(|_| now_ms < message.reply_until_ms) {
                return match self.client.reply(token, &messages, SendOptions::default()).await {
                    Ok(sent) => Outcome::Sent(sent.into_iter().map(|m| m.id).collect()).into(),
                    // A refused or failed reply spends the token; the next attempt pushes at once.
                    Err(e) => Outcome::Retry(e.to_string(), Some(std::time::Duration::ZERO)).into(),
                };
            }
            let pushed = self.client.push(&message.recipient, &messages, message.retry_key, SendOptions::default()).await.map(|outcome| match outcome {
                PushOutcome::Sent(sent) | PushOutcome::AlreadyAccepted { sent_messages: sent, .. } => sent.into_iter().map(|m| m.id).collect(),
            });
            answer(pushed)
        }
        .boxed()
    }

    fn content<'a>(&'a self, message: &'a Message, limit: u64) -> Option<BoxFuture<'a, Result<Fetched, String>>> {
        Some(async move { self.client.message_content(&message.id, limit).await.map(|c| (c.content_type, c.bytes)).map_err(|e| e.to_string()) }.boxed())
    }

    /// A LINE attachment's URL is an external content provider's, public and not LINE's own:
    /// the channel's token has no business there.
    fn media<'a>(&'a self, _url: &'a str, _limit: u64) -> Option<BoxFuture<'a, Result<Fetched, String>>> {
        None
    }

    fn profiles(&self) -> Option<&dyn Profiles> {
        Some(self)
    }

    fn receipts(&self) -> Option<&dyn Receipts> {
        None
    }

    fn mark_read<'a>(&'a self, chat: Chat<'a>) -> BoxFuture<'a, Result<Shown, IndicatorError>> {
        async move {
            let message = chat.last_inbound.ok_or(IndicatorError::NoInboundMessage)?;
            let token = message.read_token.as_deref().ok_or(IndicatorError::NoReadToken(
                "LINE sent no markAsReadToken with the customer's latest message; LINE sends one when chat is on in the LINE Official Account Manager",
            ))?;
            self.client.mark_as_read(token).await?;
            Ok(Shown { typing_seconds: None, marked_read: true })
        }
        .boxed()
    }

    fn typing<'a>(&'a self, chat: Chat<'a>, seconds: u32) -> BoxFuture<'a, Result<Shown, IndicatorError>> {
        async move {
            self.client.show_loading(chat.customer_id, seconds).await?;
            Ok(Shown { typing_seconds: Some(seconds), marked_read: false })
        }
        .boxed()
    }
}

impl Profiles for Line {
    fn profile<'a>(&'a self, customer_id: &'a str) -> BoxFuture<'a, Result<CustomerProfile, ProviderError>> {
        async move {
            let p = self.client.profile(customer_id).await?;
            Ok(CustomerProfile {
                id: customer_id.to_owned(),
                display_name: Some(p.display_name),
                language: p.language,
                picture_url: p.picture_url,
                ..CustomerProfile::default()
            })
        }
        .boxed()
    }
}

/// Whether a file is an image LINE shows inline (JPEG or PNG).
fn line_image(content_type: Option<&str>, file_name: Option<&str>, url: &str) -> bool {
    let by_type = content_type.is_some_and(|t| matches!(t.to_ascii_lowercase().as_str(), "image/jpeg" | "image/png"));
    let ext = extension(file_name, Some(url)).map(|e| e.to_ascii_lowercase());
    by_type || matches!(ext.as_deref(), Some(".jpg" | ".jpeg" | ".png"))
}

/// The LINE messages for the contents (LINE takes up to five per request). LINE has no file
/// message: an image goes as an image, any other file as a text with its link.
pub fn line_messages(contents: &[OutContent]) -> Vec<LineMessage> {
    let mut out = Vec::new();
    for content in contents {
        match content {
            OutContent::Text { text } | OutContent::Template { text, .. } => out.push(LineMessage::Text { text: text.clone() }),
            OutContent::Attachment { url, file_name, content_type, caption } => {
                if let Some(caption) = caption {
                    out.push(LineMessage::Text { text: caption.clone() });
                }
                if line_image(content_type.as_deref(), file_name.as_deref(), url) {
                    out.push(LineMessage::Image { original_content_url: url.clone(), preview_image_url: url.clone() });
                } else {
                    let label = file_name.as_deref().unwrap_or("File");
                    out.push(LineMessage::Text { text: format!("{label}: {url}") });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::channels::test_contents::{attachment, text};

    #[test]
    fn line_sends_images_inline_and_other_files_as_links() {
        let out = line_messages(&[text("a"), attachment("https://x/p", None, Some("image/png")), attachment("https://x/r.pdf", Some("r.pdf"), None)]);
        assert_eq!(out, vec![
            LineMessage::Text { text: "a".into() },
            LineMessage::Text { text: "here".into() },
            LineMessage::Image { original_content_url: "https://x/p".into(), preview_image_url: "https://x/p".into() },
            LineMessage::Text { text: "here".into() },
            LineMessage::Text { text: "r.pdf: https://x/r.pdf".into() },
        ]);
    }
}
