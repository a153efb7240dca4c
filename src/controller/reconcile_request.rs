//! Re-checks on request, as Flux does with `reconcile.fluxcd.io/requestedAt`: a new value of the
//! annotation [`ANNOTATION`] on any object makes its reconciler ask the provider again at once
//! (credentials, webhooks, approvals) instead of waiting for the next scheduled check, and the
//! status's `lastHandledReconcileAt` then echoes the value. Annotation changes pass the watch
//! filter (see `worth_reconciling`), so the annotation alone wakes the reconciler.

use kube::Resource;

pub use crate::api::RECONCILE_REQUESTED_AT as ANNOTATION;

/// The annotation's value when it asks for a re-check not handled yet: it differs from
/// `last_handled`, the status's `lastHandledReconcileAt`.
pub fn pending<K: Resource>(object: &K, last_handled: Option<&str>) -> Option<String> {
    let requested = object.meta().annotations.as_ref()?.get(ANNOTATION)?;
    (Some(requested.as_str()) != last_handled).then(|| requested.clone())
}

/// Records in the status's `lastHandledReconcileAt` the request a pass acted on.
pub fn handled(request: Option<String>, last_handled: &mut Option<String>) {
    if let Some(value) = request {
        *last_handled = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MessagingAccount;

    fn account(annotation: Option<&str>) -> MessagingAccount {
        let mut account: MessagingAccount = serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "MessagingAccount",
            "metadata": {"name": "a", "namespace": "ns", "annotations": {"other": "x"}},
            "spec": {"webhook": {"publicBaseUrl": "https://x.example"}, "dataTransfer": {"acknowledged": true}}
        }))
        .unwrap();
        if let Some(value) = annotation {
            account.metadata.annotations.get_or_insert_default().insert(ANNOTATION.to_owned(), value.to_owned());
        }
        account
    }

    #[test]
    fn a_new_value_is_a_request_until_it_is_handled() {
        assert_eq!(pending(&account(None), None), None);
        assert_eq!(pending(&account(None), Some("1")), None, "removing the annotation asks for nothing");
        let asked = account(Some("2026-01-02T03:04:05Z"));
        assert_eq!(pending(&asked, None).as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(pending(&asked, Some("earlier")).as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(pending(&asked, Some("2026-01-02T03:04:05Z")), None, "handled already");
        assert_eq!(pending(&account(Some("")), None).as_deref(), Some(""), "any value asks");
    }

    #[test]
    fn the_status_echoes_the_handled_value_and_keeps_it() {
        let mut last = Some("1".to_owned());
        handled(None, &mut last);
        assert_eq!(last.as_deref(), Some("1"));
        handled(Some("2".to_owned()), &mut last);
        assert_eq!(last.as_deref(), Some("2"));
    }
}
