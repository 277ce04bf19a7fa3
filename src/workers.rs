//! `--workers N`: N copies of the reactor, one per thread, sharing nothing
//! but the counters of the global limits ([`Shared`]).
//!
//! Each worker is a whole [`Server`]: its own `mio::Poll`, slab, wheel,
//! helper thread, and its own listening socket on the control port (and on
//! `--implicit-tls-listen`), all bound with `SO_REUSEPORT`, so the kernel
//! spreads new connections over the workers and no lock or shared accept
//! queue sits between them (`socket(7)`). A session lives and dies on the
//! worker that accepted it, with its passive listeners and data
//! connections (so a PROT P data connection finds its control
//! connection's TLS session there).
//!
//! This thread (the caller's) is the one place that handles signals: it
//! registers SIGTERM, SIGINT and SIGHUP in a small poll of its own and
//! passes each on to every worker through its [`StopHandle`] (a request
//! bit and the worker's `mio::Waker`): SIGTERM/SIGINT drain every worker
//! with the usual grace period (a second one cuts transfers at once),
//! SIGHUP makes every worker reload the users file and the TLS
//! certificate. It returns when every worker has ended.
//!
//! # systemd
//! Under socket activation each inherited socket is shared by every worker
//! (a `try_clone` each: one accept queue, no `SO_REUSEPORT`). This thread
//! sends the process's notifications (`NOTIFY_SOCKET`, read before any
//! thread starts; the workers send none): `READY=1` once every worker has
//! started, `RELOADING=1` per SIGHUP and `READY=1` only once every worker
//! has reported its reload (through `Server::on_reload`; each request is
//! numbered by `StopHandle::reload`, so a worker that folded two SIGHUPs
//! into one reload counts for both), and `STOPPING=1` when the drain
//! begins.
//!
//! With one worker nothing of this runs: [`run`] binds one `Server`
//! without `SO_REUSEPORT` and runs it on the calling thread, with its
//! signals in its own loop, as before `--workers` existed.
//!
//! # Logs
//! Worker threads are named `worker 1` … `worker N`; the binary's logger
//! prints the name on every line when N > 1, e.g. `(worker 2) [c5 …]
//! connected`, so an operator sees the spread.
//!
//! # Invariants
//! - Every worker's listening sockets are bound before any thread starts;
//!   the first binds the configured port (port 0: one the kernel picks)
//!   and the others bind the port it got.
//! - `Workers::wait` returns only after every worker thread has been joined.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use log::{error, info};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::reactor::stream::CONTROL_BACKLOG;
use crate::reactor::{Listeners, Server, Shared, StartError, StopHandle};
use crate::systemd::Notifier;

/// Token of the signal pipe in the signal thread's poll.
const SIGNAL: Token = Token(0);
/// Token of the waker a worker uses when it ends or has reloaded.
const ENDED: Token = Token(1);

/// Why [`run`] ended with an error; `main` prints it and exits with
/// [`RunError::exit_code`].
#[derive(Debug)]
pub enum RunError {
    /// The server could not start: 1 if an address could not be bound
    /// (a runtime condition), 2 for a bad configuration.
    Start(StartError),
    /// It started and then failed (exit code 1).
    Runtime(String),
}

