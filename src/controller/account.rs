//! The MessagingAccount reconciler: reads the credentials, checks them with the provider, shows
//! the provider's identity, registers the webhook, and un-registers it when the account is
//! deleted.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use url::Url;

use super::acceptance;
use crate::backoff::jittered;
use super::cleanup::{self, Abandon};
use super::context::{CloudRegion, Context, Verified};
use super::channels::{self, CHANNEL_IN_USE};
use super::gateway::{self, GATEWAY_READY};
use super::numbers::{self, NUMBER_NOT_FOUND, NUMBER_NOT_IN_SERVICE, Place};
use super::provider_status::{self, Retry};
use super::reconcile_request;
use super::secrets::{self, CredentialError, Credentials};
use super::status::{self, Notice};
use super::{Error, Next, next_action, object_key, retry_delay, with_finalizer};
use crate::api::account::{LineAccount, LineIdentity, NumberStatus, Registration, TwilioIdentity, TwilioWhatsAppAccount};
use crate::api::conditions::{self, Observation, READY, Status};
use crate::api::crds::Kind;
use crate::api::field_error::FieldError;
use crate::api::validation;
use crate::api::{MessagingAccount, MessagingAccountStatus, SecretKeyReference};
use crate::providers::twilio::{AccountStatus, AccountType};
use crate::providers::{LineClient, LineCredentials, ProviderError, TwilioClient, TwilioCredentials};

/// Condition: the credentials were read and the provider accepted them.
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
/// Condition: the provider sends webhooks to the callback URL.
pub const WEBHOOK_REGISTERED: &str = "WebhookRegistered";
/// The reason of a webhook only a person can register.
const MANUAL: &str = "ManualRegistrationRequired";

/// Reconciles one MessagingAccount.
pub async fn reconcile(account: Arc<MessagingAccount>, ctx: Arc<Context>) -> Result<Action, Error> {
    with_finalizer(account, &ctx, apply, cleanup).await
}

/// What one pass found, before it is written into the status.
struct Outcome {
    observations: Vec<Observation>,
    /// Ready, when something other than the conditions decides it (an invalid spec, say).
    ready: Option<Observation>,
    notices: Vec<Notice>,
    next: Next,
    /// Set when the provider was consulted: what to remember with the result.
    checked: Option<Checked>,
}

/// What a pass that consulted the provider leaves for the next one.
struct Checked {
    /// The inputs' fingerprint.
    fingerprint: String,
    /// When the credentials are next checked (the webhook may be re-read before).
    credentials_due: Instant,
}

impl Outcome {
    /// Nothing can be checked: Ready is False for `reason`, and the rest is not known.
    fn blocked(reason: &str, message: String) -> Self {
        let unknown = |type_| Observation::new(type_, Status::Unknown, reason, "not checked: see Ready");
        Self {
            observations: vec![unknown(CREDENTIALS_VALID), unknown(WEBHOOK_REGISTERED)],
            ready: Some(Observation::new(READY, Status::False, reason, message)),
            notices: Vec::new(),
            next: Next::AwaitChange,
            checked: None,
        }
    }

    /// Another account holds a channel this one claims: nothing is registered or rendered.
    fn channel_in_use(message: String) -> Self {
        let mut outcome = Self::blocked(CHANNEL_IN_USE, message.clone());
        outcome.observations[1] = Observation::new(WEBHOOK_REGISTERED, Status::False, CHANNEL_IN_USE, message);
        outcome
    }

    /// The credentials are not usable: the webhook waits for them.
    fn credentials_failed(credentials: Observation, next: Next) -> Self {
        let webhook = Observation::new(WEBHOOK_REGISTERED, Status::Unknown, "CredentialsNotValid", "waiting for valid credentials");
        Self { observations: vec![credentials, webhook], ready: None, notices: Vec::new(), next, checked: None }
    }

    fn secret_failed(error: &CredentialError) -> Self {
        let next = match error {
            CredentialError::Unreadable { .. } => Next::Retry(Retry::Backoff),
            // The Secret watch brings the account back when the Secret appears or changes.
            CredentialError::SecretNotFound { .. } | CredentialError::SecretKeyMissing { .. } => Next::AwaitChange,
        };
        Self::credentials_failed(Observation::new(CREDENTIALS_VALID, Status::False, error.reason(), error.to_string()), next)
    }

