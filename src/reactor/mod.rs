//! The reactor: one `mio::Poll`, one `Slab` of entries, one timing wheel,
//! and the dispatch of readiness, timers, signals and helper results to the
//! entries. Everything with a socket happens here or in the DTP; the
//! protocol interpreter only returns actions.
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
pub mod stream;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::timer::Wheel;
use crate::vfs::Vfs;
use crate::xferlog::{self, XferLog};
use entry::{Control, DataConn, DataState, Entry, PasvListener};
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
/// Wheel geometry: 100 ms ticks, 512 slots (51 s per rotation).
const WHEEL_TICK: Duration = Duration::from_millis(100);
const WHEEL_SLOTS: usize = 512;

/// The log prefix of a session: `[c17 10.0.0.2:5123 anonymous]`.
macro_rules! ctx_log {
    ($lvl:ident, $key:expr, $s:expr, $($arg:tt)*) => {
        $lvl!("[c{} {} {}] {}", $key, $s.peer(), $s.user(), format_args!($($arg)*))
    };
}

/// Why the server could not start (printed by `main`, exit code 1 or 2).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A handle to stop a running server from another thread (tests, embedders).
#[derive(Clone)]
pub struct StopHandle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl StopHandle {
    /// Ask the server to shut down as on SIGTERM.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// The server: bound, ready to `run`.
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
    users: Arc<Users>,
    vfs_cache: HashMap<(PathBuf, bool), Rc<Vfs>>,
    helper: Helper,
    verdicts: Vec<Verdict>,
    /// Verdicts answered from the login cache, handled after the events.
    cached_verdicts: Vec<Verdict>,
    login_cache: LoginCache,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    listener_key: Option<usize>,
    local_addr: SocketAddr,
    ports: PortPicker,
    per_ip: HashMap<IpAddr, u32>,
    /// Passive listeners and data connections per client address.
    data_per_ip: HashMap<IpAddr, u32>,
    ctrl_count: usize,
    /// Sessions in connection order, for eviction of the oldest
    /// unauthenticated one at the limit; entries may be stale (checked by serial).
    unauth: std::collections::VecDeque<(usize, u64)>,
    pasv_count: usize,
    data_count: usize,
    serial: u64,
    /// Scratch for transfers (ASCII conversion, STOR without splice).
    scratch: Vec<u8>,
    /// Scratch for control reads.
    read_buf: Vec<u8>,
    /// The lines the sifter walks (see `sift`); kept for its capacity.
    sift_buf: Vec<u8>,
    cleaned: Vec<u8>,
    out: Vec<u8>,
    now: Instant,
    shutting_down: bool,
    accept_paused: bool,
    xferlog: Option<XferLog>,
    /// What is left of `PASS_BUDGET_BYTES` in this pass.
    pass_budget: usize,
    /// Commands the session being dispatched may still run (see `new_turn`).
    turn_lines: usize,
    /// Reply bytes it may still produce.
    turn_bytes: usize,
    /// Earliest time for the next slab shrink and heap trim.
    next_shrink: Instant,
    /// A `SHRINK_CHECK` timer is in the wheel.
    shrink_scheduled: bool,
}

