//! The Workstream reconciler: reports whether the workstream is accepted (valid, references
//! resolve, its channel is not served by an older workstream) and whether the account's gateway
//! configuration holds its current generation. The account's reconciler renders that
//! configuration; this one only reports.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::acceptance::{self, Refusal};
use super::context::Context;
use super::reconcile_request;
use super::status;
use super::{Error, object_key};
use crate::api::conditions::{self, Observation, READY, Status};
use crate::api::{MessagingAccount, Workstream};
use super::configs::Held;

/// Condition: the spec is valid and its references resolve.
pub const ACCEPTED: &str = "Accepted";

/// Reconciles one Workstream.
pub async fn reconcile(ws: Arc<Workstream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = ws.namespace().ok_or(Error::NotNamespaced)?;
    let accounts = acceptance::in_namespace(&ctx.accounts.state(), &namespace);
    let workstreams = acceptance::in_namespace(&ctx.workstreams.state(), &namespace);
    let templates = acceptance::in_namespace(&ctx.templates.state(), &namespace);

    let account = accounts.iter().find(|a| a.name_any() == ws.spec.account_ref.name).map(|a| &**a);
    let refusal = acceptance::workstream(&ws, &accounts, &workstreams, &templates, &ctx.spec_checks);
    let old = ws.status.clone().unwrap_or_default();
    let mut new = old.clone();
    new.channel = account.map(|a| if a.spec.line.is_some() { "LINE" } else { "WhatsApp" }.to_owned());
    let name = ws.name_any();
    let accepted_rules = ctx
        .rules
        .state()
        .iter()
        .filter(|r| r.meta().namespace.as_deref() == Some(namespace.as_str()) && r.spec.workstream_ref.name == name)
        .filter(|r| acceptance::rule(r, &workstreams, &ctx.spec_checks).is_none())
        .count();
    new.routing_rules = Some(i32::try_from(accepted_rules).unwrap_or(i32::MAX));

    let generation = ws.metadata.generation;
    let held = match account {
        Some(a) => held_generation(&ctx, &namespace, &a.name_any(), |c| c.workstream_generation(&ws.name_any())),
        None => None,
    };
    let (accepted, ready) = verdict(refusal.as_ref(), account, generation, held, "gateway configuration");
    let now = Timestamp::now();
    conditions::set(&mut new.conditions, accepted, generation, now);
    conditions::set(&mut new.conditions, ready, generation, now);
    new.observed_generation = generation;
    // Nothing here is cached from a provider: a requested re-check is this pass.
    reconcile_request::handled(reconcile_request::pending(&*ws, old.last_handled_reconcile_at.as_deref()), &mut new.last_handled_reconcile_at);

    let api: Api<Workstream> = Api::namespaced(ctx.client.clone(), &namespace);
    // Only problems: a Normal event per healthy rule would flood `kubectl get events`.
    let notices: Vec<_> = status::transitions(&old.conditions, &new.conditions).into_iter().filter(|n| n.type_ == EventType::Warning).collect();
    status::write(&api, &ws.name_any(), ws.status.as_ref(), &new).await?;
    status::publish(&ctx.recorder, &ws.object_ref(&()), &notices).await;
    ctx.failures.succeeded(&object_key(&*ws));
    Ok(Action::await_change())
}

/// The generation of an object the account's configuration holds, from the watch cache: the
/// reconcilers that ask follow the ConfigMap watch after the cache has each change, so a change
/// that makes the answer new wakes them again.
pub fn held_generation(ctx: &Context, namespace: &str, account: &str, lookup: impl Fn(&Held) -> Option<i64>) -> Option<i64> {
    ctx.configs.of(namespace, account).and_then(|held| lookup(&held))
}

