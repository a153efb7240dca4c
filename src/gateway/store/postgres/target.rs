//! How the gateway reaches its PostgreSQL database: a connection string, or its parts as
//! CloudNativePG's application Secret holds them, and how the connection is secured.

use std::ops::Range;
use std::path::PathBuf;

use postgres::config::Host;
use thiserror::Error;

use super::ClientError;
use crate::config::gateway_flags;
use crate::providers::credentials::Secret;

/// How the connection is secured, with the meanings of libpq's `sslmode`. A Unix-socket host
/// never uses TLS, whatever the mode, as with libpq.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS; the server's certificate is not checked. With a CA file, it is checked as with
    /// `verify-ca` (libpq does the same).
    Require,
    /// TLS; the server's certificate must chain to a trusted authority, whatever host it names.
    VerifyCa,
    /// TLS; the server's certificate must chain to a trusted authority and name the host
    /// connected to.
    #[default]
    VerifyFull,
}

/// How the connection is secured: the mode, and the authorities the server's certificate is
/// checked against (the system's when no file is given).
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// PEM file of one or more certificates.
    pub ca_file: Option<PathBuf>,
}

/// The connection in parts.
#[derive(Clone, Debug)]
pub struct PostgresParts {
    /// A host name, an address, or the folder of a Unix socket (a path starting with `/`).
    pub host: String,
    pub port: u16,
    /// The database; the user's name when not given.
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// Why the PostgreSQL connection cannot be set up as configured.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The connection string is refused by the client (its message names the option, not the
    /// value).
    #[error("PostgreSQL connection string: {0}")]
    Parse(ClientError),
    /// TLS cannot be used for some hosts and not for others: the client has one mode per
    /// connection string.
    #[error("PostgreSQL connection string names both Unix-socket and TCP hosts, which cannot share a TLS mode; name hosts of one kind, or disable TLS")]
    MixedHosts,
    /// The CA file cannot be read.
    #[error("cannot read the PostgreSQL CA file {path}: {source}")]
    CaFile { path: PathBuf, source: std::io::Error },
    /// The CA file holds something that is not a usable certificate.
    #[error("the PostgreSQL CA file {path} holds an unusable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    /// The CA file holds no certificate.
    #[error("the PostgreSQL CA file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    /// The server's certificate would be checked against the system's authorities, and there
    /// are none.
    #[error("no system certificate authorities were found to check the PostgreSQL server's certificate against; name them with --{}", gateway_flags::POSTGRES_CA_FILE)]
    NoSystemRoots,
    /// rustls refused the TLS configuration.
    #[error("cannot set up TLS for PostgreSQL: {0}")]
    Tls(Box<dyn std::error::Error + Send + Sync>),
}

/// The database to connect to and how. Its `Debug` leaves the password out.
#[derive(Clone, Debug)]
pub struct PostgresTarget {
    pub(super) config: postgres::Config,
    /// The mode in effect: [`SslMode::Disable`] for Unix sockets, `verify-ca` for `require`
    /// with a CA file.
    pub(super) mode: SslMode,
    pub(super) ca_file: Option<PathBuf>,
}

/// The connection string's parameters that the TLS settings replace: libpq takes
/// `sslmode=verify-ca` or `verify-full` and `sslrootcert`, the client refuses them.
const REPLACED: [&str; 2] = ["sslmode", "sslrootcert"];

impl PostgresTarget {
    /// From a `postgres://` URL or libpq-style `key=value` pairs. Their `sslmode` and
    /// `sslrootcert` are ignored: `tls` decides.
    pub fn from_url(url: &Secret, tls: TlsSettings) -> Result<Self, TargetError> {
        let (kept, replaced) = without_replaced(url.expose());
        if replaced {
            tracing::warn!(
                "the PostgreSQL connection string's sslmode and sslrootcert are ignored: --{} and --{} decide",
                gateway_flags::POSTGRES_SSL_MODE,
                gateway_flags::POSTGRES_CA_FILE
            );
        }
        let config: postgres::Config = kept.parse().map_err(|e| TargetError::Parse(ClientError(e)))?;
        Self::new(config, tls)
    }

    pub fn from_parts(parts: PostgresParts, tls: TlsSettings) -> Result<Self, TargetError> {
        let mut config = postgres::Config::new();
        config.host(&parts.host).port(parts.port);
        if let Some(dbname) = &parts.dbname {
            config.dbname(dbname);
        }
        if let Some(user) = &parts.user {
            config.user(user);
        }
        if let Some(password) = &parts.password {
            config.password(password.expose());
        }
        Self::new(config, tls)
    }

