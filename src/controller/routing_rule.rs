//! The RoutingRule reconciler: reports whether the rule is accepted (valid, its conditions
//! compile, its workstream and queues exist) and whether the account's gateway configuration
//! holds its current generation. An invalid rule is left out of the configuration; the other
//! rules keep working.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::acceptance;
use super::context::Context;
use super::reconcile_request;
use super::status;
use super::workstream::{held_generation, verdict};
use super::{Error, object_key};
use crate::api::conditions::{self, Observation, READY, Status};
use crate::api::RoutingRule;

/// Reconciles one RoutingRule.
pub async fn reconcile(rule: Arc<RoutingRule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = rule.namespace().ok_or(Error::NotNamespaced)?;
    let accounts = acceptance::in_namespace(&ctx.accounts.state(), &namespace);
    let workstreams = acceptance::in_namespace(&ctx.workstreams.state(), &namespace);

    let workstream = workstreams.iter().find(|w| w.name_any() == rule.spec.workstream_ref.name).map(|w| &**w);
    let account = workstream.and_then(|w| accounts.iter().find(|a| a.name_any() == w.spec.account_ref.name)).map(|a| &**a);
    let refusal = acceptance::rule(&rule, &workstreams, &ctx.spec_checks);
    let generation = rule.metadata.generation;
    let (ws_name, rule_name) = (&rule.spec.workstream_ref.name, rule.name_any());
    let held = account.and_then(|a| held_generation(&ctx, &namespace, &a.name_any(), |c| c.rule_generation(ws_name, &rule_name)));
    let (accepted, mut ready) = verdict(refusal.as_ref(), account, generation, held, "gateway configuration");
    if refusal.is_none()
        && let Some(ws) = workstream
    {
        let templates = acceptance::in_namespace(&ctx.templates.state(), &namespace);
        if let Some(ws_refusal) = acceptance::workstream(ws, &accounts, &workstreams, &templates, &ctx.spec_checks) {
            let message = format!("Workstream {} is not accepted: {}", ws.name_any(), ws_refusal.message());
            ready = Observation::new(READY, Status::False, "WorkstreamNotAccepted", message);
        }
    }

    let old = rule.status.clone().unwrap_or_default();
    let mut new = old.clone();
    let now = Timestamp::now();
    conditions::set(&mut new.conditions, accepted, generation, now);
    conditions::set(&mut new.conditions, ready, generation, now);
    new.observed_generation = generation;
    // Nothing here is cached from a provider: a requested re-check is this pass.
    reconcile_request::handled(reconcile_request::pending(&*rule, old.last_handled_reconcile_at.as_deref()), &mut new.last_handled_reconcile_at);

    let api: Api<RoutingRule> = Api::namespaced(ctx.client.clone(), &namespace);
    // Only problems: a Normal event per healthy rule would flood `kubectl get events`.
    let notices: Vec<_> = status::transitions(&old.conditions, &new.conditions).into_iter().filter(|n| n.type_ == EventType::Warning).collect();
    status::write(&api, &rule.name_any(), rule.status.as_ref(), &new).await?;
    status::publish(&ctx.recorder, &rule.object_ref(&()), &notices).await;
    ctx.failures.succeeded(&object_key(&*rule));
    Ok(Action::await_change())
}
