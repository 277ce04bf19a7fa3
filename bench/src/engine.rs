//! The load generator's event loop: one `mio::Poll`, many FTP clients, each a
//! small state machine over a control connection and at most one data
//! connection. Nothing blocks; the client is cheap per byte (one reusable read
//! buffer, one static pattern for uploads) so the server is the bottleneck.
//!
//! Tokens: client `i` has its control socket at `2i` and its data socket at
//! `2i + 1`. Clients belong to a `group` (e.g. "small" vs "large" in the mixed
//! scenario) and each group has its own `Stats`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::ftp::{parse_epsv, parse_pasv, Reply, ReplyParser};
use crate::tls::{Conn, TlsCfg};

/// Where and how clients connect.
#[derive(Clone, Debug)]
pub struct Cfg {
    pub server: SocketAddr,
    pub user: String,
    pub pass: String,
    /// Source addresses, used round-robin (bind before connect); empty: the kernel picks.
    pub sources: Vec<IpAddr>,
    /// Try EPSV first (falls back to PASV for good on a 5xx).
    pub epsv: bool,
    /// A client waiting longer than this for anything fails.
    pub stall: Duration,
    /// Explicit FTPS: AUTH TLS before USER, PBSZ 0 and PROT P after the
    /// login (not for `LoginLoop`), data connections under TLS.
    pub tls: Option<TlsCfg>,
}

