//! The Kubernetes client of every part that talks to the API server: the controller, the
//! gateway (watching its ConfigMap) and the local runner.

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// A client from a kubeconfig file, or else the in-cluster configuration or $KUBECONFIG.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<Client, kube::Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(kube::Error::from)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.map_err(kube::Error::from)?
        }
        None => Config::infer().await.map_err(kube::Error::InferConfig)?,
    };
    Client::try_from(config)
}
