//! Webhook signatures as the providers compute them, shared by the simulator (which signs the
//! webhooks it sends) and the gateway (which verifies the ones it receives), so that both sides
//! can never drift apart.
//!
//! The `*_mac` functions return the keyed MAC before finalisation: a verifier calls
//! `hmac::Mac::verify_slice` on it, which compares in constant time, instead of comparing
//! encoded strings.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The key of the MACs [`constant_time_eq`] compares; it only separates that use from others, it
/// is not a secret.
const EQ_KEY: &[u8] = b"switchboard constant-time comparison";

/// The HMAC-SHA256 of a raw LINE webhook body keyed with the channel secret, not yet finalised.
pub fn line_mac(channel_secret: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(channel_secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

/// LINE's `x-line-signature`: Base64(HMAC-SHA256(channel secret, raw body)).
pub fn line_signature(channel_secret: &str, body: &[u8]) -> String {
    STANDARD.encode(line_mac(channel_secret, body).finalize().into_bytes())
}

/// The HMAC-SHA1 Twilio signs a request with, not yet finalised: over the URL followed by each
/// parameter's key and value, sorted by key and, for a repeated key, by value. Repeated pairs
/// are all kept, as twilio-python does (twilio-node drops exact duplicates; a verifier that
/// wants to accept both removes them before calling this).
pub fn twilio_mac<K: AsRef<str>, V: AsRef<str>>(auth_token: &str, url: &str, params: &[(K, V)]) -> Hmac<Sha1> {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    sorted.sort_unstable();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Twilio's `X-Twilio-Signature`: Base64(HMAC-SHA1(auth token, URL + each parameter's key and
/// value, sorted by key)). Values of a repeated key are sorted too, as Twilio's validators do.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(twilio_mac(auth_token, url, params).finalize().into_bytes())
}

/// The lowercase hex SHA-256 of a body, for Twilio's `bodySHA256` query parameter.
pub fn body_sha256_hex(body: &[u8]) -> String {
    Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time that does not depend on where they differ.
///
/// Both sides are put through the same HMAC and the tags compared with `verify_slice`, which is
/// constant time; hashing first also makes inputs of different lengths comparable without an
/// early return on the length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let keyed = || Hmac::<Sha256>::new_from_slice(EQ_KEY).expect("HMAC takes keys of any length");
    let tag = keyed().chain_update(a).finalize().into_bytes();
    keyed().chain_update(b).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_signature_matches_the_documented_example() {
        // The example from Twilio's webhook security documentation and its SDK tests.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let signature = twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params);
        assert_eq!(signature, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn line_signature_matches_openssl() {
        // printf '%s' '{"destination":"U0123456789abcdef0123456789abcdef","events":[]}' \
        //   | openssl dgst -sha256 -hmac 'line-channel-secret' -binary | base64
        let body = br#"{"destination":"U0123456789abcdef0123456789abcdef","events":[]}"#;
        assert_eq!(line_signature("line-channel-secret", body), "tQrmpXGH0rFh/Xuca5a0WSCjuPsdQkRVOWS6wIUW07E=");
    }

    #[test]
    fn twilio_repeated_keys_sort_their_values() {
        // printf '%s' 'https://gw.example.com/hooka1z1z2' | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        let params: Vec<(String, String)> =
            [("z", "2"), ("a", "1"), ("z", "1")].iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(twilio_signature("twilio-auth-token", "https://gw.example.com/hook", &params), "oU3MaiW9BdN6pOKJbPqeDWzXUpM=");
    }

    #[test]
    fn body_hash_is_hex_sha256() {
        assert_eq!(body_sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"same", b"same"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"same", b"sam"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
