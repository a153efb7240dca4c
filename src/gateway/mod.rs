//! The gateway: the data plane the controller deploys per MessagingAccount. It receives the
//! provider's webhooks, records them durably before answering, keeps conversations, routes them
//! to queues and hands work to the agent desk from a durable outbox.
//!
//! Tasks: the webhook server; the agent API server; the processor (recorded events →
//! conversations, routing, desk events, automated messages); delivery (outbox → desk or bot);
//! the sender (messages → provider); the inactivity sweeper; the configuration loader; the
//! metrics and health server. They meet only in the store and in the current
//! [`runtime::Runtime`].

pub mod channels;
pub mod clock;
pub mod conversations;
pub mod http;
pub mod kube_events;
pub mod metrics;
pub mod model;
pub mod runtime;
pub mod store;
pub mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use crate::api::account::DEFAULT_DRAIN_DELAY;
use crate::api::duration;
use crate::backoff::Backoff;
use crate::config::{AGENT_API_PORT, GATEWAY_STORE_PATH, METRICS_PORT, WEBHOOK_PORT, gateway_flags};
use crate::config::{POSTGRES_DBNAME_ENV, POSTGRES_HOST_ENV, POSTGRES_PASSWORD_ENV, POSTGRES_PORT_ENV, POSTGRES_URL_ENV, POSTGRES_USER_ENV};
use crate::kube_client::kube_client;
use kube_events::Publisher;
use crate::providers::{ClientBuildError, ClientConfig, ProviderEndpoints, Providers};
use crate::serve::{self, Port};
use clock::Clock;
use http::{agent_api, dev_clock, media, probes, webhook};
use metrics::Metrics;
use crate::providers::credentials::Secret;
use runtime::Runtime;
use store::{CommitObserver, Durability, PostgresParts, PostgresTarget, SslMode, Store, StoreError, TargetError, TlsSettings, Wake};
use workers::config_source::{Loader, Source};
use workers::{Wakers, delivery, distributor, inactivity, processor, prune, sender};

/// How long shutdown waits for a send round in flight to record its outcomes (its provider
/// calls time out sooner); it runs beside the ports' own drain, within the pod's termination
/// grace period.
const SEND_GRACE: Duration = Duration::from_secs(20);

/// How long the webhook port waits for the first configuration before it answers without one.
const FIRST_CONFIG_WAIT: Duration = Duration::from_secs(5);

