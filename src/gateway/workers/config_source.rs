//! Where the gateway's configuration comes from: the `<account>-gateway` ConfigMap, watched
//! through the Kubernetes API, or a file (local runs and tests), polled. Each new document is
//! built into a [`Runtime`] and published whole; a document that cannot be run is logged and
//! counted, and the gateway keeps the one it has.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::gateway::metrics::{Metrics, ReloadOutcome};
use crate::gateway::runtime::Runtime;
use crate::config::{self, GatewayConfig};
use crate::providers::Providers;

/// How often a configuration file is read again.
const FILE_POLL: Duration = Duration::from_secs(1);

/// Where the configuration is.
#[derive(Clone)]
pub enum Source {
    /// A file: JSON, or the ConfigMap's gzip-compressed document.
    File(PathBuf),
    /// A ConfigMap's document (see [`config::config_map_document`]).
    ConfigMap {
        /// Client for the API server.
        client: Client,
        /// The ConfigMap's namespace (the pod's).
        namespace: String,
        /// The ConfigMap's name.
        name: String,
    },
}

/// Publishes the runtimes built from a source.
pub struct Loader {
    /// Where new runtimes go.
    pub publish: watch::Sender<Option<Arc<Runtime>>>,
    /// Client factory for the runtimes' provider clients.
    pub providers: Providers,
    /// Counts loads.
    pub metrics: Arc<Metrics>,
}

impl Loader {
    /// Follows `source` until the process ends.
    pub async fn follow(self, source: Source) {
        match source {
            Source::File(path) => self.follow_file(path).await,
            Source::ConfigMap { client, namespace, name } => self.follow_config_map(client, &namespace, &name).await,
        }
    }

    async fn follow_file(self, path: PathBuf) {
        let mut last: Option<Vec<u8>> = None;
        loop {
            match tokio::fs::read(&path).await {
                Ok(bytes) if last.as_ref() != Some(&bytes) => {
                    self.load(&bytes, &path.display().to_string());
                    last = Some(bytes);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read the configuration file"),
            }
            tokio::time::sleep(FILE_POLL).await;
        }
    }

    async fn follow_config_map(self, client: Client, namespace: &str, name: &str) {
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        // The gateway's Role allows list and watch of its own ConfigMap only, by this selector.
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut last: Option<Vec<u8>> = None;
        let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(cm) => {
                    let Some(document) = config::config_map_document(&cm) else {
                        let keys = format!("binaryData.{} or data.{}", config::COMPRESSED_CONFIG_KEY, config::PLAIN_CONFIG_KEY);
                        tracing::warn!(config_map = name, keys, "the ConfigMap has no configuration key; keeping the current configuration");
                        continue;
                    };
                    if last.as_deref() != Some(document) {
                        self.load(document, &format!("ConfigMap {namespace}/{name}"));
                        last = Some(document.to_vec());
                    }
                }
                Err(e) => tracing::warn!(config_map = name, error = %e, "watching the configuration failed; retrying"),
            }
        }
    }

    fn load(&self, document: &[u8], origin: &str) {
        let built = GatewayConfig::from_document(document)
            .map_err(Into::into)
            .and_then(|config| Runtime::build(config, &|name| std::env::var(name).ok(), &self.providers));
        match built {
            Ok(runtime) => {
                tracing::info!(origin, hash = %runtime.hash, workstreams = runtime.workstreams.len(), "configuration loaded");
                self.metrics.config_load(ReloadOutcome::Applied);
                self.publish.send_replace(Some(Arc::new(runtime)));
            }
            Err(e) => {
                let keeping = if self.publish.borrow().is_some() { "keeping the current one" } else { "not ready until one loads" };
                tracing::error!(origin, error = %e, "configuration rejected; {keeping}");
                self.metrics.config_load(ReloadOutcome::Rejected);
            }
        }
    }
}
