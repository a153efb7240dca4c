//! The MessageTemplate reconciler: on a Twilio account, one Content per localization, submitted
//! for WhatsApp approval and followed until WhatsApp decides; on a LINE account, validation
//! only. Content SIDs are written to the status as soon as they exist, and Content is found by
//! its friendly name after a restart, so a localization never gets two.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::acceptance;
use super::account::CREDENTIALS_VALID;
use crate::backoff::jittered;
use super::cleanup::{self, Abandon};
use super::context::Context;
use super::provider_status::{self, Retry};
use super::reconcile_request;
use super::secrets;
use super::status::{self, Notice};
use super::template_plan::{self, APPROVED, Planned, Source};
use super::{Error, Next, next_action, object_key, with_finalizer};
use crate::api::conditions::{self, Observation, READY, Status};
use crate::api::crds::Kind;
use crate::api::references::{self, Missing};
use crate::api::template::{Approval, DeletionPolicy, LocalizationStatus};
use crate::api::field_error::FieldError;
use crate::api::validation;
use crate::api::{MessageTemplate, MessageTemplateStatus, MessagingAccount};
use crate::providers::twilio::{Content, ContentTypes, NewContent, TextContent};
use crate::providers::{ProviderError, TwilioClient, TwilioCredentials};

/// Condition: every localization has its provider-side Content.
pub const SYNCED: &str = "Synced";

/// Reconciles one MessageTemplate.
pub async fn reconcile(template: Arc<MessageTemplate>, ctx: Arc<Context>) -> Result<Action, Error> {
    with_finalizer(template, &ctx, apply, cleanup).await
}

/// What one pass found.
struct Outcome {
    observations: Vec<Observation>,
    ready: Option<Observation>,
    notices: Vec<Notice>,
    next: Next,
}

impl Outcome {
    fn blocked(reason: &str, message: String, next: Next) -> Self {
        let unknown = |type_| Observation::new(type_, Status::Unknown, reason, "not checked: see Ready");
        Self {
            observations: vec![unknown(SYNCED), unknown(APPROVED)],
            ready: Some(Observation::new(READY, Status::False, reason, message)),
            notices: Vec::new(),
            next,
        }
    }

    fn not_synced(reason: &str, message: String, next: Next, notices: Vec<Notice>) -> Self {
        Self { observations: vec![Observation::new(SYNCED, Status::False, reason, message)], ready: None, notices, next }
    }
}

async fn apply(template: &MessageTemplate, api: &Api<MessageTemplate>, ctx: &Context) -> Result<Action, Error> {
    let key = object_key(template);
    let generation = template.metadata.generation;
    let old = template.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let request = reconcile_request::pending(template, old.last_handled_reconcile_at.as_deref());
    let mut pass = Pass { template, api, ctx, written: old.clone(), forced: request.is_some() };
    let outcome = pass.observe(&mut status).await?;
    let now = Timestamp::now();
    for observation in outcome.observations {
        conditions::set(&mut status.conditions, observation, generation, now);
    }
    let ready = outcome.ready.unwrap_or_else(|| conditions::ready(&status.conditions, &[SYNCED, APPROVED]));
    conditions::set(&mut status.conditions, ready, generation, now);
    status.observed_generation = generation;
    status.approval_summary = template_plan::approval_summary(&status.localizations);
    reconcile_request::handled(request, &mut status.last_handled_reconcile_at);

    let mut notices = outcome.notices;
    notices.extend(status::transitions(&old.conditions, &status.conditions));
    status::write(api, &template.name_any(), Some(&pass.written), &status).await?;
    status::publish(&ctx.recorder, &template.object_ref(&()), &notices).await;
    Ok(next_action(ctx, &key, outcome.next))
}

/// One pass over a template; `written` is the status as last written, since a pass writes
/// Content SIDs as soon as they exist.
struct Pass<'a> {
    template: &'a MessageTemplate,
    api: &'a Api<MessageTemplate>,
    ctx: &'a Context,
    written: MessageTemplateStatus,
    /// A re-check was asked for: every approval is read again, due or not.
    forced: bool,
}

