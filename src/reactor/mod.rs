//! The reactor: one `mio::Poll`, one `Slab` of entries, one timing wheel,
//! and the dispatch of readiness, timers, signals and helper results to the
//! entries. Everything with a socket happens here or in the DTP; the
//! protocol interpreter only returns actions.
//!
//! This file owns the loop itself (`run`, dispatch, timers, tombstones);
//! the rest is split by what it owns, all as `impl Server` blocks:
//! - `accept.rs`: accepting control connections, connection limits,
//!   eviction, the per-address share of data slots;
//! - `control.rs`: command lines, queues, the reply and turn budgets,
//!   actions, replies, deadlines, closing a session;
//! - `data.rs`: passive listeners, data connections, transfers;
//! - `hook.rs`: upload hooks (`--on-upload`) running as entries whose
//!   source is the process's pidfd;
//! - `lifecycle.rs`: password verdicts, signals, shutdown, memory trimming;
//! - `proxy.rs` (cargo feature `proxy`): connections from a load balancer
//!   until their PROXY protocol header names the real client;
//! - `entry.rs`, `stream.rs`, `helper.rs`: the slab's entry kinds, the
//!   socket type, the helper thread;
//! - `shared.rs`: the counters of the global limits, one `Arc` for every
//!   reactor of the process (`--workers`, see `crate::workers`).
//!
//! # Draining readiness
//! mio is edge-triggered: a source that was not read or written until
//! `WouldBlock` gets no new event. Every loop over a socket therefore stops
//! either at `WouldBlock` or at its byte budget; a source cut short by its
//! budget goes on `still_ready`, and the next poll uses a zero timeout.
//!
//! # Closing
//! Closing an entry drops its socket and leaves a `Closed`
//! tombstone that is removed at the end of the loop iteration (redis's
//! `freeClientAsync`), so a slab key is never reused while events for it may
//! still be in the same batch.
//!
//! # Invariants
//! - Nothing here blocks on the network; disk I/O is bounded per event.
//! - A control connection owns at most one data entry (`Control::data`),
//!   and a data entry's `owner` is always a live control connection.
//! - Every wait has a deadline in the wheel: login, idle, failed-login
//!   delay, data connection, stalled transfer, shutdown grace.

pub mod entry;
pub mod helper;
pub mod shared;
pub mod stream;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::auth::{LoginCache, Users};
use crate::config::Config;
use crate::dtp::ports::PortPicker;
use crate::dtp::transfer::{Progress, TransferError};
use crate::ftp::command::{self, Verb};
use crate::ftp::session::{self, Action, Ctx, DataMode, Deadline, Env, Pending, Session, TransferRequest, XferKind};
use crate::line::{self, Frame, LineBuffer};
use crate::metrics::{Channel, Limit, Metrics, TransferResult};
use crate::timer::Wheel;
use crate::vfs::Vfs;
use crate::xferlog::{self, XferLog};
pub use shared::Shared;
use entry::{Control, DataConn, DataState, Entry, PasvListener, Unsent};
use helper::{Helper, Job, Verdict};
use stream::{interrupted, would_block, Stream};

/// Token of the signal pipe.
const SIGNAL: Token = Token(usize::MAX - 1);
/// Token of the waker (helper results, stop requests).
const WAKER: Token = Token(usize::MAX - 2);
/// Timer payload: retry `accept` after EMFILE.
const ACCEPT_RETRY: usize = usize::MAX - 3;
/// Timer payload: the shutdown grace period is over.
const SHUTDOWN_DEADLINE: usize = usize::MAX - 4;
/// Timer payload: see whether the slab can shrink.
const SHRINK_CHECK: usize = usize::MAX - 5;
/// Timer payload: take what the other workers left in a shared accept
/// queue (see `Shared::fewer_elsewhere`).
const BALANCE_RETRY: usize = usize::MAX - 6;
/// How long a worker leaves a connection in a shared accept queue to a
/// worker with fewer sessions before it takes it itself: long enough for a
/// woken worker to run, short against a login.
const BALANCE_RETRY_AFTER: Duration = Duration::from_millis(20);

