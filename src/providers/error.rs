//! The one error type of the provider clients, shaped for the controller's condition reasons.

use std::fmt;
use std::time::Duration;

/// Which provider call failed; part of every error's message and of the per-call log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// LINE `GET /v2/bot/info`, the credential check.
    LineBotInfo,
    /// LINE `GET /v2/bot/channel/webhook/endpoint`.
    LineGetWebhook,
    /// LINE `PUT /v2/bot/channel/webhook/endpoint`.
    LineSetWebhook,
    /// LINE `POST /v2/bot/channel/webhook/test`.
    LineTestWebhook,
    /// LINE `GET /v2/bot/profile/{userId}`.
    LineProfile,
    /// LINE `POST /v2/bot/message/reply`.
    LineReply,
    /// LINE `POST /v2/bot/message/push`.
    LinePush,
    /// LINE `GET /v2/bot/message/{messageId}/content`.
    LineContent,
    /// LINE `POST /v2/bot/chat/markAsRead`.
    LineMarkAsRead,
    /// LINE `POST /v2/bot/chat/loading/start`.
    LineLoading,
    /// Twilio `GET /2010-04-01/Accounts/{Sid}.json`, the credential check.
    TwilioAccount,
    /// Twilio `GET …/IncomingPhoneNumbers.json`.
    TwilioListNumbers,
    /// Twilio `POST …/IncomingPhoneNumbers/{Sid}.json`.
    TwilioUpdateNumber,
    /// Twilio `POST /v1/Services/{Sid}` (Messaging Service).
    TwilioUpdateService,
    /// Twilio `POST /v2/Channels/Senders/{Sid}` (WhatsApp sender).
    TwilioUpdateSender,
    /// Twilio `GET /v2/Channels/Senders?Channel=whatsapp`.
    TwilioListSenders,
    /// Twilio `GET /v1/Services/{Sid}/PhoneNumbers` (a Messaging Service's numbers).
    TwilioListServiceNumbers,
    /// Twilio `GET /v1/Services/{Sid}/ChannelSenders` (a Messaging Service's WhatsApp senders).
    TwilioListServiceSenders,
    /// Twilio `POST …/Messages.json`.
    TwilioSendMessage,
    /// Twilio `GET /v1/Content`.
    TwilioListContent,
    /// Twilio `POST /v1/Content`.
    TwilioCreateContent,
    /// Twilio `POST /v1/Content/{Sid}/ApprovalRequests/whatsapp`.
    TwilioSubmitApproval,
    /// Twilio `GET /v1/Content/{Sid}/ApprovalRequests`.
    TwilioApprovalStatus,
    /// Twilio `DELETE /v1/Content/{Sid}`.
    TwilioDeleteContent,
    /// Twilio `GET …/Messages/{Sid}/Media/{Sid}` (a customer's media), redirects followed.
    TwilioMedia,
    /// Twilio `POST /v2/Indicators/Typing.json` (messaging host).
    TwilioTyping,
}

impl Operation {
    /// A short human name such as "LINE push".
    pub fn name(self) -> &'static str {
        match self {
            Self::LineBotInfo => "LINE bot info",
            Self::LineGetWebhook => "LINE get webhook endpoint",
            Self::LineSetWebhook => "LINE set webhook endpoint",
            Self::LineTestWebhook => "LINE test webhook endpoint",
            Self::LineProfile => "LINE profile",
            Self::LineReply => "LINE reply",
            Self::LinePush => "LINE push",
            Self::LineContent => "LINE message content",
            Self::LineMarkAsRead => "LINE mark as read",
            Self::LineLoading => "LINE loading animation",
            Self::TwilioAccount => "Twilio fetch account",
            Self::TwilioListNumbers => "Twilio list incoming numbers",
            Self::TwilioUpdateNumber => "Twilio update incoming number",
            Self::TwilioUpdateService => "Twilio update messaging service",
            Self::TwilioUpdateSender => "Twilio update WhatsApp sender",
            Self::TwilioListSenders => "Twilio list WhatsApp senders",
            Self::TwilioListServiceNumbers => "Twilio list messaging service numbers",
            Self::TwilioListServiceSenders => "Twilio list messaging service senders",
            Self::TwilioSendMessage => "Twilio send message",
            Self::TwilioListContent => "Twilio list content",
            Self::TwilioCreateContent => "Twilio create content",
            Self::TwilioSubmitApproval => "Twilio submit WhatsApp approval",
            Self::TwilioApprovalStatus => "Twilio approval status",
            Self::TwilioDeleteContent => "Twilio delete content",
            Self::TwilioMedia => "Twilio media download",
            Self::TwilioTyping => "Twilio typing indicator",
        }
    }

    /// A stable snake_case identifier such as "line_push", for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::LineBotInfo => "line_bot_info",
            Self::LineGetWebhook => "line_get_webhook",
            Self::LineSetWebhook => "line_set_webhook",
            Self::LineTestWebhook => "line_test_webhook",
            Self::LineProfile => "line_profile",
            Self::LineReply => "line_reply",
            Self::LinePush => "line_push",
            Self::LineContent => "line_content",
            Self::LineMarkAsRead => "line_mark_as_read",
            Self::LineLoading => "line_loading",
            Self::TwilioAccount => "twilio_account",
            Self::TwilioListNumbers => "twilio_list_numbers",
            Self::TwilioUpdateNumber => "twilio_update_number",
            Self::TwilioUpdateService => "twilio_update_service",
            Self::TwilioUpdateSender => "twilio_update_sender",
            Self::TwilioListSenders => "twilio_list_senders",
            Self::TwilioListServiceNumbers => "twilio_list_service_numbers",
            Self::TwilioListServiceSenders => "twilio_list_service_senders",
            Self::TwilioSendMessage => "twilio_send_message",
            Self::TwilioListContent => "twilio_list_content",
            Self::TwilioCreateContent => "twilio_create_content",
            Self::TwilioSubmitApproval => "twilio_submit_approval",
            Self::TwilioApprovalStatus => "twilio_approval_status",
            Self::TwilioDeleteContent => "twilio_delete_content",
            Self::TwilioMedia => "twilio_media",
            Self::TwilioTyping => "twilio_typing",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed provider call. No variant carries a credential: details are built from status codes,
