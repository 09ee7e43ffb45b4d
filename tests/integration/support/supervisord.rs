//! A real supervisord for tests: locate the binaries, run `supervisord -n -c FILE` as a child,
//! write a minimal config, and ask it for process states over XML-RPC.
//!
//! XML-RPC over its inet HTTP server is used rather than parsing `supervisorctl status` text,
//! because the reply is structured (exact state names, pids) and needs no subprocess per poll.
//! The calls go through the library's own client (`loglines::commands::supervisor::rpc`, unit-tested
//! against Python-shaped replies) rather than a second hand-written one.

use super::{crate_root, find_executable, free_port, stop_child};
use loglines::commands::supervisor::rpc;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long `stop()` waits after SIGTERM before SIGKILL (supervisord stops its children first).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Per XML-RPC call.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `get_all_process_info` keeps retrying while supervisord starts up.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What to tell a developer whose machine lacks supervisor.
pub fn supervisord_missing_message() -> String {
    "supervisord not found: install it with 'apt-get install supervisor' or \
     'python3 -m venv .venv && .venv/bin/pip install supervisor' (the README's test command \
     does this)"
        .to_string()
}

/// Finds `name` (supervisord or supervisorctl) on a PATH-style list, then in `.venv/bin/` of
/// `root` (where the test setup may install supervisor from PyPI). The error is the message
/// to show.
pub fn find_supervisor_binary(
    name: &str,
    path_var: Option<&OsStr>,
    root: &Path,
) -> Result<PathBuf, String> {
    find_executable(name, path_var, &[root.join(".venv").join("bin")])
        .ok_or_else(supervisord_missing_message)
}

fn binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH");
    find_supervisor_binary(name, path.as_deref(), crate_root()).unwrap_or_else(|m| panic!("{m}"))
}

/// The supervisord to run; panics with installation advice if there is none.
pub fn supervisord_binary() -> PathBuf {
    binary("supervisord")
}

/// The supervisorctl to run; panics with installation advice if there is none.
pub fn supervisorctl_binary() -> PathBuf {
    binary("supervisorctl")
}

/// A supervisord running in the foreground as our child. Drop stops it like `stop()`.
pub struct Supervisord {
    child: Option<Child>,
    config: PathBuf,
    /// supervisord's own stdout/stderr, kept outside the config's directory (which may be the
    /// repository's `supervisor/`), removed on Drop.
    output: tempfile::NamedTempFile,
}

impl Supervisord {
    /// Runs `supervisord -n -c config` (in the current directory). Its stdout and stderr go to
    /// a temporary file that failure messages quote (`output_text`). Does not wait for it to be
    /// ready: poll with `get_all_process_info` or use `wait_ready`.
    pub fn start(config: &Path) -> Supervisord {
        let bin = supervisord_binary();
        let output = tempfile::Builder::new()
            .prefix("supervisord-output-")
            .tempfile()
            .expect("cannot create a temporary file for supervisord's output");
        let out = output
            .reopen()
            .expect("cannot open supervisord's output file");
        let err = out.try_clone().expect("cannot duplicate a file handle");
        let child = Command::new(&bin)
            .arg("-n")
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        Supervisord {
            child: Some(child),
            config: config.to_path_buf(),
            output,
        }
    }

    /// Starts supervisord with a config written by [`SupervisorConfig::write`] and waits until
    /// its XML-RPC interface answers; panics (quoting its output) if it does not.
    pub fn start_ready(config: &SupervisorConfig) -> Supervisord {
        let mut s = Supervisord::start(&config.path);
        s.wait_ready(config, READY_TIMEOUT);
        s
    }