impl RunError {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Start(e) if !e.0.starts_with("cannot listen") => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Start(e) => e.fmt(f),
            RunError::Runtime(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for RunError {}

/// Serve `config` until a signal stops it: one reactor on this thread, or
/// `config.workers` reactor threads (see the module's doc). This is what
/// the binary runs.
pub fn run(config: Config) -> Result<(), RunError> {
    // Every socket is bound and no other thread exists yet when the
    // process confines itself: Landlock applies to the calling thread and
    // to what it creates afterwards only (`crate::sandbox`), so the
    // workers, their helper threads and any hook all start confined. (The
    // single reactor has loaded the certificate by then; the workers load
    // it in `start_with`, through the read rule of its directory that
    // SIGHUP needs anyway. The xferlog is created by `confine`.)
    // Read before `Server::bind_listeners` takes NOTIFY_SOCKET away: an
    // abstract one must stay reachable (no abstract-socket scoping).
    let notify_abstract = crate::sandbox::notify_socket_is_abstract();
    let confine = |config: &Config| crate::sandbox::confine_for(config, notify_abstract).map_err(|e| RunError::Start(StartError(e)));
    if config.workers <= 1 {
        let (listeners, shared, notify) = Server::bind_listeners(&config).map_err(RunError::Start)?;
        confine(&config)?;
        let mut server = Server::with_listeners(config, listeners, shared, 0, Arc::new(Metrics::new())).map_err(RunError::Start)?;
        server.set_notifier(notify);
        server.handle_signals().map_err(|e| RunError::Runtime(format!("cannot install signal handlers: {e}")))?;
        return server.run().map_err(|e| RunError::Runtime(e.to_string()));
    }
    let sets = Workers::bind(&config)?;
    confine(&config)?;
    Workers::start_with(config, sets)?.wait()
}

/// What a worker thread reports when it ends.
type Ended = Vec<(usize, io::Result<()>)>;

/// Per worker (index `worker - 1`): the number of the last reload request
/// it has carried out (`StopHandle::reload`), and what that reload did.
type Reloaded = Vec<(u64, String)>;

/// Running workers and the signal handling of the calling thread.
pub struct Workers {
    poll: Poll,
    /// Kept here, not only by the workers: the last worker dropping the
    /// last `Arc` would close the eventfd, and closing it takes its
    /// pending event out of the poll (the end would go unseen).
    _ended_waker: Arc<Waker>,
    signals: signal_hook_mio::v1_0::Signals,
    handles: Vec<StopHandle>,
    threads: Vec<JoinHandle<()>>,
    ended: Arc<Mutex<Ended>>,
    local_addr: SocketAddr,
    implicit_addr: Option<SocketAddr>,
    /// systemd readiness for the whole process (`NOTIFY_SOCKET`): `READY=1`
    /// once every worker serves, `RELOADING=1` per SIGHUP and `READY=1`
    /// again once every worker has reloaded, `STOPPING=1`.
    notify: Option<Notifier>,
    /// `--shutdown-grace`, for the `STOPPING=1` status.
    grace: std::time::Duration,
    /// What each worker's last reload did (see [`Reloaded`]).
    reloaded: Arc<Mutex<Reloaded>>,
    /// Per worker, the reload request it must carry out before the
    /// `READY=1` that ends a SIGHUP's `RELOADING=1`; `None` when no SIGHUP
    /// waits for it.
    reload_awaited: Option<Vec<u64>>,
    /// The counters every worker adds to (one `GET /metrics` serves the sum).
    metrics: Arc<Metrics>,
    /// The global limits' counters.
    shared: Arc<Shared>,
    /// The configuration in force, read again here once per SIGHUP
    /// (`Shared::reread_config`) and adopted by each worker.
    config: Config,
    /// What reading the file again said, for the READY=1 that follows.
    reread_status: Option<String>,
}

/// The listening sockets of `n` workers, bound with `SO_REUSEPORT` (see the
/// module's doc): the first on `addr`, the others on the port it got.
fn bind_group(addr: SocketAddr, n: usize, what: &str) -> Result<Vec<std::net::TcpListener>, StartError> {
    let mut at = addr;
    let mut group = Vec::with_capacity(n);
    for i in 0..n {
        let l = crate::sys::listen_reuseport(at, CONTROL_BACKLOG, i == 0)
            .map_err(|e| StartError(format!("cannot listen on {at}{what}: {e}")))?;
        at = l.local_addr().map_err(|e| StartError(format!("cannot listen on {at}{what}: {e}")))?;
        group.push(l);
    }
    Ok(group)
}

impl Workers {
    /// Bind every worker's listening sockets (`SO_REUSEPORT`, see the
    /// module's doc), then [`Workers::start_with`] them.
    ///
    /// Under systemd socket activation the one inherited socket of each
    /// listener is shared by every worker instead (each gets a `try_clone`:
    /// one accept queue, no `SO_REUSEPORT`).
    pub fn start(config: Config) -> Result<Workers, RunError> {
        let sets = Workers::bind(&config)?;
        Workers::start_with(config, sets)
    }

    /// The listening sockets of every worker (see [`Workers::start`]):
    /// one set per worker, the first with the `--metrics-listen` listener.
    pub fn bind(config: &Config) -> Result<Vec<Listeners>, RunError> {
        let n = config.workers.max(1);
        let inherited = crate::systemd::Listeners::from_env(config).map_err(|e| RunError::Start(StartError(e)))?;
        let clones = |l: std::net::TcpListener| -> Result<Vec<std::net::TcpListener>, RunError> {
            let mut v = Vec::with_capacity(n);
            for _ in 1..n {
                v.push(l.try_clone().map_err(|e| RunError::Runtime(format!("cannot share an inherited socket: {e}")))?);
            }
            v.push(l);
            Ok(v)
        };
        let shared = [inherited.control.is_some() && n > 1, inherited.implicit_tls.is_some() && config.implicit_tls_listen.is_some() && n > 1];
        let controls = match inherited.control {
            Some(l) => clones(l)?,
            None => bind_group(config.listen, n, "").map_err(RunError::Start)?,
        };
        let implicits: Vec<Option<std::net::TcpListener>> = match (config.implicit_tls_listen, inherited.implicit_tls) {
            (Some(_), Some(l)) => clones(l)?.into_iter().map(Some).collect(),
            (Some(addr), None) => bind_group(addr, n, " (--implicit-tls-listen)").map_err(RunError::Start)?.into_iter().map(Some).collect(),
            (None, _) => (0..n).map(|_| None).collect(),
        };
        let mut metrics = crate::reactor::bind_metrics_listener(config.metrics_listen).map_err(RunError::Start)?;
        Ok(controls
            .into_iter()
            .zip(implicits)
            .map(|(control, implicit)| Listeners { control, implicit, shared_queue: shared, metrics: metrics.take() })
            .collect())
    }

    /// Start one worker per set of listening sockets in `sets` (bound and
    /// listening; e.g. sockets handed in by systemd, each `try_clone`d
    /// per worker), install the signal handlers, and wait until each
    /// worker has loaded its configuration (users file, homes); the first
    /// error stops the others and is returned.
    pub fn start_with(config: Config, sets: Vec<Listeners>) -> Result<Workers, RunError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let n = sets.len();
        if n == 0 {
            return Err(RunError::Runtime("no listening socket for the workers".into()));
        }
        // Read (and unset) before any thread starts: changing the
        // environment while another thread may read it is undefined
        // behaviour in glibc (`setenv(3)`: not MT-safe).
        let mut notify = Notifier::from_env();
        let grace = config.shutdown_grace;
        let shared = Arc::new(Shared::with_tls(&config).map_err(RunError::Start)?);
        let metrics = Arc::new(Metrics::new());
        let local_addr = sets[0].control.local_addr().map_err(|e| RunError::Runtime(e.to_string()))?;
        let implicit_addr = sets[0].implicit.as_ref().and_then(|l| l.local_addr().ok());
        let startup = |e: io::Error| RunError::Runtime(format!("cannot start the workers: {e}"));
        let poll = Poll::new().map_err(startup)?;
        let waker = Arc::new(Waker::new(poll.registry(), ENDED).map_err(startup)?);
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| RunError::Runtime(format!("cannot install signal handlers: {e}")))?;
        poll.registry()
            .register(&mut signals, SIGNAL, Interest::READABLE)
            .map_err(|e| RunError::Runtime(format!("cannot install signal handlers: {e}")))?;
        let ended: Arc<Mutex<Ended>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let startup_reports = Arc::new(Startup::default());
        let reloaded: Arc<Mutex<Reloaded>> = Arc::new(Mutex::new(vec![(0, String::new()); n]));
        let mut threads = Vec::with_capacity(n);
        for (i, listeners) in sets.into_iter().enumerate() {
            let worker = i + 1;
            let (mut config, shared, waker, ended, metrics) = (config.clone(), shared.clone(), waker.clone(), ended.clone(), metrics.clone());
            // One metrics listener (the first worker's); it serves the sum.
            if worker > 1 {
                config.metrics_listen = None;
            }
            let startup_report = Some(startup_reports.clone());
            let reloaded = reloaded.clone();
            let spawned = std::thread::Builder::new().name(format!("worker {worker}")).spawn(move || {
                let mut guard = EndGuard { worker, ended, waker, startup: startup_report, result: None };
                let server = Server::with_listeners(config, listeners, shared, worker, metrics);
                let report = guard.startup.take().expect("reported once");
                guard.result = Some(match server {
                    Ok(mut server) => {
                        // A reload done: the signal thread sends READY=1
                        // once every worker has reported (see `wait`).
                        let waker = guard.waker.clone();
                        server.on_reload(move |upto, status| {
                            if let Some(r) = reloaded.lock().unwrap_or_else(|e| e.into_inner()).get_mut(worker - 1) {
                                *r = (upto, status.to_owned());
                            }
                            let _ = waker.wake();
                        });
                        report.report(Ok(server.stop_handle()));
                        server.run()
                    }
                    Err(e) => {
                        report.report(Err(e));
                        Ok(())
                    }
                });
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let handles: Vec<StopHandle> = startup_reports.wait_for(threads.len()).into_iter().filter_map(Result::ok).collect();
                    stop_and_join(&handles, threads);
                    return Err(startup(e));
                }
            }
        }
        let mut handles = Vec::with_capacity(n);
        let mut failed = None;
        for report in startup_reports.wait_for(n) {
            match report {
                Ok(h) => handles.push(h),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            stop_and_join(&handles, threads);
            return Err(RunError::Start(e));
        }
        info!("{n} workers on {local_addr}{}", implicit_addr.map(|a| format!(" and {a} (implicit FTPS)")).unwrap_or_default());
        if let Some(nt) = &mut notify {
            nt.ready(&format!("Serving on {local_addr} with {n} workers"));
        }
        Ok(Workers {
            poll,
            _ended_waker: waker,
            signals,
            handles,
            threads,
            ended,
            local_addr,
            implicit_addr,
            notify,
            grace,
            reloaded,
            reload_awaited: None,
            metrics,
            shared,
            config,
            reread_status: None,
        })
    }

    /// The control port every worker listens on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The implicit FTPS port, if any.
    pub fn implicit_tls_addr(&self) -> Option<SocketAddr> {
        self.implicit_addr
    }

    /// The counters every worker adds to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// One handle per worker (stop, reload), in worker order.
    pub fn handles(&self) -> &[StopHandle] {
        &self.handles
    }

    /// Pass signals on to every worker until all have ended, then join
    /// them. A worker that fails stops the others at once; its error is
    /// returned (exit code 1).
    pub fn wait(mut self) -> Result<(), RunError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let n = self.threads.len();
        let mut events = Events::with_capacity(8);
        let mut stopping = false;
        let mut failure: Option<String> = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() != io::ErrorKind::Interrupted {
                    failure = Some(format!("signal thread: {e}"));
                    stop_all(&self.handles, true);
                    break;
                }
            }
            for sig in self.signals.pending() {
                match sig {
                    SIGTERM | SIGINT if stopping => {
                        info!("signal {sig} again: every worker cuts its transfers now");
                        stop_all(&self.handles, true);
                    }
                    SIGTERM | SIGINT => {
                        info!("signal {sig}: every worker shuts down");
                        stopping = true;
                        // No READY=1 after STOPPING=1.
                        self.reload_awaited = None;
                        if let Some(nt) = &mut self.notify {
                            nt.stopping(&format!(
                                "Draining {} sessions, {} transfers (grace {} s)",
                                self.shared.clients(),
                                self.shared.transfers(),
                                self.grace.as_secs()
                            ));
                        }
                        stop_all(&self.handles, false);
                    }
                    SIGHUP if stopping => info!("signal {sig}: ignored while the workers shut down"),
                    SIGHUP => {
                        info!("signal {sig}: every worker reloads");
                        // The file is read once, here; the workers adopt
                        // what it gave (`Server::reload`).
                        if let Some(s) = self.shared.reread_config(&mut self.config) {
                            self.reread_status = Some(s);
                        }
                        // One RELOADING=1 until its READY=1: a SIGHUP that
                        // comes meanwhile only moves the awaited requests on.
                        if self.reload_awaited.is_none() {
                            if let Some(nt) = &mut self.notify {
                                nt.reloading("Reloading (SIGHUP): every worker");
                            }
                        }
                        // READY=1 waits until each worker has reloaded (on
                        // its own next pass): `Type=notify-reload` takes
                        // READY=1 as "the new configuration is in use".
                        self.reload_awaited = Some(self.handles.iter().map(StopHandle::reload).collect());
                    }
                    _ => {}
                }
            }
            let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(awaited) = &self.reload_awaited {
                // A worker that ended reloads no more: it is not waited for.
                let reloaded = self.reloaded.lock().unwrap_or_else(|e| e.into_inner());
                let done = awaited.iter().enumerate().all(|(i, &want)| {
                    reloaded.get(i).is_some_and(|r| r.0 >= want) || ended.iter().any(|(w, _)| *w == i + 1)
                });
                if done {
                    let mut status = reload_status(&reloaded);
                    if let Some(s) = self.reread_status.take() {
                        status = format!("{s}; {status}");
                    }
                    drop(reloaded);
                    self.reload_awaited = None;
                    info!("every worker reloaded: {status}");
                    if let Some(nt) = &mut self.notify {
                        nt.ready(&format!("Serving on {} with {n} workers; SIGHUP: {status}", self.local_addr));
                    }
                }
            }
            for (worker, result) in ended.iter() {
                if let Err(e) = result {
                    if failure.is_none() {
                        error!("worker {worker} failed: {e}; stopping the others");
                        failure = Some(format!("worker {worker}: {e}"));
                        stopping = true;
                        stop_all(&self.handles, true);
                    }
                }
            }
            if ended.len() == n {
                break;
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        match failure {
            Some(e) => Err(RunError::Runtime(e)),
            None => Ok(()),
        }
    }
}

