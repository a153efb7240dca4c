//! Provider credentials: a secret string that never prints, and the per-provider credential sets.

use std::fmt;

/// What a secret prints as in `Debug` and `Display`.
const REDACTED: &str = "<redacted>";

/// A secret value (a token or password). `Debug` and `Display` print `<redacted>`, and it has no
/// `Serialize`, so it cannot reach a log line, an error message or a status by accident. It can
/// be read from configuration files (the simulator's).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it (an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of this secret in `text`, for strings that came from outside
    /// (a provider's error message could echo what it was sent).
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() { text.to_owned() } else { text.replace(&self.0, REDACTED) }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A LINE channel's credentials for the Messaging API.
#[derive(Clone, Debug)]
pub struct LineCredentials {
    /// The channel access token, sent as a bearer token.
    pub channel_access_token: Secret,
}

/// A Twilio account's credentials (HTTP Basic `AccountSid:AuthToken`).
#[derive(Clone, Debug)]
pub struct TwilioCredentials {
    /// The account SID (`AC…`); not secret, it appears in every request path.
    pub account_sid: String,
    /// The auth token.
    pub auth_token: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("s3cr3t-token");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.to_string(), "<redacted>");
        let creds = TwilioCredentials { account_sid: "AC1".into(), auth_token: secret };
        assert!(!format!("{creds:?}").contains("s3cr3t"));
    }

    #[test]
    fn scrub_removes_every_occurrence() {
        let secret = Secret::new("tok");
        assert_eq!(secret.scrub("a tok b tok"), "a <redacted> b <redacted>");
        assert_eq!(Secret::new("").scrub("unchanged"), "unchanged");
    }
}