/// the provider's own error body (with the credential scrubbed) and transport error kinds.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the credentials (HTTP 401).
    #[error("{operation}: the provider refused the credentials (HTTP 401{}): {message}", Code(*.code))]
    Unauthorized {
        /// The call that failed.
        operation: Operation,
        /// The provider's error code (Twilio's `code`, e.g. 20003); LINE sends none.
        code: Option<i64>,
        /// The provider's message, if it sent one.
        message: String,
    },
    /// The addressed resource does not exist (HTTP 404).
    #[error("{operation}: not found: {message}")]
    NotFound {
        /// The call that failed.
        operation: Operation,
        /// The provider's message, if it sent one.
        message: String,
    },
    /// The provider is rate limiting (HTTP 429) and the wait was not done here: the call may not
    /// be repeated automatically, the wait is longer than the retry policy allows, or the
    /// attempts ran out.
    #[error("{operation}: rate limited{}", RetryAfter(*.retry_after))]
    RateLimited {
        /// The call that failed.
        operation: Operation,
        /// How long the provider asked to wait (`Retry-After`), when it said.
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached or failed (5xx, timeout, connection error).
    #[error("{operation}: provider unavailable: {detail}")]
    Unavailable {
        /// The call that failed.
        operation: Operation,
        /// What went wrong, e.g. "HTTP 503" or "timed out after 10s".
        detail: String,
    },
    /// The provider refused the request (a 4xx other than 401, 404 and 429), with its own reason.
    #[error("{operation}: rejected by the provider (HTTP {status}{}): {message}", Code(*.code))]
    Rejected {
        /// The call that failed.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// The provider's error code (Twilio's `code`, e.g. 63016); LINE sends none.
        code: Option<i64>,
        /// The provider's message, with LINE's `details` appended.
        message: String,
    },
    /// A success response whose body is not what the API documents.
    #[error("{operation}: invalid response: {detail}")]
    InvalidResponse {
        /// The call that failed.
        operation: Operation,
        /// Why the body was not accepted.
        detail: String,
    },
    /// The request was not sent because the API would refuse it (e.g. more than 5 LINE messages).
    #[error("{operation}: invalid request: {detail}")]
    InvalidRequest {
        /// The call that was not made.
        operation: Operation,
        /// Which rule the request breaks.
        detail: String,
    },
    /// A response body is larger than the caller's limit; it was not read to the end.
    #[error("{operation}: response larger than the limit of {limit} bytes")]
    TooLarge {
        /// The call that failed.
        operation: Operation,
        /// The limit in bytes.
        limit: u64,
    },
}

impl ProviderError {
    /// The call that failed.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Unauthorized { operation, .. }
            | Self::NotFound { operation, .. }
            | Self::RateLimited { operation, .. }
            | Self::Unavailable { operation, .. }
            | Self::Rejected { operation, .. }
            | Self::InvalidResponse { operation, .. }
            | Self::InvalidRequest { operation, .. }
            | Self::TooLarge { operation, .. } => *operation,
        }
    }
}

/// Formats an optional `Retry-After` for the `RateLimited` message.
struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(delay) => write!(f, "; retry after {:.3}s", delay.as_secs_f64()),
            None => Ok(()),
        }
    }
}

/// Formats an optional provider error code for the `Unauthorized` and `Rejected` messages.
struct Code(Option<i64>);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(code) => write!(f, ", code {code}"),
            None => Ok(()),
        }
    }
}

/// The shared HTTP client could not be built (the TLS backend failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the provider HTTP client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_operation_and_the_details() {
        let err = ProviderError::Rejected {
            operation: Operation::TwilioSendMessage,
            status: 400,
            code: Some(63016),
            message: "outside the window".into(),
        };
        assert_eq!(
            err.to_string(),
            "Twilio send message: rejected by the provider (HTTP 400, code 63016): outside the window"
        );
        let err =
            ProviderError::RateLimited { operation: Operation::LinePush, retry_after: Some(Duration::from_secs(30)) };
        assert_eq!(err.to_string(), "LINE push: rate limited; retry after 30.000s");
        let err = ProviderError::RateLimited { operation: Operation::LinePush, retry_after: None };
        assert_eq!(err.to_string(), "LINE push: rate limited");
        assert_eq!(err.operation(), Operation::LinePush);
    }
}