    fn provider_failed(type_: &str, error: &ProviderError, mut so_far: Vec<Observation>) -> Self {
        let (observation, retry) = provider_status::failure(type_, error);
        if type_ == CREDENTIALS_VALID {
            let mut outcome = Self::credentials_failed(observation, Next::Retry(retry));
            so_far.append(&mut outcome.observations);
            outcome.observations = so_far;
            return outcome;
        }
        so_far.push(observation);
        Self { observations: so_far, ready: None, notices: Vec::new(), next: Next::Retry(retry), checked: None }
    }
}

async fn apply(account: &MessagingAccount, api: &Api<MessagingAccount>, ctx: &Context) -> Result<Action, Error> {
    let key = object_key(account);
    let generation = account.metadata.generation;
    let old = account.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let request = reconcile_request::pending(account, old.last_handled_reconcile_at.as_deref());
    let outcome = observe(account, &old, &mut status, request.is_some(), ctx).await;
    let mut observations = outcome.observations;
    let mut notices = outcome.notices;
    if outcome.ready.is_none() {
        // The gateway follows the spec, the workstreams, rules and templates: rendered on every
        // pass, applied server-side (a no-op when nothing changed; puts back hand edits).
        let gateway = gateway::apply(account, ctx).await?;
        observations.extend(gateway.observations);
        notices.extend(gateway.notices);
        if gateway.status.is_some() {
            status.gateway = gateway.status;
        }
    }
    let now = Timestamp::now();
    for observation in observations {
        conditions::set(&mut status.conditions, observation, generation, now);
    }
    let ready = outcome.ready.unwrap_or_else(|| ready(&status.conditions));
    conditions::set(&mut status.conditions, ready, generation, now);
    status.observed_generation = generation;
    reconcile_request::handled(request, &mut status.last_handled_reconcile_at);

    notices.extend(status::transitions(&old.conditions, &status.conditions));
    status::write(api, &account.name_any(), account.status.as_ref(), &status).await?;
    status::publish(&ctx.recorder, &account.object_ref(&()), &notices).await;
    let (action, wait, failed) = match outcome.next {
        Next::Retry(retry) => {
            let delay = retry_delay(ctx, &key, retry);
            (Action::requeue(delay), delay, true)
        }
        Next::Recheck(after) => {
            ctx.failures.succeeded(&key);
            let wait = jittered(after);
            (Action::requeue(wait), wait, false)
        }
        next => (next_action(ctx, &key, next), jittered(ctx.settings.recheck_interval), false),
    };
    if let (Some(Checked { fingerprint, credentials_due }), Some(uid)) = (outcome.checked, account.uid()) {
        let due = Instant::now() + wait;
        let verified = Verified { fingerprint, due, credentials_due, failed };
        ctx.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(uid, verified);
    }
    Ok(action)
}

