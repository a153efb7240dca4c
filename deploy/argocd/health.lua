-- The part of every Switchboard health check after its kind's `terminal` reasons: generate.sh
-- appends it to each <Kind>.lua (Argo CD runs each check on its own, without `require`).
hs = {}
local generation = obj.metadata.generation
local status = obj.status or {}
local conditions = status.conditions or {}

-- Whether a status or condition written for generation `observed` describes the current
-- spec. A missing figure is not held against the object (kstatus reads it the same way).
local function current(observed)
  return observed == nil or generation == nil or observed == generation
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local ready = nil
for _, c in ipairs(conditions) do
  if c.type == "Ready" then
    ready = c
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report the Ready condition"
  return hs
end

if not current(status.observedGeneration) or not current(ready.observedGeneration) then
  local seen = ready.observedGeneration
  if not current(status.observedGeneration) then
    seen = status.observedGeneration
  end
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation) ..
    " (the status describes generation " .. tostring(seen) .. ")"
  return hs
end

-- A condition of the current generation that is False for a reason waiting will not fix.
local function stuck(c)
  return c.status == "False" and terminal[c.reason] ~= nil and current(c.observedGeneration)
end

if stuck(ready) then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
for _, c in ipairs(conditions) do
  if c.type ~= "Ready" and stuck(c) then
    hs.status = "Degraded"
    hs.message = c.type .. " is False: " .. describe(c)
    return hs
  end
end

-- A gateway paused on purpose (`replicas: 0`) receives nothing, so it is not Ready; Argo CD's
-- word for a resource that is paused rather than broken is Suspended.
for _, c in ipairs(conditions) do
  if c.status == "False" and c.reason == "ScaledToZero" and current(c.observedGeneration) then
    hs.status = "Suspended"
    hs.message = c.type .. " is False: " .. describe(c)
    return hs
  end
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  -- Findings that do not hold Ready back but ask for a person: a webhook URL to register
  -- by hand (ManualRegistrationRequired), a store on an emptyDir (EmptyDir).
  for _, c in ipairs(conditions) do
    if c.type ~= "Ready" and c.status == "False" and current(c.observedGeneration) then
      hs.message = hs.message .. "; " .. c.type .. " is False: " .. describe(c)
    end
  end
  return hs
end

-- Ready is Unknown, or False for a reason the controller retries by itself.
hs.status = "Progressing"
hs.message = describe(ready)
return hs
