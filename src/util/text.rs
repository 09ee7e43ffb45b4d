//! Cutting text that comes from outside (log lines, URLs, answers, plugin errors) to a length
//! fit for a log line or a dead-letter reason, without splitting a UTF-8 character.

/// The first `max` bytes of `s` (fewer, to end on a character boundary).
pub fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` whole if it is at most `max` bytes, else its start and how long it was, so a reader
/// knows it was cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        format!("{}... ({} bytes)", prefix(s, max), s.len())
    }
}

/// Where to cut `bytes` to keep at most `max` of them without splitting a UTF-8 character:
/// `max` backed off over at most three continuation bytes (bytes that are not UTF-8 are cut at
/// `max` exactly).
pub fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let continuation = |i: usize| bytes[i] & 0xC0 == 0x80;
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| !continuation(i))
        .unwrap_or(max)
}

/// `bytes` as text: valid UTF-8 as it is, every byte of an invalid sequence as `\xHH` (as
/// Apache and nginx write them), so a reader sees exactly which bytes were there.
pub fn escape_invalid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `url` with the password of its `user:password@` part (or, without a colon, all of that
/// part) replaced by `***`, for messages that quote a URL from a configuration file. Works on
/// URLs too malformed to parse, which is when they get quoted.
pub fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    // The last `@` before the path: a password may itself contain `@` (unescaped, by mistake).
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{user}{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_shown_byte_by_byte() {
        assert_eq!(escape_invalid_utf8(b"ok \xc3\xa9"), "ok \u{e9}");
        assert_eq!(escape_invalid_utf8(b"a\xffb\xc3"), "a\\xffb\\xc3");
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact_userinfo("redis://app:s3cret@db.example:6379/0"),
            "redis://app:***@db.example:6379/0"
        );
        assert_eq!(
            redact_userinfo("rediss://:pw@h:99999"),
            "rediss://:***@h:99999"
        );
        assert_eq!(redact_userinfo("redis://pw@h/x"), "redis://***@h/x");
        // A password with an unescaped `@` is hidden whole.
        assert_eq!(redact_userinfo("redis://u:p@ss@h/0"), "redis://u:***@h/0");
        assert_eq!(redact_userinfo("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_userinfo("not a url"), "not a url");
    }

    #[test]
    fn byte_cuts_keep_characters_whole() {
        assert_eq!(utf8_cut(b"abc", 5), 3);
        assert_eq!(utf8_cut(b"abcdef", 4), 4);
        // "\u{20ac}" (the euro sign) is three bytes: a cut inside it backs off before it.
        let euro = "a\u{20ac}b".as_bytes();
        assert_eq!(utf8_cut(euro, 2), 1);
        assert_eq!(utf8_cut(euro, 3), 1);
        assert_eq!(utf8_cut(euro, 4), 4);
        // Not UTF-8 at all: cut where asked.
        assert_eq!(utf8_cut(&[0x80; 10], 5), 5);
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(prefix("abc", 10), "abc");
        assert_eq!(prefix("abcdef", 3), "abc");
        // "é" is two bytes: a cut inside it backs off before it.
        assert_eq!(prefix("aé", 2), "a");
        assert_eq!(shorten("short", 5), "short");
        assert_eq!(shorten("aéb", 2), "a... (4 bytes)");
    }
}
