//! The hostile clients of the `hostile` scenario (issue 9), in their own
//! `mio::Poll` that the scenario drives from the honest engine's loop (its
//! fd is registered in the engine's poll, so flood events wake the loop).
//!
//! - *Flooders* log in, wait for `start()`, then write one command line over
//!   and over without ever reading: as fast as the server takes the bytes,
//!   until their socket would block (they wait for it to drain), their byte
//!   cap, or `close_all()`. A server that keeps reading while its replies
//!   pile up grows; one that stops reading holds the flooder back with the
//!   kernel's windows.
//! - *PASS floods* are started on a schedule spread over the window: connect,
//!   wait for the greeting, `USER name`, wait for the 3xx, `PASS <wrong>`, and
//!   reset the connection at once (SO_LINGER 0), never waiting for the answer.
//!
//! Every socket is closed with a reset by `close_all()` (or sooner).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::engine::{connect_from, set_linger_zero};
use crate::ftp::ReplyParser;

/// Bytes a flooder writes per readiness event (then it is re-armed, so the
/// flooders take turns).
const WRITE_BUDGET: usize = 64 << 10;
/// The longest one `step()` runs, so that the honest clients of the same
/// loop wait at most about this long for the flood.
const STEP_BUDGET: Duration = Duration::from_millis(1);

/// The bytes a flooder sends: `line` + CRLF repeated to at least `min_len`
/// bytes (whole lines only, so writing it cyclically keeps the framing).
pub fn flood_chunk(line: &str, min_len: usize) -> Vec<u8> {
    let one = format!("{line}\r\n");
    let n = min_len.div_ceil(one.len()).max(1);
    one.repeat(n).into_bytes()
}

