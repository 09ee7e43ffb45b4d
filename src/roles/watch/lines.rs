//! Splits a byte stream into log lines and wraps each line as a message, for the watcher and
//! `loglines push` alike.
//!
//! A line ends at `\n`; a `\r` just before it is stripped. A line longer than the limit is never
//! held whole: once it is known to be too long only its first bytes are kept and the rest is
//! counted as it streams past, so a 2 MiB line costs the limit plus one read buffer of memory,
//! not 2 MiB.

use serde::Serialize;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// How many of an over-long line's first bytes go into its dead letter.
pub(crate) const DEAD_HEAD_BYTES: usize = 1024;

/// How often the count of lines with invalid UTF-8 is summarised in the log.
const INVALID_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// One result of splitting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A complete line, without its line end.
    Line(&'a [u8]),
    /// A line over the limit: its length (without the line end) and its first bytes.
    TooLong { len: u64, head: &'a [u8] },
}

/// Turns chunks of bytes into [`Piece`]s, holding an unfinished line between chunks.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    max: usize,
    /// The start of an unfinished line (or, while skipping, the head of an over-long one).
    partial: Vec<u8>,
    /// Some(bytes seen so far) while streaming over a line already known to be too long.
    skipping: Option<u64>,
    /// Whether the last byte seen while skipping was `\r` (it may precede the `\n` of the next
    /// chunk and then is part of the line end, not of the line).
    skipped_cr: bool,
}

