//! A whole loglines pipeline for end-to-end tests: a config file in a temporary folder, a real
//! redis-server, a real tracker stand-in, and the role processes of the built binary, which a
//! test can kill and restart at will.

use super::loggen::number_of;
use super::redis::RedisServer;
use super::tracker::Tracker;
use super::{crate_root, stop_child, temp_dir, wait_until};
use loglines::config::Config;
use loglines::plugin::{Outcome, Plugin};
use loglines::roles::Role;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The roles of the example topology and how many processes each runs.
pub const ROLES: &[(&str, &str)] = &[
    ("worker_pirus2", "worker"),
    ("logger_articlelogger", "filelog"),
    ("logger_otherlogger", "filelog"),
    ("worker_broker", "broker"),
    ("logger_watch", "watch"),
];

/// Options for the generated configuration.
#[derive(Clone, Debug)]
pub struct Options {
    pub plugin: String,
    pub workers: u32,
    pub pauseonfail: u32,
    pub batch_size: Option<u32>,
    /// Extra lines for the [irus] (or other plugin) section.
    pub plugin_section: String,
    /// Extra lines for the [worker_pirus2] section.
    pub worker_keys: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            plugin: "irus".into(),
            workers: 3,
            pauseonfail: 2,
            batch_size: None,
            plugin_section: "repository = repo.example.ac.uk\n".into(),
            worker_keys: String::new(),
        }
    }
}

/// The configuration text for the pipeline in `dir`.
pub fn config_text(redis_url: Option<&str>, tracker_url: &str, o: &Options) -> String {
    let root = crate_root().display();
    // A plugin is named by its stem (lua_plugins/NAME.lua) or given as a path.
    let (plugin_file, plugin) = match o.plugin.strip_suffix(".lua") {
        Some(path) => (
            o.plugin.clone(),
            Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        ),
        None => (
            format!("{root}/lua_plugins/{}.lua", o.plugin),
            o.plugin.clone(),
        ),
    };
    let batch = o
        .batch_size
        .map(|b| format!("batch_size = {b}\n"))
        .unwrap_or_default();
    let redis = redis_url
        .map(|u| format!("[redis]\nurl = {u}\nheartbeat_ttl = 3\n\n"))
        .unwrap_or_default();
    format!(
        "{redis}[loglines]\nstate_dir = state\n\n\
         [logger_watch]\ncommand = loglines watch\nlogfile = access.log\npushto = loglines\n\
         servicename = repo.example.ac.uk\nstart_at = beginning\n{batch}\n\
         [worker_broker]\ncommand = loglines broker\nlistento = loglines\nfanout = pirus2\nnumprocs = 1\n{batch}\n\
         [worker_pirus2]\ncommand = loglines worker\nlistento = pirus2\nnumprocs = {workers}\n\
         repository_plugin = {plugin_file}\nendpoint_url = {tracker_url}\n\
         pauseonfail = {pause}\ntimeout = 5\nconnect_timeout = 2\nsuccess_queue = articlelog\nother_queue = otherlog\n{batch}{worker_keys}\n\
         [{plugin}]\n{plugin_section}\n\
         [logger_articlelogger]\ncommand = loglines filelog\nlistento = articlelog\nlogfile = logs/articles.log\n{batch}\n\
         [logger_otherlogger]\ncommand = loglines filelog\nlistento = otherlog\nlogfile = logs/other.log\n{batch}",
        workers = o.workers,
        pause = o.pauseonfail,
        plugin_section = o.plugin_section,
        worker_keys = o.worker_keys,
    )
}

/// The queues of the pipeline `config_text` sets up.
pub const QUEUES: &[&str] = &["loglines", "pirus2", "articlelog", "otherlog"];

/// A running (or runnable) pipeline.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub redis: Option<RedisServer>,
    pub tracker: Tracker,
    pub config: PathBuf,
    pub options: Options,
    procs: HashMap<(String, u32), Child>,
}

impl Pipeline {
    /// A pipeline over a fresh redis-server.
    pub fn redis(options: Options) -> Pipeline {
        let redis = RedisServer::start_with(super::redis::Options {
            appendonly: true,
            password: None,
            ..Default::default()
        });
        let tracker = Tracker::start();
        let dir = temp_dir();
        let config = dir.path().join("loglines.cfg");
        std::fs::write(
            &config,
            config_text(Some(&redis.url()), &tracker.url(), &options),
        )
        .unwrap();
        Pipeline {
            dir,
            redis: Some(redis),
            tracker,
            config,
            options,
            procs: HashMap::new(),
        }
    }

