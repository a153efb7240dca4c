//! How the gateway container the controller rendered becomes a command on this machine: the same
//! arguments and environment, with what only a kubelet provides (the ConfigMap, the volume,
//! the Secrets, the downward API) supplied from local files and the API server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVar};
use thiserror::Error;

/// Where a local gateway keeps what a pod would have had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The file the ConfigMap's configuration is written to.
    pub config_file: PathBuf,
    /// The store's database file (the pod's volume).
    pub store_file: PathBuf,
    /// The address every server listens on instead of the container's `0.0.0.0`.
    pub host: IpAddr,
    /// Added to every port, so that several accounts' gateways fit on one machine.
    pub port_offset: u16,
    /// `metadata.namespace` of the pod.
    pub namespace: String,
    /// `metadata.name` of the pod.
    pub pod_name: String,
}

/// The gateway process to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Environment variables, the credentials among them.
    pub env: Vec<(String, String)>,
}

/// Why the container cannot be run here.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// The container has no arguments, or not the gateway's.
    #[error("the container does not run `switchboard gateway` (args: {0:?})")]
    NotTheGateway(Vec<String>),
    /// A flag that takes a value is the last argument.
    #[error("the flag {0} has no value")]
    MissingValue(String),
    /// A listen address does not parse or overflows with the offset.
    #[error("{flag} {value}: not an address this machine can listen on with port offset {offset}")]
    Address {
        /// The flag.
        flag: String,
        /// Its value.
        value: String,
        /// The offset asked for.
        offset: u16,
    },
    /// An environment variable comes from somewhere a local run cannot supply.
    #[error("environment variable {0}: only values, Secret keys, metadata.namespace and metadata.name can be supplied locally")]
    UnsupportedEnv(String),
    /// A Secret or one of its keys is missing (never its value).
    #[error("environment variable {env}: {reason}")]
    Secret {
        /// The variable.
        env: String,
        /// What is missing.
        reason: String,
    },
}

/// A container flag naming a listen address.
pub(crate) fn is_listen_flag(flag: &str) -> bool {
    flag.ends_with("-addr")
}

/// The local command for `container`. `secret(name, key)` reads one Secret key, or says what is
/// missing.
pub fn plan(container: &Container, placement: &Placement, secret: impl Fn(&str, &str) -> Result<String, String>) -> Result<Command, PlanError> {
    let given = container.args.clone().unwrap_or_default();
    if given.first().map(String::as_str) != Some("gateway") {
        return Err(PlanError::NotTheGateway(given));
    }
    let mut args = vec!["gateway".to_owned()];
    let mut rest = given.iter().skip(1);
    while let Some(flag) = rest.next() {
        let takes_value = flag == "--config-map" || flag == "--store" || is_listen_flag(flag);
        if !takes_value {
            args.push(flag.clone());
            continue;
        }
        let value = rest.next().ok_or_else(|| PlanError::MissingValue(flag.clone()))?;
        match flag.as_str() {
            "--config-map" => args.extend(["--config".to_owned(), placement.config_file.display().to_string()]),
            "--store" => args.extend([flag.clone(), placement.store_file.display().to_string()]),
            _ => args.extend([flag.clone(), relocate(flag, value, placement)?.to_string()]),
        }
    }
    let env = container.env.iter().flatten().map(|e| env_value(e, placement, &secret).map(|v| (e.name.clone(), v))).collect::<Result<_, _>>()?;
    Ok(Command { args, env })
}

fn relocate(flag: &str, value: &str, placement: &Placement) -> Result<SocketAddr, PlanError> {
    let invalid = || PlanError::Address { flag: flag.to_owned(), value: value.to_owned(), offset: placement.port_offset };
    let addr: SocketAddr = value.parse().map_err(|_| invalid())?;
    let port = addr.port().checked_add(placement.port_offset).ok_or_else(invalid)?;
    Ok(SocketAddr::new(placement.host, port))
}