/// Ready follows the credentials, the webhook and the gateway; a webhook that only a person can
/// register does not hold Ready back, since the controller cannot tell when it is done (the
/// condition says what to do).
fn ready(current: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Observation {
    let manual = conditions::find(current, WEBHOOK_REGISTERED).is_some_and(|c| c.reason == MANUAL);
    if manual {
        let mut ready = conditions::ready(current, &[CREDENTIALS_VALID, GATEWAY_READY]);
        if ready.status == Status::True {
            ready.message = "CredentialsValid, GatewayReady are True; the webhook URL must be registered by hand (see WebhookRegistered)".to_owned();
        }
        ready
    } else {
        conditions::ready(current, &[CREDENTIALS_VALID, WEBHOOK_REGISTERED, GATEWAY_READY])
    }
}

/// The spec checks the API server may not have made (CEL rules need 1.25+) and those only code
/// can make.
fn spec_errors(account: &MessagingAccount, ctx: &Context) -> Vec<FieldError> {
    acceptance::spec_errors(Kind::MessagingAccount, account, validation::account_errors(&account.spec, ctx.settings.url_policy))
}

/// `forced`: a re-check was asked for, so the last provider check does not stand.
async fn observe(account: &MessagingAccount, old: &MessagingAccountStatus, status: &mut MessagingAccountStatus, forced: bool, ctx: &Context) -> Outcome {
    let spec = &account.spec;
    let namespace = account.namespace().unwrap_or_default();
    status.provider = Some(if spec.line.is_some() { "LINE" } else { "TwilioWhatsApp" }.to_owned());

    let errors = spec_errors(account, ctx);
    if !errors.is_empty() {
        return Outcome::blocked("InvalidSpec", acceptance::describe(&errors));
    }
    if spec.line.is_some() && ctx.settings.region == CloudRegion::Government {
        return Outcome::blocked(
            "RegionNotSupported",
            "LINE is not offered in government cloud regions, and this controller runs in one".to_owned(),
        );
    }
    let callback = match spec.callback_url(&namespace, &account.name_any()) {
        Ok(url) => url,
        Err(e) => return Outcome::blocked("InvalidSpec", format!("spec.webhook.publicBaseUrl: {e}")),
    };
    status.callback_url = Some(callback.to_string());
    if let Some(conflict) = channels::conflict(account, &ctx.accounts.state()) {
        // Taking the channel over later starts with a full provider check.
        if let Some(uid) = account.uid() {
            ctx.verified.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        }
        status.numbers.clear();
        return Outcome::channel_in_use(channels::message(&conflict));
    }

    let credentials = match secrets::read(&ctx.client, &namespace, &spec.secret_refs()).await {
        Ok(credentials) => credentials,
        Err(error) => return Outcome::secret_failed(&error),
    };
    let fingerprint = format!("{}|{}", account.metadata.generation.unwrap_or_default(), credentials.versions().join(","));
    let last = if forced { None } else { last_check(account, old, &fingerprint, ctx) };
    if let Some(last) = &last
        && let Some(remaining) = last.due.checked_duration_since(Instant::now())
    {
        // Nothing changed since the provider last answered: keep the status as it is.
        let next = if last.failed { Next::Hold(remaining) } else { Next::Recheck(remaining) };
        return Outcome { observations: Vec::new(), ready: None, notices: Vec::new(), next, checked: None };
    }
    // The webhook is due before the credentials: they stand as the provider last judged them.
    let known = last.filter(|last| !last.failed && last.credentials_due > Instant::now()).and_then(|last| {
        let valid = conditions::find(&old.conditions, CREDENTIALS_VALID).filter(|c| c.status == "True")?;
        Some((last.credentials_due, Observation::new(CREDENTIALS_VALID, Status::True, &valid.reason, valid.message.clone())))
    });
    let credentials_due = known.as_ref().map_or_else(|| Instant::now() + jittered(ctx.settings.recheck_interval), |(due, _)| *due);
    let known_credentials = known.map(|(_, observation)| observation);
    let registered_before = conditions::is_true(&old.conditions, WEBHOOK_REGISTERED) && old.callback_url.as_deref() == Some(callback.as_str());
    let manual = spec.webhook.registration == Registration::Manual;
    let mut outcome = match (&spec.line, &spec.twilio_whatsapp) {
        (Some(line), _) => {
            let check = Check { credentials: &credentials, known_credentials: known_credentials.clone(), callback: &callback, manual, registered_before, ctx };
            check.line(line, status).await
        }
        (None, Some(twilio)) => {
            let check = Check { credentials: &credentials, known_credentials: known_credentials.clone(), callback: &callback, manual, registered_before, ctx };
            check.twilio(twilio, status).await
        }
        (None, None) => Outcome::blocked("InvalidSpec", "spec: exactly one of line or twilioWhatsApp must be set".to_owned()),
    };
    outcome.checked = Some(Checked { fingerprint, credentials_due });
    outcome
}

/// The last provider check, when its inputs are unchanged and the status still shows its result.
fn last_check(account: &MessagingAccount, old: &MessagingAccountStatus, fingerprint: &str, ctx: &Context) -> Option<Verified> {
    let uid = account.uid()?;
    let checked = ctx.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).cloned()?;
    let current = old.observed_generation == account.metadata.generation;
    (checked.fingerprint == fingerprint && current).then_some(checked)
}

