//! What a MessageTemplate needs at Twilio, worked out from its spec and status alone: which
//! Content each localization uses (adopted, created before, or to be created), which Content is
//! no longer used, and how the approvals add up to the Approved condition.


use sha2::{Digest, Sha256};

use crate::api::conditions::{Observation, Status};
use crate::api::template::{Approval, LocalizationStatus, MessageTemplateSpec, TemplateCategory};
use crate::providers::twilio::{ApprovalStatus, WhatsAppCategory};

/// Condition: the approvals of every localization.
pub const APPROVED: &str = "Approved";

/// Where a localization's Content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A SID from `spec.adopt`.
    Adopted(String),
    /// Content the controller created earlier for exactly this localization.
    Existing(String),
    /// Nothing yet: find it by its friendly name (created just before a restart) or create it.
    Create,
}

/// One localization's Content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The language.
    pub language: String,
    /// Where its Content comes from.
    pub source: Source,
    /// The digest of what Content created for it is made from.
    pub hash: String,
    /// The friendly name of Content created for it; unique per object and content.
    pub friendly_name: String,
}

/// Content in the status that the spec no longer uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retired {
    /// Its language.
    pub language: String,
    /// Its SID.
    pub content_sid: String,
    /// Whether the controller created it (only that is deleted under `deletionPolicy: Delete`).
    pub created: bool,
    /// Whether the language is still there with new Content (the body changed).
    pub replaced: bool,
}

/// The Content plan of a template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One entry per localization, in spec order.
    pub localizations: Vec<Planned>,
    /// Content to let go of.
    pub retired: Vec<Retired>,
}

/// Plans the Content of a template whose object has UID `uid`, given its current status.
pub fn plan(spec: &MessageTemplateSpec, uid: &str, status: &[LocalizationStatus]) -> Plan {
    let mut result = Plan::default();
    for localization in &spec.localizations {
        let language = localization.language.as_str();
        let hash = content_hash(spec, language, &localization.body, uid);
        let friendly_name = format!("{}_{}_{}", spec.template_name, language, &hash[..12]);
        let previous = status.iter().find(|s| s.language == language).and_then(|s| s.content_sid.clone().map(|sid| (sid, s.content_hash.clone())));
        let adopted = spec.adopt.as_ref().and_then(|a| a.get(language)).cloned();
        let source = match (&adopted, &previous) {
            (Some(sid), _) => Source::Adopted(sid.clone()),
            (None, Some((sid, Some(h)))) if *h == hash => Source::Existing(sid.clone()),
            (None, _) => Source::Create,
        };
        if let Some((sid, previous_hash)) = previous {
            let kept = matches!(&source, Source::Adopted(s) | Source::Existing(s) if *s == sid);
            if !kept {
                result.retired.push(Retired { language: language.to_owned(), content_sid: sid, created: previous_hash.is_some(), replaced: true });
            }
        }
        result.localizations.push(Planned { language: language.to_owned(), source, hash, friendly_name });
    }
    for old in status.iter().filter(|s| !spec.localizations.iter().any(|l| l.language == s.language)) {
        if let Some(sid) = &old.content_sid {
            result.retired.push(Retired { language: old.language.clone(), content_sid: sid.clone(), created: old.content_hash.is_some(), replaced: false });
        }
    }
    result
}

