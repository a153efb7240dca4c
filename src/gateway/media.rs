//! Files agents upload to send: kept in the store and served on the public webhook port at an
//! unguessable URL, because LINE and Twilio fetch media by URL. Kept for the deduplication
//! retention, like processed events.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::store::StoreError;
use super::webhook::WebhookState;

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

/// Stores an upload in the caller's transaction.
pub fn store(c: &Connection, upload: &Upload, workstream: &str, conversation_id: &str, bytes: &[u8], now: i64) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO media (id, workstream, conversation_id, file_name, content_type, bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
        .execute(params![upload.id, workstream, conversation_id, upload.file_name, upload.content_type, bytes, now])?;
    Ok(())
}

/// Forgets uploads older than `before_ms`; returns how many.
pub fn prune(c: &Connection, before_ms: i64) -> Result<usize, StoreError> {
    Ok(c.prepare_cached("DELETE FROM media WHERE created_ms < ?1")?.execute([before_ms])?)
}

/// `GET /switchboard/{namespace}/{account}/media/{id}/{file_name}`: the file, to whoever has the
/// URL (the provider fetching it for the customer).
pub async fn serve(State(state): State<Arc<WebhookState>>, Path((namespace, account, id, _name)): Path<(String, String, String, String)>) -> Response {
    let ours = state.runtime.borrow().as_ref().is_some_and(|rt| rt.config.account.namespace == namespace && rt.config.account.name == account);
    if !ours || uuid::Uuid::parse_str(&id).is_err() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let found = state
        .store
        .read(move |c| {
            Ok(c.prepare_cached("SELECT content_type, bytes FROM media WHERE id = ?1")?
                .query_row([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .optional()?)
        })
        .await;
    match found {
        Ok(Some((content_type, bytes))) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read an uploaded file");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
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
