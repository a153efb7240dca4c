//! The PostgreSQL store over TLS, as libpq's sslmodes mean it, against a server of its own
//! (`tests/postgres/start.sh DIR --tls CERTS`: Debian's `postgresql` package, on a free port of
//! 127.0.0.1) whose certificate, for `localhost` only, a test authority made; its pg_hba.conf
//! takes TCP connections only over TLS and with a password; and against a stand-in server that
//! offers no TLS. Every refusal names what failed and never holds the password.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use switchboard::gateway::store::{PostgresParts, PostgresTarget, SslMode, Store, TlsSettings};
use switchboard::providers::credentials::Secret;
use tempfile::TempDir;

const PASSWORD: &str = "tls-test-pa55word";

/// The server the tests running at the same time share; the last one to finish stops it.
static SERVER: Mutex<Weak<TlsServer>> = Mutex::new(Weak::new());

struct TlsServer {
    state: TempDir,
    /// The authority's certificate (`ca.crt`) and another authority's (`other-ca.crt`).
    certs: TempDir,
    port: u16,
}

impl TlsServer {
    fn start() -> Self {
        let certs = tempfile::tempdir().unwrap();
        let ca = authority("Switchboard test CA");
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        let write = |name: &str, pem: String| std::fs::write(certs.path().join(name), pem).unwrap();
        write("server.crt", server.pem());
        write("server.key", key.serialize_pem());
        write("ca.crt", ca.pem());
        write("other-ca.crt", authority("Another CA").pem());

        let state = tempfile::tempdir().unwrap();
        let started = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/postgres/start.sh"))
            .arg(state.path())
            .arg("--tls")
            .arg(certs.path())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(started.status.success(), "the TLS server starts (tests/postgres/start.sh --tls)");
        let admin = String::from_utf8(started.stdout).unwrap().trim().to_owned();
        let port = admin.split_whitespace().find_map(|pair| pair.strip_prefix("port=")).expect("start.sh prints the port").parse().unwrap();
        let server = Self { state, certs, port };
        // The superuser over the socket (trusted) makes the password-authenticated role.
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client.batch_execute(&format!("CREATE ROLE gateway LOGIN PASSWORD '{PASSWORD}'")).unwrap();
        client.batch_execute("CREATE DATABASE switchboard OWNER gateway").unwrap();
        server
    }

    fn ca(&self, name: &str) -> std::path::PathBuf {
        self.certs.path().join(name)
    }

    fn url(&self, host: &str) -> Secret {
        Secret::new(format!("host={host} port={} user=gateway password={PASSWORD} dbname=switchboard", self.port))
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/postgres/stop.sh")).arg(self.state.path()).status();
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// The shared server, or None (after saying why) when no PostgreSQL server is installed.
fn server(test: &str) -> Option<Arc<TlsServer>> {
    let installed = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut versions| versions.any(|v| v.is_ok_and(|v| v.path().join("bin/initdb").exists())));
    if !installed {
        let _ = writeln!(std::io::stderr(), "skipped {test}: no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)");
        return None;
    }
    let mut shared = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    // The synchronous client runs its own runtime, so not on the test's.
    let server = Arc::new(std::thread::spawn(TlsServer::start).join().expect("the TLS server starts"));
    *shared = Arc::downgrade(&server);
    Some(server)
}

fn open(target: PostgresTarget) -> Store {
    Store::postgres(&target, Box::new(|_, _| {})).expect("the store starts")
}

fn by_url(server: &TlsServer, host: &str, mode: SslMode, ca: Option<&str>) -> Store {
    let tls = TlsSettings { mode, ca_file: ca.map(|name| server.ca(name)) };
    open(PostgresTarget::from_url(&server.url(host), tls).unwrap())
}

/// Runs a job that needs the schema; the refusal's text otherwise, checked to hold no password.
async fn answer(store: &Store) -> Result<(), String> {
    match store.run(|tx| tx.contact("ws", "customer")).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let (text, debug) = (e.to_string(), format!("{e:?}"));
            assert!(!text.contains(PASSWORD) && !debug.contains(PASSWORD), "the password is not in the error");
            Err(text)
        }
    }
}

