//! The controller's Prometheus metrics, served as text on the probe port's `/metrics`
//! (`--probe-addr`, beside `/healthz` and `/readyz`). Every family has the prefix
//! `switchboard_controller_`; `kind` is the resource kind (MessagingAccount, MessageTemplate,
//! Workstream, RoutingRule).
//!
//! kube-runtime keeps its work queue (scheduler and runner) private, so no metric here is that
//! queue's depth. Two gauges stand in for it and count exactly this:
//! - `reconciles_in_flight{kind}`: reconciles running now. Workstream and RoutingRule run at most
//!   [`REPORTER_CONCURRENCY`] (8) at once (accounts and templates are not limited), so a gauge
//!   that stays at that limit means objects are waiting their turn; how many, it cannot tell.
//! - `objects_in_backoff{kind}`: objects that exist and whose latest reconcile failed, so a retry
//!   is scheduled after a backoff or the provider's Retry-After; counted when scraped. Periodic
//!   re-checks of healthy objects are scheduled too, but are not a backlog and not counted.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use kube::Resource;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::REPORTER_CONCURRENCY;
use crate::api::{MessageTemplate, MessagingAccount, RoutingRule, Workstream};
use crate::metrics::{Connections, ProviderCalls};

/// How a reconcile ended, told apart by the object's failure count before and after it, since
/// the reconcilers turn provider failures into a requeue, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// Nothing failed: the object waits for a change or its periodic re-check. (A spec the
    /// controller refuses is a success here; its conditions say what is wrong.)
    Success,
    /// A failure was handled (the provider unavailable or rate limiting, a rejected call) and a
    /// retry scheduled after a backoff or Retry-After.
    Retry,
    /// An earlier failure's wait was not over, so nothing was tried; the retry stays scheduled.
    Backoff,
    /// The reconcile returned an error (a Kubernetes API call, the finalizer, unfinished
    /// clean-up); the error policy schedules the retry.
    Error,
}

impl ReconcileOutcome {
    /// The outcome of a reconcile that returned `ok` and changed the object's consecutive failures
    /// from `before` to `after`.
    pub fn of(ok: bool, before: u32, after: u32) -> Self {
        match (ok, after) {
            (false, _) => Self::Error,
            (true, 0) => Self::Success,
            (true, after) if after > before => Self::Retry,
            (true, _) => Self::Backoff,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Backoff => "backoff",
            Self::Error => "error",
        }
    }
}

/// Labels with only a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The resource kind.
    pub kind: Cow<'static, str>,
}

/// Labels of finished reconciles.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// The resource kind.
    pub kind: Cow<'static, str>,
    /// [`ReconcileOutcome::label`].
    pub outcome: &'static str,
}

/// Every metric of the controller.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<KindLabels, Gauge>,
    in_backoff: Family<KindLabels, Gauge>,
    /// Provider API calls by operation and outcome; the provider clients report to it.
    pub provider_calls: ProviderCalls,
    /// Connections of the probe port.
    pub connections: Connections,
}

/// 5 ms to about 80 s: a reconcile without provider calls takes milliseconds, one whose calls
/// are retried up to their 30 s budget, or that cleans up at a slow provider, tens of seconds.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchboard_controller");
        let reconciles = Family::default();
        registry.register("reconciles", "Finished reconciles by kind and outcome (success, retry, backoff, error)", reconciles.clone());
        let reconcile_seconds = Family::new_with_constructor(duration_buckets as fn() -> Histogram);
        registry.register("reconcile_duration_seconds", "Time of each finished reconcile, by kind", reconcile_seconds.clone());
        let in_flight: Family<KindLabels, Gauge> = Family::default();
        registry.register(
            "reconciles_in_flight",
            format!("Reconciles running now, by kind (Workstream and RoutingRule run at most {REPORTER_CONCURRENCY} at once)"),
            in_flight.clone(),
        );
        let in_backoff: Family<KindLabels, Gauge> = Family::default();
        registry.register(
            "objects_in_backoff",
            "Existing objects whose latest reconcile failed and whose retry is scheduled, by kind",
            in_backoff.clone(),
        );
        let provider_calls = ProviderCalls::default();
        provider_calls.register(&mut registry);
        let connections = Connections::default();
        connections.register(&mut registry);
        // The gauges show 0 before the first reconcile rather than nothing.
        for kind in [MessagingAccount::kind(&()), MessageTemplate::kind(&()), Workstream::kind(&()), RoutingRule::kind(&())] {
            in_flight.get_or_create(&KindLabels { kind: kind.clone() }).set(0);
            in_backoff.get_or_create(&KindLabels { kind }).set(0);
        }
        Self { registry, reconciles, reconcile_seconds, in_flight, in_backoff, provider_calls, connections }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        crate::metrics::encode(&self.registry)
    }

    /// Counts a reconcile of `kind` in flight until the returned guard is finished or dropped.
    pub fn reconcile_started(&self, kind: Cow<'static, str>) -> Reconciling<'_> {
        let in_flight = self.in_flight.get_or_create_owned(&KindLabels { kind: kind.clone() });
        in_flight.inc();
        Reconciling { metrics: self, kind, started: Instant::now(), in_flight }
    }

    /// Counts a finished reconcile and its duration.
    pub fn reconciled(&self, kind: Cow<'static, str>, outcome: ReconcileOutcome, took: Duration) {
        self.reconcile_seconds.get_or_create(&KindLabels { kind: kind.clone() }).observe(took.as_secs_f64());
        self.reconciles.get_or_create(&ReconcileLabels { kind, outcome: outcome.label() }).inc();
    }

    /// Sets how many objects of `kind` wait for a retry.
    pub fn set_in_backoff(&self, kind: Cow<'static, str>, objects: usize) {
        self.in_backoff.get_or_create(&KindLabels { kind }).set(i64::try_from(objects).unwrap_or(i64::MAX));
    }
}

