//! The operator: one process running a `kube::runtime::Controller` per kind, sharing a
//! [`Context`]. Each reconciler validates, resolves references, talks to the provider, and
//! writes the status only when it changed; failures back off per object.

pub mod account;
mod backoff;
mod cleanup;
pub mod context;
mod health;
mod provider_status;
mod secrets;
mod status;
pub mod template;
pub mod template_plan;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, Predicate, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::validation::UrlPolicy;
use crate::api::{MessageTemplate, MessagingAccount, duration};
use crate::providers::{ClientBuildError, ClientConfig, ProviderEndpoints, Providers};
use backoff::{Backoff, jittered};
use context::{CloudRegion, Context, Settings};
use provider_status::Retry;

/// The finalizer on resources with provider-side state to clean up.
pub const FINALIZER: &str = "switchboard.dev/cleanup";

/// The name the controller reports events under.
const REPORTER: &str = "switchboard-controller";

/// Flags of `switchboard controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// Kubeconfig file to use; without it, the in-cluster configuration, else $KUBECONFIG or
    /// ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "SWITCHBOARD_WATCH_NAMESPACE")]
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
    /// How often verified credentials and webhooks are checked again (jittered ±10%).
    #[arg(long, value_parser = parse_duration, default_value = "6h")]
    pub recheck_interval: Duration,
    /// How often a template under WhatsApp review is polled (jittered).
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub approval_pending_interval: Duration,
    /// How often a template whose review ended is polled (jittered).
    #[arg(long, value_parser = parse_duration, default_value = "6h")]
    pub approval_settled_interval: Duration,
    /// Retry delay after an object's first failure; it doubles per failure.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub min_backoff: Duration,
    /// Longest retry delay after failures.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub max_backoff: Duration,
    /// How long deletion waits for provider-side clean-up during a provider outage.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub cleanup_timeout: Duration,
    /// Address of the health endpoints (/healthz, /readyz).
    #[arg(long, env = "SWITCHBOARD_PROBE_ADDR", default_value = "0.0.0.0:8080")]
    pub probe_addr: SocketAddr,
    /// This instance's name in events (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse(text).ok_or_else(|| format!("{text:?} is not a duration such as 30s, 5m or 6h"))
}

impl ControllerArgs {
    fn settings(&self) -> Settings {
        Settings {
            url_policy: UrlPolicy { allow_http_loopback: self.allow_http_loopback },
            region: self.cloud_region,
            recheck_interval: self.recheck_interval,
            approval_pending_interval: self.approval_pending_interval,
            approval_settled_interval: self.approval_settled_interval,
            backoff: Backoff { min: self.min_backoff, max: self.max_backoff.max(self.min_backoff) },
            cleanup_timeout: self.cleanup_timeout,
        }
    }

    async fn client(&self) -> Result<Client, ControllerError> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(kube::Error::from)?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(kube::Error::from)?
            }
            None => Config::infer().await?,
        };
        Ok(Client::try_from(config)?)
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
        Next::Retry(retry) => {
            let failures = ctx.failures.failed(key);
            let backoff = ctx.settings.backoff.delay(failures, fastrand::f64());
            match retry {
                Retry::Backoff => Action::requeue(backoff),
                // The provider said when; a little jitter spreads the objects it told the same.
                Retry::After(after) => Action::requeue(after + Duration::from_millis(fastrand::u64(0..1000))),
            }
        }
    }
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
    let providers = Providers::new(args.endpoints.clone(), ClientConfig::default())?;
    let reporter = Reporter { controller: REPORTER.to_owned(), instance: args.instance.clone() };
    let (templates, templates_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        providers,
        recorder: Recorder::new(client.clone(), reporter),
        settings: args.settings(),
        failures: Default::default(),
        verified: Default::default(),
        approval_due: Default::default(),
        templates: templates.clone(),
    });
    let shutdown = shutdown.shared();
    let namespace = args.namespace.as_deref();
    let probes = health::serve(args.probe_addr, shutdown.clone()).await?;
    tracing::info!(namespace = namespace.unwrap_or("<all>"), probes = %probes.local_addr, "controller starting");

    let (accounts, accounts_writer) = reflector::store();
    let account_stream = watch::<MessagingAccount>(&client, namespace, accounts_writer);
    let secret_stream = watcher(scoped::<PartialObjectMeta<Secret>>(&client, namespace), watcher::Config::default()).default_backoff().touched_objects();
    let lookup = accounts.clone();
    let account_controller = Controller::for_stream(account_stream, accounts)
        .watches_stream(secret_stream, move |secret| accounts_using(&lookup, &secret))
        .graceful_shutdown_on(shutdown.clone())
        .run(account::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let template_stream = watch::<MessageTemplate>(&client, namespace, templates_writer);
    let account_meta =
        watcher(scoped::<PartialObjectMeta<MessagingAccount>>(&client, namespace), watcher::Config::default()).default_backoff().touched_objects();
    let template_controller = Controller::for_stream(template_stream, templates.clone())
        .watches_stream(account_meta, move |account| templates_of(&templates, &account))
        .graceful_shutdown_on(shutdown.clone())
        .run(template::reconcile, error_policy, ctx)
        .for_each(|_| async {});

    tokio::join!(account_controller, template_controller);
    probes.stopped().await;
    tracing::info!("controller stopped");
    Ok(())
}

/// The watch stream of a kind, reflected into `writer`'s store and filtered to the changes
/// worth a reconcile.
fn watch<K>(client: &Client, namespace: Option<&str>, writer: reflector::store::Writer<K>) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    watcher(scoped::<K>(client, namespace), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(worth_reconciling(), PredicateConfig::default())
}

/// The accounts in the Secret's namespace that read it.
fn accounts_using(accounts: &Store<MessagingAccount>, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<MessagingAccount>> {
    let (namespace, name) = (secret.namespace(), secret.name_any());
    accounts
        .state()
        .iter()
        .filter(|a| a.namespace() == namespace && a.spec.secret_refs().iter().any(|(_, r)| r.name == name))
        .map(|a| ObjectRef::from_obj(&**a))
        .collect()
}

/// The templates that use the account.
fn templates_of(templates: &Store<MessageTemplate>, account: &PartialObjectMeta<MessagingAccount>) -> Vec<ObjectRef<MessageTemplate>> {
    let (namespace, name) = (account.namespace(), account.name_any());
    templates
        .state()
        .iter()
        .filter(|t| t.namespace() == namespace && t.spec.account_ref.name == name)
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}