/// What a client does once logged in.
#[derive(Clone, Debug)]
pub enum Op {
    /// Stay logged in, silent.
    Idle,
    /// QUIT, reconnect, log in again, until stopped.
    LoginLoop,
    /// Download a file, again and again.
    Retr(String),
    /// Upload `size` bytes to `name-<pid>-<engine>-<client>-<n>`; every upload is
    /// deleted (DELE) before the next one starts, the last after it.
    Stor { name: String, size: u64 },
    /// `LIST path` or `MLSD path`.
    List { verb: &'static str, path: String },
}

impl Op {
    fn transfers(&self) -> bool {
        matches!(self, Op::Retr(_) | Op::Stor { .. } | Op::List { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum St {
    Waiting,
    Greeting,
    /// AUTH TLS sent, waiting for 234.
    Auth,
    /// The control connection's TLS handshake.
    Handshake,
    User,
    Pass,
    Pbsz,
    Prot,
    Type,
    Ready,
    Pasv,
    Xfer,
    Dele,
    Quit,
    Done,
    Dead,
}

impl St {
    fn logging_in(self) -> bool {
        matches!(
            self,
            St::Waiting | St::Greeting | St::Auth | St::Handshake | St::User | St::Pass | St::Pbsz | St::Prot | St::Type
        )
    }
}

/// What one group of clients achieved.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub logins: u64,
    pub xfers: u64,
    pub bytes: u64,
    pub lines: u64,
    pub errors: u64,
    pub err_samples: Vec<String>,
    /// Transfer latencies (PASV sent → 226 and EOF), µs.
    pub lat_us: Vec<u32>,
    /// Login latencies (connect → 230), µs.
    pub login_lat_us: Vec<u32>,
    /// TLS data connections that resumed the control connection's session, and those that did not.
    pub data_resumed: u64,
    pub data_full: u64,
    /// TLS downloads that ended with a TCP EOF but no `close_notify`.
    pub unclean_eof: u64,
    /// What the first TLS handshake negotiated (`tls::describe`).
    pub tls: String,
}

impl Stats {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        if self.err_samples.len() < 5 {
            self.err_samples.push(msg);
        }
    }
}

struct Client {
    op: Op,
    group: usize,
    st: St,
    src: Option<IpAddr>,
    ctrl: Option<Conn>,
    data: Option<Conn>,
    /// This client's TLS config: its own session store when it opens data
    /// connections (they resume its control connection's session).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// An upload's end under TLS: 1 = `close_notify` queued, 2 = write side
    /// shut, reading the server's side to its end.
    stor_end: u8,
    /// Counted this data connection's handshake already.
    data_counted: bool,
    /// This download's TLS stream ended without close_notify (counted if
    /// the transfer then succeeds).
    data_unclean: bool,
    parser: ReplyParser,
    out: Vec<u8>,
    epsv: bool,
    /// Whether this client still counts against the ramp (first login).
    ramping: bool,
    left: Option<u64>,
    t_start: Instant,
    deadline: Option<Instant>,
    prelim: bool,
    final_ok: bool,
    data_done: bool,
    stor_left: u64,
    /// Uploads started / deleted so far (names `stor_name(.., seq)`).
    seq: u64,
    deleted: u64,
    gen: u64,
}

/// The load generator.
pub struct Engine {
    poll: Poll,
    events: Events,
    cfg: Cfg,
    clients: Vec<Client>,
    stats: Vec<Stats>,
    next_wait: usize,
    inflight: usize,
    next_src: usize,
    /// Clients logging in at once for their first login.
    pub ramp: usize,
    /// While set, transfer clients wait logged in until `go()`.
    pub gate: bool,
    /// Clients finishing an operation stop instead of starting the next.
    pub stop_new: bool,
    /// The longest the loop waits for an event before calling `run`'s
    /// `stop` again (lower it while `stop` also drives other work).
    pub poll_max: Duration,
    /// This engine's number in the process (upload names).
    run: u32,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    last_stall_check: Instant,
    /// Clients whose TLS data connection holds decrypted bytes or records
    /// that no socket event will announce (a read stopped at its budget):
    /// served again without waiting for the poll.
    again: Vec<usize>,
}

/// A non-blocking TCP socket bound to `src` (port chosen at connect time, so
/// many connections can share a source address), connecting to `dst`.
pub fn connect_from(src: Option<IpAddr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let fam = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2); the fd is owned by OwnedFd right away.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let setopt = |level, name| {
        // SAFETY: fd is valid; the option value is a c_int that outlives the call.
        unsafe {
            libc::setsockopt(fd, level, name, &one as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as u32)
        }
    };
    setopt(libc::IPPROTO_TCP, libc::TCP_NODELAY);
    if let Some(src) = src.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
        setopt(libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT);
        let (sa, len) = sockaddr(SocketAddr::new(src, 0));
        // SAFETY: sa is a properly initialised sockaddr of length len.
        if unsafe { libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (sa, len) = sockaddr(dst);
    // SAFETY: as above.
    if unsafe { libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(owned)))
}

/// SO_LINGER {on, 0}: close() sends RST and leaves no TIME_WAIT.
pub fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the fd is open for the call; the option value outlives it.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage; we fill the family's fields.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            (ss, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Read and discard up to `max` bytes of a TCP stream: `recv(MSG_TRUNC)`
/// drops them in the kernel without copying them out, so the load
/// generator's reading of large downloads costs a fraction of a `read`
/// and the client is not what limits the server (every server gets the
/// same reader; integrity is the integration tests' business, by sha256).
pub fn discard(s: &impl AsRawFd, max: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC a TCP socket writes nothing to the buffer;
    // a null pointer with a length is what tcp(7) documents for it.
    let n = unsafe { libc::recv(s.as_raw_fd(), std::ptr::null_mut(), max, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Bytes one `discard` call may drop.
const DISCARD_BYTES: usize = 1 << 20;
/// Bytes read from one data connection per readiness event, so that eight
/// large downloads cannot delay the small-file clients of the same loop.
const READ_BUDGET_BYTES: u64 = 1 << 20;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOTCONN)
}

impl Engine {
    pub fn new(cfg: Cfg) -> io::Result<Engine> {
        let mut wbuf = vec![0u8; 1 << 20];
        for (i, b) in wbuf.iter_mut().enumerate() {
            *b = (i * 131 % 251) as u8;
        }
        Ok(Engine {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            cfg,
            clients: Vec::new(),
            stats: Vec::new(),
            next_wait: 0,
            inflight: 0,
            next_src: 0,
            ramp: 256,
            gate: false,
            stop_new: false,
            poll_max: Duration::from_millis(50),
            run: ENGINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rbuf: vec![0u8; 256 << 10],
            wbuf,
            last_stall_check: Instant::now(),
            again: Vec::new(),
        })
    }

    /// Add a client; it connects when the ramp lets it. `left`: operations to
    /// do (None: until stopped).
    pub fn add(&mut self, op: Op, group: usize, left: Option<u64>) -> usize {
        while self.stats.len() <= group {
            self.stats.push(Stats::default());
        }
        let tls = self.cfg.tls.as_ref().map(|t| if op.transfers() { t.per_client() } else { t.fresh.clone() });
        self.clients.push(Client {
            tls,
            stor_end: 0,
            data_counted: false,
            data_unclean: false,
            epsv: self.cfg.epsv,
            op,
            group,
            st: St::Waiting,
            src: None,
            ctrl: None,
            data: None,
            parser: ReplyParser::default(),
            out: Vec::new(),
            ramping: true,
            left,
            t_start: Instant::now(),
            deadline: None,
            prelim: false,
            final_ok: false,
            data_done: false,
            stor_left: 0,
            seq: 0,
            deleted: 0,
            gen: 0,
        });
        self.clients.len() - 1
    }

    pub fn take_stats(&mut self, group: usize) -> Stats {
        std::mem::take(&mut self.stats[group])
    }

    pub fn peek_xfers(&self, group: usize) -> u64 {
        self.stats[group].xfers
    }

    pub fn peek_stats(&self, group: usize) -> Stats {
        self.stats[group].clone()
    }

    /// Start the gated transfer clients of one group only.
    pub fn go_group(&mut self, group: usize) {
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if c.group == group && c.st == St::Ready && c.op.transfers() {
                self.start_xfer(i);
            }
        }
    }

    /// Close every connection of a group with a reset (SO_LINGER 0), so no
    /// TIME_WAIT is left behind to slow the server's later port-0 binds.
    pub fn close_group(&mut self, group: usize) {
        for i in 0..self.clients.len() {
            if self.clients[i].group == group {
                let c = &self.clients[i];
                for s in [c.ctrl.as_ref(), c.data.as_ref()].into_iter().flatten() {
                    set_linger_zero(&s.sock);
                }
                self.retire(i, St::Done);
            }
        }
    }

    /// The age (µs since its PASV/EPSV) of each transfer of the group still
    /// in flight: at the end of a window these are lower bounds of latencies
    /// that a percentile over finished transfers alone would leave out.
    pub fn inflight_ages_us(&self, group: usize) -> Vec<u32> {
        self.clients
            .iter()
            .filter(|c| c.group == group && matches!(c.st, St::Pasv | St::Xfer))
            .map(|c| c.t_start.elapsed().as_micros().min(u32::MAX as u128) as u32)
            .collect()
    }

    /// The loop's registry, to wake it for another poll's events: register
    /// that poll's fd with a token at or above `2 * clients` (say
    /// `usize::MAX`); the loop ignores such tokens, and `run`'s `stop` is
    /// called after every wake-up.
    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    pub fn count(&self, group: usize, f: impl Fn(St) -> bool) -> usize {
        self.clients.iter().filter(|c| c.group == group && f(c.st)).count()
    }

    /// No client of the group is still connecting or logging in.
    pub fn settled(&self, group: usize) -> bool {
        self.count(group, St::logging_in) == 0
    }

    /// No client of the group is in the middle of an operation.
    pub fn quiet(&self, group: usize) -> bool {
        self.count(group, |s| !matches!(s, St::Ready | St::Done | St::Dead)) == 0
    }

    /// Let gated transfer clients start.
    pub fn go(&mut self) {
        self.gate = false;
        for i in 0..self.clients.len() {
            if self.clients[i].st == St::Ready && self.clients[i].op.transfers() {
                self.start_xfer(i);
            }
        }
    }

    /// Run the loop until `stop` says so or the deadline passes; returns
    /// whether `stop` ended it.
    pub fn run(&mut self, deadline: Instant, mut stop: impl FnMut(&Engine) -> bool) -> bool {
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let done = loop {
            self.start_waiting();
            if stop(self) {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            let timeout = if self.again.is_empty() { (deadline - now).min(self.poll_max) } else { Duration::ZERO };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("poll: {e}");
                    break false;
                }
            }
            for ev in events.iter() {
                let t = ev.token().0;
                let i = t / 2;
                if i >= self.clients.len() {
                    continue;
                }
                if t % 2 == 0 {
                    self.ctrl_ready(i);
                } else {
                    self.data_ready(i);
                }
            }
            for i in std::mem::take(&mut self.again) {
                self.data_ready(i);
            }
            if self.last_stall_check.elapsed() > Duration::from_millis(250) {
                self.check_stalls();
            }
        };
        self.events = events;
        done
    }

