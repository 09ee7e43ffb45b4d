-- ora.lua: the Oxford Research Archive's 2010 log format (Fedora behind a WSGI server) to IRUS
-- release 5 usage events. A port of the 2010 ora_utils plugin: parseline produces the same
-- splits it did (date, time, ip, responsecode, useragent with its quotes; namespace, id and
-- dsid for datastream downloads), metadata datastreams and responses other than 200/204 are
-- not downloads, and the item can be looked up in Solr before it is counted.
--
-- A line looks like:
--   2009-04-01 01:14:28,301,301 INFO  [wsgi] 75.26.142.230 - - [01/Apr/2009:01:14:27 +0100]
--   "GET /objects/uuid%3Ac2c...a2/datastreams/ATTACHMENT02 HTTP/1.1" 200 375650 "referer" "agent"
-- that is, the logger's date, time, level and name, then a combined-format log line.
--
-- Settings, in the section named after this file ([ora]); all optional:
--   repository      host name sent as rfr_id (default: the worker's rfr_id, else the service)
--   oai_prefix      put before "namespace:id" to make rft.artnum (default: oai:<repository>:)
--   base_url        put before the request path to make svc_dat (default: https://<repository>)
--   drop_robots     drop COUNTER robots (default: true)
--   req_id          ip, urn:ip or hmac (default: ip); hmac needs hmac_secret
--   metadata_dsids  datastreams that are metadata, not downloads
--                   (default: MODS DC MARC21 FULLTEXT RELS-EXT)
--   solr_url        a Solr select URL; when set, each download's item is looked up there and
--                   counted only if Solr knows it (the 2010 plugin's look-up)
--   solr_timeout    seconds to wait for Solr (default: 5)
--   max_useragent, max_referer, max_svc_dat
--                   longest req_dat, rfr_dat and svc_dat sent, in bytes (default: 600, 600,
--                   1000), as in irus.lua: a visitor can make them kilobytes long, and a URL
--                   the tracker refuses is an event lost

local L = loglines
local json_decode = L.json.decode
local re_match = L.re.match
local truncate = L.truncate

-- DATE TIME LEVEL LOGGER REST: the logger pads the level with spaces.
local PREFIX = [[^(\S+) (\S+) (\S+)\s+(\S+) (.*)$]]
-- A datastream of an object: /objects/NS:ID/datastreams/DSID, with the colon possibly escaped
-- once or twice, as the 2010 plugin accepted.
local DATASTREAM = [[(?i)^/objects/(ora|uuid|hdl)(?::|%3A|%253A)([0-9a-f-]+)/datastreams/([0-9A-Za-z-]+)$]]

local S = {
  metadata = {},
  max_useragent = 600,
  max_referer = 600,
  max_svc_dat = 1000,
}

local function words(text)
  local out = {}
  for w in text:gmatch("[^%s,]+") do out[#out + 1] = w end
  return out
end

function init(c, worker_section)
  local sec = L.plugin_name
  S.repository = c:get(sec, "repository", c:get(worker_section, "rfr_id", nil))
  S.oai_prefix = c:get(sec, "oai_prefix", nil)
  S.base_url = c:get(sec, "base_url", nil)
  if S.base_url then S.base_url = S.base_url:gsub("/+$", "") end
  S.drop_robots = c:getboolean(sec, "drop_robots", true)
  S.url_ver = c:get(worker_section, "url_ver", "Z39.88-2004")
  S.req_id = c:get(sec, "req_id", "ip")
  if S.req_id ~= "ip" and S.req_id ~= "urn:ip" and S.req_id ~= "hmac" then
    error("[" .. sec .. "] req_id = " .. S.req_id .. " is not valid; use ip, urn:ip or hmac", 0)
  end
  if S.req_id == "hmac" then
    S.hmac_secret = c:get(sec, "hmac_secret", "")
    if S.hmac_secret == "" then
      error("[" .. sec .. "] req_id = hmac needs hmac_secret, a long random string kept private", 0)
    end
  end
  for _, d in ipairs(words(c:get(sec, "metadata_dsids", "MODS DC MARC21 FULLTEXT RELS-EXT"))) do
    S.metadata[d:upper()] = true
  end
  S.solr_url = c:get(sec, "solr_url", nil)
  S.solr_timeout = c:getfloat(sec, "solr_timeout", 5)
  for _, key in ipairs({ "max_useragent", "max_referer", "max_svc_dat" }) do
    local n = c:getint(sec, key, S[key])
    if n < 0 then error("[" .. sec .. "] " .. key .. " = " .. n .. " is not valid; give a length in bytes, 0 or more", 0) end
    S[key] = n
  end
end

function parseline(jmsg)
  local msg = json_decode(jmsg)
  local line = msg.logline
  if type(line) ~= "string" then return nil, "the message has no logline" end
  local date, time, level, logger, rest = re_match(PREFIX, line)
  if date == nil then return nil, "not a WSGI log line" end
  local r = L.parse_combined(rest)
  if r == nil then return nil, "no combined-format request after the logger name" end

  local target = r.path
  if r.query then target = target .. "?" .. r.query end
  local pl = {
    rfr_id = msg.service,
    date = date,
    time = time,
    level = level,
    logger = logger,
    ip = r.ip,
    datetime = r.time,
    request = r.method .. " " .. target .. " " .. r.protocol,
    responsecode = tostring(r.status),
    -- The 2010 splits kept the quotes around the user agent; `agent` is the bare one.
    useragent = '"' .. (r.useragent or "-") .. '"',
    agent = r.useragent,
    referer = r.referer,
    method = r.method,
    path = r.path,
  }
  -- A download: a GET of a datastream that is not metadata, answered 200 or 204. Otherwise
  -- `why` says what it is instead.
  local ns, id, dsid = re_match(DATASTREAM, r.path)
  if r.method ~= "GET" then
    pl.why = "method " .. r.method .. " is not GET"
  elseif r.status ~= 200 and r.status ~= 204 then
    pl.why = "status " .. r.status .. " is not 200 or 204"
  elseif ns == nil then
    pl.why = "not a datastream of an object"
  elseif S.metadata[dsid:upper()] then
    pl.why = "metadata datastream " .. dsid
  else
    pl.namespace, pl.id, pl.dsid = ns, id, dsid
  end
  return pl
end

-- Whether Solr knows the item (the 2010 plugin looked every download up). A Solr that cannot
-- be reached does not stop counting: the failure is logged and the download counted.
local function known_to_solr(pid)
  local url = S.solr_url .. (S.solr_url:find("?", 1, true) and "&" or "?")
    .. "q=" .. L.urlencode("id:" .. pid:gsub(":", "\\:")) .. "&fl=id&wt=json"
  local status, body = L.http_get(url, {timeout = S.solr_timeout})
  if status ~= 200 then
    L.log.warn("Solr look-up of " .. pid .. " failed (" .. tostring(status or body) .. "); counting it")
    return true
  end
  local ok, answer = pcall(json_decode, body)
  if not ok or type(answer.response) ~= "table" then
    L.log.warn("Solr answered " .. pid .. " with something that is not a Solr JSON response; counting it")
    return true
  end
  return (answer.response.numFound or 0) > 0
end

function get_openurl_params(c, worker_section, pl)
  if pl.dsid == nil then return nil, pl.why end
  if S.drop_robots and L.is_robot(pl.agent) then return nil, "COUNTER robot" end
  local pid = pl.namespace .. ":" .. pl.id
  if S.solr_url and not known_to_solr(pid) then return nil, "Solr does not know " .. pid end

  local url_tim = L.to_iso8601_utc(pl.datetime)
  if url_tim == nil then return nil, "unreadable time " .. pl.datetime end
  local repository = S.repository or pl.rfr_id or "localhost"
  local req_id = pl.ip
  if S.req_id == "urn:ip" then
    req_id = "urn:ip:" .. pl.ip
  elseif S.req_id == "hmac" then
    req_id = L.hmac_sha256(S.hmac_secret, pl.ip)
  end
  return {
    url_ver = S.url_ver,
    url_tim = url_tim,
    req_id = req_id,
    req_dat = truncate(pl.agent or "", S.max_useragent),
    ["rft.artnum"] = (S.oai_prefix or ("oai:" .. repository .. ":")) .. pid,
    svc_dat = truncate((S.base_url or ("https://" .. repository)) .. pl.path, S.max_svc_dat),
    rfr_dat = truncate(pl.referer or "", S.max_referer),
    rfr_id = repository,
    rft_dat = "Request",
  }
end
