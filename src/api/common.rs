//! Types shared by several kinds: references to other objects and to Secret keys.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to another object of the same namespace, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the referenced object, in the same namespace as this one.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the same namespace. Only the reference is stored; the value is read by
/// the controller and handed to the gateway as an environment variable, never copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Where a credential comes from. Only Secret keys are supported: credentials never appear inline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSource {
    /// The Secret key that holds the credential.
    pub secret_key_ref: SecretKeyReference,
}