impl Pass<'_> {
    async fn observe(&mut self, status: &mut MessageTemplateStatus) -> Result<Outcome, Error> {
        let template = self.template;
        let namespace = template.namespace().unwrap_or_default();
        let errors = self.spec_errors();
        if !errors.is_empty() {
            return Ok(Outcome::blocked("InvalidSpec", acceptance::describe(&errors), Next::AwaitChange));
        }
        let account_name = &template.spec.account_ref.name;
        let accounts: Api<MessagingAccount> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let Some(account) = accounts.get_opt(account_name).await? else {
            // The account watch brings the template back when the account appears.
            let message = format!("spec.accountRef.name: MessagingAccount {namespace}/{account_name} not found");
            return Ok(Outcome::blocked("AccountNotFound", message, Next::AwaitChange));
        };
        let Some(twilio) = &account.spec.twilio_whatsapp else {
            status.localizations = template
                .spec
                .localizations
                .iter()
                .map(|l| LocalizationStatus { language: l.language.clone(), approval: Some(Approval::NotRequired), ..Default::default() })
                .collect();
            let synced = Observation::new(SYNCED, Status::True, "NotRequired", "LINE needs no provider-side template");
            let approved = template_plan::approved(&status.localizations);
            return Ok(Outcome { observations: vec![synced, approved], ready: None, notices: Vec::new(), next: Next::AwaitChange });
        };
        let account_status = account.status.clone().unwrap_or_default();
        if !conditions::is_true(&account_status.conditions, CREDENTIALS_VALID) {
            let why = conditions::find(&account_status.conditions, CREDENTIALS_VALID).map_or("not checked yet".to_owned(), |c| c.reason.clone());
            let message = format!("MessagingAccount {account_name} has no valid credentials ({why})");
            return Ok(Outcome::not_synced("AccountNotReady", message, Next::AwaitChange, Vec::new()));
        }
        let refs = account.spec.secret_refs();
        let credentials = match secrets::read(&self.ctx.client, &namespace, &refs).await {
            Ok(credentials) => credentials,
            Err(e) => return Ok(Outcome::not_synced(e.reason(), e.to_string(), Next::Retry(Retry::Backoff), Vec::new())),
        };
        let Some(auth_token) = credentials.get(&twilio.auth_token.secret_key_ref) else {
            return Ok(Outcome::not_synced("SecretKeyMissing", "the account's auth token could not be read".to_owned(), Next::AwaitChange, Vec::new()));
        };
        let client = self.ctx.providers.twilio(TwilioCredentials { account_sid: twilio.account_sid.clone(), auth_token: auth_token.clone() });
        self.twilio(&client, status).await
    }

    fn spec_errors(&self) -> Vec<FieldError> {
        let template = self.template;
        let mut errors = acceptance::spec_errors(Kind::MessageTemplate, template, validation::template_errors(&template.spec));
        let templates = acceptance::in_namespace(&self.ctx.templates.state(), &template.namespace().unwrap_or_default());
        let no_accounts: [MessagingAccount; 0] = [];
        errors.extend(references::template_errors(template, &no_accounts, &templates, Missing::Ignore));
        errors
    }

    async fn twilio(&mut self, client: &TwilioClient, status: &mut MessageTemplateStatus) -> Result<Outcome, Error> {
        let spec = &self.template.spec;
        let uid = self.template.uid().unwrap_or_default();
        let plan = template_plan::plan(spec, &uid, &status.localizations);
        let mut notices = Vec::new();
        let mut listing: Option<Vec<Content>> = None;
        let mut localizations = Vec::new();
        for planned in &plan.localizations {
            let previous = status.localizations.iter().find(|l| l.language == planned.language).cloned();
            let existing = source_sid(&planned.source).and_then(|sid| previous.filter(|p| p.content_sid.as_deref() == Some(sid)));
            let entry = match existing {
                Some(entry) => entry,
                None => {
                    let sid = match self.content_for(client, planned, &mut listing, &mut notices).await {
                        Ok(sid) => sid,
                        Err(e) => return Ok(self.failed(&e, notices)),
                    };
                    let adopted = matches!(planned.source, Source::Adopted(_));
                    let entry = LocalizationStatus {
                        language: planned.language.clone(),
                        content_sid: Some(sid),
                        content_hash: (!adopted).then(|| planned.hash.clone()),
                        ..Default::default()
                    };
                    // Written at once: a crash now must not lose the SID.
                    upsert(&mut status.localizations, entry.clone());
                    self.write_now(status).await?;
                    entry
                }
            };
            localizations.push(entry);
        }

        for retired in &plan.retired {
            if retired.replaced {
                let note = format!(
                    "{}: the localization changed; Content {} cannot change once submitted, so new Content was made",
                    retired.language, retired.content_sid
                );
                notices.push(Notice::normal("ContentReplaced", note).about(&retired.language));
            }
            // Replaced Content goes whatever the policy (which is about deleting the object):
            // WhatsApp template names are unique per language, so the new Content could not be
            // submitted under the template's name while the old one exists.
            if retired.created && (retired.replaced || spec.deletion_policy == DeletionPolicy::Delete) {
                if let Err(e) = client.delete_content(&retired.content_sid).await {
                    return Ok(self.failed(&e, notices));
                }
                let note = format!("{}: deleted Content {}", retired.language, retired.content_sid);
                notices.push(Notice::normal("ContentDeleted", note).about(&retired.language));
            }
        }
        status.localizations = localizations;

        let mut next_poll: Option<Duration> = None;
        for entry in &mut status.localizations {
            match self.follow_approval(client, entry).await {
                Ok(due) => next_poll = Some(next_poll.map_or(due, |d| d.min(due))),
                Err(e) => return Ok(self.failed(&e, notices)),
            }
        }
        let languages: Vec<String> = status
            .localizations
            .iter()
            .map(|l| format!("{} {}", l.language, l.content_sid.as_deref().unwrap_or_default()))
            .collect();
        let synced = Observation::new(SYNCED, Status::True, "Synced", format!("Twilio Content: {}", languages.join(", ")));
        let approved = template_plan::approved(&status.localizations);
        let next = Next::Recheck(next_poll.unwrap_or(self.ctx.settings.approval_settled_interval));
        Ok(Outcome { observations: vec![synced, approved], ready: None, notices, next })
    }

    /// The SID of a localization's Content: adopted, found by friendly name (made before a
    /// restart), or created now.
    async fn content_for(
        &self,
        client: &TwilioClient,
        planned: &Planned,
        listing: &mut Option<Vec<Content>>,
        notices: &mut Vec<Notice>,
    ) -> Result<String, ProviderError> {
        match &planned.source {
            Source::Adopted(sid) | Source::Existing(sid) => return Ok(sid.clone()),
            Source::Create => {}
        }
        if listing.is_none() {
            *listing = Some(client.contents().await?);
        }
        let found = listing.iter().flatten().find(|c| c.friendly_name.as_deref() == Some(planned.friendly_name.as_str()));
        if let Some(found) = found {
            return Ok(found.sid.clone());
        }
        let spec = &self.template.spec;
        let body = spec.localizations.iter().find(|l| l.language == planned.language).map(|l| l.body.clone()).unwrap_or_default();
        let content = NewContent {
            friendly_name: Some(planned.friendly_name.clone()),
            language: planned.language.clone(),
            variables: spec.variables(&body),
            types: ContentTypes { text: Some(TextContent { body }), media: None },
        };
        let created = client.create_content(&content).await?;
        notices.push(Notice::normal("ContentCreated", format!("{}: created Content {}", planned.language, created.sid)).about(&planned.language));
        Ok(created.sid)
    }

    /// Submits Content that was never submitted, or reads its approval when it is due; returns
    /// when to read it next.
    async fn follow_approval(&self, client: &TwilioClient, entry: &mut LocalizationStatus) -> Result<Duration, ProviderError> {
        let Some(sid) = entry.content_sid.clone() else {
            return Ok(self.ctx.settings.approval_pending_interval);
        };
        let settings = &self.ctx.settings;
        let due = self.ctx.approval_due.lock().unwrap_or_else(|e| e.into_inner()).get(&sid).copied();
        let now = Instant::now();
        if let (Some(due), Some(_)) = (due, entry.approval)
            && due > now
            && !self.forced
        {
            return Ok(due - now);
        }
        let spec = &self.template.spec;
        let mut result = client.approval(&sid).await?;
        if result.status == crate::providers::twilio::ApprovalStatus::Unsubmitted {
            result = client.submit_for_approval(&sid, &spec.template_name, template_plan::whatsapp_category(spec.category)).await?;
        }
        entry.approval = Some(template_plan::approval(&result.status));
        entry.category = result.category.filter(|c| !c.is_empty());
        entry.rejection_reason = result.rejection_reason.filter(|r| !r.is_empty());
        let interval = if template_plan::under_review(entry.approval) { settings.approval_pending_interval } else { settings.approval_settled_interval };
        let wait = jittered(interval);
        self.ctx.approval_due.lock().unwrap_or_else(|e| e.into_inner()).insert(sid, now + wait);
        Ok(wait)
    }

    fn failed(&self, error: &ProviderError, notices: Vec<Notice>) -> Outcome {
        let (observation, retry) = provider_status::failure(SYNCED, error);
        Outcome::not_synced(&observation.reason, observation.message, Next::Retry(retry), notices)
    }

    async fn write_now(&mut self, status: &MessageTemplateStatus) -> Result<(), Error> {
        status::write(self.api, &self.template.name_any(), Some(&self.written), status).await?;
        self.written = status.clone();
        Ok(())
    }
}

