//! LINE's `x-line-signature`, checked on the raw bytes before anything else reads them. Pure.

use hmac::Mac;

use crate::gateway::channels::{SignatureError, decode_signature};
use crate::signing;

/// Checks LINE's `x-line-signature`: Base64(HMAC-SHA256(channel secret, raw body)), compared in
/// constant time.
pub fn verify(channel_secret: &str, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let tag = decode_signature(header)?;
    signing::line_mac(channel_secret, body).verify_slice(&tag).map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE_SECRET: &str = "line-channel-secret";
    const LINE_BODY: &[u8] = br#"{"destination":"U0123456789abcdef0123456789abcdef","events":[]}"#;
    // printf '%s' "$LINE_BODY" | openssl dgst -sha256 -hmac 'line-channel-secret' -binary | base64
    const LINE_SIGNATURE: &str = "tQrmpXGH0rFh/Xuca5a0WSCjuPsdQkRVOWS6wIUW07E=";


    #[test]
    fn line_accepts_an_openssl_signature() {
        assert_eq!(verify(LINE_SECRET, LINE_BODY, Some(LINE_SIGNATURE)), Ok(()));
        // printf '%s' 'héllo' | openssl dgst -sha256 -hmac 'line-channel-secret' -binary | base64
        assert_eq!(verify(LINE_SECRET, "héllo".as_bytes(), Some("ycoU8HlEjb0MdXA4OJIl5kvFO2g3HACWGKUlB6WYK+E=")), Ok(()));
    }

    #[test]
    fn line_refuses_a_tampered_body_a_wrong_secret_and_bad_headers() {
        let mut tampered = LINE_BODY.to_vec();
        tampered[3] ^= 1;
        assert_eq!(verify(LINE_SECRET, &tampered, Some(LINE_SIGNATURE)), Err(SignatureError::Invalid));
        assert_eq!(verify("another-secret", LINE_BODY, Some(LINE_SIGNATURE)), Err(SignatureError::Invalid));
        assert_eq!(verify(LINE_SECRET, LINE_BODY, None), Err(SignatureError::Missing));
        assert_eq!(verify(LINE_SECRET, LINE_BODY, Some("  ")), Err(SignatureError::Missing));
        assert_eq!(verify(LINE_SECRET, LINE_BODY, Some("not base64!")), Err(SignatureError::Invalid));
        // Valid Base64 of the wrong length.
        assert_eq!(verify(LINE_SECRET, LINE_BODY, Some("tQrmpXGH0rFh")), Err(SignatureError::Invalid));
    }
}
