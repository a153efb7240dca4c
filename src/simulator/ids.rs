//! Identifiers in the providers' formats: Twilio SIDs, LINE message IDs, ULIDs, tokens.

use sha2::{Digest, Sha256};

const HEX: &[u8; 16] = b"0123456789abcdef";
const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Crockford's base 32, the ULID alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A random Twilio-style SID: the two-letter prefix and 32 lowercase hex digits.
pub fn sid(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    out.extend((0..32).map(|_| HEX[fastrand::usize(..16)] as char));
    out
}

/// A SID derived from a seed, so that the same configuration always yields the same SIDs.
pub fn derived_sid(prefix: &str, seed: &str) -> String {
    format!("{prefix}{}", derived_hex(&format!("{prefix}:{seed}"), 32))
}

/// `len` (at most 64) lowercase hex digits derived from a seed.
pub fn derived_hex(seed: &str, len: usize) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    digest.iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]).take(len).map(char::from).collect()
}

/// A ULID: 48 bits of milliseconds since the epoch and 80 random bits in Crockford base 32, as
/// LINE's `webhookEventId`.
pub fn ulid(millis: i64) -> String {
    let time = u128::from(u64::try_from(millis).unwrap_or(0) & 0xFFFF_FFFF_FFFF);
    let random = u128::from(fastrand::u64(..)) << 16 | u128::from(fastrand::u16(..));
    let value = time << 80 | random;
    (0..26).rev().map(|i| CROCKFORD[((value >> (i * 5)) & 0x1f) as usize] as char).collect()
}

/// A LINE message ID: 18 decimal digits.
pub fn line_message_id() -> String {
    let mut out = String::with_capacity(18);
    out.push(char::from(b'1' + fastrand::u8(..9)));
    out.extend((1..18).map(|_| char::from(b'0' + fastrand::u8(..10))));
    out
}

/// A random alphanumeric token (reply tokens, quote tokens).
pub fn token(len: usize) -> String {
    (0..len).map(|_| ALPHANUMERIC[fastrand::usize(..ALPHANUMERIC.len())] as char).collect()
}

/// A request ID in UUID form, as LINE's `x-line-request-id`.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let s = sid("SM");
        assert!(s.starts_with("SM") && s.len() == 34 && s[2..].bytes().all(|b| HEX.contains(&b)));
        assert_eq!(derived_sid("PN", "+1"), derived_sid("PN", "+1"));
        assert_ne!(derived_sid("PN", "+1"), derived_sid("PN", "+2"));
        let u = ulid(1_700_000_000_000);
        assert_eq!(u.len(), 26);
        assert!(u.bytes().all(|b| CROCKFORD.contains(&b)));
        // The time part sorts: a later millisecond gives a greater prefix.
        assert!(ulid(1_700_000_000_001)[..10] > u[..10]);
        let id = line_message_id();
        assert!(id.len() == 18 && id.bytes().all(|b| b.is_ascii_digit()));
    }
}
