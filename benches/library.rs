//! Benchmarks of the Rust functions behind the plugins' `loglines` library, against the budget
//! of 200,000 log lines per second on one core (5 µs per line, Lua included).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use loglines::plugin::library::clf::{parse_combined, to_iso8601_utc};
use loglines::plugin::library::logformat::LogFormat;
use loglines::plugin::library::openurl::openurl;
use loglines::plugin::library::robots::Robots;

const SAMPLE: &str = include_str!("../tests/data/combined.log");

const TYPICAL_LINE: &str = "192.0.2.10 - - [27/Nov/2026:09:00:07 +0000] \"GET \
    /id/eprint/1234/1/smith2026-neutrino.pdf HTTP/1.1\" 200 1048576 \
    \"https://repo.example.ac.uk/id/eprint/1234/\" \"Mozilla/5.0 (Windows NT 10.0; Win64; x64) \
    AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\"";

/// Roughly the make-up of a repository's downloads: mostly browsers, a sizeable minority of
/// crawlers and scripts, and the odd missing user agent.
const USER_AGENTS: [&str; 16] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) \
     Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
     Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1; .NET CLR 1.1.4322)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "python-requests/2.32.3",
    "Wget/1.21.4",
    "curl/8.5.0",
    "",
];

fn bench(c: &mut Criterion) {
    let sample_lines: Vec<&str> = SAMPLE.lines().collect();
    let escaped = sample_lines
        .iter()
        .copied()
        .find(|l| l.contains("\\\""))
        .unwrap_or(TYPICAL_LINE);

    c.bench_function("parse_combined/typical", |b| {
        b.iter(|| parse_combined(black_box(TYPICAL_LINE)))
    });
    c.bench_function("parse_combined/escaped_quote", |b| {
        b.iter(|| parse_combined(black_box(escaped)))
    });
    c.bench_function("parse_combined/sample_file_per_line", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % sample_lines.len();
            parse_combined(black_box(sample_lines[i]))
        })
    });

    // The same combined lines through a format compiled from Apache's `combined` string
    // (not the preset, which is parse_combined itself): the target is within 20% of the
    // hand-written parser.
    let apache_combined =
        LogFormat::compile(r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i""#).unwrap();
    c.bench_function("log_format/apache_combined_string/typical", |b| {
        b.iter(|| apache_combined.parse(black_box(TYPICAL_LINE)))
    });
    c.bench_function(
        "log_format/apache_combined_string/sample_file_per_line",
        |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % sample_lines.len();
                apache_combined.parse(black_box(sample_lines[i]))
            })
        },
    );
    let nginx_main = LogFormat::compile("nginx_main").unwrap();
    let nginx_line = format!("{TYPICAL_LINE} \"203.0.113.9, 10.0.0.2\"");
    c.bench_function("log_format/nginx_main/typical", |b| {
        b.iter(|| nginx_main.parse(black_box(&nginx_line)))
    });

    // The same two from Lua, as a plugin calls them, each returning its table: the call, the
    // table of a dozen strings and the garbage it leaves are most of a plugin's parse. This is
    // the comparison the within-20% target is about.
    let (_plugins, mut via_clf) = lua_parser("loglines.parse_combined(line)");
    c.bench_function("lua/parse_combined/sample_file_per_line", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % sample_lines.len();
            via_clf.process(black_box(sample_lines[i]))
        })
    });
    let (_plugins2, mut via_format) = lua_parser("parse(format, line)");
    c.bench_function(
        "lua/log_format_apache_combined_string/sample_file_per_line",
        |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % sample_lines.len();
                via_format.process(black_box(sample_lines[i]))
            })
        },
    );

    c.bench_function("to_iso8601_utc", |b| {
        b.iter(|| to_iso8601_utc(black_box("01/Apr/2009:01:14:27 +0100")))
    });

    let robots = Robots::bundled();
    c.bench_function("is_robot/mix", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % USER_AGENTS.len();
            robots.is_robot(black_box(USER_AGENTS[i]))
        })
    });
    c.bench_function("is_robot/chrome", |b| {
        b.iter(|| robots.is_robot(black_box(USER_AGENTS[0])))
    });
    // Worst case: a header-sized user agent of varied, partly non-ASCII text, which the lazy
    // DFA has not seen before (its state cache is per regex set, so this also measures misses).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let junk: String = (0..8000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            const CHARS: [char; 12] = ['a', 'Q', '7', ' ', '/', ';', '(', 'é', 'ß', 'Ж', '中', '-'];
            CHARS[(seed % CHARS.len() as u64) as usize]
        })
        .collect();
    c.bench_function("is_robot/8k_varied", |b| {
        b.iter(|| robots.is_robot(black_box(&junk)))
    });
    c.bench_function("is_robot/googlebot", |b| {
        b.iter(|| robots.is_robot(black_box(USER_AGENTS[9])))
    });

    let params = [
        ("url_ver", "Z39.88-2004"),
        ("url_tim", "2026-11-27T09:00:07Z"),
        ("req_id", "192.0.2.10"),
        ("req_dat", USER_AGENTS[0]),
        ("rft.artnum", "oai:repo.example.ac.uk:1234"),
        (
            "svc_dat",
            "https://repo.example.ac.uk/id/eprint/1234/1/smith2026-neutrino.pdf",
        ),
        ("rfr_dat", "https://repo.example.ac.uk/id/eprint/1234/"),
        ("rfr_id", "repo.example.ac.uk"),
        ("rft_dat", "Request"),
    ];
    c.bench_function("urlencode/useragent", |b| {
        b.iter(|| loglines::plugin::library::openurl::urlencode(black_box(USER_AGENTS[0])))
    });
    c.bench_function("openurl/9_params", |b| {
        b.iter(|| {
            openurl(
                black_box("https://irus.jisc.ac.uk/counter/test/"),
                black_box(&params),
            )
        })
    });

    // Everything a download plugin asks of Rust for one line, without the Lua around it.
    c.bench_function("pipeline/parse_robot_time_openurl", |b| {
        b.iter(|| {
            let rec = parse_combined(black_box(TYPICAL_LINE))?;
            let ua = rec.useragent.as_deref().unwrap_or("");
            if robots.is_robot(ua) {
                return None;
            }
            let tim = to_iso8601_utc(rec.time)?;
            let svc = format!("https://repo.example.ac.uk{}", rec.path);
            let params = [
                ("url_ver", "Z39.88-2004"),
                ("url_tim", tim.as_str()),
                ("req_id", rec.ip),
                ("req_dat", ua),
                ("rft.artnum", "oai:repo.example.ac.uk:1234"),
                ("svc_dat", svc.as_str()),
                ("rfr_dat", rec.referer.as_deref().unwrap_or("")),
                ("rfr_id", "repo.example.ac.uk"),
                ("rft_dat", "Request"),
            ];
            Some(openurl("https://irus.jisc.ac.uk/counter/test/", &params))
        })
    });
}

/// A plugin whose `parseline` parses the line it is given (the raw log line, no JSON around it)
/// with `call` and returns nothing; `format` is Apache's combined string compiled by
/// `loglines.log_format`, `parse` its parse function.
fn lua_parser(call: &str) -> (tempfile::TempDir, loglines::plugin::Plugin) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parse.lua");
    let code = format!(
        "local format = loglines.log_format([[%h %l %u %t \"%r\" %>s %b \"%{{Referer}}i\" \"%{{User-Agent}}i\"]])\n\
         local parse = format.parse\n\
         function parseline(line) local r = {call}; return nil end\n\
         function get_openurl_params(c, s, pl) return nil end\n"
    );
    std::fs::write(&path, code).unwrap();
    let plugin = loglines::plugin::Plugin::load(loglines::plugin::PluginSpec::standalone(
        &path,
        "worker_pirus2",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    (dir, plugin)
}

criterion_group!(benches, bench);
criterion_main!(benches);
