//! The objects that run one MessagingAccount's gateway, rendered from the account and the
//! compiled configuration alone (no API calls), ready for the controller to server-side apply
//! with [`FIELD_MANAGER`]. Every object is named `<account>-gateway`, lives in the account's
//! namespace, carries [`labels`] and is owned by the account, so deleting the account deletes
//! them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::api::account::{DEFAULT_DRAIN_DELAY, GatewayIngress, GatewayStorage, MAX_DRAIN_DELAY, PostgresStore};
use crate::api::duration;
use crate::api::MessagingAccount;
use crate::config::{
    AGENT_API_PORT, COMPRESSED_CONFIG_KEY, GATEWAY_STORE_DIR, GATEWAY_STORE_PATH, GatewayPort, MAX_COMPRESSED_BYTES, METRICS_PORT, SecretEnv,
    WEBHOOK_PORT, gateway_flags,
};
use crate::providers::ProviderEndpoints;

/// The field manager of the controller's server-side applies. Keeping one name lets each apply
/// take over what the previous one set and drop what it no longer sets.
pub const FIELD_MANAGER: &str = "switchboard-controller";

/// The label that names the account a gateway object belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// ConfigMap annotation: the hash of the configuration it holds.
const CONFIG_HASH_ANNOTATION: &str = "switchboard.dev/config-hash";
/// ConfigMap annotation: the compressed configuration's size and the room left.
const CONFIG_SIZE_ANNOTATION: &str = "switchboard.dev/config-size";
/// Pod template annotation: the Secrets the gateway reads, each with its resourceVersion.
const SECRET_VERSIONS_ANNOTATION: &str = "switchboard.dev/secret-versions";

const CONTAINER: &str = "gateway";
/// The user and group of the distroless image's "nonroot" account.
const NONROOT: i64 = 65532;

const STORE_VOLUME: &str = "store";
const TMP_VOLUME: &str = "tmp";
const POSTGRES_CA_VOLUME: &str = "postgres-ca";
/// Where the PostgreSQL server's certificate authority is mounted.
const POSTGRES_CA_DIR: &str = "/etc/switchboard/postgres-ca";
const POSTGRES_CA_FILE: &str = "ca.crt";

/// The gateway's container image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayImage {
    /// The image reference.
    pub image: String,
    /// The imagePullPolicy; the cluster's default for the tag when absent.
    pub pull_policy: Option<String>,
}

/// What one account's gateway objects are rendered from.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The account, as read from the API server: it must have a name, namespace and uid.
    pub account: &'a MessagingAccount,
    /// The compiled configuration document, compressed.
    pub config: &'a [u8],
    /// The configuration's hash.
    pub config_hash: &'a str,
    /// The credentials the gateway reads from Secrets.
    pub secret_env: &'a [SecretEnv],
    /// `name@resourceVersion,...` of every Secret the gateway reads.
    pub secret_versions: &'a str,
    /// The gateway's image.
    pub image: &'a GatewayImage,
    /// The provider hosts the controller calls; the gateway calls the same ones.
    pub endpoints: &'a ProviderEndpoints,
}

/// The objects that run one account's gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayObjects {
    /// The compiled configuration, which the gateway watches.
    pub config_map: ConfigMap,
    /// The gateway's identity towards the API server.
    pub service_account: ServiceAccount,
    /// Read access to the gateway's ConfigMap and nothing else.
    pub role: Role,
    /// Grants the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// The webhook and metrics ports inside the cluster.
    pub service: Service,
    /// The gateway pods.
    pub deployment: Deployment,
    /// The store's volume, when `spec.gateway.storage` is set.
    pub pvc: Option<PersistentVolumeClaim>,
    /// Keeps one replica serving through voluntary disruptions (node drains), when several
    /// replicas share a PostgreSQL store.
    pub pdb: Option<PodDisruptionBudget>,
    /// The public route to the webhook path, when `spec.gateway.ingress` is set.
    pub ingress: Option<Ingress>,
}

/// Why an account's gateway objects cannot be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The account has no name.
    #[error("the MessagingAccount has no metadata.name")]
    MissingName,
    /// The account has no namespace.
    #[error("MessagingAccount {account} has no metadata.namespace")]
    MissingNamespace {
        /// The account's name.
        account: String,
    },
    /// The account has no uid, so nothing can name it as owner.
    #[error("MessagingAccount {namespace}/{account} has no metadata.uid; only an account read from the API server can own objects")]
    MissingUid {
        /// The account's namespace.
        namespace: String,
        /// The account's name.
        account: String,
    },
    /// The objects' name cannot name a Service.
    #[error(
        "MessagingAccount {account}: its gateway Service cannot be named {name:?}; give the account a name of at most 55 lowercase letters, digits and '-' that starts with a letter"
    )]
    InvalidName {
        /// The account's name.
        account: String,
        /// The gateway objects' name.
        name: String,
    },
    /// Two environment variables of the gateway have the same name.
    #[error("the gateway environment variable {env} is set twice")]
    DuplicateEnv {
        /// The variable's name.
        env: String,
    },
}

/// The name of every gateway object of the account named `account_name`.
pub fn name(account_name: &str) -> String {
    format!("{account_name}-gateway")
}

