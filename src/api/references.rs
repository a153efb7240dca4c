//! Checks between objects: references resolve, queues exist, and each channel is served by one
//! workstream. Pure: callers pass the objects they know of (a manifest set for `check`, the
//! controller's caches later), ordered by precedence (the earlier object holds a contested
//! channel).

use std::borrow::Borrow;
use std::collections::BTreeSet;

use kube::ResourceExt;

use super::account::MessagingAccount;
use super::routing_rule::RoutingRule;
use super::template::MessageTemplate;
use super::field_error::FieldError;
use super::workstream::Workstream;

/// Identifies an object: kind, namespace, name.
pub type ObjectKey = (String, String, String);

/// What to do about a reference to an object that is not among those passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing<'a> {
    /// Report it: the set is expected to be complete.
    Report,
    /// Report it unless it is one of these objects, which exist but were left out because they
    /// are invalid (and reported as such already).
    ReportExcept(&'a BTreeSet<ObjectKey>),
    /// Skip it: the object may live elsewhere.
    Ignore,
}

/// Objects are passed owned (a manifest set) or shared (the controller's caches, which are not
/// copied for each check).
fn same_ns<'a, K: ResourceExt + 'a>(objects: &'a [impl Borrow<K>], namespace: &str, name: &str) -> Option<&'a K> {
    objects.iter().map(Borrow::borrow).find(|o| o.namespace().as_deref().unwrap_or_default() == namespace && o.name_any() == name)
}

fn missing(field: &str, kind: &str, namespace: &str, name: &str, missing: Missing, errors: &mut Vec<FieldError>) {
    let report = match missing {
        Missing::Report => true,
        Missing::ReportExcept(known) => !known.contains(&(kind.to_owned(), namespace.to_owned(), name.to_owned())),
        Missing::Ignore => false,
    };
    if report {
        errors.push(FieldError::new(field, format!("{kind} {namespace}/{name} not found")));
    }
}

/// The channel a workstream claims: a LINE account, or one number of a Twilio account.
fn claim(ws: &Workstream, account: &MessagingAccount) -> Option<String> {
    if account.spec.line.is_some() {
        Some(String::new())
    } else {
        ws.spec.whatsapp_number.clone()
    }
}

/// Checks a Workstream's references: its account, its number, its survey template, and that
/// no earlier workstream serves the same channel.
pub fn workstream_errors(
    ws: &Workstream,
    accounts: &[impl Borrow<MessagingAccount>],
    workstreams: &[impl Borrow<Workstream>],
    templates: &[impl Borrow<MessageTemplate>],
    on_missing: Missing,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let ns = ws.namespace().unwrap_or_default();
    if let Some(survey) = &ws.spec.post_conversation_survey
        && let Some(t) = &survey.template_ref
    {
        match same_ns::<MessageTemplate>(templates, &ns, &t.name) {
            Some(tpl) if tpl.spec.account_ref.name != ws.spec.account_ref.name => errors.push(FieldError::new(
                "spec.postConversationSurvey.templateRef.name",
                format!("MessageTemplate {} belongs to account {}, not {}", t.name, tpl.spec.account_ref.name, ws.spec.account_ref.name),
            )),
            Some(_) => {}
            None => missing("spec.postConversationSurvey.templateRef.name", "MessageTemplate", &ns, &t.name, on_missing, &mut errors),
        }
    }
    let Some(account) = same_ns::<MessagingAccount>(accounts, &ns, &ws.spec.account_ref.name) else {
        missing("spec.accountRef.name", "MessagingAccount", &ns, &ws.spec.account_ref.name, on_missing, &mut errors);
        return errors;
    };
    match (&account.spec.twilio_whatsapp, &ws.spec.whatsapp_number) {
        (None, Some(_)) => errors.push(FieldError::new("spec.whatsAppNumber", format!("account {} is a LINE account, which has no numbers", account.name_any()))),
        (Some(_), None) => errors.push(FieldError::new("spec.whatsAppNumber", format!("required: account {} is a Twilio account; name one of its numbers", account.name_any()))),
        (Some(t), Some(number)) if !t.numbers.iter().any(|n| &n.name == number) => errors.push(FieldError::new(
            "spec.whatsAppNumber",
            format!("account {} has no number named {number:?} (it has: {})", account.name_any(), t.numbers.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")),
        )),
        _ => {}
    }
    if let Some(mine) = claim(ws, account) {
        let holder = workstreams.iter().map(Borrow::borrow).find(|other: &&Workstream| {
            other.namespace() == ws.namespace()
                && other.spec.account_ref.name == ws.spec.account_ref.name
                && claim(other, account).as_ref() == Some(&mine)
        });
        if let Some(holder) = holder.filter(|h| h.name_any() != ws.name_any()) {
            let channel = if mine.is_empty() { format!("LINE account {}", account.name_any()) } else { format!("number {mine} of account {}", account.name_any()) };
            errors.push(FieldError::new("spec.accountRef.name", format!("{channel} is already served by Workstream {}", holder.name_any())));
        }
    }
    errors
}

/// Checks a RoutingRule's references: its workstream, and that every queue it routes to is one
/// of that workstream's queues.
pub fn routing_rule_errors(rule: &RoutingRule, workstreams: &[impl Borrow<Workstream>], on_missing: Missing) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let ns = rule.namespace().unwrap_or_default();
    let Some(ws) = same_ns::<Workstream>(workstreams, &ns, &rule.spec.workstream_ref.name) else {
        missing("spec.workstreamRef.name", "Workstream", &ns, &rule.spec.workstream_ref.name, on_missing, &mut errors);
        return errors;
    };
    let known = |q: &str| ws.spec.queues.iter().any(|wq| wq.name == q);
    let queue_list = || ws.spec.queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(route) = &rule.spec.route_to {
        if let Some(q) = route.queue.as_deref().filter(|q| !known(q)) {
            errors.push(FieldError::new("spec.routeTo.queue", format!("{q:?} is not a queue of Workstream {} (queues: {})", ws.name_any(), queue_list())));
        }
        for (i, s) in route.split.iter().flatten().enumerate() {
            if !known(&s.queue) {
                errors.push(FieldError::new(format!("spec.routeTo.split[{i}].queue"), format!("{:?} is not a queue of Workstream {} (queues: {})", s.queue, ws.name_any(), queue_list())));
            }
        }
    }
    errors
}

/// Checks a MessageTemplate's references: its account, and that no earlier template of the
/// same account uses the same templateName.
pub fn template_errors(
    tpl: &MessageTemplate,
    accounts: &[impl Borrow<MessagingAccount>],
    templates: &[impl Borrow<MessageTemplate>],
    on_missing: Missing,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let ns = tpl.namespace().unwrap_or_default();
    if same_ns::<MessagingAccount>(accounts, &ns, &tpl.spec.account_ref.name).is_none() {
        missing("spec.accountRef.name", "MessagingAccount", &ns, &tpl.spec.account_ref.name, on_missing, &mut errors);
    }
    let first = templates.iter().map(Borrow::borrow).find(|o: &&MessageTemplate| {
        o.namespace() == tpl.namespace() && o.spec.account_ref.name == tpl.spec.account_ref.name && o.spec.template_name == tpl.spec.template_name
    });
    if let Some(first) = first.filter(|f| f.name_any() != tpl.name_any()) {
        errors.push(FieldError::new("spec.templateName", format!("{:?} is already used by MessageTemplate {} for the same account", tpl.spec.template_name, first.name_any())));
    }
    errors
}
