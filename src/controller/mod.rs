//! The operator: one process running a `kube::runtime::Controller` per kind, sharing a
//! [`Context`]. Each reconciler validates, resolves references, talks to the provider, and
//! writes the status only when it changed; failures back off per object.

mod acceptance;
pub mod account;
mod channels;
mod cleanup;
mod configs;
pub mod context;
pub mod gateway;
pub mod gateway_objects;
mod health;
pub mod leader;
mod metrics;
mod numbers;
mod provider_status;
pub mod reconcile_request;
pub mod routing_rule;
mod secrets;
mod status;
pub mod template;
pub mod template_plan;
pub mod workstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, Predicate, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::validation::UrlPolicy;
use crate::api::{MessageTemplate, MessagingAccount, RoutingRule, Workstream, duration};
use crate::providers::{ClientBuildError, ClientConfig, ProviderEndpoints, Providers};
use crate::backoff::{Backoff, jittered};
use crate::kube_client::kube_client;
use configs::Configs;
use context::{CloudRegion, Context, Settings};
use gateway_objects::GatewayImage;
use metrics::{Metrics, ReconcileOutcome};
use provider_status::Retry;

/// The finalizer on resources with provider-side state to clean up.
pub const FINALIZER: &str = "switchboard.dev/cleanup";

/// The name the controller reports events under.
const REPORTER: &str = "switchboard-controller";

/// The image of this release, which runs the gateway too.
const DEFAULT_GATEWAY_IMAGE: &str = concat!("ghcr.io/switchboard-dev/switchboard:", env!("CARGO_PKG_VERSION"));

/// Selects the objects the controller generates for gateways.
const GATEWAY_SELECTOR: &str = "app.kubernetes.io/managed-by=switchboard,app.kubernetes.io/name=switchboard-gateway";

/// Reconciles of workstreams or rules at once. Each reads the caches without copying them and
/// makes at most one status write, so the API server's latency is what limits them: a thousand
/// rules turning Ready together wait for their writes, 32 in flight (8 took 10 s for 1,000).
const REPORTER_CONCURRENCY: u16 = 32;

/// How long the account controller gathers triggers before rendering a configuration, so that
/// applying many rules at once renders once, not once per rule.
const RENDER_DEBOUNCE: Duration = Duration::from_millis(500);

/// Flags of `switchboard controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// Kubeconfig file to use; without it, the in-cluster configuration, else $KUBECONFIG or
    /// ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, visible_alias = "watch-namespace", env = "SWITCHBOARD_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Provider base URLs (point them at `switchboard simulate` for development).
    #[command(flatten)]
    pub endpoints: ProviderEndpoints,
    /// Accept http:// public base URLs on loopback hosts (local development only).
    #[arg(long, env = "SWITCHBOARD_ALLOW_HTTP_LOOPBACK")]
    pub allow_http_loopback: bool,
    /// The cloud region this controller runs in; LINE is not offered in government regions.
    #[arg(long, env = "SWITCHBOARD_CLOUD_REGION", value_enum, default_value_t)]
    pub cloud_region: CloudRegion,
    /// How often verified credentials are checked again (jittered ±10%).
    #[arg(long, value_parser = duration::parse_flag, default_value = "6h")]
    pub recheck_interval: Duration,
    /// How often a registered webhook is read again at the provider (jittered ±10%), so that a
    /// URL changed in the provider's console is put back within this interval.
    #[arg(long, value_parser = duration::parse_flag, default_value = "10m")]
    pub webhook_recheck_interval: Duration,
    /// How often a template under WhatsApp review is polled (jittered).
    #[arg(long, value_parser = duration::parse_flag, default_value = "5m")]
    pub approval_pending_interval: Duration,
    /// How often a template whose review ended is polled (jittered).
    #[arg(long, value_parser = duration::parse_flag, default_value = "6h")]
    pub approval_settled_interval: Duration,
    /// Retry delay after an object's first failure; it doubles per failure.
    #[arg(long, value_parser = duration::parse_flag, default_value = "5s")]
    pub min_backoff: Duration,
    /// Longest retry delay after failures.
    #[arg(long, value_parser = duration::parse_flag, default_value = "5m")]
    pub max_backoff: Duration,
    /// How long deletion waits for provider-side clean-up during a provider outage.
    #[arg(long, value_parser = duration::parse_flag, default_value = "10m")]
    pub cleanup_timeout: Duration,
    /// The image the gateway Deployments run (the same binary: `switchboard gateway`).
    #[arg(long, env = "SWITCHBOARD_GATEWAY_IMAGE", default_value = DEFAULT_GATEWAY_IMAGE)]
    pub gateway_image: String,
    /// The gateway containers' imagePullPolicy (default: the cluster's for the tag).
    #[arg(long, env = "SWITCHBOARD_GATEWAY_IMAGE_PULL_POLICY")]
    pub gateway_image_pull_policy: Option<String>,
    /// Address of the health endpoints (/healthz, /readyz) and of /metrics.
    #[arg(long, env = "SWITCHBOARD_PROBE_ADDR", default_value = "0.0.0.0:9080")]
    pub probe_addr: SocketAddr,
    /// Timeouts of the probe port.
    #[command(flatten)]
    pub timeouts: crate::serve::Timeouts,
    /// This instance's name in events (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Leader election on a Lease, so that only one replica reconciles.
    #[command(flatten)]
    pub leader_election: leader::LeaderElectionArgs,
}