/// Bytes read from one control connection per readiness event. This is
/// also what one read can add to a paused session's queue.
const CTRL_READ_BUDGET_BYTES: usize = 64 * 1024;
/// Bytes of one `read` of a control connection. What a session cannot run
/// yet (it is busy, or its client does not read its replies) waits in its
/// queue, and reading stops; reading in chunks this size keeps that queue
/// within a line and a chunk. A client that is not pipelining sends far
/// less than this at a time.
const CTRL_READ_CHUNK_BYTES: usize = 8 * 1024;
/// The refusal of a password check the queue has no room for.
const LOGINS_BUSY: &[u8] = b"421 Too many logins in progress; try again later.\r\n";
/// Commands one session may run per dispatch (readiness event, timer,
/// verdict) before the others get their turn: a client that pipelines
/// thousands of commands in one write is served in slices, so the loop's
/// pass stays short for everyone (redis's `NET_MAX_WRITES_PER_EVENT` idea,
/// applied to commands).
const LINES_PER_TURN: usize = 16;
/// Reply bytes one session may produce per dispatch: what a command costs
/// shows in its reply (HELP ~1 KiB, a STAT of a directory up to ~100 KiB),
/// so this weighs heavy commands more than NOOPs.
const REPLY_BYTES_PER_TURN: usize = 64 * 1024;
/// Unread bytes discarded from a control connection the server closes after
/// its last reply, so that the close is a FIN and not a RST (see
/// `close_control`): one chunk per queued line at most, and the rest of an
/// over-long line.
const CLOSE_DISCARD_BYTES: usize = 256 * 1024;
/// Unsent reply bytes at which a session stops reading and stops running
/// the commands it queued, until its client reads (redis's
/// `client-output-buffer-limit`, with the kernel's receive window as the
/// back-pressure instead of a disconnect). One reply may still go past it:
/// the largest, a capped `STAT` of a directory, is about 100 KiB.
pub const REPLY_HIGH_WATER_BYTES: usize = 64 * 1024;
/// Unsent reply bytes under which a paused session goes on (hysteresis: a
/// client that reads a little does not wake the session for every segment).
pub const REPLY_LOW_WATER_BYTES: usize = 16 * 1024;
/// Bytes moved on one data connection per step: large enough for
/// `sendfile` and `splice` to be efficient.
const DATA_BUDGET_BYTES: usize = 256 * 1024;
/// Bytes one upload moves per step: a STOR splices up to its pipe's size
/// from the socket into the pipe and from the pipe into the file in one go.
/// Larger writes let the page cache use larger folios: one upload costs
/// 0.38–0.45 server CPU-s per GiB instead of 0.54 with 256 KiB steps
/// (`leanftpd-bench large --op stor --streams 1 --reps 4`, three
/// alternating runs each).
const UPLOAD_STEP_BYTES: usize = 1024 * 1024;
/// Bytes all bulk transfers together may move in one pass of the loop.
/// Past it, transfers wait for the next pass (round robin), so a pass takes
/// a bounded time however many big transfers run, and control commands and
/// small files are served within it (fairness under load).
const PASS_BUDGET_BYTES: usize = 1024 * 1024;
/// Connections accepted per readiness event of a listener.
const ACCEPT_BUDGET: usize = 256;
/// Scratch buffer for control reads and STOR data.
const SCRATCH_BYTES: usize = 128 * 1024;
/// Pause before retrying `accept` after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
/// Slab capacity under which it is never shrunk.
const SHRINK_MIN_ENTRIES: usize = 1024;
/// Successful password checks remembered at once (`auth::LoginCache`).
const LOGIN_CACHE_ENTRIES: usize = 4096;
/// Wheel geometry: 100 ms ticks, 512 slots (51 s per rotation).
const WHEEL_TICK: Duration = Duration::from_millis(100);
const WHEEL_SLOTS: usize = 512;

/// The log prefix of a session: `[c17 10.0.0.2:5123 anonymous]`.
macro_rules! ctx_log {
    ($lvl:ident, $key:expr, $s:expr, $($arg:tt)*) => {
        $lvl!("[c{} {} {}] {}", $key, $s.peer(), $s.user(), format_args!($($arg)*))
    };
}

mod accept;
mod control;
mod data;
mod hook;
mod lifecycle;
#[cfg(feature = "proxy")]
mod proxy;
#[cfg(feature = "metrics")]
pub mod scrape;

/// Why the server could not start (printed by `main`, exit code 1 or 2).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Request bit: shut down as on SIGTERM.
const REQ_STOP: u8 = 1;
/// Request bit: cut transfers now, as on a second SIGTERM.
const REQ_CUT: u8 = 2;
/// Request bit: reload users and TLS as on SIGHUP.
const REQ_RELOAD: u8 = 4;
/// Request bit: another worker left connections in a shared accept queue
/// to this one (see `Shared::fewer_elsewhere`).
const REQ_ACCEPT: u8 = 8;

/// A handle to a running server from another thread (tests, embedders,
/// and the thread that receives signals for every worker, `--workers`).
/// Each call sets a request bit and wakes the loop through its `Waker`.
#[derive(Clone)]
pub struct StopHandle {
    waker: Arc<Waker>,
    requests: Arc<AtomicU8>,
    /// Reloads asked for so far: each `reload` takes the next number, and
    /// the server's reload hook reports the last number a reload covered
    /// (see [`Server::on_reload`]).
    reloads: Arc<AtomicU64>,
}

