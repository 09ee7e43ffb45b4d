//! Zero-copy parsing of Apache/Nginx access-log lines (combined and common formats) and
//! conversion of their timestamps to UTC ISO 8601, for the plugins' `loglines` library.
//!
//! A line looks like
//! `HOST IDENT USER [TIME] "REQUEST" STATUS BYTES "REFERER" "USER-AGENT"`; the common format
//! stops after BYTES. Apache and Nginx escape `"` and `\` inside the quoted fields (and write
//! control or non-ASCII bytes as `\xHH`), so quoted fields are scanned escape-aware and handed
//! back unescaped. Fields borrow from the line; only a quoted field that contained an escape is
//! copied.
//!
//! Leniency, deliberately: fields may be separated by runs of spaces or tabs, the host is any
//! token (hostnames appear when `HostnameLookups` is on), and anything after the user-agent
//! field is ignored so that "combined plus extra fields" formats still parse. Strictness,
//! deliberately: a quoted field that never closes (a truncated line) makes the whole line
//! unparseable, because its remaining fields cannot be trusted.

use crate::util::time::{self, days_in_month};
use std::borrow::Cow;
use std::ops::Range;

/// One access-log line split into its fields. Text fields borrow from the line unless
/// unescaping forced a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// Client address (`%h`): IPv4, IPv6 or a host name, exactly as logged.
    pub ip: &'a str,
    /// RFC 1413 identity (`%l`), almost always `-`.
    pub ident: &'a str,
    /// Authenticated user (`%u`), `-` when none.
    pub user: &'a str,
    /// The text between `[` and `]`, e.g. `27/Nov/2026:09:00:01 +0000`; see [`to_iso8601_utc`].
    pub time: &'a str,
    /// The whole request line, unescaped, e.g. `GET /x.pdf HTTP/1.1` (or `-` when the client
    /// never sent one).
    pub request: Cow<'a, str>,
    /// Request method; empty when the request line is malformed (no method and target).
    pub method: Cow<'a, str>,
    /// Request target up to (not including) the first `?`, still percent-encoded; empty when the
    /// request line is malformed.
    pub path: Cow<'a, str>,
    /// Query string after the first `?` (without it); `None` when the target has no `?`.
    pub query: Option<Cow<'a, str>>,
    /// Protocol, e.g. `HTTP/1.1`; empty for an HTTP/0.9 request or a malformed request line.
    pub protocol: Cow<'a, str>,
    /// Final response status.
    pub status: u16,
    /// Response body size; `None` when logged as `-` (Apache's `%b` for zero bytes).
    pub bytes: Option<u64>,
    /// Referer; `None` when logged as `-` or absent (common format).
    pub referer: Option<Cow<'a, str>>,
    /// User-Agent; `None` when logged as `-` or absent (common format).
    pub useragent: Option<Cow<'a, str>>,
}

/// Parses one combined- or common-format line that starts with the client address.
///
/// Returns `None` for anything that is not such a line (an empty line, a banner, a line with a
/// prefix before the address, a truncated line). Never panics.
pub fn parse_combined(line: &str) -> Option<LogRecord<'_>> {
    let line = line.trim_matches(is_blank_or_eol);
    let mut cur = Cursor { s: line, pos: 0 };

    let ip = cur.word()?;
    let ident = cur.word()?;
    let user = cur.word()?;
    let time = cur.bracketed()?;
    let request = cur.quoted()?;
    let status = parse_digits(cur.word()?).and_then(|n| u16::try_from(n).ok())?;
    let bytes = match cur.word()? {
        "-" => None,
        b => Some(parse_digits(b)?),
    };
    // A lone quoted field after the byte count is the referer, by position.
    let (referer, useragent) = match cur.trailing()? {
        Trailing::End => (None, None),
        Trailing::Field(referer) => match cur.trailing()? {
            Trailing::End => (referer, None),
            Trailing::Field(useragent) => (referer, useragent),
        },
    };

    let parts = split_request(&request);
    Some(LogRecord {
        ip,
        ident,
        user,
        time,
        method: parts.method,
        path: parts.path,
        query: parts.query,
        protocol: parts.protocol,
        request,
        status,
        bytes,
        referer,
        useragent,
    })
}

