//! `switchboard run-gateway`: plays the kubelet for one account's gateway on a machine without
//! one (the local quick start and demo, whose API server has no nodes). It runs the gateway
//! container exactly as the controller rendered it — its arguments and environment — with the
//! ConfigMap written to a file (and rewritten when it changes), the store in a local folder, the
//! Secrets read through the API server, and the servers on loopback. When the controller changes
//! the pod template (a new configuration of the Deployment, a rotated Secret) the process is
//! replaced, as a rollout would; `replicas: 0` stops it.

pub mod pod;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret};
use kube::runtime::{WatchStreamExt, watcher};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use thiserror::Error;
use tokio::process::Child;

use crate::config::{self, PLAIN_CONFIG_KEY};
use crate::controller::gateway_objects;
use crate::kube_client::kube_client;
use pod::{Placement, PlanError};

/// How often the Deployment is read again.
const POLL: Duration = Duration::from_secs(2);
/// How long a stopping gateway may take before it is killed (the pod's default grace period).
const GRACE: Duration = Duration::from_secs(30);

/// Where and what to run.
#[derive(Clone, Debug, clap::Args)]
pub struct RunGatewayArgs {
    /// The MessagingAccount whose gateway to run.
    #[arg(long)]
    pub account: String,
    /// The account's namespace.
    #[arg(long)]
    pub namespace: String,
    /// Kubeconfig file to use; without it, $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Folder for the configuration file and the store; created when missing, kept afterwards.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Address the gateway's servers listen on instead of the container's 0.0.0.0.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen_host: IpAddr,
    /// Added to each of the container's ports (8080, 8081, 9090), for a second account's gateway.
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
}

/// Why the local gateway could not be run.
#[derive(Debug, Error)]
pub enum LocalError {
    /// The API server could not be reached or refused a read.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A local file could not be written.
    #[error("{path}: {source}")]
    File {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The rendered container cannot be run here.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The gateway process could not be started.
    #[error("cannot start the gateway: {0}")]
    Spawn(std::io::Error),
    /// The HTTP client for the gateway's health port could not be built.
    #[error("cannot build an HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The gateway process this runner started, and what it was started from.
struct Running {
    template: PodTemplateSpec,
    child: Child,
    /// `host:port` of its `/readyz`.
    probe: Option<String>,
}

/// What the Deployment's status says, as a kubelet and the Deployment controller would report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Report {
    generation: i64,
    replicas: i32,
    ready: bool,
}

/// Runs the account's gateway until `stop` completes, then stops it as a kubelet would (SIGTERM,
/// then SIGKILL after the grace period). The Deployment's status follows the gateway's `/readyz`,
/// so the account is Ready only while the local gateway serves.
pub async fn run(args: RunGatewayArgs, stop: impl Future<Output = ()>) -> Result<(), LocalError> {
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    tokio::fs::create_dir_all(&args.state_dir).await.map_err(|source| LocalError::File { path: args.state_dir.clone(), source })?;
    let name = gateway_objects::name(&args.account);
    let placement = Placement {
        config_file: args.state_dir.join(PLAIN_CONFIG_KEY),
        store_file: args.state_dir.join("gateway.db"),
        host: args.listen_host,
        port_offset: args.port_offset,
        namespace: args.namespace.clone(),
        pod_name: format!("{name}-local"),
    };
    let config = tokio::spawn(follow_config_map(client.clone(), args.namespace.clone(), name.clone(), placement.config_file.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &args.namespace);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
    let mut running: Option<Running> = None;
    let mut reported: Option<Report> = None;
    let mut waiting_said = false;
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => None,
            status = exit_of(&mut running) => Some(Some(status)),
            () = tokio::time::sleep(POLL) => Some(None),
        };
        match event {
            None => break,
            Some(Some(status)) => {
                tracing::warn!(status = ?status, "the gateway exited; starting it again");
                running = None;
            }
            Some(None) => {}
        }
        let deployment = match deployments.get_opt(&name).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Deployment {name}");
                continue;
            }
        };
        let replicas = deployment.as_ref().map_or(0, |d| d.spec.replicas.unwrap_or(1));
        let wanted = deployment.as_ref().filter(|_| replicas > 0).map(|d| d.spec.template.clone());
        if running.as_ref().map(|r| &r.template) != wanted.as_ref() {
            if let Some(old) = running.take() {
                terminate(old.child).await;
            }
            let config_written = tokio::fs::try_exists(&placement.config_file).await.unwrap_or(false);
            match wanted {
                Some(template) if config_written => match start(&client, &args.namespace, &template, &placement).await {
                    Ok((child, probe)) => running = Some(Running { template, child, probe }),
                    // As a kubelet would: say why and try again (a Secret may come later).
                    Err(e) => tracing::warn!(error = %e, "cannot start the gateway yet"),
                },
                Some(_) => {
                    if !std::mem::replace(&mut waiting_said, true) {
                        tracing::info!("waiting for the ConfigMap {name}");
                    }
                }
                None => tracing::info!("no gateway wanted for {}/{} (no Deployment {name}, or replicas 0)", args.namespace, args.account),
            }
        }
        let Some(deployment) = deployment else { continue };
        let ready = match running.as_ref().and_then(|r| r.probe.as_deref()) {
            Some(probe) => http.get(format!("http://{probe}/readyz")).send().await.is_ok_and(|r| r.status().is_success()),
            None => false,
        };
        let report = Report { generation: deployment.metadata.generation.unwrap_or_default(), replicas, ready };
        if reported != Some(report) {
            match report_status(&deployments, &name, report).await {
                Ok(()) => reported = Some(report),
                Err(e) => tracing::warn!(error = %e, "cannot report the Deployment's status"),
            }
        }
    }
    if let Some(old) = running.take() {
        terminate(old.child).await;
    }
    if let Some(report) = reported {
        let _ = report_status(&deployments, &name, Report { ready: false, ..report }).await;
    }
    config.abort();
    Ok(())
}

