//! Twilio's `X-Twilio-Signature`, checked on the raw bytes before anything else reads them. Pure:
//! the caller reads the header and builds the URL.
//!
//! Every comparison is constant time: the signature through `hmac::Mac::verify_slice` on the
//! decoded header bytes, the body hash through [`signing::constant_time_eq`].

use std::borrow::Cow;

use hmac::Mac;

use crate::gateway::channels::{SignatureError, decode_signature};
use crate::signing;

/// Checks Twilio's `X-Twilio-Signature`.
///
/// `public_url` is the URL Twilio requested, query string included, exactly as Twilio sent it:
/// the caller builds it from the configured public callback URL and the raw query received,
/// never from the Host header, which the sender controls.
///
/// A form body (`json_body` false) is signed over the URL followed by its decoded parameters,
/// sorted. A JSON body is signed over the URL alone, which carries `bodySHA256`, the hex SHA-256
/// of the body; that hash must match too, and a JSON request without it is refused.
///
/// Twilio has signed with and without the default port (`:443`, `:80`) over time, so both forms
/// of the URL are accepted, as its SDKs do. For a repeated identical pair, twilio-python signs
/// every copy and twilio-node one, so both are accepted as well: at most four HMACs per request.
pub fn verify(auth_token: &str, public_url: &str, body: &[u8], json_body: bool, header: Option<&str>) -> Result<(), SignatureError> {
    let tag = decode_signature(header)?;
    let urls = port_variants(public_url);
    let signed = |params: &[(Cow<'_, str>, Cow<'_, str>)]| {
        urls.iter().any(|url| signing::twilio_mac(auth_token, url, params).verify_slice(&tag).is_ok())
    };
    let valid = if json_body {
        // Both checks run whatever the first says: the answer's timing then tells nothing about
        // which part failed.
        let hash_ok = query_value(public_url, "bodySHA256")
            .is_some_and(|expected| signing::constant_time_eq(signing::body_sha256_hex(body).as_bytes(), expected.to_ascii_lowercase().as_bytes()));
        let signature_ok = signed(&[]);
        hash_ok && signature_ok
    } else {
        let params: Vec<(Cow<'_, str>, Cow<'_, str>)> = url::form_urlencoded::parse(body).collect();
        signed(&params) || deduplicated(&params).is_some_and(|unique| signed(&unique))
    };
    if valid { Ok(()) } else { Err(SignatureError::Invalid) }
}

/// The parameters with exact duplicate pairs removed, when there are any.
fn deduplicated<'a>(params: &[(Cow<'a, str>, Cow<'a, str>)]) -> Option<Vec<(Cow<'a, str>, Cow<'a, str>)>> {
    let mut unique = params.to_vec();
    unique.sort_unstable();
    unique.dedup();
    (unique.len() < params.len()).then_some(unique)
}