fn is_blank_or_eol(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `str::parse` accepts a leading `+`, which no log writes, so digits are checked by hand.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Walks a line field by field. Positions only ever land next to ASCII delimiters, so every
/// slice is on a character boundary even when the line holds non-ASCII text.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

/// What follows the byte count: either no more quoted fields, or one (with `-` read as `None`).
enum Trailing<'a> {
    End,
    Field(Option<Cow<'a, str>>),
}

impl<'a> Cursor<'a> {
    fn skip_sep(&mut self) {
        let b = self.s.as_bytes();
        while self.pos < b.len() && is_sep(b[self.pos]) {
            self.pos += 1;
        }
    }

    fn word(&mut self) -> Option<&'a str> {
        self.skip_sep();
        let b = self.s.as_bytes();
        let start = self.pos;
        while self.pos < b.len() && !is_sep(b[self.pos]) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    fn bracketed(&mut self) -> Option<&'a str> {
        self.skip_sep();
        let rest = self.s.get(self.pos..)?.strip_prefix('[')?;
        let close = rest.find(']')?;
        self.pos += 1 + close + 1;
        Some(&rest[..close])
    }

    /// Reads a `"..."` field, honouring backslash escapes; `None` if there is no opening quote
    /// or it never closes.
    fn quoted(&mut self) -> Option<Cow<'a, str>> {
        self.skip_sep();
        let b = self.s.as_bytes();
        if b.get(self.pos) != Some(&b'"') {
            return None;
        }
        let (value, close) = quoted_at(self.s, self.pos + 1)?;
        self.pos = close + 1;
        Some(value)
    }

    /// Reads an optional trailing quoted field. Anything other than a quoted field ends the
    /// record (extra custom fields are ignored); only an unterminated quote rejects the line.
    fn trailing(&mut self) -> Option<Trailing<'a>> {
        self.skip_sep();
        if self.s.as_bytes().get(self.pos) != Some(&b'"') {
            return Some(Trailing::End);
        }
        let v = self.quoted()?;
        Some(Trailing::Field(if v == "-" { None } else { Some(v) }))
    }
}

/// The quoted field whose text starts at `start` (just after its opening quote), honouring
/// backslash escapes, and the position of its closing quote; `None` if it never closes.
pub(crate) fn quoted_at(s: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = s.as_bytes();
    // Fast path: no backslash before the first quote means no escapes in this field, and both
    // searches are memchr-backed.
    let close = start + memchr::memchr(b'"', b.get(start..)?)?;
    if !b[start..close].contains(&b'\\') {
        return Some((Cow::Borrowed(&s[start..close]), close));
    }
    let mut i = start;
    loop {
        match b.get(i)? {
            b'"' => break,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Some((Cow::Owned(unescape(&s[start..i])), i))
}

/// Undoes the escaping that Apache (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\v`, `\xHH`) and Nginx
/// (`\"`, `\\`, `\xHH`) apply to logged strings. Any other backslash is kept as written, since
/// it cannot have come from the server's escaping. Bytes recovered from `\xHH` that do not form
/// UTF-8 (a Latin-1 user agent, binary junk) become U+FFFD.
fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let decoded = match b.get(i + 1) {
            Some(b'"') => Some((b'"', 2)),
            Some(b'\\') => Some((b'\\', 2)),
            Some(b'n') => Some((b'\n', 2)),
            Some(b'r') => Some((b'\r', 2)),
            Some(b't') => Some((b'\t', 2)),
            Some(b'b') => Some((0x08, 2)),
            Some(b'v') => Some((0x0b, 2)),
            Some(b'x') => match (
                b.get(i + 2).and_then(hex_val),
                b.get(i + 3).and_then(hex_val),
            ) {
                (Some(hi), Some(lo)) => Some((hi << 4 | lo, 4)),
                _ => None,
            },
            _ => None,
        };
        match decoded {
            Some((byte, len)) => {
                out.push(byte);
                i += len;
            }
            None => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex_val(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(crate) struct RequestParts<'a> {
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub query: Option<Cow<'a, str>>,
    pub protocol: Cow<'a, str>,
}

/// Splits `METHOD TARGET PROTOCOL` (protocol optional, as in HTTP/0.9). A target containing raw
/// spaces, which Apache logs verbatim when it rejects such a request, stays one target because
/// the protocol is taken from the last space only when it looks like `HTTP/...`.
pub(crate) fn split_request<'a>(request: &Cow<'a, str>) -> RequestParts<'a> {
    match request_ranges(request) {
        Some((method, path, query, protocol)) => RequestParts {
            method: sub(request, method),
            path: sub(request, path),
            query: query.map(|q| sub(request, q)),
            protocol: sub(request, protocol),
        },
        None => RequestParts {
            method: Cow::Borrowed(""),
            path: Cow::Borrowed(""),
            query: None,
            protocol: Cow::Borrowed(""),
        },
    }
}

type RequestRanges = (
    Range<usize>,
    Range<usize>,
    Option<Range<usize>>,
    Range<usize>,
);

fn request_ranges(r: &str) -> Option<RequestRanges> {
    let r = r.trim_end_matches(' ');
    let b = r.as_bytes();
    let sp1 = r.find(' ')?;
    if sp1 == 0 {
        return None;
    }
    let mut t0 = sp1 + 1;
    while t0 < b.len() && b[t0] == b' ' {
        t0 += 1;
    }
    let (t1, protocol) = match r.rfind(' ') {
        Some(sp2) if sp2 >= t0 && r[sp2 + 1..].starts_with("HTTP/") => {
            let mut t1 = sp2;
            while t1 > t0 && b[t1 - 1] == b' ' {
                t1 -= 1;
            }
            (t1, sp2 + 1..b.len())
        }
        _ => (b.len(), b.len()..b.len()),
    };
    if t1 <= t0 {
        return None;
    }
    let (path, query) = match r[t0..t1].find('?') {
        Some(q) => (t0..t0 + q, Some(t0 + q + 1..t1)),
        None => (t0..t1, None),
    };
    Some((0..sp1, path, query, protocol))
}

/// A piece of a possibly-owned string that still borrows from the log line when it can.
pub(crate) fn sub<'a>(s: &Cow<'a, str>, r: Range<usize>) -> Cow<'a, str> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(&s[r]),
        Cow::Owned(s) => Cow::Owned(s[r].to_owned()),
    }
}