/// What the workers' last reloads did, for systemd's `STATUS=`: the one
/// text when every worker says the same (`2 users reloaded`), otherwise
/// each worker's (`worker 1: …, worker 2: …`).
fn reload_status(reloaded: &[(u64, String)]) -> String {
    let said: Vec<&str> = reloaded.iter().map(|r| r.1.as_str()).filter(|s| !s.is_empty()).collect();
    match said.split_first() {
        None => "reloaded".into(),
        Some((first, rest)) if rest.iter().all(|s| s == first) && said.len() == reloaded.len() => first.to_string(),
        Some(_) => reloaded
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.1.is_empty())
            .map(|(i, r)| format!("worker {}: {}", i + 1, r.1))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn stop_all(handles: &[StopHandle], now: bool) {
    for h in handles {
        if now {
            h.stop_now();
        } else {
            h.stop();
        }
    }
}

/// After a failed start: stop the workers that did start and join all.
fn stop_and_join(handles: &[StopHandle], threads: Vec<JoinHandle<()>>) {
    stop_all(handles, true);
    for t in threads {
        let _ = t.join();
    }
}

/// How each worker's start went, for `Workers::start_with` to wait on (a
/// lock and a condition variable: `std::sync::mpsc` would cost the small
/// build tens of kilobytes for one message per worker).
#[derive(Default)]
struct Startup {
    reports: Mutex<Vec<Result<StopHandle, StartError>>>,
    ready: Condvar,
}

impl Startup {
    fn report(&self, r: Result<StopHandle, StartError>) {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).push(r);
        self.ready.notify_all();
    }

    /// Wait until `n` workers have reported, and take the reports.
    fn wait_for(&self, n: usize) -> Vec<Result<StopHandle, StartError>> {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        while reports.len() < n {
            reports = self.ready.wait(reports).unwrap_or_else(|e| e.into_inner());
        }
        std::mem::take(&mut *reports)
    }
}

