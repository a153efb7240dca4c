//! The messages the gateway sends by itself: the workstream's automated messages on their
//! triggers and the post-conversation survey, in the customer's language when the workstream
//! has it. On WhatsApp outside the 24-hour window free text cannot be sent: automated texts are
//! skipped, the survey goes as its approved template or is skipped — each with a
//! `message.skipped` event, never silently.

use uuid::Uuid;

use super::outgoing::{self, Draft};
use super::templates::{self, window_closes_at};
use crate::api::workstream::Trigger;
use crate::gateway::clock::rfc3339;
use crate::gateway::model::conversation::Conversation;
use crate::gateway::model::desk_event::AccountRef;
use crate::gateway::model::outbound::{Author, OutContent, SendError, WINDOW_CLOSED, trigger_name};
use crate::gateway::runtime::{Runtime, Workstream, fill_placeholders};
use crate::gateway::store::{StoreError, Tx};

/// Values of placeholders beyond those every conversation has.
pub type Extra<'a> = &'a [(&'a str, &'a str)];

/// The text of `trigger` for the conversation's customer with its placeholders filled; None
/// when the workstream has no text for it.
pub fn text(ws: &Workstream, conv: &Conversation, trigger: Trigger, extra: Extra<'_>) -> Option<String> {
    let template = ws.automated_message(trigger, conv.customer.language.as_deref())?;
    let mut values: Vec<(&str, &str)> = vec![
        ("CustomerName", conv.customer.display_name.as_deref().unwrap_or("")),
        ("ConversationId", &conv.id),
        ("QueueName", conv.routing.queue.as_deref().unwrap_or("")),
        ("AgentName", conv.agent.as_ref().and_then(|a| a.name.as_deref()).unwrap_or("")),
    ];
    values.extend_from_slice(extra);
    Some(fill_placeholders(template, &values))
}

/// Whether free-form messages may go to the customer at `now` (always, off WhatsApp).
pub fn window_open(ws: &Workstream, conv: &Conversation, now: i64) -> bool {
    !ws.has_window() || now < window_closes_at(conv.last_customer_ms)
}

fn draft(triggers: Vec<String>, contents: Vec<OutContent>) -> Draft {
    Draft { author: Author::Automated, agent: None, client_message_id: None, request_hash: None, triggers, contents, retry_key: Uuid::new_v4() }
}

fn window_closed(conv: &Conversation) -> SendError {
    let closed_at = rfc3339(window_closes_at(conv.last_customer_ms));
    SendError { code: WINDOW_CLOSED.to_owned(), provider_code: None, message: format!("WhatsApp's 24-hour window closed at {closed_at}") }
}

/// Sends the texts the workstream has for `triggers` as one message (one LINE reply); returns
/// whether anything was queued.
pub fn send(tx: &mut dyn Tx, account: AccountRef<'_>, ws: &Workstream, conv: &Conversation, triggers: &[Trigger], extra: Extra<'_>, now: i64) -> Result<bool, StoreError> {
    let texts: Vec<(Trigger, String)> = triggers.iter().filter_map(|t| text(ws, conv, *t, extra).map(|x| (*t, x))).collect();
    if texts.is_empty() {
        return Ok(false);
    }
    let names = texts.iter().map(|(t, _)| trigger_name(Some(*t))).collect();
    let contents = texts.into_iter().map(|(_, text)| OutContent::Text { text }).collect();
    if !window_open(ws, conv, now) {
        outgoing::skip(tx, account, conv, draft(names, contents), window_closed(conv), now)?;
        return Ok(false);
    }
    outgoing::queue(tx, ws, conv, draft(names, contents), now)?;
    Ok(true)
}