/// Converts a log timestamp to `yyyy-mm-ddTHH:MM:SSZ` in UTC, the form the tracker's `url_tim`
/// wants. Accepted: the access log's `dd/Mon/yyyy:HH:MM:SS ±hhmm` (optionally still in its
/// `[ ]`); ISO 8601 with a zone (`2026-11-27T09:00:01+01:00`, `...Z`, `...+0100`, a space for
/// the `T`, fractions of a second), as nginx's `$time_iso8601` and JSON logs write it; and
/// seconds since 1970 (`1764234001`, `1764234001.123`: nginx's `$msec`, Caddy's `ts`).
/// Fractions of a second are dropped (the tracker counts whole seconds).
///
/// Returns `None` for anything else, including impossible dates (30 February, hour 24), an ISO
/// time without a zone (its UTC time is unknown) and results outside years 0000-9999. Month
/// names are matched without regard to case.
pub fn to_iso8601_utc(log_time: &str) -> Option<String> {
    let t = log_time.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    let utc = clf_seconds(t)
        .or_else(|| iso_seconds(t))
        .or_else(|| epoch_seconds(t))?;
    // Four digits show years 0000-9999 only.
    const FIRST: i64 = time::days_from_civil(0, 1, 1) * time::SECS_PER_DAY;
    const END: i64 = time::days_from_civil(10_000, 1, 1) * time::SECS_PER_DAY;
    (FIRST..END)
        .contains(&utc)
        .then(|| time::iso8601_from_unix(utc))
}

/// Seconds since 1970 of a local date and time at `offset` seconds east of UTC, if the date
/// and time exist.
fn utc_of(
    (year, month, day): (u32, u32, u32),
    (hour, minute, second): (u32, u32, u32),
    offset: i64,
) -> Option<i64> {
    if month == 0
        || month > 12
        || day == 0
        || day > days_in_month(i64::from(year), month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Local time is UTC plus the offset; through a day count, the date rolls over by itself.
    let local = time::days_from_civil(i64::from(year), month, day) * time::SECS_PER_DAY
        + i64::from(hour * 3600 + minute * 60 + second);
    Some(local - offset)
}

/// `yyyy-mm-ddTHH:MM:SS[.fff](Z|±hh:mm|±hhmm|±hh)`, `T` or a space between date and time.
fn iso_seconds(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let date = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let clock = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".").or_else(|| rest.strip_prefix(b",")) {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), zone @ ..] => {
            let (h, m) = match zone {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
                }
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    utc_of(date, clock, offset)
}

/// Seconds since 1970, whole or with a fraction (dropped).
fn epoch_seconds(t: &str) -> Option<i64> {
    let (whole, frac) = t.split_once('.').unwrap_or((t, "0"));
    if whole.is_empty()
        || whole.len() > 12
        || frac.is_empty()
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    whole.parse().ok()
}

