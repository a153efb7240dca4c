//! How a failed provider call shows in a condition, and when to try again.

use std::time::Duration;

use crate::api::conditions::{Observation, Status};
use crate::providers::ProviderError;

/// When to retry after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// After the object's next exponential backoff delay.
    Backoff,
    /// After the delay the provider asked for (429 `Retry-After`), or the backoff if longer.
    After(Duration),
}

/// A provider failure as a False condition of `type_`, and when to retry. The message is the
/// error's own, which names the call and never carries a credential; it leaves out the
/// `Retry-After` figure so that repeated 429s do not rewrite the status each time.
pub fn failure(type_: &str, error: &ProviderError) -> (Observation, Retry) {
    let (reason, message, retry) = match error {
        ProviderError::Unauthorized { .. } => ("Unauthorized", error.to_string(), Retry::Backoff),
        ProviderError::RateLimited { operation, retry_after } => (
            "RateLimited",
            format!("{operation}: the provider is rate limiting; retrying after its Retry-After"),
            retry_after.map_or(Retry::Backoff, Retry::After),
        ),
        ProviderError::Unavailable { .. } | ProviderError::InvalidResponse { .. } | ProviderError::TooLarge { .. } => {
            ("ProviderUnavailable", error.to_string(), Retry::Backoff)
        }
        ProviderError::NotFound { .. } | ProviderError::Rejected { .. } | ProviderError::InvalidRequest { .. } => {
            ("ProviderRejected", error.to_string(), Retry::Backoff)
        }
    };
    (Observation::new(type_, Status::False, reason, message), retry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Operation;

    #[test]
    fn reasons_follow_the_error_kind() {
        let unauthorized = ProviderError::Unauthorized { operation: Operation::LineBotInfo, code: None, message: "Authentication failed".into() };
        let (obs, retry) = failure("CredentialsValid", &unauthorized);
        assert_eq!((obs.status, obs.reason.as_str(), retry), (Status::False, "Unauthorized", Retry::Backoff));
        assert!(obs.message.contains("LINE bot info"), "{}", obs.message);

        let down = ProviderError::Unavailable { operation: Operation::TwilioAccount, detail: "HTTP 500".into() };
        let (obs, _) = failure("CredentialsValid", &down);
        assert_eq!(obs.reason, "ProviderUnavailable");
        assert!(obs.message.contains("HTTP 500"));

        let rejected = ProviderError::Rejected { operation: Operation::TwilioCreateContent, status: 400, code: Some(20001), message: "bad".into() };
        assert_eq!(failure("Synced", &rejected).0.reason, "ProviderRejected");
    }

    #[test]
    fn rate_limits_wait_for_retry_after_and_keep_a_stable_message() {
        let a = ProviderError::RateLimited { operation: Operation::LineBotInfo, retry_after: Some(Duration::from_secs(30)) };
        let b = ProviderError::RateLimited { operation: Operation::LineBotInfo, retry_after: Some(Duration::from_secs(12)) };
        let (obs_a, retry_a) = failure("CredentialsValid", &a);
        let (obs_b, _) = failure("CredentialsValid", &b);
        assert_eq!(retry_a, Retry::After(Duration::from_secs(30)));
        assert_eq!(obs_a, obs_b);
        let c = ProviderError::RateLimited { operation: Operation::LineBotInfo, retry_after: None };
        assert_eq!(failure("CredentialsValid", &c).1, Retry::Backoff);
    }
}