    /// A pipeline for `loglines run` (no Redis).
    pub fn embedded(options: Options) -> Pipeline {
        let tracker = Tracker::start();
        let dir = temp_dir();
        let config = dir.path().join("loglines.cfg");
        std::fs::write(&config, config_text(None, &tracker.url(), &options)).unwrap();
        Pipeline {
            dir,
            redis: None,
            tracker,
            config,
            options,
            procs: HashMap::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn log_path(&self) -> PathBuf {
        self.path("access.log")
    }

    /// Appends text to the watched log.
    pub fn append(&self, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// The one dead letter `loglines run` filed for `queue`: its reason, and the whole line of
    /// the dead-letter file (which must hold the message). Fails unless there is exactly one.
    #[allow(dead_code)] // not every area uses it
    pub fn only_dead_letter(&self, queue: &str) -> (String, String) {
        let dead = self.lines_of(&format!("state/dead/{queue}.dead.jsonl"));
        assert_eq!(dead.len(), 1, "{dead:?}");
        let entry: serde_json::Value = serde_json::from_str(&dead[0]).unwrap();
        let reason = entry["reason"].as_str().unwrap().to_string();
        (reason, dead[0].clone())
    }

    /// A command running the built binary with this pipeline's config.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = super::bin::loglines();
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    /// Starts `loglines run` (the whole pipeline in one process), its log appended to
    /// `run.err`.
    #[allow(dead_code)] // not every area uses it
    pub fn spawn_run(&self) -> Child {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("run.err"))
            .unwrap();
        self.command(&["run"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap()
    }

    /// Starts one role process, its output in `out/<section>-<n>.log`.
    pub fn start(&mut self, section: &str, n: u32) {
        let role = ROLES
            .iter()
            .find(|(s, _)| *s == section)
            .map(|(_, r)| *r)
            .expect("known section");
        std::fs::create_dir_all(self.path("out")).unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("out/{section}-{n}.log")))
            .unwrap();
        let mut cmd = self.command(&[role, "--section", section]);
        if role != "watch" {
            cmd.args(["--process-num", &n.to_string()]);
        }
        let child = cmd
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start loglines");
        self.procs.insert((section.to_string(), n), child);
    }

    /// Starts every role process.
    pub fn start_all(&mut self) {
        for (section, _) in ROLES {
            let n = if *section == "worker_pirus2" {
                self.options.workers
            } else {
                1
            };
            for i in 0..n {
                self.start(section, i);
            }
        }
    }

    /// Every (section, process number) that is started.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self.procs.keys().cloned().collect();
        v.sort();
        v
    }

    /// SIGKILLs one process and starts it again.
    pub fn kill_and_restart(&mut self, section: &str, n: u32) {
        if let Some(mut c) = self.procs.remove(&(section.to_string(), n)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start(section, n);
    }

    /// Stops every process with SIGTERM (SIGKILL after 10 s); returns the exit codes.
    pub fn stop_all(&mut self) -> Vec<(String, Option<i32>)> {
        let mut out = Vec::new();
        for ((s, n), mut c) in self.procs.drain() {
            let status = stop_child(&mut c, libc::SIGTERM, Duration::from_secs(10));
            out.push((format!("{s}:{n}"), status.code()));
        }
        out
    }

    /// The lines of a file in the folder (empty when it does not exist yet).
    pub fn lines_of(&self, rel: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until both file loggers together hold at least `n` lines.
    pub fn wait_for_filed(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.lines_of("logs/articles.log").len() + self.lines_of("logs/other.log").len() >= n
        })
    }

    /// The line numbers of the requests the tracker accepted, in arrival order.
    pub fn accepted_numbers(&self) -> Vec<u64> {
        self.tracker
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| number_of(&r.target))
            .collect()
    }