fn source_sid(source: &Source) -> Option<&str> {
    match source {
        Source::Adopted(sid) | Source::Existing(sid) => Some(sid),
        Source::Create => None,
    }
}

fn upsert(localizations: &mut Vec<LocalizationStatus>, entry: LocalizationStatus) {
    match localizations.iter_mut().find(|l| l.language == entry.language) {
        Some(existing) => *existing = entry,
        None => localizations.push(entry),
    }
}

/// Deletes the Content the controller created when `deletionPolicy` is Delete.
async fn cleanup(template: &MessageTemplate, ctx: &Context) -> Result<Action, Error> {
    let created: Vec<&LocalizationStatus> = template
        .status
        .iter()
        .flat_map(|s| &s.localizations)
        .filter(|l| l.content_hash.is_some() && l.content_sid.is_some())
        .collect();
    if template.spec.deletion_policy == DeletionPolicy::Retain || created.is_empty() {
        return Ok(Action::await_change());
    }
    for entry in &created {
        if let Some(sid) = &entry.content_sid {
            ctx.approval_due.lock().unwrap_or_else(|e| e.into_inner()).remove(sid);
        }
    }
    let sids: Vec<&str> = created.iter().filter_map(|l| l.content_sid.as_deref()).collect();
    let result = delete_contents(template, &sids, ctx).await;
    let left_behind = format!("Twilio Content {}; delete it in the Twilio console", sids.join(", "));
    cleanup::conclude(ctx, template, result, "ContentDeleted", &left_behind).await
}

async fn delete_contents(template: &MessageTemplate, sids: &[&str], ctx: &Context) -> Result<String, Abandon> {
    let namespace = template.namespace().unwrap_or_default();
    let accounts: Api<MessagingAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let account = accounts.get_opt(&template.spec.account_ref.name).await.map_err(|e| Abandon::Retry(e.to_string()))?;
    let Some(twilio) = account.and_then(|a| a.spec.twilio_whatsapp) else {
        return Err(Abandon::Now(format!("MessagingAccount {} is gone, so its credentials are", template.spec.account_ref.name)));
    };
    let credentials = secrets::read(&ctx.client, &namespace, &[("spec.twilioWhatsApp.authToken.secretKeyRef", &twilio.auth_token.secret_key_ref)]).await?;
    let auth_token = credentials.get(&twilio.auth_token.secret_key_ref).cloned().ok_or_else(|| Abandon::Now("no auth token".to_owned()))?;
    let client = ctx.providers.twilio(TwilioCredentials { account_sid: twilio.account_sid.clone(), auth_token });
    for sid in sids {
        client.delete_content(sid).await?;
    }
    Ok(format!("Deleted Twilio Content {}", sids.join(", ")))
}
