//! Messages to customers — from agents, the bot, or the gateway itself — as stored, shown to the
//! desk, and turned into each provider's request. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::conversation::AgentRef;
use crate::api::workstream::Trigger;
use crate::providers::line::LineMessage;
use crate::providers::twilio::MessageContent;

/// One part of an outgoing message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum OutContent {
    /// Free text.
    Text {
        /// The text.
        text: String,
    },
    /// A file by URL, which the provider fetches.
    Attachment {
        /// Where the provider fetches it.
        url: String,
        /// Its name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_name: Option<String>,
        /// Its MIME type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        /// A text sent with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    /// An approved template.
    Template {
        /// The MessageTemplate's name.
        name: String,
        /// The localization sent.
        language: String,
        /// The variables' values.
        variables: BTreeMap<String, String>,
        /// The body with the variables filled in.
        text: String,
        /// The approved Twilio Content SID (WhatsApp).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_sid: Option<String>,
    },
}

/// Who wrote an outgoing message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Author {
    /// An agent, through the agent API.
    Agent,
    /// The workstream's bot, through the agent API.
    Bot,
    /// The gateway, for an automated message or the survey.
    Automated,
}

/// Where an outgoing message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Stored; being sent (and retried).
    Queued,
    /// The provider accepted it.
    Delivered,
    /// The provider refused it for good, or it could not be sent in time.
    Failed,
    /// Not sent, by rule (e.g. outside the WhatsApp window); `error` says why.
    Skipped,
}

/// Why a message was not delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendError {
    /// `session_window_closed`, `provider_rejected`, `credentials_rejected` or `expired`.
    pub code: String,
    /// The provider's own error code (e.g. Twilio 63016).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_code: Option<i64>,
    /// What happened, for people.
    pub message: String,
}

/// The error code of a message refused because the WhatsApp window is closed.
pub const WINDOW_CLOSED: &str = "session_window_closed";
/// The error code of a message that failed because the provider refused the account's
/// credentials (401 or 403) for longer than `--credentials-retry-for`.
pub const CREDENTIALS_REJECTED: &str = "credentials_rejected";
/// Twilio's code for a free-form message outside the window.
pub const TWILIO_WINDOW_CLOSED: i64 = 63016;

/// An outgoing message as stored and as the desk sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMessage {
    /// The gateway's ID of the message.
    pub id: String,
    /// Always `out`.
    pub direction: String,
    /// Who wrote it.
    pub author: Author,
    /// The agent, when the desk named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    /// The caller's ID of the message (agent and bot messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// The automated messages it carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// What it says.
    pub contents: Vec<OutContent>,
    /// Where it is.
    pub status: Status,
    /// The provider's IDs of what it sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_message_ids: Vec<String>,
    /// Why it was not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SendError>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
}

/// The name of a trigger as messages list it; the survey is `PostConversationSurvey`.
pub fn trigger_name(trigger: Option<Trigger>) -> String {
    match trigger {
        Some(t) => format!("{t:?}"),
        None => "PostConversationSurvey".to_owned(),
    }
}

/// Whether a file is an image LINE shows inline (JPEG or PNG).
fn line_image(content_type: Option<&str>, file_name: Option<&str>, url: &str) -> bool {
    let by_type = content_type.is_some_and(|t| matches!(t.to_ascii_lowercase().as_str(), "image/jpeg" | "image/png"));
    let ext = super::attachments::extension(file_name, Some(url)).map(|e| e.to_ascii_lowercase());
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

/// The Twilio message for the contents: texts are joined into one body; an attachment goes as
/// media with its caption; a template by its Content SID. A send holds texts, or one attachment,
/// or one template, never a mix (see [`super::sender`]).
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

/// Whether the contents are free-form (anything but a template), which WhatsApp allows only
/// inside the 24-hour window.
pub fn free_form(contents: &[OutContent]) -> bool {
    contents.iter().any(|c| !matches!(c, OutContent::Template { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> OutContent {
        OutContent::Text { text: t.into() }
    }

    fn attachment(url: &str, name: Option<&str>, content_type: Option<&str>) -> OutContent {
        OutContent::Attachment { url: url.into(), file_name: name.map(Into::into), content_type: content_type.map(Into::into), caption: Some("here".into()) }
    }

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

    #[test]
    fn only_templates_are_not_free_form() {
        let template = OutContent::Template { name: "t".into(), language: "en".into(), variables: BTreeMap::new(), text: "x".into(), content_sid: Some("HX1".into()) };
        assert!(!free_form(std::slice::from_ref(&template)));
        assert!(free_form(&[template, text("a")]));
    }
}