/// Flags of `switchboard gateway`.
#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "config_map"])))]
pub struct GatewayArgs {
    /// Read the configuration from this file (JSON, or the ConfigMap's gzip-compressed document;
    /// re-read when it changes).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Read the configuration from this ConfigMap (watched): its `binaryData` key
    /// `config.json.gz`, as the controller writes it, else a plain `data` key `config.json`.
    #[arg(long = gateway_flags::CONFIG_MAP)]
    pub config_map: Option<String>,
    /// Namespace of the ConfigMap (the pod's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// The name the Kubernetes Events this gateway writes report it by (the pod's).
    #[arg(long, env = "POD_NAME", default_value = "switchboard-gateway")]
    pub pod_name: String,
    /// Kubeconfig file to use; without it, the in-cluster configuration, else $KUBECONFIG.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The store's database file (SQLite); its folder must exist.
    #[arg(long = gateway_flags::STORE, default_value = GATEWAY_STORE_PATH)]
    pub store: PathBuf,
    /// When a recorded webhook is answered: `full` after fsync (survives a power cut), `process`
    /// once the operating system has it (survives the process being killed; faster on slow disks).
    #[arg(long, value_enum, default_value_t)]
    pub store_durability: Durability,
    /// Keep the store in this PostgreSQL database instead of SQLite (a `postgres://` URL or
    /// libpq-style `key=value` pairs), shared by every replica of the account's gateway. Its
    /// `sslmode` and `sslrootcert` are ignored: --postgres-ssl-mode and --postgres-ca-file decide
    /// (libpq's `verify-ca` and `verify-full` are not values the client library takes).
    #[arg(long, env = POSTGRES_URL_ENV, hide_env_values = true, value_parser = secret, conflicts_with_all = ["store", "store_durability"])]
    pub postgres_url: Option<Secret>,
    /// Keep the store in PostgreSQL on this host (a name, an address, or the folder of a Unix
    /// socket) instead of SQLite: the connection in parts, instead of --postgres-url.
    #[arg(long, env = POSTGRES_HOST_ENV, conflicts_with_all = ["postgres_url", "store", "store_durability"], requires = "postgres_user")]
    pub postgres_host: Option<String>,
    /// The PostgreSQL server's port.
    #[arg(long, env = POSTGRES_PORT_ENV, default_value_t = 5432, conflicts_with_all = ["postgres_url", "store", "store_durability"], requires = "postgres_host")]
    pub postgres_port: u16,
    /// The PostgreSQL database (the user's name when not given).
    #[arg(long, env = POSTGRES_DBNAME_ENV, conflicts_with_all = ["postgres_url", "store", "store_durability"], requires = "postgres_host")]
    pub postgres_dbname: Option<String>,
    /// The PostgreSQL user.
    #[arg(long, env = POSTGRES_USER_ENV, conflicts_with_all = ["postgres_url", "store", "store_durability"], requires = "postgres_host")]
    pub postgres_user: Option<String>,
    /// The PostgreSQL user's password.
    #[arg(long, env = POSTGRES_PASSWORD_ENV, hide_env_values = true, value_parser = secret, conflicts_with_all = ["postgres_url", "store", "store_durability"], requires = "postgres_host")]
    pub postgres_password: Option<Secret>,
    /// How the PostgreSQL connection is secured, as libpq's sslmode: `disable`; `require` (TLS,
    /// the certificate not checked unless --postgres-ca-file is given, then as `verify-ca`);
    /// `verify-ca` (the certificate chains to a trusted authority); `verify-full` (and names the
    /// host). A Unix-socket host never uses TLS.
    #[arg(long = gateway_flags::POSTGRES_SSL_MODE, value_enum, default_value_t)]
    pub postgres_ssl_mode: SslMode,
    /// The authorities the PostgreSQL server's certificate is checked against (PEM, one or more
    /// certificates), read at start; the system's when not given.
    #[arg(long = gateway_flags::POSTGRES_CA_FILE)]
    pub postgres_ca_file: Option<PathBuf>,
    /// Address of the webhook server.
    #[arg(long = gateway_flags::WEBHOOK_ADDR, default_value_t = WEBHOOK_PORT.listen_addr())]
    pub webhook_addr: SocketAddr,
    /// Address of the agent API (internal: desks and bots call it).
    #[arg(long = gateway_flags::AGENT_API_ADDR, default_value_t = AGENT_API_PORT.listen_addr())]
    pub agent_api_addr: SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long = gateway_flags::METRICS_ADDR, default_value_t = METRICS_PORT.listen_addr())]
    pub metrics_addr: SocketAddr,
    /// Provider base URLs (point them at `switchboard simulate` for development).
    #[command(flatten)]
    pub endpoints: ProviderEndpoints,
    /// Timeouts of the webhook, agent API and metrics ports.
    #[command(flatten)]
    pub timeouts: serve::Timeouts,
    /// Largest webhook body taken, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
    /// Limit of one delivery to the desk.
    #[arg(long, value_parser = duration::parse_flag, default_value = "10s")]
    pub delivery_timeout: Duration,
    /// First retry delay of a failed delivery or send; it doubles per failure.
    #[arg(long, value_parser = duration::parse_flag, default_value = "1s")]
    pub retry_min: Duration,
    /// Longest retry delay of a failed delivery or send.
    #[arg(long, value_parser = duration::parse_flag, default_value = "1m")]
    pub retry_max: Duration,
    /// How long sends are retried while the provider refuses the account's credentials (401 or
    /// 403), from the first refusal; longer than a rollout, so that a rotated Secret reaches the
    /// pod in time. Then each message refused fails with `credentials_rejected`.
    #[arg(long, value_parser = duration::parse_flag, default_value = "10m")]
    pub credentials_retry_for: Duration,
    /// How long the gateway keeps serving once told to stop, reporting not ready, so that the
    /// Service and load balancers stop sending to it before it stops listening; then it finishes
    /// the requests in flight and exits.
    #[arg(long = gateway_flags::DRAIN_DELAY, value_parser = duration::parse_flag, default_value = DEFAULT_DRAIN_DELAY)]
    pub drain_delay: Duration,
    /// How often inactive conversations are looked for.
    #[arg(long, value_parser = duration::parse_flag, default_value = "30s")]
    pub sweep_interval: Duration,
    /// How long a processed event's ID is remembered to recognise a redelivery, and how long an
    /// uploaded file stays available to the provider.
    #[arg(long, value_parser = duration::parse_flag, default_value = "168h")]
    pub dedup_retention: Duration,
    /// An agent whose presence the desk has not reported (a heartbeat) for this long is Offline:
    /// their active conversations go back to their queues.
    #[arg(long, value_parser = duration::parse_flag, default_value = "60s")]
    pub presence_ttl: Duration,
    /// Development only, for the local demo: `POST /__dev/clock {"advance": "25h"}` on the agent
    /// API port moves the gateway's clock ahead (to age a WhatsApp window). Refused unless the
    /// configuration is a file and every port listens on loopback.
    #[arg(long)]
    pub dev_clock: bool,
}

