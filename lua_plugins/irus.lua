-- irus.lua: Apache/Nginx combined (or common) access logs to IRUS release 5 usage events,
-- for EPrints- and DSpace-style repositories. See docs/plugins.md for a walk-through.
--
-- Settings live in a section named after this file ([irus] for irus.lua; copy the file to
-- myrepo.lua and the section becomes [myrepo]). Every setting has a default, so the plugin also
-- runs with no configuration at all (`loglines test-plugin lua_plugins/irus.lua access.log`):
--
--   repository             host name sent as rfr_id
--                          (default: the worker's rfr_id, else the message's service name)
--   oai_prefix             put before the item id to make rft.artnum
--                          (default: oai:<repository>:)
--   base_url               put before the request path to make svc_dat
--                          (default: https://<repository>)
--   drop_robots            drop COUNTER robots before sending (default: true)
--   req_id                 ip, urn:ip, or hmac (default: ip)
--   hmac_secret            the key for req_id = hmac (required then)
--   platform               eprints, dspace, ojs, hyrax (comma-separated; default
--                          eprints, dspace): the URL patterns below, and for OJS the
--                          article/ before the id in rft.artnum
--   request_patterns       regexes, one per line, matching the path of a file download;
--                          the first capture group is the item id (default: the platforms')
--   investigation_patterns the same for item pages
--   max_useragent          longest user agent sent as req_dat, in bytes (default: 600)
--   max_referer            longest referer sent as rfr_dat, in bytes (default: 600)
--   max_svc_dat            longest svc_dat (base_url plus path), in bytes (default: 1000)
--   log_format             the access log's format: combined (default, also reads common),
--                          vhost_combined, nginx_main, an Apache LogFormat string, an nginx
--                          log_format string, or json (see loglines.log_format)
--   json_fields            with log_format = json: name:path pairs, e.g.
--                          ip:request.client_ip time:ts path:request.uri status:status
--   trusted_proxies        CIDR networks of the site's own proxies and load balancers: from
--                          one of them, the client is the rightmost X-Forwarded-For address
--                          that is not (the format must log the header); otherwise the
--                          header is ignored (default: none, the logged address is the client)
--
-- A visitor chooses the user agent, referer and path, and can make them kilobytes long. Cut to
-- these lengths, the whole request stays under 8,190 bytes (Apache's default limit for a request
-- line) even when every byte must be percent-encoded, so the event is still counted; the robot
-- check sees the whole user agent.
--
-- The worker section's url_ver is sent as url_ver (default Z39.88-2004).

local L = loglines
local json_decode = L.json.decode
local parse_combined = L.parse_combined
local truncate = L.truncate

-- Paths are matched without their query string, so `?download=1` does not change the outcome.
-- Handles are PREFIX/SUFFIX with a numeric, possibly dotted, prefix (10023/5678, 1721.1/123).
-- Per platform (the `platform` setting): file downloads (Request) and item pages
-- (Investigation), and what goes before the captured id in rft.artnum's item part.
local PLATFORMS = {
  eprints = {
    request = {
      [[^/id/eprint/(\d+)/\d+/.+$]],                          -- file
      [[^/(\d+)/\d+/.+$]],                                    -- file, short form
    },
    investigation = {
      [[^/id/eprint/(\d+)/?$]],                               -- item page
      [[^/(\d+)/?$]],                                         -- item page, short form
    },
  },
  dspace = {
    request = {
      [[^/bitstream/handle/(\d+(?:\.\d+)*/[^/]+)/.+$]],       -- file by handle
      [[^/bitstreams/([0-9a-fA-F-]{36})/download$]],          -- DSpace 7 file
      [[^/server/api/core/bitstreams/([0-9a-fA-F-]{36})/content$]], -- DSpace 7 REST file
    },
    investigation = {
      [[^/handle/(\d+(?:\.\d+)*/[^/]+)/?$]],                  -- item page by handle
      [[^/items/([0-9a-fA-F-]{36})/?$]],                      -- DSpace 7 item page
    },
  },
  -- OJS: /[index.php/]JOURNAL/article/download/ID/GALLEY[/FILE] and .../article/view/ID; its
  -- OAI-PMH identifiers are oai:HOST:article/ID.
  ojs = {
    request = { [[^/(?:index\.php/)?[^/]+/article/download/(\d+)/\d+(?:/\d+)?/?$]] },
    investigation = { [[^/(?:index\.php/)?[^/]+/article/view/(\d+)/?$]] },
    item_prefix = "article/",
  },
  -- Samvera Hyrax: /downloads/ID (not its derivatives, ?file=thumbnail and the like) and
  -- /concern/TYPE/ID.
  hyrax = {
    request = { [[^/downloads/([A-Za-z0-9_-]+)/?$]] },
    investigation = { [[^/concern/[a-z_]+/([A-Za-z0-9_-]+)/?$]] },
    skip_file_query = true,
  },
}

-- An item id (the pattern's capture) longer than this is not a real item, and would make the
-- URL too long for the tracker.
local MAX_ITEM_ID = 256

-- The settings, read once by init().
local S = {
  item_prefix = {},     -- per pattern, put before the captured id (OJS: "article/")
  skip_file_query = {}, -- per pattern, whether a `file=` query makes it a derivative (Hyrax)
  parser = nil,         -- a loglines.log_format parser (it finds the client behind trusted
                        -- proxies), or nil for parse_combined
  parse = nil,          -- its parse function
  patterns = nil,       -- one re.set of request patterns followed by investigation patterns
  n_request = 0,        -- how many of them are request patterns
  repository = nil,
  oai_prefix = nil,
  base_url = nil,
  drop_robots = true,
  req_id = "ip",
  hmac_secret = nil,
  url_ver = "Z39.88-2004",
  max_useragent = 600,
  max_referer = 600,
  max_svc_dat = 1000,
}

-- A multi-line setting as a list of non-empty lines.
local function lines_of(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

function init(c, worker_section)
  local sec = L.plugin_name
  local function opt(key, default) return c:get(sec, key, default) end

  -- The platforms' patterns, each with what it adds to the id; the *_patterns settings
  -- replace them.
  local request, investigation = {}, {}
  local req_meta, inv_meta = {}, {}
  for name in opt("platform", "eprints, dspace"):gmatch("[^,%s]+") do
    local p = PLATFORMS[name]
    if p == nil then
      c:error_at(sec, "platform", "`" .. name .. "` is not known; use eprints, dspace, ojs or hyrax (comma-separated)")
    end
    local meta = { prefix = p.item_prefix or "", skip = p.skip_file_query or false }
    for _, r in ipairs(p.request) do request[#request + 1] = r; req_meta[#req_meta + 1] = meta end
    for _, r in ipairs(p.investigation) do
      investigation[#investigation + 1] = r; inv_meta[#inv_meta + 1] = meta
    end
  end
  local plain = { prefix = "", skip = false }
  if c:has_option(sec, "request_patterns") then
    request = lines_of(opt("request_patterns")); req_meta = {}
    for i = 1, #request do req_meta[i] = plain end
  end
  if c:has_option(sec, "investigation_patterns") then
    investigation = lines_of(opt("investigation_patterns")); inv_meta = {}
    for i = 1, #investigation do inv_meta[i] = plain end
  end
  local all = {}
  for i, p in ipairs(request) do
    all[#all + 1] = p
    S.item_prefix[#all], S.skip_file_query[#all] = req_meta[i].prefix, req_meta[i].skip
  end
  for i, p in ipairs(investigation) do
    all[#all + 1] = p
    S.item_prefix[#all], S.skip_file_query[#all] = inv_meta[i].prefix, inv_meta[i].skip
  end
  if #all == 0 then
    c:error_at(sec, "request_patterns", "request_patterns and investigation_patterns are both empty; give at least one pattern")
  end
  S.patterns = L.re.set(all)
  S.n_request = #request

  -- The combined and common formats go through parse_combined, unless the client is to be
  -- found behind proxies: a log_format parser then does that too (in Rust, per line).
  local format = opt("log_format", "combined")
  local trusted = opt("trusted_proxies", "")
  if (format == "combined" or format == "common") and not trusted:match("%S") then
    S.parser = nil
  else
    -- Only the fields this plugin reads: each other one would cost a string per line.
    local options = { fields = opt("json_fields", nil),
      only = "ip time method path query status referer useragent" }
    if trusted:match("%S") then options.trusted_proxies = trusted end
    local ok, parser = pcall(L.log_format, format, options)
    if not ok then
      local why = tostring(parser)
      if why:find("trusted_proxies: ", 1, true) then
        c:error_at(sec, "trusted_proxies", (why:gsub("^.-trusted_proxies: ", "")))
      end
      why = why:gsub("^.-log_format: ", "")
      if why:sub(1, #format + 2) ~= "`" .. format .. "`" then why = "`" .. format .. "`: " .. why end
      c:error_at(sec, "log_format", why)
    end
    S.parser, S.parse = parser, parser.parse
  end

  S.repository = opt("repository", c:get(worker_section, "rfr_id", nil))
  S.oai_prefix = opt("oai_prefix", nil)
  S.base_url = opt("base_url", nil)
  -- The path starts with "/", so a base URL written with a trailing slash would double it.
  if S.base_url then S.base_url = S.base_url:gsub("/+$", "") end
  S.drop_robots = c:getboolean(sec, "drop_robots", true)
  S.url_ver = c:get(worker_section, "url_ver", "Z39.88-2004")

  for _, key in ipairs({ "max_useragent", "max_referer", "max_svc_dat" }) do
    local n = c:getint(sec, key, S[key])
    if n < 0 then c:error_at(sec, key, n .. " is not valid; give a length in bytes, 0 or more") end
    S[key] = n
  end

  S.req_id = opt("req_id", "ip")
  if S.req_id ~= "ip" and S.req_id ~= "urn:ip" and S.req_id ~= "hmac" then
    c:error_at(sec, "req_id", "`" .. S.req_id .. "` is not valid; use ip, urn:ip or hmac")
  end
  if S.req_id == "hmac" then
    S.hmac_secret = opt("hmac_secret", "")
    if S.hmac_secret == "" then
      c:error_at(sec, "hmac_secret", "is needed with req_id = hmac: a long random string kept private")
    end
  end
end

-- Runs for every log line: decides cheaply whether the line can be an event at all. Most lines
-- are not (images, stylesheets, searches, errors), and returning nil here means the host does
-- not call get_openurl_params for them.
function parseline(jmsg)
  local msg = json_decode(jmsg)
  local line = msg.logline
  if type(line) ~= "string" then return nil, "the message has no logline" end
  local parser, r, why = S.parser, nil, nil
  if parser then r, why = S.parse(parser, line) else r, why = parse_combined(line) end
  if r == nil then return nil, why and ("not in the log format: " .. why) or "not a combined/common log line" end
  if r.method ~= "GET" then return nil, "method " .. tostring(r.method or "-") .. " is not GET" end
  local status = r.status
  if status ~= 200 and status ~= 304 then return nil, "status " .. tostring(status or "-") .. " is not 200 or 304" end
  if r.ip == nil or r.time == nil or r.path == nil then
    return nil, "the line has no client address, time or path"
  end
  local i, id = S.patterns:match(r.path)
  if i == nil then return nil, "path is not an item page or file" end
  -- No repository's identifiers are this long; a visitor's made-up path can be.
  if #id > MAX_ITEM_ID then return nil, "item id longer than " .. MAX_ITEM_ID .. " bytes" end
  if S.skip_file_query[i] and r.query and r.query:find("file=", 1, true) then
    return nil, "a derivative (" .. r.query .. "), not the file"
  end
  r.item = S.item_prefix[i] .. id
  r.kind = i <= S.n_request and "Request" or "Investigation"
  r.service = msg.service
  return r
end

-- Runs only for item pages and file downloads: builds the nine IRUS parameters.
function get_openurl_params(c, worker_section, pl)
  local ua = pl.useragent
  if S.drop_robots and L.is_robot(ua) then return nil, "COUNTER robot" end
  local url_tim = L.to_iso8601_utc(pl.time)
  if url_tim == nil then return nil, "unreadable time " .. pl.time end

  local repository = S.repository or pl.service or "localhost"
  local ip = pl.ip
  local req_id = ip
  if S.req_id == "urn:ip" then
    req_id = "urn:ip:" .. ip
  elseif S.req_id == "hmac" then
    req_id = L.hmac_sha256(S.hmac_secret, ip)
  end

  return {
    url_ver = S.url_ver,
    url_tim = url_tim,
    req_id = req_id,
    req_dat = truncate(ua or "", S.max_useragent),
    ["rft.artnum"] = (S.oai_prefix or ("oai:" .. repository .. ":")) .. pl.item,
    svc_dat = truncate((S.base_url or ("https://" .. repository)) .. pl.path, S.max_svc_dat),
    rfr_dat = truncate(pl.referer or "", S.max_referer),
    rfr_id = repository,
    rft_dat = pl.kind,
  }
end
