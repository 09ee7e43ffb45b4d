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
