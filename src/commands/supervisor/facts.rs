//! What `list` and `--apply` need from a generated supervisord.conf (the socket, the web UI),
//! and the checks that make the 2010 mismatch (supervisorctl pointed at another socket than
//! the server's) impossible. The file is read as supervisord reads it: the shared INI reader
//! in supervisord's dialect (comments after a value).

use super::render::split_port;
use crate::config::ini::{self, Dialect, RawIni};
use std::path::{Path, PathBuf};

/// The facts of one supervisord.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFacts {
    /// `[unix_http_server] file`.
    pub socket: PathBuf,
    /// `[inet_http_server]`: address to connect to, and credentials usable by a client (a
    /// `{SHA}` password cannot be sent, so it gives none).
    pub inet: Option<(String, Option<(String, String)>)>,
}

/// The sections supervisord and supervisorctl need.
const REQUIRED: [&str; 5] = [
    "unix_http_server",
    "supervisord",
    "rpcinterface:supervisor",
    "supervisorctl",
    "include",
];

impl ConfFacts {
    /// Reads the facts from the text of a supervisord.conf, checking its parts agree.
    pub fn parse(text: &str) -> Result<ConfFacts, String> {
        let conf = ini::parse_dialect(Path::new("supervisord.conf"), text, Dialect::Supervisord)
            .map_err(|d| {
                let first = d.first().map(|d| d.to_string()).unwrap_or_default();
                format!("cannot be read as supervisord reads it: {first}")
            })?;
        let c = Conf(&conf);
        if let Some(sec) = REQUIRED.iter().find(|s| conf.section(s).is_none()) {
            return Err(format!(
                "has no [{sec}] section; supervisord and supervisorctl need it"
            ));
        }
        let socket = c.socket()?;
        c.serverurl_matches(&socket)?;
        c.absolute_paths()?;
        c.includes_enabled()?;
        Ok(ConfFacts {
            socket: PathBuf::from(socket),
            inet: c.inet(),
        })
    }
}

/// The parsed file, with supervisord's `%%` read as `%`.
struct Conf<'a>(&'a RawIni);

impl Conf<'_> {
    fn get(&self, sec: &str, key: &str) -> Option<String> {
        self.0.get(sec, key).map(|v| v.replace("%%", "%"))
    }

    /// `[unix_http_server] file`: an absolute path, on a socket only its owner can use.
    fn socket(&self) -> Result<String, String> {
        let socket = self
            .get("unix_http_server", "file")
            .ok_or("has no `file` in [unix_http_server]; expected the socket's absolute path")?;
        if !socket.starts_with('/') {
            return Err(format!(
                "[unix_http_server] file is `{socket}`; expected an absolute path"
            ));
        }
        let chmod = self
            .get("unix_http_server", "chmod")
            .unwrap_or_else(|| "0700".into());
        match u32::from_str_radix(chmod.trim_start_matches("0o"), 8) {
            Ok(m) if m & 0o007 == 0 => Ok(socket),
            _ => Err(format!(
                "[unix_http_server] chmod is `{chmod}`; whoever can use the socket controls every program, expected 0700 (or 0770 for a trusted group)"
            )),
        }
    }

    /// supervisorctl talks to the server's own socket.
    fn serverurl_matches(&self, socket: &str) -> Result<(), String> {
        let expected = format!("unix://{socket}");
        match self.get("supervisorctl", "serverurl") {
            Some(url) if url == expected => Ok(()),
            Some(url) => Err(format!(
                "[supervisorctl] serverurl is `{url}` but the server's socket is {socket}; expected serverurl={expected}"
            )),
            None => Err(format!(
                "[supervisorctl] has no serverurl; expected serverurl={expected}"
            )),
        }
    }

    /// supervisord's pid and log files do not depend on the folder it is started from.
    fn absolute_paths(&self) -> Result<(), String> {
        for key in ["pidfile", "logfile"] {
            match self.get("supervisord", key) {
                Some(p) if p.starts_with('/') => {}
                Some(p) => {
                    return Err(format!(
                        "[supervisord] {key} is `{p}`; expected an absolute path"
                    ))
                }
                None => {
                    return Err(format!(
                        "[supervisord] has no {key}; without it supervisord writes into whatever folder it is started from, expected an absolute path"
                    ))
                }
            }
        }
        Ok(())
    }

    /// `[include]` takes the enabled programs.
    fn includes_enabled(&self) -> Result<(), String> {
        let include = self.get("include", "files").unwrap_or_default();
        let wanted = format!("{}/*.conf", super::ENABLED_DIR);
        let found = include
            .split_whitespace()
            .any(|f| f == wanted || f.ends_with(&format!("/{wanted}")));
        if found {
            return Ok(());
        }
        Err(format!(
            "[include] files is `{include}`; expected it to include {wanted}"
        ))
    }

    /// Where a client reaches the web UI, with credentials it can send.
    fn inet(&self) -> Option<(String, Option<(String, String)>)> {
        let port = self.get("inet_http_server", "port")?;
        let (host, number) = split_port(&port);
        let host = if host.is_empty() || host == "*" || host == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        let auth = match (
            self.get("inet_http_server", "username"),
            self.get("inet_http_server", "password"),
        ) {
            (Some(u), Some(p)) if !p.starts_with("{SHA}") => Some((u, p)),
            _ => None,
        };
        Some((format!("{host}:{number}"), auth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[unix_http_server]\nfile=/s/sv.sock   ; the socket\nchmod=0700\n\
        [supervisord]\npidfile=/s/p\nlogfile=/s/l\n[rpcinterface:supervisor]\nx=y\n\
        [supervisorctl]\nserverurl=unix:///s/sv.sock\n[inet_http_server]\nport=*:9001\nusername=u\npassword=p%%w\n\
        [include]\nfiles = workers_enabled/*.conf\n";

    #[test]
    fn conf_facts_of_a_consistent_file() {
        let f = ConfFacts::parse(GOOD).unwrap();
        assert_eq!(f.socket, PathBuf::from("/s/sv.sock"));
        assert_eq!(
            f.inet,
            Some((
                "127.0.0.1:9001".to_string(),
                Some(("u".to_string(), "p%w".to_string()))
            ))
        );
        let sha = GOOD.replace("password=p%%w", "password={SHA}abc");
        assert_eq!(
            ConfFacts::parse(&sha).unwrap().inet,
            Some(("127.0.0.1:9001".to_string(), None))
        );
    }

    #[test]
    fn conf_facts_refuse_disagreeing_parts() {
        let cases = [
            (
                GOOD.replace("serverurl=unix:///s/sv.sock", "serverurl=unix:///tmp/supervisor.sock"),
                "[supervisorctl] serverurl is `unix:///tmp/supervisor.sock` but the server's socket is /s/sv.sock",
            ),
            (GOOD.replace("chmod=0700", "chmod=0777"), "chmod is `0777`"),
            (GOOD.replace("pidfile=/s/p", "pidfile=p"), "pidfile is `p`"),
            (GOOD.replace("logfile=/s/l\n", ""), "[supervisord] has no logfile"),
            (GOOD.replace("workers_enabled", "conf.d"), "[include] files is `conf.d/*.conf`"),
            (GOOD.replace("[supervisorctl]", "[ctl]"), "has no [supervisorctl] section"),
        ];
        for (text, expected) in cases {
            let e = ConfFacts::parse(&text).unwrap_err();
            assert!(e.contains(expected), "{e}\nexpected: {expected}");
        }
    }
}
