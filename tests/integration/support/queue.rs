//! Message builders and readers shared by the queue tests, so the Redis and embedded transports
//! are exercised with the same messages.

use loglines::queue::Message;
use std::ops::RangeInclusive;

/// One message per item, bodies as given.
pub fn msgs(items: &[&str]) -> Vec<Message> {
    items.iter().map(|s| Message::new(*s)).collect()
}

/// The bodies of `ms`, in order.
pub fn bodies(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| m.body.clone()).collect()
}

/// Messages whose bodies are the numbers of `range`, in order.
pub fn numbered(range: RangeInclusive<u32>) -> Vec<Message> {
    range.map(|i| Message::new(i.to_string())).collect()
}

/// The numbers of `range` as strings: what `bodies(&numbered(range))` gives.
pub fn strs(range: RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// Takes `n` times, each take giving exactly one message taken alone after a consumer stopped
/// holding it (a suspect, on its `attempts`-th attempt); their bodies in order. Not acked.
pub fn take_suspects(
    c: &mut dyn loglines::queue::Consumer,
    n: usize,
    attempts: u32,
    wait: std::time::Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let got = c.take(100, wait).unwrap();
        assert_eq!(
            got.len(),
            1,
            "take {i}: a suspect comes alone: {:?}",
            bodies(&got)
        );
        assert_eq!(got[0].attempts, attempts, "take {i}: {}", got[0].body);
        out.push(got[0].body.clone());
    }
    out
}