    /// Waits until XML-RPC answers; panics with supervisord's output if it exits or times out.
    pub fn wait_ready(&mut self, config: &SupervisorConfig, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let last = match config.try_process_info() {
                Ok(_) => return,
                Err(e) => e,
            };
            if !self.is_running() || Instant::now() >= end {
                panic!(
                    "supervisord ({}) is not answering XML-RPC on {}: {last}\nits output:\n{}",
                    self.config.display(),
                    config.url(),
                    self.output_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// What supervisord printed so far (for failure messages).
    pub fn output_text(&self) -> String {
        std::fs::read_to_string(self.output.path()).unwrap_or_default()
    }

    /// SIGTERM (supervisord stops its programs, then exits), wait, SIGKILL after 10 s.
    /// Returns its exit status; None if it was already stopped.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        Some(stop_child(&mut c, libc::SIGTERM, STOP_GRACE))
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal supervisord configuration in a directory: inet HTTP server on a free port with a
/// user and password, log/pid files in the directory, and the given programs.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    pub path: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl SupervisorConfig {
    /// Writes `dir/supervisord.conf` with one `[program:NAME]` per `(name, command)`, each
    /// started at once and considered RUNNING after 1 s. Logs go to `dir`.
    pub fn write(dir: &Path, programs: &[(&str, &str)]) -> SupervisorConfig {
        let port = free_port();
        let user = "test".to_string();
        // Not a secret, just not a default: the 2010 tool's guest/guest is what we avoid.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let password = format!("pw{}x{nanos}", std::process::id());
        let d = dir.display();
        let mut text = format!(
            "[supervisord]\n\
             nodaemon=true\n\
             logfile={d}/supervisord.log\n\
             pidfile={d}/supervisord.pid\n\
             childlogdir={d}\n\
             \n\
             [inet_http_server]\n\
             port=127.0.0.1:{port}\n\
             username={user}\n\
             password={password}\n\
             \n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
             \n\
             [supervisorctl]\n\
             serverurl=http://127.0.0.1:{port}\n\
             username={user}\n\
             password={password}\n"
        );
        for (name, command) in programs {
            let _ = write!(
                text,
                "\n[program:{name}]\n\
                 command={command}\n\
                 autostart=true\n\
                 autorestart=true\n\
                 startsecs=1\n\
                 stopwaitsecs=5\n\
                 stdout_logfile={d}/{name}.out.log\n\
                 stderr_logfile={d}/{name}.err.log\n"
            );
        }
        let path = dir.join("supervisord.conf");
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        SupervisorConfig {
            path,
            port,
            user,
            password,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One attempt at `supervisor.getAllProcessInfo` with this config's credentials.
    pub fn try_process_info(&self) -> Result<Vec<ProcessInfo>, String> {
        try_get_process_details(&self.url(), &self.user, &self.password)
    }

    /// Waits until program `name` is in `state` (e.g. "RUNNING"); false on timeout.
    pub fn wait_for_state(&self, name: &str, state: &str, timeout: Duration) -> bool {
        super::wait_until(timeout, || {
            self.try_process_info().is_ok_and(|ps| {
                ps.iter()
                    .any(|p| p.full_name() == name && p.statename == state)
            })
        })
    }
}

/// `GET http://127.0.0.1:PORT/` (the web UI's process list), with Basic credentials if given:
/// the status code and the page.
pub fn web_ui_get(port: u16, auth: Option<(&str, &str)>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(RPC_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(format!("http://127.0.0.1:{port}/"));
    if let Some((u, p)) = auth {
        req = req.header("Authorization", rpc::basic_auth(u, p));
    }
    let mut resp = req
        .call()
        .unwrap_or_else(|e| panic!("GET http://127.0.0.1:{port}/: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// Checks that the web UI page lists exactly the processes `names` (as supervisorctl names
/// them), each in a row showing it running: the "clean line of green lights". The error says
/// which row is missing or not running.
pub fn web_ui_all_running<'a>(
    html: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), String> {
    // One table row per process: its status cell, then its name as a link.
    let body = html.split_once("<tbody>").map_or("", |(_, b)| b);
    let rows: Vec<&str> = body.split("<tr").skip(1).collect();
    let names: Vec<&String> = names.into_iter().collect();
    if rows.len() != names.len() {
        return Err(format!(
            "{} rows for {} processes {names:?}:\n{html}",
            rows.len(),
            names.len()
        ));
    }
    for name in names {
        let row = rows
            .iter()
            .find(|r| r.contains(&format!(">{name}</a>")))
            .ok_or_else(|| format!("{name} missing from the web UI:\n{html}"))?;
        if !row.contains("<span class=\"statusrunning\">running</span>") {
            return Err(format!("{name} is not shown running:\n{row}"));
        }
    }
    Ok(())
}

/// Runs `supervisorctl -c config ARGS...` and returns its exit code and stdout (for configs
/// that only offer a unix socket, where the XML-RPC helper does not apply).
pub fn supervisorctl(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(supervisorctl_binary())
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run supervisorctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One program as supervisord reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub name: String,
    pub group: String,
    /// STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL or UNKNOWN.
    pub statename: String,
    /// 0 when not running.
    pub pid: u32,
}

impl ProcessInfo {
    /// The name supervisorctl shows: `group:name` for programs in a group (numprocs > 1 or
    /// `[group:x]`), otherwise just the name.
    pub fn full_name(&self) -> String {
        if self.group == self.name || self.group.is_empty() {
            self.name.clone()
        } else {
            format!("{}:{}", self.group, self.name)
        }
    }
}

/// `(name, statename)` of every program (name as supervisorctl shows it), asking
/// supervisord's XML-RPC interface at `url` (`http://host:port`, `/RPC2` optional). Retries
/// for up to 15 s while supervisord is starting; panics with the last error after that.
pub fn get_all_process_info(url: &str, user: &str, pass: &str) -> Vec<(String, String)> {
    let end = Instant::now() + READY_TIMEOUT;
    loop {
        match try_get_process_details(url, user, pass) {
            Ok(ps) => {
                return ps
                    .into_iter()
                    .map(|p| (p.full_name(), p.statename))
                    .collect()
            }
            Err(e) if Instant::now() >= end => {
                panic!("supervisor.getAllProcessInfo on {url} failed for {READY_TIMEOUT:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One `supervisor.getAllProcessInfo` call, without retrying, through the library's XML-RPC
/// client (`url` is `http://host:port`, `/RPC2` optional).
pub fn try_get_process_details(
    url: &str,
    user: &str,
    pass: &str,
) -> Result<Vec<ProcessInfo>, String> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let endpoint = rpc::Endpoint::Inet {
        addr: addr.trim_end_matches("/RPC2").to_string(),
        auth: Some((user.to_string(), pass.to_string())),
    };
    let reply = rpc::call(&endpoint, "supervisor.getAllProcessInfo", &[], RPC_TIMEOUT)
        .map_err(|e| e.to_string())?;
    process_infos(&reply)
}

/// Parses a `getAllProcessInfo` methodResponse (with the library's parser); a `<fault>` becomes
/// an error carrying its faultString.
pub fn parse_process_info(xml: &str) -> Result<Vec<ProcessInfo>, String> {
    match rpc::parse_response(xml) {
        Ok(reply) => process_infos(&reply),
        Err(rpc::ParseError::Fault(_, msg)) => Err(format!("XML-RPC fault: {msg}")),
        Err(rpc::ParseError::Bad(why)) => Err(format!("not an XML-RPC response: {why}")),
    }
}

/// The array of structs `getAllProcessInfo` returns, as `ProcessInfo`s.
fn process_infos(reply: &rpc::Value) -> Result<Vec<ProcessInfo>, String> {
    let items = reply
        .as_array()
        .ok_or_else(|| format!("getAllProcessInfo returned {reply:?}, not an array"))?;
    let field = |p: &rpc::Value, k: &str| {
        p.get(k)
            .and_then(rpc::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(items
        .iter()
        .map(|p| ProcessInfo {
            name: field(p, "name"),
            group: field(p, "group"),
            statename: field(p, "statename"),
            pid: p
                .get("pid")
                .and_then(rpc::Value::as_int)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        })
        .collect())
}