/// One verification pass against the provider.
struct Check<'a> {
    credentials: &'a Credentials,
    /// CredentialsValid as the last full check found it, when only the webhook is due.
    known_credentials: Option<Observation>,
    callback: &'a Url,
    manual: bool,
    /// The status showed this callback URL registered: a different URL at the provider now was
    /// set by someone else.
    registered_before: bool,
    ctx: &'a Context,
}

fn secret<'c>(credentials: &'c Credentials, reference: &SecretKeyReference) -> Result<&'c crate::providers::Secret, CredentialError> {
    credentials.get(reference).ok_or_else(|| CredentialError::SecretKeyMissing {
        name: reference.name.clone(),
        field: "spec".to_owned(),
        problem: format!("has no key {:?}", reference.key),
    })
}

impl Check<'_> {
    async fn line(&self, line: &LineAccount, status: &mut MessagingAccountStatus) -> Outcome {
        let token = match secret(self.credentials, &line.channel_access_token.secret_key_ref) {
            Ok(token) => token.clone(),
            Err(error) => return Outcome::secret_failed(&error),
        };
        let client = self.ctx.providers.line(LineCredentials { channel_access_token: token });
        let credentials = match &self.known_credentials {
            Some(known) => known.clone(),
            None => {
                let bot = match client.bot_info().await {
                    Ok(bot) => bot,
                    Err(e) => return Outcome::provider_failed(CREDENTIALS_VALID, &e, Vec::new()),
                };
                let message = format!("LINE accepted the channel access token of {} ({})", bot.display_name, bot.basic_id);
                status.line = Some(LineIdentity { bot_user_id: bot.user_id, basic_id: bot.basic_id, display_name: bot.display_name });
                Observation::new(CREDENTIALS_VALID, Status::True, "Valid", message)
            }
        };
        status.twilio = None;
        status.numbers.clear();
        if self.manual {
            let message = format!(
                "Registration is Manual: in the LINE Developers console, set the webhook URL of channel {} to {} and turn on Use webhook",
                line.channel_id, self.callback
            );
            return self.done(credentials, Observation::new(WEBHOOK_REGISTERED, Status::False, MANUAL, message), Vec::new());
        }
        self.line_webhook(&client, credentials).await
    }

    async fn line_webhook(&self, client: &LineClient, credentials: Observation) -> Outcome {
        let mut notices = Vec::new();
        let mut current = match read_line_endpoint(client).await {
            Ok(current) => current,
            Err(e) => return Outcome::provider_failed(WEBHOOK_REGISTERED, &e, vec![credentials]),
        };
        if current.0 != self.callback.as_str() {
            if self.registered_before && !current.0.is_empty() {
                notices.push(Notice::warning(
                    "EndpointMismatch",
                    format!("The LINE webhook URL was changed to {} outside Switchboard; setting it back to {}", current.0, self.callback),
                ));
            }
            if let Err(e) = client.set_webhook_endpoint(Some(self.callback)).await {
                return Outcome::provider_failed(WEBHOOK_REGISTERED, &e, vec![credentials]);
            }
            current = match read_line_endpoint(client).await {
                Ok(current) => current,
                Err(e) => return Outcome::provider_failed(WEBHOOK_REGISTERED, &e, vec![credentials]),
            };
        }
        let (endpoint, active) = current;
        if endpoint != self.callback.as_str() {
            let message = format!("LINE reports the webhook URL {endpoint:?} after it was set to {}", self.callback);
            let webhook = Observation::new(WEBHOOK_REGISTERED, Status::False, "EndpointMismatch", message);
            return Outcome { observations: vec![credentials, webhook], ready: None, notices, next: Next::Retry(Retry::Backoff), checked: None };
        }
        let webhook = if active {
            Observation::new(WEBHOOK_REGISTERED, Status::True, "Registered", format!("LINE sends webhooks to {}", self.callback))
        } else {
            let message = format!(
                "The webhook URL is {} but webhooks are off: turn on Use webhook in the LINE Developers console",
                self.callback
            );
            Observation::new(WEBHOOK_REGISTERED, Status::False, "WebhookInactive", message)
        };
        self.done(credentials, webhook, notices)
    }

    async fn twilio(&self, twilio: &TwilioWhatsAppAccount, status: &mut MessagingAccountStatus) -> Outcome {
        let auth_token = match secret(self.credentials, &twilio.auth_token.secret_key_ref) {
            Ok(token) => token.clone(),
            Err(error) => return Outcome::secret_failed(&error),
        };
        let client = self.ctx.providers.twilio(TwilioCredentials { account_sid: twilio.account_sid.clone(), auth_token });
        let credentials = match &self.known_credentials {
            Some(known) => known.clone(),
            None => match twilio_credentials(&client, twilio, status).await {
                Ok(credentials) => credentials,
                Err(outcome) => return outcome,
            },
        };
        let unregistered = |twilio: &TwilioWhatsAppAccount| {
            twilio.numbers.iter().map(|n| NumberStatus { name: n.name.clone(), number: n.number.clone(), inbound_url_configured: false, reason: None, message: None }).collect()
        };
        if twilio.sandbox || self.manual {
            status.numbers = unregistered(twilio);
            let message = if twilio.sandbox {
                format!(
                    "The WhatsApp sandbox's inbound URL can only be set by hand: in the Twilio console's WhatsApp sandbox settings, set \"When a message comes in\" to {}",
                    self.callback
                )
            } else {
                format!("Registration is Manual: point the inbound URL of {} at {}", twilio_target(twilio), self.callback)
            };
            return self.done(credentials, Observation::new(WEBHOOK_REGISTERED, Status::False, MANUAL, message), Vec::new());
        }
        match self.twilio_webhooks(&client, twilio).await {
            Ok((numbers, webhook, notices)) => {
                status.numbers = numbers;
                self.done(credentials, webhook, notices)
            }
            Err(e) => Outcome::provider_failed(WEBHOOK_REGISTERED, &e, vec![credentials]),
        }
    }

    /// Points inbound messages at the callback URL: on the Messaging Service when one is named,
    /// otherwise on each number (its WhatsApp sender when it has one, else the phone number),
    /// after finding every number in the account (and in the service).
    async fn twilio_webhooks(
        &self,
        client: &TwilioClient,
        twilio: &TwilioWhatsAppAccount,
    ) -> Result<(Vec<NumberStatus>, Observation, Vec<Notice>), ProviderError> {
        let url = self.callback.as_str();
        let mut notices = Vec::new();
        let incoming = client.incoming_numbers(None).await?;
        let senders = if numbers::needs_senders(&twilio.numbers, &incoming) { client.whatsapp_senders().await? } else { Vec::new() };
        let (pool_numbers, pool_senders) = match &twilio.messaging_service_sid {
            Some(service) => {
                let pool = client.service_numbers(service).await?;
                let senders = if numbers::needs_service_senders(&twilio.numbers, &pool) { client.service_senders(service).await? } else { Vec::new() };
                (pool, senders)
            }
            None => (Vec::new(), Vec::new()),
        };
        let service = twilio.messaging_service_sid.as_deref().map(|sid| numbers::Pool { sid, numbers: &pool_numbers, senders: &pool_senders });
        let lists = numbers::Lists { incoming: &incoming, senders: &senders, service };
        let service_configured = match &twilio.messaging_service_sid {
            Some(service) => client.set_service_webhook(service, Some(self.callback)).await?.inbound_request_url.as_deref() == Some(url),
            None => false,
        };
        let mut statuses = Vec::new();
        for number in &twilio.numbers {
            let mut status = NumberStatus { name: number.name.clone(), number: number.number.clone(), inbound_url_configured: false, reason: None, message: None };
            match numbers::place(number, &lists) {
                Place::Service => status.inbound_url_configured = service_configured,
                Place::Sender(sid) => {
                    let updated = client.set_sender_webhook(&sid, self.callback).await?;
                    status.inbound_url_configured = updated.webhook.and_then(|w| w.callback_url).as_deref() == Some(url);
                }
                Place::Number(found) if found.sms_url.as_deref() == Some(url) => status.inbound_url_configured = true,
                Place::Number(found) => {
                    let previous = found.sms_url.clone().unwrap_or_default();
                    if self.registered_before && !previous.is_empty() {
                        let note = format!("{}: its inbound URL was changed to {previous} outside Switchboard; setting it back to {url}", number.number);
                        notices.push(Notice::warning("EndpointMismatch", note).about(&number.number));
                    }
                    let updated = client.set_number_webhook(&found.sid, Some(self.callback)).await?;
                    status.inbound_url_configured = updated.sms_url.as_deref() == Some(url);
                }
                Place::NotFound(why) => (status.reason, status.message) = (Some(NUMBER_NOT_FOUND.to_owned()), Some(why)),
                Place::NotInService(why) => (status.reason, status.message) = (Some(NUMBER_NOT_IN_SERVICE.to_owned()), Some(why)),
            }
            statuses.push(status);
        }
        let unplaced = |reason: &str| statuses.iter().filter(|s| s.reason.as_deref() == Some(reason)).collect::<Vec<_>>();
        let (not_found, not_in_service) = (unplaced(NUMBER_NOT_FOUND), unplaced(NUMBER_NOT_IN_SERVICE));
        let webhook = if let Some((reason, _)) = [(NUMBER_NOT_FOUND, &not_found), (NUMBER_NOT_IN_SERVICE, &not_in_service)].into_iter().find(|(_, l)| !l.is_empty()) {
            let which: Vec<String> = not_found
                .iter()
                .chain(&not_in_service)
                .map(|s| format!("{} ({}): {}", s.name, s.number, s.message.as_deref().unwrap_or_default()))
                .collect();
            let message = format!("spec.twilioWhatsApp.numbers of Twilio account {}: {}", twilio.account_sid, which.join("; "));
            Observation::new(WEBHOOK_REGISTERED, Status::False, reason, message)
        } else if let Some(number) = statuses.iter().find(|n| !n.inbound_url_configured) {
            let message = format!("Twilio does not report {url} as the inbound URL of {} after it was set", number.name);
            Observation::new(WEBHOOK_REGISTERED, Status::False, "EndpointMismatch", message)
        } else {
            let message = format!("Twilio sends inbound messages for {} to {url}", twilio_target(twilio));
            Observation::new(WEBHOOK_REGISTERED, Status::True, "Registered", message)
        };
        Ok((statuses, webhook, notices))
    }

    /// A finished check: remembered until the next re-check unless the webhook needs another
    /// attempt soon.
    fn done(&self, credentials: Observation, webhook: Observation, notices: Vec<Notice>) -> Outcome {
        let settings = &self.ctx.settings;
        let next = match webhook.reason.as_str() {
            "EndpointMismatch" => Next::Retry(Retry::Backoff),
            // Nobody's registration to watch over.
            MANUAL => Next::Recheck(settings.recheck_interval),
            _ => Next::Recheck(settings.webhook_recheck_interval.min(settings.recheck_interval)),
        };
        Outcome { observations: vec![credentials, webhook], ready: None, notices, next, checked: None }
    }
}