/// The digest of everything Content is created and submitted from, with the object's UID so
/// that two objects never share Content.
fn content_hash(spec: &MessageTemplateSpec, language: &str, body: &str, uid: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [uid, &spec.template_name, category_name(spec.category), language, body] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (key, value) in spec.variables(body) {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn category_name(category: TemplateCategory) -> &'static str {
    match category {
        TemplateCategory::Utility => "UTILITY",
        TemplateCategory::Marketing => "MARKETING",
        TemplateCategory::Authentication => "AUTHENTICATION",
    }
}

/// The category as the approval request names it.
pub fn whatsapp_category(category: TemplateCategory) -> WhatsAppCategory {
    match category {
        TemplateCategory::Utility => WhatsAppCategory::Utility,
        TemplateCategory::Marketing => WhatsAppCategory::Marketing,
        TemplateCategory::Authentication => WhatsAppCategory::Authentication,
    }
}

/// Twilio's approval status as the status shows it; a value this version does not know counts
/// as still under review.
pub fn approval(status: &ApprovalStatus) -> Approval {
    match status {
        ApprovalStatus::Unsubmitted => Approval::Unsubmitted,
        ApprovalStatus::Received => Approval::Received,
        ApprovalStatus::Pending | ApprovalStatus::Other(_) => Approval::Pending,
        ApprovalStatus::Approved => Approval::Approved,
        ApprovalStatus::Rejected => Approval::Rejected,
        ApprovalStatus::Paused => Approval::Paused,
        ApprovalStatus::Disabled => Approval::Disabled,
    }
}

/// Whether a review may still change on its own soon (it is polled more often).
pub fn under_review(approval: Option<Approval>) -> bool {
    matches!(approval, None | Some(Approval::Unsubmitted | Approval::Received | Approval::Pending))
}

/// The Approved condition: False if WhatsApp rejected, paused or disabled any localization (they
/// cannot be sent), Unknown while any is under review, True when all are approved (or need no
/// approval).
pub fn approved(localizations: &[LocalizationStatus]) -> Observation {
    let with = |wanted: &[Approval]| -> Vec<&LocalizationStatus> {
        localizations.iter().filter(|l| l.approval.is_some_and(|a| wanted.contains(&a))).collect()
    };
    let rejected = with(&[Approval::Rejected]);
    if !rejected.is_empty() {
        let reasons: Vec<String> = rejected
            .iter()
            .map(|l| format!("{}: {}", l.language, l.rejection_reason.as_deref().filter(|r| !r.is_empty()).unwrap_or("no reason given")))
            .collect();
        return Observation::new(APPROVED, Status::False, "Rejected", format!("WhatsApp rejected {}", reasons.join("; ")));
    }
    for (state, reason, verb) in [(Approval::Disabled, "Disabled", "disabled"), (Approval::Paused, "Paused", "paused")] {
        let hit = with(&[state]);
        if !hit.is_empty() {
            let languages: Vec<&str> = hit.iter().map(|l| l.language.as_str()).collect();
            let message = format!("WhatsApp {verb} {}: it cannot be sent", languages.join(", "));
            return Observation::new(APPROVED, Status::False, reason, message);
        }
    }
    let waiting: Vec<&str> = localizations.iter().filter(|l| under_review(l.approval)).map(|l| l.language.as_str()).collect();
    if !waiting.is_empty() {
        return Observation::new(APPROVED, Status::Unknown, "Pending", format!("awaiting WhatsApp review: {}", waiting.join(", ")));
    }
    if !localizations.is_empty() && localizations.iter().all(|l| l.approval == Some(Approval::NotRequired)) {
        return Observation::new(APPROVED, Status::True, "NotRequired", "LINE messages need no approval");
    }
    Observation::new(APPROVED, Status::True, "Approved", "WhatsApp approved every localization")
}

/// The status's `approvalSummary`, for `kubectl get`: the localizations that cannot be sent,
/// with their languages (Rejected, Disabled, Paused, in that order); else Pending while any is
/// under review; else NotRequired on LINE and Approved on WhatsApp. None while no localization
/// has a status yet.
pub fn approval_summary(localizations: &[LocalizationStatus]) -> Option<String> {
    if localizations.is_empty() {
        return None;
    }
    let blocked: Vec<String> = [(Approval::Rejected, "Rejected"), (Approval::Disabled, "Disabled"), (Approval::Paused, "Paused")]
        .into_iter()
        .filter_map(|(state, word)| {
            let languages: Vec<&str> = localizations.iter().filter(|l| l.approval == Some(state)).map(|l| l.language.as_str()).collect();
            (!languages.is_empty()).then(|| format!("{word}: {}", languages.join(", ")))
        })
        .collect();
    let summary = if !blocked.is_empty() {
        blocked.join("; ")
    } else if localizations.iter().any(|l| under_review(l.approval)) {
        "Pending".to_owned()
    } else if localizations.iter().all(|l| l.approval == Some(Approval::NotRequired)) {
        "NotRequired".to_owned()
    } else {
        "Approved".to_owned()
    };
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LocalObjectReference;
    use crate::api::template::{DeletionPolicy, Localization};

    fn spec(bodies: &[(&str, &str)]) -> MessageTemplateSpec {
        MessageTemplateSpec {
            account_ref: LocalObjectReference { name: "acct".into() },
            template_name: "reminder".into(),
            category: TemplateCategory::Utility,
            default_language: "en".into(),
            localizations: bodies.iter().map(|(l, b)| Localization { language: (*l).into(), body: (*b).into() }).collect(),
            sample_values: [("1".to_owned(), "Ann".to_owned()), ("2".to_owned(), "10:00".to_owned())].into(),
            adopt: None,
            deletion_policy: DeletionPolicy::Retain,
        }
    }

    fn created(language: &str, sid: &str, hash: &str) -> LocalizationStatus {
        LocalizationStatus {
            language: language.into(),
            content_sid: Some(sid.into()),
            approval: Some(Approval::Pending),
            content_hash: Some(hash.into()),
            ..Default::default()
        }
    }

    #[test]
    fn new_localizations_are_created_with_stable_unique_names() {
        let s = spec(&[("en", "Hi {{1}} at {{2}}"), ("tr", "Merhaba {{1}}")]);
        let a = plan(&s, "uid-1", &[]);
        assert_eq!(a.localizations.iter().map(|p| &p.source).collect::<Vec<_>>(), [&Source::Create, &Source::Create]);
        assert!(a.localizations[0].friendly_name.starts_with("reminder_en_"));
        assert_eq!(a, plan(&s, "uid-1", &[]), "the same inputs plan the same names (a restart finds what it made)");
        let other = plan(&s, "uid-2", &[]);
        assert_ne!(a.localizations[0].friendly_name, other.localizations[0].friendly_name);
        assert!(a.retired.is_empty());
    }

    #[test]
    fn unchanged_content_is_kept_and_changed_content_replaced() {
        let s = spec(&[("en", "Hi {{1}}"), ("tr", "Merhaba {{1}}")]);
        let first = plan(&s, "u", &[]);
        let status = vec![created("en", "HXen", &first.localizations[0].hash), created("tr", "HXtr", &first.localizations[1].hash)];
        let same = plan(&s, "u", &status);
        assert_eq!(same.localizations[0].source, Source::Existing("HXen".into()));
        assert!(same.retired.is_empty());

        let changed = spec(&[("en", "Hello {{1}}"), ("tr", "Merhaba {{1}}")]);
        let next = plan(&changed, "u", &status);
        assert_eq!(next.localizations[0].source, Source::Create);
        assert_eq!(next.localizations[1].source, Source::Existing("HXtr".into()));
        assert_eq!(next.retired, [Retired { language: "en".into(), content_sid: "HXen".into(), created: true, replaced: true }]);
    }

    #[test]
    fn a_category_or_sample_change_needs_new_content_but_unused_samples_do_not() {
        let s = spec(&[("en", "Hi {{1}}")]);
        let base = plan(&s, "u", &[]).localizations[0].hash.clone();
        let mut marketing = s.clone();
        marketing.category = TemplateCategory::Marketing;
        assert_ne!(plan(&marketing, "u", &[]).localizations[0].hash, base);
        let mut sample = s.clone();
        sample.sample_values.insert("1".into(), "Bob".into());
        assert_ne!(plan(&sample, "u", &[]).localizations[0].hash, base);
        let mut unused = s.clone();
        unused.sample_values.insert("2".into(), "11:00".into());
        assert_eq!(plan(&unused, "u", &[]).localizations[0].hash, base);
    }

    #[test]
    fn adopted_and_removed_localizations() {
        let mut s = spec(&[("en", "Hi {{1}}")]);
        s.adopt = Some([("en".to_owned(), "HXadopted".to_owned())].into());
        let status = vec![created("en", "HXmine", "h"), created("de", "HXde", "h2"), LocalizationStatus {
            language: "fr".into(),
            content_sid: Some("HXfr".into()),
            ..Default::default()
        }];
        let p = plan(&s, "u", &status);
        assert_eq!(p.localizations[0].source, Source::Adopted("HXadopted".into()));
        assert_eq!(
            p.retired,
            [
                Retired { language: "en".into(), content_sid: "HXmine".into(), created: true, replaced: true },
                Retired { language: "de".into(), content_sid: "HXde".into(), created: true, replaced: false },
                Retired { language: "fr".into(), content_sid: "HXfr".into(), created: false, replaced: false },
            ]
        );
    }

    #[test]
    fn variables_are_the_ones_the_body_uses() {
        let s = spec(&[]);
        assert_eq!(s.variables("Hi {{2}}"), [("2".to_owned(), "10:00".to_owned())].into());
        assert!(s.variables("Hi").is_empty());
    }

    fn with(language: &str, approval: Approval, reason: Option<&str>) -> LocalizationStatus {
        LocalizationStatus {
            language: language.into(),
            approval: Some(approval),
            rejection_reason: reason.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn approved_adds_up_the_localizations() {
        let all = [with("en", Approval::Approved, None), with("tr", Approval::Approved, None)];
        assert_eq!(approved(&all).status, Status::True);

        let pending = [with("en", Approval::Approved, None), with("tr", Approval::Pending, None)];
        let p = approved(&pending);
        assert_eq!((p.status, p.reason.as_str()), (Status::Unknown, "Pending"));
        assert!(p.message.ends_with("tr"));

        let rejected = [with("en", Approval::Rejected, Some("Variables at the start")), with("tr", Approval::Pending, None)];
        let r = approved(&rejected);
        assert_eq!((r.status, r.reason.as_str()), (Status::False, "Rejected"));
        assert_eq!(r.message, "WhatsApp rejected en: Variables at the start");

        let paused = [with("en", Approval::Paused, None)];
        assert_eq!(approved(&paused).reason, "Paused");
        let disabled = [with("en", Approval::Disabled, None), with("tr", Approval::Paused, None)];
        assert_eq!(approved(&disabled).reason, "Disabled");

        let line = [with("en", Approval::NotRequired, None)];
        assert_eq!(approved(&line).reason, "NotRequired");
        assert_eq!(approved(&[]).status, Status::True);
    }

    #[test]
    fn the_approval_summary_names_what_cannot_be_sent() {
        let summary = |list: &[LocalizationStatus]| approval_summary(list);
        assert_eq!(summary(&[with("en", Approval::Approved, None), with("tr", Approval::Approved, None)]).as_deref(), Some("Approved"));
        assert_eq!(summary(&[with("en", Approval::Approved, None), with("tr", Approval::Pending, None)]).as_deref(), Some("Pending"));
        let unknown = LocalizationStatus { language: "de".into(), ..Default::default() };
        assert_eq!(summary(&[with("en", Approval::Received, None), unknown]).as_deref(), Some("Pending"), "no approval read yet is under review");
        assert_eq!(summary(&[with("en", Approval::Approved, None), with("tr", Approval::Rejected, Some("Spam"))]).as_deref(), Some("Rejected: tr"));
        let mixed = [
            with("en", Approval::Paused, None),
            with("tr", Approval::Rejected, None),
            with("de", Approval::Pending, None),
            with("fr", Approval::Rejected, None),
            with("es", Approval::Disabled, None),
        ];
        assert_eq!(summary(&mixed).as_deref(), Some("Rejected: tr, fr; Disabled: es; Paused: en"));
        assert_eq!(summary(&[with("en", Approval::NotRequired, None), with("tr", Approval::NotRequired, None)]).as_deref(), Some("NotRequired"));
        assert_eq!(summary(&[]), None);
    }

    #[test]
    fn unknown_provider_states_count_as_under_review() {
        assert_eq!(approval(&ApprovalStatus::Other("in_appeal".into())), Approval::Pending);
        assert!(under_review(Some(approval(&ApprovalStatus::Received))));
        assert!(!under_review(Some(Approval::Rejected)));
        assert!(under_review(None));
    }
}
