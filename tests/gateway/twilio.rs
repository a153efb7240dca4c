//! WhatsApp through Twilio: two numbers, two workstreams; form and JSON webhooks; media; refused
//! signatures; greetings from the workstream's own number.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Bed, Provider, SALES_NUMBER, SUPPORT_NUMBER, whatsapp_channel, workstream};

const AYSE: &str = "+905551112233";
const BORA: &str = "+905551112244";

fn form(params: &Value) -> String {
    let pairs: Vec<(String, String)> =
        params.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_numbers_route_to_their_workstreams_in_both_body_formats() {
    let started = std::time::Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let desk = bed.desk.url();
    let sales_channel = whatsapp_channel("sales", SALES_NUMBER);
    let sales = workstream("sales-whatsapp", sales_channel, &desk, &["sales-general"], Some("Sales here, {CustomerName}"), vec![]);
    let support_channel = whatsapp_channel("support", SUPPORT_NUMBER);
    let support = workstream("support-whatsapp", support_channel, &desk, &["support-general"], Some("Support here, {CustomerName}"), vec![]);
    bed.start(&bed.config(vec![sales, support])).await;

    // A form webhook to the sales number, a JSON one to the support number.
    let to_sales = bed.twilio_message(SALES_NUMBER, AYSE, "Ayşe", "I want to buy", vec![], false).await;
    assert_eq!(to_sales["delivery"]["statusCode"], 200, "{to_sales}");
    assert!(to_sales["delivery"]["responseBody"].as_str().unwrap().contains("<Response/>"), "{to_sales}");
    let to_support = bed.twilio_message(SUPPORT_NUMBER, BORA, "Bora", "Help, please", vec![], true).await;
    assert_eq!(to_support["delivery"]["statusCode"], 200, "{to_support}");
    assert!(to_support["url"].as_str().unwrap().contains("bodySHA256="), "the JSON variant was sent: {to_support}");
    assert!(to_support["delivery"]["responseBody"].as_str().unwrap().contains("<Response/>"));

    // Bora sends three attachments (JSON again) into the same conversation.
    let media = vec![
        json!({"contentType": "image/png"}),
        json!({"contentType": "image/jpeg", "url": "https://media.example.com/photo.jpg"}),
        json!({"contentType": "application/pdf", "url": "https://media.example.com/invoice.pdf"}),
    ];
    let with_media = bed.twilio_message(SUPPORT_NUMBER, BORA, "Bora", "See attached", media, true).await;
    assert_eq!(with_media["delivery"]["statusCode"], 200, "{with_media}");
    let mut events = bed.desk.wait_messages(3, Duration::from_secs(20)).await;
    events.sort_by_key(|e| e.at);

    let ayse = events.iter().find(|e| e.message_id() == to_sales["messageSid"].as_str()).expect("Ayşe's message");
    let c = &ayse.body["conversation"];
    assert_eq!(c["workstream"], "sales-whatsapp", "routed by the number written to: {c}");
    assert_eq!(c["channel"], "WhatsApp");
    assert_eq!(c["routing"]["queue"], "sales-general");
    assert_eq!(c["customer"]["id"], format!("whatsapp:{AYSE}"));
    assert_eq!(c["customer"]["displayName"], "Ayşe");
    assert_eq!(c["customer"]["phoneNumber"], AYSE);
    assert_eq!(c["customer"]["waId"], AYSE.trim_start_matches('+'));
    assert_eq!(ayse.text(), Some("I want to buy"));
    assert_eq!(ayse.sequence(), 2);

    let bora = events.iter().find(|e| e.message_id() == to_support["messageSid"].as_str()).expect("Bora's message");
    assert_eq!(bora.body["conversation"]["workstream"], "support-whatsapp");
    assert_eq!(bora.body["conversation"]["routing"]["queue"], "support-general");
    assert_eq!(bora.text(), Some("Help, please"));
    let attached = events.iter().find(|e| e.message_id() == with_media["messageSid"].as_str()).expect("the media message");
    assert_eq!(attached.conversation(), bora.conversation());
    assert!(attached.sequence() >= 3, "after Bora's first message (and perhaps the greeting's delivery)");
    assert_eq!(attached.text(), Some("See attached"));
    assert_eq!(attached.body["message"]["messageType"], "image", "named after the first attachment");
    let sent: Vec<(String, String)> = (0..3)
        .map(|i| {
            let p = &with_media["payload"];
            (p[format!("MediaUrl{i}")].as_str().unwrap().to_owned(), p[format!("MediaContentType{i}")].as_str().unwrap().to_owned())
        })
        .collect();
    let got: Vec<(String, String)> = attached.body["message"]["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .map(|a| (a["url"].as_str().unwrap_or_default().to_owned(), a["contentType"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(got, sent, "all three attachments, in order");
    assert_eq!(got[2].1, "application/pdf");

    // Greetings from each workstream's own number, one per conversation.
    let greeting = bed.wait_sent("Ayşe's greeting", |m| m["to"] == format!("whatsapp:{AYSE}")).await;
    assert_eq!((greeting["provider"].as_str(), greeting["via"].as_str()), (Some("twilio"), Some("message")));
    assert_eq!(greeting["from"], format!("whatsapp:{SALES_NUMBER}"));
    assert_eq!(greeting["body"], "Sales here, Ayşe");
    let greeting = bed.wait_sent("Bora's greeting", |m| m["to"] == format!("whatsapp:{BORA}")).await;
    assert_eq!(greeting["from"], format!("whatsapp:{SUPPORT_NUMBER}"));
    assert_eq!(greeting["body"], "Support here, Bora");

    // Ayşe writes to the support number too: a second conversation, in the other workstream.
    let second_chat = bed.twilio_message(SUPPORT_NUMBER, AYSE, "Ayşe", "And support?", vec![], false).await;
    assert_eq!(second_chat["delivery"]["statusCode"], 200);
    let other = bed
        .desk
        .wait_for(Duration::from_secs(20), "Ayşe's support conversation", |events| {
            events.iter().find(|e| e.message_id() == second_chat["messageSid"].as_str()).cloned()
        })
        .await;
    assert_ne!(other.conversation(), ayse.conversation());
    assert_eq!(other.body["conversation"]["workstream"], "support-whatsapp");
    assert_eq!(other.sequence(), 2);
    bed.wait_sent("Ayşe's support greeting", |m| m["to"] == format!("whatsapp:{AYSE}") && m["from"] == format!("whatsapp:{SUPPORT_NUMBER}")).await;

    // Replaying the form webhook with its real signature is a redelivery (200); with a changed
    // body, or without the header, it is refused with 403.
    let url = bed.webhook_url();
    let signature = to_sales["signature"].as_str().unwrap().to_owned();
    let replay = |body: String, signature: Option<&str>| {
        let mut request = bed.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let genuine = form(&to_sales["params"]);
    assert_eq!(replay(genuine.clone(), Some(&signature)).await.0, 200, "the genuine form, re-encoded, is accepted");
    let mut changed = to_sales["params"].clone();
    changed["Body"] = json!("I want to buy 1000");
    let (status, text) = replay(form(&changed), Some(&signature)).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(replay(genuine, None).await.0, 403);
    // The JSON variant with its body changed under the signed URL (the body hash no longer matches).
    let json_body = to_support["payload"].to_string().replace("Help, please", "Help, please!");
    let status = bed
        .http
        .post(to_support["url"].as_str().unwrap())
        .header("content-type", "application/json")
        .header("x-twilio-signature", to_support["signature"].as_str().unwrap())
        .body(json_body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
    assert_eq!(bed.metric(r#"switchboard_gateway_signature_failures_total{provider="Twilio"}"#).await, 3.0);
    assert_eq!(bed.metric(r#"switchboard_gateway_events_total{outcome="Duplicate"}"#).await, 1.0);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let texts: Vec<Option<String>> = bed.desk.of_kind("message.received").iter().map(|e| e.text().map(str::to_owned)).collect();
    assert_eq!(texts.len(), 4, "nothing from the refused or repeated webhooks: {texts:?}");
    assert_eq!(bed.desk.of_kind("conversation.created").len(), 3);
    let greetings = bed.sim_messages().await.len();
    assert_eq!(greetings, 3, "one greeting per conversation");
    eprintln!("twilio_numbers_route_to_their_workstreams_in_both_body_formats: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_an_unserved_number_waits_for_a_workstream() {
    let started = std::time::Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let desk = bed.desk.url();
    let sales = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &desk, &["sales-general"], None, vec![]);
    bed.start(&bed.config(vec![sales.clone()])).await;

    // The support number has no workstream yet: the webhook is taken (Twilio must not retry
    // forever) and the message kept.
    let held = bed.twilio_message(SUPPORT_NUMBER, BORA, "Bora", "anyone there?", vec![], false).await;
    assert_eq!(held["delivery"]["statusCode"], 200, "{held}");
    let served = bed.twilio_message(SALES_NUMBER, AYSE, "Ayşe", "hello sales", vec![], false).await;
    assert_eq!(served["delivery"]["statusCode"], 200);
    bed.desk.wait_messages(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(bed.desk.events().iter().all(|e| e.customer() != format!("whatsapp:{BORA}")), "nothing for the unserved number yet");

    // A configuration that serves the number: the kept message is handed on.
    let support = workstream("support-whatsapp", whatsapp_channel("support", SUPPORT_NUMBER), &desk, &["support-general"], None, vec![]);
    bed.gateway.write_config(&bed.config(vec![sales, support]));
    let message = bed
        .desk
        .wait_for(Duration::from_secs(20), "the held message", |events| {
            events.iter().find(|e| e.message_id() == held["messageSid"].as_str()).cloned()
        })
        .await;
    assert_eq!(message.body["conversation"]["workstream"], "support-whatsapp");
    assert_eq!(message.text(), Some("anyone there?"));
    assert_eq!(message.sequence(), 2);
    assert_eq!(bed.desk.of_kind("message.received").len(), 2);
    eprintln!("a_message_to_an_unserved_number_waits_for_a_workstream: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