/// Why the gateway could not start or stopped.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The store could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// A server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The provider HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    /// The Kubernetes client could not be configured.
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// `--config-map` without a namespace.
    #[error("--config-map needs --namespace or POD_NAMESPACE")]
    NoNamespace,
    /// `--dev-clock` outside the local demo.
    #[error(transparent)]
    DevClock(#[from] dev_clock::Refused),
}

/// Runs the gateway until `shutdown` completes; requests in flight are finished first.
pub async fn run(args: GatewayArgs, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), GatewayError> {
    let metrics = Arc::new(Metrics::default());
    let observer = Arc::clone(&metrics);
    let dev = if args.dev_clock {
        dev_clock::allowed(args.config.is_some(), &[args.webhook_addr, args.agent_api_addr, args.metrics_addr])?;
        tracing::warn!("the development clock is on (--dev-clock): POST /__dev/clock on the agent API port moves it ahead");
        Some(dev_clock::DevClock::new())
    } else {
        None
    };
    let clock = dev.as_ref().map_or_else(Clock::system, dev_clock::DevClock::clock);
    let observe: CommitObserver = Box::new(move |jobs, took| observer.commit(jobs, took));
    let postgres = args.postgres_target();
    let store_name: PathBuf = if postgres.is_some() { "PostgreSQL".into() } else { args.store.clone() };
    let store = match postgres {
        Some(target) => target.map_err(StoreError::from).and_then(|target| Store::postgres(&target, observe)),
        None => Store::sqlite(&args.store, args.store_durability, observe),
    }
    .map_err(|source| GatewayError::Store { path: store_name.clone(), source })?;
    let providers = Providers::new(args.endpoints.clone(), ClientConfig::default())?;
    let source = match (&args.config, &args.config_map) {
        (Some(path), _) => Source::File(path.clone()),
        (None, Some(name)) => {
            let namespace = args.namespace.clone().ok_or(GatewayError::NoNamespace)?;
            Source::ConfigMap { client: kube_client(args.kubeconfig.as_deref()).await?, namespace, name: name.clone() }
        }
        (None, None) => unreachable!("clap requires --config or --config-map"),
    };
    // Events go with the ConfigMap source, whose client the gateway's Role lets create them.
    let events = match &source {
        Source::ConfigMap { client, namespace, .. } => Some(Publisher::new(client.clone(), namespace.clone(), args.pod_name.clone())),
        Source::File(_) => None,
    };
    let (publish, runtime) = watch::channel(None);
    let wakers = Wakers::default();
    let backoff = Backoff { min: args.retry_min, max: args.retry_max.max(args.retry_min) };
    let desk_client = reqwest::Client::builder()
        .timeout(args.delivery_timeout)
        .connect_timeout(args.delivery_timeout)
        .build()
        .map_err(|e| GatewayError::Client(ClientBuildError::from(e)))?;
    let media_client = reqwest::Client::builder()
        .timeout(ClientConfig::default().download_timeout)
        .build()
        .map_err(|e| GatewayError::Client(ClientBuildError::from(e)))?;
    let agent_state = Arc::new(agent_api::AgentApiState {
        store: store.clone(),
        runtime: runtime.clone(),
        clock: clock.clone(),
        wakers: wakers.clone(),
        metrics: Arc::clone(&metrics),
        http: media_client,
        presence_ttl: args.presence_ttl,
    });

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(Loader { publish, providers, metrics: Arc::clone(&metrics) }.follow(source));
    let woken = wakers.clone();
    let leading = store
        .lead(Box::new(move |which| match which {
            Wake::Processor => woken.processor.notify_one(),
            Wake::Delivery => woken.delivery.notify_one(),
            Wake::Sender => woken.sender.notify_one(),
            Wake::Distributor => woken.distributor.notify_one(),
        }))
        .map_err(|source| GatewayError::Store { path: store_name, source })?;
    let sending = Arc::new(tokio::sync::Mutex::new(()));
    let loops = QueueLoops {
        sending: Arc::clone(&sending),
        store: store.clone(),
        runtime: runtime.clone(),
        wakers: wakers.clone(),
        metrics: Arc::clone(&metrics),
        desk_client,
        backoff,
        args: args.clone(),
        clock: clock.clone(),
        events,
    };
    tasks.spawn(loops.while_leading(leading));

    let webhook_state = Arc::new(webhook::WebhookState {
        store: store.clone(),
        runtime: runtime.clone(),
        metrics: Arc::clone(&metrics),
        processor: Arc::clone(&wakers.processor),
        body_limit: args.body_limit,
        clock,
    });
    let media_state = Arc::new(media::MediaState { store: store.clone(), runtime: runtime.clone() });
    let connections = metrics.connections.clone();
    let (stop, stopping) = watch::channel(false);
    let runtime_ready = runtime.clone();
    let probe_state = Arc::new(probes::ProbeState { store, runtime, metrics, stopping });
    // The public webhook port takes half of the connections the open-file limit allows.
    let limit = serve::open_file_limit();
    let [webhook_cap, agent_cap, metrics_cap] = serve::caps(limit, [2, 1, 1]);
    let webhooks = Port { name: "webhook", listener: listen(args.webhook_addr).await?, cap: webhook_cap };
    let agents = Port { name: "agent_api", listener: listen(args.agent_api_addr).await?, cap: agent_cap };
    let probes = Port { name: "metrics", listener: listen(args.metrics_addr).await?, cap: metrics_cap };
    tracing::info!(
        webhook = %args.webhook_addr, agent_api = %args.agent_api_addr, metrics = %args.metrics_addr,
        open_file_limit = ?limit, webhook_cap, agent_cap, metrics_cap,
        "gateway listening"
    );
    let drain_delay = args.drain_delay;
    let shutdown = futures::FutureExt::shared(Box::pin(async move {
        shutdown.await;
        stop.send_replace(true);
        tracing::info!(drain_delay = ?drain_delay, "stopping: reporting not ready and serving through the drain delay");
        tokio::time::sleep(drain_delay).await;
        tracing::info!("drain delay over: no new connections; finishing the requests in flight");
    }));
    let timeouts = args.timeouts;
    // Once stopping, a send round in flight finishes (the provider's answers are recorded) and
    // no new one starts, while the ports finish their requests; the other loops' work is
    // transactional and is redone by the next leader.
    let stop_sending = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            let held = tokio::time::timeout(SEND_GRACE, sending.lock_owned()).await;
            if held.is_err() {
                tracing::warn!(grace = ?SEND_GRACE, "a send round did not finish in time; its messages may be sent again after the restart");
            }
            held.ok()
        }
    };
    // The webhook port takes connections once the first configuration is loaded, or after
    // FIRST_CONFIG_WAIT without one (then answering 503 until it comes): meanwhile they wait in
    // the listen backlog, so that a restarted replica behind a load balancer does not refuse the
    // webhooks that reach it in its first milliseconds.
    let webhook_port = {
        let shutdown = shutdown.clone();
        let router = webhook::router(webhook_state).merge(media::router(media_state));
        let connections = &connections;
        // The value's read guard must not outlive the wait: it would hold up every reload.
        let mut configured = runtime_ready;
        let loaded = async move { configured.wait_for(Option::is_some).await.is_ok() };
        async move {
            tokio::select! {
                _ = tokio::time::timeout(FIRST_CONFIG_WAIT, loaded) => serve::serve(webhooks, router, timeouts, connections, shutdown).await,
                () = shutdown.clone() => {}
            }
        }
    };
    let agent_router = match dev {
        Some(dev) => agent_api::router(agent_state).merge(dev_clock::router(dev)),
        None => agent_api::router(agent_state),
    };
    let (_, _, _, _no_more_sends) = tokio::join!(
        webhook_port,
        serve::serve(agents, agent_router, timeouts, &connections, shutdown.clone()),
        serve::serve(probes, probes::router(probe_state), timeouts, &connections, shutdown),
        stop_sending,
    );
    tasks.abort_all();
    tracing::info!("gateway stopped");
    Ok(())
}