/// The first value of a query parameter, percent-decoded.
fn query_value(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// The URL as given and, for http and https, the same URL with the scheme's default port
/// removed when it is written out, or added when no port is. Only the authority's text changes:
/// parsing into `url::Url` and printing it again could re-encode the path or the query, which
/// the signature covers byte for byte.
fn port_variants(url: &str) -> Vec<Cow<'_, str>> {
    let mut variants = vec![Cow::Borrowed(url)];
    let Some(scheme_end) = url.find("://") else { return variants };
    let default_port = match &url[..scheme_end] {
        s if s.eq_ignore_ascii_case("https") => "443",
        s if s.eq_ignore_ascii_case("http") => "80",
        _ => return variants,
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..].find(['/', '?', '#']).map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    // The host starts after any user information; a port's colon comes after an IPv6 literal's
    // closing bracket.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_and_port = &authority[host_start..];
    if host_and_port.is_empty() {
        return variants;
    }
    let port_colon = host_and_port.rfind(':').filter(|&colon| host_and_port.rfind(']').is_none_or(|bracket| colon > bracket));
    match port_colon {
        Some(colon) if &host_and_port[colon + 1..] == default_port => {
            let colon = authority_start + host_start + colon;
            variants.push(Cow::Owned(format!("{}{}", &url[..colon], &url[authority_end..])));
        }
        Some(_) => {}
        None => variants.push(Cow::Owned(format!("{}:{default_port}{}", &url[..authority_end], &url[authority_end..]))),
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "twilio-auth-token";
    const FORM_BODY: &[u8] = b"MessageSid=SM1&Body=hi+there";

    #[test]
    fn twilio_accepts_the_documented_example() {
        // Twilio's security documentation example, also reproduced with
        // printf '%s' 'https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+12349013030Digits1234From+12349013030To+18005551212' \
        //   | openssl dgst -sha1 -hmac 12345 -binary | base64
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(verify("12345", url, body, false, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), Ok(()));
        assert_eq!(verify("12346", url, body, false, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), Err(SignatureError::Invalid));
        let tampered = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1235&From=%2B12349013030&To=%2B18005551212";
        assert_eq!(verify("12345", url, tampered, false, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), Err(SignatureError::Invalid));
        assert_eq!(verify("12345", url, body, false, None), Err(SignatureError::Missing));
    }

    #[test]
    fn twilio_accepts_the_url_with_and_without_the_default_port() {
        // printf '%s' 'https://gw.example.com:443/hookBodyhi thereMessageSidSM1' | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        let signed_with_port = Some("PX3DjdnKkfcCBLRDi0OxJ2b4pSM=");
        // printf '%s' 'https://gw.example.com/hookBodyhi thereMessageSidSM1' | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        let signed_without_port = Some("MxnaUre+NdwOTouWPplcltDHM+M=");
        for url in ["https://gw.example.com/hook", "https://gw.example.com:443/hook"] {
            assert_eq!(verify(TOKEN, url, FORM_BODY, false, signed_with_port), Ok(()), "{url}");
            assert_eq!(verify(TOKEN, url, FORM_BODY, false, signed_without_port), Ok(()), "{url}");
        }
        // A port that is not the default is part of the URL and never dropped.
        assert_eq!(verify(TOKEN, "https://gw.example.com:8443/hook", FORM_BODY, false, signed_without_port), Err(SignatureError::Invalid));
        assert_eq!(verify(TOKEN, "https://gw.example.com:80/hook", FORM_BODY, false, signed_without_port), Err(SignatureError::Invalid));

        // http's default port, with a percent-encoded query that must reach the HMAC unchanged:
        // printf '%s' 'http://gw.example.com:80/hook?x=%2Fy%20zBodyhi thereMessageSidSM1' | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        let http_with_port = Some("Gf1JmS3lZAkkYPoU67bFSpQXRn4=");
        // printf '%s' 'http://gw.example.com/hook?x=%2Fy%20zBodyhi thereMessageSidSM1' | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        let http_without_port = Some("womfzBV9GdJsLKTG5f24AFtR9o0=");
        for url in ["http://gw.example.com/hook?x=%2Fy%20z", "http://gw.example.com:80/hook?x=%2Fy%20z"] {
            assert_eq!(verify(TOKEN, url, FORM_BODY, false, http_with_port), Ok(()), "{url}");
            assert_eq!(verify(TOKEN, url, FORM_BODY, false, http_without_port), Ok(()), "{url}");
        }
        assert_eq!(verify(TOKEN, "http://gw.example.com/hook?x=/y%20z", FORM_BODY, false, http_without_port), Err(SignatureError::Invalid));
    }

    #[test]
    fn twilio_sorts_the_values_of_a_repeated_key_and_accepts_both_duplicate_conventions() {
        let url = "https://gw.example.com/hook";
        // printf '%s' 'https://gw.example.com/hooka1z1z2' | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        assert_eq!(verify(TOKEN, url, b"z=2&a=1&z=1", false, Some("oU3MaiW9BdN6pOKJbPqeDWzXUpM=")), Ok(()));
        assert_eq!(verify(TOKEN, url, b"z=2&a=1&z=3", false, Some("oU3MaiW9BdN6pOKJbPqeDWzXUpM=")), Err(SignatureError::Invalid));
        // twilio-python signs both copies of a repeated pair ('...hooka1a1'), twilio-node one ('...hooka1').
        assert_eq!(verify(TOKEN, url, b"a=1&a=1", false, Some("sXj2chbpbuH/986EYVClrTHPryg=")), Ok(()));
        assert_eq!(verify(TOKEN, url, b"a=1&a=1", false, Some("BHHGBKcbQiNg+kuUns/5XZzn+dk=")), Ok(()));
        assert_eq!(verify(TOKEN, url, b"a=1", false, Some("sXj2chbpbuH/986EYVClrTHPryg=")), Err(SignatureError::Invalid));
    }

    #[test]
    fn twilio_json_body_checks_the_url_signature_and_the_body_hash() {
        let body = br#"{"MessageSid":"SM0123456789abcdef0123456789abcdef","From":"whatsapp:+15555550123","To":"whatsapp:+15555550100","Body":"Hello"}"#;
        // printf '%s' "$body" | sha256sum
        let hash = "906cd3a61c384ef28404162fcd40ca347786b800e14d06b6441e7d5b563cb976";
        let url = format!("https://gw.example.com/switchboard/ns/acct/webhook?bodySHA256={hash}");
        // printf '%s' "$url" | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        let signature = Some("ap9+M5zXeZdD/lw+++pCvKQ307Y=");
        assert_eq!(verify(TOKEN, &url, body, true, signature), Ok(()));
        // The same request as seen at the URL with the default port.
        let with_port = url.replacen("gw.example.com", "gw.example.com:443", 1);
        assert_eq!(verify(TOKEN, &with_port, body, true, signature), Ok(()));
        // printf '%s' "$with_port" | openssl dgst -sha1 -hmac 'twilio-auth-token' -binary | base64
        assert_eq!(verify(TOKEN, &url, body, true, Some("91gilIYuQqT1Wjv+C7DtmPOlC7U=")), Ok(()));

        let mut tampered = body.to_vec();
        tampered[20] ^= 1;
        assert_eq!(verify(TOKEN, &url, &tampered, true, signature), Err(SignatureError::Invalid));
        assert_eq!(verify("wrong-token", &url, body, true, signature), Err(SignatureError::Invalid));
        assert_eq!(verify(TOKEN, &url, body, true, None), Err(SignatureError::Missing));
        // A correctly signed URL whose hash is not the body's, and a URL without a hash, are refused.
        let other_hash = format!("https://gw.example.com/switchboard/ns/acct/webhook?bodySHA256={}", signing::body_sha256_hex(b"{}"));
        let other_signature = signing::twilio_signature(TOKEN, &other_hash, &[]);
        assert_eq!(verify(TOKEN, &other_hash, body, true, Some(&other_signature)), Err(SignatureError::Invalid));
        assert_eq!(verify(TOKEN, &other_hash, b"{}", true, Some(&other_signature)), Ok(()));
        assert_eq!(verify(TOKEN, "https://gw.example.com/switchboard/ns/acct/webhook", body, true, signature), Err(SignatureError::Invalid));
    }

    #[test]
    fn port_variants_only_touch_the_authority() {
        let variants = |url| port_variants(url).into_iter().map(Cow::into_owned).collect::<Vec<_>>();
        assert_eq!(variants("https://h/p?a=%2F:443"), ["https://h/p?a=%2F:443", "https://h:443/p?a=%2F:443"]);
        assert_eq!(variants("https://h"), ["https://h", "https://h:443"]);
        assert_eq!(variants("https://h?q#f"), ["https://h?q#f", "https://h:443?q#f"]);
        assert_eq!(variants("https://u:pw@h:443/p"), ["https://u:pw@h:443/p", "https://u:pw@h/p"]);
        assert_eq!(variants("http://[::1]/p"), ["http://[::1]/p", "http://[::1]:80/p"]);
        assert_eq!(variants("http://[::1]:80/p"), ["http://[::1]:80/p", "http://[::1]/p"]);
        assert_eq!(variants("HTTPS://h/p"), ["HTTPS://h/p", "HTTPS://h:443/p"]);
        assert_eq!(variants("https://h:8443/p"), ["https://h:8443/p"]);
        assert_eq!(variants("ftp://h/p"), ["ftp://h/p"]);
        assert_eq!(variants("not a url"), ["not a url"]);
        assert_eq!(variants("https:///p"), ["https:///p"]);
        assert_eq!(variants("ünï://ç/é"), ["ünï://ç/é"]);
    }

    #[test]
    fn errors_do_not_echo_secrets() {
        assert_eq!(SignatureError::Missing.to_string(), "the request carries no signature");
        assert_eq!(SignatureError::Invalid.to_string(), "the request's signature does not match");
    }
}
