//! Reading the credentials a resource names from its namespace's Secrets. Values are wrapped in
//! the redacting [`Secret`] as they are read, so they cannot reach a log, an event or a status.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::{Api, Client};

use crate::api::SecretKeyReference;
use crate::providers::Secret;

/// Why a credential could not be read. Messages name the Secret, the key and the field that
/// refers to them, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The Secret does not exist.
    #[error("Secret {name} (named by {field}) not found")]
    SecretNotFound {
        /// The Secret's name.
        name: String,
        /// The field that names it.
        field: String,
    },
    /// The Secret lacks the key, or its value is empty or not text.
    #[error("Secret {name} (named by {field}) {problem}")]
    SecretKeyMissing {
        /// The Secret's name.
        name: String,
        /// The field that names it.
        field: String,
        /// What is wrong with the key, e.g. `has no key "auth-token"`.
        problem: String,
    },
    /// The API server did not answer the read.
    #[error("reading Secret {name}: {detail}")]
    Unreadable {
        /// The Secret's name.
        name: String,
        /// What went wrong, from the API server's status or the transport.
        detail: String,
    },
}

impl CredentialError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::SecretKeyMissing { .. } => "SecretKeyMissing",
            Self::Unreadable { .. } => "SecretUnreadable",
        }
    }
}

/// Credentials read for one resource, with the versions of the Secrets they came from.
#[derive(Debug)]
pub struct Credentials {
    values: BTreeMap<(String, String), Secret>,
    versions: Vec<String>,
}

impl Credentials {
    /// The value of a reference that was read.
    pub fn get(&self, reference: &SecretKeyReference) -> Option<&Secret> {
        self.values.get(&(reference.name.clone(), reference.key.clone()))
    }

    /// `name@resourceVersion` of every Secret read, sorted: changes when any of them changes.
    pub fn versions(&self) -> &[String] {
        &self.versions
    }
}

/// Reads every referenced key from `namespace`, each Secret once. Surrounding whitespace is
/// removed: tokens never contain it, and a file-made Secret often ends in a newline.
pub async fn read(client: &Client, namespace: &str, refs: &[(&str, &SecretKeyReference)]) -> Result<Credentials, CredentialError> {
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let mut secrets: BTreeMap<&str, KubeSecret> = BTreeMap::new();
    let mut values = BTreeMap::new();
    for (field, reference) in refs {
        let name = reference.name.as_str();
        if !secrets.contains_key(name) {
            secrets.insert(name, fetch(&api, name, field).await?);
        }
        let value = value_of(&secrets[name], &reference.key).map_err(|problem| CredentialError::SecretKeyMissing {
            name: name.to_owned(),
            field: (*field).to_owned(),
            problem,
        })?;
        values.insert((reference.name.clone(), reference.key.clone()), value);
    }
    let versions = secrets
        .iter()
        .map(|(name, s)| format!("{name}@{}", s.metadata.resource_version.as_deref().unwrap_or_default()))
        .collect();
    Ok(Credentials { values, versions })
}

/// The names of the keys of Secret `name` in `namespace`, named by `field`; the values are not
/// kept.
pub async fn keys(client: &Client, namespace: &str, name: &str, field: &str) -> Result<BTreeSet<String>, CredentialError> {
    let secret = fetch(&Api::namespaced(client.clone(), namespace), name, field).await?;
    Ok(secret.data.into_iter().flatten().filter(|(_, value)| !value.0.is_empty()).map(|(key, _)| key).collect())
}

/// Secret `name`, named by `field`.
async fn fetch(api: &Api<KubeSecret>, name: &str, field: &str) -> Result<KubeSecret, CredentialError> {
    let secret = api.get_opt(name).await.map_err(|e| CredentialError::Unreadable { name: name.to_owned(), detail: describe(&e) })?;
    secret.ok_or_else(|| CredentialError::SecretNotFound { name: name.to_owned(), field: field.to_owned() })
}

fn value_of(secret: &KubeSecret, key: &str) -> Result<Secret, String> {
    let bytes = secret.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| format!("has no key {key:?}"))?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| format!("key {key:?} is not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("key {key:?} is empty"));
    }
    Ok(Secret::new(text))
}

/// The API server's own message, which never quotes a Secret's data; other failures by kind
/// only, since a decoding error could quote the body it failed on.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} (HTTP {})", status.message, status.code),
        kube::Error::SerdeError(_) => "the API server's answer could not be decoded".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(data: &[(&str, &[u8])]) -> KubeSecret {
        KubeSecret {
            data: Some(data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec()))).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn values_are_trimmed_and_wrapped() {
        let value = value_of(&secret(&[("token", b"abc123\n")]), "token").unwrap();
        assert_eq!(value.expose(), "abc123");
    }

    #[test]
    fn missing_empty_and_binary_keys_are_named_without_values() {
        let s = secret(&[("empty", b"  \n"), ("binary", &[0xff, 0xfe, b's', b'3'])]);
        assert_eq!(value_of(&s, "token").unwrap_err(), "has no key \"token\"");
        assert_eq!(value_of(&s, "empty").unwrap_err(), "key \"empty\" is empty");
        let binary = value_of(&s, "binary").unwrap_err();
        assert_eq!(binary, "key \"binary\" is not UTF-8 text");
        assert_eq!(value_of(&KubeSecret::default(), "token").unwrap_err(), "has no key \"token\"");
    }

    #[test]
    fn errors_name_secret_field_and_reason() {
        let err = CredentialError::SecretKeyMissing {
            name: "contoso-line".into(),
            field: "spec.line.channelAccessToken.secretKeyRef".into(),
            problem: "has no key \"token\"".into(),
        };
        assert_eq!(err.reason(), "SecretKeyMissing");
        assert_eq!(
            err.to_string(),
            "Secret contoso-line (named by spec.line.channelAccessToken.secretKeyRef) has no key \"token\""
        );
        let err = CredentialError::SecretNotFound { name: "x".into(), field: "spec.f".into() };
        assert_eq!(err.reason(), "SecretNotFound");
    }
}
