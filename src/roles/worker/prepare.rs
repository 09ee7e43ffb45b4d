//! The worker's plugin thread: runs the plugin on a batch's messages and builds their OpenURLs
//! while the worker is sending the ones before them.
//!
//! A worker sends one request at a time over one connection, so its rate is one round trip plus
//! whatever it does between answers. Running the plugin (a few microseconds of Lua per message)
//! on a thread of its own takes that work out of the gap: it happens while the worker waits for
//! the tracker's answer. Results come back one by one and in queue order, so the worker still
//! handles (sends, acks, dead-letters) messages strictly in order; the plugin runs ahead only
//! within the batch being handled.
//!
//! The Lua VM is not `Send`, so the plugin is loaded on this thread and never leaves it; a load
//! failure is reported to [`Preparer::start`]'s caller before anything else happens.

use super::event_url;
use super::WorkerSettings;
use crate::plugin::{Outcome, Plugin, PluginSpec};
use crate::queue::Message;
use crate::util::shutdown::Shutdown;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the plugin made of one message.
#[derive(Debug)]
pub enum Step {
    /// A usage event: the URL to request (in a dry run, the query to print).
    Send(String),
    /// Not a usage event.
    NotEligible,
    /// The plugin failed on this message: the error, naming file and line.
    PluginError(String),
    /// Not looked at: the worker is stopping or taking the batch back (see [`Preparer::drain`]).
    Skipped,
}

/// A message with what the plugin made of it.
#[derive(Debug)]
pub struct Prepared {
    pub msg: Message,
    pub step: Step,
}

/// The handle to one worker's plugin thread.
pub struct Preparer {
    jobs: Option<Sender<Vec<Message>>>,
    results: Option<Receiver<Prepared>>,
    thread: Option<JoinHandle<()>>,
    /// Set while the rest of a batch is being taken back: the thread returns messages without
    /// running the plugin on them (which, with an `http_get` per message, could take long).
    skip: Arc<AtomicBool>,
    display_path: String,
    /// Messages handed over and not yet taken back with [`Preparer::next_result`].
    outstanding: usize,
    /// The worker's stop signal: once it is set, a plugin call gets [`STUCK_GRACE`] to return.
    stop: Shutdown,
    /// Set when a plugin call did not return within [`STUCK_GRACE`] of a stop: the thread is
    /// left behind (it dies with the process) instead of being waited for.
    stuck: bool,
}

/// How long a plugin call in progress may still run once the worker is told to stop. A call
/// stuck in C code (a Lua string pattern backtracking on a long subject), which the instruction
/// limit cannot interrupt, must not keep the worker from stopping: after this the worker stops
/// without it, and the messages it held come back from the queue's in-flight list (or, in
/// `loglines run`, are read again from the log) when it starts again.
pub const STUCK_GRACE: Duration = Duration::from_secs(3);

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("plugin", &self.display_path)
            .field("outstanding", &self.outstanding)
            .finish()
    }
}

