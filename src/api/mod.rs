//! The four custom resources of group `switchboard.dev`, version `v1alpha1`, and helpers for
//! their conditions, schemas and validation.

pub mod account;
pub mod channels;
pub mod common;
pub mod conditions;
pub mod crds;
pub mod duration;
pub mod field_error;
pub mod references;
pub mod routing_rule;
pub mod template;
pub mod validation;

pub mod workstream;

pub use account::{MessagingAccount, MessagingAccountSpec, MessagingAccountStatus};
pub use common::{CredentialSource, LocalObjectReference, SecretKeyReference};
pub use routing_rule::{RoutingRule, RoutingRuleSpec, RoutingRuleStatus};
pub use template::{MessageTemplate, MessageTemplateSpec, MessageTemplateStatus};
pub use workstream::{Workstream, WorkstreamSpec, WorkstreamStatus};

/// The API group of every kind.
pub const GROUP: &str = "switchboard.dev";
/// The API version of every kind.
pub const VERSION: &str = "v1alpha1";
/// The annotation that asks for a re-check on any object; any value will do, a new one asks
/// again (see `controller::reconcile_request`; the gateway resumes deliveries a desk ended).
pub const RECONCILE_REQUESTED_AT: &str = "switchboard.dev/reconcile-requested-at";