    fn start_waiting(&mut self) {
        while self.inflight < self.ramp && self.next_wait < self.clients.len() {
            let i = self.next_wait;
            self.next_wait += 1;
            if self.clients[i].st == St::Waiting {
                self.inflight += 1;
                self.open(i);
            }
        }
    }

    fn check_stalls(&mut self) {
        let now = Instant::now();
        self.last_stall_check = now;
        for i in 0..self.clients.len() {
            if let Some(d) = self.clients[i].deadline {
                if now > d {
                    let st = self.clients[i].st;
                    self.fail(i, format!("stalled in {st:?}"));
                }
            }
        }
    }

    fn open(&mut self, i: usize) {
        let src = if self.cfg.sources.is_empty() {
            None
        } else {
            self.next_src = (self.next_src + 1) % self.cfg.sources.len();
            Some(self.cfg.sources[self.next_src])
        };
        let now = Instant::now();
        let c = &mut self.clients[i];
        c.gen += 1;
        c.src = src;
        c.parser = ReplyParser::default();
        c.out.clear();
        c.t_start = now;
        c.deadline = Some(now + self.cfg.stall);
        c.st = St::Greeting;
        match connect_from(src, self.cfg.server) {
            Ok(mut s) => {
                if let Err(e) = self.poll.registry().register(&mut s, Token(2 * i), Interest::READABLE | Interest::WRITABLE) {
                    self.fail(i, format!("register: {e}"));
                    return;
                }
                self.clients[i].ctrl = Some(Conn::plain(s));
            }
            Err(e) => self.fail(i, format!("connect: {e}")),
        }
    }

