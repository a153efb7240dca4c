//! Twilio's status callbacks for the messages the simulator accepts with a `StatusCallback`: the
//! statuses of the schedule in force, each signed like Twilio signs them, `delay` apart —
//! optionally shuffled, repeated, ending in a failure, or all sent before the send is answered
//! (the race the gateway must survive: a callback for a message whose SID it has not recorded).

use std::sync::Arc;

use super::config::ReceiptSchedule;
use super::outbound;
use super::state::App;
use crate::providers::Secret;
use crate::signing;

/// The callbacks' parameters besides the message's own, in the order they are sent.
fn sequence(schedule: &ReceiptSchedule) -> Vec<Vec<(String, String)>> {
    let mut calls: Vec<Vec<(String, String)>> = schedule.statuses.iter().map(|s| vec![("MessageStatus".to_owned(), s.clone())]).collect();
    if let Some(failure) = &schedule.failure {
        let mut params = vec![("MessageStatus".to_owned(), failure.status.clone()), ("ErrorCode".to_owned(), failure.error_code.to_string())];
        params.extend(failure.error_message.iter().map(|m| ("ErrorMessage".to_owned(), m.clone())));
        calls.push(params);
    }
    let mut repeated: Vec<_> = calls.iter().flat_map(|c| std::iter::repeat_n(c.clone(), schedule.repeat as usize)).collect();
    if schedule.shuffle {
        fastrand::shuffle(&mut repeated);
    }
    repeated
}

/// A message whose statuses are called back.
pub struct Callbacks {
    /// Where to.
    pub url: String,
    /// The key of `X-Twilio-Signature`.
    pub auth_token: Secret,
    /// The parameters every callback carries: the message's SID, account and addresses.
    pub message: Vec<(String, String)>,
    /// How they go.
    pub schedule: ReceiptSchedule,
}

/// Sends the callbacks one after another.
pub async fn send(app: Arc<App>, callbacks: Callbacks) {
    for status in sequence(&callbacks.schedule) {
        tokio::time::sleep(callbacks.schedule.delay).await;
        let mut params = callbacks.message.clone();
        params.extend(status);
        let signature = signing::twilio_signature(callbacks.auth_token.expose(), &callbacks.url, &params);
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish().into_bytes();
        let headers = [("x-twilio-signature", signature), ("user-agent", "TwilioProxy/1.1".to_owned())];
        let delivery = outbound::post(&app.http, &callbacks.url, "application/x-www-form-urlencoded", body, &headers).await;
        tracing::debug!(url = %callbacks.url, status = ?delivery.status_code, "Twilio status callback sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::ReceiptFailure;

    #[test]
    fn a_schedule_lists_its_statuses_repeated_and_ends_in_its_failure() {
        let schedule = ReceiptSchedule {
            statuses: vec!["sent".into()],
            repeat: 2,
            failure: Some(ReceiptFailure { status: "failed".into(), error_code: 63016, error_message: None }),
            ..ReceiptSchedule::default()
        };
        let statuses: Vec<String> = sequence(&schedule).iter().map(|c| c[0].1.clone()).collect();
        assert_eq!(statuses, ["sent", "sent", "failed", "failed"]);
        assert_eq!(sequence(&schedule)[2][1], ("ErrorCode".to_owned(), "63016".to_owned()));
        let shuffled = ReceiptSchedule { shuffle: true, repeat: 3, ..ReceiptSchedule::default() };
        let mut all: Vec<String> = sequence(&shuffled).iter().map(|c| c[0].1.clone()).collect();
        all.sort();
        assert_eq!(all, ["delivered", "delivered", "delivered", "read", "read", "read", "sent", "sent", "sent"]);
        assert!(ReceiptSchedule { statuses: vec!["seen".into()], ..ReceiptSchedule::default() }.validate().unwrap_err().contains("seen"));
        assert!(ReceiptSchedule { repeat: 0, ..ReceiptSchedule::default() }.validate().is_err());
        assert!(ReceiptSchedule::default().validate().is_ok());
    }
}
