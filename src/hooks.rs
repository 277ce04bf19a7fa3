//! Upload hooks (`--on-upload CMD`): after each completed upload (STOR,
//! STOU or APPE answered `226`), run CMD with what it needs to know in its
//! environment — the camera case: a new picture triggers a script.
//!
//! This module owns the job (what a hook is told), the one function that
//! starts a hook ([`spawn`]) and the queue of jobs waiting for a slot
//! ([`Queue`], one for every worker of the process, held in
//! `reactor::Shared`). It never touches the poll or the slab: the reactor
//! (`reactor/hook.rs`) registers each running hook's pidfd, reaps it,
//! kills it at `--hook-timeout`, and logs and counts.
//!
//! # What "completed" means
//! A hook runs only for an upload whose final reply is `226` (DESIGN rule
//! 11: every byte meant was moved and the file is in place): the client
//! closed its side of the data connection normally (RFC 959 §3.4, stream
//! mode: end of file is the closing of the data connection) and, under
//! TLS, with `close_notify` (RFC 4217 §9; without it the end may be cut
//! off: `426`). Never for ABOR, a lost or reset connection, a stall, a
//! refused command (`550`/`553`), a file error or shutdown's cut.
//!
//! # The environment
//! The command is run as `/bin/sh -c CMD`, CMD being the operator's string
//! only. The file's name reaches the hook in environment variables, never
//! in the command line: a client's file name `$(rm -rf ~).jpg` is a value,
//! not shell text, so it cannot inject commands (unless the script itself
//! `eval`s it). The environment is exactly:
//!
//! | variable | value |
//! | --- | --- |
//! | `LEANFTPD_PATH` | the file's real path (absolute, symbolic links resolved) |
//! | `LEANFTPD_VIRTUAL_PATH` | its path as the client sees it (`/incoming/a.jpg`) |
//! | `LEANFTPD_USER` | the user name the session logged in as |
//! | `LEANFTPD_SIZE` | the file's size in bytes after the upload (for APPE, the whole file) |
//! | `LEANFTPD_CLIENT_ADDR` | the client's IP address (the real one behind the PROXY protocol) |
//! | `LEANFTPD_COMMAND` | `STOR`, `STOU` or `APPE` |
//! | `PATH` | `/usr/local/bin:/usr/bin:/bin` |
//!
//! Nothing else of the server's environment is passed on: it may hold
//! secrets (credentials of a service manager, `NOTIFY_SOCKET`,
//! `LISTEN_FDS`), and a hook that must see something else sets it itself.
//! Names and paths are passed as bytes: not necessarily UTF-8 (RFC 2640
//! expects it, does not guarantee it).
//!
//! stdin is `/dev/null`; stdout is `/dev/null` (a script's ordinary output
//! is not the server's business and would flood its log); stderr is the
//! server's own (the journal under systemd), so a failing script's message
//! lands beside the server's line with its exit status. The working
//! directory is `/`: predictable, and it keeps no served directory busy.
//! Each hook leads its own process group, so that `--hook-timeout` kills
//! what it started too (a script's `sleep`, a converter), not only the
//! shell: the group is sent `SIGKILL` with the shell. Its own group also
//! keeps a terminal's Ctrl-C meant for a foreground server from reaching
//! it. The hook inherits no descriptor but these three: every descriptor the
//! server opens has `O_CLOEXEC` (see `sys.rs`'s invariants; the pidfds
//! too), which `tests/hooks.rs` checks from inside a hook.
//!
//! # What spawning costs
//! `std::process::Command` uses `posix_spawn(3)` here (glibc's is
//! `clone(CLONE_VM | CLONE_VFORK)`): the loop is stopped only until the
//! child has called `execve`, well under a millisecond, whatever the
//! server's memory size (no page tables are copied), and nothing waits for
//! the hook itself. Adding a `pre_exec` closure would force `fork(2)`; none
//! is used (`posix_spawnattr_setpgroup` covers the process group). A std spawn allocates its argument and environment arrays (a
//! few hundred bytes, once per upload).
//!
//! # Bounds
//! - At most `--max-hooks` (1 to [`MAX_HOOKS_LIMIT`], default
//!   [`DEFAULT_MAX_HOOKS`]) run at once, over all workers: one descriptor
//!   (the pidfd), one slab entry and one timer each.
//! - At most [`QUEUE_MAX_JOBS`] jobs wait, holding at most
//!   [`QUEUE_MAX_BYTES`] of names; past either a job is logged and dropped
//!   (`leanftpd_upload_hooks_dropped_total{reason="queue_full"}`). A job
//!   is 96 bytes plus its two paths and user name on the heap: about
//!   200 bytes with typical names (a full queue: about 200 KiB). The byte
//!   bound is there because a virtual path may be as long as a command
//!   line (`--max-line`, 8 KiB) when symbolic links in the jail make it
//!   longer than the real one: 1024 such jobs would hold 12 MiB; with it,
//!   the queue holds at most about 1.1 MiB.
//! - A hook running longer than `--hook-timeout` is killed (`SIGKILL`
//!   through its pidfd): without it, one that never ends would hold its
//!   slot forever.
//!
//! # Invariants
//! - `Inner::running` counts the slots taken: hooks running on any worker,
//!   plus jobs handed out by [`Queue::submit`] or [`Queue::finished`] whose
//!   spawn has not yet returned. Each slot taken is given back exactly once
//!   ([`Queue::finished`], which may hand it straight to the next job).
//! - A queued job exists only while every slot is taken, or after
//!   [`Queue::close`] (then the queue is empty and stays so): whoever frees
//!   a slot takes the next job under the same lock, so no job waits beside
//!   a free slot, whichever worker queued it.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Hooks running at once by default: enough to keep a few cores busy with
/// image conversions, few enough for a small device.
pub const DEFAULT_MAX_HOOKS: usize = 4;
/// The most `--max-hooks` takes: each running hook holds a process, a
/// descriptor and a slab entry.
pub const MAX_HOOKS_LIMIT: usize = 64;
/// A hook running longer than this is killed (`--hook-timeout`).
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `--hook-timeout`: one day.
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Jobs that wait for a slot, over all workers; past it a job is dropped.
pub const QUEUE_MAX_JOBS: usize = 1024;
/// Bytes of names (real path, virtual path, user) the waiting jobs may
/// hold together.
pub const QUEUE_MAX_BYTES: usize = 1024 * 1024;
/// Jobs that may wait: [`QUEUE_MAX_JOBS`]. Test builds (cargo feature
/// `fault-injection`) take a smaller one from `LEANFTPD_TEST_HOOK_QUEUE_JOBS`,
/// so a test can fill it with a few uploads.
pub fn queue_max_jobs() -> usize {
    #[cfg(feature = "fault-injection")]
    if let Some(n) = std::env::var("LEANFTPD_TEST_HOOK_QUEUE_JOBS").ok().and_then(|v| v.parse().ok()) {
        return std::cmp::min(n, QUEUE_MAX_JOBS);
    }
    QUEUE_MAX_JOBS
}

