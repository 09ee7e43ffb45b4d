-- template.lua: the smallest correct plugin. Copy it to lua_plugins/NAME.lua, point
-- repository_plugin at the copy, and change the pattern to your repository's download URLs.
-- Try it with: loglines test-plugin lua_plugins/NAME.lua /var/log/apache2/access.log

-- The library every plugin gets (see docs/plugins.md); a local is faster than the global.
local L = loglines

-- Which request paths are file downloads; the capture is the item id. Rust regex syntax.
local DOWNLOAD = [[^/files/(\d+)/[^/]+$]]

-- Called for every message. jmsg is JSON text: {"service": "...", "logline": "..."}.
function parseline(jmsg)
  -- Turn the message into a table.
  local msg = L.json.decode(jmsg)
  -- Split the Apache/Nginx log line into fields (nil if it is not one).
  local r = L.parse_combined(msg.logline or "")
  -- Not a log line: nil means "not an event", and get_openurl_params is not called.
  if r == nil then return nil, "not a log line" end
  -- Only successful GETs count (IRUS counts 200 and 304, not HEAD, POST or 206).
  if r.method ~= "GET" or (r.status ~= 200 and r.status ~= 304) then return nil, "not a counted request" end
  -- Is the path a download? re.match returns the capture, or nil.
  local id = L.re.match(DOWNLOAD, r.path)
  -- Not a download: not an event.
  if id == nil then return nil, "not a download" end
  -- Keep what get_openurl_params needs in the table it will receive.
  r.item, r.service = id, msg.service
  -- Hand the table on.
  return r
end

-- Called with the table parseline returned; c is the configuration, worker_section the name of
-- the worker's section. Returns the OpenURL parameters, or nil when nothing is to be sent.
function get_openurl_params(c, worker_section, pl)
  -- Robots are not counted (the COUNTER robots list; a missing user agent counts as one).
  if L.is_robot(pl.useragent) then return nil, "robot" end
  -- The repository's host name: the worker's rfr_id, else the message's service name.
  local host = c:get(worker_section, "rfr_id", pl.service)
  -- The nine IRUS release 5 parameters.
  return {
    -- OpenURL version.
    url_ver = "Z39.88-2004",
    -- When it happened, in UTC, from the log line.
    url_tim = L.to_iso8601_utc(pl.time),
    -- Who: the client address.
    req_id = pl.ip,
    -- The user agent, empty when the log has none. A visitor can make the user agent, the
    -- referer and the path kilobytes long; cut, the URL stays short enough for the tracker to
    -- take (a URL it refuses is an event lost).
    req_dat = L.truncate(pl.useragent or "", 600),
    -- Which item: its OAI-PMH identifier.
    ["rft.artnum"] = "oai:" .. host .. ":" .. pl.item,
    -- What was downloaded.
    svc_dat = L.truncate("https://" .. host .. pl.path, 1000),
    -- Where the user came from, empty when the log has none.
    rfr_dat = L.truncate(pl.referer or "", 600),
    -- Which repository reports it.
    rfr_id = host,
    -- A file download is a Request (an item page would be an Investigation).
    rft_dat = "Request",
  }
end
