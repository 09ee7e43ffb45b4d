//! The log format compiler and parser against lines as the servers write them.

use super::*;

fn get<'a>(r: &'a Record<'_>, k: &str) -> Option<&'a Val<'a>> {
    r.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v)
}

fn text<'a>(r: &'a Record<'_>, k: &str) -> Option<&'a str> {
    match get(r, k)? {
        Val::Text(t) => Some(t),
        Val::Int(_) => None,
    }
}

fn int(r: &Record<'_>, k: &str) -> Option<i64> {
    match get(r, k)? {
        Val::Int(n) => Some(*n),
        Val::Text(_) => None,
    }
}

#[test]
fn apache_vhost_combined() {
    let f = LogFormat::compile("vhost_combined").unwrap();
    let r = f
        .parse(r#"repo.example.ac.uk:443 192.0.2.10 - - [27/Nov/2026:09:00:07 +0000] "GET /id/eprint/1234/1/a.pdf?x=1 HTTP/1.1" 200 1049012 "https://www.google.com/" "Mozilla/5.0 (X11; \"quoted\")""#)
        .unwrap();
    assert_eq!(text(&r, "vhost"), Some("repo.example.ac.uk"));
    assert_eq!(int(&r, "port"), Some(443));
    assert_eq!(text(&r, "ip"), Some("192.0.2.10"));
    assert_eq!(text(&r, "time"), Some("27/Nov/2026:09:00:07 +0000"));
    assert_eq!(text(&r, "method"), Some("GET"));
    assert_eq!(text(&r, "path"), Some("/id/eprint/1234/1/a.pdf"));
    assert_eq!(text(&r, "query"), Some("x=1"));
    assert_eq!(text(&r, "protocol"), Some("HTTP/1.1"));
    assert_eq!(int(&r, "status"), Some(200));
    assert_eq!(int(&r, "bytes_sent"), Some(1049012));
    assert_eq!(text(&r, "referer"), Some("https://www.google.com/"));
    assert_eq!(
        text(&r, "useragent"),
        Some(r#"Mozilla/5.0 (X11; "quoted")"#)
    );
    assert_eq!(get(&r, "ident"), None, "`-` is absent");
}

#[test]
fn nginx_main_with_forwarded_for_and_hex_escapes() {
    let f = LogFormat::compile("nginx_main").unwrap();
    let r = f
        .parse(r#"10.0.0.5 - - [31/Dec/2026:23:59:59 -0500] "GET /articles/7/download HTTP/2.0" 200 5120 "-" "curl/8.5 \x22x\x22" "203.0.113.9, 10.0.0.2""#)
        .unwrap();
    assert_eq!(text(&r, "ip"), Some("10.0.0.5"));
    assert_eq!(text(&r, "forwarded_for"), Some("203.0.113.9, 10.0.0.2"));
    assert_eq!(text(&r, "useragent"), Some(r#"curl/8.5 "x""#));
    assert_eq!(get(&r, "referer"), None);
    assert_eq!(int(&r, "bytes"), Some(5120));
}

#[test]
fn custom_apache_formats() {
    // %D and a request header added to combined; the client from mod_remoteip.
    let f = LogFormat::compile(
        r#"%a %{c}a %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" %D %{X-Request-Id}i"#,
    )
    .unwrap();
    let r = f
        .parse(r#"203.0.113.9 10.0.0.2 - alice [01/Jan/2027:00:00:01 +0100] "GET /downloads/abc?file=thumbnail HTTP/1.1" 304 - "-" "Mozilla/5.0" 1532 req-77"#)
        .unwrap();
    assert_eq!(text(&r, "ip"), Some("203.0.113.9"));
    assert_eq!(text(&r, "peer_ip"), Some("10.0.0.2"));
    assert_eq!(text(&r, "user"), Some("alice"));
    assert_eq!(int(&r, "status"), Some(304));
    assert_eq!(get(&r, "bytes"), None);
    assert_eq!(int(&r, "request_time_us"), Some(1532));
    assert_eq!(text(&r, "http_x_request_id"), Some("req-77"));
    assert_eq!(text(&r, "query"), Some("file=thumbnail"));

    // %h and %a together: %a is the client.
    let f = LogFormat::compile("%h %a %t \"%r\" %s").unwrap();
    let r = f
        .parse(r#"10.0.0.2 203.0.113.9 [01/Jan/2027:00:00:01 +0000] "GET / HTTP/1.1" 200"#)
        .unwrap();
    assert_eq!(text(&r, "ip"), Some("203.0.113.9"));
    assert_eq!(text(&r, "host"), Some("10.0.0.2"));

    // Times in seconds, milliseconds, and strftime with a zone.
    for (spec, line, want) in [
        ("%{sec}t %m %U %s", "1764234001 GET /a 200", "1764234001"),
        (
            "%{msec}t %m %U %s",
            "1764234001123 GET /a 200",
            "1764234001.123",
        ),
        (
            "%{usec}t %m %U %s",
            "1764234001000007 GET /a 200",
            "1764234001.000007",
        ),
        (
            "[%{%d/%b/%Y %T %z}t] %m %U%q %s",
            "[27/Nov/2026 09:00:01 +0100] GET /a?b=1 200",
            "2026-11-27T09:00:01+01:00",
        ),
        (
            "%{%Y-%m-%dT%H:%M:%S}t %m %U %s",
            "2026-11-27T09:00:01 GET /a 200",
            "2026-11-27T09:00:01",
        ),
    ] {
        let r = LogFormat::compile(spec).unwrap().parse(line).unwrap();
        assert_eq!(text(&r, "time"), Some(want), "{spec}");
        assert_eq!(text(&r, "path"), Some("/a"), "{spec}");
    }
}

#[test]
fn a_408_without_a_request_and_lines_that_do_not_fit() {
    let f = LogFormat::compile("combined").unwrap();
    let r = f
        .parse(r#"192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] "-" 408 - "-" "-""#)
        .unwrap();
    assert_eq!(int(&r, "status"), Some(408));
    assert_eq!(text(&r, "path"), Some(""));
    let f = LogFormat::compile("nginx_main").unwrap();
    let r = f
        .parse(r#"192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] "-" 408 0 "-" "-" "-""#)
        .unwrap();
    assert_eq!(get(&r, "method"), None);
    assert_eq!(int(&r, "status"), Some(408));
    for bad in [
        "",
        "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000]",
        r#"192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] "GET / HTTP/1.1" abc 0 "-" "-" "-""#,
        r#"192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] "GET / HTTP/1.1"#,
    ] {
        assert!(f.parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn formats_that_cannot_be_compiled_say_where() {
    for (spec, pos, what) in [
        ("%h %{Referer", Some(3), "not closed"),
        (
            "%h %Z %t %r",
            Some(3),
            "`%Z` is not an Apache log directive",
        ),
        ("%h%l %t %r", Some(2), "two fields"),
        ("%h %t \"%r\" %", Some(11), "ends with `%`"),
        ("%h %t %s", None, "no request"),
        ("$remote_addr \"$request\" $status", None, "no time"),
        (
            "${remote_addr [$time_local] \"$request\"",
            Some(0),
            "not closed",
        ),
        ("hello", None, "neither a preset"),
    ] {
        let e = LogFormat::compile(spec).unwrap_err();
        assert!(e.what.contains(what), "{spec}: {e}");
        assert_eq!(e.position, pos.unwrap_or(usize::MAX), "{spec}: {e}");
    }
    assert_eq!(
        LogFormat::compile("%h %Z").unwrap_err().to_string(),
        "at character 4: `%Z` is not an Apache log directive loglines knows (see docs/plugins.md for the list)"
    );
}

/// A field value a server could log: no line breaks; quotes and backslashes are escaped when
/// written.
fn value() -> impl proptest::strategy::Strategy<Value = String> {
    "[a-zA-Z0-9/._~:;=&?%+ \"\\\\-]{1,30}"
}

proptest::proptest! {
    /// Formatting a line with a LogFormat and parsing it back gives the values.
    #[test]
    fn apache_lines_round_trip(
        ip in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        path in "/[a-zA-Z0-9/._-]{0,40}",
        query in proptest::option::of("[a-z0-9=&]{1,20}"),
        status in 100u16..600,
        bytes in proptest::option::of(0u64..10_000_000),
        referer in value(),
        agent in value(),
        xff in value(),
        us in 0u64..100_000_000,
    ) {
        let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let line = format!(
            "{ip} - - [27/Nov/2026:09:00:01 +0000] \"GET {target} HTTP/1.1\" {status} {} \"{}\" \"{}\" {us} \"{}\"",
            bytes.map_or("-".to_string(), |b| b.to_string()),
            esc(&referer), esc(&agent), esc(&xff)
        );
        let f = LogFormat::compile("%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\" %D \"%{X-Forwarded-For}i\"").unwrap();
        let r = f.parse(&line).unwrap();
        proptest::prop_assert_eq!(text(&r, "ip"), Some(ip.as_str()));
        proptest::prop_assert_eq!(text(&r, "path"), Some(path.as_str()));
        proptest::prop_assert_eq!(text(&r, "query"), query.as_deref());
        proptest::prop_assert_eq!(int(&r, "status"), Some(i64::from(status)));
        proptest::prop_assert_eq!(int(&r, "bytes"), bytes.map(|b| b as i64));
        proptest::prop_assert_eq!(text(&r, "referer"), (referer != "-").then_some(referer.as_str()));
        proptest::prop_assert_eq!(text(&r, "useragent"), (agent != "-").then_some(agent.as_str()));
        proptest::prop_assert_eq!(text(&r, "forwarded_for"), (xff != "-").then_some(xff.as_str()));
        proptest::prop_assert_eq!(int(&r, "request_time_us"), Some(us as i64));
    }

    /// The same for an nginx log_format.
    #[test]
    fn nginx_lines_round_trip(
        ip in "[0-9a-f:.]{3,39}",
        path in "/[a-zA-Z0-9/._-]{0,40}",
        status in 100u16..600,
        rt in "[0-9]{1,3}\\.[0-9]{3}",
        host in "[a-z0-9.-]{1,30}",
        agent in value(),
    ) {
        let esc = |s: &str| s.replace('\\', "\\x5C").replace('"', "\\x22");
        let line = format!(
            "{ip} {host} [27/Nov/2026:09:00:01 +0000] \"POST {path} HTTP/2.0\" {status} {rt} \"{}\"",
            esc(&agent)
        );
        let f = LogFormat::compile("$remote_addr $host [$time_local] \"$request\" $status $request_time \"$http_user_agent\"").unwrap();
        let r = f.parse(&line).unwrap();
        proptest::prop_assert_eq!(text(&r, "ip"), Some(ip.as_str()));
        proptest::prop_assert_eq!(text(&r, "vhost"), (host != "-").then_some(host.as_str()));
        proptest::prop_assert_eq!(text(&r, "method"), Some("POST"));
        proptest::prop_assert_eq!(text(&r, "path"), Some(path.as_str()));
        proptest::prop_assert_eq!(int(&r, "status"), Some(i64::from(status)));
        proptest::prop_assert_eq!(text(&r, "request_time"), Some(rt.as_str()));
        proptest::prop_assert_eq!(text(&r, "useragent"), (agent != "-").then_some(agent.as_str()));
    }
}

/// JSON lines: Caddy's nested access log, nginx's `escape=json`, and what is refused.
#[test]
fn json_lines_by_field_map() {
    let caddy = LogFormat::compile_json(
        "ip:request.client_ip time:ts method:request.method path:request.uri status:status \
         useragent:request.headers.User-Agent.0 referer:request.headers.Referer.0",
    )
    .unwrap();
    let r = caddy
        .parse(r#"{"level":"info","ts":1764234001.5,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"10.0.0.2","client_ip":"203.0.113.9","proto":"HTTP/2.0","method":"GET","host":"repo.example.ac.uk","uri":"/downloads/abc?file=thumbnail","headers":{"User-Agent":["Mozilla/5.0 \"q\""]}},"size":5120,"status":200}"#)
        .unwrap();
    assert_eq!(text(&r, "ip"), Some("203.0.113.9"));
    assert_eq!(text(&r, "time"), Some("1764234001.5"));
    assert_eq!(text(&r, "path"), Some("/downloads/abc"));
    assert_eq!(text(&r, "query"), Some("file=thumbnail"));
    assert_eq!(int(&r, "status"), Some(200));
    assert_eq!(text(&r, "useragent"), Some("Mozilla/5.0 \"q\""));
    assert_eq!(
        get(&r, "referer"),
        None,
        "a path that is not there is absent"
    );

    let nginx = LogFormat::compile_json(
        "ip:remote_addr time:time_iso8601 request:request status:status forwarded_for:xff",
    )
    .unwrap();
    let r = nginx
        .parse(r#"{"remote_addr":"10.0.0.5","time_iso8601":"2026-11-27T09:00:01+00:00","request":"GET /a.pdf?x=1 HTTP/1.1","status":"200","xff":"-"}"#)
        .unwrap();
    assert_eq!(text(&r, "method"), Some("GET"));
    assert_eq!(text(&r, "query"), Some("x=1"));
    assert_eq!(int(&r, "status"), Some(200));
    assert_eq!(get(&r, "forwarded_for"), None);
    for bad in [
        "not json",
        "[1]",
        r#"{"status":"x","request":"GET / HTTP/1.1","time_iso8601":"t"}"#,
    ] {
        assert!(nginx.parse(bad).is_err(), "{bad}");
    }
    for (fields, what) in [
        ("ip:a time", "not `name:path`"),
        ("ip:a colour:b time:t path:p", "`colour` is not a field"),
        ("time:t path:a..b", "not a dotted path"),
        ("ip:a path:p", "no `time`"),
        ("ip:a time:t", "neither `path` nor `request`"),
    ] {
        let e = LogFormat::compile_json(fields).unwrap_err();
        assert!(e.what.contains(what), "{fields}: {e}");
    }
}

#[test]
fn a_recycled_record_keeps_its_allocation_and_parse_into_gives_what_parse_gives() {
    let f = LogFormat::compile("nginx_main").unwrap();
    let line = r#"10.0.0.5 - - [27/Nov/2026:09:00:07 +0000] "GET /a?b=1 HTTP/1.1" 200 5 "-" "UA" "203.0.113.9""#;
    let mut r = Vec::with_capacity(32);
    f.parse_into(line, &mut r).unwrap();
    assert_eq!(r, f.parse(line).unwrap());
    let (ptr, cap) = (r.as_ptr() as usize, r.capacity());
    let mut again: Record<'_> = recycle(r);
    assert!(again.is_empty());
    assert_eq!((again.as_ptr() as usize, again.capacity()), (ptr, cap));
    let other = line.replace("/a?b=1", "/c");
    f.parse_into(&other, &mut again).unwrap();
    assert_eq!(text(&again, "path"), Some("/c"));
    assert_eq!(again, f.parse(&other).unwrap());
}

#[test]
fn behind_trusted_proxies_the_client_is_the_header_entry_as_written() {
    let f = LogFormat::compile("nginx_main").unwrap();
    let nets = crate::plugin::library::proxies::Networks::parse("10.0.0.0/8").unwrap();
    let at = |ip: &str, xff: &str| {
        let line = format!(
            r#"{ip} - - [27/Nov/2026:09:00:07 +0000] "GET / HTTP/1.1" 200 5 "-" "UA" "{xff}""#
        );
        let mut r = f.parse(&line).unwrap();
        resolve_client(&nets, &mut r);
        text(&r, "ip").map(str::to_string)
    };
    assert_eq!(
        at("10.0.0.5", "203.0.113.9:5123, 10.0.0.2").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(
        at("10.0.0.5", "[2001:db8::1]:443").as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(at("192.0.2.1", "203.0.113.9").as_deref(), Some("192.0.2.1"));
    assert_eq!(at("10.0.0.5", "-").as_deref(), Some("10.0.0.5"));
    assert_eq!(
        at("10.0.0.5", "garbage, 10.0.0.3").as_deref(),
        Some("10.0.0.3")
    );
}