/// What the loops that take work from the store's queues need. They run only while this process
/// leads ([`Store::lead`]): always on SQLite, on one replica at a time on PostgreSQL.
struct QueueLoops {
    store: Store,
    runtime: watch::Receiver<Option<Arc<Runtime>>>,
    wakers: Wakers,
    metrics: Arc<Metrics>,
    desk_client: reqwest::Client,
    backoff: Backoff,
    args: GatewayArgs,
    clock: Clock,
    events: Option<Publisher>,
    sending: Arc<tokio::sync::Mutex<()>>,
}

impl QueueLoops {
    /// Runs the loops while `leading` says so; stops them the moment it stops saying so.
    async fn while_leading(self, mut leading: watch::Receiver<bool>) {
        loop {
            // A lead that can no longer change (SQLite's) stays as it is.
            if leading.wait_for(|l| *l).await.is_err() {
                return std::future::pending().await;
            }
            let running = self.start();
            // A lead that can no longer end (the store's thread is gone) keeps the loops.
            if leading.wait_for(|l| !*l).await.is_err() {
                return std::future::pending().await;
            }
            drop(running);
            // Only the leader knows the outbox and the queues: summed over the replicas, the
            // gauges stay true.
            self.metrics.outbox_depth.set(0);
            self.metrics.queue_waiting.clear();
            self.metrics.queue_oldest_wait_seconds.clear();
            self.metrics.agents.clear();
            tracing::info!("no longer leading: the queue loops stopped");
        }
    }