/// The labels of every gateway object of the account named `account_name`, which are also the
/// Service's and the Deployment's pod selector.
pub fn labels(account_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "switchboard-gateway".to_owned()),
        (INSTANCE_LABEL.to_owned(), account_name.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "switchboard".to_owned()),
    ])
}

/// Whether the account's SQLite store lives on a PersistentVolumeClaim; without one (and without
/// a PostgreSQL store) it lives on an emptyDir and is lost with the pod.
pub fn uses_persistent_storage(account: &MessagingAccount) -> bool {
    account.spec.gateway.storage.is_some()
}

/// The account's PostgreSQL store, when it has one instead of the embedded SQLite store.
pub fn postgres_store(account: &MessagingAccount) -> Option<&PostgresStore> {
    account.spec.gateway.store.as_ref().map(|store| &store.postgres)
}

/// Renders the gateway objects of `inputs.account`.
pub fn render(inputs: &Inputs) -> Result<GatewayObjects, RenderError> {
    let owner = Owner::of(inputs.account)?;
    check_env_names(inputs.secret_env)?;
    let gateway = &inputs.account.spec.gateway;
    Ok(GatewayObjects {
        config_map: config_map(&owner, inputs),
        service_account: service_account(&owner),
        role: role(&owner),
        role_binding: role_binding(&owner),
        service: service(&owner),
        deployment: deployment(&owner, inputs),
        pvc: gateway.storage.as_ref().map(|storage| pvc(&owner, storage)),
        pdb: (postgres_store(inputs.account).is_some() && gateway.replicas > 1).then(|| pdb(&owner)),
        ingress: gateway.ingress.as_ref().map(|spec| ingress(&owner, spec)),
    })
}

/// The account as the owner of its gateway objects.
struct Owner {
    account: String,
    namespace: String,
    /// The gateway objects' name.
    name: String,
    reference: OwnerReference,
}

impl Owner {
    fn of(account: &MessagingAccount) -> Result<Self, RenderError> {
        let meta = account.meta();
        let present = |field: &Option<String>| field.clone().filter(|value| !value.is_empty());
        let account_name = present(&meta.name).ok_or(RenderError::MissingName)?;
        let namespace = present(&meta.namespace).ok_or_else(|| RenderError::MissingNamespace { account: account_name.clone() })?;
        let uid = present(&meta.uid)
            .ok_or_else(|| RenderError::MissingUid { namespace: namespace.clone(), account: account_name.clone() })?;
        let name = name(&account_name);
        if !fits_service_name(&name) {
            return Err(RenderError::InvalidName { account: account_name, name });
        }
        let reference = OwnerReference {
            api_version: MessagingAccount::api_version(&()).into_owned(),
            kind: MessagingAccount::kind(&()).into_owned(),
            name: account_name.clone(),
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        Ok(Self { account: account_name, namespace, name, reference })
    }

    fn metadata(&self, annotations: Option<BTreeMap<String, String>>) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels(&self.account)),
            annotations,
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// Whether the gateway name (which always ends in "-gateway") can name a Service: a DNS-1035
/// label. Every other object, and the instance label, accepts any name that passes.
fn fits_service_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The fixed environment of the gateway container, before the credentials.
fn fixed_env() -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.to_owned(), ..ObjectFieldSelector::default() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let value = |name: &str, value: &str| EnvVar { name: name.to_owned(), value: Some(value.to_owned()), ..EnvVar::default() };
    vec![
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_NAME", "metadata.name"),
        value("RUST_LOG", "info"),
        value("SWITCHBOARD_LOG_FORMAT", "json"),
    ]
}

/// Refuses an environment in which a name repeats: server-side apply keys the env list by name
/// and would reject the whole Deployment with a less telling message.
fn check_env_names(secret_env: &[SecretEnv]) -> Result<(), RenderError> {
    let mut seen = BTreeSet::new();
    let fixed = fixed_env().into_iter().map(|e| e.name);
    for env in fixed.chain(secret_env.iter().map(|s| s.env.clone())) {
        if !seen.insert(env.clone()) {
            return Err(RenderError::DuplicateEnv { env });
        }
    }
    Ok(())
}

fn config_map(owner: &Owner, inputs: &Inputs) -> ConfigMap {
    let annotations = BTreeMap::from([
        (CONFIG_HASH_ANNOTATION.to_owned(), inputs.config_hash.to_owned()),
        (CONFIG_SIZE_ANNOTATION.to_owned(), config_size(inputs.config.len())),
    ]);
    ConfigMap {
        metadata: owner.metadata(Some(annotations)),
        binary_data: Some(BTreeMap::from([(COMPRESSED_CONFIG_KEY.to_owned(), ByteString(inputs.config.to_vec()))])),
        ..ConfigMap::default()
    }
}

/// The share of [`MAX_COMPRESSED_BYTES`] a compressed configuration takes, rounded up to a whole
/// percent.
pub fn config_usage(bytes: usize) -> String {
    format!("{}% of {} KiB", (bytes * 100).div_ceil(MAX_COMPRESSED_BYTES), MAX_COMPRESSED_BYTES / 1024)
}

