//! Upload hooks on the reactor (`--on-upload`; what a hook is told, the
//! spawn and the queue are `crate::hooks`): starting a completed upload's
//! hook, or queuing or dropping it; each running hook as a slab entry
//! whose source is its pidfd, readable once the process has exited, then
//! reaped with `waitpid` for that pid only (no SIGCHLD handler, no
//! `waitpid(-1)`); its `--hook-timeout` in the wheel; and shutdown.
//!
//! # Why a pidfd
//! It makes a child's exit one more readiness event in the poll the loop
//! already waits on: no signal handler, no self-pipe, no reaping of
//! children that are not ours (the tests' harness, an embedder), and a
//! kill (`pidfd_send_signal`) that can never reach another process that
//! took over the pid. It needs Linux 5.3; `hooks::prepare` refuses to start
//! with `--on-upload` on an older kernel.
//!
//! # Shutdown
//! On SIGTERM the queued jobs are dropped (each logged at warn with its
//! user and path, counted as `reason="shutdown"`); an upload that
//! completes during the drain still starts its hook if a slot is free
//! (the client was told `226`), and is dropped otherwise. Running hooks
//! are waited for within `--shutdown-grace`, like transfers; at its end
//! (or a second SIGTERM) they are killed and reaped, and the process
//! exits with no child left behind.
//!
//! # Invariants
//! - Every `Entry::Hook` holds one slot of `Shared::hooks`, taken by
//!   `Queue::submit` or `Queue::finished`, given back (or handed to the
//!   next job) exactly once: when it is reaped (`hook_ready`), or if it
//!   could not start.
//! - An `Entry::Hook` leaves the slab only once its process is reaped, so
//!   a running hook keeps `run` from returning and no zombie is left.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Child;

use mio::unix::SourceFd;

use super::*;
use crate::hooks::{self, DropReason, Job, Submitted};
use crate::metrics::HookResult;

/// A running hook: a slab entry whose source is its pidfd.
pub struct Running {
    /// The process (reaped with `try_wait` once the pidfd is readable).
    child: Child,
    /// Readable when the process has exited.
    pidfd: OwnedFd,
    /// For the log line: whose upload, which file.
    user: Box<str>,
    virtual_path: Box<[u8]>,
    started: Instant,
    /// `--hook-timeout`.
    timer: Option<crate::timer::TimerId>,
    /// Why the server killed it, if it did.
    killed: Option<&'static str>,
}

impl Server {
    /// An upload of the session at `owner` completed (its reply will be
    /// `226`): make its hook's job from the session (user, the client's
    /// real address) and the upload's `facts` (real path, size).
    pub(super) fn upload_completed(
        &mut self,
        owner: usize,
        path: &crate::vfs::VirtualPath,
        kind: crate::metrics::TransferKind,
        facts: io::Result<(PathBuf, u64)>,
    ) {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
        let (real_path, size) = match facts {
            Ok(f) => f,
            Err(e) => {
                ctx_log!(warn, owner, c.session, "upload hook not run for {}: its real path: {e}", sanitize(path.as_bytes()));
                return;
            }
        };
        use crate::metrics::TransferKind;
        let command = match kind {
            TransferKind::Appe => hooks::UploadCommand::Appe,
            TransferKind::Stou => hooks::UploadCommand::Stou,
            _ => hooks::UploadCommand::Stor,
        };
        let job = Job {
            real_path,
            virtual_path: path.as_bytes().into(),
            user: c.session.user().into(),
            size,
            client: crate::ftp::session::canonical(c.session.peer()).ip(),
            command,
        };
        self.submit_hook(job);
    }

    /// An upload completed (`226`): run its hook now, queue it, or drop it.
    pub(super) fn submit_hook(&mut self, job: Job) {
        match self.shared.hooks.submit(job) {
            Submitted::Run(job) => self.start_hook(job),
            Submitted::Queued => self.env.metrics.hooks_queued(1),
            Submitted::Dropped(job, why) => self.drop_hook(&job, why),
        }
    }

    fn drop_hook(&self, job: &Job, why: DropReason) {
        let because = match why {
            DropReason::QueueFull => "the queue is full (--max-hooks running, the rest waiting)",
            DropReason::Shutdown => "shutting down",
            DropReason::SpawnError => "it could not be started",
        };
        warn!("upload hook dropped for {} {} ({} bytes): {because}", job.user, sanitize(&job.virtual_path), job.size);
        self.env.metrics.hook_dropped(why);
    }

    /// The next queued job takes over a slot just freed, or the slot is
    /// given back.
    fn next_hook(&mut self) -> Option<Job> {
        let job = self.shared.hooks.finished();
        if job.is_some() {
            self.env.metrics.hooks_queued(-1);
        }
        job
    }