    fn new(mut config: postgres::Config, tls: TlsSettings) -> Result<Self, TargetError> {
        let hosts = config.get_hosts();
        let sockets = hosts.iter().filter(|h| is_socket(h)).count();
        let mode = match tls.mode {
            SslMode::Disable => SslMode::Disable,
            _ if sockets > 0 && sockets < hosts.len() => return Err(TargetError::MixedHosts),
            _ if sockets > 0 => SslMode::Disable,
            SslMode::Require if tls.ca_file.is_some() => SslMode::VerifyCa,
            mode => mode,
        };
        // The client knows only whether to ask for TLS; what is checked is the connector's.
        config.ssl_mode(if mode == SslMode::Disable { postgres::config::SslMode::Disable } else { postgres::config::SslMode::Require });
        Ok(Self { config, mode, ca_file: tls.ca_file })
    }
}

fn is_socket(host: &Host) -> bool {
    matches!(host, Host::Unix(_))
}

/// The connection string without the parameters in [`REPLACED`], and whether it had any.
fn without_replaced(s: &str) -> (String, bool) {
    let unchanged = (s.to_owned(), false);
    let (parameters, query) = if ["postgres://", "postgresql://"].iter().any(|p| s.starts_with(p)) {
        let Some(query) = query_start(s) else { return unchanged };
        (url_parameters(s, query), Some(query))
    } else {
        let Some(pairs) = pairs(s) else { return unchanged };
        (pairs, None)
    };
    if !parameters.iter().any(|(key, _)| REPLACED.contains(key)) {
        return unchanged;
    }
    let kept: Vec<&str> = parameters.into_iter().filter(|(key, _)| !REPLACED.contains(key)).map(|(_, span)| &s[span]).collect();
    let rebuilt = match query {
        Some(query) if kept.is_empty() => s[..query - 1].to_owned(),
        Some(query) => format!("{}{}", &s[..query], kept.join("&")),
        None => kept.join(" "),
    };
    (rebuilt, true)
}

/// Where a URL's query begins (after its `?`): the first `?` after the credentials, which end
/// at the first `@`, as the client reads it.
fn query_start(s: &str) -> Option<usize> {
    let from = s.find('@').unwrap_or(0);
    s[from..].find('?').map(|i| from + i + 1)
}

/// A URL's query parameters from `start`: each key and the span of its `key=value`.
fn url_parameters(s: &str, start: usize) -> Vec<(&str, Range<usize>)> {
    let mut at = start;
    s[start..]
        .split('&')
        .map(|pair| {
            let span = at..at + pair.len();
            at = span.end + 1;
            (pair.split_once('=').map_or(pair, |(key, _)| key), span)
        })
        .collect()
}