    fn close_sockets(&mut self, i: usize) {
        let c = &mut self.clients[i];
        for mut s in [c.ctrl.take(), c.data.take()].into_iter().flatten() {
            let _ = self.poll.registry().deregister(&mut s.sock);
        }
    }

    /// Close a client's sockets for good and leave it in `st`.
    fn retire(&mut self, i: usize, st: St) {
        self.close_sockets(i);
        self.end_ramp(i);
        let c = &mut self.clients[i];
        c.st = st;
        c.deadline = None;
    }

    /// The client is no longer one of the logins in flight of the ramp.
    fn end_ramp(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.ramping {
            c.ramping = false;
            self.inflight -= 1;
        }
    }

    fn fail(&mut self, i: usize, msg: String) {
        self.retire(i, St::Dead);
        let g = self.clients[i].group;
        self.stats[g].error(msg);
    }

    fn send(&mut self, i: usize, cmd: &str) {
        let c = &mut self.clients[i];
        c.out.extend_from_slice(cmd.as_bytes());
        c.out.extend_from_slice(b"\r\n");
        c.deadline = Some(Instant::now() + self.cfg.stall);
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(s) = c.ctrl.as_mut() else { return };
        let mut err = None;
        while !c.out.is_empty() {
            match s.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if err.is_none() {
            err = s.flush_tls().err();
        }
        if let Some(e) = err {
            self.fail(i, format!("control write: {e}"));
        }
    }

    /// The control connection's handshake went as far as it could; once it
    /// is done, log in.
    fn ctrl_handshake(&mut self, i: usize) {
        let Some(s) = self.clients[i].ctrl.as_mut() else { return };
        match s.handshake() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                self.fail(i, format!("control TLS handshake: {e}"));
                return;
            }
        }
        let c = &self.clients[i];
        if self.stats[c.group].tls.is_empty() {
            if let Some(t) = c.ctrl.as_ref().and_then(|s| s.tls.as_ref()) {
                self.stats[c.group].tls = crate::tls::describe(t);
            }
        }
        self.clients[i].st = St::User;
        let u = self.cfg.user.clone();
        self.send(i, &format!("USER {u}"));
    }