/// The credential check of a Twilio account, which also shows its identity; the outcome of the
/// pass when the account is refused, suspended or closed.
async fn twilio_credentials(client: &TwilioClient, twilio: &TwilioWhatsAppAccount, status: &mut MessagingAccountStatus) -> Result<Observation, Outcome> {
    let account = match client.account().await {
        Ok(account) => account,
        Err(e) => return Err(Outcome::provider_failed(CREDENTIALS_VALID, &e, Vec::new())),
    };
    let state = match account.status {
        AccountStatus::Active => "active",
        AccountStatus::Suspended => "suspended",
        AccountStatus::Closed => "closed",
    };
    let friendly_name = account.friendly_name.unwrap_or_default();
    let account_type = match account.kind {
        AccountType::Trial => "Trial",
        AccountType::Full => "Full",
    };
    status.twilio = Some(TwilioIdentity { friendly_name: friendly_name.clone(), status: state.to_owned(), account_type: account_type.to_owned() });
    status.line = None;
    if account.status != AccountStatus::Active {
        let message = format!("Twilio account {} is {state}", twilio.account_sid);
        // Re-activation happens at Twilio: look again on the backoff schedule.
        let observation = Observation::new(CREDENTIALS_VALID, Status::False, "AccountSuspended", message);
        return Err(Outcome::credentials_failed(observation, Next::Retry(Retry::Backoff)));
    }
    let message = format!("Twilio accepted the auth token of account {} ({friendly_name})", twilio.account_sid);
    Ok(Observation::new(CREDENTIALS_VALID, Status::True, "Valid", message))
}

