-- Argo CD health check for modelfleet.io/ModelDeployment.
-- Maps the operator's status to Argo CD's health: Healthy, Progressing, Suspended or Degraded.
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function canary_text(status)
  local canary = status.canary
  if canary == nil then
    return ""
  end
  local text = " (canary " .. tostring(canary.version) .. " at " .. tostring(canary.weight or 0) .. " %"
  if canary.analysis ~= nil and canary.analysis.phase ~= nil then
    text = text .. ", last analysis " .. canary.analysis.phase
  end
  return text .. ")"
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
local ready = condition(status, "Ready")
local message = status.message or ""

if status.phase == "Degraded" or (degraded ~= nil and degraded.status == "True") then
  hs.status = "Degraded"
  if degraded ~= nil and degraded.message ~= nil and degraded.message ~= "" then
    message = degraded.message
  end
  hs.message = message
  return hs
end

if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message .. canary_text(status)
  return hs
end

if status.phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = message .. canary_text(status)
  return hs
end

if status.phase == "Healthy" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end

hs.status = "Progressing"
hs.message = message
return hs