/// How many of `total` events spread evenly over `window` are due `elapsed`
/// after its start (the first one at once, the last one before the end).
pub fn due(elapsed: Duration, window: Duration, total: usize) -> usize {
    if window.is_zero() {
        return total;
    }
    let frac = elapsed.as_secs_f64() / window.as_secs_f64();
    ((frac * total as f64).floor() as usize + 1).min(total)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FSt {
    Greeting,
    User,
    Pass,
    /// Logged in, waiting for `start()`.
    Gated,
    Flood,
    Done,
    Dead,
}

struct Flooder {
    sock: Option<TcpStream>,
    st: FSt,
    parser: ReplyParser,
    /// Index into `Flood::chunks`.
    kind: usize,
    pos: usize,
    bytes: u64,
    /// The last write would have blocked and no writable event came since.
    blocked: bool,
    /// In `Flood::ready` (used its turn's budget without blocking).
    queued: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PSt {
    Greeting,
    User,
}

struct PassFlood {
    sock: TcpStream,
    st: PSt,
    parser: ReplyParser,
    deadline: Instant,
}

/// What the flood did (for the report).
#[derive(Debug, Default, Clone)]
pub struct FloodStats {
    pub flooders: usize,
    pub logged_in: usize,
    pub login_failed: usize,
    pub first_error: Option<String>,
    /// Command bytes the flooders wrote, per kind.
    pub bytes: Vec<u64>,
    /// Flooders whose socket would block when they were closed.
    pub blocked_at_end: usize,
    /// Flooders that reached their byte cap.
    pub capped: usize,
    pub pass_started: usize,
    /// PASS written, then reset.
    pub pass_sent: usize,
    /// No greeting or no 3xx to USER within the stall time.
    pub pass_stalled: usize,
    /// Refused, closed by the server, or a connect error.
    pub pass_refused: usize,
}

pub struct Flood {
    poll: Poll,
    events: Events,
    server: SocketAddr,
    user: String,
    pass: String,
    sources: Vec<IpAddr>,
    next_src: usize,
    chunks: Vec<Vec<u8>>,
    flooders: Vec<Flooder>,
    /// Flooders that used their turn without blocking: written to again
    /// without waiting for an event (epoll would not report the socket
    /// writable again while less than a third of its buffer is free, though
    /// it still takes bytes).
    ready: std::collections::VecDeque<usize>,
    /// Flooders connected so far, and those of them still logging in (at
    /// most `ramp`: a burst of connections past a server's listen backlog
    /// (vsftpd's is 32) would wait for SYN retransmissions instead).
    next: usize,
    in_login: usize,
    ramp: usize,
    flood_cap: u64,
    /// PASS floods: how many in all, over which window, from when.
    pass_total: usize,
    /// `USER name\r\n` and `PASS <wrong>\r\n` of the PASS floods.
    pass_user: Vec<u8>,
    pass_line: Vec<u8>,
    pass_window: Duration,
    pass_t0: Option<Instant>,
    pass_floods: Vec<Option<PassFlood>>,
    stall: Duration,
    rbuf: Vec<u8>,
    pub stats: FloodStats,
}

/// Tokens: flooder `i` is `i`; PASS flood `j` is `PASS_BASE + j`.
const PASS_BASE: usize = 1 << 30;

pub struct FloodCfg {
    pub server: SocketAddr,
    pub user: String,
    pub pass: String,
    pub sources: Vec<IpAddr>,
    /// One command line per kind; flooders are spread evenly over the kinds.
    pub lines: Vec<String>,
    pub flooders: usize,
    /// Flooders logging in at once.
    pub ramp: usize,
    /// Bytes one flooder writes at most.
    pub flood_cap: u64,
    pub pass_total: usize,
    pub pass_user: String,
    pub pass_len: usize,
    pub stall: Duration,
}

impl Flood {
    pub fn new(c: FloodCfg) -> io::Result<Flood> {
        let chunks: Vec<Vec<u8>> = c.lines.iter().map(|l| flood_chunk(l, 64 << 10)).collect();
        let wrong = "x".repeat(c.pass_len.max(1));
        let pass_line = format!("PASS {wrong}\r\n").into_bytes();
        let stats = FloodStats { flooders: c.flooders, bytes: vec![0; chunks.len()], ..Default::default() };
        let flooders = (0..c.flooders)
            .map(|i| Flooder {
                sock: None,
                st: FSt::Greeting,
                parser: ReplyParser::default(),
                kind: i % chunks.len().max(1),
                pos: 0,
                bytes: 0,
                blocked: false,
                queued: false,
            })
            .collect();
        Ok(Flood {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            server: c.server,
            user: c.user,
            pass: c.pass,
            sources: c.sources,
            next_src: 0,
            chunks,
            flooders,
            ready: Default::default(),
            next: 0,
            in_login: 0,
            ramp: c.ramp.max(1),
            flood_cap: c.flood_cap,
            pass_total: c.pass_total,
            pass_user: format!("USER {}\r\n", c.pass_user).into_bytes(),
            pass_line,
            pass_window: Duration::ZERO,
            pass_t0: None,
            pass_floods: Vec::new(),
            stall: c.stall,
            rbuf: vec![0u8; 4096],
            stats,
        })
    }

    /// The fd of this flood's poll, to register in another poll.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.poll.as_raw_fd()
    }

    fn src(&mut self) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        self.next_src = (self.next_src + 1) % self.sources.len();
        Some(self.sources[self.next_src])
    }

    /// Connect the flooders, `ramp` at a time (they log in and wait for
    /// `start()`); `step()` connects the rest as logins finish.
    pub fn connect(&mut self) {
        while self.in_login < self.ramp && self.next < self.flooders.len() {
            let i = self.next;
            self.next += 1;
            self.in_login += 1;
            let src = self.src();
            match connect_from(src, self.server) {
                Ok(mut s) => {
                    if let Err(e) = self.poll.registry().register(&mut s, Token(i), Interest::READABLE) {
                        self.flooder_failed(i, format!("register: {e}"));
                        continue;
                    }
                    self.flooders[i].sock = Some(s);
                }
                Err(e) => self.flooder_failed(i, format!("connect: {e}")),
            }
        }
    }

    /// No flooder is still logging in.
    pub fn settled(&self) -> bool {
        self.flooders.iter().all(|f| !matches!(f.st, FSt::Greeting | FSt::User | FSt::Pass))
    }

    /// Give up on flooders that did not log in.
    pub fn drop_unsettled(&mut self) {
        self.next = self.flooders.len();
        for i in 0..self.flooders.len() {
            if matches!(self.flooders[i].st, FSt::Greeting | FSt::User | FSt::Pass) {
                let st = self.flooders[i].st;
                self.flooder_failed(i, format!("not logged in in time ({st:?})"));
            }
        }
    }

    /// Let the logged-in flooders write, and start the PASS floods' schedule
    /// over `window`.
    pub fn start(&mut self, window: Duration) {
        for i in 0..self.flooders.len() {
            if self.flooders[i].st != FSt::Gated {
                continue;
            }
            self.flooders[i].st = FSt::Flood;
            if let Some(s) = self.flooders[i].sock.as_mut() {
                // Never read again: writable only.
                let _ = self.poll.registry().reregister(s, Token(i), Interest::WRITABLE);
            }
        }
        self.pass_window = window;
        self.pass_t0 = Some(Instant::now());
    }

    /// Handle what is ready now, for at most `STEP_BUDGET` (never blocks);
    /// start due PASS floods. The flooders that did not block are re-armed
    /// and ready again at once, so call it again soon (the engine's
    /// `poll_max`): a flooder writes until its socket would block.
    pub fn step(&mut self) {
        self.connect();
        self.start_due_pass();
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let t0 = Instant::now();
        while t0.elapsed() < STEP_BUDGET {
            if self.poll.poll(&mut events, Some(Duration::ZERO)).is_err() {
                break;
            }
            let idle = events.is_empty() && self.ready.is_empty();
            for ev in events.iter() {
                let t = ev.token().0;
                if t >= PASS_BASE {
                    self.pass_ready(t - PASS_BASE);
                } else if t < self.flooders.len() {
                    self.flooder_ready(t);
                }
            }
            // One more turn for each flooder that did not block.
            for _ in 0..self.ready.len() {
                let Some(i) = self.ready.pop_front() else { break };
                self.flooders[i].queued = false;
                if self.flooders[i].st == FSt::Flood {
                    self.flooder_write(i);
                }
            }
            if idle {
                break;
            }
        }
        self.events = events;
        self.check_pass_stalls();
    }

    fn flooder_failed(&mut self, i: usize, msg: String) {
        let f = &mut self.flooders[i];
        if let Some(mut s) = f.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
            set_linger_zero(&s);
        }
        if matches!(f.st, FSt::Greeting | FSt::User | FSt::Pass) {
            self.stats.login_failed += 1;
            self.in_login = self.in_login.saturating_sub(1);
        }
        f.st = FSt::Dead;
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some(msg);
        }
    }

    fn send_ctrl(&mut self, i: usize, line: &str) {
        let Some(s) = self.flooders[i].sock.as_mut() else { return };
        // A login command is a few bytes into an empty socket buffer.
        if let Err(e) = s.write_all(format!("{line}\r\n").as_bytes()) {
            self.flooder_failed(i, format!("login write: {e}"));
        }
    }

    fn flooder_ready(&mut self, i: usize) {
        match self.flooders[i].st {
            FSt::Greeting | FSt::User | FSt::Pass => self.flooder_login(i),
            FSt::Flood => self.flooder_write(i),
            _ => {}
        }
    }

    fn flooder_login(&mut self, i: usize) {
        let mut eof = false;
        loop {
            let f = &mut self.flooders[i];
            let Some(s) = f.sock.as_mut() else { return };
            match s.read(&mut self.rbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => f.parser.feed(&self.rbuf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.flooder_failed(i, format!("login read: {e}"));
                    return;
                }
            }
        }
        while let Some(r) = self.flooders[i].parser.next_reply() {
            let st = self.flooders[i].st;
            match (st, r.code) {
                (FSt::Greeting, 220) => {
                    self.flooders[i].st = FSt::User;
                    let u = self.user.clone();
                    self.send_ctrl(i, &format!("USER {u}"));
                }
                (FSt::Greeting, c) if c / 100 == 1 => {}
                (FSt::User, 331) => {
                    self.flooders[i].st = FSt::Pass;
                    let p = self.pass.clone();
                    self.send_ctrl(i, &format!("PASS {p}"));
                }
                (FSt::User, 230) | (FSt::Pass, 230) | (FSt::Pass, 202) => {
                    self.flooders[i].st = FSt::Gated;
                    self.stats.logged_in += 1;
                    self.in_login -= 1;
                    return;
                }
                (st, code) => {
                    let text: String = r.text.chars().take(60).collect();
                    self.flooder_failed(i, format!("flooder login: {code} {text:?} in {st:?}"));
                    return;
                }
            }
        }
        if eof {
            let st = self.flooders[i].st;
            self.flooder_failed(i, format!("flooder: closed by the server in {st:?}"));
        }
    }

    fn flooder_write(&mut self, i: usize) {
        let cap = self.flood_cap;
        let f = &mut self.flooders[i];
        let Some(s) = f.sock.as_mut() else { return };
        let chunk = &self.chunks[f.kind];
        let mut sent = 0usize;
        f.blocked = false;
        let mut err = None;
        while sent < WRITE_BUDGET && f.bytes < cap {
            let room = ((cap - f.bytes) as usize).min(chunk.len() - f.pos).min(WRITE_BUDGET - sent);
            match s.write(&chunk[f.pos..f.pos + room]) {
                Ok(n) => {
                    sent += n;
                    f.bytes += n as u64;
                    f.pos = (f.pos + n) % chunk.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    f.blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        self.stats.bytes[f.kind] += sent as u64;
        if let Some(e) = err {
            // The server closed on the flooder (a 421, say): that is its right.
            let st = f.st;
            f.st = FSt::Done;
            if let Some(mut s) = f.sock.take() {
                let _ = self.poll.registry().deregister(&mut s);
                set_linger_zero(&s);
            }
            if self.stats.first_error.is_none() {
                self.stats.first_error = Some(format!("flooder write in {st:?}: {e}"));
            }
            return;
        }
        if f.bytes >= cap {
            // Its cap: stays connected, silent, until close_all().
            self.stats.capped += 1;
            f.st = FSt::Done;
            return;
        }
        if !f.blocked && !f.queued {
            // Budget used up with room left: another turn soon.
            f.queued = true;
            self.ready.push_back(i);
        }
    }

    fn start_due_pass(&mut self) {
        let Some(t0) = self.pass_t0 else { return };
        let want = due(t0.elapsed(), self.pass_window, self.pass_total);
        while self.stats.pass_started < want {
            let j = self.pass_floods.len();
            self.stats.pass_started += 1;
            let src = self.src();
            let mut s = match connect_from(src, self.server) {
                Ok(s) => s,
                Err(_) => {
                    self.stats.pass_refused += 1;
                    self.pass_floods.push(None);
                    continue;
                }
            };
            if self.poll.registry().register(&mut s, Token(PASS_BASE + j), Interest::READABLE).is_err() {
                set_linger_zero(&s);
                self.stats.pass_refused += 1;
                self.pass_floods.push(None);
                continue;
            }
            let deadline = Instant::now() + self.stall;
            self.pass_floods.push(Some(PassFlood { sock: s, st: PSt::Greeting, parser: ReplyParser::default(), deadline }));
        }
    }

    /// Close PASS flood `j` with a reset.
    fn pass_close(&mut self, j: usize) {
        if let Some(mut p) = self.pass_floods[j].take() {
            let _ = self.poll.registry().deregister(&mut p.sock);
            set_linger_zero(&p.sock);
        }
    }

    fn pass_ready(&mut self, j: usize) {
        let Some(p) = self.pass_floods.get_mut(j).and_then(Option::as_mut) else { return };
        let mut eof = false;
        loop {
            match p.sock.read(&mut self.rbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => p.parser.feed(&self.rbuf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        while let Some(r) = p.parser.next_reply() {
            match (p.st, r.code / 100) {
                (PSt::Greeting, 2) => {
                    p.st = PSt::User;
                    if p.sock.write_all(&self.pass_user).is_err() {
                        eof = true;
                        break;
                    }
                }
                (PSt::Greeting, 1) => {}
                (PSt::User, 3) => {
                    let ok = p.sock.write_all(&self.pass_line).is_ok();
                    // Reset at once: never wait for the verdict.
                    self.pass_close(j);
                    if ok {
                        self.stats.pass_sent += 1;
                    } else {
                        self.stats.pass_refused += 1;
                    }
                    return;
                }
                _ => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            self.pass_close(j);
            self.stats.pass_refused += 1;
        }
    }

    fn check_pass_stalls(&mut self) {
        let now = Instant::now();
        for j in 0..self.pass_floods.len() {
            if matches!(&self.pass_floods[j], Some(p) if now > p.deadline) {
                self.pass_close(j);
                self.stats.pass_stalled += 1;
            }
        }
    }

    /// Stop: close every socket with a reset; PASS floods not yet started are
    /// not started. Returns the final figures.
    pub fn close_all(&mut self) -> FloodStats {
        for i in 0..self.flooders.len() {
            let f = &mut self.flooders[i];
            if f.st == FSt::Flood && f.blocked {
                self.stats.blocked_at_end += 1;
            }
            if let Some(mut s) = f.sock.take() {
                let _ = self.poll.registry().deregister(&mut s);
                set_linger_zero(&s);
            }
            if f.st != FSt::Dead {
                f.st = FSt::Done;
            }
        }
        for j in 0..self.pass_floods.len() {
            if self.pass_floods[j].is_some() {
                self.pass_close(j);
                self.stats.pass_stalled += 1;
            }
        }
        self.pass_t0 = None;
        self.stats.clone()
    }

    /// Sockets still open (for the "every socket closed" check).
    pub fn open_sockets(&self) -> usize {
        self.flooders.iter().filter(|f| f.sock.is_some()).count() + self.pass_floods.iter().filter(|p| p.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_lines() {
        let c = flood_chunk("STAT hostile-dir", 100);
        assert!(c.len() >= 100);
        assert_eq!(c.len() % "STAT hostile-dir\r\n".len(), 0);
        assert!(c.starts_with(b"STAT hostile-dir\r\nSTAT"));
        assert!(c.ends_with(b"\r\n"));
        assert_eq!(flood_chunk("HELP", 0), b"HELP\r\n");
    }

    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn cfg(server: SocketAddr, flooders: usize, pass_total: usize) -> FloodCfg {
        FloodCfg {
            server,
            user: "u".into(),
            pass: "p".into(),
            sources: vec!["127.0.0.2".parse().unwrap()],
            lines: vec!["HELP".into()],
            flooders,
            ramp: 4,
            flood_cap: 256 << 20,
            pass_total,
            pass_user: "victim".into(),
            pass_len: 3000,
            stall: Duration::from_secs(5),
        }
    }

    fn step_until(f: &mut Flood, secs: u64, done: impl Fn(&Flood) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while !done(f) && Instant::now() < end {
            f.step();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_flooder_logs_in_then_writes_until_its_socket_would_block() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"220 hi\r\n").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "USER u\r\n");
            w.write_all(b"230 in\r\n").unwrap();
            // Never read again, until the test is over.
            let _ = rx.recv_timeout(Duration::from_secs(30));
        });
        let mut f = Flood::new(cfg(addr, 1, 0)).unwrap();
        f.connect();
        step_until(&mut f, 10, Flood::settled);
        assert_eq!(f.stats.logged_in, 1);
        f.start(Duration::from_secs(1));
        // Until it blocks and stays blocked (no byte more for 200 steps).
        let mut last = 0;
        let mut still = 0;
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end && still < 200 {
            f.step();
            if f.flooders[0].blocked && f.flooders[0].bytes == last {
                still += 1;
            } else {
                still = 0;
                last = f.flooders[0].bytes;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let st = f.close_all();
        assert_eq!(st.blocked_at_end, 1, "wrote {} bytes", st.bytes[0]);
        assert!(st.bytes[0] > 0 && st.bytes[0] < 256 << 20);
        assert_eq!(f.open_sockets(), 0);
        tx.send(()).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn a_pass_flood_sends_user_and_pass_then_resets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, peer) = l.accept().unwrap();
            assert_eq!(peer.ip().to_string(), "127.0.0.2");
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"220 hi\r\n").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "USER victim\r\n");
            w.write_all(b"331 pass?\r\n").unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line.len(), "PASS \r\n".len() + 3000);
            // Then a reset, never a wait for the verdict.
            let mut rest = Vec::new();
            let e = r.read_to_end(&mut rest);
            assert!(rest.is_empty());
            assert_eq!(e.map_err(|e| e.kind()).err(), Some(io::ErrorKind::ConnectionReset));
        });
        let mut f = Flood::new(cfg(addr, 0, 1)).unwrap();
        f.start(Duration::ZERO);
        step_until(&mut f, 10, |f| f.stats.pass_sent + f.stats.pass_refused + f.stats.pass_stalled > 0);
        let st = f.close_all();
        assert_eq!((st.pass_started, st.pass_sent, st.pass_stalled, st.pass_refused), (1, 1, 0, 0));
        assert_eq!(f.open_sockets(), 0);
        server.join().unwrap();
    }

    #[test]
    fn pass_floods_are_spread_over_the_window() {
        let w = Duration::from_secs(10);
        assert_eq!(due(Duration::ZERO, w, 1000), 1);
        assert_eq!(due(Duration::from_secs(5), w, 1000), 501);
        assert_eq!(due(Duration::from_millis(9_999), w, 1000), 1000);
        assert_eq!(due(Duration::from_secs(30), w, 1000), 1000);
        assert_eq!(due(Duration::from_secs(1), Duration::ZERO, 7), 7);
        assert_eq!(due(Duration::from_secs(1), w, 0), 0);
    }
}