impl Server {
    /// Bind the control listener and prepare everything; no client is
    /// served until `run`.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        let users = match &config.users {
            Some(path) => Users::load(path, &config.root).map_err(|e| StartError(e.to_string()))?,
            None => Users::empty(),
        };
        let anonymous = if config.anonymous {
            let vfs = Vfs::open(&config.root, config.anonymous_write)
                .map_err(|e| StartError(format!("--root {}: {e}", config.root.display())))?;
            Some(Rc::new(vfs))
        } else {
            None
        };
        let poll = Poll::new().map_err(|e| StartError(format!("cannot create poll: {e}")))?;
        let mut listener = TcpListener::bind(config.listen)
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
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
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| StartError(e.to_string()))?);
        let helper = Helper::spawn(waker.clone()).map_err(|e| StartError(format!("cannot start helper thread: {e}")))?;
        let env_login_cache = config.login_cache;
        let xferlog = match &config.xferlog {
            Some(p) => Some(XferLog::open(p).map_err(|e| StartError(format!("--xferlog {}: {e}", p.display())))?),
            None => None,
        };
        let now = Instant::now();
        let has_users = !users.is_empty();
        Ok(Server {
            poll,
            events: Events::with_capacity(1024),
            slab,
            wheel: Wheel::new(WHEEL_TICK, WHEEL_SLOTS, now, 1024),
            still_ready: Vec::with_capacity(64),
            next_ready: Vec::with_capacity(64),
            ready_bits: Vec::new(),
            closed: Vec::with_capacity(64),
            env: Env { anonymous, has_users, config },
            users: Arc::new(users),
            vfs_cache: HashMap::new(),
            helper,
            verdicts: Vec::new(),
            cached_verdicts: Vec::new(),
            login_cache: LoginCache::new(env_login_cache, 4096),
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            signals: None,
            listener_key: Some(key),
            local_addr,
            ports: PortPicker::new(),
            per_ip: HashMap::new(),
            data_per_ip: HashMap::new(),
            ctrl_count: 0,
            unauth: std::collections::VecDeque::new(),
            pasv_count: 0,
            data_count: 0,
            serial: 0,
            scratch: vec![0; SCRATCH_BYTES],
            read_buf: vec![0; CTRL_READ_CHUNK_BYTES],
            sift_buf: Vec::new(),
            cleaned: Vec::with_capacity(line::MAX_LINE_BYTES + 2),
            out: Vec::with_capacity(4096),
            now,
            shutting_down: false,
            accept_paused: false,
            xferlog,
            pass_budget: PASS_BUDGET_BYTES,
            turn_lines: LINES_PER_TURN,
            turn_bytes: REPLY_BYTES_PER_TURN,
            next_shrink: now,
            shrink_scheduled: false,
        })
    }

    /// The address the control listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { waker: self.waker.clone(), stop: self.stop.clone() }
    }

    /// Handle SIGINT/SIGTERM (drain and exit) and SIGHUP (reload users).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        self.poll.registry().register(&mut signals, SIGNAL, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Serve until shut down (signal or `StopHandle`) and every session is gone.
    pub fn run(mut self) -> io::Result<()> {
        info!("listening on {} (root {}, anonymous {})", self.local_addr, self.env.config.root.display(),
            match (self.env.anonymous.is_some(), self.env.config.anonymous_write) {
                (false, _) => "off",
                (true, false) => "read-only",
                (true, true) => "read-write",
            });
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        loop {
            let timeout = if self.still_ready.is_empty() {
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
            self.pass_budget = PASS_BUDGET_BYTES;
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
            let mut cached = std::mem::take(&mut self.cached_verdicts);
            for v in cached.drain(..) {
                self.on_verdict(v);
            }
            self.cached_verdicts = cached;
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
            if self.shutting_down && self.slab.is_empty() {
                break;
            }
        }
        info!("shut down");
        Ok(())
    }

    // ----- dispatch -------------------------------------------------------

    /// `to_eagain`: read the control socket until `WouldBlock` even after a
    /// short read (urgent data, hang-up, or a source cut short earlier).
    fn ready(&mut self, key: usize, readable: bool, writable: bool, to_eagain: bool) {
        self.new_turn();
        match self.slab.get(key) {
            Some(Entry::Listener(_)) => self.accept_control(key),
            Some(Entry::Ctrl(_)) => {
                if writable {
                    self.flush(key);
                    self.resume_if_drained(key);
                }
                if readable {
                    self.read_control(key, to_eagain);
                }
            }
            Some(Entry::Pasv(_)) => self.accept_data(key),
            Some(Entry::Data(_)) => self.data_ready(key),
            Some(Entry::Closed) | None => {}
        }
    }

    /// A new dispatch: a session may run `LINES_PER_TURN` commands and
    /// produce `REPLY_BYTES_PER_TURN` of replies before it must wait for
    /// the next pass of the loop.
    fn new_turn(&mut self) {
        self.turn_lines = LINES_PER_TURN;
        self.turn_bytes = REPLY_BYTES_PER_TURN;
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
                self.accept_paused = false;
                if let Some(l) = self.listener_key {
                    self.accept_control(l);
                }
                return;
            }
            SHRINK_CHECK => {
                self.shrink_scheduled = false;
                self.maybe_shrink();
                return;
            }
            SHUTDOWN_DEADLINE => {
                let keys: Vec<usize> = self.slab.iter().filter(|(_, e)| matches!(e, Entry::Ctrl(_))).map(|(k, _)| k).collect();
                for k in keys {
                    self.abort_transfer(k, TransferError::Aborted, false);
                    self.close_control(k, "shutdown grace period over");
                }
                return;
            }
            _ => {}
        }
        match self.slab.get_mut(key) {
            Some(Entry::Ctrl(c)) => {
                c.timer = None;
                let action = {
                    let mut out = std::mem::take(&mut self.out);
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
                    self.out = out;
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
            _ => {}
        }
    }

    /// Whether the session at `owner` may open one more passive listener or
    /// data connection: its client address holds fewer than
    /// `--max-data-per-ip`, so one address cannot take every data slot.
    fn data_slot_free(&self, owner: usize) -> bool {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return false };
        let held = self.data_per_ip.get(&c.session.peer().ip()).copied().unwrap_or(0);
        if held as usize >= self.env.config.max_data_per_ip {
            ctx_log!(warn, owner, c.session, "data connection limit for this address ({}) reached", self.env.config.max_data_per_ip);
            return false;
        }
        true
    }

    fn take_data_slot(&mut self, owner: usize) {
        if let Some(Entry::Ctrl(c)) = self.slab.get(owner) {
            *self.data_per_ip.entry(c.session.peer().ip()).or_insert(0) += 1;
        }
    }

    fn release_data_slot(&mut self, owner: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
        let ip = c.session.peer().ip();
        if let Some(n) = self.data_per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.data_per_ip.remove(&ip);
            }
        }
    }

    // ----- control connections -------------------------------------------

    fn accept_control(&mut self, key: usize) {
        if self.accept_paused || self.shutting_down {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let accepted = match self.slab.get(key) {
                Some(Entry::Listener(l)) => l.accept(),
                _ => return,
            };
            match accepted {
                Ok((tcp, peer)) => self.new_control(tcp, peer),
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: back off instead of spinning
                    // on a listener that stays readable.
                    warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused = true;
                    self.wheel.schedule(self.now + ACCEPT_BACKOFF, ACCEPT_RETRY);
                    return;
                }
            }
        }
        self.wake_later(key);
    }

    fn new_control(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let peer = session::canonical(peer);
        let cfg = &self.env.config;
        let from_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        let full = self.ctrl_count >= cfg.max_clients && !self.evict_unauthenticated();
        if full || from_ip as usize >= self.env.config.max_per_ip {
            // Refused before any per-session allocation.
            let mut tcp = tcp;
            let _ = tcp.write(b"421 Too many connections; try again later.\r\n");
            debug!("refused {peer}: too many connections");
            return;
        }
        let cfg = &self.env.config;
        // Bound to one address, the listener knows our end already.
        let local = if self.local_addr.ip().is_unspecified() {
            match tcp.local_addr() {
                Ok(a) => a,
                Err(_) => return,
            }
        } else {
            self.local_addr
        };
        let mut stream = Stream::accepted(tcp);
        let key = self.slab.vacant_key();
        if let Err(e) = stream.register_control(self.poll.registry(), Token(key)) {
            warn!("register {peer}: {e}");
            return;
        }
        self.serial += 1;
        let session = Session::new(peer, local);
        let deadline = self.now + cfg.login_timeout;
        let timer = Some(self.wheel.schedule(deadline, key));
        let ctrl = Control {
            stream,
            session,
            line: LineBuffer::new(),
            out: Vec::new(),
            timer,
            data: None,
            serial: self.serial,
            close_after_flush: false,
            read_paused: false,
            read_eof: false,
            started: self.now,
        };
        ctx_log!(info, key, ctrl.session, "connected");
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        ctrl.session.greeting(&mut out);
        self.slab.insert(Entry::Ctrl(ctrl));
        self.unauth.push_back((key, self.serial));
        if self.unauth.len() > 2 * self.ctrl_count + 64 {
            // Forget sessions that logged in or left (amortised O(1)).
            let slab = &self.slab;
            self.unauth.retain(|&(k, serial)| matches!(slab.get(k), Some(Entry::Ctrl(c)) if c.serial == serial && !c.session.is_logged_in()));
        }
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        self.ctrl_count += 1;
        self.send(key, &out);
        self.out = out;
    }

    /// At the connection limit, make room by closing the oldest session that
    /// has not logged in: honest clients log in within a second, so a flood
    /// of silent or trickling connections (slowloris) cannot lock them out.
    fn evict_unauthenticated(&mut self) -> bool {
        while let Some((key, serial)) = self.unauth.pop_front() {
            let victim = matches!(self.slab.get(key), Some(Entry::Ctrl(c)) if c.serial == serial && !c.session.is_logged_in() && !c.session.is_busy());
            if victim {
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    ctx_log!(info, key, c.session, "evicted: connection limit reached and not logged in");
                    let _ = c.stream.write(b"421 Server busy; connection closed.\r\n");
                }
                self.close_control(key, "evicted");
                return true;
            }
        }
        false
    }

    /// Write replies, straight to the socket when nothing is queued; only an
    /// unsent tail is copied into the session.
    fn send(&mut self, key: usize, bytes: &[u8]) {
        self.turn_bytes = self.turn_bytes.saturating_sub(bytes.len());
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        if bytes.is_empty() && c.out.is_empty() {
            if c.close_after_flush {
                self.close_control(key, "closed by server");
            }
            return;
        }
        if !c.out.is_empty() {
            c.out.extend_from_slice(bytes);
            self.flush(key);
            return;
        }
        let sent = match c.stream.write_now(bytes, c.close_after_flush) {
            Ok(n) => n,
            Err(e) => {
                debug!("[c{key}] write: {e}");
                self.close_control(key, "connection lost");
                return;
            }
        };
        if sent < bytes.len() {
            c.out.extend_from_slice(&bytes[sent..]);
        } else if c.close_after_flush {
            self.close_control(key, "closed by server");
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        let sent = match c.stream.write_now(&c.out, c.close_after_flush) {
            Ok(n) => n,
            Err(e) => {
                debug!("[c{key}] write: {e}");
                self.close_control(key, "connection lost");
                return;
            }
        };
        c.out.drain(..sent);
        if c.out.is_empty() {
            c.out = Vec::new();
            if c.close_after_flush {
                self.close_control(key, "closed by server");
            }
        }
    }

    fn read_control(&mut self, key: usize, to_eagain: bool) {
        // Its own buffer, not the transfers' scratch: a command read here
        // may start a transfer whose first slice runs at once and needs the
        // scratch (lending one buffer to both made a TYPE A RETR whose data
        // connection was already open read 0 bytes and answer 226).
        // Lines left from an earlier turn go first; more is read only once
        // they are done, so the queue never grows past a read.
        if matches!(self.slab.get(key), Some(Entry::Ctrl(c)) if !c.line.is_empty()) {
            self.drain_lines(key);
        }
        let mut scratch = std::mem::take(&mut self.read_buf);
        let mut budget = CTRL_READ_BUDGET_BYTES;
        while let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            if c.read_paused || c.close_after_flush || c.read_eof {
                break;
            }
            if self.turn_lines == 0 || self.turn_bytes == 0 {
                self.wake_later(key);
                break;
            }
            let want = budget.min(CTRL_READ_CHUNK_BYTES);
            match c.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    // End of input. With whole commands still queued it is
                    // a half-close (`nc -N`, a script piped in): what the
                    // client sent still counts, so finish those commands
                    // and the transfers they start, then close. With none,
                    // the client is gone: cut what runs and close now (a
                    // FIN cannot tell a half-close from a close; queued
                    // commands can).
                    let queued = matches!(line::frame(c.line.bytes(), self.env.config.max_line_bytes), Frame::Line { .. });
                    if !queued {
                        self.close_control(key, "client closed");
                        break;
                    }
                    c.read_eof = true;
                    self.drain_lines(key);
                    self.close_if_input_done(key);
                    break;
                }
                Ok(n) => {
                    self.on_bytes(key, &scratch[..n]);
                    budget -= n;
                    if budget == 0 {
                        self.wake_later(key);
                        break;
                    }
                    // A short read drained the socket, and bytes that arrive
                    // later raise a new edge: no read just for EAGAIN. Not
                    // so with urgent data (EPOLLPRI): with SO_OOBINLINE a
                    // read stops at the urgent mark (ftplib sends ABOR's LF
                    // as urgent data), and the rest raises no new edge.
                    if n < want && !to_eagain {
                        break;
                    }
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    debug!("[c{key}] read: {e}");
                    self.close_control(key, "connection lost");
                    break;
                }
            }
        }
        self.read_buf = scratch;
    }

    /// Frame and handle lines straight from the read buffer; only a partial
    /// line, or lines that must wait while the session is busy, are copied
    /// into the session's `LineBuffer`.
    fn on_bytes(&mut self, key: usize, bytes: &[u8]) {
        let max = self.env.config.max_line_bytes;
        {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            if !c.line.is_empty() {
                c.line.push(bytes);
                self.drain_lines(key);
                return;
            }
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            if c.close_after_flush {
                return;
            }
            if c.session.is_busy() {
                c.line.push(&bytes[pos..]);
                self.check_queue(key);
                return;
            }
            if c.out.len() >= REPLY_HIGH_WATER_BYTES {
                // The client does not read its replies: keep the rest (at
                // most one read) and stop reading until it does.
                c.line.push(&bytes[pos..]);
                c.read_paused = true;
                return;
            }
            if self.turn_lines == 0 || self.turn_bytes == 0 {
                // This session had its share of the pass: the rest waits
                // (reading stops, see `read_control`) for the next one.
                c.line.push(&bytes[pos..]);
                self.wake_later(key);
                return;
            }
            match line::frame(&bytes[pos..], max) {
                Frame::Line { end, consumed } => {
                    line::clean(&bytes[pos..pos + end], &mut self.cleaned);
                    pos += consumed;
                    self.run_line(key);
                }
                Frame::Partial => {
                    c.line.push(&bytes[pos..]);
                    return;
                }
                Frame::TooLong => {
                    self.line_too_long(key);
                    return;
                }
            }
        }
    }

    /// Handle queued lines while the session is free and its client reads
    /// its replies; stop reading while it does not.
    fn drain_lines(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        loop {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            if c.close_after_flush {
                return;
            }
            if c.session.is_busy() {
                self.check_queue(key);
                return;
            }
            if c.out.len() >= REPLY_HIGH_WATER_BYTES {
                c.read_paused = true;
                return;
            }
            if c.read_paused && c.out.len() <= REPLY_LOW_WATER_BYTES {
                // Bytes may wait in the socket with no new edge to come.
                c.read_paused = false;
                self.wake_later(key);
                continue;
            }
            if self.turn_lines == 0 || self.turn_bytes == 0 {
                if !c.line.is_empty() {
                    self.wake_later(key);
                }
                return;
            }
            let hint = if c.line.sifted() == 0 { c.line.scanned() } else { 0 };
            match line::frame_from(c.line.bytes(), hint, max) {
                Frame::Line { end, consumed } => {
                    line::clean(&c.line.bytes()[..end], &mut self.cleaned);
                    c.line.consume(consumed);
                    self.run_line(key);
                }
                Frame::Partial => {
                    c.line.mark_scanned();
                    self.close_if_input_done(key);
                    return;
                }
                Frame::TooLong => {
                    self.line_too_long(key);
                    return;
                }
            }
        }
    }

    /// The client's input ended and every whole line it sent was handled
    /// (and the transfers they started are over): send what is left, then
    /// close. A partial last line without its LF is dropped, as a line
    /// that never ended.
    fn close_if_input_done(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        if !c.read_eof || c.close_after_flush || c.session.is_busy() {
            return;
        }
        if matches!(line::frame(c.line.bytes(), max), Frame::Line { .. }) {
            return; // still lines to run (paused on the reply budget)
        }
        c.line.release();
        c.close_after_flush = true;
        self.send(key, &[]);
    }

    /// After a writable event: a session paused because its client did not
    /// read goes on once its unsent replies are under the low-water mark.
    fn resume_if_drained(&mut self, key: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return };
        if c.read_paused && c.out.len() <= REPLY_LOW_WATER_BYTES {
            self.drain_lines(key);
        }
    }

    /// While busy: sift the queue if a transfer runs (ABOR and STAT are
    /// answered at once: they are what clients send during one), and stop
    /// reading once more than a line is queued (back-pressure: the kernel's
    /// socket buffer holds the rest).
    fn check_queue(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        self.sift(key);
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            if c.line.len() > max {
                c.read_paused = true;
            }
        }
    }

    /// Look once at each queued line that arrived during a transfer: take an
    /// ABOR or a STAT without argument out and answer it now; keep the
    /// others, in order, for after the transfer. Linear in the bytes that
    /// arrived: each byte is walked once and copied at most twice. STAT's
    /// replies obey the reply budget: past it the sifting (and reading)
    /// stops until the client reads.
    fn sift(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        let mut tail = std::mem::take(&mut self.sift_buf);
        tail.clear();
        match self.slab.get_mut(key) {
            Some(Entry::Ctrl(c)) if matches!(c.session.pending(), Pending::Transfer(_)) => {
                c.line.take_unsifted(&mut tail);
            }
            _ => {
                self.sift_buf = tail;
                return;
            }
        }
        let mut pos = 0;
        let mut partial = false;
        let mut abort = false;
        while let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            if !matches!(c.session.pending(), Pending::Transfer(_)) || c.close_after_flush {
                break;
            }
            if c.out.len() >= REPLY_HIGH_WATER_BYTES {
                c.read_paused = true;
                break;
            }
            let (end, consumed) = match line::frame(&tail[pos..], max) {
                Frame::Line { end, consumed } => (end, consumed),
                Frame::Partial => {
                    partial = true;
                    break;
                }
                // Left queued: it is refused once the transfer is over.
                Frame::TooLong => break,
            };
            line::clean(&tail[pos..pos + end], &mut self.cleaned);
            let urgent = match command::parse(&self.cleaned) {
                Ok(cmd) if cmd.verb == Verb::Abor => Some(Verb::Abor),
                Ok(cmd) if cmd.verb == Verb::Stat && cmd.arg.trim_ascii().is_empty() => Some(Verb::Stat),
                _ => None,
            };
            let Some(verb) = urgent else {
                c.line.push_sifted(&tail[pos..pos + consumed]);
                pos += consumed;
                continue;
            };
            pos += consumed;
            if verb == Verb::Abor {
                abort = true;
                break;
            }
            let progress = match c.data.and_then(|d| self.slab.get(d)) {
                Some(Entry::Data(d)) => d.bytes,
                _ => 0,
            };
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { break };
            ctx_log!(debug, key, c.session, "<- STAT (during transfer)");
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: unix_now() };
            c.session.handle_urgent(verb, progress, &mut ctx);
            self.send(key, &out);
            self.out = out;
        }
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.line.push(&tail[pos..]);
            if partial {
                c.line.mark_scanned();
            }
        }
        self.sift_buf = tail;
        if abort {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            ctx_log!(debug, key, c.session, "<- ABOR (during transfer)");
            self.abort_transfer(key, TransferError::Aborted, false);
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: 0 };
            c.session.aborted(&mut ctx);
            self.send(key, &out);
            self.out = out;
            self.refresh_deadline(key);
            self.drain_lines(key);
        }
    }

    fn line_too_long(&mut self, key: usize) {
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            ctx_log!(info, key, c.session, "command line too long; closing");
            c.line.release();
        }
        self.send_and_close(key, b"500 Command line too long.\r\n");
    }

    fn send_and_close(&mut self, key: usize, bytes: &[u8]) {
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.close_after_flush = true;
        }
        self.send(key, bytes);
    }

    /// Hand the line in `self.cleaned` to the session, with a panic in its
    /// handling contained to this session.
    fn run_line(&mut self, key: usize) {
        self.turn_lines = self.turn_lines.saturating_sub(1);
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if log::log_enabled!(log::Level::Debug) {
            let shown = if self.cleaned.len() >= 5 && self.cleaned[..5].eq_ignore_ascii_case(b"PASS ") {
                "PASS <redacted>".to_string()
            } else {
                sanitize(&self.cleaned)
            };
            ctx_log!(debug, key, c.session, "<- {shown}");
        }
        let session = &mut c.session;
        let line = &self.cleaned;
        let env = &self.env;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = Ctx { out: &mut out, env, now_unix: unix_now() };
            session.handle(line, &mut ctx)
        }));
        let action = match result {
            Ok(a) => a,
            Err(_) => {
                error!("[c{key}] BUG: panic while handling a command; closing this session only");
                out.clear();
                out.extend_from_slice(b"421 Internal error; closing connection.\r\n");
                Action::Close
            }
        };
        self.out = out;
        self.after_step(key, action);
    }

    /// Carry out an action (adding replies to `self.out`), send the replies,
    /// and set the control deadline for the session's new state.
    fn after_step(&mut self, key: usize, action: Action) {
        let mut out = std::mem::take(&mut self.out);
        self.perform(key, action, &mut out);
        self.send(key, &out);
        out.clear();
        self.out = out;
        self.refresh_deadline(key);
    }

    fn perform(&mut self, key: usize, action: Action, out: &mut Vec<u8>) {
        match action {
            Action::None => {}
            Action::Close => {
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    c.close_after_flush = true;
                }
            }
            Action::CheckLogin { user, password } => {
                let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return };
                let serial = c.serial;
                let digest = self.login_cache.digest(&user, &password);
                if let Some(grant) = self.login_cache.get(digest, self.now) {
                    // Answered after this iteration's events, like a helper
                    // verdict (not from inside the handler that asked). The
                    // socket was read to a short read, so no extra pass is
                    // needed: lines that came with PASS wait in the buffer.
                    self.cached_verdicts.push(Verdict { key, serial, grant: Some(grant), digest: None });
                    return;
                }
                let ip = c.session.peer().ip();
                let job = Job { key, serial, ip, user, password, users: self.users.clone(), digest };
                match self.helper.submit(job) {
                    Ok(None) => {}
                    Ok(Some((evicted, evicted_serial))) => {
                        // A flooding address's newest job made room.
                        if matches!(self.slab.get(evicted), Some(Entry::Ctrl(c)) if c.serial == evicted_serial) {
                            if let Some(Entry::Ctrl(c)) = self.slab.get(evicted) {
                                ctx_log!(warn, evicted, c.session, "password check dropped for a fairer share; closing");
                            }
                            self.send_and_close(evicted, LOGINS_BUSY);
                        }
                    }
                    Err(full) => {
                        // Waiting would only lengthen the queue for everyone:
                        // refuse now, clearly, and let the client retry.
                        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                            ctx_log!(warn, key, c.session, "password queue full ({full:?}); closing");
                            out.extend_from_slice(LOGINS_BUSY);
                            c.close_after_flush = true;
                        }
                    }
                }
            }
            Action::Delay(d) => {
                let at = self.now + d;
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    set_timer(&mut self.wheel, &mut c.timer, at, key);
                }
            }
            Action::OpenPassive { extended } => {
                let result = match self.reuse_passive(key) {
                    Some(addr) => Ok(addr),
                    None => {
                        self.drop_data(key);
                        self.open_passive(key)
                    }
                };
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    let mut ctx = Ctx { out, env: &self.env, now_unix: 0 };
                    c.session.passive_opened(result, extended, &mut ctx);
                }
            }
            Action::DropData => self.drop_data(key),
            Action::Transfer(req) => self.start_transfer(key, req, out),
        }
    }

    fn refresh_deadline(&mut self, key: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        let cfg = &self.env.config;
        match c.session.deadline() {
            // The login deadline counts from the connection (or the last
            // failed login), not from the last command: a client that sends
            // a command every minute must still log in or go (slowloris).
            Deadline::Login => {
                if c.timer.is_none() {
                    c.timer = Some(self.wheel.schedule(self.now + cfg.login_timeout, key));
                }
            }
            Deadline::Idle => set_timer(&mut self.wheel, &mut c.timer, self.now + cfg.idle_timeout, key),
            Deadline::None => {
                // The failed-login delay keeps its timer; transfers have their own.
                if c.session.pending() != Pending::LoginDelay {
                    if let Some(id) = c.timer.take() {
                        self.wheel.cancel(id);
                    }
                }
            }
        }
    }

    fn close_control(&mut self, key: usize, why: &str) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        if let Some(id) = c.timer.take() {
            self.wheel.cancel(id);
        }
        if c.close_after_flush {
            // Our last reply is sent. Bytes the client sent that we never
            // read (a session paused on a full queue, the rest of an
            // over-long line) would make close(2) send a RST, and a RST
            // can destroy that reply before the client reads it. Discard
            // what is already here (bounded), so the close is a FIN.
            // (The reactor's read buffer may be lent out to the read that
            // led here: a small buffer of its own.)
            let mut sink = [0u8; 4096];
            let mut left = CLOSE_DISCARD_BYTES;
            while left > 0 {
                match c.stream.read(&mut sink[..left.min(4096)]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left -= n,
                }
            }
        }
        let secs = self.now.saturating_duration_since(c.started).as_secs_f64();
        ctx_log!(info, key, c.session, "disconnected ({why}) after {secs:.1}s");
        let ip = c.session.peer().ip();
        if c.session.pending() == Pending::Login {
            // Its password would be hashed for no one.
            self.helper.cancel(key, c.serial);
        }
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        self.ctrl_count -= 1;
        // A transfer cut short by the control connection closing still ends
        // with its log line and xferlog record (incomplete).
        if let Some(d) = c.data {
            if matches!(self.slab.get(d), Some(Entry::Data(DataConn { state: DataState::Running(_) | DataState::Connecting(_), .. }))) {
                self.complete_transfer(d, Err(TransferError::ConnectionLost));
            }
        }
        self.drop_data(key);
        self.close_entry(key);
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
                self.pasv_count -= 1;
                self.release_data_slot(p.owner);
                if let Some(id) = p.timer {
                    self.wheel.cancel(id);
                }
            }
            Entry::Data(d) => {
                self.data_count -= 1;
                self.release_data_slot(d.owner);
                if let Some(id) = d.timer {
                    self.wheel.cancel(id);
                }
                // Dropping a STOR's transfer removes its temporary file.
            }
            Entry::Listener(l) => drop(l),
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

    /// After a peak (a flood of connections, a burst of clients) give the
    /// memory back: the slab keeps its capacity otherwise, and the heap its
    /// freed pages. Only when the slab is mostly empty, at most once a
    /// second; a check that is too early is retried from the wheel, since
    /// the last close of a peak may come within that second.
    fn maybe_shrink(&mut self) {
        let cap = self.slab.capacity();
        if cap <= SHRINK_MIN_ENTRIES || self.slab.len() * 4 >= cap {
            return;
        }
        if self.now < self.next_shrink {
            if !self.shrink_scheduled {
                self.shrink_scheduled = true;
                self.wheel.schedule(self.next_shrink, SHRINK_CHECK);
            }
            return;
        }
        self.next_shrink = self.now + Duration::from_secs(1);
        self.slab.shrink_to_fit();
        crate::sys::trim_heap();
        if self.slab.capacity() > SHRINK_MIN_ENTRIES && self.slab.len() * 4 < self.slab.capacity() && !self.shrink_scheduled {
            // Live entries high in the slab keep it long: look again later.
            self.shrink_scheduled = true;
            self.wheel.schedule(self.next_shrink + Duration::from_secs(9), SHRINK_CHECK);
        }
    }

    // ----- data connections ----------------------------------------------

    /// Close the session's passive listener or data connection, if any.
    fn drop_data(&mut self, key: usize) {
        let data = match self.slab.get_mut(key) {
            Some(Entry::Ctrl(c)) => c.data.take(),
            _ => None,
        };
        if let Some(d) = data {
            self.close_entry(d);
        }
    }

    /// A PASV/EPSV while the session's passive listener still waits, unused
    /// and with no command pending, answers with the same port (its data
    /// timeout starts again) instead of closing it and opening another: the
    /// client connects to the port it was last given either way, and a
    /// pipelined PASV storm then costs a reply each, not a socket, bind,
    /// listen and close (the hostile benchmark's flooders sent thousands).
    fn reuse_passive(&mut self, key: usize) -> Option<SocketAddr> {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return None };
        let pkey = c.data?;
        let Some(Entry::Pasv(p)) = self.slab.get_mut(pkey) else { return None };
        if p.pending.is_some() {
            return None;
        }
        let addr = p.listener.local_addr().ok()?;
        set_timer(&mut self.wheel, &mut p.timer, self.now + self.env.config.data_timeout, pkey);
        Some(addr)
    }

    fn open_passive(&mut self, key: usize) -> io::Result<SocketAddr> {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return Err(io::ErrorKind::NotFound.into()) };
        if self.pasv_count >= self.env.config.max_passive {
            ctx_log!(warn, key, c.session, "passive listener limit ({}) reached", self.env.config.max_passive);
            return Err(io::Error::other("too many passive listeners"));
        }
        if !self.data_slot_free(key) {
            return Err(io::Error::other("too many data connections from this address"));
        }
        let ip = c.session.local().ip();
        let mut listener = match self.ports.bind(ip, self.env.config.passive_ports) {
            Ok(l) => {
                stream::prepare_listener(&l, false);
                l
            }
            Err(e) => {
                ctx_log!(warn, key, c.session, "cannot open a passive port: {e}");
                return Err(e);
            }
        };
        let addr = listener.local_addr()?;
        let pkey = self.slab.vacant_key();
        self.poll.registry().register(&mut listener, Token(pkey), Interest::READABLE)?;
        let timer = Some(self.wheel.schedule(self.now + self.env.config.data_timeout, pkey));
        self.slab.insert(Entry::Pasv(PasvListener { listener, owner: key, timer, pending: None }));
        self.pasv_count += 1;
        self.take_data_slot(key);
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.data = Some(pkey);
        }
        Ok(addr)
    }

    fn accept_data(&mut self, pkey: usize) {
        loop {
            let Some(Entry::Pasv(p)) = self.slab.get(pkey) else { return };
            let owner = p.owner;
            let accepted = p.listener.accept();
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    debug!("[c{owner}] passive accept: {e}");
                    return;
                }
            };
            let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
            let peer = session::canonical(peer);
            if peer.ip() != c.session.peer().ip() && !self.env.config.insecure_pasv_any_peer {
                ctx_log!(warn, owner, c.session, "refused data connection from foreign address {peer}");
                drop(tcp);
                continue;
            }
            if self.data_count >= self.env.config.max_transfers {
                ctx_log!(warn, owner, c.session, "data connection limit ({}) reached", self.env.config.max_transfers);
                drop(tcp);
                let had = matches!(self.slab.get(pkey), Some(Entry::Pasv(p)) if p.pending.is_some());
                self.close_entry(pkey);
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
                    c.data = None;
                }
                if had {
                    self.finish_transfer_reply(owner, Err(TransferError::CantOpen), true);
                }
                return;
            }
            // One connection per PASV: the listener goes, the port is free.
            let pending = match self.slab.get_mut(pkey) {
                Some(Entry::Pasv(p)) => p.pending.take(),
                _ => None,
            };
            self.close_entry(pkey);
            let mut stream = Stream::accepted(tcp);
            let dkey = self.slab.vacant_key();
            if stream.register(self.poll.registry(), Token(dkey)).is_err() {
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
                    c.data = None;
                }
                if pending.is_some() {
                    self.finish_transfer_reply(owner, Err(TransferError::CantOpen), true);
                }
                return;
            }
            let running = pending.is_some();
            let state = match pending {
                Some(req) => DataState::Running(req),
                None => DataState::Idle,
            };
            // An idle data connection (no transfer command yet) waits at
            // most the data timeout too, as its listener did: a client
            // cannot hold a data slot forever by connecting and going quiet.
            let wait = if running { self.env.config.stall_timeout } else { self.env.config.data_timeout };
            let timer = Some(self.wheel.schedule(self.now + wait, dkey));
            self.data_count += 1;
            self.take_data_slot(owner);
            self.slab.insert(Entry::Data(DataConn {
                stream,
                owner,
                state,
                timer,
                last_progress: self.now,
                started: self.now,
                bytes: 0,
            }));
            if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
                c.data = Some(dkey);
            }
            if running {
                let mut out = std::mem::take(&mut self.out);
                out.clear();
                self.first_step(dkey, owner, false, &mut out);
                self.send(owner, &out);
                out.clear();
                self.out = out;
                self.refresh_deadline(owner);
                self.drain_lines(owner);
            }
            return;
        }
    }

    /// `150`/`125` for a transfer that is starting.
    fn announce_start(&mut self, owner: usize, already_open: bool) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) else { return };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: 0 };
        c.session.transfer_started(already_open, &mut ctx);
        self.send(owner, &out);
        out.clear();
        self.out = out;
    }

    fn start_transfer(&mut self, key: usize, req: TransferRequest, out: &mut Vec<u8>) {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return };
        let mode = c.session.data_mode();
        let data = c.data;
        match (mode, data) {
            (DataMode::Passive, Some(k)) => match self.slab.get_mut(k) {
                Some(Entry::Pasv(p)) => p.pending = Some(req),
                Some(Entry::Data(d)) if matches!(d.state, DataState::Idle) => {
                    d.state = DataState::Running(req);
                    d.started = self.now;
                    d.last_progress = self.now;
                    set_timer(&mut self.wheel, &mut d.timer, self.now + self.env.config.stall_timeout, k);
                    self.first_step(k, key, true, out);
                }
                _ => self.fail_start(key, req, out),
            },
            (DataMode::Active(_), _) if self.data_count >= self.env.config.max_transfers => {
                warn!("[c{key}] data connection limit ({}) reached", self.env.config.max_transfers);
                self.fail_start(key, req, out);
            }
            (DataMode::Active(_), _) if !self.data_slot_free(key) => self.fail_start(key, req, out),
            (DataMode::Active(addr), _) => {
                self.drop_data(key);
                match TcpStream::connect(addr) {
                    Ok(tcp) => {
                        let mut stream = Stream::plain(tcp);
                        let dkey = self.slab.vacant_key();
                        if stream.register(self.poll.registry(), Token(dkey)).is_err() {
                            self.fail_start(key, req, out);
                            return;
                        }
                        let timer = Some(self.wheel.schedule(self.now + self.env.config.data_timeout, dkey));
                        self.data_count += 1;
                        self.take_data_slot(key);
                        self.slab.insert(Entry::Data(DataConn {
                            stream,
                            owner: key,
                            state: DataState::Connecting(req),
                            timer,
                            last_progress: self.now,
                            started: self.now,
                            bytes: 0,
                        }));
                        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                            c.data = Some(dkey);
                        }
                    }
                    Err(_) => self.fail_start(key, req, out),
                }
            }
            _ => self.fail_start(key, req, out),
        }
    }

    /// The data connection is gone or could not be made: `425`.
    fn fail_start(&mut self, key: usize, req: TransferRequest, out: &mut Vec<u8>) {
        drop(req);
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.data = None;
            let mut ctx = Ctx { out, env: &self.env, now_unix: 0 };
            c.session.transfer_finished(Err(TransferError::CantOpen), &mut ctx);
        }
    }

    fn data_ready(&mut self, dkey: usize) {
        let outcome = {
            let Some(Entry::Data(d)) = self.slab.get_mut(dkey) else { return };
            match &mut d.state {
                DataState::Idle => None,
                DataState::Connecting(_) => match d.stream.take_error() {
                    Ok(Some(_)) | Err(_) => Some(Err(TransferError::CantOpen)),
                    Ok(None) => match d.stream.peer_addr() {
                        Ok(_) => {
                            let DataState::Connecting(req) = std::mem::replace(&mut d.state, DataState::Idle) else {
                                unreachable!()
                            };
                            d.state = DataState::Running(req);
                            d.started = self.now;
                            d.last_progress = self.now;
                            set_timer(&mut self.wheel, &mut d.timer, self.now + self.env.config.stall_timeout, dkey);
                            let owner = d.owner;
                            self.announce_start(owner, false);
                            self.wake_later(dkey);
                            return;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
                        Err(_) => Some(Err(TransferError::CantOpen)),
                    },
                },
                DataState::Running(_) => {
                    if let Some(result) = self.step_data(dkey, true) {
                        self.end_transfer(dkey, result, true);
                    }
                    return;
                }
            }
        };
        if let Some(result) = outcome {
            self.end_transfer(dkey, result, true);
        }
    }

    /// Move a running transfer's bytes within the budget: `Some` when it
    /// ended, `None` when it waits for readiness (or for its next turn).
    fn step_data(&mut self, dkey: usize, bulk: bool) -> Option<Result<(), TransferError>> {
        if bulk && self.pass_budget == 0 {
            self.wake_later(dkey);
            return None;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let outcome = match self.slab.get_mut(dkey) {
            Some(Entry::Data(DataConn { state: DataState::Running(req), stream, bytes, last_progress, .. })) => {
                let step = if req.transfer.is_upload() { UPLOAD_STEP_BYTES } else { DATA_BUDGET_BYTES };
                let budget = if bulk { step.min(self.pass_budget) } else { step };
                let mut moved = 0;
                let r = req.transfer.step(stream, budget, &mut scratch, &mut moved);
                *bytes += moved;
                if bulk {
                    self.pass_budget = self.pass_budget.saturating_sub(moved as usize);
                }
                if moved > 0 {
                    *last_progress = self.now;
                }
                match r {
                    Ok(Progress::Done) => Some(Ok(())),
                    Ok(Progress::Blocked) => None,
                    Ok(Progress::Budget) => {
                        // Not `wake_later`: a transfer may take several
                        // steps in one pass while the pass budget lasts
                        // (one 256 KiB step per pass cost a large RETR a
                        // quarter more CPU per GiB in loop turns). The
                        // duplicates end when the pass budget does (then
                        // `wake_later`, above, queues it once).
                        self.next_ready.push(dkey);
                        None
                    }
                    Err(e) => Some(Err(e)),
                }
            }
            _ => None,
        };
        self.scratch = scratch;
        outcome
    }

    /// A transfer whose data connection is open starts: for a download,
    /// move its first slice at once, and if that was all of it (a small
    /// file, a listing), send `125`/`150` and `226` in one write — one TCP
    /// segment and one wake-up of the client instead of two. The replies
    /// still come in their order, after the data connection was closed.
    fn first_step(&mut self, dkey: usize, owner: usize, already_open: bool, out: &mut Vec<u8>) {
        let try_now = matches!(self.slab.get(dkey), Some(Entry::Data(DataConn { state: DataState::Running(r), .. })) if !r.transfer.is_upload());
        let outcome = if try_now { self.step_data(dkey, false) } else { None };
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
            let mut ctx = Ctx { out: &mut *out, env: &self.env, now_unix: 0 };
            c.session.transfer_started(already_open, &mut ctx);
        }
        match outcome {
            Some(result) => {
                if let Some(result) = self.complete_transfer(dkey, result) {
                    self.reply_transfer_end(owner, result, out);
                }
            }
            None if !try_now => self.wake_later(dkey),
            None => {}
        }
    }

    /// A transfer ended: commit (STOR), close the data connection, log, and
    /// only then reply (the data connection is closed before `226`).
    fn end_transfer(&mut self, dkey: usize, result: Result<(), TransferError>, drain: bool) {
        let owner = match self.slab.get(dkey) {
            Some(Entry::Data(d)) => d.owner,
            _ => return,
        };
        if let Some(result) = self.complete_transfer(dkey, result) {
            self.finish_transfer_reply(owner, result, drain);
        }
    }

    /// The data side of a transfer's end: commit (STOR), close the data
    /// connection, log. Returns the outcome to reply with, if the data
    /// connection carried a transfer.
    fn complete_transfer(&mut self, dkey: usize, result: Result<(), TransferError>) -> Option<Result<u64, TransferError>> {
        let Some(entry @ Entry::Data(_)) = self.slab.get_mut(dkey) else { return None };
        let Entry::Data(d) = std::mem::replace(entry, Entry::Closed) else { return None };
        self.closed.push(dkey);
        self.data_count -= 1;
        self.release_data_slot(d.owner);
        let DataConn { stream, owner, state, timer, started, bytes, .. } = d;
        if let Some(id) = timer {
            self.wheel.cancel(id);
        }
        let (req, result) = match state {
            DataState::Running(req) => {
                let TransferRequest { transfer, kind, path, ascii } = req;
                let result = match result {
                    Ok(()) => transfer.finish(),
                    Err(e) => {
                        transfer.interrupted();
                        Err(e)
                    }
                };
                (Some((kind, path, ascii)), result)
            }
            DataState::Connecting(req) => {
                // Never connected: nothing moved, nothing to keep.
                let TransferRequest { kind, path, ascii, .. } = req;
                (Some((kind, path, ascii)), result.and(Err(TransferError::CantOpen)))
            }
            DataState::Idle => (None, result),
        };
        // close(2) sends the FIN after the queued bytes; no shutdown needed.
        drop(stream);
        let secs = self.now.saturating_duration_since(started).as_secs_f64();
        if let (Some(Entry::Ctrl(c)), Some((kind, path, ascii))) = (self.slab.get(owner), &req) {
            ctx_log!(info, owner, c.session, "{:?} {} {} bytes in {:.3}s: {}", kind,
                sanitize(path.as_bytes()), bytes, secs,
                match &result { Ok(()) => "ok".to_string(), Err(e) => format!("{e:?}") });
            if let (Some(log), false) = (&mut self.xferlog, *kind == XferKind::List) {
                let record = xferlog::Record {
                    end_unix: unix_now(),
                    seconds: secs.round() as u64,
                    remote: c.session.peer().ip(),
                    bytes,
                    path: path.as_bytes(),
                    ascii: *ascii,
                    direction: if *kind == XferKind::Retr { xferlog::Direction::Outgoing } else { xferlog::Direction::Incoming },
                    anonymous: c.session.is_anonymous(),
                    user: c.session.user(),
                    complete: result.is_ok(),
                };
                if let Err(e) = log.write(&record) {
                    warn!("xferlog: {e}");
                }
            }
        }
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
            if c.data == Some(dkey) {
                c.data = None;
            }
        }
        req.map(|_| result.map(|_| bytes))
    }

    /// Tell the session how its transfer ended, then go on with its queue.
    fn finish_transfer_reply(&mut self, owner: usize, result: Result<u64, TransferError>, drain: bool) {
        if !matches!(self.slab.get(owner), Some(Entry::Ctrl(c)) if matches!(c.session.pending(), Pending::Transfer(_))) {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.reply_transfer_end(owner, result, &mut out);
        self.send(owner, &out);
        out.clear();
        self.out = out;
        self.refresh_deadline(owner);
        if drain {
            self.drain_lines(owner);
        }
    }

    /// The session's reply to the end of its transfer, into `out`.
    fn reply_transfer_end(&mut self, owner: usize, result: Result<u64, TransferError>, out: &mut Vec<u8>) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) else { return };
        let mut ctx = Ctx { out: &mut *out, env: &self.env, now_unix: 0 };
        c.session.transfer_finished(result, &mut ctx);
        if self.shutting_down {
            c.session.shutting_down(out);
            c.close_after_flush = true;
        }
    }

    /// Abort the session's transfer, if one is running or waiting.
    fn abort_transfer(&mut self, key: usize, why: TransferError, drain: bool) {
        let data = match self.slab.get(key) {
            Some(Entry::Ctrl(c)) => c.data,
            _ => None,
        };
        match data.and_then(|d| self.slab.get(d).map(|e| (d, matches!(e, Entry::Data(_))))) {
            Some((d, true)) => self.end_transfer(d, Err(why), drain),
            Some((d, false)) => {
                let had = matches!(self.slab.get(d), Some(Entry::Pasv(p)) if p.pending.is_some());
                self.close_entry(d);
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    c.data = None;
                }
                if had {
                    self.finish_transfer_reply(key, Err(why), drain);
                }
            }
            None => {}
        }
    }

    // ----- helper thread, signals ------------------------------------------

    fn on_wake(&mut self) {
        if self.stop.swap(false, Ordering::SeqCst) {
            self.begin_shutdown();
        }
        let mut verdicts = std::mem::take(&mut self.verdicts);
        self.helper.drain(&mut verdicts);
        for v in verdicts.drain(..) {
            self.on_verdict(v);
        }
        self.verdicts = verdicts;
    }

    fn on_verdict(&mut self, v: Verdict) {
        self.new_turn();
        match self.slab.get(v.key) {
            Some(Entry::Ctrl(c)) if c.serial == v.serial && c.session.pending() == Pending::Login => {}
            _ => return,
        }
        if let (Some(grant), Some(digest)) = (&v.grant, v.digest) {
            self.login_cache.insert(digest, grant.clone(), self.now);
        }
        let result = match v.grant {
            Some(grant) => match self.user_vfs(&grant.home, grant.perm.is_writable()) {
                Ok(vfs) => Ok((grant, vfs)),
                Err(e) => {
                    error!("[c{}] home {} of {} unavailable: {e}", v.key, grant.home.display(), grant.name);
                    Err(())
                }
            },
            None => Err(()),
        };
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(v.key) else { return };
        let ok = result.is_ok();
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: 0 };
        let action = c.session.login_checked(result, &mut ctx);
        if ok {
            ctx_log!(info, v.key, c.session, "logged in");
        } else {
            ctx_log!(info, v.key, c.session, "failed login");
        }
        self.out = out;
        // `after_step` sends what `login_checked` wrote, then the action's own.
        let mut out = std::mem::take(&mut self.out);
        self.perform(v.key, action, &mut out);
        self.send(v.key, &out);
        out.clear();
        self.out = out;
        self.refresh_deadline(v.key);
        self.drain_lines(v.key);
    }

    /// One `Vfs` (one directory descriptor) per home and permission, shared
    /// by all sessions of that user.
    fn user_vfs(&mut self, home: &std::path::Path, writable: bool) -> io::Result<Rc<Vfs>> {
        let key = (home.to_path_buf(), writable);
        if let Some(v) = self.vfs_cache.get(&key) {
            return Ok(v.clone());
        }
        let vfs = Rc::new(Vfs::open(home, writable)?);
        self.vfs_cache.insert(key, vfs.clone());
        Ok(vfs)
    }

    fn on_signals(&mut self) {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let pending: Vec<i32> = match &mut self.signals {
            Some(s) => s.pending().collect(),
            None => return,
        };
        for sig in pending {
            match sig {
                SIGINT | SIGTERM if self.shutting_down => {
                    info!("signal {sig} again: cutting transfers now");
                    self.timeout(SHUTDOWN_DEADLINE);
                }
                SIGINT | SIGTERM => {
                    info!("signal {sig}: shutting down (grace {:?})", self.env.config.shutdown_grace);
                    self.begin_shutdown();
                }
                SIGHUP => self.reload_users(),
                _ => {}
            }
        }
    }

    fn reload_users(&mut self) {
        let Some(path) = self.env.config.users.clone() else {
            info!("SIGHUP: no users file to reload");
            return;
        };
        match Users::load(&path, &self.env.config.root) {
            Ok(users) => {
                info!("SIGHUP: reloaded {} users from {}", users.len(), path.display());
                self.env.has_users = !users.is_empty();
                self.users = Arc::new(users);
                // New logins open homes afresh; live sessions keep theirs.
                self.vfs_cache.clear();
                self.login_cache.clear();
            }
            Err(e) => error!("SIGHUP: keeping the old users: {e}"),
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        if let Some(l) = self.listener_key.take() {
            self.close_entry(l);
        }
        let keys: Vec<usize> = self.slab.iter().filter(|(_, e)| matches!(e, Entry::Ctrl(_))).map(|(k, _)| k).collect();
        for key in keys {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { continue };
            if matches!(c.session.pending(), Pending::Transfer(_)) {
                continue; // finishes, or is cut at the deadline
            }
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            c.session.shutting_down(&mut out);
            c.close_after_flush = true;
            self.send(key, &out);
            self.out = out;
        }
        let grace = self.env.config.shutdown_grace;
        self.wheel.schedule(self.now + grace, SHUTDOWN_DEADLINE);
        // Everything may already be gone.
        self.reap();
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