impl StopHandle {
    fn request(&self, bit: u8) {
        self.requests.fetch_or(bit, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// Ask the server to shut down as on SIGTERM: stop accepting, answer
    /// idle sessions `421`, let transfers finish within `--shutdown-grace`.
    pub fn stop(&self) {
        self.request(REQ_STOP);
    }

    /// Accept from the accept queues shared with other workers: one of
    /// them left connections there to this one.
    pub(crate) fn take_shared_accepts(&self) {
        self.request(REQ_ACCEPT);
    }

    /// Cut transfers now, as on a second SIGTERM (a server not yet
    /// shutting down begins to).
    pub fn stop_now(&self) {
        self.request(REQ_STOP | REQ_CUT);
    }

    /// Reload the users file and the TLS certificate, as on SIGHUP.
    /// Returns this request's number (1, 2, …): once the server's reload
    /// hook ([`Server::on_reload`]) has reported that number or a larger
    /// one, a reload that began after this call is done.
    pub fn reload(&self) -> u64 {
        // Counted before the request bit is set: the loop reads the count
        // after it takes the bit, so the count it reads covers this one.
        let n = self.reloads.fetch_add(1, Ordering::SeqCst) + 1;
        self.request(REQ_RELOAD);
        n
    }
}

/// The listening sockets a `Server` serves: the control port and, with
/// `--implicit-tls-listen`, the implicit FTPS port. Made by
/// [`Server::bind`], by [`crate::workers`] (one set per worker, with
/// `SO_REUSEPORT`), or handed in from outside (socket activation).
#[derive(Debug)]
pub struct Listeners {
    /// The control listener.
    pub control: std::net::TcpListener,
    /// The implicit FTPS listener, if any.
    pub implicit: Option<std::net::TcpListener>,
    /// Other workers accept from these same sockets (socket activation
    /// with `--workers N`): `[control, implicit]`. Accepts from a shared
    /// queue are balanced by session count (`Shared::fewer_elsewhere`).
    pub shared_queue: [bool; 2],
    /// The `--metrics-listen` listener, bound before the sandbox confines
    /// the process (`crate::sandbox`); `None`: the server binds
    /// `config.metrics_listen` itself, if set.
    pub metrics: Option<std::net::TcpListener>,
}

/// Bind `--metrics-listen` (`None` without it, or in a build without
/// metrics).
pub fn bind_metrics_listener(addr: Option<SocketAddr>) -> Result<Option<std::net::TcpListener>, StartError> {
    match addr {
        Some(addr) if crate::METRICS_BUILT_IN => std::net::TcpListener::bind(addr)
            .map(Some)
            .map_err(|e| StartError(format!("cannot listen on {addr} (--metrics-listen): {e}"))),
        _ => Ok(None),
    }
}

/// The server: bound, ready to `run`.
///
/// It holds the loop's own state (poll, slab, wheel, the ready lists, the
/// tombstones, the clock of this pass); the state of each part is a struct
/// in the file named for it: `ctl` in `control.rs`, `accept` in
/// `accept.rs`, `xfer` in `data.rs`, `life` and `auth` in `lifecycle.rs`.
pub struct Server {
    poll: Poll,
    events: Events,
    slab: Slab<Entry>,
    wheel: Wheel<usize>,
    still_ready: Vec<usize>,
    next_ready: Vec<usize>,
    /// One bit per slab key: queued in `next_ready` or `still_ready`.
    ready_bits: Vec<u64>,
    closed: Vec<usize>,
    env: Env,
    waker: Arc<Waker>,
    /// The counters of the global limits, shared by every worker
    /// (`--workers`; see `shared.rs`).
    shared: Arc<Shared>,
    /// This reactor's number among the workers (1-based; 0: the only one,
    /// made by `Server::bind`).
    worker: usize,
    now: Instant,
    xferlog: Option<XferLog>,
    /// The control connections' scratch and turn (see `control.rs`).
    ctl: control::ControlShared,
    /// The listener, connection counts and limits (see `accept.rs`).
    accept: accept::Accepting,
    /// Port picking, data counts, the pass budget (see `data.rs`).
    xfer: data::Transfers,
    /// Signals, stop requests, shutdown, trimming (see `lifecycle.rs`).
    life: lifecycle::Lifecycle,
    /// Users, password checks, login and home caches (see `lifecycle.rs`).
    auth: lifecycle::Auth,
    /// FTPS: the certificate and rustls's configurations, when configured
    /// (`--tls-cert`/`--tls-key`); replaced on SIGHUP (see `lifecycle.rs`).
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
    /// Connections waiting for their PROXY protocol header (see `proxy.rs`).
    #[cfg(feature = "proxy")]
    proxy: proxy::Proxying,
    /// The metrics listener and its scrapes (see `scrape.rs`).
    #[cfg(feature = "metrics")]
    scrapes: scrape::Scrapes,
}

impl Server {
    /// Bind the control listener and prepare everything; no client is
    /// served until `run`. The single reactor: limits are its own. Under
    /// systemd socket activation (`LISTEN_FDS`) the listening sockets
    /// handed in are used instead of binding (see `crate::systemd`), and
    /// readiness goes to `NOTIFY_SOCKET`.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        Server::bind_with_metrics(config, Arc::new(Metrics::new()))
    }

    /// `bind`, counting into `metrics`.
    pub fn bind_with_metrics(config: Config, metrics: Arc<Metrics>) -> Result<Server, StartError> {
        let (listeners, shared, notify) = Server::bind_listeners(&config)?;
        let mut server = Server::with_listeners(config, listeners, shared, 0, metrics)?;
        server.life.notify = notify;
        Ok(server)
    }

    /// The single reactor's first half (see [`Server::bind`]): its
    /// listening sockets (inherited or bound, `--metrics-listen` too), the
    /// shared limits with the TLS configuration, and systemd's notifier;
    /// no thread is started, so [`crate::workers::run`] confines the
    /// process (`crate::sandbox`) between this and
    /// [`Server::with_listeners`] + [`Server::set_notifier`].
    pub fn bind_listeners(config: &Config) -> Result<(Listeners, Arc<Shared>, Option<crate::systemd::Notifier>), StartError> {
        let inherited = crate::systemd::Listeners::from_env(config).map_err(StartError)?;
        let shared = Arc::new(Shared::with_tls(config)?);
        let control = match inherited.control {
            Some(l) => l,
            None => std::net::TcpListener::bind(config.listen)
                .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?,
        };
        let implicit = match (config.implicit_tls_listen, inherited.implicit_tls) {
            (Some(_), Some(l)) => Some(l),
            (Some(addr), None) => Some(
                std::net::TcpListener::bind(addr)
                    .map_err(|e| StartError(format!("cannot listen on {addr} (--implicit-tls-listen): {e}")))?,
            ),
            (None, _) => None,
        };
        let metrics = bind_metrics_listener(config.metrics_listen)?;
        // Read (and unset) before `with_listeners` starts the helper
        // thread: changing the environment while another thread may read
        // it is undefined behaviour in glibc (`setenv(3)`: not MT-safe).
        let notify = crate::systemd::Notifier::from_env();
        Ok((Listeners { control, implicit, shared_queue: [false; 2], metrics }, shared, notify))
    }

    /// Give the server systemd's notifier (see [`Server::bind_listeners`]).
    pub fn set_notifier(&mut self, notify: Option<crate::systemd::Notifier>) {
        self.life.notify = notify;
    }

    /// Prepare a reactor that serves `listeners` (already bound and
    /// listening), charges its clients to `shared` and counts into
    /// `metrics`: one worker of several (`worker` ≥ 1), or the only one
    /// (`worker` 0). No client is served until `run`.
    pub fn with_listeners(config: Config, listeners: Listeners, shared: Arc<Shared>, worker: usize, metrics: Arc<Metrics>) -> Result<Server, StartError> {
        if config.on_upload.is_some() {
            crate::hooks::prepare().map_err(|e| StartError(e.to_string()))?;
        }
        let users = match &config.users {
            Some(path) => Users::load(path, &config.root).map_err(|e| StartError(e.to_string()))?,
            None => Users::empty(),
        };
        let anonymous = anonymous_vfs(&config).map_err(StartError)?;
        let poll = Poll::new().map_err(|e| StartError(format!("cannot create poll: {e}")))?;
        let Listeners { control, implicit, shared_queue, metrics: metrics_listener } = listeners;
        let _ = control.set_nonblocking(true);
        let mut listener = TcpListener::from_std(control);
        let local_addr = listener.local_addr().map_err(|e| StartError(e.to_string()))?;
        stream::prepare_listener(&listener, true);
        // Reserved, not touched: pages become resident only as entries are
        // used, and growing by doubling would leave freed copies behind.
        let mut slab = Slab::with_capacity(config.max_clients.min(65_536) + 16);
        let key = slab.vacant_key();
        poll.registry()
            .register(&mut listener, Token(key), Interest::READABLE)
            .map_err(|e| StartError(format!("cannot register listener: {e}")))?;
        slab.insert(Entry::Listener(listener));
        #[cfg(feature = "tls")]
        let tls = shared.tls.clone();
        let (implicit_key, implicit_addr) = match implicit {
            Some(l) => {
                let _ = l.set_nonblocking(true);
                let mut l = TcpListener::from_std(l);
                let bound = l.local_addr().map_err(|e| StartError(e.to_string()))?;
                stream::prepare_listener(&l, true);
                let k = slab.vacant_key();
                poll.registry()
                    .register(&mut l, Token(k), Interest::READABLE)
                    .map_err(|e| StartError(format!("cannot register listener: {e}")))?;
                slab.insert(Entry::Listener(l));
                (Some(k), Some(bound))
            }
            None => (None, None),
        };
        #[cfg(feature = "metrics")]
        let scrapes = Server::bind_metrics(&poll, &mut slab, metrics_listener, config.metrics_listen)?;
        #[cfg(not(feature = "metrics"))]
        drop(metrics_listener);
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| StartError(e.to_string()))?);
        let helper = Helper::spawn(waker.clone()).map_err(|e| StartError(format!("cannot start helper thread: {e}")))?;
        let env_login_cache = config.login_cache;
        let xferlog = match &config.xferlog {
            Some(p) => Some(XferLog::open(p).map_err(|e| StartError(format!("--xferlog {}: {e}", p.display())))?),
            None => None,
        };
        let now = Instant::now();
        let has_users = !users.is_empty();
        let server = Server {
            poll,
            events: Events::with_capacity(1024),
            slab,
            wheel: Wheel::new(WHEEL_TICK, WHEEL_SLOTS, now, 1024),
            still_ready: Vec::with_capacity(64),
            next_ready: Vec::with_capacity(64),
            ready_bits: Vec::new(),
            closed: Vec::with_capacity(64),
            env: Env { anonymous, has_users, config, metrics },
            waker,
            shared,
            worker,
            now,
            xferlog,
            ctl: control::ControlShared {
                read_buf: vec![0; CTRL_READ_CHUNK_BYTES],
                sift_buf: Vec::new(),
                cleaned: Vec::with_capacity(line::MAX_LINE_BYTES + 2),
                out: Vec::with_capacity(4096),
                turn: control::Turn::new(),
            },
            accept: accept::Accepting {
                listener_key: Some(key),
                local_addr,
                implicit_key,
                implicit_addr,
                ctrl_count: 0,
                unauth: std::collections::VecDeque::new(),
                serial: 0,
                accept_paused: false,
                shared_queues: [shared_queue[0].then_some(key), implicit_key.filter(|_| shared_queue[1])],
                balance_retry: false,
            },
            xfer: data::Transfers {
                ports: PortPicker::new(),
                pass_budget: PASS_BUDGET_BYTES,
                scratch: vec![0; SCRATCH_BYTES],
            },
            life: lifecycle::Lifecycle {
                signals: None,
                requests: Arc::new(AtomicU8::new(0)),
                reloads: Arc::new(AtomicU64::new(0)),
                on_reload: None,
                shutting_down: false,
                next_shrink: now,
                shrink_scheduled: false,
                notify: None,
                config_seen: 0,
            },
            auth: lifecycle::Auth {
                users: Arc::new(users),
                vfs_cache: HashMap::new(),
                helper,
                verdicts: Vec::new(),
                cached_verdicts: Vec::new(),
                login_cache: LoginCache::new(env_login_cache, LOGIN_CACHE_ENTRIES),
            },
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "proxy")]
            proxy: proxy::Proxying { awaiting: 0 },
            #[cfg(feature = "metrics")]
            scrapes,
        };
        // Woken when another worker leaves connections in a shared accept
        // queue to this one (socket activation, see `Shared::fewer_elsewhere`).
        server.shared.register_worker(worker, server.stop_handle());
        Ok(server)
    }

    /// The address the control listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.accept.local_addr
    }

    /// The implicit FTPS listener's address (`--implicit-tls-listen`, with
    /// port 0 resolved), if there is one.
    pub fn implicit_tls_addr(&self) -> Option<SocketAddr> {
        self.accept.implicit_addr
    }

    /// The metrics listener's address (`--metrics-listen`, with port 0
    /// resolved), if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "metrics")]
        return self.scrapes.addr;
        #[cfg(not(feature = "metrics"))]
        None
    }

    /// The counters this reactor adds to (shared with the others of the
    /// process when bound with `bind_with_metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.env.metrics.clone()
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { waker: self.waker.clone(), requests: self.life.requests.clone(), reloads: self.life.reloads.clone() }
    }

    /// Call `hook` after each reload asked for through a [`StopHandle`]
    /// (not after one of this server's own SIGHUPs), on this server's
    /// thread, with the number of the last request the reload covers
    /// (see [`StopHandle::reload`]) and what it did (`2 users reloaded;
    /// TLS certificate reloaded`, or what failed). `--workers` uses it to
    /// send systemd's `READY=1` only once every worker has reloaded.
    pub fn on_reload(&mut self, hook: impl FnMut(u64, &str) + 'static) {
        self.life.on_reload = Some(Box::new(hook));
    }

    /// Handle SIGINT/SIGTERM (drain and exit) and SIGHUP (reload users).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        self.poll.registry().register(&mut signals, SIGNAL, Interest::READABLE)?;
        self.life.signals = Some(signals);
        Ok(())
    }

    /// Serve until shut down (signal or `StopHandle`) and every session is gone.
    pub fn run(mut self) -> io::Result<()> {
        let also = self.accept.implicit_addr.map(|a| format!(", implicit FTPS on {a}")).unwrap_or_default()
            + &self.metrics_addr().map(|a| format!(", metrics on http://{a}/metrics")).unwrap_or_default();
        info!("{}listening on {}{also} (root {}, anonymous {})", self.worker_tag(), self.accept.local_addr, self.env.config.root.display(),
            match (self.env.anonymous.is_some(), self.env.config.anonymous_write, &self.env.config.anonymous_upload_dir) {
                (false, ..) => "off".to_string(),
                (true, false, None) => "read-only".to_string(),
                (true, false, Some(d)) => format!("read-only, drop box {}", String::from_utf8_lossy(d.as_bytes())),
                (true, true, _) => "read-write".to_string(),
            });
        // systemd's `Type=notify`: the listeners are listening (and the
        // signal handlers installed, for `notify-reload`'s SIGHUP).
        if self.life.notify.is_some() {
            let status = self.serving_status();
            if let Some(n) = &mut self.life.notify {
                n.ready(&status);
            }
        }
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        loop {
            // `next_ready` too: a timer (a throttled transfer resumed by
            // the wheel) may have queued a source after the lists moved.
            let timeout = if self.still_ready.is_empty() && self.next_ready.is_empty() && self.auth.cached_verdicts.is_empty() {
                self.wheel.next_deadline().map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if !interrupted(&e) {
                    return Err(e);
                }
            }
            self.now = Instant::now();
            self.xfer.pass_budget = PASS_BUDGET_BYTES;
            for event in events.iter() {
                match event.token() {
                    SIGNAL => self.on_signals(),
                    WAKER => self.on_wake(),
                    Token(key) => self.ready(
                        key,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable() || event.is_error(),
                        event.is_priority() || event.is_read_closed() || event.is_error(),
                    ),
                }
            }
            let mut cached = std::mem::take(&mut self.auth.cached_verdicts);
            for v in cached.drain(..) {
                self.on_verdict(v);
            }
            // A verdict answered from the cache while these ran (a queued
            // USER/PASS after the login) waits for the next pass, not lost.
            let fresh = std::mem::replace(&mut self.auth.cached_verdicts, cached);
            self.auth.cached_verdicts.extend(fresh);
            let mut again = std::mem::take(&mut self.still_ready);
            for key in again.drain(..) {
                if let Some(w) = self.ready_bits.get_mut(key / 64) {
                    *w &= !(1u64 << (key % 64));
                }
                self.ready(key, true, true, true);
            }
            self.still_ready.append(&mut self.next_ready);
            if self.still_ready.is_empty() {
                self.still_ready = again;
            }
            while let Some(key) = self.wheel.poll(self.now) {
                self.timeout(key);
            }
            self.reap();
            // With its last session gone, a data connection still waiting
            // for its PROXY header can never become a transfer: it does
            // not hold the shutdown for the rest of the grace period.
            #[cfg(feature = "proxy")]
            if self.life.shutting_down && self.accept.ctrl_count == 0 && self.proxy.awaiting > 0 {
                self.close_awaiting(true);
                self.reap();
            }
            if self.life.shutting_down && self.slab.is_empty() {
                break;
            }
        }
        info!("{}shut down", self.worker_tag());
        Ok(())
    }

    /// The counters this reactor charges its clients to (shared by every
    /// worker of the process).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// `worker 2: ` before the lines a worker logs about itself (its
    /// sessions' lines carry the thread's name, `(worker 2)`, see
    /// `crate::workers`); nothing for the only reactor.
    fn worker_tag(&self) -> String {
        if self.worker == 0 {
            String::new()
        } else {
            format!("worker {}: ", self.worker)
        }
    }

    /// `to_eagain`: read the control socket until `WouldBlock` even after a
    /// short read (urgent data, hang-up, or a source cut short earlier).
    fn ready(&mut self, key: usize, readable: bool, writable: bool, to_eagain: bool) {
        self.new_turn();
        match self.slab.get(key) {
            Some(Entry::Listener(_)) => self.accept_control(key, true),
            Some(Entry::Ctrl(_)) => {
                if writable {
                    self.flush(key);
                    self.resume_if_drained(key);
                }
                if readable {
                    self.read_control(key, to_eagain);
                    // Under TLS, replies wait for the handshake (the
                    // implicit FTPS greeting): it may have just finished.
                    if matches!(self.slab.get(key), Some(Entry::Ctrl(c)) if !c.out.is_empty() && c.stream.is_tls()) {
                        self.flush(key);
                    }
                }
            }
            Some(Entry::Pasv(_)) => self.accept_data(key),
            Some(Entry::Data(_)) => self.data_ready(key),
            Some(Entry::Hook(_)) => self.hook_ready(key),
            #[cfg(feature = "proxy")]
            Some(Entry::Proxy(_)) => self.proxy_ready(key),
            #[cfg(feature = "metrics")]
            Some(Entry::MetricsListener(_)) => self.accept_scrape(key),
            #[cfg(feature = "metrics")]
            Some(Entry::Scrape(_)) => self.scrape_ready(key, readable),
            Some(Entry::Closed) | None => {}
        }
    }

    fn new_turn(&mut self) {
        self.ctl.turn = control::Turn::new();
    }

    /// Run `key` again in the next pass (a source cut short by its budget,
    /// or one with bytes waiting and no new edge to come). At most once per
    /// pass: a bit per slab key, not a search of the list, so that thousands
    /// of sources woken in one pass cost linear time.
    fn wake_later(&mut self, key: usize) {
        let (word, bit) = (key / 64, 1u64 << (key % 64));
        if word >= self.ready_bits.len() {
            self.ready_bits.resize(word + 1, 0);
        }
        if self.ready_bits[word] & bit == 0 {
            self.ready_bits[word] |= bit;
            self.next_ready.push(key);
        }
    }

    fn timeout(&mut self, key: usize) {
        self.new_turn();
        match key {
            ACCEPT_RETRY => {
                self.accept.accept_paused = false;
                // Both listeners: either may have connections waiting, and
                // neither raises a new edge for them.
                for l in [self.accept.listener_key, self.accept.implicit_key].into_iter().flatten() {
                    self.accept_control(l, true);
                }
                return;
            }
            BALANCE_RETRY => {
                self.accept.balance_retry = false;
                self.accept_shared_queues(false);
                return;
            }
            SHRINK_CHECK => {
                self.life.shrink_scheduled = false;
                self.maybe_shrink();
                return;
            }
            SHUTDOWN_DEADLINE => {
                #[cfg(feature = "proxy")]
                self.close_awaiting(true);
                let keys: Vec<usize> = self.slab.iter().filter(|(_, e)| matches!(e, Entry::Ctrl(_))).map(|(k, _)| k).collect();
                for k in keys {
                    self.abort_transfer(k, TransferError::Aborted, false);
                    self.close_control(k, "shutdown grace period over");
                }
                self.kill_hooks();
                return;
            }
            _ => {}
        }
        match self.slab.get_mut(key) {
            Some(Entry::Ctrl(c)) => {
                c.timer = None;
                let action = {
                    let mut out = std::mem::take(&mut self.ctl.out);
                    out.clear();
                    let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: unix_now() };
                    let action = match c.session.pending() {
                        Pending::LoginDelay => c.session.delay_over(&mut ctx),
                        Pending::Nothing => {
                            ctx_log!(info, key, c.session, "timeout");
                            c.session.timed_out(&mut ctx)
                        }
                        _ => Action::None,
                    };
                    self.ctl.out = out;
                    action
                };
                self.after_step(key, action);
                self.drain_lines(key);
            }
            Some(Entry::Pasv(p)) => {
                p.timer = None;
                let owner = p.owner;
                let had_transfer = p.pending.is_some();
                self.close_entry(key);
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
                    c.data = None;
                }
                if had_transfer {
                    self.finish_transfer_reply(owner, Err(TransferError::CantOpen), true);
                }
            }
            Some(Entry::Data(d)) => {
                d.timer = None;
                match d.state {
                    DataState::Connecting(_) => self.end_transfer(key, Err(TransferError::CantOpen), true),
                    DataState::Running(ref req) if req.throttle.as_ref().is_some_and(|t| t.is_paused()) => self.resume_throttled(key),
                    DataState::Running(_) => {
                        let stall = self.env.config.stall_timeout;
                        let due = d.last_progress + stall;
                        if self.now >= due {
                            self.end_transfer(key, Err(TransferError::Stalled), true);
                        } else {
                            d.timer = Some(self.wheel.schedule(due, key));
                        }
                    }
                    DataState::Idle => {
                        // Connected, but no transfer command came in time.
                        let owner = d.owner;
                        self.close_entry(key);
                        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
                            if c.data == Some(key) {
                                c.data = None;
                            }
                            ctx_log!(info, owner, c.session, "idle data connection closed after the data timeout");
                        }
                    }
                }
            }
            Some(Entry::Hook(_)) => self.hook_timeout(key),
            #[cfg(feature = "proxy")]
            Some(Entry::Proxy(_)) => self.proxy_timeout(key),
            #[cfg(feature = "metrics")]
            Some(Entry::Scrape(s)) => {
                s.timer = None;
                debug!("metrics: scrape closed at its deadline");
                self.close_scrape(key);
            }
            _ => {}
        }
    }

    /// Drop the socket, leave a tombstone.
    ///
    /// No `epoll_ctl(DEL)` first: closing a descriptor that was never
    /// duplicated removes it from the epoll set, and events of this batch
    /// for the key find the tombstone. That saves a system call per data
    /// connection and passive listener, which a small-file benchmark shows.
    fn close_entry(&mut self, key: usize) {
        let Some(entry) = self.slab.get_mut(key) else { return };
        let old = std::mem::replace(entry, Entry::Closed);
        match old {
            Entry::Ctrl(c) => drop(c),
            Entry::Pasv(p) => {
                self.shared.release_passive();
                self.env.metrics.passive_listeners(-1);
                if let Some(req) = &p.pending {
                    // A transfer command whose data connection never came
                    // (data timeout, a limit, its session closing).
                    self.env.metrics.transfer(req.counted_as, TransferResult::Failed);
                }
                self.release_data_slot(p.owner);
                if let Some(id) = p.timer {
                    self.wheel.cancel(id);
                }
            }
            Entry::Data(d) => {
                self.shared.release_transfer();
                self.env.metrics.data_connections(-1);
                self.release_data_slot(d.owner);
                if let Some(id) = d.timer {
                    self.wheel.cancel(id);
                }
                // Dropping a STOR's transfer removes its temporary file.
            }
            Entry::Listener(l) => drop(l),
            Entry::Hook(h) => {
                // Only through `hook_ready`, once reaped.
                debug_assert!(false, "a hook closed by close_entry");
                *self.slab.get_mut(key).expect("the entry just replaced") = Entry::Hook(h);
                return;
            }
            #[cfg(feature = "proxy")]
            Entry::Proxy(w) => self.forget_awaiting(w),
            #[cfg(feature = "metrics")]
            Entry::MetricsListener(l) => drop(l),
            #[cfg(feature = "metrics")]
            Entry::Scrape(s) => {
                // Only through `close_scrape`, which counts it.
                debug_assert!(false, "a scrape closed by close_entry");
                if let Some(id) = s.timer {
                    self.wheel.cancel(id);
                }
                self.scrapes.open -= 1;
                self.scrapes.order.retain(|&k| k != key);
            }
            Entry::Closed => return,
        }
        self.closed.push(key);
    }

    fn reap(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        for key in self.closed.drain(..) {
            if matches!(self.slab.get(key), Some(Entry::Closed)) {
                self.slab.remove(key);
            }
        }
        self.maybe_shrink();
    }
}