/// The `key=value` pairs of a libpq-style connection string: each key and the span of its
/// pair, read as the client reads them (values optionally in single quotes, `\` escaping the
/// next character). None when the string is not well formed: the client then says why.
fn pairs(s: &str) -> Option<Vec<(&str, Range<usize>)>> {
    let mut spans = Vec::new();
    let mut chars = s.char_indices().peekable();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {};
    loop {
        skip_space(&mut chars);
        let Some(&(start, _)) = chars.peek() else { return Some(spans) };
        while chars.next_if(|&(_, c)| !c.is_whitespace() && c != '=').is_some() {}
        let key_end = chars.peek().map_or(s.len(), |&(i, _)| i);
        skip_space(&mut chars);
        chars.next_if(|&(_, c)| c == '=')?;
        skip_space(&mut chars);
        let quoted = chars.next_if(|&(_, c)| c == '\'').is_some();
        let end = loop {
            match chars.peek().copied() {
                None if quoted => return None,
                None => break s.len(),
                Some((i, c)) if !quoted && c.is_whitespace() => break i,
                Some((i, '\'')) if quoted => {
                    chars.next();
                    break i + 1;
                }
                Some((_, '\\')) => {
                    chars.next();
                    chars.next();
                }
                Some(_) => {
                    chars.next();
                }
            }
        };
        spans.push((&s[start..key_end], start..end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    fn tls(mode: SslMode) -> TlsSettings {
        TlsSettings { mode, ca_file: None }
    }

    #[test]
    fn modes_have_libpq_names_and_verify_full_is_the_default() {
        let names: Vec<String> = SslMode::value_variants().iter().map(|m| m.to_possible_value().unwrap().get_name().to_owned()).collect();
        assert_eq!(names, ["disable", "require", "verify-ca", "verify-full"]);
        assert_eq!(SslMode::from_str("verify-ca", false), Ok(SslMode::VerifyCa));
        assert!(SslMode::from_str("prefer", false).is_err());
        assert_eq!(SslMode::default(), SslMode::VerifyFull);
    }

    #[test]
    fn parts_make_the_connection() {
        let parts = PostgresParts {
            host: "chat-rw.tenants.svc".into(),
            port: 5433,
            dbname: Some("app".into()),
            user: Some("gateway".into()),
            password: Some(Secret::new("pw-in-parts")),
        };
        let target = PostgresTarget::from_parts(parts, tls(SslMode::VerifyFull)).unwrap();
        assert_eq!(target.config.get_hosts(), [Host::Tcp("chat-rw.tenants.svc".into())]);
        assert_eq!(target.config.get_ports(), [5433]);
        assert_eq!(target.config.get_dbname(), Some("app"));
        assert_eq!(target.config.get_user(), Some("gateway"));
        assert!(target.config.get_password() == Some(b"pw-in-parts".as_slice()));
        assert_eq!(target.mode, SslMode::VerifyFull);
        assert_eq!(target.config.get_ssl_mode(), postgres::config::SslMode::Require);
        assert!(!format!("{target:?}").contains("pw-in-parts"), "Debug leaves the password out");
    }

    #[test]
    fn a_unix_socket_never_uses_tls() {
        let parts = PostgresParts { host: "/run/postgresql".into(), port: 5432, dbname: None, user: Some("gateway".into()), password: None };
        let target = PostgresTarget::from_parts(parts, tls(SslMode::VerifyFull)).unwrap();
        assert!(is_socket(&target.config.get_hosts()[0]));
        assert_eq!(target.mode, SslMode::Disable);
        assert_eq!(target.config.get_ssl_mode(), postgres::config::SslMode::Disable);
        let target = PostgresTarget::from_url(&Secret::new("host=/tmp/pg port=5432 user=postgres"), tls(SslMode::Require)).unwrap();
        assert_eq!(target.mode, SslMode::Disable);
        let mixed = PostgresTarget::from_url(&Secret::new("host=/tmp/pg,db.example user=postgres"), tls(SslMode::Require));
        assert!(matches!(mixed, Err(TargetError::MixedHosts)), "{mixed:?}");
        let mixed = PostgresTarget::from_url(&Secret::new("host=/tmp/pg,db.example user=postgres"), tls(SslMode::Disable));
        assert_eq!(mixed.unwrap().mode, SslMode::Disable);
    }

    #[test]
    fn require_with_a_ca_file_checks_the_chain_as_libpq_does() {
        let settings = TlsSettings { mode: SslMode::Require, ca_file: Some("/etc/postgres/ca.crt".into()) };
        let target = PostgresTarget::from_url(&Secret::new("postgres://gateway@db.example/app"), settings).unwrap();
        assert_eq!(target.mode, SslMode::VerifyCa);
        assert_eq!(PostgresTarget::from_url(&Secret::new("postgres://gateway@db.example/app"), tls(SslMode::Require)).unwrap().mode, SslMode::Require);
    }

    #[test]
    fn the_connection_strings_tls_parameters_give_way_to_the_flags() {
        let url = "postgresql://app:p%40ss?word@chat-rw.tenants:5432/app?application_name=gw&sslmode=verify-full&sslrootcert=/etc/ca.crt";
        let target = PostgresTarget::from_url(&Secret::new(url), tls(SslMode::Disable)).unwrap();
        assert_eq!(target.config.get_application_name(), Some("gw"));
        assert_eq!(target.config.get_dbname(), Some("app"));
        assert!(target.config.get_password() == Some(b"p@ss?word".as_slice()));
        assert_eq!(target.config.get_ssl_mode(), postgres::config::SslMode::Disable);
        let only = "postgres://app@chat-rw/app?sslmode=verify-ca";
        assert_eq!(without_replaced(only), ("postgres://app@chat-rw/app".to_owned(), true));
        assert_eq!(without_replaced("postgres://app@chat-rw/app"), ("postgres://app@chat-rw/app".to_owned(), false));

        let pairs = r"host=chat-rw sslmode = 'verify-full' password='it\'s quoted' sslrootcert=/etc/ca\ file.crt dbname=app";
        let (kept, replaced) = without_replaced(pairs);
        assert!(replaced);
        assert_eq!(kept, r"host=chat-rw password='it\'s quoted' dbname=app");
        let target = PostgresTarget::from_url(&Secret::new(pairs), tls(SslMode::VerifyCa)).unwrap();
        assert!(target.config.get_password() == Some(b"it's quoted".as_slice()));
        let unchanged = "host=chat-rw dbname=app";
        assert_eq!(without_replaced(unchanged), (unchanged.to_owned(), false));
        // Not well formed: left to the client, which says why.
        assert_eq!(without_replaced("host=chat-rw sslmode"), ("host=chat-rw sslmode".to_owned(), false));
        assert!(matches!(PostgresTarget::from_url(&Secret::new("host=chat-rw sslmode"), tls(SslMode::Require)), Err(TargetError::Parse(_))));
    }
}