/// Accepted and Ready of an object that the account's gateway configuration carries: accepted
/// unless refused; Ready when accepted, the account is Ready, and the configuration holds the
/// object's current generation.
pub fn verdict(
    refusal: Option<&Refusal>,
    account: Option<&MessagingAccount>,
    generation: Option<i64>,
    held: Option<i64>,
    what: &str,
) -> (Observation, Observation) {
    if let Some(refusal) = refusal {
        let message = refusal.message();
        return (
            Observation::new(ACCEPTED, Status::False, refusal.reason, message.clone()),
            Observation::new(READY, Status::False, refusal.reason, message),
        );
    }
    let accepted = Observation::new(ACCEPTED, Status::True, "Accepted", "the spec is valid and its references resolve");
    let account_ready = account.and_then(|a| a.status.as_ref()).and_then(|s| conditions::find(&s.conditions, READY)).cloned();
    let ready = match (account_ready, held) {
        (Some(c), _) if c.status != "True" => {
            let name = account.map(ResourceExt::name_any).unwrap_or_default();
            Observation::new(READY, Status::False, "AccountNotReady", format!("MessagingAccount {name} is not Ready ({}): {}", c.reason, c.message))
        }
        (None, _) => Observation::new(READY, Status::Unknown, "AccountNotReady", "the account has not been checked yet"),
        (Some(_), Some(h)) if Some(h) == generation => {
            Observation::new(READY, Status::True, "Ready", format!("the {what} holds generation {h}"))
        }
        (Some(_), _) => Observation::new(
            READY,
            Status::Unknown,
            "Progressing",
            format!("waiting for the {what} to hold generation {}", generation.unwrap_or_default()),
        ),
    };
    (accepted, ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::field_error::FieldError;

    fn account(ready: Option<&str>) -> MessagingAccount {
        let mut account: MessagingAccount = serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "MessagingAccount",
            "metadata": {"name": "acct", "namespace": "ns"},
            "spec": {"webhook": {"publicBaseUrl": "https://x.example"}, "dataTransfer": {"acknowledged": true},
                     "line": {"channelId": "1", "channelSecret": {"secretKeyRef": {"name": "s", "key": "a"}},
                              "channelAccessToken": {"secretKeyRef": {"name": "s", "key": "b"}}}}
        }))
        .unwrap();
        if let Some(status) = ready {
            let mut status_obj = crate::api::MessagingAccountStatus::default();
            conditions::set(&mut status_obj.conditions, Observation::new(READY, if status == "True" { Status::True } else { Status::False }, "Why", "m"), Some(1), Timestamp::UNIX_EPOCH);
            account.status = Some(status_obj);
        }
        account
    }

    #[test]
    fn refused_objects_are_not_ready_for_the_same_reason() {
        let refusal = Refusal { reason: "InvalidReference", errors: vec![FieldError::new("spec.accountRef.name", "taken")] };
        let (accepted, ready) = verdict(Some(&refusal), None, Some(1), None, "x");
        assert_eq!((accepted.status, accepted.reason.as_str()), (Status::False, "InvalidReference"));
        assert_eq!(accepted.message, "spec.accountRef.name: taken");
        assert_eq!((ready.status, ready.reason.as_str()), (Status::False, "InvalidReference"));
    }

    #[test]
    fn ready_needs_the_account_and_the_current_generation_in_the_configuration() {
        let ready_account = account(Some("True"));
        assert_eq!(verdict(None, Some(&ready_account), Some(2), Some(2), "x").1.status, Status::True);
        let stale = verdict(None, Some(&ready_account), Some(3), Some(2), "x").1;
        assert_eq!((stale.status, stale.reason.as_str()), (Status::Unknown, "Progressing"));
        let not_ready = verdict(None, Some(&account(Some("False"))), Some(2), Some(2), "x").1;
        assert_eq!((not_ready.status, not_ready.reason.as_str()), (Status::False, "AccountNotReady"));
        assert_eq!(verdict(None, Some(&account(None)), Some(2), Some(2), "x").1.status, Status::Unknown);
    }
}
