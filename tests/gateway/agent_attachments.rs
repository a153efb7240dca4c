//! Attachments through the agent API: by URL and uploaded (served back on the public media URL),
//! the workstream's limits (agents may not send, too large, blocked extension), and customers'
//! attachments read back through the gateway or refused with the AttachmentRejected message.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{AGENT_TOKEN, Bed, Provider, SALES_NUMBER, SUPPORT_NUMBER, line_channel, line_user, whatsapp_channel, workstream};

const AYSE: &str = "+905551112233";
const BORA: &str = "+905551112244";

/// Bytes that are easy to tell apart from anything else.
fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The inbound message view whose provider ID is `provider_id`.
fn inbound<'a>(view: &'a Value, provider_id: &str) -> &'a Value {
    view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message"]["id"] == provider_id)
        .unwrap_or_else(|| panic!("{provider_id} in {view:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_attachments_by_url_and_upload_within_the_workstreams_limits() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let desk = bed.desk.url();
    let mut sales = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &desk, &["sales"], None, vec![]);
    sales["fileAttachments"] = json!({"customersCanSend": true, "agentsCanSend": true, "maxBytes": 2000, "blockedExtensions": [".exe"]});
    let mut support = workstream("support-whatsapp", whatsapp_channel("support", SUPPORT_NUMBER), &desk, &["support"], None, vec![]);
    support["fileAttachments"] = json!({"agentsCanSend": false});
    bed.start(&bed.config(vec![sales, support])).await;

    // Ayşe sends a photo: passed on, and readable through the gateway as Twilio served it.
    let photo = file(300, 7);
    let media = vec![json!({"contentType": "image/png", "content": STANDARD.encode(&photo)})];
    let sent = bed.twilio_message(SALES_NUMBER, AYSE, "Ayşe", "see the photo", media, false).await;
    let sid = sent["messageSid"].as_str().unwrap();
    let received = bed.desk.wait_one("the photo", |e| e.message_id() == Some(sid)).await;
    assert_eq!(received.body["message"]["attachments"][0]["contentType"], "image/png", "{}", received.body);
    let id = received.conversation().to_owned();
    let view = bed.conversation(&id).await;
    let message = inbound(&view, sid);
    assert_eq!(message["direction"], "in");
    let path = format!("/v1/conversations/{id}/messages/{}/attachments", message["id"].as_str().expect("the gateway's message ID"));
    let (status, content_type, bytes) = bed.fetch(&bed.agent_url(&format!("{path}/0")), Some(AGENT_TOKEN)).await;
    assert_eq!((status.as_u16(), content_type.as_str()), (200, "image/png"));
    assert!(bytes == photo, "the photo's bytes ({} of {})", bytes.len(), photo.len());
    assert_eq!(bed.fetch(&bed.agent_url(&format!("{path}/1")), Some(AGENT_TOKEN)).await.0, 404, "no second attachment");
    assert_eq!(bed.fetch(&bed.agent_url(&format!("{path}/0")), None).await.0, 401, "reading it needs the token");

    // An attachment by URL, with a caption: Twilio's MediaUrl and Body.
    let url = "https://files.example.com/invoices/invoice-17.pdf";
    let attachment = json!({"url": url, "fileName": "invoice-17.pdf", "contentType": "application/pdf"});
    let request = json!({"clientMessageId": "a-url", "text": "Your invoice", "attachment": attachment});
    let (status, body) = bed.send(&id, request).await;
    assert_eq!(status, 202, "{body}");
    let content = &body["message"]["contents"][0];
    assert_eq!((content["type"].as_str(), content["url"].as_str()), (Some("attachment"), Some(url)), "{body}");
    assert_eq!((content["fileName"].as_str(), content["caption"].as_str()), (Some("invoice-17.pdf"), Some("Your invoice")), "{body}");
    bed.desk.wait_outcome("message.accepted", "a-url").await;
    let out = bed.wait_sent("the invoice", |m| m["mediaUrls"] == json!([url])).await;
    assert_eq!(out["body"], "Your invoice", "{out}");

    // An upload: its public URL serves the bytes without a token; then it is sent like any URL.
    let report = file(1500, 3);
    let (status, body) = bed.upload(&id, "report.pdf", "application/pdf", report.clone()).await;
    assert_eq!(status, 201, "{body}");
    let attachment = &body["attachment"];
    assert_eq!(
        (attachment["fileName"].as_str(), attachment["contentType"].as_str()),
        (Some("report.pdf"), Some("application/pdf")),
        "{body}"
    );
    assert_eq!(attachment["size"], 1500);
    let media_url = attachment["url"].as_str().expect("a URL").to_owned();
    let base = bed.webhook_url().trim_end_matches("/webhook").to_owned();
    assert!(media_url.starts_with(&format!("{base}/media/")) && media_url.ends_with("/report.pdf"), "{media_url}");
    assert!(media_url.contains(attachment["id"].as_str().expect("an ID")), "{body}");
    let (status, content_type, bytes) = bed.fetch(&media_url, None).await;
    assert_eq!((status.as_u16(), content_type.as_str()), (200, "application/pdf"));
    assert!(bytes == report, "the upload's bytes ({} of {})", bytes.len(), report.len());
    let (status, body) = bed.send(&id, json!({"clientMessageId": "a-upload", "attachment": {"url": media_url}})).await;
    assert_eq!(status, 202, "{body}");
    bed.desk.wait_outcome("message.accepted", "a-upload").await;
    bed.wait_sent("the report", |m| m["mediaUrls"] == json!([media_url])).await;

    // The limits: too large, blocked extension (by name or by URL); nothing is sent.
    let (status, body) = bed.upload(&id, "big.pdf", "application/pdf", file(2001, 1)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str(), body["maxBytes"].as_i64()),
        (413, Some("attachment_too_large"), Some(2000)),
        "{body}"
    );
    let big = json!({"clientMessageId": "a-big", "attachment": {"url": "https://files.example.com/big.pdf", "size": 5000}});
    let (status, body) = bed.send(&id, big).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str(), body["maxBytes"].as_i64()),
        (413, Some("attachment_too_large"), Some(2000)),
        "{body}"
    );
    let (status, body) = bed.upload(&id, "tool.exe", "application/octet-stream", file(10, 1)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str(), body["extension"].as_str()),
        (422, Some("blocked_extension"), Some(".exe")),
        "{body}"
    );
    let exe = json!({"clientMessageId": "a-exe", "attachment": {"url": "https://files.example.com/setup.exe"}});
    let (status, body) = bed.send(&id, exe).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str(), body["extension"].as_str()),
        (422, Some("blocked_extension"), Some(".exe")),
        "{body}"
    );
    let renamed =
        json!({"clientMessageId": "a-exe-2", "attachment": {"url": "https://files.example.com/download?id=1", "fileName": "SETUP.EXE"}});
    let (status, body) = bed.send(&id, renamed).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (422, Some("blocked_extension")), "{body}");

    // A workstream whose agents may not send attachments.
    bed.twilio_message(SUPPORT_NUMBER, BORA, "Bora", "hello support", vec![], false).await;
    let other = bed
        .desk
        .wait_one("Bora's conversation", |e| e.kind() == "conversation.created" && e.customer() == format!("whatsapp:{BORA}"))
        .await
        .conversation()
        .to_owned();
    let (status, body) = bed.send(&other, json!({"clientMessageId": "a-no", "attachment": {"url": url}})).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (403, Some("attachments_not_allowed")), "{body}");
    let (status, body) = bed.upload(&other, "report.pdf", "application/pdf", file(10, 1)).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (403, Some("attachments_not_allowed")), "{body}");
    assert_eq!(bed.send_text(&other, "text-ok", "Texts are fine").await["status"], "queued");
    bed.desk.wait_outcome("message.accepted", "text-ok").await;

    let sent = bed.sim_messages().await;
    assert_eq!(sent.len(), 3, "two attachments and one text: {sent:#?}");
    // The media URL is not an open directory.
    let (status, _, _) = bed.fetch(&format!("{base}/media/no-such-id/report.pdf"), None).await;
    assert_eq!(status, 404);
    eprintln!("whatsapp_attachments_by_url_and_upload_within_the_workstreams_limits: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

/// How many times the customer was told a file was kept back.
async fn times_told(bed: &Bed) -> usize {
    bed.sim_messages().await.iter().filter(|m| m["body"] == "Sorry, we cannot take files here").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_attachments_as_images_or_links_and_customer_files_refused_then_allowed() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let mut ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    ws["automatedMessages"] = json!([{"trigger": "AttachmentRejected", "locale": "en", "text": "Sorry, we cannot take files here"}]);
    ws["fileAttachments"] = json!({"customersCanSend": false});
    let mut config = bed.config(vec![ws]);
    bed.start(&config).await;
    let ann = line_user(11);

    // Customers may not send files: the desk gets the message without it, the customer is told.
    let image =
        bed.sim_post("/__sim/customer/line", json!({"type": "image", "url": bed.webhook_url(), "userId": ann, "displayName": "Ann"})).await;
    assert_eq!(image["delivery"]["statusCode"], 200, "{image}");
    let received = bed.desk.wait_one("the refused image", |e| e.message_id() == image["messageId"].as_str()).await;
    let message = &received.body["message"];
    assert!(message["attachments"].as_array().is_none_or(|a| a.is_empty()), "the attachment is removed: {message}");
    let rejected = message["rejectedAttachments"].as_array().unwrap_or_else(|| panic!("rejectedAttachments: {}", received.body));
    assert_eq!(rejected.len(), 1, "{message}");
    assert!(rejected[0]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{message}");
    let told = bed.wait_sent("AttachmentRejected", |m| m["to"] == ann.as_str()).await;
    assert_eq!(told["body"], "Sorry, we cannot take files here");
    let id = received.conversation().to_owned();

    // An agent's image is a LINE image message; any other file is a link in a text.
    let jpeg = "https://cdn.example.com/photos/parcel.jpg";
    let request = json!({"clientMessageId": "img", "attachment": {"url": jpeg, "contentType": "image/jpeg"}});
    assert_eq!(bed.send(&id, request).await.0, 202);
    bed.desk.wait_outcome("message.accepted", "img").await;
    let sent = bed.wait_sent("the image", |m| m["lineMessage"]["type"] == "image").await;
    assert_eq!(sent["lineMessage"]["originalContentUrl"], jpeg, "{sent}");
    assert!(sent["lineMessage"]["previewImageUrl"].as_str().is_some_and(|u| u.starts_with("https://")), "{sent}");
    let pdf = "https://cdn.example.com/docs/manual.pdf";
    let request = json!({"clientMessageId": "doc", "attachment": {"url": pdf, "fileName": "manual.pdf", "contentType": "application/pdf"}});
    assert_eq!(bed.send(&id, request).await.0, 202);
    bed.desk.wait_outcome("message.accepted", "doc").await;
    let sent =
        bed.wait_sent("the link", |m| m["lineMessage"]["type"] == "text" && m["body"].as_str().is_some_and(|b| b.contains(pdf))).await;
    assert_eq!(sent["to"], ann.as_str());

    // Allowed again (a new configuration): the file is passed on and read through LINE's
    // content API.
    let loads = bed.gateway.loads();
    config["workstreams"][0]["fileAttachments"] = json!({"customersCanSend": true, "maxBytes": 1000, "blockedExtensions": [".exe"]});
    config["workstreams"][0]["generation"] = json!(2);
    bed.gateway.write_config(&config);
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while bed.gateway.loads() == loads {
        assert!(Instant::now() < deadline, "the new configuration was not loaded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let content = file(400, 9);
    let encoded = STANDARD.encode(&content);
    let request = json!({"type": "image", "url": bed.webhook_url(), "userId": ann, "content": encoded, "contentType": "image/jpeg"});
    let image = bed.sim_post("/__sim/customer/line", request).await;
    let provider_id = image["messageId"].as_str().unwrap().to_owned();
    let received = bed.desk.wait_one("the allowed image", |e| e.message_id() == Some(&provider_id)).await;
    assert_eq!(received.body["message"]["attachments"].as_array().map(Vec::len), Some(1), "{}", received.body);
    assert!(received.body["message"].get("rejectedAttachments").is_none_or(|r| r.as_array().is_some_and(|a| a.is_empty())));
    let view = bed.conversation(&id).await;
    let gateway_id = inbound(&view, &provider_id)["id"].as_str().expect("the gateway's message ID").to_owned();
    let url = bed.agent_url(&format!("/v1/conversations/{id}/messages/{gateway_id}/attachments/0"));
    let (status, content_type, bytes) = bed.fetch(&url, Some(AGENT_TOKEN)).await;
    assert_eq!((status.as_u16(), content_type.as_str()), (200, "image/jpeg"));
    assert!(bytes == content, "the image's bytes ({} of {})", bytes.len(), content.len());
    let (status, body) = bed.agent(Method::GET, &format!("/v1/conversations/{id}/messages/{gateway_id}/attachments/3"), None).await;
    assert_eq!(status, 404, "{body}");

    // LINE says a file's name and size: a blocked extension or a file over maxBytes is kept
    // back; a small one is passed on and readable.
    let mut refused = Vec::new();
    for (name, len) in [("setup.exe", 10), ("big.pdf", 1500), ("notes.txt", 200)] {
        let request =
            json!({"type": "file", "url": bed.webhook_url(), "userId": ann, "fileName": name, "content": STANDARD.encode(file(len, 5))});
        let sent = bed.sim_post("/__sim/customer/line", request).await;
        let event = bed.desk.wait_one(name, |e| e.message_id() == sent["messageId"].as_str()).await;
        refused.push((sent["messageId"].as_str().unwrap().to_owned(), event.body["message"].clone()));
    }
    for (_, message) in &refused[..2] {
        assert!(message["attachments"].as_array().is_none_or(|a| a.is_empty()), "kept back: {message}");
        let rejected = message["rejectedAttachments"].as_array().unwrap_or_else(|| panic!("rejectedAttachments: {message}"));
        assert_eq!(rejected.len(), 1, "{message}");
        assert!(rejected[0]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{message}");
    }
    assert_eq!(refused[0].1["rejectedAttachments"][0]["fileName"], "setup.exe");
    assert_eq!(refused[1].1["rejectedAttachments"][0]["fileName"], "big.pdf");
    let (notes_id, notes) = &refused[2];
    assert_eq!(notes["attachments"].as_array().map(Vec::len), Some(1), "passed on: {notes}");
    let view = bed.conversation(&id).await;
    let gateway_id = inbound(&view, notes_id)["id"].as_str().expect("the gateway's message ID").to_owned();
    let url = bed.agent_url(&format!("/v1/conversations/{id}/messages/{gateway_id}/attachments/0"));
    let (status, _, bytes) = bed.fetch(&url, Some(AGENT_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(bytes == file(200, 5), "the file's bytes");
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while times_told(&bed).await < 3 {
        assert!(Instant::now() < deadline, "the customer was told of each file kept back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(times_told(&bed).await, 3, "told once per file kept back, not for the image or the small file");
    eprintln!("line_attachments_as_images_or_links_and_customer_files_refused_then_allowed: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
