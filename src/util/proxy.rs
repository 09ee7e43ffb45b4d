//! The HTTP proxy that outgoing requests (to the tracker, and a plugin's `http_get`) use: the
//! one the environment names, as ureq reads it, minus SOCKS proxies, which are not built in.

use std::sync::atomic::{AtomicBool, Ordering};

/// The variables ureq reads, in its order: the first that holds a proxy wins.
const VARIABLES: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

/// Set once the SOCKS warning has been logged (workers and plugin VMs all ask).
static WARNED: AtomicBool = AtomicBool::new(false);

/// The first HTTP(S) proxy named in the environment, with `NO_PROXY` / `no_proxy` applied.
/// A SOCKS proxy is skipped with a warning (once a process), so that, say, `ALL_PROXY` for
/// other programs does not hide an `HTTP_PROXY` behind it, nor make every request fail with
/// "no address to connect to".
pub fn from_env() -> Option<ureq::Proxy> {
    from_vars(|name| std::env::var(name).ok())
}

/// [`from_env`] over any source of variables (the tests give their own).
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<ureq::Proxy> {
    let no_proxy = var("NO_PROXY").or_else(|| var("no_proxy"));
    for name in VARIABLES {
        let Some(value) = var(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let Ok(p) = ureq::Proxy::new(&value) else {
            log::warn!("{name} = {value} is not a proxy address ureq understands; ignored");
            continue;
        };
        if !matches!(
            p.protocol(),
            ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
        ) {
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "{name} names the SOCKS proxy {}:{}, which loglines does not support; it is not used",
                    p.host(),
                    p.port()
                );
            }
            continue;
        }
        let mut b = ureq::Proxy::builder(p.protocol())
            .host(p.host())
            .port(p.port());
        if let Some(u) = p.username() {
            b = b.username(u);
        }
        if let Some(pw) = p.password() {
            b = b.password(pw);
        }
        for expr in no_proxy.iter().flat_map(|n| n.split(',')) {
            let expr = expr.trim();
            if !expr.is_empty() {
                b = b.no_proxy(expr);
            }
        }
        match b.build() {
            Ok(p) => return Some(p),
            Err(e) => log::warn!("{name} = {value}: {e}; ignored"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn socks_is_skipped_for_the_next_http_proxy_and_no_proxy_applies() {
        assert!(from_vars(vars(&[])).is_none());
        assert!(from_vars(vars(&[("ALL_PROXY", "socks5://127.0.0.1:1080")])).is_none());
        let p = from_vars(vars(&[
            ("ALL_PROXY", "socks5://127.0.0.1:1080"),
            ("http_proxy", "http://user:secret@proxy.example.ac.uk:3128"),
            ("NO_PROXY", "localhost, .internal.example.ac.uk"),
        ]))
        .expect("the HTTP proxy behind the SOCKS one");
        assert_eq!(p.protocol(), ureq::ProxyProtocol::Http);
        assert_eq!((p.host(), p.port()), ("proxy.example.ac.uk", 3128));
        assert_eq!((p.username(), p.password()), (Some("user"), Some("secret")));
        let uri = |u: &str| u.parse::<ureq::http::Uri>().unwrap();
        assert!(p.is_no_proxy(&uri("http://localhost/counter/")));
        assert!(p.is_no_proxy(&uri("https://irus.internal.example.ac.uk/counter/")));
        assert!(!p.is_no_proxy(&uri("https://irus.jisc.ac.uk/counter/")));
        // The first HTTP one wins, as in ureq.
        let p = from_vars(vars(&[
            ("HTTPS_PROXY", "http://first.example:8080"),
            ("HTTP_PROXY", "http://second.example:8080"),
        ]))
        .unwrap();
        assert_eq!(p.host(), "first.example");
    }
}
