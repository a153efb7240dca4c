//! LINE and Twilio clients, with one error type.
//!
//! A process builds one [`Providers`] from its [`ProviderEndpoints`] (flags or environment) and
//! [`ClientConfig`], and from it a cheap [`LineClient`] or [`TwilioClient`] per account; they all
//! share one connection pool. Every call has a timeout; calls that are safe to repeat are retried
//! with backoff (see [`RetryPolicy`]); failures are [`ProviderError`]s, which never carry a
//! credential. An optional [`CallObserver`] is told how every call ended (the metrics).

pub mod credentials;
pub mod endpoints;
pub mod error;
mod http;
pub(crate) use http::parse_retry_after;
pub mod line;
pub mod twilio;

use std::sync::Arc;

pub use credentials::{LineCredentials, Secret, TwilioCredentials};
pub use endpoints::ProviderEndpoints;
pub use error::{ClientBuildError, Operation, ProviderError};
pub use http::{CallObserver, CallOutcome, ClientConfig, RetryPolicy};
pub use line::LineClient;
pub use twilio::TwilioClient;

/// The provider HTTP client of a process, from which per-account clients are made.
#[derive(Clone, Debug)]
pub struct Providers {
    transport: http::Transport,
    endpoints: Arc<ProviderEndpoints>,
}

impl Providers {
    /// Builds the shared HTTP client.
    pub fn new(endpoints: ProviderEndpoints, config: ClientConfig) -> Result<Self, ClientBuildError> {
        Ok(Self { transport: http::Transport::new(config)?, endpoints: Arc::new(endpoints) })
    }

    /// The same clients, telling `observer` how each call ends; clients made before keep theirs.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.transport.observer = Some(observer);
        self
    }

    /// Where the clients send their calls.
    pub fn endpoints(&self) -> &ProviderEndpoints {
        &self.endpoints
    }

    /// A client for one LINE channel.
    pub fn line(&self, credentials: LineCredentials) -> LineClient {
        LineClient::new(self.transport.clone(), Arc::clone(&self.endpoints), credentials)
    }

    /// A client for one Twilio account.
    pub fn twilio(&self, credentials: TwilioCredentials) -> TwilioClient {
        TwilioClient::new(self.transport.clone(), Arc::clone(&self.endpoints), credentials)
    }
}