    fn start(&self) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let (store, runtime, wakers, clock) = (&self.store, &self.runtime, &self.wakers, &self.clock);
        tasks.spawn(processor::Processor { store: store.clone(), runtime: runtime.clone(), wakers: wakers.clone(), clock: clock.clone() }.run());
        tasks.spawn(
            delivery::Delivery {
                store: store.clone(),
                runtime: runtime.clone(),
                metrics: Arc::clone(&self.metrics),
                wake: Arc::clone(&wakers.delivery),
                http: self.desk_client.clone(),
                backoff: self.backoff,
                clock: clock.clone(),
                events: self.events.clone(),
            }
            .run(),
        );
        tasks.spawn(
            sender::Sender {
                store: store.clone(),
                runtime: runtime.clone(),
                metrics: Arc::clone(&self.metrics),
                wake: Arc::clone(&wakers.sender),
                delivery: Arc::clone(&wakers.delivery),
                backoff: self.backoff,
                credentials_retry_for: self.args.credentials_retry_for,
                clock: clock.clone(),
                in_flight: Arc::clone(&self.sending),
            }
            .run(),
        );
        tasks.spawn(
            inactivity::Sweeper {
                store: store.clone(),
                runtime: runtime.clone(),
                delivery: Arc::clone(&wakers.delivery),
                sender: Arc::clone(&wakers.sender),
                interval: self.args.sweep_interval,
                clock: clock.clone(),
            }
            .run(),
        );
        tasks.spawn(
            distributor::Distributor {
                store: store.clone(),
                runtime: runtime.clone(),
                wake: Arc::clone(&wakers.distributor),
                metrics: Arc::clone(&self.metrics),
                delivery: Arc::clone(&wakers.delivery),
                sender: Arc::clone(&wakers.sender),
                presence_ttl: self.args.presence_ttl,
                clock: clock.clone(),
            }
            .run(),
        );
        tasks.spawn(prune::run(store.clone(), self.args.dedup_retention, clock.clone()));
        tasks
    }
}