#[tokio::test]
async fn verify_full_connects_to_the_host_the_certificate_names() {
    let Some(server) = server("verify_full_connects_to_the_host_the_certificate_names") else { return };
    let parts = PostgresParts { host: "localhost".into(), port: server.port, dbname: Some("switchboard".into()), user: Some("gateway".into()), password: Some(Secret::new(PASSWORD)) };
    let store = open(PostgresTarget::from_parts(parts, TlsSettings { mode: SslMode::VerifyFull, ca_file: Some(server.ca("ca.crt")) }).unwrap());
    answer(&store).await.expect("verify-full with the server's authority connects to localhost");
}

#[tokio::test]
async fn verify_full_refuses_an_address_the_certificate_does_not_name_and_verify_ca_takes_it() {
    let Some(server) = server("verify_full_refuses_an_address_the_certificate_does_not_name_and_verify_ca_takes_it") else { return };
    let refused = answer(&by_url(&server, "127.0.0.1", SslMode::VerifyFull, Some("ca.crt"))).await.expect_err("the certificate names only localhost");
    assert!(refused.contains("TLS") && refused.contains("not valid for name \"127.0.0.1\""), "{refused}");
    answer(&by_url(&server, "127.0.0.1", SslMode::VerifyCa, Some("ca.crt"))).await.expect("verify-ca checks the chain, not the name");
}

#[tokio::test]
async fn verify_full_with_the_systems_authorities_refuses_a_private_authority() {
    let Some(server) = server("verify_full_with_the_systems_authorities_refuses_a_private_authority") else { return };
    let refused = answer(&by_url(&server, "localhost", SslMode::VerifyFull, None)).await.expect_err("no system authority issued the certificate");
    assert!(refused.contains("invalid peer certificate: UnknownIssuer"), "{refused}");
}

#[tokio::test]
async fn require_takes_any_certificate_unless_given_an_authority() {
    let Some(server) = server("require_takes_any_certificate_unless_given_an_authority") else { return };
    answer(&by_url(&server, "127.0.0.1", SslMode::Require, None)).await.expect("require checks no certificate");
    // As with libpq, a CA file makes `require` check the chain.
    let refused = answer(&by_url(&server, "localhost", SslMode::Require, Some("other-ca.crt"))).await.expect_err("another authority issued the certificate");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}

#[tokio::test]
async fn disable_is_refused_by_a_server_that_takes_only_tls() {
    let Some(server) = server("disable_is_refused_by_a_server_that_takes_only_tls") else { return };
    let refused = answer(&by_url(&server, "localhost", SslMode::Disable, None)).await.expect_err("pg_hba.conf takes only hostssl");
    assert!(refused.contains("pg_hba.conf") && refused.contains("no encryption"), "{refused}");
}

#[test]
fn a_missing_ca_file_stops_the_start_with_its_name() {
    let target = PostgresTarget::from_url(&Secret::new("host=localhost user=gateway"), TlsSettings { mode: SslMode::VerifyFull, ca_file: Some(Path::new("/nonexistent/ca.crt").to_owned()) }).unwrap();
    let err = Store::postgres(&target, Box::new(|_, _| {})).expect_err("the CA file is read at start");
    assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
}

#[tokio::test]
async fn a_server_without_tls_is_refused_when_tls_is_required() {
    // A server without TLS answers the client's SSLRequest (8 bytes) with 'N'.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut peer in listener.incoming().flatten() {
            let mut request = [0; 8];
            if std::io::Read::read_exact(&mut peer, &mut request).is_ok() {
                let _ = peer.write_all(b"N");
            }
        }
    });
    let url = Secret::new(format!("host=127.0.0.1 port={port} user=gateway password={PASSWORD} dbname=switchboard"));
    let store = open(PostgresTarget::from_url(&url, TlsSettings { mode: SslMode::Require, ca_file: None }).unwrap());
    let refused = answer(&store).await.expect_err("the server offers no TLS");
    assert!(refused.contains("server does not support TLS"), "{refused}");
}