/// Writes what a kubelet and the Deployment controller would: one replica, available while the
/// gateway answers `/readyz`.
async fn report_status(deployments: &Api<Deployment>, name: &str, report: Report) -> Result<(), kube::Error> {
    let available = i32::from(report.ready);
    let status = serde_json::json!({"status": {
        "observedGeneration": report.generation,
        "replicas": report.replicas.min(1),
        "updatedReplicas": report.replicas.min(1),
        "readyReplicas": available,
        "availableReplicas": available,
    }});
    deployments.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.map(drop)
}

/// Completes when the running gateway exits; never while none runs.
async fn exit_of(running: &mut Option<Running>) -> Option<std::process::ExitStatus> {
    match running {
        Some(r) => r.child.wait().await.ok(),
        None => std::future::pending().await,
    }
}

/// Starts the planned command; answers the process and the address of its health port.
async fn start(client: &Client, namespace: &str, template: &PodTemplateSpec, placement: &Placement) -> Result<(Child, Option<String>), LocalError> {
    let container = template.spec.as_ref().and_then(|s| s.containers.first()).ok_or_else(|| PlanError::NotTheGateway(Vec::new()))?;
    let secrets = read_secrets(client, namespace, container).await?;
    let lookup = |name: &str, key: &str| match secrets.get(name) {
        Some(Some(data)) => data.get(key).cloned().ok_or_else(|| format!("Secret {name} has no key {key}")),
        Some(None) | None => Err(format!("Secret {name} not found")),
    };
    let command = pod::plan(container, placement, lookup)?;
    let program = std::env::current_exe().map_err(LocalError::Spawn)?;
    let listening: Vec<(&str, &str)> = command.args.windows(2).filter(|w| pod::is_listen_flag(&w[0])).map(|w| (w[0].as_str(), w[1].as_str())).collect();
    tracing::info!(listen = ?listening, "starting the gateway as rendered (credentials from the account's Secrets)");
    let probe = listening.iter().find(|(flag, _)| *flag == "--metrics-addr").map(|(_, addr)| (*addr).to_owned());
    let child = tokio::process::Command::new(program).args(&command.args).envs(command.env).kill_on_drop(true).spawn().map_err(LocalError::Spawn)?;
    Ok((child, probe))
}

/// The keys of every Secret the container's environment names; `None` for a Secret that does
/// not exist. Values that are not UTF-8 are left out, so that the plan names the key.
async fn read_secrets(client: &Client, namespace: &str, container: &k8s_openapi::api::core::v1::Container) -> Result<BTreeMap<String, Option<BTreeMap<String, String>>>, LocalError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let names: std::collections::BTreeSet<&str> =
        container.env.iter().flatten().filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref()).map(|s| s.name.as_str()).collect();
    let mut out = BTreeMap::new();
    for name in names {
        let data = api.get_opt(name).await?.map(|secret| {
            secret.data.unwrap_or_default().into_iter().filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v))).collect()
        });
        out.insert(name.to_owned(), data);
    }
    Ok(out)
}

/// SIGTERM, then SIGKILL once the grace period is over.
async fn terminate(mut child: Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a process ID this process started and has not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        tracing::warn!("the gateway did not stop within {GRACE:?}; killing it");
        let _ = child.kill().await;
    }
}

/// Writes the ConfigMap's configuration to `path` whenever it changes, through a temporary file
/// and a rename, so that the gateway never reads half a document.
async fn follow_config_map(client: Client, namespace: String, name: String, path: PathBuf) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
    let mut last: Option<String> = None;
    while let Some(event) = stream.next().await {
        let document = match event {
            // Written out as plain JSON, so that a person can read what the gateway runs.
            Ok(map) => match config::config_map_document(&map).map(config::document_json) {
                Some(Ok(json)) => Some(json),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the ConfigMap {name} holds no readable configuration");
                    None
                }
                None => None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "watching the ConfigMap {name}");
                continue;
            }
        };
        if let Some(document) = document.filter(|d| last.as_ref() != Some(d)) {
            match write_atomically(&path, &document).await {
                Ok(()) => last = Some(document),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot write the configuration file"),
            }
        }
    }
}

async fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("json.tmp");
    tokio::fs::write(&temporary, contents).await?;
    tokio::fs::rename(&temporary, path).await
}
