//! Files agents upload to send. LINE and Twilio fetch media by URL, so an upload is served on
//! the public webhook port beside the webhook, at an unguessable URL.

use serde::Serialize;

/// An uploaded file, as the API describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    /// The file's ID.
    pub id: String,
    /// Its public URL, which the provider fetches.
    pub url: String,
    /// Its name.
    pub file_name: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The public URL of an upload: beside the webhook path, `…/{account}/media/{id}/{file_name}`.
pub fn public_url(callback_url: &str, id: &str, file_name: &str) -> String {
    let base = callback_url.strip_suffix("/webhook").unwrap_or(callback_url);
    let mut url = url::Url::parse(&format!("{base}/media/{id}/")).map(|u| u.to_string()).unwrap_or_else(|_| format!("{base}/media/{id}/"));
    url.push_str(&url::form_urlencoded::byte_serialize(file_name.as_bytes()).collect::<String>().replace('+', "%20"));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_sit_beside_the_webhook_and_escape_the_name() {
        assert_eq!(
            public_url("https://chat.example/switchboard/ns/acct/webhook", "0f", "Q3 report.pdf"),
            "https://chat.example/switchboard/ns/acct/media/0f/Q3%20report.pdf"
        );
    }
}
