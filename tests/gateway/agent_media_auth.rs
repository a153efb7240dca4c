//! Customers' WhatsApp media on a Twilio account that enforces HTTP authentication on media URLs:
//! the gateway fetches it with the account's credentials, which reach Twilio's API host and
//! nothing else (not the CDN it redirects to, not a `MediaUrl` on another host), and a refusal
//! is a clear error without the secret.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{AGENT_TOKEN, Bed, SALES_NUMBER, TWILIO_SID, TWILIO_TOKEN, whatsapp_channel, workstream};

const AYSE: &str = "+905551112233";

/// The simulator's route of Twilio media, and of its stand-in CDN.
const MEDIA_ROUTE: &str = "GET /2010-04-01/Accounts/*/Messages/*/Media/*";
const CDN_ROUTE: &str = "GET /cdn/**";

/// A listener on another host (another port) that records what it is asked, headers included.
struct Elsewhere {
    base_url: String,
    seen: Arc<Mutex<Vec<(Uri, HeaderMap)>>>,
}

impl Elsewhere {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<(Uri, HeaderMap)>>> = Arc::default();
        let record = Arc::clone(&seen);
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                record.lock().unwrap().push((uri, headers));
                (StatusCode::OK, [("content-type", "image/png")], "not Twilio's")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base_url, seen }
    }
}

/// Bytes that are easy to tell apart from anything else.
fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
}

/// Ayşe sends one attachment; returns the agent API path of its content.
async fn customer_sends(bed: &Bed, media: Value) -> String {
    let sent = bed.twilio_message(SALES_NUMBER, AYSE, "Ayşe", "attached", vec![media], false).await;
    assert_eq!(sent["delivery"]["statusCode"], 200, "{sent}");
    let sid = sent["messageSid"].as_str().unwrap().to_owned();
    let received = bed.desk.wait_one("the attachment", |e| e.message_id() == Some(&sid)).await;
    let id = received.conversation().to_owned();
    let view = bed.conversation(&id).await;
    let message = view["messages"].as_array().unwrap().iter().find(|m| m["message"]["id"] == sid.as_str()).unwrap_or_else(|| panic!("{sid} in {view:#}"));
    format!("/v1/conversations/{id}/messages/{}/attachments/0", message["id"].as_str().unwrap())
}

/// The statuses the simulator answered on `route`.
async fn statuses(bed: &Bed, route: &str) -> Vec<u64> {
    bed.sim_requests(route).await.iter().map(|r| r["status"].as_u64().unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_media_behind_twilio_media_auth() {
    let mut bed = Bed::with_media_auth(&[]).await;
    let mut sales = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &bed.desk.url(), &["sales"], None, vec![]);
    sales["fileAttachments"] = json!({"customersCanSend": true, "maxBytes": 1000});
    bed.start(&bed.config(vec![sales])).await;

    // Twilio asks for the credentials and redirects to its CDN, which never sees them.
    let photo = file(600, 3);
    let path = customer_sends(&bed, json!({"contentType": "image/png", "content": STANDARD.encode(&photo)})).await;
    let (status, content_type, bytes) = bed.fetch(&bed.agent_url(&path), Some(AGENT_TOKEN)).await;
    assert_eq!((status.as_u16(), content_type.as_str()), (200, "image/png"), "{}", String::from_utf8_lossy(&bytes));
    assert!(bytes == photo, "the photo's bytes ({} of {})", bytes.len(), photo.len());
    assert_eq!(statuses(&bed, MEDIA_ROUTE).await, [307], "authenticated at Twilio, then redirected");
    assert_eq!(statuses(&bed, CDN_ROUTE).await, [200], "the CDN answers 400 to a request with credentials");

    // The size limit holds after the redirect: Twilio does not say a file's size, the CDN's
    // answer is cut off at the workstream's maxBytes.
    let path = customer_sends(&bed, json!({"contentType": "application/pdf", "content": STANDARD.encode(file(1500, 4))})).await;
    let (status, body) = bed.agent(Method::GET, &path, None).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["message"].as_str().unwrap().contains("larger than the limit of 1000 bytes"), "{body}");

    // A MediaUrl on another host, even one shaped like Twilio's, is not fetched at all: no
    // credentials, and no request from inside the cluster to wherever a webhook points.
    let elsewhere = Elsewhere::start().await;
    let forged = format!("{}/2010-04-01/Accounts/{TWILIO_SID}/Messages/MM0123/Media/ME0123", elsewhere.base_url);
    let path = customer_sends(&bed, json!({"contentType": "image/png", "url": forged})).await;
    let (status, body) = bed.agent(Method::GET, &path, None).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["message"].as_str().unwrap().contains("not on the configured Twilio API host"), "{body}");
    let seen = elsewhere.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, headers)| !headers.contains_key("authorization")), "credentials sent elsewhere: {seen:?}");
    assert!(seen.is_empty(), "the foreign URL was not even asked: {seen:?}");

    // Twilio refusing the credentials (a revoked token) is a clear error, without the token.
    bed.sim_post("/__sim/faults", json!({"route": MEDIA_ROUTE, "kind": "unauthorized", "times": 1})).await;
    let path = customer_sends(&bed, json!({"contentType": "image/png", "content": STANDARD.encode(file(10, 5))})).await;
    let (status, body) = bed.agent(Method::GET, &path, None).await;
    assert_eq!(status, 502, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("Twilio media download") && message.contains("refused the credentials (HTTP 401"), "{body}");
    assert!(!body.to_string().contains(TWILIO_TOKEN), "{body}");
    assert!(!bed.gateway.log().contains(TWILIO_TOKEN), "the token is in the gateway's log");

    bed.finish().await;
}
