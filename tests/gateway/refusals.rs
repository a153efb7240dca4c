//! Webhooks the gateway must refuse, and the ones it must take without events: each answer's
//! status, nothing at the desk from any of them, and the metrics that count them.

use std::time::Duration;

use serde_json::Value;
use switchboard::signing::line_signature;

use crate::harness::{Bed, LINE_SECRET, Provider, line_channel, line_user, workstream};

/// The body limit the gateway is started with.
const BODY_LIMIT: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_webhooks_are_refused_by_signature_shape_size_method_and_path() {
    let started = std::time::Instant::now();
    let mut bed = Bed::new(Provider::Line, &["--body-limit", &BODY_LIMIT.to_string()]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;

    // One genuine webhook: accepted, and its body and signature are the material for the rest.
    let real = bed.line_text(&line_user(7), "Cem", "genuine").await;
    assert_eq!(real["delivery"]["statusCode"], 200, "{real}");
    let body = real["payload"].to_string();
    let signature = real["signature"].as_str().unwrap().to_owned();
    assert_eq!(line_signature(LINE_SECRET, body.as_bytes()), signature, "the body is byte for byte what the simulator signed");
    bed.desk.wait_messages(1, Duration::from_secs(20)).await;

    let url = bed.webhook_url();
    let post = |body: Vec<u8>, signature: Option<String>| {
        let mut request = bed.http.post(&url).header("content-type", "application/json").body(body);
        if let Some(signature) = signature {
            request = request.header("x-line-signature", signature);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // A changed body under the real signature, no signature, an empty one, another key's.
    let tampered = body.replace("genuine", "genuinE");
    assert_ne!(tampered, body);
    assert_eq!(post(tampered.clone().into_bytes(), Some(signature.clone())).await, 401, "tampered body");
    assert_eq!(post(body.clone().into_bytes(), None).await, 401, "no signature");
    assert_eq!(post(body.clone().into_bytes(), Some(String::new())).await, 401, "empty signature");
    let other_key = line_signature("another-channel-secret", body.as_bytes());
    assert_eq!(post(body.clone().into_bytes(), Some(other_key)).await, 401, "another secret");
    let signature_refusals = 4.0;

    // LINE's verification call: signed, no events.
    let verification = format!(r#"{{"destination":"{}","events":[]}}"#, real["payload"]["destination"].as_str().unwrap());
    assert_eq!(post(verification.clone().into_bytes(), Some(line_signature(LINE_SECRET, verification.as_bytes()))).await, 200, "verification");

    // Signed but not a webhook: not JSON, and JSON without the envelope.
    let not_json = b"this is not json".to_vec();
    assert_eq!(post(not_json.clone(), Some(line_signature(LINE_SECRET, &not_json))).await, 400, "not JSON");
    let no_envelope = br#"{"events":"none"}"#.to_vec();
    assert_eq!(post(no_envelope.clone(), Some(line_signature(LINE_SECRET, &no_envelope))).await, 400, "no envelope");

    // Over the body limit, even when signed.
    let mut large: Value = real["payload"].clone();
    large["events"][0]["message"]["text"] = Value::String("x".repeat(BODY_LIMIT));
    let large = large.to_string().into_bytes();
    assert!(large.len() > BODY_LIMIT);
    assert_eq!(post(large.clone(), Some(line_signature(LINE_SECRET, &large))).await, 413, "over the limit");

    // Another method, another account's path, another namespace's.
    assert_eq!(bed.http.get(&url).send().await.unwrap().status(), 405);
    assert_eq!(bed.http.put(&url).body(body.clone()).header("x-line-signature", signature.clone()).send().await.unwrap().status(), 405);
    let base = format!("http://127.0.0.1:{}", bed.gateway.webhook_port);
    for path in ["/switchboard/support/another-account/webhook", "/switchboard/elsewhere/contoso-line/webhook", "/webhook"] {
        let request = bed.http.post(format!("{base}{path}")).header("x-line-signature", signature.clone()).body(body.clone());
        let status = request.send().await.unwrap().status();
        assert_eq!(status, 404, "{path}");
    }

    // The genuine body once more is a redelivery: 200, and still nothing new.
    assert_eq!(post(body.clone().into_bytes(), Some(signature.clone())).await, 200, "the genuine body again");

    let text = bed.metrics().await;
    let series = |s: &str| crate::harness::metric(&text, s);
    assert_eq!(series(r#"switchboard_gateway_signature_failures_total{provider="Line"}"#), signature_refusals, "{text}");
    assert_eq!(series(r#"switchboard_gateway_webhook_requests_total{provider="Line",outcome="Unauthorized"}"#), signature_refusals);
    assert_eq!(series(r#"switchboard_gateway_webhook_requests_total{provider="Line",outcome="Accepted"}"#), 3.0, "genuine, verification, repeat");
    assert_eq!(series(r#"switchboard_gateway_webhook_requests_total{provider="Line",outcome="BadRequest"}"#), 2.0);
    assert_eq!(series(r#"switchboard_gateway_webhook_requests_total{provider="Line",outcome="TooLarge"}"#), 1.0);
    assert_eq!(series(r#"switchboard_gateway_events_total{outcome="Recorded"}"#), 1.0);
    assert_eq!(series(r#"switchboard_gateway_events_total{outcome="Duplicate"}"#), 1.0);

    // Nothing reached the desk but the genuine message's two events.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kinds: Vec<String> = bed.desk.events().iter().map(|e| format!("{}#{}", e.kind(), e.sequence())).collect();
    assert_eq!(kinds, ["conversation.created#1", "message.received#2"]);
    assert_eq!(bed.desk.events()[1].text(), Some("genuine"));
    eprintln!("line_webhooks_are_refused_by_signature_shape_size_method_and_path: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