/// What a closed conversation's customer gets: ConversationEnded and the survey, together when
/// both can go as text; outside the WhatsApp window the survey as its template.
pub fn on_close(tx: &mut dyn Tx, rt: &Runtime, ws: &Workstream, conv: &Conversation, now: i64) -> Result<(), StoreError> {
    let account = rt.account_ref();
    let survey = ws.config.post_conversation_survey.as_ref().filter(|s| s.enabled);
    let survey_url = survey.map(|s| fill_placeholders(&s.url, &[("ConversationId", &conv.id)])).unwrap_or_default();
    let extra: [(&str, &str); 1] = [("SurveyUrl", &survey_url)];
    let ended = text(ws, conv, Trigger::ConversationEnded, &extra);
    if window_open(ws, conv, now) {
        let mut names = Vec::new();
        let mut contents = Vec::new();
        if let Some(text) = ended {
            names.push(trigger_name(Some(Trigger::ConversationEnded)));
            contents.push(OutContent::Text { text });
        }
        if let Some(s) = survey {
            names.push(trigger_name(None));
            contents.push(OutContent::Text { text: fill_placeholders(&s.text, &extra) });
        }
        if !contents.is_empty() {
            outgoing::queue(tx, ws, conv, draft(names, contents), now)?;
        }
        return Ok(());
    }
    if let Some(text) = ended {
        outgoing::skip(tx, account.clone(), conv, draft(vec![trigger_name(Some(Trigger::ConversationEnded))], vec![OutContent::Text { text }]), window_closed(conv), now)?;
    }
    let Some(s) = survey else { return Ok(()) };
    let names = vec![trigger_name(None)];
    let template = s.template_ref.as_ref().and_then(|r| rt.config.templates.iter().find(|t| t.name == r.name));
    let content = template.and_then(|t| {
        // The survey template's variables are filled with the survey URL: a survey template has
        // one variable, the link.
        let variables = t.localizations.first().map(|l| l.variables.keys().map(|k| (k.clone(), survey_url.clone())).collect()).unwrap_or_default();
        templates::resolve(&rt.config.templates, &t.name, None, conv.customer.language.as_deref(), &variables).ok()
    });
    match content {
        Some(content) => {
            outgoing::queue(tx, ws, conv, draft(names, vec![content]), now)?;
        }
        None => {
            let mut error = window_closed(conv);
            error.message.push_str("; the survey has no approved template (postConversationSurvey.templateRef)");
            outgoing::skip(tx, account, conv, draft(names, vec![OutContent::Text { text: fill_placeholders(&s.text, &extra) }]), error, now)?;
        }
    }
    Ok(())
}

/// The automated messages of a conversation that reached the desk's queue (stored as it waits
/// there), as one message: the greeting (for a new conversation; not after a bot's escalation),
/// then OutOfOperatingHours when the queue is closed, else the queue position with
/// `{Position}` (its place in the order the queue is served in) and `{AverageWaitTime}`.
pub fn announce(tx: &mut dyn Tx, rt: &Runtime, ws: &Workstream, conv: &Conversation, greeting: bool, now: i64) -> Result<bool, StoreError> {
    let next = if conv.routing.within_operating_hours { Trigger::QueuePosition } else { Trigger::OutOfOperatingHours };
    let triggers: &[Trigger] = if greeting { &[Trigger::Greeting, next] } else { &[next] };
    // The queue is asked only for what the texts say.
    let uses = |placeholder: &str| triggers.iter().filter_map(|t| ws.automated_message(*t, conv.customer.language.as_deref())).any(|text| text.contains(placeholder));
    let position = if uses("{Position}") { tx.position(conv)?.unwrap_or(1).to_string() } else { String::new() };
    let wait = if uses("{AverageWaitTime}") { expected_wait(tx, conv, now)? } else { String::new() };
    send(tx, rt.account_ref(), ws, conv, triggers, &[("Position", &position), ("AverageWaitTime", &wait)], now)
}

/// How far back the waits `{AverageWaitTime}` averages go, and how many of the latest.
pub const RECENT_WAITS: (i64, usize) = (60 * 60 * 1000, 100);

/// `{AverageWaitTime}`: the mean wait of the queue's recent assignments ([`RECENT_WAITS`]); with
/// none, the longest wait of those in the queue now — in whole minutes, rounded up, at least 1
/// (a number, so that every language's text can say "minutes" its own way).
fn expected_wait(tx: &mut dyn Tx, conv: &Conversation, now: i64) -> Result<String, StoreError> {
    let queue = conv.routing.queue.as_deref().unwrap_or("");
    let (window, latest) = RECENT_WAITS;
    let wait_ms = match tx.mean_wait(&conv.workstream, queue, now - window, latest)? {
        Some(mean) => mean,
        None => tx.queue_counts(&conv.workstream)?.iter().find(|(name, _, _)| name == queue).map_or(0, |(_, _, since)| now.saturating_sub(*since)),
    };
    Ok(minutes_rounded_up(wait_ms).to_string())
}

fn minutes_rounded_up(ms: i64) -> i64 {
    (ms.max(0).saturating_add(59_999) / 60_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::minutes_rounded_up;

    #[test]
    fn waits_are_whole_minutes_rounded_up_and_never_zero() {
        assert_eq!([0, 1, 59_999, 60_000, 60_001, 150_000].map(minutes_rounded_up), [1, 1, 1, 1, 2, 3]);
        assert_eq!(minutes_rounded_up(-5), 1, "a clock step back is not a negative wait");
    }
}
