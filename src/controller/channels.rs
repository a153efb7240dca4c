//! Which account holds a provider channel among the accounts the controller watches: the oldest
//! claimant (creationTimestamp, then namespace/name). The others are stopped with
//! `ChannelInUse` and take over, in the same order, once the holder is gone. An account being
//! deleted holds its channels until it is gone, so that its clean-up and a successor's
//! registration never overlap.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::MessagingAccount;
use crate::api::channels::{self, Conflict};
use crate::api::conditions::{self, READY};

/// The reason of an account whose channel another account holds.
pub const CHANNEL_IN_USE: &str = "ChannelInUse";

/// The account ahead of `account` on one of its channels, with the claim, when there is one.
pub fn conflict<'a>(account: &MessagingAccount, accounts: &'a [Arc<MessagingAccount>]) -> Option<Conflict<&'a MessagingAccount>> {
    let mut ahead: Vec<&MessagingAccount> = accounts.iter().map(|a| &**a).filter(|a| precedes(a, account)).collect();
    ahead.sort_by_key(|a| order(a));
    channels::first_conflict(&account.spec, ahead.into_iter().map(|a| (a, &a.spec)))
}

/// What Ready says of an account stopped by `conflict`.
pub fn message(conflict: &Conflict<&MessagingAccount>) -> String {
    let holder = conflict.holder;
    format!(
        "{}: {} is held by MessagingAccount {}/{} (the oldest account that claims it); this account registers nothing and runs no gateway until that one is deleted or lets the channel go",
        conflict.claim.field,
        conflict.claim.channel,
        holder.namespace().unwrap_or_default(),
        holder.name_any()
    )
}

/// The accounts whose standing changes with `changed` (just applied or deleted; `accounts` is
/// the store after the change): those claiming a channel in common with it, and those stopped
/// by a conflict that no longer holds as stated. Only the ones whose status disagrees with what
/// a reconcile would now write are returned, so status writes wake nobody.
pub fn affected(changed: &MessagingAccount, accounts: &[Arc<MessagingAccount>]) -> Vec<ObjectRef<MessagingAccount>> {
    accounts
        .iter()
        .filter(|a| a.uid() != changed.uid())
        .filter(|a| stopped_as(a).is_some() || channels::overlap(&a.spec, &changed.spec))
        .filter(|a| stopped_as(a) != conflict(a, accounts).map(|c| message(&c)))
        .map(|a| ObjectRef::from_obj(&**a))
        .collect()
}

/// Ready's message, when the account's status says a conflict stops it.
fn stopped_as(account: &MessagingAccount) -> Option<String> {
    let ready = conditions::find(&account.status.as_ref()?.conditions, READY)?;
    (ready.reason == CHANNEL_IN_USE).then(|| ready.message.clone())
}

/// Creation time, then namespace and name: the order in which accounts hold channels.
fn order(account: &MessagingAccount) -> (Option<k8s_openapi::jiff::Timestamp>, String, String) {
    (account.metadata.creation_timestamp.as_ref().map(|t| t.0), account.namespace().unwrap_or_default(), account.name_any())
}

fn precedes(a: &MessagingAccount, b: &MessagingAccount) -> bool {
    a.uid() != b.uid() && order(a) < order(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{Observation, Status};
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn account(ns: &str, name: &str, created: &str, channel: &str) -> Arc<MessagingAccount> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "switchboard.dev/v1alpha1", "kind": "MessagingAccount",
                "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "creationTimestamp": created},
                "spec": {
                    "line": {"channelId": channel, "channelSecret": {"secretKeyRef": {"name": "s", "key": "k"}}, "channelAccessToken": {"secretKeyRef": {"name": "s", "key": "t"}}},
                    "webhook": {"publicBaseUrl": "https://chat.example"}, "dataTransfer": {"acknowledged": true}
                }
            }))
            .unwrap(),
        )
    }

    fn stopped(account: &Arc<MessagingAccount>, message: &str) -> Arc<MessagingAccount> {
        let mut a = (**account).clone();
        let mut status = crate::api::MessagingAccountStatus::default();
        conditions::set(&mut status.conditions, Observation::new(READY, Status::False, CHANNEL_IN_USE, message), Some(1), Timestamp::UNIX_EPOCH);
        a.status = Some(status);
        Arc::new(a)
    }

    #[test]
    fn the_oldest_claimant_holds_then_namespace_and_name() {
        let old = account("support", "contoso-line", "2026-01-01T00:00:00Z", "1");
        let new = account("sales", "contoso-line", "2026-02-01T00:00:00Z", "1");
        let same_time = account("a", "x", "2026-02-01T00:00:00Z", "1");
        let all = vec![old.clone(), new.clone(), same_time.clone()];
        assert!(conflict(&old, &all).is_none());
        let c = conflict(&new, &all).unwrap();
        assert_eq!(c.holder.name_any(), "contoso-line");
        assert!(message(&c).starts_with("spec.line.channelId: LINE channel 1 is held by MessagingAccount support/contoso-line"), "{}", message(&c));
        // Created in the same second: the namespace decides, and the holder is the oldest of all.
        assert_eq!(conflict(&same_time, &all).unwrap().holder.namespace().as_deref(), Some("support"));
        assert_eq!(conflict(&new, &[new.clone(), same_time.clone()]).unwrap().holder.namespace().as_deref(), Some("a"));
    }

    #[test]
    fn only_accounts_whose_standing_changed_are_woken() {
        let holder = account("support", "a", "2026-01-01T00:00:00Z", "1");
        let other = account("support", "b", "2026-02-01T00:00:00Z", "1");
        let unrelated = account("support", "c", "2026-02-01T00:00:00Z", "2");
        let names = |refs: Vec<ObjectRef<MessagingAccount>>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        // b does not know yet that a holds the channel.
        assert_eq!(names(affected(&holder, &[holder.clone(), other.clone(), unrelated.clone()])), ["b"]);
        // b says so already: nothing to do.
        let said = message(&conflict(&other, &[holder.clone(), other.clone()]).unwrap());
        let b_stopped = stopped(&other, &said);
        assert!(affected(&holder, &[holder.clone(), b_stopped.clone(), unrelated.clone()]).is_empty());
        // a is gone (or moved to another channel): b takes over.
        assert_eq!(names(affected(&holder, &[b_stopped.clone(), unrelated.clone()])), ["b"]);
        let moved = account("support", "a", "2026-01-01T00:00:00Z", "3");
        assert_eq!(names(affected(&moved, &[moved.clone(), b_stopped])), ["b"]);
    }
}
