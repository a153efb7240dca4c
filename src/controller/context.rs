//! What every reconciler shares: the API client, the provider clients, the event recorder, the
//! settings, and the in-memory bookkeeping that keeps provider calls rare.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use super::backoff::{Backoff, Failures};
use crate::api::MessageTemplate;
use crate::api::validation::UrlPolicy;
use crate::providers::Providers;

/// The cloud the controller runs in. LINE is not offered in government clouds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudRegion {
    /// A commercial region: every provider is available.
    #[default]
    Commercial,
    /// A government cloud region: LINE accounts are refused.
    Government,
}

/// Timing and policy of the reconcilers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Which webhook base URLs are acceptable.
    pub url_policy: UrlPolicy,
    /// The cloud region.
    pub region: CloudRegion,
    /// How often a verified account's credentials and webhook are checked again.
    pub recheck_interval: Duration,
    /// How often a template under review is polled.
    pub approval_pending_interval: Duration,
    /// How often a template whose review ended is polled (it may be paused or disabled later).
    pub approval_settled_interval: Duration,
    /// Retry delays after failures.
    pub backoff: Backoff,
    /// How long deletion waits for provider-side clean-up before giving up on it.
    pub cleanup_timeout: Duration,
}

/// The shared state of the reconcilers.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The provider HTTP clients.
    pub providers: Providers,
    /// Publishes events.
    pub recorder: Recorder,
    /// Timing and policy.
    pub settings: Settings,
    /// Consecutive failures per object, for backoff.
    pub failures: Failures,
    /// Accounts whose credentials and webhook were verified, by object UID.
    pub verified: Mutex<HashMap<String, Verified>>,
    /// When each Content's approval is next read from the provider, by Content SID.
    pub approval_due: Mutex<HashMap<String, Instant>>,
    /// Every MessageTemplate the controller sees (for templateName uniqueness).
    pub templates: Store<MessageTemplate>,
}

/// The last full verification of an account: valid until its inputs change or it is due.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The account's generation and the versions of the Secrets it read.
    pub fingerprint: String,
    /// When to verify again.
    pub due: Instant,
}
