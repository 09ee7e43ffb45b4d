//! The worker's plugin thread: runs the plugin on a batch's messages and builds their OpenURLs
//! while the worker is sending the ones before them.
//!
//! A worker sends one request at a time over one connection, so its rate is one round trip plus
//! whatever it does between answers. Running the plugin (a few microseconds of Lua per message)
//! on a thread of its own takes that work out of the gap: it happens while the worker waits for
//! the tracker's answer. Results come back one by one and in queue order, so the worker still
//! handles (sends, acks, dead-letters) messages strictly in order; the plugin is at most one
//! batch ahead.
//!
//! The Lua VM is not `Send`, so the plugin is loaded on this thread and never leaves it; a load
//! failure is reported to [`Preparer::start`]'s caller before anything else happens.

use super::event_url;
use crate::config::WorkerSettings;
use crate::plugin::{Outcome, Plugin, PluginSpec};
use crate::queue::Message;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::thread::JoinHandle;

/// What the plugin made of one message.
#[derive(Debug)]
pub enum Step {
    /// A usage event: the URL to request (in a dry run, the query to print).
    Send(String),
    /// Not a usage event.
    NotEligible,
    /// The plugin failed on this message: the error, naming file and line.
    PluginError(String),
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
    display_path: String,
    /// Messages handed over and not yet taken back with [`Preparer::next_result`].
    outstanding: usize,
}

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
    pub fn start(spec: PluginSpec, settings: WorkerSettings) -> Result<Preparer, String> {
        let section = spec.worker_section.clone();
        let (loaded_tx, loaded_rx) = bounded::<Result<String, String>>(1);
        // One batch at a time is handed over; the worker waits for all of it before the next.
        let (jobs_tx, jobs_rx) = bounded::<Vec<Message>>(1);
        let (results_tx, results_rx) = unbounded::<Prepared>();
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
                serve(plugin, &settings, &section, &jobs_rx, &results_tx);
            })
            .map_err(|e| format!("cannot start the plugin thread: {e}"))?;
        match loaded_rx.recv() {
            Ok(Ok(display_path)) => Ok(Preparer {
                jobs: Some(jobs_tx),
                results: Some(results_rx),
                thread: Some(thread),
                display_path,
                outstanding: 0,
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
        Some(match results.recv() {
            Ok(p) => {
                self.outstanding -= 1;
                Ok(p)
            }
            Err(_) => Err(self.stopped()),
        })
    }

    /// Takes back every outstanding message, in order, whatever the plugin made of them (on
    /// shutdown, to return them to the queue).
    pub fn drain(&mut self) -> Result<Vec<Message>, String> {
        let mut out = Vec::with_capacity(self.outstanding);
        while let Some(p) = self.next_result() {
            out.push(p?.msg);
        }
        Ok(out)
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
            let _ = t.join();
        }
    }
}

/// The plugin thread's loop.
fn serve(
    mut plugin: Plugin,
    settings: &WorkerSettings,
    section: &str,
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
