//! The end of a provider-side clean-up on deletion. A provider outage delays deletion, with
//! backoff, for at most the clean-up timeout; a failure that waiting cannot fix (the Secret is
//! gone, the credentials are refused) does not delay it at all. Either way an event says what
//! was left behind, and the finalizer goes.

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::runtime::controller::Action;

use super::context::Context;
use super::secrets::CredentialError;
use super::status::{self, Notice};
use super::{Error, deleting_for};
use crate::providers::ProviderError;

/// Why a clean-up stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Abandon {
    /// Worth another try later (provider unavailable or rate limiting).
    Retry(String),
    /// Waiting will not help.
    Now(String),
}

impl From<ProviderError> for Abandon {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::Unavailable { .. } | ProviderError::RateLimited { .. } => Abandon::Retry(error.to_string()),
            _ => Abandon::Now(error.to_string()),
        }
    }
}

impl From<CredentialError> for Abandon {
    fn from(error: CredentialError) -> Self {
        match error {
            CredentialError::Unreadable { .. } => Abandon::Retry(error.to_string()),
            CredentialError::SecretNotFound { .. } | CredentialError::SecretKeyMissing { .. } => Abandon::Now(error.to_string()),
        }
    }
}

/// Finishes a clean-up attempt: `Ok(done)` publishes `done` under `reason`; a failure either
/// retries (Err keeps the finalizer, the error policy backs off) or gives up with an event
/// naming `left_behind`.
pub async fn conclude<K>(ctx: &Context, object: &K, result: Result<String, Abandon>, reason: &str, left_behind: &str) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    let regarding = object.object_ref(&());
    let (detail, now) = match result {
        Ok(done) => {
            status::publish(&ctx.recorder, &regarding, &[Notice::normal(reason, done)]).await;
            return Ok(Action::await_change());
        }
        Err(Abandon::Now(detail)) => (detail, true),
        Err(Abandon::Retry(detail)) => (detail, false),
    };
    if now || deleting_for(object) >= ctx.settings.cleanup_timeout {
        let note = format!("Gave up the provider-side clean-up ({detail}); left behind: {left_behind}");
        status::publish(&ctx.recorder, &regarding, &[Notice::warning("CleanupAbandoned", note)]).await;
        return Ok(Action::await_change());
    }
    Err(Error::CleanupPending(detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Operation;

    #[test]
    fn only_transient_failures_are_retried() {
        let down = ProviderError::Unavailable { operation: Operation::LineSetWebhook, detail: "HTTP 500".into() };
        assert!(matches!(Abandon::from(down), Abandon::Retry(_)));
        let limited = ProviderError::RateLimited { operation: Operation::LineSetWebhook, retry_after: None };
        assert!(matches!(Abandon::from(limited), Abandon::Retry(_)));
        let refused = ProviderError::Unauthorized { operation: Operation::LineSetWebhook, code: None, message: String::new() };
        assert!(matches!(Abandon::from(refused), Abandon::Now(_)));
        let gone = CredentialError::SecretNotFound { name: "s".into(), field: "spec.f".into() };
        assert_eq!(Abandon::from(gone), Abandon::Now("Secret s (named by spec.f) not found".into()));
        let unreadable = CredentialError::Unreadable { name: "s".into(), detail: "timeout".into() };
        assert!(matches!(Abandon::from(unreadable), Abandon::Retry(_)));
    }
}