impl LineSplitter {
    pub(crate) fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            max: max_line_bytes,
            partial: Vec::new(),
            skipping: None,
            skipped_cr: false,
        }
    }

    /// Bytes of an unfinished line held (or skipped) so far.
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.skipping.unwrap_or(self.partial.len() as u64)
    }

    /// Splits `chunk`; `emit` gets each piece and the index in `chunk` just after its `\n`.
    pub(crate) fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(Piece<'_>, usize)) {
        let mut start = 0;
        while start < chunk.len() {
            let Some(nl) = chunk[start..].iter().position(|&b| b == b'\n') else {
                self.hold(&chunk[start..]);
                return;
            };
            let seg = &chunk[start..start + nl];
            let after = start + nl + 1;
            if let Some(seen) = self.skipping.take() {
                let cr = match seg.last() {
                    Some(&b) => b == b'\r',
                    None => self.skipped_cr,
                };
                let len = seen + seg.len() as u64 - u64::from(cr);
                emit(
                    Piece::TooLong {
                        len,
                        head: &self.partial,
                    },
                    after,
                );
                self.partial.clear();
            } else if self.partial.is_empty() {
                // The common case: the whole line is inside this chunk, no copy needed.
                let line = strip_cr(seg);
                emit(self.classify(line), after);
            } else {
                self.partial.extend_from_slice(seg);
                let whole = std::mem::take(&mut self.partial);
                let line = strip_cr(&whole);
                emit(self.classify(line), after);
                // Keep the allocation for the next unfinished line.
                self.partial = whole;
                self.partial.clear();
            }
            start = after;
        }
    }

    /// The unfinished line as a final piece, when the stream has ended for good (end of
    /// stdin, a rotated file that will get no more writes). None when nothing is held.
    pub(crate) fn finish(&mut self) -> Option<Piece<'_>> {
        if let Some(seen) = self.skipping.take() {
            let len = seen - u64::from(self.skipped_cr);
            return Some(Piece::TooLong {
                len,
                head: &self.partial,
            });
        }
        if self.partial.is_empty() {
            return None;
        }
        let n = strip_cr(&self.partial).len();
        self.partial.truncate(n);
        if n > self.max {
            Some(Piece::TooLong {
                len: n as u64,
                head: &self.partial[..DEAD_HEAD_BYTES.min(n)],
            })
        } else {
            Some(Piece::Line(&self.partial))
        }
    }

    /// Forgets whatever is held (after [`finish`](Self::finish), or when the file was truncated
    /// under it).
    pub(crate) fn clear(&mut self) {
        self.partial.clear();
        self.skipping = None;
        self.skipped_cr = false;
    }

    fn classify<'a>(&self, line: &'a [u8]) -> Piece<'a> {
        if line.len() > self.max {
            Piece::TooLong {
                len: line.len() as u64,
                head: &line[..DEAD_HEAD_BYTES.min(line.len())],
            }
        } else {
            Piece::Line(line)
        }
    }

    /// Keeps the tail of a chunk that has no `\n`, switching to skipping once the line cannot
    /// fit the limit any more (one byte of slack for a `\r` that will be stripped).
    fn hold(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            return;
        }
        if let Some(seen) = &mut self.skipping {
            *seen += rest.len() as u64;
            self.skipped_cr = rest.last() == Some(&b'\r');
            return;
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > self.max + 1 {
            self.skipping = Some(self.partial.len() as u64);
            self.skipped_cr = self.partial.last() == Some(&b'\r');
            self.partial.truncate(DEAD_HEAD_BYTES);
            self.partial.shrink_to(DEAD_HEAD_BYTES);
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The message text: `{"service": ..., "logline": ...}` in that key order (the 2010 format).
#[derive(Serialize)]
struct Wrapped<'a> {
    service: &'a str,
    logline: &'a str,
}

/// Wraps lines as messages for one service, converting invalid UTF-8 and keeping count of it.
#[derive(Debug)]
pub(crate) struct Wrapper {
    service: String,
    /// Lines with invalid UTF-8 since the start.
    pub(crate) invalid: u64,
    /// How many of those were already reported in the log.
    reported: u64,
    last_summary: Instant,
}

impl Wrapper {
    pub(crate) fn new(service: &str) -> Self {
        Wrapper {
            service: service.to_string(),
            invalid: 0,
            reported: 0,
            last_summary: Instant::now(),
        }
    }

    /// The message for `line`. `place` says where the line was (for the warning about the
    /// first line with invalid UTF-8).
    pub(crate) fn wrap(&mut self, line: &[u8], place: impl FnOnce() -> String) -> String {
        let text = String::from_utf8_lossy(line);
        if let Cow::Owned(_) = text {
            self.invalid += 1;
            if self.invalid == 1 {
                log::warn!(
                    "line with invalid UTF-8 at {}: converted, each bad byte replaced by U+FFFD (further ones are counted and summarised every minute)",
                    place()
                );
                self.reported = 1;
            }
        }
        wrap_text(&self.service, &text)
    }

    /// Logs how many lines with invalid UTF-8 were converted since the last summary, at most
    /// once a minute (or now, with `force`, at the end of a run).
    pub(crate) fn summarise(&mut self, force: bool) {
        if self.invalid == self.reported {
            return;
        }
        if !force && self.last_summary.elapsed() < INVALID_SUMMARY_EVERY {
            return;
        }
        log::warn!(
            "{} more lines with invalid UTF-8 converted ({} since start); the log's writer does not write UTF-8 everywhere",
            self.invalid - self.reported,
            self.invalid
        );
        self.reported = self.invalid;
        self.last_summary = Instant::now();
    }
}

/// `{"service": service, "logline": line}` as JSON text.
pub(crate) fn wrap_text(service: &str, line: &str) -> String {
    // Serialising two string fields cannot fail; the fallback only keeps this total.
    serde_json::to_string(&Wrapped {
        service,
        logline: line,
    })
    .unwrap_or_default()
}

/// The reason given with an over-long line's dead letter.
pub(crate) fn too_long_reason(len: u64, max: usize, head_len: usize) -> String {
    format!(
        "line of {len} bytes is longer than max_line_bytes ({max}); only its first {head_len} bytes are in this message; raise max_line_bytes to let such lines through"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `chunks` and returns what came out: lines as text, over-long ones as
    /// `TOO_LONG(len, head)`, each with the stream offset after its line end.
    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, u64)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut base = 0u64;
        for c in chunks {
            s.feed(c, |p, end| {
                let text = match p {
                    Piece::Line(l) => String::from_utf8_lossy(l).into_owned(),
                    Piece::TooLong { len, head } => {
                        format!("TOO_LONG({len},{})", String::from_utf8_lossy(head))
                    }
                };
                out.push((text, base + end as u64));
            });
            base += c.len() as u64;
        }
        out
    }

    #[test]
    fn lines_across_chunks_with_crlf_and_empty_lines() {
        let got = split(100, &[b"ab", b"c\r\n\nde", b"f\r", b"\ng"]);
        assert_eq!(
            got,
            vec![
                ("abc".to_string(), 5),
                (String::new(), 6),
                ("def".to_string(), 11)
            ]
        );
    }

    #[test]
    fn unfinished_line_is_held_and_finished_at_end() {
        let mut s = LineSplitter::new(100);
        let mut n = 0;
        s.feed(b"one\ntw", |_, _| n += 1);
        assert_eq!(n, 1);
        assert_eq!(s.pending_bytes(), 2);
        assert_eq!(s.finish(), Some(Piece::Line(b"tw")));
        s.clear();
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn over_long_lines_are_reported_with_length_not_split() {
        let long = vec![b'x'; 50];
        // Whole in one chunk, exactly at the limit, and streamed over several chunks (with a
        // CR whose LF comes in the next chunk).
        let got = split(
            10,
            &[
                &long,
                b"\r",
                b"\n0123456789\n",
                &long[..20],
                &long[..20],
                b"\n",
            ],
        );
        assert_eq!(got.len(), 3);
        assert!(got[0].0.starts_with("TOO_LONG(50,"), "{got:?}");
        assert_eq!(got[0].1, 52);
        assert_eq!(got[1], ("0123456789".to_string(), 63));
        assert!(got[2].0.starts_with("TOO_LONG(40,"), "{got:?}");
        assert_eq!(got[2].1, 104);
    }

    #[test]
    fn skipping_keeps_only_the_head_in_memory() {
        let mut s = LineSplitter::new(2048);
        let chunk = vec![b'y'; 64 * 1024];
        for _ in 0..32 {
            s.feed(&chunk, |_, _| panic!("no line end yet"));
        }
        assert_eq!(s.pending_bytes(), 32 * 64 * 1024);
        assert!(s.partial.capacity() < 8 * 1024, "{}", s.partial.capacity());
        let mut got = None;
        s.feed(b"\nnext\n", |p, _| {
            if got.is_none() {
                if let Piece::TooLong { len, head } = p {
                    got = Some((len, head.len()));
                }
            }
        });
        assert_eq!(got, Some((2 * 1024 * 1024, DEAD_HEAD_BYTES)));
    }

    #[test]
    fn wrapping_keeps_key_order_and_counts_invalid_utf8() {
        let mut w = Wrapper::new("repo.example.org");
        let m = w.wrap(b"GET /a \"q\"", || "x".into());
        assert_eq!(
            m,
            r#"{"service":"repo.example.org","logline":"GET /a \"q\""}"#
        );
        let m = w.wrap(b"caf\xe9", || "x".into());
        assert_eq!(
            m,
            "{\"service\":\"repo.example.org\",\"logline\":\"caf\u{fffd}\"}"
        );
        assert_eq!(w.invalid, 1);
    }
}