fn env_value(env: &EnvVar, placement: &Placement, secret: &impl Fn(&str, &str) -> Result<String, String>) -> Result<String, PlanError> {
    let unsupported = || PlanError::UnsupportedEnv(env.name.clone());
    let Some(from) = &env.value_from else { return Ok(env.value.clone().unwrap_or_default()) };
    if let Some(field) = &from.field_ref {
        return match field.field_path.as_str() {
            "metadata.namespace" => Ok(placement.namespace.clone()),
            "metadata.name" => Ok(placement.pod_name.clone()),
            _ => Err(unsupported()),
        };
    }
    match &from.secret_key_ref {
        Some(selector) => secret(&selector.name, &selector.key).map_err(|reason| PlanError::Secret { env: env.name.clone(), reason }),
        None => Err(unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({
            "name": "gateway",
            "args": ["gateway", "--config-map", "contoso-line-gateway", "--store", "/var/lib/switchboard/gateway.db",
                     "--webhook-addr", "0.0.0.0:8080", "--agent-api-addr", "0.0.0.0:8081", "--metrics-addr", "0.0.0.0:9090",
                     "--line-api-url", "http://127.0.0.1:8089/"],
            "env": [
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "RUST_LOG", "value": "info"},
                {"name": "LINE_CHANNEL_SECRET", "valueFrom": {"secretKeyRef": {"name": "contoso-line", "key": "channel-secret"}}}
            ]
        }))
        .unwrap()
    }

    fn placement(port_offset: u16) -> Placement {
        Placement {
            config_file: "/tmp/s/config.json".into(),
            store_file: "/tmp/s/gateway.db".into(),
            host: "127.0.0.1".parse().unwrap(),
            port_offset,
            namespace: "support".to_owned(),
            pod_name: "contoso-line-gateway-local".to_owned(),
        }
    }

    fn secrets(name: &str, key: &str) -> Result<String, String> {
        match (name, key) {
            ("contoso-line", "channel-secret") => Ok("s3cret".to_owned()),
            _ => Err(format!("Secret {name} has no key {key}")),
        }
    }

    #[test]
    fn the_rendered_container_runs_with_local_files_ports_and_secrets() {
        let command = plan(&container(), &placement(10), secrets).unwrap();
        assert_eq!(
            command.args,
            [
                "gateway", "--config", "/tmp/s/config.json", "--store", "/tmp/s/gateway.db", "--webhook-addr", "127.0.0.1:8090",
                "--agent-api-addr", "127.0.0.1:8091", "--metrics-addr", "127.0.0.1:9100", "--line-api-url", "http://127.0.0.1:8089/"
            ]
        );
        assert_eq!(
            command.env,
            [
                ("POD_NAMESPACE".to_owned(), "support".to_owned()),
                ("POD_NAME".to_owned(), "contoso-line-gateway-local".to_owned()),
                ("RUST_LOG".to_owned(), "info".to_owned()),
                ("LINE_CHANNEL_SECRET".to_owned(), "s3cret".to_owned()),
            ]
        );
    }

    #[test]
    fn what_a_local_run_cannot_supply_is_refused_by_name() {
        let mut missing = container();
        missing.env.as_mut().unwrap()[3] = serde_json::from_value(json!({"name": "LINE_CHANNEL_SECRET", "valueFrom": {"secretKeyRef": {"name": "contoso-line", "key": "other"}}})).unwrap();
        let err = plan(&missing, &placement(0), secrets).unwrap_err();
        assert_eq!(err, PlanError::Secret { env: "LINE_CHANNEL_SECRET".to_owned(), reason: "Secret contoso-line has no key other".to_owned() });
        let mut resource = container();
        resource.env.as_mut().unwrap()[2] = serde_json::from_value(json!({"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}})).unwrap();
        assert_eq!(plan(&resource, &placement(0), secrets).unwrap_err(), PlanError::UnsupportedEnv("CPU".to_owned()));
        let mut other = container();
        other.args = Some(vec!["controller".to_owned()]);
        assert!(matches!(plan(&other, &placement(0), secrets), Err(PlanError::NotTheGateway(_))));
        assert!(matches!(plan(&container(), &placement(u16::MAX), secrets), Err(PlanError::Address { .. })));
    }
}