    /// Everything the role processes wrote to stderr, for failure messages.
    pub fn outputs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.path("out")) {
            let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                s.push_str(&format!(
                    "--- {}\n",
                    f.file_name().unwrap().to_string_lossy()
                ));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for (_, mut c) in self.procs.drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Counts how often each number occurs; returns (missing numbers, duplicated numbers).
pub fn tally(
    expected: impl Iterator<Item = u64>,
    seen: impl Iterator<Item = u64>,
) -> (Vec<u64>, Vec<u64>) {
    let mut count: HashMap<u64, u32> = HashMap::new();
    for n in seen {
        *count.entry(n).or_default() += 1;
    }
    let mut missing = Vec::new();
    let mut dups = Vec::new();
    for n in expected {
        match count.get(&n) {
            None => missing.push(n),
            Some(c) if *c > 1 => dups.push(n),
            _ => {}
        }
    }
    (missing, dups)
}

/// What the tracker must receive and where each line must be filed, computed with the plugin
/// itself run line by line as the worker does: (request targets, lines for articles.log, lines
/// for other.log).
pub fn expected(p: &Pipeline, log: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut urls, mut sent, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for (line, target) in plugin_verdicts(&p.config, "worker_pirus2", log) {
        match target {
            Some(url) => {
                urls.push(url);
                sent.push(line);
            }
            None => other.push(line),
        }
    }
    (urls, sent, other)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Checks that a sample log arrived as [`expected`] says: the tracker got `urls` and the file
/// loggers filed `sent` (articles.log) and `other` (other.log). Compared as multisets, because
/// several workers take messages in parallel. `what` names the sample in failure messages.
pub fn assert_sample_delivered(
    p: &Pipeline,
    what: &str,
    urls: &[String],
    sent: &[String],
    other: &[String],
) {
    let got: Vec<String> = p
        .tracker
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        sorted(got),
        sorted(urls.to_vec()),
        "{what}: tracker requests"
    );
    assert_eq!(
        sorted(p.lines_of("logs/articles.log")),
        sorted(sent.to_vec()),
        "{what}: articles.log"
    );
    assert_eq!(
        sorted(p.lines_of("logs/other.log")),
        sorted(other.to_vec()),
        "{what}: other.log"
    );
}

/// Checks the generated lines `0..n` all arrived: every download accepted by the tracker and
/// in articles.log, every other line in other.log. Returns the duplicate counts (tracker,
/// other.log).
pub fn check_generated(p: &Pipeline, n: u64, every: u64) -> (usize, usize) {
    // Only requests the tracker accepted count; a 503 or a refused one was retried.
    let requests: Vec<_> = p
        .tracker
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    let downloads = (0..n).filter(|i| i % every == 0);
    let others = (0..n).filter(|i| i % every != 0);
    let (m1, d1) = tally(
        downloads.clone(),
        requests.iter().filter_map(|r| number_of(&r.target)),
    );
    let (m2, _) = tally(
        downloads,
        p.lines_of("logs/articles.log")
            .iter()
            .filter_map(|l| number_of(l)),
    );
    let (m3, d3) = tally(
        others,
        p.lines_of("logs/other.log")
            .iter()
            .filter_map(|l| number_of(l)),
    );
    assert!(
        m1.is_empty(),
        "{} downloads never reached the tracker, e.g. {:?}\n{}",
        m1.len(),
        &m1[..m1.len().min(10)],
        p.outputs()
    );
    assert!(
        m2.is_empty(),
        "{} downloads missing from articles.log, e.g. {:?}",
        m2.len(),
        &m2[..m2.len().min(10)]
    );
    assert!(
        m3.is_empty(),
        "{} lines missing from other.log, e.g. {:?}",
        m3.len(),
        &m3[..m3.len().min(10)]
    );
    (d1.len(), d3.len())
}

/// Waits until every generated line 0..n has arrived where it must (duplicates do not count,
/// so a count of lines is not enough after kills).
pub fn wait_complete(p: &Pipeline, n: u64, every: u64, timeout: Duration) -> bool {
    wait_until(timeout, || {
        // Reading 50,000 lines is not free: look a few times a second, not every 10 ms.
        std::thread::sleep(Duration::from_millis(300));
        let filed: std::collections::HashSet<u64> = p
            .lines_of("logs/articles.log")
            .iter()
            .chain(p.lines_of("logs/other.log").iter())
            .filter_map(|l| number_of(l))
            .collect();
        let sent: std::collections::HashSet<u64> = p
            .tracker
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| number_of(&r.target))
            .collect();
        (0..n).all(|i| filed.contains(&i) && (i % every != 0 || sent.contains(&i)))
    })
}

/// A file under the crate's tests/data.
pub fn data(name: &str) -> PathBuf {
    crate_root().join("tests/data").join(name)
}

/// What the worker `section` of the configuration at `config` must do with each line of `log`,
/// computed with its plugin and settings: `Some(target)` for a usage event, where `target` is the
/// request the tracker must receive from `/counter/` on, `None` for a line that is not one.
/// One plugin instance sees the lines in log order, as a single worker would.
pub fn plugin_verdicts(config: &Path, section: &str, log: &str) -> Vec<(String, Option<String>)> {
    let cfg = Config::load(config).unwrap_or_else(|e| panic!("{}: {e:?}", config.display()));
    let sec = cfg.section(section).expect("the worker section exists");
    let Role::Worker(ws) = &sec.role else {
        panic!("[{section}] is not a worker section")
    };
    let mut plugin =
        Plugin::load(loglines::roles::worker::plugin_spec(&cfg, section).unwrap()).unwrap();
    log.lines()
        .map(|line| {
            let msg =
                serde_json::json!({"service": "repo.example.ac.uk", "logline": line}).to_string();
            let target = match plugin.process(&msg).unwrap() {
                Outcome::Eligible(params) => {
                    let url = loglines::roles::worker::event_url(ws, params);
                    Some(url[url.find("/counter/").expect("a /counter/ endpoint")..].to_string())
                }
                Outcome::NotEligible => None,
            };
            (line.to_string(), target)
        })
        .collect()
}
