//! A real redis-server for the queue tests: its own free port and temp dir, never the machine's
//! Redis on 6379. Started and stopped by the test; `Drop` kills it.
//!
//! (The shared harness in tests/support/ will replace this; the names differ so both can live
//! side by side until then.)
#![allow(dead_code)]

use loglines::config::RedisSettings;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOT_FOUND: &str = "redis-server not found on PATH: install it with 'apt-get install redis-server' (the README's test command does this)";

/// Options for a test server.
#[derive(Clone, Default)]
pub struct Options {
    /// AOF with fsync on every write: acknowledged writes survive kill -9 of the server.
    pub appendonly: bool,
    pub password: Option<String>,
}

pub struct TestRedis {
    port: u16,
    opts: Options,
    binary: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

impl TestRedis {
    pub fn start() -> TestRedis {
        TestRedis::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> TestRedis {
        let binary = find_on_path("redis-server").unwrap_or_else(|| panic!("{NOT_FOUND}"));
        let dir = tempfile::Builder::new()
            .prefix("loglines-redis-")
            .tempdir()
            .expect("cannot create a temp dir for redis-server");
        let mut r = TestRedis {
            port: 0,
            opts,
            binary,
            child: None,
            dir,
        };
        // Another process may grab the port between choosing and binding it: try a few.
        for _ in 0..5 {
            r.port = free_port();
            if r.spawn() {
                return r;
            }
        }
        panic!(
            "redis-server did not start in 5 attempts; see {}",
            r.dir.path().join("redis.log").display()
        );
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg("redis.log")
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no");
        if self.opts.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(p) = &self.opts.password {
            cmd.arg("--requirepass").arg(p);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("cannot start redis-server");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false; // exited: most likely the port was taken
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut c).is_ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        match &self.opts.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Settings pointing at this server, with the given heartbeat ttl.
    pub fn settings(&self, heartbeat_ttl: u64) -> RedisSettings {
        RedisSettings {
            name: "redis".into(),
            host: "127.0.0.1".into(),
            port: self.port,
            db: 0,
            username: None,
            password: self.opts.password.clone(),
            max_queue_length: 1_000_000,
            heartbeat_ttl,
            ..RedisSettings::default()
        }
    }

    /// A plain client connection for assertions.
    pub fn conn(&self) -> redis::Connection {
        let c = redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test redis");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    /// kill -9 the server (its AOF stays for `restart`).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