impl Preparer {
    /// Starts the thread and loads the plugin on it. The error is the plugin's load error, as
    /// `Plugin::load` words it.
    pub fn start(
        mut spec: PluginSpec,
        settings: WorkerSettings,
        stop: &Shutdown,
    ) -> Result<Preparer, String> {
        // A stop ends the plugin's `http_get` in progress, and the thread then hands back the
        // rest of its batch without running the plugin on it.
        spec.stop = stop.clone();
        let section = spec.worker_section.clone();
        let (loaded_tx, loaded_rx) = bounded::<Result<String, String>>(1);
        // One batch at a time is handed over; the worker waits for all of it before the next.
        let (jobs_tx, jobs_rx) = bounded::<Vec<Message>>(1);
        let (results_tx, results_rx) = unbounded::<Prepared>();
        let skip = Arc::new(AtomicBool::new(false));
        let skipping = skip.clone();
        let stopped = Arc::new(AtomicBool::new(false));
        let stopping = stopped.clone();
        stop.on_trigger(move || stopped.store(true, Ordering::SeqCst));
        let thread = std::thread::Builder::new()
            .name(format!("{section} plugin"))
            .spawn(move || {
                let plugin = match Plugin::load(spec) {
                    Ok(p) => {
                        let _ = loaded_tx.send(Ok(p.display_path().to_string()));
                        p
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let skip = [&*skipping, &*stopping];
                serve(plugin, &settings, &section, &skip, &jobs_rx, &results_tx);
            })
            .map_err(|e| format!("cannot start the plugin thread: {e}"))?;
        match loaded_rx.recv() {
            Ok(Ok(display_path)) => Ok(Preparer {
                jobs: Some(jobs_tx),
                results: Some(results_rx),
                thread: Some(thread),
                skip,
                display_path,
                outstanding: 0,
                stop: stop.clone(),
                stuck: false,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                // The thread ended without a word: it panicked while loading.
                let why = match thread.join() {
                    Err(p) => panic_message(&*p),
                    Ok(()) => "no reason given".to_string(),
                };
                Err(format!(
                    "the plugin thread stopped while loading the plugin: {why}"
                ))
            }
        }
    }

    /// The plugin's path as errors show it.
    pub fn display_path(&self) -> &str {
        &self.display_path
    }

    /// Hands a batch over; its results come back, in order, from [`Preparer::next_result`].
    pub fn submit(&mut self, batch: Vec<Message>) -> Result<(), String> {
        let n = batch.len();
        let jobs = self.jobs.as_ref().expect("jobs open until drop");
        jobs.send(batch).map_err(|_| self.stopped())?;
        self.outstanding += n;
        Ok(())
    }

    /// The next message of the batches handed over, with its step; None when none is
    /// outstanding. Waits while the plugin is still working on it.
    pub fn next_result(&mut self) -> Option<Result<Prepared, String>> {
        if self.outstanding == 0 {
            return None;
        }
        let results = self.results.as_ref().expect("results open until drop");
        let mut stopping_since: Option<Instant> = None;
        loop {
            match results.recv_timeout(Duration::from_millis(200)) {
                Ok(p) => {
                    self.outstanding -= 1;
                    return Some(Ok(p));
                }
                Err(RecvTimeoutError::Disconnected) => return Some(Err(self.stopped())),
                Err(RecvTimeoutError::Timeout) if self.stop.is_set() => {
                    let since = *stopping_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STUCK_GRACE {
                        self.stuck = true;
                        return Some(Err(format!(
                            "{}: a plugin call was still running {}s after the stop (stuck where the instruction limit cannot stop it, e.g. in a Lua string pattern on a long line); stopping without it: the messages it held are taken again at the next start",
                            self.display_path,
                            STUCK_GRACE.as_secs()
                        )));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Takes back every outstanding message, in order, without waiting for the plugin to look
    /// at those it has not reached (their step is [`Step::Skipped`]); on stop, to return them
    /// to the queue. Waits at most for the one plugin call in progress.
    pub fn drain(&mut self) -> Result<Vec<Prepared>, String> {
        self.skip.store(true, Ordering::SeqCst);
        let mut out = Vec::with_capacity(self.outstanding);
        let mut result = Ok(());
        while let Some(p) = self.next_result() {
            match p {
                Ok(p) => out.push(p),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Every message of the batch is back, so the thread is between batches: the next one
        // is processed normally.
        self.skip.store(false, Ordering::SeqCst);
        result.map(|()| out)
    }

    /// Why the thread is gone (only a panic in the plugin host ends it early).
    fn stopped(&mut self) -> String {
        let why = match self.thread.take().map(JoinHandle::join) {
            Some(Err(p)) => panic_message(&*p),
            _ => "it ended unexpectedly".to_string(),
        };
        format!("the plugin thread for {} stopped: {why}", self.display_path)
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        // Closing both channels ends the thread: it stops waiting for batches, and a result it
        // cannot hand back ends its batch.
        self.jobs.take();
        self.results.take();
        if let Some(t) = self.thread.take() {
            // A stuck call never returns: the thread is left to end with the process.
            if !self.stuck {
                let _ = t.join();
            }
        }
    }
}

/// The plugin thread's loop.
fn serve(
    mut plugin: Plugin,
    settings: &WorkerSettings,
    section: &str,
    skip: &[&AtomicBool],
    jobs: &Receiver<Vec<Message>>,
    results: &Sender<Prepared>,
) {
    for batch in jobs {
        // Between batches, so a batch is handled by one version of the plugin.
        match plugin.reload_if_changed() {
            Ok(true) => log::warn!("[{section}] reloaded {} (it changed on disk)", plugin.display_path()),
            Ok(false) => {}
            Err(e) => log::error!("[{section}] {} changed on disk but cannot be loaded, keeping the previous version: {e}", plugin.display_path()),
        }
        for msg in batch {
            if skip.iter().any(|f| f.load(Ordering::SeqCst)) {
                if results
                    .send(Prepared {
                        msg,
                        step: Step::Skipped,
                    })
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let step = match plugin.process(&msg.body) {
                Ok(Outcome::Eligible(params)) => Step::Send(event_url(settings, params)),
                Ok(Outcome::NotEligible) => Step::NotEligible,
                Err(e) => Step::PluginError(e.to_string()),
            };
            if results.send(Prepared { msg, step }).is_err() {
                return;
            }
        }
    }
}

/// The text a panic was raised with.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    match (p.downcast_ref::<&str>(), p.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::PluginLimits;
    use crate::roles::worker::{Endpoint, HttpMethod};
    use std::path::Path;
    use std::time::Duration;

    fn settings(plugin: &Path) -> WorkerSettings {
        WorkerSettings {
            listento: "pirus2".into(),
            plugin: plugin.to_path_buf(),
            endpoint: Endpoint::DryRun,
            url_ver: "Z39.88-2004".into(),
            rfr_id: None,
            success: 200,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            pauseonfail: Duration::from_secs(5),
            ratelimit: Duration::ZERO,
            concurrency: 1,
            success_queue: None,
            other_queue: None,
            debug: false,
            method: HttpMethod::Get,
            limits: PluginLimits {
                memory_mb: 64,
                max_instructions: 1_000_000_000,
            },
            robots_list: None,
        }
    }

    /// A plugin that takes `ms` milliseconds of CPU per message, says "n" is an event when the
    /// message is an even number, not one when odd, and fails on "boom".
    fn plugin(dir: &Path, ms: u32) -> (PluginSpec, WorkerSettings) {
        let path = dir.join("slow.lua");
        std::fs::write(
            &path,
            format!(
                "function parseline(m)\n\
                 local t = os.clock() while os.clock() - t < {ms} / 1000 do end\n\
                 if m == 'boom' then error('boom at this line') end\n\
                 local n = tonumber(m) if n % 2 == 0 then return {{n = m}} end return nil\n\
                 end\n\
                 function get_openurl_params(c, s, pl) return {{['rft.artnum'] = pl.n}} end\n"
            ),
        )
        .unwrap();
        let mut spec = PluginSpec::standalone(&path, "worker_test");
        spec.limits = settings(&path).limits;
        (spec, settings(&path))
    }

    fn batch(items: &[&str]) -> Vec<Message> {
        items.iter().map(|s| Message::new(*s)).collect()
    }

    #[test]
    fn results_come_back_in_order_with_their_steps() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, settings) = plugin(dir.path(), 0);
        let mut p = Preparer::start(spec, settings, &Shutdown::new()).unwrap();
        assert!(p.next_result().is_none(), "nothing handed over yet");
        p.submit(batch(&["2", "3", "boom", "4"])).unwrap();
        let mut got = Vec::new();
        while let Some(r) = p.next_result() {
            let r = r.unwrap();
            got.push((r.msg.body, format!("{:?}", r.step)));
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, "2");
        assert!(got[0].1.contains("rft.artnum=2"), "{got:?}");
        assert_eq!(got[1], ("3".into(), "NotEligible".into()));
        assert!(
            got[2].1.starts_with("PluginError") && got[2].1.contains("slow.lua:3"),
            "{got:?}"
        );
        assert!(got[3].1.contains("rft.artnum=4"), "{got:?}");
    }

    #[test]
    fn a_plugin_that_does_not_load_is_reported_by_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.lua");
        std::fs::write(&path, "function parseline(m\n").unwrap();
        let spec = PluginSpec::standalone(&path, "worker_test");
        let e = Preparer::start(spec, settings(&path), &Shutdown::new()).unwrap_err();
        assert!(e.contains("broken.lua"), "{e}");
    }

    #[test]
    fn drain_takes_the_rest_back_in_order_without_running_the_plugin_on_it() {
        let dir = tempfile::tempdir().unwrap();
        // 200 ms of CPU a message: the 100-message batch would take 20 s to run through (10 s
        // if other tests share the process's CPU time, which os.clock counts).
        let (spec, settings) = plugin(dir.path(), 200);
        let mut p = Preparer::start(spec, settings, &Shutdown::new()).unwrap();
        let items: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        p.submit(batch(&refs)).unwrap();
        let first = p.next_result().unwrap().unwrap();
        assert_eq!(first.msg.body, "0");
        let rest = p.drain().unwrap();
        let bodies: Vec<&str> = rest.iter().map(|r| r.msg.body.as_str()).collect();
        assert_eq!(bodies, &refs[1..], "all of the rest, in order");
        assert!(p.next_result().is_none());
        // At most the message in progress when drain began (and, on a stalled machine, a few
        // more) is looked at; the plugin would need 10 to 20 s for all of them.
        let skipped = rest
            .iter()
            .filter(|r| matches!(r.step, Step::Skipped))
            .count();
        assert!(skipped >= 90, "{skipped} of {} skipped", rest.len());
        // The next batch is processed normally again.
        p.submit(batch(&["6"])).unwrap();
        let r = p.next_result().unwrap().unwrap();
        assert!(matches!(r.step, Step::Send(_)), "{:?}", r.step);
    }
}
