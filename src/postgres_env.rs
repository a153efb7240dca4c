//! Which keys of an account's PostgreSQL connection Secret the gateway reads, and under which
//! environment variables: decided from the Secret's key names alone, so that a Secret lacking
//! them is a condition on the account (the controller) or a problem before merge (`check`)
//! rather than a pod that cannot start.

use std::collections::BTreeSet;

use crate::api::SecretKeyReference;
use crate::config::{POSTGRES_DBNAME_ENV, POSTGRES_HOST_ENV, POSTGRES_PASSWORD_ENV, POSTGRES_PORT_ENV, POSTGRES_URL_ENV, POSTGRES_USER_ENV, SecretEnv};

/// The connection Secret's key that holds the whole connection.
const URI_KEY: &str = "uri";
/// The keys of a connection in parts, with the variable each fills, as CloudNativePG names them.
const PARTS: [(&str, &str); 4] =
    [("host", POSTGRES_HOST_ENV), ("dbname", POSTGRES_DBNAME_ENV), ("username", POSTGRES_USER_ENV), ("password", POSTGRES_PASSWORD_ENV)];
/// The optional part: without it the gateway connects to PostgreSQL's default port.
const PORT_KEY: &str = "port";

/// Why a connection Secret's keys cannot make a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("has no key \"uri\", nor the keys host, dbname, username and password (missing: {})", .missing.join(", "))]
pub struct MissingKeys {
    /// The keys of the connection in parts that the Secret lacks.
    pub missing: Vec<&'static str>,
}

/// The gateway's environment variables that come from the connection Secret `secret`, whose
/// data has the keys `keys`: `uri` when it has one, else the parts.
pub fn connection_env(secret: &str, keys: &BTreeSet<&str>) -> Result<Vec<SecretEnv>, MissingKeys> {
    let env = |env: &str, key: &str| SecretEnv { env: env.to_owned(), secret: SecretKeyReference { name: secret.to_owned(), key: key.to_owned() } };
    if keys.contains(URI_KEY) {
        return Ok(vec![env(POSTGRES_URL_ENV, URI_KEY)]);
    }
    let missing: Vec<&'static str> = PARTS.iter().map(|(key, _)| *key).filter(|key| !keys.contains(key)).collect();
    if !missing.is_empty() {
        return Err(MissingKeys { missing });
    }
    let mut parts: Vec<SecretEnv> = PARTS.iter().map(|(key, var)| env(var, key)).collect();
    if keys.contains(PORT_KEY) {
        parts.push(env(POSTGRES_PORT_ENV, PORT_KEY));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(env: &[SecretEnv]) -> Vec<(&str, &str)> {
        env.iter().map(|e| (e.env.as_str(), e.secret.key.as_str())).collect()
    }

    #[test]
    fn the_uri_wins_over_the_parts() {
        let keys = BTreeSet::from(["uri", "host", "dbname", "username", "password", "jdbc-uri"]);
        let env = connection_env("chat-db-app", &keys).unwrap();
        assert_eq!(vars(&env), [(POSTGRES_URL_ENV, "uri")]);
        assert_eq!(env[0].secret.name, "chat-db-app");
    }

    #[test]
    fn the_parts_with_and_without_a_port() {
        let mut keys = BTreeSet::from(["host", "dbname", "username", "password"]);
        let env = connection_env("db", &keys).unwrap();
        assert_eq!(
            vars(&env),
            [(POSTGRES_HOST_ENV, "host"), (POSTGRES_DBNAME_ENV, "dbname"), (POSTGRES_USER_ENV, "username"), (POSTGRES_PASSWORD_ENV, "password")]
        );
        keys.insert("port");
        assert_eq!(vars(&connection_env("db", &keys).unwrap()).last(), Some(&(POSTGRES_PORT_ENV, "port")));
    }

    #[test]
    fn missing_keys_are_named() {
        let err = connection_env("db", &BTreeSet::from(["host", "username", "user"])).unwrap_err();
        assert_eq!(err.missing, ["dbname", "password"]);
        assert_eq!(err.to_string(), "has no key \"uri\", nor the keys host, dbname, username and password (missing: dbname, password)");
        assert_eq!(connection_env("db", &BTreeSet::new()).unwrap_err().missing.len(), 4);
    }
}
