//! `loglines.trusted_proxies(list)`: which address of a request is the client's, when the
//! repository sits behind proxies or load balancers that add it to X-Forwarded-For.
//!
//! The header is a list a client can write anything into; only what the trusted proxies
//! appended can be believed. So the client is found from the right: while an address is one of
//! the trusted proxies, the one before it is the next hop towards the client; the first that is
//! not trusted is the client. A connecting address that is not a trusted proxy is the client
//! itself, whatever the header says.

use std::net::IpAddr;

/// A set of networks (`10.0.0.0/8`, `2001:db8::/32`, a bare address).
#[derive(Debug, Clone, Default)]
pub struct Networks(Vec<(IpAddr, u8)>);

impl Networks {
    /// Parses a list separated by commas and/or whitespace; an error names the entry.
    pub fn parse(list: &str) -> Result<Networks, String> {
        let mut out = Vec::new();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (entry, None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| {
                format!(
                    "`{entry}` is not an address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)"
                )
            })?;
            let addr = canonical(addr);
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits =
                match bits {
                    None => max,
                    Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                        format!("`{entry}`: the prefix length must be 0 to {max}")
                    })?,
                };
            out.push((addr, bits));
        }
        Ok(Networks(out))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            _ => false,
        })
    }

    /// The client's address for a request from `addr` carrying `forwarded_for` (the
    /// X-Forwarded-For header, if logged).
    /// An address taken from the header comes without the port some proxies add.
    pub fn client(&self, addr: &str, forwarded_for: Option<&str>) -> String {
        match forwarded_for.and_then(|x| self.forwarded_entry(addr, x)) {
            Some((ip, _)) => ip.to_string(),
            None => addr.to_string(),
        }
    }

    /// The client's address when it is not `addr` itself (`addr` is a trusted proxy and the
    /// header `xff` names the client), with the text of the header's entry (without a port or
    /// brackets), which a parser can hand on without formatting a new string. None when `addr`
    /// is the client.
    pub fn forwarded_entry<'x>(&self, addr: &str, xff: &'x str) -> Option<(IpAddr, &'x str)> {
        if !parse_ip(addr).is_some_and(|(ip, _)| self.contains(ip)) {
            return None;
        }
        // Malformed entries are skipped, not fatal; if every valid one is trusted, the leftmost
        // (the farthest hop) is as close to the client as the header gets.
        let mut leftmost = None;
        for entry in xff.rsplit(',').map(str::trim) {
            let Some((ip, text)) = parse_ip(entry) else {
                continue;
            };
            if !self.contains(ip) {
                return Some((ip, text));
            }
            leftmost = Some((ip, text));
        }
        leftmost
    }
}

/// An address as logged: plain, or IPv6 in brackets, or with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`); with the text of the address alone.
fn parse_ip(s: &str) -> Option<(IpAddr, &str)> {
    if let Ok(ip) = s.parse() {
        return Some((ip, s));
    }
    let s = s
        .strip_prefix('[')
        .map_or(s, |rest| rest.split(']').next().unwrap_or(rest));
    if let Ok(ip) = s.parse() {
        return Some((ip, s));
    }
    let (a, _) = s.rsplit_once(':')?;
    a.parse().ok().map(|ip| (ip, a))
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let n = Networks::parse("10.0.0.0/8, 192.168.1.1 2001:db8::/32").unwrap();
        // Through two trusted proxies: the client is before them.
        assert_eq!(
            n.client("10.0.0.5", Some("203.0.113.9, 10.0.0.2")),
            "203.0.113.9"
        );
        // A client that writes its own header: only the hop the proxy added is believed.
        assert_eq!(
            n.client("10.0.0.5", Some("1.1.1.1, 198.51.100.7")),
            "198.51.100.7"
        );
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(n.client("198.51.100.7", Some("1.1.1.1")), "198.51.100.7");
        // Malformed entries skipped; no header; everything trusted.
        assert_eq!(
            n.client("10.0.0.5", Some("203.0.113.9, unknown, ,")),
            "203.0.113.9"
        );
        assert_eq!(n.client("10.0.0.5", None), "10.0.0.5");
        assert_eq!(n.client("10.0.0.5", Some("10.1.1.1, 10.2.2.2")), "10.1.1.1");
        // IPv6, IPv4 written as IPv6, ports and brackets.
        assert_eq!(n.client("2001:db8::5", Some("2001:db9::1")), "2001:db9::1");
        assert_eq!(
            n.client("::ffff:10.0.0.5", Some("203.0.113.9")),
            "203.0.113.9"
        );
        assert_eq!(
            n.client("10.0.0.5", Some("203.0.113.9:5555")),
            "203.0.113.9"
        );
        assert_eq!(
            n.client("10.0.0.5", Some("[2001:db9::1]:443")),
            "2001:db9::1"
        );
        assert!(n.contains("192.168.1.1".parse().unwrap()));
        assert!(!n.contains("192.168.1.2".parse().unwrap()));
    }

    #[test]
    fn prefixes_are_exact_to_the_bit() {
        let n = Networks::parse("192.0.2.128/25").unwrap();
        assert!(n.contains("192.0.2.200".parse().unwrap()));
        assert!(!n.contains("192.0.2.127".parse().unwrap()));
        assert!(Networks::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_named() {
        for (list, want) in [
            (
                "10.0.0.0/33",
                "`10.0.0.0/33`: the prefix length must be 0 to 32",
            ),
            ("10.0.0/8", "`10.0.0/8` is not an address"),
            ("::/129", "0 to 128"),
            ("proxy.example", "`proxy.example` is not"),
        ] {
            let e = Networks::parse(list).unwrap_err();
            assert!(e.contains(want), "{list}: {e}");
        }
    }
}