/// The `PATH` a hook gets.
pub const HOOK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The shell that runs CMD.
const SHELL: &str = "/bin/sh";

/// The upload command that completed (`LEANFTPD_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadCommand {
    /// STOR.
    Stor,
    /// STOU.
    Stou,
    /// APPE.
    Appe,
}

impl UploadCommand {
    /// The verb, as the client sent it.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadCommand::Stor => "STOR",
            UploadCommand::Stou => "STOU",
            UploadCommand::Appe => "APPE",
        }
    }
}

/// What one hook is told about one completed upload.
#[derive(Clone, Debug)]
pub struct Job {
    /// The file's real path (`LEANFTPD_PATH`).
    pub real_path: PathBuf,
    /// The client's path (`LEANFTPD_VIRTUAL_PATH`).
    pub virtual_path: Box<[u8]>,
    /// The user (`LEANFTPD_USER`).
    pub user: Box<str>,
    /// The file's size in bytes after the upload (`LEANFTPD_SIZE`).
    pub size: u64,
    /// The client's address (`LEANFTPD_CLIENT_ADDR`).
    pub client: IpAddr,
    /// The command (`LEANFTPD_COMMAND`).
    pub command: UploadCommand,
}

impl Job {
    /// Bytes its names hold on the heap (charged to [`QUEUE_MAX_BYTES`]).
    pub fn heap_bytes(&self) -> usize {
        self.real_path.as_os_str().len() + self.virtual_path.len() + self.user.len()
    }
}

