//! Helpers shared by the plugin tests: plugins written into a temporary folder, loaded with
//! chosen limits, messages wrapped as the watcher wraps log lines, and a stand-in HTTP server
//! for `http_get`.

use loglines::plugin::PluginLimits;
use loglines::plugin::{Plugin, PluginError, PluginSpec};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A folder holding plugin files for one test.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    /// Writes `name` (e.g. `p.lua`) with `code` and returns its path.
    pub fn write(&self, name: &str, code: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, code).unwrap();
        p
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

/// Hooks appended to snippets that only test top-level behaviour.
pub const NO_HOOKS: &str =
    "\nfunction parseline(jmsg) return nil end\nfunction get_openurl_params(c, s, pl) return nil end\n";

pub fn spec(path: &Path) -> PluginSpec {
    PluginSpec::standalone(path, "worker_test")
}

pub fn spec_with(path: &Path, memory_mb: usize, max_instructions: u64) -> PluginSpec {
    PluginSpec {
        limits: PluginLimits {
            memory_mb,
            max_instructions,
        },
        ..spec(path)
    }
}

/// Loads `code` as `p.lua` in a fresh folder.
pub fn load(code: &str) -> (Dir, Result<Plugin, PluginError>) {
    let d = Dir::new();
    let p = d.write("p.lua", code);
    let r = Plugin::load(spec(&p));
    (d, r)
}

/// Loads `code`, which must load.
pub fn plugin(code: &str) -> (Dir, Plugin) {
    let (d, r) = load(code);
    (
        d,
        r.unwrap_or_else(|e| panic!("the plugin should load: {e}")),
    )
}

/// A message as the watcher sends it.
pub fn msg(line: &str) -> String {
    serde_json::json!({"service": "repo.example.ac.uk", "logline": line}).to_string()
}

/// A stand-in HTTP server on 127.0.0.1 for plugins that call `http_get`. Each request is
/// answered on its own thread (so a slow answer does not hold up the next request) with
/// `answer(target)`, a status line such as `200 OK` and a JSON body. It records the request
/// targets and stops accepting when dropped.
pub struct HttpStub {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub addr: String,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl HttpStub {
    pub fn start(answer: fn(&str) -> (&'static str, String)) -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let log = log.clone();
                std::thread::spawn(move || respond(stream, answer, &log));
            }
        });
        HttpStub { addr, seen, stop }
    }

    /// The request targets (path and query) so far, in the order they arrived.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(
    mut stream: TcpStream,
    answer: fn(&str) -> (&'static str, String),
    log: &Mutex<Vec<String>>,
) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
            break;
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    // Recorded before answering: a client that has its answer finds its request counted.
    log.lock().unwrap().push(target.clone());
    let (status, body) = answer(&target);
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A port on 127.0.0.1 that nothing listens on: bound, noted and closed again.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Writes `name` (a `.lua` file) in `dir`: a plugin whose `parseline` first runs `before` (Lua
/// code that sees the decoded message as `m`), and which sends each download of the generated
/// log with its line number as `rft_dat` (what `Pipeline::accepted_numbers` reads). For tests
/// of what happens around a plugin that misbehaves on some lines.
#[allow(dead_code)] // not every area uses it
pub fn line_plugin(dir: &Path, name: &str, before: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "function parseline(jmsg)\n\
               local m = loglines.json.decode(jmsg)\n\
               {before}\n\
               return {{ line = m.logline }}\n\
             end\n\
             function get_openurl_params(c, section, pl)\n\
               if not pl.line:find('paper.pdf', 1, true) then return nil end\n\
               return {{ url_tim = '2026-11-27T00:00:00Z', rft_dat = 'oai:repo.example.ac.uk:' .. pl.line:match('/id/eprint/(%d+)/') }}\n\
             end\n"
        ),
    )
    .unwrap();
    path
}