/// Reports a worker's end to the signal thread, also when the worker
/// thread panics outside a session (a bug: the others are then stopped),
/// and its failed start if it panicked before it could report one.
struct EndGuard {
    worker: usize,
    ended: Arc<Mutex<Ended>>,
    waker: Arc<Waker>,
    startup: Option<Arc<Startup>>,
    result: Option<io::Result<()>>,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if let Some(s) = self.startup.take() {
            s.report(Err(StartError(format!("worker {} failed to start", self.worker))));
        }
        let result = self.result.take().unwrap_or_else(|| Err(io::Error::other("the worker thread panicked")));
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).push((self.worker, result));
        let _ = self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::reload_status;

    fn r(v: &[(u64, &str)]) -> Vec<(u64, String)> {
        v.iter().map(|&(n, s)| (n, s.to_string())).collect()
    }

    #[test]
    fn one_status_when_every_worker_says_the_same_else_each_workers() {
        assert_eq!(reload_status(&r(&[(1, "2 users reloaded"), (1, "2 users reloaded")])), "2 users reloaded");
        assert_eq!(
            reload_status(&r(&[(1, "2 users reloaded"), (1, "users NOT reloaded (see the log)")])),
            "worker 1: 2 users reloaded, worker 2: users NOT reloaded (see the log)"
        );
        // A worker that ended before it reloaded has said nothing.
        assert_eq!(reload_status(&r(&[(0, ""), (2, "no users file")])), "worker 2: no users file");
        assert_eq!(reload_status(&r(&[(0, ""), (0, "")])), "reloaded");
    }
}
