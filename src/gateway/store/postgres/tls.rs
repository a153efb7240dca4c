//! TLS to the PostgreSQL server with rustls, checking the server's certificate as libpq's
//! `sslmode` says: `require` checks nothing of it, `verify-ca` its chain, `verify-full` its
//! chain and the host name. Every mode checks the handshake's signatures, so that the peer holds
//! the certificate's key.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::target::{PostgresTarget, SslMode, TargetError};

/// The connector for `target`, reading its CA file (or the system's authorities) now; None
/// when the connection does not use TLS.
pub(super) fn connector(target: &PostgresTarget) -> Result<Option<MakeRustlsConnect>, TargetError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match target.mode {
        SslMode::Disable => return Ok(None),
        SslMode::Require => Arc::new(ChainOnly { roots: None, algorithms: provider.signature_verification_algorithms }),
        SslMode::VerifyCa => Arc::new(ChainOnly { roots: Some(roots(target)?), algorithms: provider.signature_verification_algorithms }),
        SslMode::VerifyFull => {
            WebPkiServerVerifier::builder_with_provider(roots(target)?, Arc::clone(&provider)).build().map_err(|e| TargetError::Tls(e.into()))?
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Tls(e.into()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn roots(target: &PostgresTarget) -> Result<Arc<RootCertStore>, TargetError> {
    match &target.ca_file {
        Some(path) => ca_file(path),
        None => system_roots(),
    }
    .map(Arc::new)
}

/// The certificates of a PEM file (other sections, such as keys, are passed over).
fn ca_file(path: &Path) -> Result<RootCertStore, TargetError> {
    let pem = std::fs::read(path).map_err(|source| TargetError::CaFile { path: path.to_owned(), source })?;
    let bad = |reason: String| TargetError::BadCertificate { path: path.to_owned(), reason };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TargetError::NoCertificate { path: path.to_owned() });
    }
    Ok(roots)
}

/// The system's authorities, from where reqwest's and kube's verifiers read them on Linux
/// (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else OpenSSL's usual places such as `/etc/ssl/certs`).
fn system_roots() -> Result<RootCertStore, TargetError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system certificate authority could not be read");
    }
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(found.certs);
    if unusable > 0 {
        tracing::debug!(unusable, "system certificate authorities passed over");
    }
    if roots.is_empty() {
        return Err(TargetError::NoSystemRoots);
    }
    Ok(roots)
}

/// Checks the server's certificate chain against `roots` (none: the certificate is taken as it
/// is), never the name it is for; and, as every verifier must, the handshake's signatures.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algorithms.all)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::gateway::store::postgres::target::{PostgresParts, TlsSettings};

    fn target(mode: SslMode, ca_file: Option<&Path>) -> PostgresTarget {
        let parts = PostgresParts { host: "db.example".into(), port: 5432, dbname: None, user: Some("gateway".into()), password: None };
        PostgresTarget::from_parts(parts, TlsSettings { mode, ca_file: ca_file.map(Path::to_owned) }).unwrap()
    }

    fn refused(target: &PostgresTarget) -> TargetError {
        connector(target).err().expect("the connector is refused")
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn the_ca_file_may_hold_several_certificates_and_nothing_else_is_taken() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "{}\n{}", ca_pem(), ca_pem()).unwrap();
        assert_eq!(ca_file(file.path()).unwrap().len(), 2);
        assert!(connector(&target(SslMode::VerifyFull, Some(file.path()))).unwrap().is_some());
        assert!(connector(&target(SslMode::VerifyCa, Some(file.path()))).unwrap().is_some());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let missing = Path::new("/nonexistent/switchboard/ca.crt");
        let err = refused(&target(SslMode::VerifyFull, Some(missing)));
        assert!(matches!(err, TargetError::CaFile { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/switchboard/ca.crt"), "{err}");

        let mut empty = tempfile::NamedTempFile::new().unwrap();
        writeln!(empty, "not a certificate").unwrap();
        let err = refused(&target(SslMode::VerifyCa, Some(empty.path())));
        assert!(matches!(err, TargetError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains(&empty.path().display().to_string()), "{err}");

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").unwrap();
        let err = refused(&target(SslMode::VerifyFull, Some(bad.path())));
        assert!(matches!(err, TargetError::BadCertificate { .. }), "{err}");
    }

    #[test]
    fn require_without_a_ca_file_reads_no_authorities_and_disable_makes_no_connector() {
        assert!(connector(&target(SslMode::Require, None)).unwrap().is_some());
        assert!(connector(&target(SslMode::Disable, Some(Path::new("/nonexistent/ca.crt")))).unwrap().is_none());
    }
}
