//! The names of a queue's keys in Redis, and the form a dead letter is stored in.

use crate::queue::{DeadLetter, QResult, QueueError};

/// The key names of one queue.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub queue: String,
    pub dead: String,
    pub since: String,
    pub ops: String,
    /// Messages a consumer held when it stopped without finishing them: taken one at a time.
    pub suspect: String,
    /// How often each suspect (by the SHA-1 of its text) was taken alone.
    pub attempts: String,
    /// Each worker consumer's requests to the tracker (JSON by consumer name), for `status`.
    pub tracker: String,
}

impl Keys {
    pub(crate) fn new(queue: &str) -> Self {
        Keys {
            queue: queue.to_string(),
            dead: format!("{queue}:dead"),
            since: format!("{queue}:since"),
            ops: format!("{queue}:ops"),
            suspect: format!("{queue}:suspect"),
            attempts: format!("{queue}:attempts"),
            tracker: format!("{queue}:tracker"),
        }
    }

    pub(crate) fn inflight(&self, consumer: &str) -> String {
        format!("{}:inflight:{consumer}", self.queue)
    }

    pub(crate) fn alive(&self, consumer: &str) -> String {
        format!("{}:alive:{consumer}", self.queue)
    }

    /// SCAN pattern for every in-flight list of this queue.
    pub(super) fn inflight_pattern(&self) -> String {
        format!("{}:inflight:*", glob_escape(&self.queue))
    }

    pub(super) fn alive_pattern(&self) -> String {
        format!("{}:alive:*", glob_escape(&self.queue))
    }
}

/// Escapes SCAN/KEYS glob characters so a queue name matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A dead letter as stored in the `Q:dead` list.
pub(super) fn encode_dead_letter(letter: &DeadLetter) -> QResult<String> {
    serde_json::to_string(letter)
        .map_err(|e| QueueError::Server(format!("cannot encode a dead letter: {e}")))
}

/// A stored dead letter; an entry that is not our JSON is shown whole as the message.
/// Bytes that are not UTF-8 (written by another program) are shown escaped, never refused.
pub(crate) fn parse_dead_letter(raw: &[u8]) -> DeadLetter {
    serde_json::from_slice(raw).unwrap_or_else(|_| DeadLetter {
        message: crate::util::text::escape_invalid_utf8(raw),
        message_base64: None,
        reason: "(not a loglines dead letter)".into(),
        section: String::new(),
        consumer: String::new(),
        at: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_queue_names_are_escaped() {
        assert_eq!(Keys::new("a*b").inflight_pattern(), "a\\*b:inflight:*");
    }
}