/// The access log's `dd/Mon/yyyy:HH:MM:SS ±hhmm`.
fn clf_seconds(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
    {
        return None;
    }
    let day = digits(&b[0..2])?;
    let month = month_number(&b[3..6])?;
    let year = digits(&b[7..11])?;
    let hour = digits(&b[12..14])?;
    let minute = digits(&b[15..17])?;
    let second = digits(&b[18..20])?;
    let sign: i32 = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let off_h = digits(&b[22..24])?;
    let off_m = digits(&b[24..26])?;
    if off_h > 23 || off_m > 59 {
        return None;
    }
    let offset = i64::from(sign) * i64::from(off_h * 3600 + off_m * 60);
    utc_of((year, month, day), (hour, minute, second), offset)
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn month_number(b: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    MONTHS
        .iter()
        .position(|m| **m == lower)
        .map(|i| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMBINED: &str = include_str!("../../../tests/data/combined.log");
    const ORA: &str = include_str!("../../../tests/data/ora-wsgi.log");

    /// The expected fields of one line; ident and user are `-` on every sample line.
    #[derive(Debug)]
    struct E {
        ip: &'static str,
        time: &'static str,
        method: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        protocol: &'static str,
        status: u16,
        bytes: Option<u64>,
        referer: Option<&'static str>,
        useragent: Option<&'static str>,
    }

    fn check(line: &str, got: Option<LogRecord<'_>>, want: Option<&E>) {
        let (got, want) = match (got, want) {
            (None, None) => return,
            (Some(g), Some(w)) => (g, w),
            (g, w) => panic!("line {line:?}: got {g:?}, want {w:?}"),
        };
        assert_eq!(got.ip, want.ip, "{line}");
        assert_eq!(got.ident, "-", "{line}");
        assert_eq!(got.user, "-", "{line}");
        assert_eq!(got.time, want.time, "{line}");
        assert_eq!(got.method, want.method, "{line}");
        assert_eq!(got.path, want.path, "{line}");
        assert_eq!(got.query.as_deref(), want.query, "{line}");
        assert_eq!(got.protocol, want.protocol, "{line}");
        assert_eq!(got.status, want.status, "{line}");
        assert_eq!(got.bytes, want.bytes, "{line}");
        assert_eq!(got.referer.as_deref(), want.referer, "{line}");
        assert_eq!(got.useragent.as_deref(), want.useragent, "{line}");
        let target = match want.query {
            Some(q) => format!("{}?{q}", want.path),
            None => want.path.to_string(),
        };
        assert_eq!(
            got.request,
            format!("{} {target} {}", want.method, want.protocol)
        );
    }

    #[test]
    fn every_line_of_combined_log() {
        let expected = [
            Some(E { ip: "192.0.2.10", time: "27/Nov/2026:09:00:01 +0000", method: "GET", path: "/id/eprint/1234/", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(18234), referer: Some("https://www.google.com/"), useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "192.0.2.10", time: "27/Nov/2026:09:00:07 +0000", method: "GET", path: "/id/eprint/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(1048576), referer: Some("https://repo.example.ac.uk/id/eprint/1234/"), useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "192.0.2.10", time: "27/Nov/2026:09:00:09 +0000", method: "GET", path: "/id/eprint/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(1048576), referer: Some("https://repo.example.ac.uk/id/eprint/1234/"), useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "198.51.100.23", time: "27/Nov/2026:09:01:13 +0000", method: "GET", path: "/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 206, bytes: Some(65536), referer: None, useragent: Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15") }),
            Some(E { ip: "66.249.66.1", time: "27/Nov/2026:09:02:00 +0000", method: "GET", path: "/id/eprint/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(1048576), referer: None, useragent: Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)") }),
            Some(E { ip: "157.55.39.5", time: "27/Nov/2026:09:02:31 +0000", method: "GET", path: "/id/eprint/987/2/thesis.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(5242880), referer: None, useragent: Some("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)") }),
            Some(E { ip: "203.0.113.77", time: "27/Nov/2026:09:03:02 +0000", method: "GET", path: "/id/eprint/987/2/thesis.pdf", query: None, protocol: "HTTP/1.1", status: 304, bytes: Some(0), referer: None, useragent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0") }),
            Some(E { ip: "203.0.113.77", time: "27/Nov/2026:09:03:40 +0000", method: "HEAD", path: "/id/eprint/987/2/thesis.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(0), referer: None, useragent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0") }),
            Some(E { ip: "203.0.113.78", time: "27/Nov/2026:09:04:11 +0000", method: "GET", path: "/id/eprint/987/2/thesis.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(5242880), referer: Some("https://scholar.google.com/"), useragent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0") }),
            Some(E { ip: "2001:db8::1f", time: "27/Nov/2026:09:05:00 +0000", method: "GET", path: "/id/eprint/55/1/data-paper.pdf", query: None, protocol: "HTTP/2.0", status: 200, bytes: Some(734003), referer: None, useragent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1") }),
            Some(E { ip: "192.0.2.44", time: "27/Nov/2026:09:05:30 +0000", method: "GET", path: "/id/eprint/404404/1/missing.pdf", query: None, protocol: "HTTP/1.1", status: 404, bytes: Some(312), referer: None, useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0") }),
            Some(E { ip: "192.0.2.45", time: "27/Nov/2026:09:06:00 +0000", method: "POST", path: "/cgi/search/simple", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(20480), referer: Some("https://repo.example.ac.uk/"), useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0") }),
            Some(E { ip: "192.0.2.46", time: "27/Nov/2026:09:06:20 +0000", method: "GET", path: "/id/eprint/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(1048576), referer: None, useragent: Some("python-requests/2.32.3") }),
            Some(E { ip: "192.0.2.47", time: "27/Nov/2026:09:06:45 +0000", method: "GET", path: "/id/eprint/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(1048576), referer: None, useragent: Some("Mozilla/5.0 (compatible; \"quoted\" agent; Win64)") }),
            Some(E { ip: "192.0.2.48", time: "27/Nov/2026:09:07:00 +0000", method: "GET", path: "/bitstream/handle/10023/5678/jones-thesis.pdf", query: Some("sequence=1&isAllowed=y"), protocol: "HTTP/1.1", status: 200, bytes: Some(2097152), referer: Some("https://research-repository.example.edu/handle/10023/5678"), useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0") }),
            Some(E { ip: "192.0.2.49", time: "27/Nov/2026:09:07:30 +0000", method: "GET", path: "/server/api/core/bitstreams/3f1c2b9e-8a4d-4c7e-9b1a-2d5e6f708192/content", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(901120), referer: Some("https://research-repository.example.edu/items/a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"), useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "192.0.2.50", time: "27/Nov/2026:09:08:00 +0000", method: "GET", path: "/handle/10023/5678", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(30720), referer: None, useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "192.0.2.51", time: "27/Nov/2026:09:08:30 +0000", method: "GET", path: "/id/eprint/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 500, bytes: Some(512), referer: None, useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "192.0.2.52", time: "27/Nov/2026:10:08:31 +0100", method: "GET", path: "/id/eprint/42/3/slides%20final.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(409600), referer: None, useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "192.0.2.53", time: "27/Nov/2026:09:09:00 +0000", method: "GET", path: "/id/eprint/1234/1/smith2026-neutrino.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(1048576), referer: None, useragent: None }),
            Some(E { ip: "192.0.2.54", time: "27/Nov/2026:09:09:10 +0000", method: "GET", path: "/favicon.ico", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(1150), referer: None, useragent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36") }),
            Some(E { ip: "192.0.2.55", time: "27/Nov/2026:09:09:20 +0000", method: "GET", path: "/id/eprint/77/1/review.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(333333), referer: None, useragent: Some("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)") }),
            Some(E { ip: "192.0.2.56", time: "27/Nov/2026:09:09:30 +0000", method: "GET", path: "/id/eprint/77/1/review.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(333333), referer: None, useragent: Some("Wget/1.21.4") }),
            Some(E { ip: "192.0.2.57", time: "27/Nov/2026:09:09:40 +0000", method: "GET", path: "/id/eprint/77/1/review.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(333333), referer: Some("http://example.org/list"), useragent: Some("Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36") }),
            None,
            Some(E { ip: "192.0.2.58", time: "27/Nov/2026:09:10:00 +0000", method: "GET", path: "/id/eprint/77/1/review.pdf", query: None, protocol: "HTTP/1.1", status: 200, bytes: Some(333333), referer: None, useragent: Some("Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36") }),
            None,
            Some(E { ip: "192.0.2.59", time: "27/Nov/2026:09:10:10 +0000", method: "GET", path: "/id/eprint/77/1/review.pdf", query: Some("download=1"), protocol: "HTTP/1.1", status: 200, bytes: Some(333333), referer: None, useragent: Some("Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36") }),
        ];
        let lines: Vec<&str> = COMBINED.lines().collect();
        assert_eq!(
            lines.len(),
            expected.len(),
            "sample file changed; update the table"
        );
        for (line, want) in lines.iter().zip(&expected) {
            check(line, parse_combined(line), want.as_ref());
        }
    }

    #[test]
    fn unescaped_fields_are_owned_and_plain_ones_borrowed() {
        let line = COMBINED
            .lines()
            .find(|l| l.contains(r#"\"quoted\""#))
            .unwrap();
        let r = parse_combined(line).unwrap();
        assert!(matches!(r.useragent, Some(Cow::Owned(_))));
        assert!(matches!(r.path, Cow::Borrowed(_)));
        assert!(matches!(r.request, Cow::Borrowed(_)));
    }

    #[test]
    fn ora_lines_have_a_prefix_and_parse_once_it_is_removed() {
        for line in ORA.lines() {
            assert_eq!(parse_combined(line), None, "{line}");
            let rest = &line[line.find("[wsgi] ").unwrap() + 7..];
            let r = parse_combined(rest).expect(rest);
            assert_eq!(r.method, "GET");
            assert!(r.path.starts_with("/objects/uuid%3A"));
            assert!(r.time.ends_with(" +0100"));
        }
        let last4 = ORA.lines().nth(3).unwrap();
        let r = parse_combined(&last4[last4.find("[wsgi] ").unwrap() + 7..]).unwrap();
        assert_eq!(r.ip, "116.125.141.4");
        assert_eq!(r.query.as_deref(), Some("format=xml"));
        assert_eq!(r.bytes, None);
        assert_eq!(r.referer.as_deref(), Some("http://ora.ouls.ox.ac.uk/"));
    }

    #[test]
    fn common_format_has_no_referer_or_useragent() {
        let r =
            parse_combined(r#"::1 - alice [01/Apr/2009:01:14:27 +0100] "GET /a?b HTTP/1.0" 200 -"#)
                .unwrap();
        assert_eq!(
            (r.ip, r.user, r.status, r.bytes),
            ("::1", "alice", 200, None)
        );
        assert_eq!((r.path.as_ref(), r.query.as_deref()), ("/a", Some("b")));
        assert_eq!((r.referer, r.useragent), (None, None));
    }

    #[test]
    fn referer_without_useragent_and_extra_trailing_fields() {
        let base = r#"h - - [t] "GET / HTTP/1.1" 200 5"#;
        let fields = |suffix: &str| {
            let line = format!("{base}{suffix}");
            let r = parse_combined(&line).unwrap();
            (
                r.referer.map(Cow::into_owned),
                r.useragent.map(Cow::into_owned),
            )
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(fields(r#" "http://r/""#), (some("http://r/"), None));
        assert_eq!(fields(r#" "-" "UA" "10.0.0.1" 0.012"#), (None, some("UA")));
        assert_eq!(fields(" 0.012 extra"), (None, None));
        assert_eq!(fields("\t\"\"  \"\"\r\n"), (some(""), some("")));
    }

    #[test]
    fn malformed_request_lines() {
        let parse = |req: &str| {
            let line =
                format!(r#"192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] "{req}" 400 0 "-" "-""#);
            let r = parse_combined(&line).expect(req);
            (
                r.request.into_owned(),
                r.method.into_owned(),
                r.path.into_owned(),
                r.query.map(Cow::into_owned),
                r.protocol.into_owned(),
            )
        };
        let empty = |req: &str| {
            (
                req.to_string(),
                String::new(),
                String::new(),
                None,
                String::new(),
            )
        };
        assert_eq!(parse("-"), empty("-"));
        assert_eq!(parse(""), empty(""));
        assert_eq!(parse("GET"), empty("GET"));
        assert_eq!(parse(" /x HTTP/1.1"), empty(" /x HTTP/1.1"));
        assert_eq!(parse(r"\x16\x03\x01"), empty("\u{16}\u{3}\u{1}"));
        let s = String::from;
        assert_eq!(
            parse("GET /x"),
            (s("GET /x"), s("GET"), s("/x"), None, s(""))
        );
        assert_eq!(
            parse("GET /a b.pdf?x y HTTP/1.1"),
            (
                s("GET /a b.pdf?x y HTTP/1.1"),
                s("GET"),
                s("/a b.pdf"),
                Some(s("x y")),
                s("HTTP/1.1")
            )
        );
        assert_eq!(parse("GET /? HTTP/1.1").3, Some(s("")));
        assert_eq!(
            parse(r#"GET /a\"b HTTP/1.1"#),
            (
                s(r#"GET /a"b HTTP/1.1"#),
                s("GET"),
                s(r#"/a"b"#),
                None,
                s("HTTP/1.1")
            )
        );
    }

    #[test]
    fn escapes_are_undone() {
        assert_eq!(unescape(r#"a\"b\\c"#), r#"a"b\c"#);
        assert_eq!(unescape(r"tab\there\nnl"), "tab\there\nnl");
        // Nginx writes non-ASCII bytes as \xHH: recover the UTF-8 text.
        assert_eq!(unescape(r"caf\xC3\xA9"), "café");
        assert_eq!(unescape(r"latin1 \xE9!"), "latin1 \u{FFFD}!");
        assert_eq!(unescape(r"\q \x4 \xZZ \"), r"\q \x4 \xZZ \");
    }

    #[test]
    fn not_log_lines() {
        for line in [
            "",
            "   ",
            "\n",
            "this is not an access log line at all",
            "192.0.2.1 - - 27/Nov/2026 \"GET / HTTP/1.1\" 200 1",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] GET / HTTP/1.1 200 1",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET / HTTP/1.1\" 2xx 1",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET / HTTP/1.1\" +200 1",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET / HTTP/1.1\" 70000 1",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET / HTTP/1.1\" 200 12k",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET / HTTP/1.1\" 200",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"trunc",
            "192.0.2.1 - - [27/Nov/2026:09:00:01 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\\",
        ] {
            assert_eq!(parse_combined(line), None, "{line:?}");
        }
    }

    #[test]
    fn odd_inputs_never_panic() {
        let valid = COMBINED
            .lines()
            .find(|l| l.contains(r#"\"quoted\""#))
            .unwrap();
        let non_ascii = "é€ - 用户 [27/Nov/2026:09:00:01 +0000] \"GET /ü?ß HTTP/1.1\" 200 1 \"ré\" \"破解后的\"";
        let r = parse_combined(non_ascii).unwrap();
        assert_eq!((r.ip, r.user, r.path.as_ref()), ("é€", "用户", "/ü"));
        assert_eq!(r.useragent.as_deref(), Some("破解后的"));
        for line in [valid, non_ascii] {
            for (i, _) in line.char_indices() {
                let truncated = &line[..i];
                let r = parse_combined(truncated);
                // Cutting before the byte count leaves a line that must be rejected.
                if !truncated.contains(" 200 ") {
                    assert_eq!(r, None, "{truncated:?}");
                }
                let _ = to_iso8601_utc(truncated);
            }
        }
        for odd in [
            "\"",
            "\"\"",
            "\"\"\"",
            "[",
            "]",
            "[]",
            "\\",
            "\"\\",
            "\0\0\0",
            "- - - [",
            "- - - [] \"",
        ] {
            assert_eq!(parse_combined(odd), None, "{odd:?}");
            assert_eq!(to_iso8601_utc(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn iso8601_examples() {
        let cases = [
            ("01/Apr/2009:01:14:27 +0100", "2009-04-01T00:14:27Z"),
            ("[01/Apr/2009:01:14:27 +0100]", "2009-04-01T00:14:27Z"),
            ("27/Nov/2026:09:00:01 +0000", "2026-11-27T09:00:01Z"),
            ("27/Nov/2026:10:08:31 +0100", "2026-11-27T09:08:31Z"),
            ("27/Nov/2026:09:00:01 -0000", "2026-11-27T09:00:01Z"),
            ("17/Oct/2010:04:34:42 +0130", "2010-10-17T03:04:42Z"),
            ("17/Oct/2010:22:00:00 -0530", "2010-10-18T03:30:00Z"),
            // Year, month and leap-day rollover in both directions.
            ("01/Jan/2010:00:30:00 +0100", "2009-12-31T23:30:00Z"),
            ("31/Dec/2009:23:30:00 -0100", "2010-01-01T00:30:00Z"),
            ("01/Mar/2024:00:30:00 +0100", "2024-02-29T23:30:00Z"),
            ("01/Mar/2023:00:30:00 +0100", "2023-02-28T23:30:00Z"),
            ("01/Mar/1900:00:30:00 +0100", "1900-02-28T23:30:00Z"),
            ("01/Mar/2000:00:30:00 +0100", "2000-02-29T23:30:00Z"),
            ("29/Feb/2024:23:00:00 -0200", "2024-03-01T01:00:00Z"),
            ("30/Apr/2024:23:59:59 -2359", "2024-05-01T23:58:59Z"),
            ("01/May/2024:00:00:00 +2359", "2024-04-30T00:01:00Z"),
            ("15/jun/2024:12:00:00 +1345", "2024-06-14T22:15:00Z"),
            ("  15/JUN/2024:12:00:00 -0930 ", "2024-06-15T21:30:00Z"),
            ("01/Jan/0000:12:00:00 +0100", "0000-01-01T11:00:00Z"),
            ("31/Dec/9999:12:00:00 -0100", "9999-12-31T13:00:00Z"),
        ];
        for (clf, iso) in cases {
            assert_eq!(to_iso8601_utc(clf).as_deref(), Some(iso), "{clf}");
        }
    }

    #[test]
    fn iso8601_rejects() {
        for bad in [
            "",
            "01/Apr/2009:01:14:27",
            "01/Apr/2009:01:14:27 0100",
            "01/Apr/2009:01:14:27 +01:00",
            "1/Apr/2009:01:14:27 +0100",
            "01/Apx/2009:01:14:27 +0100",
            "00/Apr/2009:01:14:27 +0100",
            "31/Apr/2009:01:14:27 +0100",
            "29/Feb/2023:01:14:27 +0100",
            "29/Feb/1900:01:14:27 +0100",
            "01/Apr/2009:24:00:00 +0100",
            "01/Apr/2009:23:60:00 +0100",
            "01/Apr/2009:23:59:60 +0100",
            "01/Apr/2009:23:59:59 +2400",
            "01/Apr/2009:23:59:59 +0060",
            "01/Apr/2009-23:59:59 +0000",
            "01/Apr/2009:2a:59:59 +0000",
            "01/Jan/0000:00:30:00 +0100",
            "31/Dec/9999:23:30:00 -0100",
            "0١/Apr/2009:01:14:27 +0100",
            // ISO 8601 without a zone, or malformed.
            "2009-04-01T00:14:27",
            "2009-04-01T00:14:27.5",
            "2009-04-01T00:14:27.Z",
            "2009-04-01T00:14:27+1",
            "2009-04-01T00:14:27+01:0",
            "2009-04-01T00:14:27+24:00",
            "2009-04-01X00:14:27Z",
            "2009-13-01T00:14:27Z",
            "2009-02-29T00:14:27Z",
            "2009-04-01T00:14:60Z",
            // Not seconds since 1970.
            "-1764234001",
            "1764234001.",
            ".5",
            "1e9",
            "1764234001.5.5",
            "9999999999999",
        ] {
            assert_eq!(to_iso8601_utc(bad), None, "{bad:?}");
        }
    }

    /// The other forms JSON logs and other servers write: ISO 8601 with a zone, and seconds
    /// since 1970, fractions dropped.
    #[test]
    fn iso8601_and_epoch_forms() {
        for (given, want) in [
            ("2026-11-27T09:00:01+00:00", "2026-11-27T09:00:01Z"),
            ("2026-11-27T10:00:01+01:00", "2026-11-27T09:00:01Z"),
            ("2026-11-27T10:00:01+0100", "2026-11-27T09:00:01Z"),
            ("2026-11-27T10:00:01+01", "2026-11-27T09:00:01Z"),
            ("2026-11-27 09:00:01Z", "2026-11-27T09:00:01Z"),
            ("2026-11-27t09:00:01z", "2026-11-27T09:00:01Z"),
            ("2026-11-27T09:00:01.999999Z", "2026-11-27T09:00:01Z"),
            ("2026-11-27T09:00:01,5-00:30", "2026-11-27T09:30:01Z"),
            // Across the year boundary, both ways.
            ("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00Z"),
            ("2027-01-01T00:30:00+01:00", "2026-12-31T23:30:00Z"),
            ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00Z"),
            ("1764234001", "2025-11-27T09:00:01Z"),
            ("1764234001.987", "2025-11-27T09:00:01Z"),
            (" 0 ", "1970-01-01T00:00:00Z"),
            ("253402300799", "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(to_iso8601_utc(given).as_deref(), Some(want), "{given}");
        }
        assert_eq!(to_iso8601_utc("253402300800"), None, "year 10000");
    }

    /// Seconds since 0000-01-01T00:00 counted naively, to check the day-count arithmetic
    /// independently.
    fn naive_seconds(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        let days_before_year: u32 = (0..y)
            .map(|y| 365 + u32::from(time::is_leap(i64::from(y))))
            .sum();
        let days_before_month: u32 = (1..mo).map(|m| days_in_month(i64::from(y), m)).sum();
        let days = i64::from(days_before_year + days_before_month + d - 1);
        days * 86400 + i64::from(h * 3600 + mi * 60 + s)
    }

    proptest::proptest! {
        #[test]
        fn iso8601_agrees_with_naive_count(
            y in 1u32..9999, mo in 1u32..=12, d in 1u32..=31, h in 0u32..24, mi in 0u32..60,
            s in 0u32..60, neg: bool, oh in 0u32..24, om in 0u32..60,
        ) {
            let d = d.min(days_in_month(i64::from(y), mo));
            const NAMES: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let clf = format!(
                "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} {}{oh:02}{om:02}",
                NAMES[mo as usize - 1],
                if neg { '-' } else { '+' }
            );
            let iso = to_iso8601_utc(&clf).unwrap();
            let n = |r: std::ops::Range<usize>| iso[r].parse::<u32>().unwrap();
            let got = naive_seconds(n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19));
            let offset = i64::from(oh * 3600 + om * 60) * if neg { -1 } else { 1 };
            proptest::prop_assert_eq!(got, naive_seconds(y, mo, d, h, mi, s) - offset, "{}", clf);
        }

        #[test]
        fn arbitrary_text_never_panics(line in ".*") {
            let _ = parse_combined(&line);
            let _ = to_iso8601_utc(&line);
        }

        #[test]
        fn arbitrary_log_like_text_never_panics(
            line in r#"[ -~é\\"\[\]]{0,40} - - \[[ -~]{0,30}\] "[ -~\\"]{0,30}" [0-9]{1,4} [0-9-]{1,3}( "[ -~\\"]{0,20}"){0,3}"#
        ) {
            let _ = parse_combined(&line);
        }
    }
}