impl GatewayArgs {
    /// The PostgreSQL database the flags name, by URL or in parts; None: the store is SQLite.
    fn postgres_target(&self) -> Option<Result<PostgresTarget, TargetError>> {
        let tls = TlsSettings { mode: self.postgres_ssl_mode, ca_file: self.postgres_ca_file.clone() };
        if let Some(url) = &self.postgres_url {
            return Some(PostgresTarget::from_url(url, tls));
        }
        let parts = PostgresParts {
            host: self.postgres_host.clone()?,
            port: self.postgres_port,
            dbname: self.postgres_dbname.clone(),
            user: self.postgres_user.clone(),
            password: self.postgres_password.clone(),
        };
        Some(PostgresTarget::from_parts(parts, tls))
    }
}

fn secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}

async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, GatewayError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| GatewayError::Listen { addr, source })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GatewayArgs,
    }

    fn parse(flags: &[&str]) -> Result<GatewayArgs, clap::Error> {
        Cli::try_parse_from(["gateway", "--config", "gateway.json"].iter().chain(flags)).map(|cli| cli.args)
    }

    #[test]
    fn the_connection_in_parts_selects_postgres_and_verify_full_is_the_default() {
        let args = parse(&["--postgres-host", "chat-rw", "--postgres-user", "app", "--postgres-password", "pw-flag", "--postgres-dbname", "app"]).unwrap();
        assert_eq!((args.postgres_port, args.postgres_ssl_mode), (5432, SslMode::VerifyFull));
        let target = args.postgres_target().expect("PostgreSQL is selected").unwrap();
        assert!(!format!("{target:?} {args:?}").contains("pw-flag"), "Debug leaves the password out");
        assert!(parse(&[]).unwrap().postgres_target().is_none(), "without a URL or host the store is SQLite");
        let args = parse(&["--postgres-url", "postgres://app@chat-rw/app?sslmode=verify-full", "--postgres-ssl-mode", "verify-ca"]).unwrap();
        assert_eq!(args.postgres_ssl_mode, SslMode::VerifyCa);
        assert!(args.postgres_target().expect("PostgreSQL is selected").is_ok());
    }

    #[test]
    fn the_url_the_parts_and_sqlite_exclude_each_other() {
        use clap::error::ErrorKind::{ArgumentConflict, MissingRequiredArgument};
        for (flags, refusal) in [
            (&["--postgres-url", "postgres://app@chat-rw/app", "--postgres-host", "chat-rw", "--postgres-user", "app"][..], ArgumentConflict),
            (&["--postgres-url", "postgres://app@chat-rw/app", "--postgres-password", "pw"], ArgumentConflict),
            (&["--postgres-host", "chat-rw", "--postgres-user", "app", "--store", "/tmp/gateway.db"], ArgumentConflict),
            (&["--postgres-host", "chat-rw", "--postgres-user", "app", "--store-durability", "process"], ArgumentConflict),
            (&["--postgres-host", "chat-rw"], MissingRequiredArgument),
            (&["--postgres-port", "5433"], MissingRequiredArgument),
        ] {
            assert_eq!(parse(flags).err().map(|e| e.kind()), Some(refusal), "{flags:?}");
        }
    }
}