/// Start `/bin/sh -c cmd` for `job`, with the environment, descriptors and
/// working directory described in the module's doc, without waiting for
/// it. The only place a hook process is made: a sandbox or resource limit
/// applied to hooks belongs here.
pub fn spawn(cmd: &str, job: &Job) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // Test builds (cargo feature `fault-injection`): every spawn fails while
    // `LEANFTPD_TEST_HOOK_SPAWN_FAIL` is set, as when `/bin/sh` is missing
    // or the process table is full, so a test can show that the slot is
    // given back and the drop counted.
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("LEANFTPD_TEST_HOOK_SPAWN_FAIL").is_some() {
        return Err(io::Error::other("spawn refused (fault injection)"));
    }
    Command::new(SHELL)
        .process_group(0)
        .arg("-c")
        .arg(cmd)
        .env_clear()
        .env("PATH", HOOK_PATH)
        .env("LEANFTPD_PATH", &job.real_path)
        .env("LEANFTPD_VIRTUAL_PATH", OsStr::from_bytes(&job.virtual_path))
        .env("LEANFTPD_USER", &*job.user)
        .env("LEANFTPD_SIZE", job.size.to_string())
        .env("LEANFTPD_CLIENT_ADDR", job.client.to_string())
        .env("LEANFTPD_COMMAND", job.command.as_str())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
}

/// At start, with `--on-upload`: check that the kernel has `pidfd_open(2)`
/// (Linux 5.3), so an old one is a clear start-up error rather than a
/// hook per upload that cannot be watched; and set `FD_CLOEXEC` on every
/// descriptor above stderr. What the server opens has it already; this is
/// for descriptors it *inherited* without it (a careless parent, a shell's
/// saved descriptors, a test runner's pipes), which would otherwise reach
/// every hook. Socket-activated listeners got it in `crate::systemd`.
pub fn prepare() -> io::Result<()> {
    crate::sys::pidfd_open(std::process::id())
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("--on-upload needs pidfd_open(2) (Linux >= 5.3): {e}")))?;
    crate::sys::set_cloexec_from(3)
}

/// Why a job did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// [`QUEUE_MAX_JOBS`] jobs were waiting.
    QueueFull,
    /// The server was shutting down (queued jobs are dropped then).
    Shutdown,
    /// The hook could not be started (`fork`/`exec` failed).
    SpawnError,
}

impl DropReason {
    /// The `reason` label of `leanftpd_upload_hooks_dropped_total`.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Shutdown => "shutdown",
            DropReason::SpawnError => "spawn_error",
        }
    }
}

/// What [`Queue::submit`] decided.
#[derive(Debug)]
pub enum Submitted {
    /// A slot was free and is now the job's: spawn it.
    Run(Job),
    /// Every slot is taken: it waits.
    Queued,
    /// Not run: the queue is full, or closed by shutdown.
    Dropped(Job, DropReason),
}

/// The jobs waiting for a slot and the slots taken, over all workers.
/// See the module's invariants.
pub struct Queue {
    max_running: usize,
    max_queued: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    running: usize,
    jobs: VecDeque<Job>,
    /// The queued jobs' `heap_bytes`, summed.
    bytes: usize,
    closed: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("Queue").field("running", &i.running).field("queued", &i.jobs.len()).finish()
    }
}

impl Queue {
    /// At most `max_running` slots, at most `max_queued` jobs waiting.
    pub fn new(max_running: usize, max_queued: usize) -> Queue {
        Queue {
            max_running,
            max_queued,
            inner: Mutex::new(Inner { running: 0, jobs: VecDeque::new(), bytes: 0, closed: false }),
        }
    }

    /// A queue of plain counts stays usable after a panic elsewhere.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An upload completed: take a slot for `job`, or queue it, or drop it.
    pub fn submit(&self, job: Job) -> Submitted {
        let mut i = self.lock();
        if i.running < self.max_running {
            i.running += 1;
            Submitted::Run(job)
        } else if i.closed {
            Submitted::Dropped(job, DropReason::Shutdown)
        } else if i.jobs.len() >= self.max_queued || i.bytes + job.heap_bytes() > QUEUE_MAX_BYTES {
            Submitted::Dropped(job, DropReason::QueueFull)
        } else {
            i.bytes += job.heap_bytes();
            i.jobs.push_back(job);
            Submitted::Queued
        }
    }

    /// A slot's hook ended (or could not be started): the next queued job
    /// takes the slot over (spawn it), or the slot is given back.
    pub fn finished(&self) -> Option<Job> {
        let mut i = self.lock();
        let next = i.jobs.pop_front();
        if let Some(j) = &next {
            i.bytes -= j.heap_bytes();
        } else {
            debug_assert!(i.running > 0, "a hook slot given back twice");
            i.running = i.running.saturating_sub(1);
        }
        next
    }