/// A compressed configuration's size against [`MAX_COMPRESSED_BYTES`], for people.
pub fn config_size(bytes: usize) -> String {
    format!("{bytes} bytes compressed of {MAX_COMPRESSED_BYTES} ({} left)", MAX_COMPRESSED_BYTES.saturating_sub(bytes))
}

fn service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.metadata(None),
        // The gateway watches its ConfigMap through the API, so it needs its token.
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

fn role(owner: &Owner) -> Role {
    Role {
        metadata: owner.metadata(None),
        // resourceNames limits list and watch too, but the API server only grants them to a
        // request that names the object: the gateway must list and watch with the field selector
        // metadata.name=<account>-gateway, or it is refused.
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".to_owned()]),
                resource_names: Some(vec![owner.name.clone()]),
                verbs: ["get", "list", "watch"].map(String::from).to_vec(),
                ..PolicyRule::default()
            },
            // Events about its Workstreams (a receiver that answered 410 Gone), each created
            // once and never read or patched.
            PolicyRule {
                api_groups: Some(vec!["events.k8s.io".to_owned()]),
                resources: Some(vec!["events".to_owned()]),
                verbs: vec!["create".to_owned()],
                ..PolicyRule::default()
            },
        ]),
    }
}

fn role_binding(owner: &Owner) -> RoleBinding {
    RoleBinding {
        metadata: owner.metadata(None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: owner.name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: owner.name.clone(),
            namespace: Some(owner.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

/// The protocol of every port. Server-side apply keys port lists by port and protocol, and API
/// servers before 1.21 refuse an element that leaves the protocol to its default.
fn tcp() -> Option<String> {
    Some("TCP".to_owned())
}

fn service(owner: &Owner) -> Service {
    let port = |p: GatewayPort| ServicePort {
        name: Some(p.name.to_owned()),
        port: i32::from(p.number),
        target_port: Some(IntOrString::String(p.name.to_owned())),
        protocol: tcp(),
        ..ServicePort::default()
    };
    Service {
        metadata: owner.metadata(None),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(labels(&owner.account)),
            ports: Some(vec![port(WEBHOOK_PORT), port(AGENT_API_PORT), port(METRICS_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn deployment(owner: &Owner, inputs: &Inputs) -> Deployment {
    let postgres = postgres_store(inputs.account);
    let strategy = if postgres.is_some() {
        // Replicas share the database: a new pod serves before an old one stops.
        DeploymentStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::Int(1)),
            }),
        }
    } else {
        // One SQLite file has one writer: a surge pod would open a second store beside the first
        // (on an emptyDir) or wait for a ReadWriteOnce volume the old pod holds.
        DeploymentStrategy { type_: Some("Recreate".to_owned()), rolling_update: None }
    };
    let store = match postgres {
        Some(PostgresStore { ca_secret_ref: Some(ca), .. }) => Some(Volume {
            name: POSTGRES_CA_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.name.clone()),
                items: Some(vec![KeyToPath { key: ca.key.clone(), path: POSTGRES_CA_FILE.to_owned(), ..KeyToPath::default() }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }),
        Some(_) => None,
        None if uses_persistent_storage(inputs.account) => Some(Volume {
            name: STORE_VOLUME.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: owner.name.clone(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        }),
        None => Some(empty_dir(STORE_VOLUME)),
    };
    // Replicas on different nodes, so that losing one node leaves the others serving; preferred
    // only, so that a one-node cluster still runs them all.
    let spread = postgres.is_some().then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector { match_labels: Some(labels(&owner.account)), ..LabelSelector::default() }),
            ..TopologySpreadConstraint::default()
        }]
    });
    // The configuration hash stays out of the pod template on purpose: the gateway watches its
    // ConfigMap and takes a new configuration live, so a change must not restart the pods (and
    // drop in-flight webhooks). Credentials arrive as env vars, read only at start, so a rotated
    // Secret must roll the pods: its resourceVersion is in the template.
    let annotations = BTreeMap::from([(SECRET_VERSIONS_ANNOTATION.to_owned(), inputs.secret_versions.to_owned())]);
    Deployment {
        metadata: owner.metadata(None),
        spec: DeploymentSpec {
            replicas: Some(inputs.account.spec.gateway.replicas),
            selector: LabelSelector { match_labels: Some(labels(&owner.account)), ..LabelSelector::default() },
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&owner.account)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(owner.name.clone()),
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NONROOT),
                        run_as_group: Some(NONROOT),
                        // Makes the store's volume writable by that group.
                        fs_group: Some(NONROOT),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..SeccompProfile::default() }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container(owner, inputs)],
                    termination_grace_period_seconds: Some(termination_grace_seconds(inputs.account)),
                    // The root filesystem is read-only; libraries that want scratch files get /tmp.
                    volumes: Some(store.into_iter().chain([empty_dir(TMP_VOLUME)]).collect()),
                    topology_spread_constraints: spread,
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn drain_delay_text(account: &MessagingAccount) -> &str {
    account.spec.gateway.drain_delay.as_deref().unwrap_or(DEFAULT_DRAIN_DELAY)
}

/// Time to stop before the kubelet kills the gateway: the drain delay, then the longest a
/// request in flight may still take (the body read timeout, 30 s) and the store's last commit.
fn termination_grace_seconds(account: &MessagingAccount) -> i64 {
    const FINISH_SECONDS: i64 = 40;
    let drain = duration::parse(drain_delay_text(account)).unwrap_or(MAX_DRAIN_DELAY).min(MAX_DRAIN_DELAY);
    i64::try_from(drain.as_millis().div_ceil(1000)).unwrap_or(i64::MAX) + FINISH_SECONDS
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.to_owned(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

fn container(owner: &Owner, inputs: &Inputs) -> Container {
    let flag = |name: &str| format!("--{name}");
    let listen = |p: GatewayPort| p.listen_addr().to_string();
    let postgres = postgres_store(inputs.account);
    let store_args = match postgres {
        Some(store) => {
            let mut args = vec![flag(gateway_flags::POSTGRES_SSL_MODE), store.ssl_mode.as_str().to_owned()];
            if store.ca_secret_ref.is_some() {
                args.extend([flag(gateway_flags::POSTGRES_CA_FILE), format!("{POSTGRES_CA_DIR}/{POSTGRES_CA_FILE}")]);
            }
            args
        }
        None => vec![flag(gateway_flags::STORE), GATEWAY_STORE_PATH.to_owned()],
    };
    let args: Vec<String> = [
        "gateway".to_owned(),
        flag(gateway_flags::CONFIG_MAP),
        owner.name.clone(),
        flag(gateway_flags::DRAIN_DELAY),
        drain_delay_text(inputs.account).to_owned(),
    ]
    .into_iter()
    .chain(store_args)
    .chain([
        flag(gateway_flags::WEBHOOK_ADDR),
        listen(WEBHOOK_PORT),
        flag(gateway_flags::AGENT_API_ADDR),
        listen(AGENT_API_PORT),
        flag(gateway_flags::METRICS_ADDR),
        listen(METRICS_PORT),
    ])
    .chain(inputs.endpoints.non_default_args())
    .collect();
    // Only references: the kubelet reads the user's Secrets, so no credential is copied into an
    // object the controller writes.
    let credentials = inputs.secret_env.iter().map(|s| EnvVar {
        name: s.env.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: s.secret.name.clone(),
                key: s.secret.key.clone(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    let port = |p: GatewayPort| ContainerPort {
        name: Some(p.name.to_owned()),
        container_port: i32::from(p.number),
        protocol: tcp(),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str| VolumeMount { name: name.to_owned(), mount_path: path.to_owned(), ..VolumeMount::default() };
    let store_mount = match postgres {
        Some(store) => store
            .ca_secret_ref
            .as_ref()
            .map(|_| VolumeMount { read_only: Some(true), ..mount(POSTGRES_CA_VOLUME, POSTGRES_CA_DIR) }),
        None => Some(mount(STORE_VOLUME, GATEWAY_STORE_DIR)),
    };
    Container {
        name: CONTAINER.to_owned(),
        image: Some(inputs.image.image.clone()),
        image_pull_policy: inputs.image.pull_policy.clone(),
        args: Some(args),
        env: Some(fixed_env().into_iter().chain(credentials).collect()),
        ports: Some(vec![port(WEBHOOK_PORT), port(AGENT_API_PORT), port(METRICS_PORT)]),
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        // After a crash the store may recover its journal before the server answers; liveness
        // waits for the first answer (up to five minutes) instead of killing a slow start.
        startup_probe: Some(Probe { period_seconds: Some(5), failure_threshold: Some(60), ..probe("/healthz") }),
        resources: Some(inputs.account.spec.gateway.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(store_mount.into_iter().chain([mount(TMP_VOLUME, "/tmp")]).collect()),
        ..Container::default()
    }
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(METRICS_PORT.name.to_owned()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

/// Enough for one account's traffic; the memory limit bounds a leak rather than normal use.
fn default_resources() -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_owned(), quantity("50m")), ("memory".to_owned(), quantity("64Mi"))])),
        limits: Some(BTreeMap::from([("memory".to_owned(), quantity("256Mi"))])),
        ..ResourceRequirements::default()
    }
}

fn pvc(owner: &Owner, storage: &GatewayStorage) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: owner.metadata(None),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), storage.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: storage.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// At least one replica stays up while nodes are drained. Only rendered for several replicas: with
/// one, minAvailable 1 would block every drain of its node.
fn pdb(owner: &Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.metadata(None),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(labels(&owner.account)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Routes the account's webhook path, and only it, to the Service. The metrics stay
/// in-cluster: they describe the account's traffic and the provider has no reason to reach them.
fn public_prefix(owner: &Owner) -> String {
    format!("/switchboard/{}/{}", owner.namespace, owner.account)
}

fn ingress(owner: &Owner, spec: &GatewayIngress) -> Ingress {
    let path = HTTPIngressPath {
        // The account's whole public prefix: the webhook, and the uploaded files the providers
        // fetch under `…/media/`. Prefix matching is by path element, so another account whose
        // name starts with this one's is not routed here.
        path: Some(public_prefix(owner)),
        path_type: "Prefix".to_owned(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: owner.name.clone(),
                port: Some(ServiceBackendPort { name: Some(WEBHOOK_PORT.name.to_owned()), ..ServiceBackendPort::default() }),
            }),
            ..IngressBackend::default()
        },
    };
    let tls = spec.tls_secret_name.as_ref().map(|secret| {
        vec![IngressTLS { hosts: Some(vec![spec.host.clone()]), secret_name: Some(secret.clone()) }]
    });
    Ingress {
        metadata: owner.metadata((!spec.annotations.is_empty()).then(|| spec.annotations.clone())),
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(spec.host.clone()),
                http: Some(HTTPIngressRuleValue { paths: vec![path] }),
            }]),
            tls,
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecretKeyReference;
    use serde_json::{Value, json};

    const ACCOUNT: &str = r#"
apiVersion: switchboard.dev/v1alpha1
kind: MessagingAccount
metadata:
  name: contoso-line
  namespace: support
spec:
  line:
    channelId: "1657123456"
    channelSecret:
      secretKeyRef: {name: contoso-line, key: channel-secret}
    channelAccessToken:
      secretKeyRef: {name: contoso-line, key: channel-access-token}
  webhook:
    publicBaseUrl: https://chat.contoso.example
  gateway:
    replicas: 1
    storage:
      size: 1Gi
      storageClassName: fast
    ingress:
      className: nginx
      host: chat.contoso.example
      tlsSecretName: chat-tls
      annotations:
        cert-manager.io/cluster-issuer: letsencrypt
  dataTransfer:
    acknowledged: true
"#;

    const UID: &str = "7b1c2f0e-3d4a-4e5b-8c6d-0f1e2d3c4b5a";

    /// The quickstart's account with storage and an Ingress, as read from the API server.
    fn account() -> MessagingAccount {
        let mut account: MessagingAccount = serde_yaml::from_str(ACCOUNT).expect("the test account parses");
        account.metadata.uid = Some(UID.to_owned());
        account
    }

    /// The same account without storage or Ingress.
    fn bare_account() -> MessagingAccount {
        let mut account = account();
        account.spec.gateway.storage = None;
        account.spec.gateway.ingress = None;
        account
    }

    fn image() -> GatewayImage {
        GatewayImage { image: "ghcr.io/switchboard-dev/switchboard:0.1.0".to_owned(), pull_policy: Some("IfNotPresent".to_owned()) }
    }

    fn credentials() -> Vec<SecretEnv> {
        let env = |env: &str, key: &str| SecretEnv {
            env: env.to_owned(),
            secret: SecretKeyReference { name: "contoso-line".to_owned(), key: key.to_owned() },
        };
        vec![env("LINE_CHANNEL_SECRET", "channel-secret"), env("LINE_CHANNEL_ACCESS_TOKEN", "channel-access-token")]
    }

    fn render_with(account: &MessagingAccount, config_json: &str, config_hash: &str, secret_versions: &str) -> GatewayObjects {
        let (secret_env, image) = (credentials(), image());
        let endpoints = ProviderEndpoints::default();
        let inputs = Inputs { account, config: config_json.as_bytes(), config_hash, secret_env: &secret_env, secret_versions, image: &image, endpoints: &endpoints };
        render(&inputs).expect("the account renders")
    }

    fn try_render(account: &MessagingAccount, secret_env: &[SecretEnv]) -> Result<GatewayObjects, RenderError> {
        render(&Inputs { account, config: b"{}", config_hash: "h", secret_env, secret_versions: "", image: &image(), endpoints: &ProviderEndpoints::default() })
    }

    fn render_account(account: &MessagingAccount) -> GatewayObjects {
        render_with(account, r#"{"version":1}"#, "abc123", "contoso-line@42")
    }

    fn to_json<T: serde::Serialize>(object: &T) -> Value {
        serde_json::to_value(object).expect("serializes")
    }

    fn all_objects(objects: &GatewayObjects) -> Vec<Value> {
        let mut all = vec![
            to_json(&objects.config_map),
            to_json(&objects.service_account),
            to_json(&objects.role),
            to_json(&objects.role_binding),
            to_json(&objects.service),
            to_json(&objects.deployment),
        ];
        all.extend(objects.pvc.as_ref().map(to_json));
        all.extend(objects.ingress.as_ref().map(to_json));
        all
    }

    fn pod_spec(objects: &GatewayObjects) -> &PodSpec {
        objects.deployment.spec.template.spec.as_ref().expect("the Deployment has a pod spec")
    }

    fn gateway_container(objects: &GatewayObjects) -> &Container {
        pod_spec(objects).containers.first().expect("the pod has a container")
    }

    #[test]
    fn every_object_is_named_labelled_owned_and_typed() {
        let objects = all_objects(&render_account(&account()));
        let kinds: Vec<_> = objects.iter().map(|o| (o["apiVersion"].clone(), o["kind"].clone())).collect();
        let expected = [
            ("v1", "ConfigMap"),
            ("v1", "ServiceAccount"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("v1", "Service"),
            ("apps/v1", "Deployment"),
            ("v1", "PersistentVolumeClaim"),
            ("networking.k8s.io/v1", "Ingress"),
        ];
        assert_eq!(kinds, expected.map(|(v, k)| (json!(v), json!(k))));
        for object in &objects {
            let meta = &object["metadata"];
            assert_eq!(meta["name"], "contoso-line-gateway", "{object}");
            assert_eq!(meta["namespace"], "support", "{object}");
            assert_eq!(
                meta["labels"],
                json!({
                    "app.kubernetes.io/name": "switchboard-gateway",
                    "app.kubernetes.io/instance": "contoso-line",
                    "app.kubernetes.io/managed-by": "switchboard",
                }),
                "{object}"
            );
            assert_eq!(
                meta["ownerReferences"],
                json!([{
                    "apiVersion": "switchboard.dev/v1alpha1",
                    "kind": "MessagingAccount",
                    "name": "contoso-line",
                    "uid": UID,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }]),
                "{object}"
            );
        }
    }

    #[test]
    fn config_map_holds_the_document_and_its_hash() {
        let config_map = render_account(&account()).config_map;
        let document = ByteString(br#"{"version":1}"#.to_vec());
        assert_eq!((config_map.data, config_map.binary_data), (None, Some(BTreeMap::from([("config.json.gz".to_owned(), document)]))));
        let annotations = config_map.metadata.annotations.unwrap();
        assert_eq!(annotations["switchboard.dev/config-hash"], "abc123");
        assert_eq!(annotations["switchboard.dev/config-size"], "13 bytes compressed of 1044480 (1044467 left)");
        assert_eq!((config_usage(13), config_usage(522_240), config_usage(MAX_COMPRESSED_BYTES)), ("1% of 1020 KiB".into(), "50% of 1020 KiB".into(), "100% of 1020 KiB".into()));
    }

    #[test]
    fn configuration_changes_leave_the_pod_template_alone() {
        let template = |objects: GatewayObjects| to_json(&objects.deployment.spec.template);
        let before = template(render_with(&account(), r#"{"version":1}"#, "abc123", "contoso-line@42"));
        let reconfigured = template(render_with(&account(), r#"{"version":2}"#, "def456", "contoso-line@42"));
        let rotated = template(render_with(&account(), r#"{"version":1}"#, "abc123", "contoso-line@43"));
        assert_eq!(before, reconfigured);
        assert_ne!(before, rotated);
        assert_eq!(rotated["metadata"]["annotations"], json!({"switchboard.dev/secret-versions": "contoso-line@43"}));
    }

    #[test]
    fn credentials_are_secret_key_refs_never_values() {
        let objects = render_account(&account());
        let env = to_json(&gateway_container(&objects).env);
        let credential = |name: &str| env.as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap();
        assert_eq!(
            credential("LINE_CHANNEL_SECRET"),
            json!({"name": "LINE_CHANNEL_SECRET", "valueFrom": {"secretKeyRef": {"name": "contoso-line", "key": "channel-secret"}}})
        );
        assert_eq!(credential("LINE_CHANNEL_ACCESS_TOKEN")["valueFrom"]["secretKeyRef"]["key"], "channel-access-token");
        assert_eq!(credential("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
        assert_eq!(credential("RUST_LOG")["value"], "info");
    }

    #[test]
    fn duplicate_env_names_are_refused() {
        let mut secret_env = credentials();
        secret_env[1].env = "POD_NAME".to_owned();
        assert_eq!(try_render(&account(), &secret_env), Err(RenderError::DuplicateEnv { env: "POD_NAME".to_owned() }));
    }

    #[test]
    fn storage_uses_the_claim_and_recreates_pods() {
        let account = account();
        assert!(uses_persistent_storage(&account));
        let objects = render_account(&account);
        let pvc = to_json(&objects.pvc.as_ref().unwrap().spec);
        assert_eq!(pvc, json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"}));
        let volumes = to_json(&pod_spec(&objects).volumes);
        assert_eq!(volumes, json!([{"name": "store", "persistentVolumeClaim": {"claimName": "contoso-line-gateway"}}, {"name": "tmp", "emptyDir": {}}]));
        assert_eq!(to_json(&objects.deployment.spec.strategy), json!({"type": "Recreate"}));
    }

    #[test]
    fn without_storage_the_store_is_an_empty_dir_and_still_one_pod_at_a_time() {
        let account = bare_account();
        assert!(!uses_persistent_storage(&account));
        let objects = render_account(&account);
        assert_eq!(objects.pvc, None);
        let volumes = to_json(&pod_spec(&objects).volumes);
        assert_eq!(volumes, json!([{"name": "store", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]));
        // A surge pod would open a second, empty store beside the first.
        assert_eq!(to_json(&objects.deployment.spec.strategy), json!({"type": "Recreate"}));
        let mounts = to_json(&gateway_container(&objects).volume_mounts);
        assert_eq!(mounts, json!([{"name": "store", "mountPath": "/var/lib/switchboard"}, {"name": "tmp", "mountPath": "/tmp"}]));
        assert_eq!(pod_spec(&objects).topology_spread_constraints, None);
        assert!(gateway_container(&objects).args.as_ref().unwrap().windows(2).any(|w| w == ["--store", GATEWAY_STORE_PATH]));
    }

    /// The bare account on PostgreSQL with `replicas` replicas and a certificate authority.
    fn postgres_account(replicas: i32) -> MessagingAccount {
        let mut account = bare_account();
        account.spec.gateway.replicas = replicas;
        account.spec.gateway.store = Some(serde_json::from_value(json!({"postgres": {
            "connectionSecretRef": {"name": "chat-db-app"},
            "caSecretRef": {"name": "chat-db-ca", "key": "ca.crt"}
        }})).unwrap());
        account
    }

    #[test]
    fn on_postgres_pods_roll_spread_and_keep_nothing_on_the_pod() {
        let objects = render_account(&postgres_account(3));
        assert_eq!(objects.pvc, None);
        assert_eq!(
            to_json(&objects.deployment.spec.strategy),
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
        );
        let pod = pod_spec(&objects);
        assert_eq!(
            to_json(&pod.volumes),
            json!([{"name": "postgres-ca", "secret": {"secretName": "chat-db-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}, {"name": "tmp", "emptyDir": {}}])
        );
        assert_eq!(
            to_json(&pod.topology_spread_constraints),
            json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels("contoso-line")}}])
        );
        let container = gateway_container(&objects);
        let mounts = to_json(&container.volume_mounts);
        assert_eq!(mounts, json!([{"name": "postgres-ca", "mountPath": "/etc/switchboard/postgres-ca", "readOnly": true}, {"name": "tmp", "mountPath": "/tmp"}]));
        let args = container.args.as_ref().unwrap();
        assert!(!args.iter().any(|a| a == "--store"), "{args:?}");
        let pairs: Vec<[&str; 2]> = args.windows(2).map(|w| [w[0].as_str(), w[1].as_str()]).collect();
        assert!(pairs.contains(&["--postgres-ssl-mode", "verify-full"]), "{args:?}");
        assert!(pairs.contains(&["--postgres-ca-file", "/etc/switchboard/postgres-ca/ca.crt"]), "{args:?}");
        let pdb = to_json(&objects.pdb.as_ref().expect("a budget for several replicas"));
        assert_eq!(pdb["apiVersion"], "policy/v1");
        assert_eq!(pdb["metadata"]["name"], "contoso-line-gateway");
        assert_eq!(pdb["spec"], json!({"minAvailable": 1, "selector": {"matchLabels": labels("contoso-line")}}));
    }

    #[test]
    fn the_grace_period_covers_the_drain_delay_and_the_requests_in_flight() {
        let mut account = bare_account();
        let objects = render_account(&account);
        assert_eq!(pod_spec(&objects).termination_grace_period_seconds, Some(45));
        assert!(gateway_container(&objects).args.as_ref().unwrap().windows(2).any(|w| w == ["--drain-delay", "5s"]));
        account.spec.gateway.drain_delay = Some("1m30s".to_owned());
        let objects = render_account(&account);
        assert_eq!(pod_spec(&objects).termination_grace_period_seconds, Some(130));
        assert!(gateway_container(&objects).args.as_ref().unwrap().windows(2).any(|w| w == ["--drain-delay", "1m30s"]));
        account.spec.gateway.drain_delay = Some("1500ms".to_owned());
        assert_eq!(pod_spec(&render_account(&account)).termination_grace_period_seconds, Some(42));
    }

    #[test]
    fn one_postgres_replica_has_no_budget_and_no_ca_means_no_mount() {
        let mut account = postgres_account(1);
        let store = &mut account.spec.gateway.store.as_mut().unwrap().postgres;
        store.ca_secret_ref = None;
        store.ssl_mode = crate::api::account::SslMode::Require;
        let objects = render_account(&account);
        assert_eq!(objects.pdb, None, "minAvailable 1 of 1 would block every drain");
        assert_eq!(to_json(&pod_spec(&objects).volumes), json!([{"name": "tmp", "emptyDir": {}}]));
        let args = gateway_container(&objects).args.clone().unwrap();
        assert!(args.windows(2).any(|w| w == ["--postgres-ssl-mode", "require"]), "{args:?}");
        assert!(!args.iter().any(|a| a == "--postgres-ca-file"), "{args:?}");
    }

    #[test]
    fn ingress_routes_the_accounts_public_prefix() {
        let ingress = render_account(&account()).ingress.unwrap();
        assert_eq!(ingress.metadata.annotations, Some(BTreeMap::from([("cert-manager.io/cluster-issuer".to_owned(), "letsencrypt".to_owned())])));
        assert_eq!(
            to_json(&ingress.spec),
            json!({
                "ingressClassName": "nginx",
                "rules": [{
                    "host": "chat.contoso.example",
                    "http": {"paths": [{
                        "path": "/switchboard/support/contoso-line",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": "contoso-line-gateway", "port": {"name": "webhook"}}},
                    }]},
                }],
                "tls": [{"hosts": ["chat.contoso.example"], "secretName": "chat-tls"}],
            })
        );
    }

    #[test]
    fn ingress_is_absent_unless_asked_for_and_tls_only_with_a_secret() {
        assert_eq!(render_account(&bare_account()).ingress, None);
        let mut account = account();
        if let Some(ingress) = account.spec.gateway.ingress.as_mut() {
            ingress.tls_secret_name = None;
            ingress.annotations.clear();
        }
        let ingress = render_account(&account).ingress.unwrap();
        assert_eq!(ingress.spec.unwrap().tls, None);
        assert_eq!(ingress.metadata.annotations, None);
    }

    #[test]
    fn role_reads_only_the_gateway_config_map_and_creates_events() {
        let objects = render_account(&account());
        assert_eq!(
            to_json(&objects.role.rules),
            json!([
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["contoso-line-gateway"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
            ])
        );
        assert_eq!(
            to_json(&objects.role_binding),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": to_json(&objects.role_binding.metadata),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "contoso-line-gateway"},
                "subjects": [{"kind": "ServiceAccount", "name": "contoso-line-gateway", "namespace": "support"}],
            })
        );
        assert_eq!(objects.service_account.automount_service_account_token, Some(true));
        assert_eq!(pod_spec(&objects).service_account_name.as_deref(), Some("contoso-line-gateway"));
    }

    #[test]
    fn service_exposes_the_named_ports_to_the_gateway_pods() {
        let objects = render_account(&account());
        let spec = objects.service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector, Some(labels("contoso-line")));
        assert_eq!(
            to_json(&spec.ports),
            json!([
                {"name": "webhook", "port": 8080, "targetPort": "webhook", "protocol": "TCP"},
                {"name": "agent-api", "port": 8081, "targetPort": "agent-api", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
            ])
        );
        let deployment = &objects.deployment.spec;
        assert_eq!(deployment.selector.match_labels, Some(labels("contoso-line")));
        assert_eq!(deployment.template.metadata.as_ref().unwrap().labels, Some(labels("contoso-line")));
    }

    #[test]
    fn container_runs_the_gateway_locked_down() {
        let objects = render_account(&account());
        let container = to_json(gateway_container(&objects));
        assert_eq!(container["name"], "gateway");
        assert_eq!(container["image"], "ghcr.io/switchboard-dev/switchboard:0.1.0");
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            container["args"],
            json!([
                "gateway", "--config-map", "contoso-line-gateway", "--drain-delay", "5s", "--store", "/var/lib/switchboard/gateway.db",
                "--webhook-addr", "0.0.0.0:8080", "--agent-api-addr", "0.0.0.0:8081", "--metrics-addr", "0.0.0.0:9090",
            ])
        );
        assert_eq!(container["livenessProbe"], json!({"httpGet": {"path": "/healthz", "port": "metrics"}}));
        assert_eq!(container["readinessProbe"], json!({"httpGet": {"path": "/readyz", "port": "metrics"}}));
        assert_eq!(
            container["securityContext"],
            json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})
        );
        assert_eq!(
            to_json(&pod_spec(&objects).security_context),
            json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
        );
    }

    #[test]
    fn the_gateway_calls_the_providers_the_controller_calls() {
        let (secret_env, image) = (credentials(), image());
        let account = bare_account();
        let endpoints = ProviderEndpoints::all_at(url::Url::parse("http://switchboard-simulator.dev.svc:8089").unwrap());
        let inputs = Inputs { account: &account, config: b"{}", config_hash: "h", secret_env: &secret_env, secret_versions: "", image: &image, endpoints: &endpoints };
        let deployment = render(&inputs).unwrap().deployment;
        let args = deployment.spec.template.spec.unwrap().containers[0].args.clone().unwrap();
        let at = args.iter().position(|a| a == "--twilio-content-url").expect("the endpoint flags are passed");
        assert_eq!(args[at + 1], "http://switchboard-simulator.dev.svc:8089/");
        assert_eq!(args.iter().filter(|a| a.ends_with("-url")).count(), 5, "{args:?}");
    }

    #[test]
    fn replicas_and_resources_come_from_the_spec() {
        let defaults = render_account(&account());
        assert_eq!(defaults.deployment.spec.replicas, Some(1));
        assert_eq!(
            to_json(&gateway_container(&defaults).resources),
            json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
        );

        let mut account = account();
        account.spec.gateway.replicas = 0;
        let resources: ResourceRequirements = serde_json::from_value(json!({"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}})).unwrap();
        account.spec.gateway.resources = Some(resources.clone());
        let objects = render_account(&account);
        assert_eq!(objects.deployment.spec.replicas, Some(0));
        assert_eq!(gateway_container(&objects).resources, Some(resources));
    }

    #[test]
    fn an_account_without_uid_name_or_namespace_is_refused() {
        let attempt = |account: &MessagingAccount| try_render(account, &credentials());
        let mut account = account();
        account.metadata.uid = None;
        let error = attempt(&account).unwrap_err();
        assert_eq!(error, RenderError::MissingUid { namespace: "support".to_owned(), account: "contoso-line".to_owned() });
        assert!(error.to_string().contains("support/contoso-line has no metadata.uid"), "{error}");

        account.metadata.uid = Some(UID.to_owned());
        account.metadata.namespace = Some(String::new());
        assert_eq!(attempt(&account), Err(RenderError::MissingNamespace { account: "contoso-line".to_owned() }));
        account.metadata.name = None;
        assert_eq!(attempt(&account), Err(RenderError::MissingName));
    }

    #[test]
    fn an_account_name_no_service_can_take_is_refused() {
        for bad in ["a".repeat(56), "1line".to_owned(), "contoso.line".to_owned()] {
            let mut account = account();
            account.metadata.name = Some(bad.clone());
            assert_eq!(try_render(&account, &[]), Err(RenderError::InvalidName { account: bad.clone(), name: name(&bad) }));
        }
        let mut account = account();
        account.metadata.name = Some("a".repeat(55));
        assert!(try_render(&account, &[]).is_ok());
    }
}
