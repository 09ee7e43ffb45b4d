//! The `loglines` Lua library as plugins see it: every function called from Lua, with real
//! inputs (the sample logs, known digest vectors, a real HTTP server on 127.0.0.1).

use crate::support::plugin as plugin_util;

use loglines::plugin::{Plugin, PluginSpec};
use plugin_util::{closed_port, load, Dir, HttpStub, NO_HOOKS};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Runs Lua code at a plugin's top level; panics with the plugin error if it fails.
fn run(code: &str) {
    let (_d, r) = load(&format!("{NO_HOOKS}\n{code}"));
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Runs Lua code that must fail; returns the error text.
fn fails(code: &str) -> String {
    let (_d, r) = load(&format!("{NO_HOOKS}\n{code}"));
    match r {
        Ok(_) => panic!("the code should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn json_decode_and_encode() {
    run(r#"
        local json = loglines.json
        local m = json.decode('{"service": "repo", "logline": "a \\"b\\"", "n": 3, "x": null}')
        assert(m.service == "repo" and m.logline == 'a "b"' and m.n == 3)
        assert(m.x == json.null and m.missing == nil)
        local nested = json.decode('{"a": [1, {"b": [true, false]}], "s": "\\u00e9"}')
        assert(nested.a[2].b[1] == true and nested.s == "é" and #nested.a == 2)
        assert(json.decode("[]")[1] == nil and json.decode('"text"') == "text")
        assert(json.encode({b = 1, a = {1, 2, "x"}, n = json.null}) == '{"a":[1,2,"x"],"b":1,"n":null}')
        assert(json.encode("q\"") == '"q\\""')
        assert(json.encode({}) == "{}")
    "#);
    let e = fails("loglines.json.decode('{\"a\": }')");
    assert!(
        e.contains("json.decode: expected value at line 1 column 7"),
        "{e}"
    );
    let e = fails("loglines.json.decode('{\"a\": 1} {}')");
    assert!(e.contains("json.decode: trailing characters"), "{e}");
    let e = fails("loglines.json.encode({f = print})");
    assert!(e.contains("json.encode: key `f` is a function"), "{e}");
}

#[test]
fn parse_combined_reads_the_sample_lines() {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/combined.log"),
    )
    .unwrap();
    let lines: Vec<&str> = sample.lines().collect();
    let d = Dir::new();
    let p = d.write(
        "p.lua",
        &format!(
            "{NO_HOOKS}\nlocal LINES = loglines.json.decode([==[{}]==])\n{}",
            serde_json::to_string(&lines).unwrap(),
            r#"
            local r = loglines.parse_combined(LINES[1])
            assert(r.ip == "192.0.2.10" and r.ident == "-" and r.user == "-")
            assert(r.time == "27/Nov/2026:09:00:01 +0000")
            assert(r.method == "GET" and r.path == "/id/eprint/1234/" and r.query == nil)
            assert(r.protocol == "HTTP/1.1" and r.status == 200 and r.bytes == 18234)
            assert(math.type(r.status) == "integer")
            assert(r.referer == "https://www.google.com/")
            assert(r.useragent:find("Chrome/131", 1, true))
            -- IPv6 client, HTTP/2
            r = loglines.parse_combined(LINES[10])
            assert(r.ip == "2001:db8::1f" and r.protocol == "HTTP/2.0")
            -- an escaped quote inside the user agent
            r = loglines.parse_combined(LINES[14])
            assert(r.useragent == 'Mozilla/5.0 (compatible; "quoted" agent; Win64)', r.useragent)
            -- a query string is split off the path
            r = loglines.parse_combined(LINES[15])
            assert(r.path == "/bitstream/handle/10023/5678/jones-thesis.pdf")
            assert(r.query == "sequence=1&isAllowed=y")
            -- "-" for referer and user agent reads as nil
            r = loglines.parse_combined(LINES[20])
            assert(r.referer == nil and r.useragent == nil)
            -- not a log line, and the empty line
            assert(loglines.parse_combined(LINES[25]) == nil)
            assert(loglines.parse_combined(LINES[27]) == nil)
            -- the common format has no referer and user agent
            r = loglines.parse_combined('10.0.0.1 - bob [01/Apr/2009:01:14:27 +0100] "GET /x HTTP/1.0" 304 -')
            assert(r.user == "bob" and r.status == 304 and r.bytes == nil and r.useragent == nil)
            "#
        ),
    );
    assert_eq!(lines[24], "this is not an access log line at all");
    assert_eq!(lines[26], "");
    Plugin::load(plugin_util::spec(&p)).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn to_iso8601_utc_converts_to_utc() {
    run(r#"
        local t = loglines.to_iso8601_utc
        assert(t("01/Apr/2009:01:14:27 +0100") == "2009-04-01T00:14:27Z")
        assert(t("27/Nov/2026:10:08:31 +0100") == "2026-11-27T09:08:31Z")
        assert(t("31/Dec/2025:23:30:00 -0100") == "2026-01-01T00:30:00Z")
        assert(t("[27/Nov/2026:09:00:01 +0000]") == "2026-11-27T09:00:01Z")
        assert(t("yesterday") == nil)
    "#);
}

#[test]
fn is_robot_uses_the_counter_list_or_a_configured_one() {
    run(r#"
        local r = loglines.is_robot
        assert(r("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"))
        assert(r("python-requests/2.32.3") and r("Wget/1.21.4"))
        assert(r("MOZILLA/5.0 (COMPATIBLE; BINGBOT/2.0)"), "matching ignores case")
        assert(not r("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"))
        -- the COUNTER list itself counts a missing user agent as a robot
        assert(r(nil) and r(""))
    "#);
    let d = Dir::new();
    let list = d.write("robots.txt", "^InHouseCrawler\n");
    let p = d.write(
        "p.lua",
        &format!(
            "{NO_HOOKS}\nassert(loglines.is_robot('InHouseCrawler/1.0'))\n\
             assert(not loglines.is_robot('Mozilla/5.0 (compatible; Googlebot/2.1)'))"
        ),
    );
    let spec = PluginSpec {
        robots_list: Some(list),
        ..plugin_util::spec(&p)
    };
    Plugin::load(spec).unwrap_or_else(|e| panic!("{e}"));

    let spec = PluginSpec {
        robots_list: Some(d.path().join("missing.json")),
        ..plugin_util::spec(&p)
    };
    let e = Plugin::load(spec).unwrap_err().to_string();
    assert!(
        e.contains("cannot read robots list") && e.contains("missing.json"),
        "{e}"
    );
}

#[test]
fn url_encoding_and_digests() {
    run(r#"
        assert(loglines.urlencode("Mozilla/5.0 (X11; é)") == "Mozilla%2F5.0+%28X11%3B+%C3%A9%29")
        assert(loglines.urldecode("a+b%2Fc%C3%A9") == "a b/cé")
        local v, err = loglines.urldecode("100%")
        assert(v == nil and err:find("invalid percent%-escape"), err)
        assert(loglines.md5("") == "d41d8cd98f00b204e9800998ecf8427e")
        assert(loglines.sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        -- RFC 4231, test case 2
        assert(loglines.hmac_sha256("Jefe", "what do ya want for nothing?")
          == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    "#);
}

#[test]
fn regular_expressions() {
    run(r#"
        assert(loglines.re.match([[^/(?:id/eprint/)?(\d+)/]], "/id/eprint/1234/") == "1234")
        local s, e = loglines.re.find("(?i)bot", "Mozilla (compatible; Googlebot)")
        assert(s == 28 and e == 30, s .. " " .. e)
        local set = loglines.re.set{ [[\.pdf$]], [[^/(\d+)/$]] }
        local i, id = set:match("/77/")
        assert(i == 2 and id == "77")
    "#);
    let e = fails("loglines.re.match('a{', 'x')");
    assert!(e.contains("invalid regular expression `a{`"), "{e}");
}

/// Log records the plugins write, kept for the assertions.
static RECORDS: OnceLock<Mutex<Vec<(String, log::Level, String)>>> = OnceLock::new();

struct Capture;

/// Only the test plugin's records: every test of the binary shares the process's logger.
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("chatty_plugin")
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        RECORDS.get_or_init(Default::default).lock().unwrap().push((
            r.target().to_string(),
            r.level(),
            r.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

#[test]
fn log_functions_write_to_the_host_logger_under_the_plugin_name() {
    static LOGGER: Capture = Capture;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
    let d = Dir::new();
    let p = d.write(
        "chatty_plugin.lua",
        &format!(
            "{NO_HOOKS}\nloglines.log.debug('d', 1)\nloglines.log.info('i')\n\
             loglines.log.warn('w', true, nil)\nloglines.log.error('e')\nprint('p', 2)"
        ),
    );
    Plugin::load(plugin_util::spec(&p)).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(log::Level, String)> = RECORDS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t == "chatty_plugin")
        .map(|(_, l, m)| (*l, m.clone()))
        .collect();
    use log::Level::*;
    assert_eq!(
        got,
        vec![
            (Debug, "d\t1".to_string()),
            (Info, "i".to_string()),
            (Warn, "w\ttrue\tnil".to_string()),
            (Error, "e".to_string()),
            (Info, "p\t2".to_string()),
        ]
    );
}

/// A server for `http_get`: `/slow` answers after two seconds, `/missing` with 404, anything
/// else with 200 and a JSON body naming the path.
fn server() -> HttpStub {
    HttpStub::start(|path| {
        if path == "/slow" {
            std::thread::sleep(Duration::from_secs(2));
        }
        if path == "/missing" {
            ("404 Not Found", "no such item".to_string())
        } else {
            ("200 OK", format!("{{\"path\": \"{path}\"}}"))
        }
    })
}

#[test]
fn http_get_returns_status_and_body_and_caches_answers() {
    let s = server();
    let code = format!(
        r#"
        local base = "{base}"
        local status, body = loglines.http_get(base .. "/item/1", {{timeout = 5}})
        assert(status == 200, tostring(body))
        assert(loglines.json.decode(body).path == "/item/1")
        -- the same URL again comes from the cache
        local status2, body2 = loglines.http_get(base .. "/item/1")
        assert(status2 == 200 and body2 == body)
        -- cache = 0 asks the server again
        assert(loglines.http_get(base .. "/item/1", {{cache = 0}}) == 200)
        -- an error status is an answer, not a failure
        local s404, b404 = loglines.http_get(base .. "/missing")
        assert(s404 == 404 and b404 == "no such item")
        "#,
        base = s.addr
    );
    run(&code);
    assert_eq!(
        s.requests().len(),
        3,
        "/item/1 twice (once cached) and /missing once"
    );
}

#[test]
fn http_get_failures_are_nil_and_a_message() {
    let s = server();
    let closed = closed_port();
    let code = format!(
        r#"
        local started = os.clock()
        local status, err = loglines.http_get("{base}/slow", {{timeout = 0.3}})
        assert(status == nil and err:find("/slow"), tostring(err))
        local s2, err2 = loglines.http_get("http://127.0.0.1:{closed}/x", {{timeout = 2}})
        assert(s2 == nil and err2:find("http_get http://127.0.0.1:{closed}/x"), tostring(err2))
        local s3, err3 = loglines.http_get("file:///etc/passwd")
        assert(s3 == nil and err3:find("not an http:// or https:// URL"), err3)
        "#,
        base = s.addr,
    );
    let t = Instant::now();
    run(&code);
    assert!(
        t.elapsed() < Duration::from_millis(1900),
        "the timeout cut the slow answer short: {:?}",
        t.elapsed()
    );
    let e = fails("loglines.http_get('http://127.0.0.1:1/', {timeout = -1})");
    assert!(e.contains("option timeout = -1 is out of range"), "{e}");
}
