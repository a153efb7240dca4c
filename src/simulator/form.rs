//! Form-urlencoded request bodies as Twilio takes them, with repeated keys (`MediaUrl`).

use super::errors::TwilioError;

/// The parameters of a form body, in order.
#[derive(Clone, Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a body; undecodable bytes become U+FFFD rather than an error, like most servers.
    pub fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The first value of a key, when present and not empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value of a key, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// An optional URL setting: absent leaves the setting (`None`), empty clears it
    /// (`Some(None)`), anything else must be an http(s) URL.
    pub fn url(&self, key: &str) -> Result<Option<Option<String>>, TwilioError> {
        match self.get(key) {
            None => Ok(None),
            Some("") => Ok(Some(None)),
            Some(value) => match url::Url::parse(value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(Some(Some(value.to_owned()))),
                _ => Err(TwilioError::invalid_parameter(format!("{key} is not a valid URL: {value}"))),
            },
        }
    }

    /// An optional HTTP method setting restricted to `allowed`, returned upper-case.
    pub fn method(&self, key: &str, allowed: &[&str]) -> Result<Option<String>, TwilioError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => {
                let upper = value.to_ascii_uppercase();
                if allowed.contains(&upper.as_str()) {
                    Ok(Some(upper))
                } else {
                    Err(TwilioError::invalid_parameter(format!("{key} must be one of {}", allowed.join(", "))))
                }
            }
        }
    }
}
