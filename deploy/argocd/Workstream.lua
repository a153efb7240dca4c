-- Argo CD health check for switchboard.dev/Workstream: the Lua body Argo CD runs (it reads
-- `obj` and returns `hs`), installed as the argocd-cm key
-- resource.customizations.health.switchboard.dev_Workstream (see deploy/argocd/README.md).
--
--   Healthy      Ready is True and the status describes the current generation.
--   Degraded     a condition of the current generation is False for a reason below: waiting
--                will not fix it; a person has to change the spec, a Secret or the provider.
--   Progressing  anything else: no status yet, a status for an older generation, work in
--                progress, or a failure the controller retries by itself (provider outages,
--                rate limits, a dependency that is not Ready yet).

-- The reasons of Workstream conditions that waiting will not fix. AccountNotReady and
-- Progressing follow the account and the gateway; the account's own health says why.
local terminal = {
  InvalidSpec = true,      -- the spec breaks a rule; the message names the field
  InvalidReference = true, -- the account, number or a queue does not exist, or is taken
}