    /// Shutdown: queue nothing more, and hand back the queued jobs (to be
    /// logged as dropped). Running hooks keep their slots.
    pub fn close(&self) -> Vec<Job> {
        let mut i = self.lock();
        i.closed = true;
        i.bytes = 0;
        i.jobs.drain(..).collect()
    }

    /// Slots taken (hooks running or being started), over all workers.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// Jobs waiting.
    pub fn queued(&self) -> usize {
        self.lock().jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn job(n: u64) -> Job {
        Job {
            real_path: PathBuf::from(format!("/srv/f{n}")),
            virtual_path: format!("/f{n}").into_bytes().into(),
            user: "u".into(),
            size: n,
            client: IpAddr::from([127, 0, 0, 1]),
            command: UploadCommand::Stor,
        }
    }

    #[test]
    fn slots_then_queue_then_drop_and_a_freed_slot_goes_to_the_oldest_job() {
        let q = Queue::new(2, 3);
        assert!(matches!(q.submit(job(1)), Submitted::Run(j) if j.size == 1));
        assert!(matches!(q.submit(job(2)), Submitted::Run(_)));
        for n in 3..=5 {
            assert!(matches!(q.submit(job(n)), Submitted::Queued));
        }
        assert!(matches!(q.submit(job(6)), Submitted::Dropped(j, DropReason::QueueFull) if j.size == 6));
        assert_eq!((q.running(), q.queued()), (2, 3));
        assert_eq!(q.finished().map(|j| j.size), Some(3));
        assert_eq!(q.finished().map(|j| j.size), Some(4));
        assert_eq!((q.running(), q.queued()), (2, 1));
        assert_eq!(q.finished().map(|j| j.size), Some(5));
        assert!(q.finished().is_none());
        assert!(q.finished().is_none());
        assert_eq!((q.running(), q.queued()), (0, 0));
    }

    /// Long names fill the queue before its job count does.
    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let q = Queue::new(1, QUEUE_MAX_JOBS);
        assert!(matches!(q.submit(job(0)), Submitted::Run(_)));
        let long = |n| Job { virtual_path: vec![b'a'; 8192].into(), ..job(n) };
        let fit = QUEUE_MAX_BYTES / long(1).heap_bytes();
        for n in 0..fit {
            assert!(matches!(q.submit(long(n as u64)), Submitted::Queued), "job {n}");
        }
        assert!(matches!(q.submit(long(9)), Submitted::Dropped(_, DropReason::QueueFull)));
        assert_eq!(q.queued(), fit);
        assert!(q.finished().is_some());
        assert!(matches!(q.submit(long(10)), Submitted::Queued));
    }

    #[test]
    fn close_hands_back_the_queue_and_queues_nothing_more_but_a_free_slot_still_runs() {
        let q = Queue::new(1, 10);
        assert!(matches!(q.submit(job(1)), Submitted::Run(_)));
        assert!(matches!(q.submit(job(2)), Submitted::Queued));
        let dropped = q.close();
        assert_eq!(dropped.iter().map(|j| j.size).collect::<Vec<_>>(), vec![2]);
        assert!(matches!(q.submit(job(3)), Submitted::Dropped(_, DropReason::Shutdown)));
        assert!(q.finished().is_none());
        assert!(matches!(q.submit(job(4)), Submitted::Run(_)));
        assert!(q.finished().is_none());
        assert_eq!(q.running(), 0);
    }

    /// Several threads (workers) submit and finish at once: the slots
    /// taken never pass the bound, and every job runs once.
    #[test]
    fn threads_never_take_more_than_max_running_and_lose_no_job() {
        let q = Arc::new(Queue::new(3, 10_000));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (q, peak, live, ran) = (q.clone(), peak.clone(), live.clone(), ran.clone());
                std::thread::spawn(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    let run = |mut j: Option<Job>| {
                        while let Some(_job) = j {
                            let n = live.fetch_add(1, SeqCst) + 1;
                            peak.fetch_max(n, SeqCst);
                            std::thread::yield_now();
                            live.fetch_sub(1, SeqCst);
                            ran.fetch_add(1, SeqCst);
                            j = q.finished();
                        }
                    };
                    for n in 0..500 {
                        if let Submitted::Run(j) = q.submit(job(t * 1000 + n)) {
                            run(Some(j));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        use std::sync::atomic::Ordering::SeqCst;
        assert!(peak.load(SeqCst) <= 3, "peak {}", peak.load(SeqCst));
        assert_eq!(ran.load(SeqCst), 2000);
        assert_eq!((q.running(), q.queued()), (0, 0));
    }
}