/// Where a Twilio account's inbound URL lives, for messages to people.
fn twilio_target(twilio: &TwilioWhatsAppAccount) -> String {
    match &twilio.messaging_service_sid {
        Some(service) => format!("Messaging Service {service}"),
        None => twilio.numbers.iter().map(|n| format!("{} ({})", n.name, n.number)).collect::<Vec<_>>().join(", "),
    }
}

/// The channel's webhook URL and whether webhooks are on; an unset URL reads as empty.
async fn read_line_endpoint(client: &LineClient) -> Result<(String, bool), ProviderError> {
    match client.webhook_endpoint().await {
        Ok(endpoint) => Ok((endpoint.endpoint, endpoint.active)),
        Err(ProviderError::NotFound { .. }) => Ok((String::new(), false)),
        Err(e) => Err(e),
    }
}

/// Provider-side clean-up on deletion: the webhook registration this account made is removed
/// where the provider allows it.
async fn cleanup(account: &MessagingAccount, ctx: &Context) -> Result<Action, Error> {
    if let Some(uid) = account.uid() {
        ctx.verified.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
    }
    let spec = &account.spec;
    let sandbox = spec.twilio_whatsapp.as_ref().is_some_and(|t| t.sandbox);
    // An account stopped by ChannelInUse registered nothing: the webhook is the holder's.
    let stopped = channels::conflict(account, &ctx.accounts.state()).is_some();
    if spec.webhook.registration == Registration::Manual || sandbox || stopped {
        return Ok(Action::await_change());
    }
    let namespace = account.namespace().unwrap_or_default();
    let Ok(callback) = spec.callback_url(&namespace, &account.name_any()) else {
        return Ok(Action::await_change());
    };
    let result = match secrets::read(&ctx.client, &namespace, &spec.secret_refs()).await {
        Ok(credentials) => deregister(account, &credentials, &callback, ctx).await.map_err(Abandon::from),
        Err(error) => Err(Abandon::from(error)),
    };
    let left_behind = format!("the webhook registration pointing at {callback}; remove it in the provider's console");
    cleanup::conclude(ctx, account, result, "WebhookDeregistered", &left_behind).await
}

