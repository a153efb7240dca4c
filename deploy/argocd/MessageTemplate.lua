-- Argo CD health check for switchboard.dev/MessageTemplate: the Lua body Argo CD runs (it reads
-- `obj` and returns `hs`), installed as the argocd-cm key
-- resource.customizations.health.switchboard.dev_MessageTemplate (see deploy/argocd/README.md).
--
--   Healthy      Ready is True and the status describes the current generation.
--   Degraded     a condition of the current generation is False for a reason below: waiting
--                will not fix it; a person has to change the spec, a Secret or the provider.
--   Progressing  anything else: no status yet, a status for an older generation, work in
--                progress, or a failure the controller retries by itself (provider outages,
--                rate limits, a dependency that is not Ready yet).

-- The reasons of MessageTemplate conditions that waiting will not fix. Pending (under
-- WhatsApp review), AccountNotReady, ProviderUnavailable, RateLimited and SecretUnreadable
-- resolve by themselves or follow the account, whose own health says why.
local terminal = {
  InvalidSpec = true,      -- the spec breaks a rule; the message names the field
  AccountNotFound = true,  -- spec.accountRef names no MessagingAccount
  SecretNotFound = true,   -- the account's Secret does not exist
  SecretKeyMissing = true, -- the account's Secret lacks the auth token key
  Unauthorized = true,     -- Twilio refused the credentials
  ProviderRejected = true, -- Twilio refused the Content or the approval request
  Rejected = true,         -- WhatsApp rejected a localization: change it and resubmit
  Paused = true,           -- WhatsApp paused it for quality: it cannot be sent meanwhile
  Disabled = true,         -- WhatsApp disabled it: it cannot be sent
}