    fn ctrl_ready(&mut self, i: usize) {
        if self.clients[i].st == St::Handshake {
            self.ctrl_handshake(i);
            if self.clients[i].st == St::Handshake {
                return;
            }
        }
        self.flush(i);
        let gen = self.clients[i].gen;
        let mut eof = false;
        loop {
            let c = &mut self.clients[i];
            let Some(s) = c.ctrl.as_mut() else { return };
            match s.read(&mut self.rbuf[..4096]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => c.parser.feed(&self.rbuf[..n]),
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if c.st == St::Quit {
                        eof = true;
                        break;
                    }
                    let msg = format!("control read in {:?}: {e}", c.st);
                    self.fail(i, msg);
                    return;
                }
            }
            if c.parser.pending() > 1 << 20 {
                self.fail(i, "reply line too long".into());
                return;
            }
        }
        while let Some(r) = self.clients[i].parser.next_reply() {
            self.on_reply(i, r);
            if self.clients[i].gen != gen || self.clients[i].ctrl.is_none() {
                return;
            }
        }
        if eof {
            if self.clients[i].st == St::Quit {
                self.after_quit(i);
            } else {
                let st = self.clients[i].st;
                self.fail(i, format!("control closed by server in {st:?}"));
            }
        }
    }

    fn on_reply(&mut self, i: usize, r: Reply) {
        let st = self.clients[i].st;
        let class = r.code / 100;
        match (st, r.code) {
            (St::Greeting, 220) if self.cfg.tls.is_some() => {
                self.clients[i].st = St::Auth;
                self.send(i, "AUTH TLS");
            }
            (St::Auth, 234) => {
                let c = &mut self.clients[i];
                let (Some(s), Some(cfg), Some(t)) = (c.ctrl.as_mut(), c.tls.clone(), self.cfg.tls.as_ref()) else { return };
                if let Err(e) = s.start_tls(cfg, t.name.clone()) {
                    self.fail(i, format!("start TLS: {e}"));
                    return;
                }
                c.st = St::Handshake;
                self.ctrl_handshake(i);
            }
            (St::Pbsz, 200) => {
                self.clients[i].st = St::Prot;
                self.send(i, "PROT P");
            }
            (St::Prot, 200) => self.protected(i),
            (St::Greeting, 220) => {
                self.clients[i].st = St::User;
                let u = self.cfg.user.clone();
                self.send(i, &format!("USER {u}"));
            }
            (St::Greeting, c) if c / 100 == 1 => {}
            (St::User, 331) => {
                self.clients[i].st = St::Pass;
                let p = self.cfg.pass.clone();
                self.send(i, &format!("PASS {p}"));
            }
            (St::User, 230) | (St::Pass, 230) | (St::Pass, 202) => self.logged_in(i),
            (St::Type, _) if class == 2 => self.ready(i),
            (St::Pasv, 227) | (St::Pasv, 229) => self.open_data(i, &r),
            (St::Pasv, _) if class == 5 && self.clients[i].epsv => {
                self.clients[i].epsv = false;
                self.send(i, "PASV");
            }
            (St::Xfer, _) if class == 1 => {
                self.clients[i].prelim = true;
                self.pump_stor(i);
            }
            (St::Xfer, _) if class == 2 => {
                self.clients[i].final_ok = true;
                self.check_done(i);
            }
            (St::Dele, _) => {
                self.clients[i].deleted += 1;
                self.start_xfer(i);
            }
            (St::Quit, _) => self.after_quit(i),
            _ => {
                let text: String = r.text.chars().take(80).collect();
                self.fail(i, format!("unexpected {} {text:?} in {st:?}", r.code));
            }
        }
    }

    fn logged_in(&mut self, i: usize) {
        let now = Instant::now();
        self.end_ramp(i);
        let c = &mut self.clients[i];
        let lat = (now - c.t_start).as_micros().min(u32::MAX as u128) as u32;
        let g = c.group;
        self.stats[g].logins += 1;
        self.stats[g].login_lat_us.push(lat);
        if self.cfg.tls.is_some() && !matches!(c.op, Op::LoginLoop) {
            c.st = St::Pbsz;
            self.send(i, "PBSZ 0");
            return;
        }
        self.protected(i);
    }

    /// Logged in (and under TLS, PBSZ 0 and PROT P done): idle, QUIT or TYPE I.
    fn protected(&mut self, i: usize) {
        let c = &mut self.clients[i];
        match c.op {
            Op::Idle => {
                c.st = St::Ready;
                c.deadline = None;
            }
            Op::LoginLoop => {
                c.st = St::Quit;
                self.send(i, "QUIT");
            }
            _ => {
                c.st = St::Type;
                self.send(i, "TYPE I");
            }
        }
    }

    fn after_quit(&mut self, i: usize) {
        self.close_sockets(i);
        let c = &mut self.clients[i];
        c.deadline = None;
        if let Some(l) = c.left.as_mut() {
            *l = l.saturating_sub(1);
        }
        if self.stop_new || c.left == Some(0) {
            c.st = St::Done;
        } else {
            self.open(i);
        }
    }

    fn ready(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.st = St::Ready;
        c.deadline = None;
        if !self.gate {
            self.start_xfer(i);
        }
    }

    fn start_xfer(&mut self, i: usize) {
        let c = &mut self.clients[i];
        // Each upload is deleted before the next one starts (and the last
        // after it), for every server alike: uploads do not pile up in the
        // page cache, so every STOR writes into pages freed a moment ago —
        // on this VM, pages freed long ago must be backed afresh by the
        // hypervisor, a cost of the machine that would swamp the server's.
        if let Op::Stor { name, .. } = &c.op {
            if c.deleted < c.seq {
                let cmd = format!("DELE {}", stor_name(name, self.run, i, c.deleted + 1));
                c.st = St::Dele;
                self.send(i, &cmd);
                return;
            }
        }
        if self.stop_new || c.left == Some(0) {
            c.st = St::Done;
            c.deadline = None;
            return;
        }
        c.t_start = Instant::now();
        c.st = St::Pasv;
        let cmd = if c.epsv { "EPSV" } else { "PASV" };
        self.send(i, cmd);
    }

    fn open_data(&mut self, i: usize, r: &Reply) {
        let server = self.cfg.server.ip();
        let addr = if r.code == 229 { parse_epsv(&r.text, server) } else { parse_pasv(&r.text, server) };
        let Some(addr) = addr else {
            self.fail(i, format!("cannot parse {} {:?}", r.code, r.text));
            return;
        };
        let src = self.clients[i].src;
        let mut s = match connect_from(src, addr) {
            Ok(s) => s,
            Err(e) => {
                self.fail(i, format!("data connect: {e}"));
                return;
            }
        };
        let c = &mut self.clients[i];
        let tls = c.tls.clone().filter(|_| self.cfg.tls.is_some());
        // Under TLS the handshake reads and writes whatever the transfer's direction.
        let interest = if tls.is_some() {
            Interest::READABLE | Interest::WRITABLE
        } else if matches!(c.op, Op::Stor { .. }) {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(e) = self.poll.registry().register(&mut s, Token(2 * i + 1), interest) {
            self.fail(i, format!("register data: {e}"));
            return;
        }
        let mut conn = Conn::plain(s);
        if let (Some(cfg), Some(t)) = (tls, self.cfg.tls.as_ref()) {
            // The ClientHello leaves as soon as the socket connects; it
            // resumes the control connection's session (same config, same name).
            if let Err(e) = conn.start_tls(cfg, t.name.clone()) {
                c.data = Some(conn);
                self.fail(i, format!("data TLS: {e}"));
                return;
            }
        }
        c.data = Some(conn);
        c.prelim = false;
        c.final_ok = false;
        c.data_done = false;
        c.stor_end = 0;
        c.data_counted = false;
        c.data_unclean = false;
        c.st = St::Xfer;
        let cmd = match &c.op {
            Op::Retr(p) => format!("RETR {p}"),
            Op::List { verb, path } => format!("{verb} {path}"),
            Op::Stor { name, size } => {
                c.stor_left = *size;
                c.seq += 1;
                format!("STOR {}", stor_name(name, self.run, i, c.seq))
            }
            _ => unreachable!("only transfer ops open data connections"),
        };
        self.send(i, &cmd);
    }

    /// Drive a TLS data connection's handshake: true once it is done (or
    /// without TLS). Counts whether it resumed the control session.
    fn data_handshake(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        let Some(s) = c.data.as_mut() else { return false };
        if !s.is_tls() {
            return true;
        }
        match s.handshake() {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                self.fail(i, format!("data TLS handshake: {e}"));
                return false;
            }
        }
        if !c.data_counted {
            c.data_counted = true;
            let g = c.group;
            if s.resumed() == Some(true) {
                self.stats[g].data_resumed += 1;
            } else {
                self.stats[g].data_full += 1;
            }
        }
        true
    }

    fn data_ready(&mut self, i: usize) {
        if !self.data_handshake(i) {
            return;
        }
        if matches!(self.clients[i].op, Op::Stor { .. }) {
            self.pump_stor(i);
            return;
        }
        let is_list = matches!(self.clients[i].op, Op::List { .. });
        let mut got = 0u64;
        let mut lines = 0u64;
        let mut outcome: Option<Result<(), String>> = None;
        let tls;
        {
            let c = &mut self.clients[i];
            let Some(s) = c.data.as_mut() else { return };
            tls = s.is_tls();
            loop {
                // Plain downloads are dropped in the kernel (MSG_TRUNC); TLS
                // ones must be decrypted, into the one reusable buffer.
                let r = if is_list || tls { s.read(&mut self.rbuf) } else { discard(&s.sock, DISCARD_BYTES) };
                match r {
                    Ok(0) => {
                        outcome = Some(Ok(()));
                        break;
                    }
                    Ok(n) => {
                        got += n as u64;
                        if is_list {
                            lines += self.rbuf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                        }
                        // Bounded work per event so one stream cannot starve others.
                        if got >= READ_BUDGET_BYTES {
                            break;
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        outcome = Some(Err(format!("data read: {e}")));
                        break;
                    }
                }
            }
        }
        let g = self.clients[i].group;
        self.stats[g].bytes += got;
        self.stats[g].lines += lines;
        if got > 0 {
            self.clients[i].deadline = Some(Instant::now() + self.cfg.stall);
        }
        match outcome {
            // rustls may hold records no socket event will announce: come back at once.
            None if got >= READ_BUDGET_BYTES && tls => self.again.push(i),
            None if got >= READ_BUDGET_BYTES => {
                // Edge-triggered: more may be waiting; come back via a re-arm.
                if let Some(s) = self.clients[i].data.as_mut() {
                    let _ = self.poll.registry().reregister(&mut s.sock, Token(2 * i + 1), Interest::READABLE);
                }
            }
            None => {}
            Some(Ok(())) => {
                if let Some(mut s) = self.clients[i].data.take() {
                    if s.unclean_eof {
                        self.clients[i].data_unclean = true;
                    } else if s.is_tls() {
                        // Answer the server's close_notify, as curl does (best effort).
                        let _ = s.close_notify();
                    }
                    let _ = self.poll.registry().deregister(&mut s.sock);
                }
                self.clients[i].data_done = true;
                self.check_done(i);
            }
            Some(Err(m)) => self.fail(i, m),
        }
    }

    fn pump_stor(&mut self, i: usize) {
        let c = &self.clients[i];
        if !c.prelim || c.data_done || !matches!(c.op, Op::Stor { .. }) || c.data.is_none() {
            return;
        }
        if !self.data_handshake(i) {
            return;
        }
        let c = &mut self.clients[i];
        let Some(s) = c.data.as_mut() else { return };
        let tls = s.is_tls();
        let mut sent = 0u64;
        let mut err = None;
        while c.stor_left > 0 {
            let n = (c.stor_left as usize).min(self.wbuf.len());
            match s.write(&self.wbuf[..n]) {
                Ok(w) => {
                    c.stor_left -= w as u64;
                    sent += w as u64;
                    if sent >= 4 << 20 {
                        // Re-arm so edge-triggered readiness comes back.
                        let interest = if tls { Interest::READABLE | Interest::WRITABLE } else { Interest::WRITABLE };
                        let _ = self.poll.registry().reregister(&mut s.sock, Token(2 * i + 1), interest);
                        break;
                    }
                }
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(format!("data write: {e}"));
                    break;
                }
            }
        }
        let mut done = c.stor_left == 0 && err.is_none();
        if done && tls {
            // The end of an upload under TLS: close_notify (without it the
            // upload is a truncation), then FIN once rustls has written it
            // all, then the server's side read to its end through rustls:
            // the session tickets an OpenSSL server sends on a data
            // connection are what the next one resumes, and bytes left
            // unread would turn our close into a reset.
            if c.stor_end == 0 {
                if let Err(e) = s.close_notify() {
                    err = Some(format!("data close_notify: {e}"));
                }
                c.stor_end = 1;
            }
            if c.stor_end == 1 && err.is_none() {
                if let Err(e) = s.flush_tls() {
                    err = Some(format!("data write: {e}"));
                } else if !s.tls_pending() {
                    s.shutdown_write();
                    c.stor_end = 2;
                }
            }
            done = false;
            if c.stor_end == 2 && err.is_none() {
                loop {
                    match s.read(&mut self.rbuf) {
                        Ok(0) => {
                            done = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // A reset after the server had it all: the 226 tells.
                        Err(_) => {
                            done = true;
                            break;
                        }
                    }
                }
            }
        }
        if sent > 0 {
            c.deadline = Some(Instant::now() + self.cfg.stall);
        }
        let g = c.group;
        self.stats[g].bytes += sent;
        if let Some(m) = err {
            self.fail(i, m);
        } else if done {
            if let Some(mut s) = self.clients[i].data.take() {
                if !tls {
                    s.shutdown_write();
                }
                let _ = self.poll.registry().deregister(&mut s.sock);
            }
            self.clients[i].data_done = true;
            self.check_done(i);
        }
    }

    fn check_done(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if !(c.final_ok && c.data_done) {
            return;
        }
        let lat = c.t_start.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let g = c.group;
        self.stats[g].xfers += 1;
        self.stats[g].unclean_eof += c.data_unclean as u64;
        self.stats[g].lat_us.push(lat);
        if let Some(l) = c.left.as_mut() {
            *l = l.saturating_sub(1);
        }
        self.start_xfer(i);
    }
}

/// `base-<pid>-<engine>-<client>-<n>`: unique across the engines of one
/// process (a warm-up and the measured run) and across processes.
fn stor_name(base: &str, run: u32, i: usize, seq: u64) -> String {
    format!("{base}-{}-{run}-{i}-{seq}", std::process::id())
}

/// Engines made so far in this process (for `stor_name`).
static ENGINES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// p-th percentile (0..=100) of µs samples, in ms.
pub fn percentile_ms(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn discard_drops_the_bytes_and_sees_the_end() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (r, _) = l.accept().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&vec![7u8; 3_000_000]).unwrap());
        let mut total = 0;
        loop {
            let n = match discard(&r, 64 << 10) {
                Ok(n) => n,
                Err(e) if would_block(&e) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(e) => panic!("discard: {e}"),
            };
            assert!(n <= 64 << 10);
            if n == 0 {
                break;
            }
            total += n;
        }
        writer.join().unwrap();
        assert_eq!(total, 3_000_000);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&mut v, 50.0), 51.0);
        assert_eq!(percentile_ms(&mut v, 99.0), 99.0);
        assert!(percentile_ms(&mut [], 50.0).is_nan());
    }
}