    /// Start `job` in the slot it holds; if it cannot start, the slot
    /// goes to the next queued job.
    fn start_hook(&mut self, job: Job) {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            match self.spawn_hook(&job) {
                Ok(()) => return,
                Err(e) => {
                    error!("upload hook for {} {}: cannot start /bin/sh: {e}", job.user, sanitize(&job.virtual_path));
                    self.drop_hook(&job, DropReason::SpawnError);
                    next = self.next_hook();
                }
            }
        }
    }

    fn spawn_hook(&mut self, job: &Job) -> io::Result<()> {
        let Some(cmd) = self.env.config.on_upload.as_deref() else { return Err(io::Error::other("no --on-upload")) };
        let mut child = hooks::spawn(cmd, job)?;
        let key = self.slab.vacant_key();
        let pidfd = crate::sys::pidfd_open(child.id()).and_then(|fd| {
            self.poll.registry().register(&mut SourceFd(&fd.as_raw_fd()), Token(key), Interest::READABLE).map(|()| fd)
        });
        let pidfd = match pidfd {
            Ok(fd) => fd,
            Err(e) => {
                // Not watched, so not left running: killed and reaped here
                // (the wait is for a process already sent SIGKILL).
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let timer = Some(self.wheel.schedule(self.now + self.env.config.hook_timeout, key));
        debug!("upload hook started for {} {}: pid {}", job.user, sanitize(&job.virtual_path), child.id());
        self.slab.insert(Entry::Hook(Running {
            child,
            pidfd,
            user: job.user.clone(),
            virtual_path: job.virtual_path.clone(),
            started: self.now,
            timer,
            killed: None,
        }));
        self.env.metrics.hook_started();
        Ok(())
    }

    /// The pidfd is readable: the hook has exited. Reap it, log one line,
    /// and give its slot to the next queued job.
    pub(super) fn hook_ready(&mut self, key: usize) {
        let Some(entry @ Entry::Hook(_)) = self.slab.get_mut(key) else { return };
        let Entry::Hook(h) = &mut *entry else { return };
        let status = match h.child.try_wait() {
            Ok(Some(status)) => Some(status),
            Ok(None) => return, // not exited yet (a spurious wake-up)
            Err(e) => {
                error!("upload hook for {} {}: waitpid: {e}", h.user, sanitize(&h.virtual_path));
                None
            }
        };
        let Entry::Hook(h) = std::mem::replace(entry, Entry::Closed) else { return };
        self.closed.push(key);
        if let Some(id) = h.timer {
            self.wheel.cancel(id);
        }
        let secs = self.now.saturating_duration_since(h.started).as_secs_f64();
        let result = match (h.killed, status) {
            (Some(_), _) => HookResult::Killed,
            (None, Some(s)) if s.success() => HookResult::Ok,
            _ => HookResult::Failed,
        };
        let status = status.map_or_else(|| "exit status unknown".to_string(), |s| s.to_string());
        let killed = h.killed.map(|why| format!(" (killed: {why})")).unwrap_or_default();
        info!("upload hook for {} {}: {status}{killed}, {secs:.3} s", h.user, sanitize(&h.virtual_path));
        self.env.metrics.hook_finished(result);
        drop(h); // closes the pidfd, which also takes it out of the poll
        if let Some(job) = self.next_hook() {
            self.start_hook(job);
        }
    }

    /// `--hook-timeout` is over (or shutdown's grace): SIGKILL through
    /// the pidfd, and to its process group; the exit then comes as readiness and is reaped there.
    pub(super) fn kill_hook(&mut self, key: usize, why: &'static str) {
        let Some(Entry::Hook(h)) = self.slab.get_mut(key) else { return };
        if let Some(id) = h.timer.take() {
            self.wheel.cancel(id);
        }
        if h.killed.is_some() {
            return;
        }
        match crate::sys::pidfd_send_signal(h.pidfd.as_fd(), libc::SIGKILL) {
            Ok(()) => {
                // And what it started, in its process group (see
                // `crate::hooks`): the leader is not reaped yet, so the
                // group's number is still its own.
                let _ = crate::sys::kill_process_group(h.child.id(), libc::SIGKILL);
                h.killed = Some(why);
                let secs = self.now.saturating_duration_since(h.started).as_secs_f64();
                warn!("upload hook for {} {} killed after {secs:.3} s: {why}", h.user, sanitize(&h.virtual_path));
            }
            // ESRCH: it has just exited by itself; its readiness follows.
            Err(e) => debug!("upload hook for {} {}: kill: {e}", h.user, sanitize(&h.virtual_path)),
        }
    }

    /// The wheel fired for a hook: its `--hook-timeout` is over.
    pub(super) fn hook_timeout(&mut self, key: usize) {
        if let Some(Entry::Hook(h)) = self.slab.get_mut(key) {
            h.timer = None;
        }
        self.kill_hook(key, "--hook-timeout");
    }

    /// SIGTERM: drop the queued jobs (running hooks are waited for within
    /// the grace period).
    pub(super) fn drop_queued_hooks(&mut self) {
        for job in self.shared.hooks.close() {
            self.env.metrics.hooks_queued(-1);
            self.drop_hook(&job, DropReason::Shutdown);
        }
    }

    /// The shutdown grace period is over: kill the hooks still running.
    pub(super) fn kill_hooks(&mut self) {
        let keys: Vec<usize> = self.slab.iter().filter(|(_, e)| matches!(e, Entry::Hook(_))).map(|(k, _)| k).collect();
        for key in keys {
            self.kill_hook(key, "shutdown grace period over");
        }
    }
}
