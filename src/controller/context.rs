//! What every reconciler shares: the API client, the provider clients, the event recorder, the
//! settings, the metrics, and the in-memory bookkeeping that keeps provider calls rare.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Client, Resource};

use crate::backoff::{Backoff, Failures};
use super::acceptance::SpecChecks;
use super::configs::Configs;
use super::gateway_objects::GatewayImage;
use super::metrics::Metrics;
use super::object_key;
use crate::api::{MessageTemplate, MessagingAccount, RoutingRule, Workstream};
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
    /// How often a verified account's credentials are checked again.
    pub recheck_interval: Duration,
    /// How often a registered webhook is read again (and put back when changed at the provider).
    pub webhook_recheck_interval: Duration,
    /// How often a template under review is polled.
    pub approval_pending_interval: Duration,
    /// How often a template whose review ended is polled (it may be paused or disabled later).
    pub approval_settled_interval: Duration,
    /// Retry delays after failures.
    pub backoff: Backoff,
    /// How long deletion waits for provider-side clean-up before giving up on it.
    pub cleanup_timeout: Duration,
    /// The image the gateway Deployments run.
    pub gateway_image: GatewayImage,
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
    /// When each account's provider checks are next due, by object UID.
    pub verified: Mutex<HashMap<String, Verified>>,
    /// When each Content's approval is next read from the provider, by Content SID.
    pub approval_due: Mutex<HashMap<String, Instant>>,
    /// Every MessagingAccount the controller sees.
    pub accounts: Store<MessagingAccount>,
    /// Every Workstream the controller sees.
    pub workstreams: Store<Workstream>,
    /// Every RoutingRule the controller sees.
    pub rules: Store<RoutingRule>,
    /// Every MessageTemplate the controller sees.
    pub templates: Store<MessageTemplate>,
    /// The gateway configurations as written to their ConfigMaps.
    pub configs: Configs,
    /// The spec checks of workstreams and rules, by UID and generation.
    pub spec_checks: SpecChecks,
    /// The metrics served on `/metrics`; the provider clients report their calls to them too.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// The metrics as Prometheus text, after counting the objects in backoff: counted when
    /// scraped, from the failure counts and the stores, so that a deleted object stops counting.
    pub fn metrics_text(&self) -> String {
        let failing = self.failures.failing();
        self.set_in_backoff(&self.accounts, &failing);
        self.set_in_backoff(&self.templates, &failing);
        self.set_in_backoff(&self.workstreams, &failing);
        self.set_in_backoff(&self.rules, &failing);
        self.metrics.encode()
    }

    /// Forgets the spec checks of deleted workstreams and rules once they outnumber the live
    /// ones, so that the memo stays as large as the stores.
    pub fn prune_spec_checks(&self) {
        let (workstreams, rules) = (self.workstreams.state(), self.rules.state());
        if self.spec_checks.len() <= 2 * (workstreams.len() + rules.len()) {
            return;
        }
        let live: HashSet<&str> = workstreams.iter().filter_map(|w| w.meta().uid.as_deref()).chain(rules.iter().filter_map(|r| r.meta().uid.as_deref())).collect();
        self.spec_checks.retain(|uid| live.contains(uid));
    }

    fn set_in_backoff<K: Resource<DynamicType = ()> + Clone>(&self, store: &Store<K>, failing: &HashSet<String>) {
        let objects = if failing.is_empty() { 0 } else { store.state().iter().filter(|o| failing.contains(&object_key(&***o))).count() };
        self.metrics.set_in_backoff(K::kind(&()), objects);
    }
}

/// The last provider check of an account: it stands until its inputs change or it is due, so
/// that other triggers (the gateway's objects changing, say) cause no provider calls: neither
/// before a re-check nor before a failure's backoff or Retry-After is over.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The account's generation and the versions of the Secrets it read.
    pub fingerprint: String,
    /// When to look again: the webhook is re-read sooner than the credentials are checked.
    pub due: Instant,
    /// When the credentials are checked again.
    pub credentials_due: Instant,
    /// Whether the check failed (the wait is a backoff, and the failure count must stay).
    pub failed: bool,
}
