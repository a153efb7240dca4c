-- Argo CD health check for switchboard.dev/MessagingAccount: the Lua body Argo CD runs (it reads
-- `obj` and returns `hs`), installed as the argocd-cm key
-- resource.customizations.health.switchboard.dev_MessagingAccount (see deploy/argocd/README.md).
--
--   Healthy      Ready is True and the status describes the current generation.
--   Degraded     a condition of the current generation is False for a reason below: waiting
--                will not fix it; a person has to change the spec, a Secret or the provider.
--   Progressing  anything else: no status yet, a status for an older generation, work in
--                progress, or a failure the controller retries by itself (provider outages,
--                rate limits, a dependency that is not Ready yet).

-- The reasons of MessagingAccount conditions that waiting will not fix. ProviderUnavailable,
-- RateLimited, SecretUnreadable, EndpointMismatch, CredentialsNotValid and Progressing are
-- retried by the controller; ManualRegistrationRequired and EmptyDir do not hold Ready back.
local terminal = {
  InvalidSpec = true,              -- the spec breaks a rule; the message names the field
  RegionNotSupported = true,       -- LINE in a government-cloud controller
  SecretNotFound = true,           -- a referenced Secret does not exist
  SecretKeyMissing = true,         -- a referenced Secret lacks the key
  Unauthorized = true,             -- the provider refused the credentials
  AccountSuspended = true,         -- the Twilio account is suspended or closed
  ProviderRejected = true,         -- the provider refused a request (unknown SID, bad value)
  NumberNotFound = true,           -- a number is neither an incoming number nor a sender of the account
  NumberNotInService = true,       -- a number is not in the account's Messaging Service
  ChannelInUse = true,             -- an older account holds the LINE channel, number or service
  WebhookInactive = true,          -- LINE "Use webhook" is off: only the console turns it on
  InvalidConfiguration = true,     -- the compiled gateway configuration is over the size limit
  ProgressDeadlineExceeded = true, -- the gateway Deployment's rollout is stuck
}
