//! The agent API on WhatsApp through Twilio: texts and approved templates, the 24-hour window
//! closed at the provider while the gateway still counts it open (Twilio's 63016), closed by the
//! gateway's own count (a conversation aged in the store: 422, the survey as its template or
//! skipped), and a send Twilio refuses with 503 for a while.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::desk::Received;
use crate::harness::{Bed, Provider, SALES_NUMBER, TWILIO_SID, TWILIO_TOKEN, whatsapp_channel, workstream};

const AYSE: &str = "+905551112233";
const SURVEY_URL: &str = "https://survey.example.com/s/{ConversationId}";

/// Creates a Content resource at the simulated Twilio, submits it for WhatsApp approval and
/// approves it (as the controller and WhatsApp would); returns its SID.
pub async fn approved_content(bed: &Bed, name: &str, body: &str, variables: Value) -> String {
    let base = bed.sim.base_url();
    let created: Value = bed
        .http
        .post(format!("{base}/v1/Content"))
        .basic_auth(TWILIO_SID, Some(TWILIO_TOKEN))
        .json(&json!({"friendly_name": name, "language": "en", "variables": variables, "types": {"twilio/text": {"body": body}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = created["sid"].as_str().unwrap_or_else(|| panic!("content created: {created}")).to_owned();
    let status = bed
        .http
        .post(format!("{base}/v1/Content/{sid}/ApprovalRequests/whatsapp"))
        .basic_auth(TWILIO_SID, Some(TWILIO_TOKEN))
        .json(&json!({"name": name, "category": "UTILITY"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201, "submitted for approval");
    bed.sim_post(&format!("/__sim/content/{sid}/approval"), json!({"status": "approved"})).await;
    sid
}

/// A template entry of the gateway's configuration, with one English localization.
fn template(name: &str, template_name: &str, body: &str, content_sid: &str, variables: Value) -> Value {
    json!({
        "name": name, "templateName": template_name, "category": "Utility", "defaultLanguage": "en",
        "localizations": [{"language": "en", "body": body, "contentSid": content_sid, "variables": variables}],
    })
}

/// The sales workstream: a closing message and a survey, with `survey_template` as its
/// templateRef when given.
fn sales_workstream(desk: &str, survey_template: Option<&str>) -> Value {
    let mut ws = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), desk, &["sales"], None, vec![]);
    ws["automatedMessages"] = json!([{"trigger": "ConversationEnded", "locale": "en", "text": "Thanks for talking to us"}]);
    ws["postConversationSurvey"] = json!({"enabled": true, "url": SURVEY_URL, "text": "How did we do? {SurveyUrl}"});
    if let Some(name) = survey_template {
        ws["postConversationSurvey"]["templateRef"] = json!({"name": name});
    }
    ws
}

/// The customer writes; returns the conversation's ID once the desk has the message.
async fn customer_writes(bed: &Bed, text: &str) -> String {
    let sent = bed.twilio_message(SALES_NUMBER, AYSE, "Ayşe", text, vec![], false).await;
    assert_eq!(sent["delivery"]["statusCode"], 200, "{sent}");
    bed.desk.wait_one("message.received", |e| e.message_id() == sent["messageSid"].as_str()).await.conversation().to_owned()
}

/// Closes the customer's window at the simulated provider: their last message was 25 hours ago.
async fn close_window_at_provider(bed: &Bed) {
    let status = bed
        .http
        .post(format!("{}/__sim/twilio/windows", bed.sim.base_url()))
        .json(&json!({"customer": AYSE, "lastInboundAgo": "25h"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
}

/// A day and an hour: past the 24-hour window.
const PAST_THE_WINDOW: Duration = Duration::from_secs(25 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_conversation_with_texts_templates_and_the_window_closing() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let order_body = "Hello {{1}}, your order {{2}} has shipped";
    let order_sid = approved_content(&bed, "order_update", order_body, json!({"1": "Ann", "2": "A-1"})).await;
    let survey_sid = approved_content(&bed, "survey_invite", "Please rate us: {{1}}", json!({"1": "https://survey.example.com"})).await;
    let mut config = bed.config(vec![sales_workstream(&bed.desk.url(), Some("survey-invite"))]);
    config["templates"] = json!([
        template("order-update", "order_update", order_body, &order_sid, json!({"1": "Ann", "2": "A-1"})),
        template("survey-invite", "survey_invite", "Please rate us: {{1}}", &survey_sid, json!({"1": "https://survey.example.com"})),
    ]);
    bed.start(&config).await;

    let id = customer_writes(&bed, "Where is my order?").await;
    let first_view = bed.conversation(&id).await;
    // A WhatsApp customer's ID in a path is URL-encoded.
    let (status, body) = bed
        .agent(
            Method::PUT,
            "/v1/workstreams/sales-whatsapp/customers/whatsapp%3A%2B905551112233/contact",
            Some(json!({"contactId": "CRM-7"})),
        )
        .await;
    assert_eq!((status.as_u16(), body["customerId"].as_str()), (200, Some("whatsapp:+905551112233")), "{body}");

    // A text, from the workstream's number.
    bed.send_text(&id, "t-1", "Let me check that for you").await;
    let delivered = bed.desk.wait_outcome("message.accepted", "t-1").await;
    let sent = bed.wait_sent("the text", |m| m["body"] == "Let me check that for you").await;
    assert_eq!((sent["from"].as_str(), sent["to"].as_str()), (Some("whatsapp:+14155550100"), Some("whatsapp:+905551112233")), "{sent}");
    assert_eq!(delivered.body["message"]["providerMessageIds"], json!([sent["id"]]), "{}", delivered.body);

    // The desk lists what it can offer: both templates, their language, text and variables;
    // another workstream's list is not this token's.
    let (status, listed) = bed.agent(Method::GET, "/v1/workstreams/sales-whatsapp/templates", None).await;
    assert_eq!(status, 200, "{listed}");
    let order = listed["templates"].as_array().unwrap().iter().find(|t| t["name"] == "order-update").cloned().unwrap_or_else(|| panic!("{listed}"));
    assert_eq!((order["templateName"].as_str(), order["category"].as_str()), (Some("order_update"), Some("Utility")));
    assert_eq!(order["localizations"], json!([{"language": "en", "body": order_body, "variables": [{"name": "1", "example": "Ann"}, {"name": "2", "example": "A-1"}]}]));
    assert_eq!(listed["templates"].as_array().map(Vec::len), Some(2));
    let (status, refused) = bed.agent(Method::GET, "/v1/workstreams/other/templates", None).await;
    assert_eq!((status.as_u16(), refused["error"].as_str()), (404, Some("workstream_not_found")), "{refused}");

    // An approved template with its variables: ContentSid and ContentVariables.
    let request = json!({"clientMessageId": "tpl-1", "template": {"name": "order-update", "variables": {"1": "Ayşe", "2": "A-17"}}});
    let (status, body) = bed.send(&id, request).await;
    assert_eq!(status, 202, "{body}");
    let content = &body["message"]["contents"][0];
    assert_eq!(content["type"], "template", "{body}");
    assert_eq!((content["name"].as_str(), content["language"].as_str()), (Some("order-update"), Some("en")), "{body}");
    assert_eq!(content["variables"], json!({"1": "Ayşe", "2": "A-17"}));
    assert_eq!(content["text"], "Hello Ayşe, your order A-17 has shipped");
    bed.desk.wait_outcome("message.accepted", "tpl-1").await;
    let sent = bed.wait_sent("the template", |m| m["contentSid"] == order_sid.as_str()).await;
    let variables: Value = serde_json::from_str(sent["contentVariables"].as_str().expect("ContentVariables")).unwrap();
    assert_eq!(variables, json!({"1": "Ayşe", "2": "A-17"}));
    assert_eq!(sent["body"], "Hello Ayşe, your order A-17 has shipped", "as Twilio renders it: {sent}");

    // Templates the configuration cannot send, or variables that do not fit.
    let refused = [
        (json!({"name": "no-such-template"}), "template_not_found"),
        (json!({"name": "order-update", "variables": {"1": "Ayşe"}}), "template_variables"),
        (json!({"name": "order-update", "variables": {"1": "Ayşe", "2": "A-17", "3": "extra"}}), "template_variables"),
        (json!({"name": "order-update", "language": "tr", "variables": {"1": "Ayşe", "2": "A-17"}}), "template_language_unavailable"),
    ];
    let mut answers = Vec::new();
    for (i, (template, code)) in refused.iter().enumerate() {
        let (status, body) = bed.send(&id, json!({"clientMessageId": format!("bad-{i}"), "template": template})).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (422, Some(*code)), "{template}: {body}");
        answers.push(body);
    }
    assert_eq!((answers[1]["expected"].clone(), answers[1]["missing"].clone()), (json!(["1", "2"]), json!(["2"])), "{}", answers[1]);
    assert_eq!(answers[2]["unexpected"], json!(["3"]), "{}", answers[2]);
    assert_eq!(answers[3]["languages"], json!(["en"]), "{}", answers[3]);

    // The provider's window closes while the gateway still counts it open: the text is taken,
    // then fails with Twilio's 63016; a template still goes out.
    close_window_at_provider(&bed).await;
    let (status, body) = bed.send(&id, json!({"clientMessageId": "t-late", "text": "Are you still there?"})).await;
    assert_eq!(status, 202, "the gateway's clock says the window is open: {body}");
    let failed = bed.desk.wait_outcome("message.failed", "t-late").await;
    let message = &failed.body["message"];
    assert_eq!(message["status"], "failed", "{message}");
    assert_eq!(
        (message["error"]["code"].as_str(), message["error"]["providerCode"].as_i64()),
        (Some("session_window_closed"), Some(63016)),
        "{message}"
    );
    let request = json!({"clientMessageId": "tpl-2", "template": {"name": "order-update", "variables": {"1": "Ayşe", "2": "A-18"}}});
    assert_eq!(bed.send(&id, request).await.0, 202);
    bed.desk.wait_outcome("message.accepted", "tpl-2").await;
    let view = bed.conversation(&id).await;
    let late = view["messages"].as_array().unwrap().iter().find(|m| m["clientMessageId"] == "t-late").cloned().expect("t-late");
    assert_eq!((late["status"].as_str(), late["error"]["code"].as_str()), (Some("failed"), Some("session_window_closed")), "{late}");

    // A day later by the gateway's own count: free-form is refused before it is queued.
    bed.age_conversation(&id, PAST_THE_WINDOW).await;
    let (status, body) = bed.send(&id, json!({"clientMessageId": "t-old", "text": "Hello again"})).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (422, Some("session_window_closed")), "{body}");
    let closed_at: jiff::Timestamp =
        body["windowClosedAt"].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("windowClosedAt: {body}"));
    let ago = jiff::Timestamp::now().duration_since(closed_at).as_secs();
    assert!((3000..=3700).contains(&ago), "the window closed about an hour ago: {closed_at}");
    assert!(body["hint"].as_str().is_some_and(|h| h.contains("template")), "{body}");
    let attachment = json!({"clientMessageId": "a-old", "attachment": {"url": "https://files.example.com/a.pdf"}});
    assert_eq!(bed.send(&id, attachment).await.1["error"], "session_window_closed", "attachments are free-form too");

    // Closed outside the window: the survey goes as its template with the URL as {{1}}, the
    // closing text is skipped.
    bed.act(&id, "close", json!({})).await;
    let survey = bed.wait_sent("the survey template", |m| m["contentSid"] == survey_sid.as_str()).await;
    let variables: Value = serde_json::from_str(survey["contentVariables"].as_str().expect("ContentVariables")).unwrap();
    assert_eq!(variables, json!({"1": format!("https://survey.example.com/s/{id}")}));
    let delivered = bed
        .desk
        .wait_one("the survey's message.accepted", |e| {
            e.kind() == "message.accepted" && e.body["message"]["contents"][0]["type"] == "template" && e.client_message_id().is_none()
        })
        .await;
    assert_eq!(delivered.body["message"]["author"], "automated");
    assert_eq!(delivered.body["message"]["contents"][0]["name"], "survey-invite", "{}", delivered.body);
    let skipped = bed.desk.wait_one("ConversationEnded skipped", |e| e.kind() == "message.skipped").await;
    assert_eq!(skipped.body["reason"], "session_window_closed", "{}", skipped.body);
    assert_eq!(skipped.body["message"]["triggers"], json!(["ConversationEnded"]), "{}", skipped.body);
    bed.desk.wait_one("conversation.closed", |e| e.kind() == "conversation.closed").await;

    let sent = bed.sim_messages().await;
    assert_eq!(sent.len(), 4, "the text, two templates and the survey; nothing free-form after the window closed: {sent:#?}");
    assert_eq!(bed.desk.of_kind("message.failed").len(), 1, "only t-late failed");
    // The window runs from the customer's last message, which the conversation document shows.
    let last = first_view["conversation"]["lastCustomerMs"].as_i64().unwrap_or_else(|| panic!("conversation.lastCustomerMs: {first_view}"));
    let age = jiff::Timestamp::now().as_millisecond() - last;
    assert!((0..3_600_000).contains(&age), "lastCustomerMs is the customer's message of this test: {first_view}");
    eprintln!("a_whatsapp_conversation_with_texts_templates_and_the_window_closing: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_survey_template_the_survey_outside_the_window_is_skipped() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    bed.start(&bed.config(vec![sales_workstream(&bed.desk.url(), None)])).await;
    let id = customer_writes(&bed, "Hello").await;
    close_window_at_provider(&bed).await;
    bed.age_conversation(&id, PAST_THE_WINDOW).await;

    bed.act(&id, "close", json!({})).await;
    let is_survey = |e: &Received| e.kind() == "message.skipped" && e.body["message"]["triggers"] == json!(["PostConversationSurvey"]);
    let skipped = bed.desk.wait_one("the survey's message.skipped", is_survey).await;
    assert_eq!(skipped.conversation(), id);
    assert_eq!(skipped.body["reason"], "session_window_closed", "{}", skipped.body);
    assert_eq!(skipped.body["message"]["author"], "automated", "{}", skipped.body);
    let survey = format!("https://survey.example.com/s/{id}");
    assert_eq!(skipped.body["message"]["contents"][0]["text"], format!("How did we do? {survey}"), "{}", skipped.body);
    let ended = bed.desk.wait_one("ConversationEnded skipped", |e| e.kind() == "message.skipped" && !is_survey(e)).await;
    assert_eq!(ended.body["message"]["triggers"], json!(["ConversationEnded"]), "{}", ended.body);
    bed.desk.wait_one("conversation.closed", |e| e.kind() == "conversation.closed").await;
    assert_eq!(bed.sim_messages().await.len(), 0, "nothing reached the customer");
    assert!(bed.desk.of_kind("message.accepted").is_empty() && bed.desk.of_kind("message.failed").is_empty());
    assert!(bed.sim_requests("POST /2010-04-01/Accounts/*/Messages.json").await.is_empty(), "Twilio was not even asked");
    eprintln!("without_a_survey_template_the_survey_outside_the_window_is_skipped: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_refusals_503_is_retried_and_delivered_once_63016_fails_for_good() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    bed.start(&bed.config(vec![sales_workstream(&bed.desk.url(), None)])).await;
    let id = customer_writes(&bed, "Hello").await;

    let route = format!("POST /2010-04-01/Accounts/{TWILIO_SID}/Messages.json");
    bed.sim_post("/__sim/faults", json!({"route": route, "kind": "serverError", "status": 503, "times": 2})).await;
    bed.send_text(&id, "r-503", "Sorry for the wait").await;
    let delivered = bed.desk.wait_outcome("message.accepted", "r-503").await;
    let attempts: Vec<Option<u64>> = bed.sim_requests(&route).await.iter().map(|r| r["status"].as_u64()).collect();
    assert_eq!(attempts, [Some(503), Some(503), Some(201)]);
    let sent = bed.sim_messages().await;
    assert_eq!(sent.len(), 1, "delivered exactly once: {sent:#?}");
    assert_eq!(delivered.body["message"]["providerMessageIds"], json!([sent[0]["id"]]));

    // The provider's window closed, the gateway's not: closing sends the closing text and the
    // survey as text, which Twilio refuses with 63016 (not retried).
    close_window_at_provider(&bed).await;
    bed.act(&id, "close", json!({})).await;
    let failed = bed.desk.wait_one("the closing messages' message.failed", |e| e.kind() == "message.failed").await;
    let message = &failed.body["message"];
    assert_eq!(
        (message["error"]["code"].as_str(), message["error"]["providerCode"].as_i64()),
        (Some("session_window_closed"), Some(63016)),
        "{message}"
    );
    assert_eq!(message["triggers"], json!(["ConversationEnded", "PostConversationSurvey"]), "{message}");
    assert_eq!(bed.sim_requests(&route).await.len(), 4, "63016 is not retried");
    assert_eq!(bed.desk.of_kind("message.accepted").len(), 1, "one message.accepted");
    assert_eq!(bed.sim_messages().await.len(), 1);
    eprintln!("twilio_refusals_503_is_retried_and_delivered_once_63016_fails_for_good: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_clock_ages_the_window_only_when_asked_for_and_only_locally() {
    let sales = |bed: &Bed| bed.config(vec![workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &bed.desk.url(), &["sales"], None, vec![])]);
    let mut bed = Bed::new(Provider::Twilio, &["--dev-clock"]).await;
    bed.start(&sales(&bed)).await;
    let id = customer_writes(&bed, "Hello").await;
    bed.send_text(&id, "before", "Within the window").await;
    let (status, clock) = bed.agent(Method::GET, "/__dev/clock", None).await;
    assert_eq!((status.as_u16(), clock["offsetMs"].as_i64()), (200, Some(0)), "{clock}");

    // A day and an hour later by the gateway's clock, the window is closed.
    let (status, clock) = bed.agent(Method::POST, "/__dev/clock", Some(json!({"advance": "25h"}))).await;
    assert_eq!((status.as_u16(), clock["offsetMs"].as_i64()), (200, Some(90_000_000)), "{clock}");
    let (status, body) = bed.send(&id, json!({"clientMessageId": "after", "text": "Too late"})).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (422, Some("session_window_closed")), "{body}");
    // What is delivered while the clock is ahead verifies at the desk: a delivery's signature
    // timestamp is the wall time (the test desk checks every delivery's).
    customer_writes(&bed, "Still there?").await;
    let (status, body) = bed.agent(Method::POST, "/__dev/clock", Some(json!({"advance": "soon"}))).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, clock) = bed.agent(Method::DELETE, "/__dev/clock", None).await;
    assert_eq!((status.as_u16(), clock["offsetMs"].as_i64()), (200, Some(0)), "{clock}");
    bed.send_text(&id, "again", "Back in the window").await;
    bed.desk.wait_outcome("message.accepted", "again").await;
    assert!(bed.gateway.log().contains("development clock moved ahead"), "the operator is told");
    bed.finish().await;

    // Without the flag there is no such endpoint.
    let mut plain = Bed::new(Provider::Twilio, &[]).await;
    plain.start(&sales(&plain)).await;
    let (status, body) = plain.agent(Method::POST, "/__dev/clock", Some(json!({"advance": "25h"}))).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("not_found")), "{body}");
    plain.finish().await;

    // Anywhere but the local demo the flag is refused before anything starts.
    for args in [&["--config-map", "gateway", "--namespace", "support"][..], &["--config", "/nonexistent/gateway.json"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard")).arg("gateway").args(args).arg("--dev-clock").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("is for the local demo only"), "{args:?}: {stderr}");
    }
}