impl ControllerArgs {
    fn settings(&self) -> Settings {
        Settings {
            url_policy: UrlPolicy { allow_http_loopback: self.allow_http_loopback },
            region: self.cloud_region,
            recheck_interval: self.recheck_interval,
            webhook_recheck_interval: self.webhook_recheck_interval,
            approval_pending_interval: self.approval_pending_interval,
            approval_settled_interval: self.approval_settled_interval,
            backoff: Backoff { min: self.min_backoff, max: self.max_backoff.max(self.min_backoff) },
            cleanup_timeout: self.cleanup_timeout,
            gateway_image: GatewayImage { image: self.gateway_image.clone(), pull_policy: self.gateway_image_pull_policy.clone() },
        }
    }

    async fn client(&self) -> Result<Client, ControllerError> {
        Ok(kube_client(self.kubeconfig.as_deref()).await?)
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No usable cluster connection.
    #[error("cannot connect to the cluster: {0}")]
    Kube(#[from] kube::Error),
    /// No cluster configuration was found.
    #[error("cannot find the cluster configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The provider HTTP client could not be built.
    #[error(transparent)]
    Providers(#[from] ClientBuildError),
    /// Leader election could not start, or the lease was lost.
    #[error(transparent)]
    LeaderElection(#[from] leader::LeaderError),
    /// The health endpoint could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A failed reconcile; the error policy retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer, or the work inside it, failed.
    #[error(transparent)]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    /// Provider-side clean-up failed and will be tried again.
    #[error("provider-side clean-up incomplete: {0}")]
    CleanupPending(String),
    /// The object has no namespace (every kind here is namespaced).
    #[error("the object has no namespace")]
    NotNamespaced,
}

/// What a reconciler wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Success: look again after this long (jittered).
    Recheck(Duration),
    /// Nothing to do until the object or something it depends on changes.
    AwaitChange,
    /// A failure worth another try.
    Retry(Retry),
    /// An earlier failure's wait is not over: look again after this long, counting nothing.
    Hold(Duration),
}

/// Turns what a reconciler wants into an action, keeping the object's failure count.
fn next_action(ctx: &Context, key: &str, next: Next) -> Action {
    match next {
        Next::Recheck(after) => {
            ctx.failures.succeeded(key);
            Action::requeue(jittered(after))
        }
        Next::AwaitChange => {
            ctx.failures.succeeded(key);
            Action::await_change()
        }
        Next::Hold(after) => Action::requeue(after),
        Next::Retry(retry) => Action::requeue(retry_delay(ctx, key, retry)),
    }
}

/// Counts a failure and says how long to wait before the next attempt.
fn retry_delay(ctx: &Context, key: &str, retry: Retry) -> Duration {
    let failures = ctx.failures.failed(key);
    match retry {
        Retry::Backoff => ctx.settings.backoff.delay(failures, fastrand::f64()),
        // The provider said when; a little jitter spreads the objects it told the same.
        Retry::After(after) => after + Duration::from_millis(fastrand::u64(0..1000)),
    }
}

/// Runs `apply`, or `cleanup` once the object is being deleted, behind the finalizer
/// [`FINALIZER`] (added before the first apply, removed after a successful clean-up).
async fn with_finalizer<K>(
    object: Arc<K>,
    ctx: &Context,
    apply: impl AsyncFnOnce(&K, &Api<K>, &Context) -> Result<Action, Error>,
    cleanup: impl AsyncFnOnce(&K, &Context) -> Result<Action, Error>,
) -> Result<Action, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let namespace = object.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, object, |event| async {
        match event {
            FinalizerEvent::Apply(object) => apply(&object, &api, ctx).await,
            FinalizerEvent::Cleanup(object) => cleanup(&object, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Names an object in logs and in the failure counts.
fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), object.meta().namespace.as_deref().unwrap_or_default(), object.meta().name.as_deref().unwrap_or_default())
}

/// How long an object has been waiting for its finalizers.
fn deleting_for<K: Resource>(object: &K) -> Duration {
    object
        .meta()
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or_default()
}

/// The reconciler `reconcile`, with each run counted in flight while it runs, then timed and
/// counted by outcome ([`ReconcileOutcome`]: the object's failure count tells a handled failure
/// from a success, since reconcilers requeue provider failures instead of returning them).
fn metered<K, Fut>(reconcile: impl Fn(Arc<K>, Arc<Context>) -> Fut) -> impl Fn(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |object, ctx| {
        let key = object_key(&*object);
        let failures_before = ctx.failures.count(&key);
        let run = reconcile(object, Arc::clone(&ctx));
        async move {
            let reconciling = ctx.metrics.reconcile_started(K::kind(&()));
            let result = run.await;
            reconciling.finished(ReconcileOutcome::of(result.is_ok(), failures_before, ctx.failures.count(&key)));
            result
        }
        .boxed()
    }
}

fn error_policy<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(&*object);
    let failures = ctx.failures.failed(&key);
    let delay = ctx.settings.backoff.delay(failures, fastrand::f64());
    tracing::warn!(object = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// What makes an object worth reconciling again: its spec (generation), finalizers,
/// annotations, or deletion. Status writes, the controller's own included, are not.
fn worth_reconciling<K: Resource>() -> impl Predicate<K> {
    predicates::generation
        .combine(predicates::finalizers)
        .combine(predicates::annotations)
        .combine(|o: &K| o.meta().deletion_timestamp.as_ref().map(|_| 1))
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers until `shutdown` completes, then lets running reconciles finish.
pub async fn run(args: ControllerArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ControllerError> {
    let client = args.client().await?;
    let metrics = Arc::new(Metrics::default());
    let providers = Providers::new(args.endpoints.clone(), ClientConfig::default())?.with_observer(Arc::new(metrics.provider_calls.clone()));
    let reporter = Reporter { controller: REPORTER.to_owned(), instance: args.instance.clone() };
    let (accounts, accounts_writer) = reflector::store();
    let (workstreams, workstreams_writer) = reflector::store();
    let (rules, rules_writer) = reflector::store();
    let (templates, templates_writer) = reflector::store();
    let (config_maps, config_maps_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        providers,
        recorder: Recorder::new(client.clone(), reporter),
        settings: args.settings(),
        failures: Default::default(),
        verified: Default::default(),
        approval_due: Default::default(),
        accounts: accounts.clone(),
        workstreams: workstreams.clone(),
        rules: rules.clone(),
        templates: templates.clone(),
        configs: Configs::new(config_maps),
        spec_checks: Default::default(),
        metrics,
    });
    let shutdown = shutdown.shared();
    let ns = args.namespace.as_deref();
    let scrape = {
        let ctx = ctx.clone();
        move || ctx.metrics_text()
    };
    let probes = health::serve(args.probe_addr, args.timeouts, ctx.metrics.connections.clone(), scrape, shutdown.clone()).await?;
    tracing::info!(namespace = ns.unwrap_or("<all>"), probes = %probes.local_addr, "controller starting");
    // Only the holder of the lease reconciles; a standby waits here (and /readyz says ready).
    let Some(leadership) = leader::campaign(&client, &args, shutdown.clone()).await? else {
        probes.stopped().await;
        return Ok(());
    };
    let c = &client;

    let by_account = {
        let workstreams = workstreams.clone();
        move |rule: RoutingRule| {
            let namespace = rule.namespace().unwrap_or_default();
            let ws = workstreams.get(&ObjectRef::new(&rule.spec.workstream_ref.name).within(&namespace));
            ws.map(|ws| ObjectRef::new(&ws.spec.account_ref.name).within(&namespace))
        }
    };
    let lookup = accounts.clone();
    let (to_templates, account_changes_for_templates) = unbounded();
    let (to_workstreams, account_changes_for_workstreams) = unbounded();
    let (to_rules, account_changes_for_rules) = unbounded();
    let (to_claimants, account_changes_for_claimants) = unbounded();
    // Workstreams, rules and templates are watched once each, into their stores; the other
    // controllers follow those streams (after the store has each change) instead of watching
    // the kinds again: 10,000 rules are then decoded and held once, not once per watch.
    let (ws_to_accounts, ws_changes_for_accounts) = unbounded();
    let (ws_to_rules, ws_changes_for_rules) = unbounded();
    let (rules_to_accounts, rule_changes_for_accounts) = unbounded();
    let (rules_to_workstreams, rule_changes_for_workstreams) = unbounded();
    let (templates_to_accounts, template_changes_for_accounts) = unbounded::<MessageTemplate>();
    let account_stream = watch_telling::<MessagingAccount>(c, ns, accounts_writer, vec![to_templates, to_workstreams, to_rules, to_claimants]);
    let claimants = accounts.clone();
    let account_controller = Controller::for_stream(account_stream, accounts.clone())
        .with_config(kube::runtime::controller::Config::default().debounce(RENDER_DEBOUNCE))
        .watches_stream(metadata::<Secret>(c, ns, None), move |secret| accounts_using(&lookup, &secret))
        .watches_stream(account_changes_for_claimants.map(Ok::<_, watcher::Error>), move |account| channels::affected(&account, &claimants.state()))
        .watches_stream(spec_changes(ws_changes_for_accounts, workstreams.clone()), |ws| {
            Some(ObjectRef::new(&ws.spec.account_ref.name).within(&ws.namespace().unwrap_or_default()))
        })
        .watches_stream(spec_changes(rule_changes_for_accounts, rules.clone()), by_account)
        // Every template change, status included: an approval changes the configuration.
        .watches_stream(template_changes_for_accounts.map(Ok::<_, watcher::Error>), |t| {
            Some(ObjectRef::new(&t.spec.account_ref.name).within(&t.namespace().unwrap_or_default()))
        })
        .owns_stream(metadata::<Deployment>(c, ns, Some(GATEWAY_SELECTOR)))
        .owns_stream(metadata::<ConfigMap>(c, ns, Some(GATEWAY_SELECTOR)))
        .owns_stream(metadata::<Service>(c, ns, Some(GATEWAY_SELECTOR)))
        .owns_stream(metadata::<ServiceAccount>(c, ns, Some(GATEWAY_SELECTOR)))
        .owns_stream(metadata::<Role>(c, ns, Some(GATEWAY_SELECTOR)))
        .owns_stream(metadata::<RoleBinding>(c, ns, Some(GATEWAY_SELECTOR)))
        .owns_stream(metadata::<PersistentVolumeClaim>(c, ns, Some(GATEWAY_SELECTOR)))
        .owns_stream(metadata::<Ingress>(c, ns, Some(GATEWAY_SELECTOR)))
        .graceful_shutdown_on(shutdown.clone())
        .run(metered(account::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    let template_lookup = templates.clone();
    let template_controller = Controller::for_stream(watch_telling(c, ns, templates_writer, vec![templates_to_accounts]), templates.clone())
        .watches_stream(account_changes_for_templates.map(Ok::<_, watcher::Error>), move |account| templates_of(&template_lookup, &account))
        .graceful_shutdown_on(shutdown.clone())
        .run(metered(template::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    // Rules follow the same reflected stream, after the store has each ConfigMap: they judge the
    // configuration by the store alone.
    let (to_rules_config, config_changes_for_rules) = unbounded::<ConfigMap>();
    let config_stream = watcher(scoped::<ConfigMap>(c, ns), gateway_watch())
        .default_backoff()
        .modify(without_managed_fields)
        .reflect(config_maps_writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) | watcher::Event::Delete(cm)) = event {
                let _ = to_rules_config.unbounded_send(cm.clone());
            }
        })
        .touched_objects();
    let (ws_for_account, ws_for_config, ws_for_rule) = (workstreams.clone(), (workstreams.clone(), ctx.clone()), workstreams.clone());
    let workstream_stream = watch_telling::<Workstream>(c, ns, workstreams_writer, vec![ws_to_accounts, ws_to_rules]);
    let workstream_controller = Controller::for_stream(workstream_stream, workstreams.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(REPORTER_CONCURRENCY))
        .watches_stream(readiness_changes(account_changes_for_workstreams), move |account| workstreams_of(&ws_for_account, &account))
        .watches_stream(config_stream, move |cm| stale_workstreams(&ws_for_config.0, &ws_for_config.1, &cm))
        // A workstream counts its accepted rules: only a rule's spec (or its deletion) changes
        // that, not the rule's status writes (a thousand rules turning Ready would otherwise
        // recount every workstream a thousand times).
        .watches_stream(spec_changes(rule_changes_for_workstreams, rules.clone()), move |rule| {
            ws_for_rule.get(&ObjectRef::new(&rule.spec.workstream_ref.name).within(&rule.namespace().unwrap_or_default())).map(|w| ObjectRef::from_obj(&*w))
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(metered(workstream::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    let (rules_for_ws, rules_for_config, rules_for_account) = (rules.clone(), (rules.clone(), ctx.clone()), (rules.clone(), workstreams.clone()));
    let rule_stream = watch_telling::<RoutingRule>(c, ns, rules_writer, vec![rules_to_accounts, rules_to_workstreams]);
    let rule_controller = Controller::for_stream(rule_stream, rules.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(REPORTER_CONCURRENCY))
        .watches_stream(changes_by(ws_changes_for_rules, workstreams.clone(), what_rules_see), move |ws| rules_of(&rules_for_ws, &ws))
        .watches_stream(config_changes_for_rules.map(Ok::<_, watcher::Error>), move |cm| stale_rules(&rules_for_config.0, &rules_for_config.1, &cm))
        .watches_stream(readiness_changes(account_changes_for_rules), move |account| rules_of_account(&rules_for_account.0, &rules_for_account.1, &account))
        .graceful_shutdown_on(shutdown.clone())
        .run(metered(routing_rule::reconcile), error_policy, ctx)
        .for_each(|_| async {});

    leadership.hold(async { tokio::join!(account_controller, template_controller, workstream_controller, rule_controller) }).await?;
    probes.stopped().await;
    tracing::info!("controller stopped");
    Ok(())
}

/// Accounts, passed on only when their Ready status or reason changes: workstreams and rules depend on
/// that alone, and an account's status also changes with every new configuration hash (which
/// would otherwise wake every rule of the account).
fn readiness_changes(accounts: UnboundedReceiver<MessagingAccount>) -> impl futures::Stream<Item = Result<MessagingAccount, watcher::Error>> + Send + 'static {
    let ready = |account: &MessagingAccount| {
        use std::hash::{Hash, Hasher};
        let ready = account.status.as_ref().and_then(|s| crate::api::conditions::find(&s.conditions, crate::api::conditions::READY));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        ready.map(|c| (&c.status, &c.reason)).hash(&mut hasher);
        Some(hasher.finish())
    };
    accounts.map(Ok).predicate_filter(ready, PredicateConfig::default())
}

fn gateway_watch() -> watcher::Config {
    watcher::Config::default().labels(GATEWAY_SELECTOR)
}

/// The objects of a reflected watch that `followed` hands on whose spec changed (a new
/// generation), and those that left the store: what changes a gateway configuration or a count
/// of accepted objects. Status writes, the controller's own included, are left out, or every
/// Ready written would re-render the account's configuration.
fn spec_changes<K>(followed: UnboundedReceiver<K>, store: Store<K>) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    changes_by(followed, store, |object: &K| object.meta().generation.unwrap_or_default().unsigned_abs())
}

/// The objects that `followed` hands on whose `key` differs from the last one seen of the same
/// object (by UID), and those no longer in `store` (deleted; `followed` follows the stream that
/// fills the store, so the store already knows). An object whose turn comes after it left the
/// store passes too: one trigger too many, never one too few.
fn changes_by<K>(
    followed: UnboundedReceiver<K>,
    store: Store<K>,
    key: impl Fn(&K) -> u64 + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    followed.filter_map(move |object| {
        let uid = object.meta().uid.clone().unwrap_or_default();
        let stored = store.get(&ObjectRef::from_obj(&object)).is_some_and(|o| o.meta().uid == object.meta().uid);
        let changed = if stored {
            seen.insert(uid, key(&object)) != Some(key(&object))
        } else {
            seen.remove(&uid);
            true
        };
        futures::future::ready(changed.then_some(Ok(object)))
    })
}

/// What a workstream's rules read of it: its spec (queues), and whether it is accepted (a rule
/// of a refused workstream is not Ready, and says why).
fn what_rules_see(ws: &Workstream) -> u64 {
    use std::hash::{Hash, Hasher};
    let accepted = ws.status.as_ref().and_then(|s| crate::api::conditions::find(&s.conditions, workstream::ACCEPTED));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (ws.metadata.generation, accepted.map(|c| (&c.status, &c.reason, &c.message))).hash(&mut hasher);
    hasher.finish()
}

/// Every change of a kind, metadata only, optionally narrowed by a label selector.
fn metadata<K>(client: &Client, namespace: Option<&str>, selector: Option<&str>) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = match selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    watcher(scoped::<PartialObjectMeta<K>>(client, namespace), config).default_backoff().touched_objects()
}

/// The watch stream of a kind, reflected into `writer`'s store and filtered to the changes
/// worth a reconcile, also handing every object it puts in (or takes out of) the store to
/// `followers`, after the store has it. Reconcilers that read the store when an object changes follow this
/// rather than a watch of their own, which could wake them before the store has the change:
/// they would judge it by its previous state and not look again.
fn watch_telling<K>(
    client: &Client,
    namespace: Option<&str>,
    writer: reflector::store::Writer<K>,
    followers: Vec<UnboundedSender<K>>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    watcher(scoped::<K>(client, namespace), watcher::Config::default())
        .default_backoff()
        .modify(without_managed_fields)
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object) | watcher::Event::Delete(object)) = event {
                for follower in &followers {
                    let _ = follower.unbounded_send(object.clone());
                }
            }
        })
        .applied_objects()
        .predicate_filter(worth_reconciling(), PredicateConfig::default())
}

/// Drops `metadata.managedFields` before an object is cached: nothing here reads them, and for
/// objects written by several managers they are often larger than the spec.
fn without_managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// The accounts in the Secret's namespace that read it.
fn accounts_using(accounts: &Store<MessagingAccount>, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<MessagingAccount>> {
    let (namespace, name) = (secret.namespace(), secret.name_any());
    accounts
        .state()
        .iter()
        .filter(|a| {
            a.namespace() == namespace
                && (a.spec.secret_refs().iter().any(|(_, r)| r.name == name) || a.spec.store_secrets().iter().any(|(_, n)| *n == name))
        })
        .map(|a| ObjectRef::from_obj(&**a))
        .collect()
}

/// The templates that use the account.
fn templates_of(templates: &Store<MessageTemplate>, account: &MessagingAccount) -> Vec<ObjectRef<MessageTemplate>> {
    let (namespace, name) = (account.namespace(), account.name_any());
    templates
        .state()
        .iter()
        .filter(|t| t.namespace() == namespace && t.spec.account_ref.name == name)
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}

/// The workstreams of the account.
fn workstreams_of(workstreams: &Store<Workstream>, account: &MessagingAccount) -> Vec<ObjectRef<Workstream>> {
    let (namespace, name) = (account.namespace(), account.name_any());
    workstreams.state().iter().filter(|w| w.namespace() == namespace && w.spec.account_ref.name == name).map(|w| ObjectRef::from_obj(&**w)).collect()
}

/// The rules of the workstream.
fn rules_of(rules: &Store<RoutingRule>, ws: &Workstream) -> Vec<ObjectRef<RoutingRule>> {
    let (namespace, name) = (ws.namespace(), ws.name_any());
    rules.state().iter().filter(|r| r.namespace() == namespace && r.spec.workstream_ref.name == name).map(|r| ObjectRef::from_obj(&**r)).collect()
}

/// The rules of the account's workstreams.
fn rules_of_account(rules: &Store<RoutingRule>, workstreams: &Store<Workstream>, account: &MessagingAccount) -> Vec<ObjectRef<RoutingRule>> {
    let (namespace, name) = (account.namespace(), account.name_any());
    let mine: Vec<String> =
        workstreams.state().iter().filter(|w| w.namespace() == namespace && w.spec.account_ref.name == name).map(|w| w.name_any()).collect();
    rules
        .state()
        .iter()
        .filter(|r| r.namespace() == namespace && mine.contains(&r.spec.workstream_ref.name))
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// Whether an object's status shows Ready for its current generation; only the others need a
/// reconcile when a configuration changes (no storm of no-op reconciles for every rule).
fn ready_now(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], generation: Option<i64>) -> bool {
    crate::api::conditions::find(conditions, crate::api::conditions::READY).is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

/// The account's workstreams whose Ready does not yet reflect the new configuration.
fn stale_workstreams(workstreams: &Store<Workstream>, ctx: &Context, config_map: &ConfigMap) -> Vec<ObjectRef<Workstream>> {
    let Some(config) = ctx.configs.parse(config_map) else { return Vec::new() };
    let namespace = config_map.namespace();
    workstreams
        .state()
        .iter()
        .filter(|w| w.namespace() == namespace && w.spec.account_ref.name == config.account)
        .filter(|w| !ready_now(w.status.as_ref().map_or(&[][..], |s| &s.conditions), w.metadata.generation))
        .map(|w| ObjectRef::from_obj(&**w))
        .collect()
}

/// The account's rules whose Ready does not yet reflect the new configuration.
fn stale_rules(rules: &Store<RoutingRule>, ctx: &Context, config_map: &ConfigMap) -> Vec<ObjectRef<RoutingRule>> {
    let Some(config) = ctx.configs.parse(config_map) else { return Vec::new() };
    let namespace = config_map.namespace();
    rules
        .state()
        .iter()
        .filter(|r| r.namespace() == namespace && config.has_workstream(&r.spec.workstream_ref.name))
        .filter(|r| !ready_now(r.status.as_ref().map_or(&[][..], |s| &s.conditions), r.metadata.generation))
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(uid: &str, generation: i64, ready: &str) -> RoutingRule {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule",
            "metadata": {"name": "r", "namespace": "ns", "uid": uid, "generation": generation},
            "spec": {"workstreamRef": {"name": "ws"}, "stage": "RouteToQueue", "order": 1, "routeTo": {"queue": "q"}},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "R", "message": "m",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation}]}
        }))
        .unwrap()
    }

    /// Feeds each object to the store as the watch would, then to the follower, which takes it
    /// at once; what passes.
    fn passed(steps: Vec<(RoutingRule, bool)>) -> Vec<(Option<i64>, String)> {
        let (store, mut writer) = reflector::store();
        let (to_follower, followed) = unbounded();
        let changes = spec_changes(followed, store);
        futures::pin_mut!(changes);
        let ready = |r: &RoutingRule| r.status.as_ref().map(|s| s.conditions[0].status.clone()).unwrap_or_default();
        let mut passed = Vec::new();
        for (object, deleted) in steps {
            let event = if deleted { watcher::Event::Delete(object.clone()) } else { watcher::Event::Apply(object.clone()) };
            writer.apply_watcher_event(&event);
            to_follower.unbounded_send(object).unwrap();
            if let Some(Some(Ok(r))) = changes.next().now_or_never() {
                passed.push((r.metadata.generation, ready(&r)));
            }
        }
        passed
    }

    #[test]
    fn followers_see_spec_changes_and_deletions_but_not_status_writes() {
        let steps = vec![
            (rule("u1", 1, "Unknown"), false),
            (rule("u1", 1, "True"), false),
            (rule("u1", 2, "True"), false),
            (rule("u1", 2, "False"), false),
            (rule("u1", 2, "False"), true),
            (rule("u2", 1, "Unknown"), false),
        ];
        let passed = passed(steps);
        assert_eq!(passed, [(Some(1), "Unknown".to_owned()), (Some(2), "True".to_owned()), (Some(2), "False".to_owned()), (Some(1), "Unknown".to_owned())]);
    }
}