/// Schedule or move a timer.
fn set_timer(wheel: &mut Wheel<usize>, slot: &mut Option<crate::timer::TimerId>, at: Instant, key: usize) {
    match slot {
        Some(id) if wheel.reset(*id, at) => {}
        _ => *slot = Some(wheel.schedule(at, key)),
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Client bytes for a log line: printable ASCII kept, the rest escaped,
/// truncated to 128 bytes.
fn sanitize(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().min(128) + 3);
    for &b in bytes.iter().take(128) {
        if (0x20..0x7f).contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > 128 {
        s.push_str("...");
    }
    s
}

impl Drop for Server {
    /// Before the sockets close: none of this worker's may be shut down
    /// by another worker any more (see `shared.rs`), whatever ended `run`.
    fn drop(&mut self) {
        self.shared.forget_worker(self.worker);
    }
}

/// The anonymous users' filesystem (`--anonymous`, `--anonymous-write`,
/// `--anonymous-upload-dir`), at start and when SIGHUP changes one of
/// them; `None` when anonymous logins are off. The error is one line for
/// the log or the exit (a configuration error: exit code 2 at start).
fn anonymous_vfs(config: &Config) -> Result<Option<Rc<Vfs>>, String> {
    if !config.anonymous {
        return Ok(None);
    }
    let mut vfs = Vfs::open(&config.root, config.anonymous_write).map_err(|e| format!("--root {}: {e}", config.root.display()))?;
    if let Some(dir) = &config.anonymous_upload_dir {
        vfs = vfs.with_upload_dir(dir).map_err(|e| {
            format!(
                "--anonymous-upload-dir {}: {} (it must be an existing directory inside --root {})",
                String::from_utf8_lossy(dir.as_bytes()),
                e.text(),
                config.root.display()
            )
        })?;
    }
    Ok(Some(Rc::new(vfs)))
}