/// A reconcile in flight. Dropped unfinished (its future cancelled), it leaves the in-flight gauge
/// without being counted as finished.
pub struct Reconciling<'a> {
    metrics: &'a Metrics,
    kind: Cow<'static, str>,
    started: Instant,
    in_flight: Gauge,
}

impl Reconciling<'_> {
    /// Counts the reconcile as finished with `outcome`.
    pub fn finished(self, outcome: ReconcileOutcome) {
        self.metrics.reconciled(self.kind.clone(), outcome, self.started.elapsed());
    }
}

impl Drop for Reconciling<'_> {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{CallObserver, CallOutcome, Operation};

    #[test]
    fn outcome_follows_the_failure_count() {
        assert_eq!(ReconcileOutcome::of(true, 0, 0), ReconcileOutcome::Success);
        assert_eq!(ReconcileOutcome::of(true, 3, 0), ReconcileOutcome::Success);
        assert_eq!(ReconcileOutcome::of(true, 0, 1), ReconcileOutcome::Retry);
        assert_eq!(ReconcileOutcome::of(true, 2, 3), ReconcileOutcome::Retry);
        assert_eq!(ReconcileOutcome::of(true, 2, 2), ReconcileOutcome::Backoff);
        assert_eq!(ReconcileOutcome::of(false, 0, 0), ReconcileOutcome::Error);
        assert_eq!(ReconcileOutcome::of(false, 1, 1), ReconcileOutcome::Error);
    }

    #[test]
    fn text_format_names_every_family_with_its_labels() {
        let m = Metrics::default();
        let running = m.reconcile_started("Workstream".into());
        let text = m.encode();
        assert!(text.contains(r#"switchboard_controller_reconciles_in_flight{kind="Workstream"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_reconciles_in_flight{kind="RoutingRule"} 0"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_objects_in_backoff{kind="MessageTemplate"} 0"#), "{text}");
        running.finished(ReconcileOutcome::Success);
        m.reconciled("MessagingAccount".into(), ReconcileOutcome::Retry, Duration::from_millis(30));
        m.set_in_backoff("MessagingAccount".into(), 2);
        m.provider_calls.observe(Operation::LineBotInfo, CallOutcome::Success);
        m.provider_calls.observe(Operation::TwilioAccount, CallOutcome::RateLimited);
        m.provider_calls.observe(Operation::TwilioAccount, CallOutcome::RateLimited);

        let text = m.encode();
        assert!(text.contains(r#"switchboard_controller_reconciles_total{kind="Workstream",outcome="success"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_reconciles_total{kind="MessagingAccount",outcome="retry"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_reconciles_in_flight{kind="Workstream"} 0"#), "{text}");
        assert!(text.contains("# TYPE switchboard_controller_reconcile_duration_seconds histogram"), "{text}");
        assert!(text.contains(r#"switchboard_controller_reconcile_duration_seconds_count{kind="MessagingAccount"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_reconcile_duration_seconds_bucket{le="0.04",kind="MessagingAccount"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_objects_in_backoff{kind="MessagingAccount"} 2"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_provider_calls_total{operation="line_bot_info",outcome="success"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_controller_provider_calls_total{operation="twilio_account",outcome="rate_limited"} 2"#), "{text}");
    }

    #[test]
    fn a_cancelled_reconcile_leaves_the_gauge_uncounted() {
        let m = Metrics::default();
        drop(m.reconcile_started("MessageTemplate".into()));
        let text = m.encode();
        assert!(text.contains(r#"switchboard_controller_reconciles_in_flight{kind="MessageTemplate"} 0"#), "{text}");
        assert!(!text.contains("switchboard_controller_reconciles_total{"), "{text}");
    }
}