/// Removes this account's webhook registration; returns what was done, for an event.
async fn deregister(account: &MessagingAccount, credentials: &Credentials, callback: &Url, ctx: &Context) -> Result<String, ProviderError> {
    let spec = &account.spec;
    if let Some(line) = &spec.line {
        let Some(token) = credentials.get(&line.channel_access_token.secret_key_ref) else {
            return Ok("nothing to clean up: no channel access token".to_owned());
        };
        let client = ctx.providers.line(LineCredentials { channel_access_token: token.clone() });
        let (endpoint, _) = read_line_endpoint(&client).await?;
        if endpoint != callback.as_str() {
            return Ok(format!("Left the LINE webhook URL alone: it is {endpoint:?}, not this account's {callback}"));
        }
        client.set_webhook_endpoint(None).await?;
        return Ok(format!("Cleared the LINE webhook URL {callback}"));
    }
    let Some(twilio) = &spec.twilio_whatsapp else {
        return Ok("nothing to clean up".to_owned());
    };
    let Some(auth_token) = credentials.get(&twilio.auth_token.secret_key_ref) else {
        return Ok("nothing to clean up: no auth token".to_owned());
    };
    let client = ctx.providers.twilio(TwilioCredentials { account_sid: twilio.account_sid.clone(), auth_token: auth_token.clone() });
    if let Some(service) = &twilio.messaging_service_sid {
        client.set_service_webhook(service, None).await?;
        return Ok(format!("Cleared the inbound URL of Messaging Service {service}"));
    }
    let incoming = client.incoming_numbers(None).await?;
    let mut cleared = Vec::new();
    for number in twilio.numbers.iter().filter(|n| n.sender_sid.is_none()) {
        if let Some(found) = incoming.iter().find(|n| n.phone_number == number.number && n.sms_url.as_deref() == Some(callback.as_str())) {
            client.set_number_webhook(&found.sid, None).await?;
            cleared.push(number.number.clone());
        }
    }
    let senders: Vec<&str> = twilio.numbers.iter().filter_map(|n| n.sender_sid.as_deref()).collect();
    let mut done = format!("Cleared the inbound URL of {}", if cleared.is_empty() { "no number".to_owned() } else { cleared.join(", ") });
    if !senders.is_empty() {
        done.push_str(&format!("; WhatsApp senders keep theirs (Twilio cannot unset it): {}", senders.join(", ")));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn conds(list: &[(&str, Status, &str)]) -> Vec<Condition> {
        let mut c = Vec::new();
        for (type_, status, reason) in list {
            conditions::set(&mut c, Observation::new(type_, *status, reason, "m"), Some(1), Timestamp::UNIX_EPOCH);
        }
        c
    }

    #[test]
    fn ready_needs_credentials_and_webhook() {
        let ok = conds(&[(CREDENTIALS_VALID, Status::True, "Valid"), (WEBHOOK_REGISTERED, Status::True, "Registered"), (GATEWAY_READY, Status::True, "Available")]);
        assert_eq!(ready(&ok).status, Status::True);
        let rolling = conds(&[(CREDENTIALS_VALID, Status::True, "Valid"), (WEBHOOK_REGISTERED, Status::True, "Registered"), (GATEWAY_READY, Status::Unknown, "Progressing")]);
        assert_eq!((ready(&rolling).status, ready(&rolling).reason.as_str()), (Status::Unknown, "Progressing"));
        let bad = conds(&[(CREDENTIALS_VALID, Status::False, "Unauthorized"), (WEBHOOK_REGISTERED, Status::Unknown, "CredentialsNotValid")]);
        let r = ready(&bad);
        assert_eq!((r.status, r.reason.as_str()), (Status::False, "Unauthorized"));
        let mismatch = conds(&[(CREDENTIALS_VALID, Status::True, "Valid"), (WEBHOOK_REGISTERED, Status::False, "EndpointMismatch")]);
        assert_eq!(ready(&mismatch).reason, "EndpointMismatch");
    }

    #[test]
    fn manual_registration_does_not_hold_ready_back() {
        let manual = conds(&[(CREDENTIALS_VALID, Status::True, "Valid"), (WEBHOOK_REGISTERED, Status::False, MANUAL), (GATEWAY_READY, Status::True, "Available")]);
        let r = ready(&manual);
        assert_eq!(r.status, Status::True);
        assert!(r.message.contains("by hand"));
        let manual_bad = conds(&[(CREDENTIALS_VALID, Status::False, "Unauthorized"), (WEBHOOK_REGISTERED, Status::False, MANUAL)]);
        assert_eq!(ready(&manual_bad).status, Status::False);
    }

    #[test]
    fn blocked_outcomes_say_why_on_ready() {
        let outcome = Outcome::blocked("InvalidSpec", "spec.webhook.publicBaseUrl: must use https".into());
        let ready = outcome.ready.unwrap();
        assert_eq!((ready.status, ready.reason.as_str()), (Status::False, "InvalidSpec"));
        assert!(ready.message.contains("spec.webhook.publicBaseUrl"));
        assert!(outcome.observations.iter().all(|o| o.status == Status::Unknown));
        assert_eq!(outcome.next, Next::AwaitChange);
    }

    #[test]
    fn secret_problems_wait_for_the_secret_and_api_failures_retry() {
        let missing = Outcome::secret_failed(&CredentialError::SecretNotFound { name: "s".into(), field: "spec.f".into() });
        assert_eq!(missing.next, Next::AwaitChange);
        assert_eq!(missing.observations[0].reason, "SecretNotFound");
        let unreadable = Outcome::secret_failed(&CredentialError::Unreadable { name: "s".into(), detail: "forbidden".into() });
        assert_eq!(unreadable.next, Next::Retry(Retry::Backoff));
    }
}
