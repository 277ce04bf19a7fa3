//! Hostile clients beside an honest one (issue 9; STYLE.md "Testing a
//! reactor", points 5 and 8).
//!
//! Each test runs the built binary as a child process, so that its memory
//! can be read from `/proc/PID/status`, and sets a hostile client on it: one
//! that pipelines without reading, floods, or resets. While the flood runs,
//! an honest client from another loopback address keeps working, and the
//! test asserts:
//!
//! - each of its round trips (USER, NOOP, PWD, a small RETR checked by
//!   sha256) answers within [`ROUND_TRIP_BOUND`], connect + greeting
//!   within [`CONNECT_BOUND`], a login (PASS) within [`LOGIN_BOUND`];
//! - the server's peak RSS, sampled every 100 ms during and after the flood,
//!   stays under [`RSS_BOUND_KIB`];
//! - the server is alive and serving afterwards.
//!
//! Floods are fixed in size and stop by themselves (a byte or connection
//! count, a time limit, and a stall limit for when the server stops
//! reading); every socket is closed at the end. The tests take a lock and
//! run one at a time: two floods side by side on a shared 2-core machine
//! would only measure each other.
//!
//! The time bounds are liveness bounds, not speed measurements (STYLE.md
//! point 9 keeps those in `bench/`): loose on purpose (seconds), so they
//! hold on a noisy shared machine and in this unoptimised debug build, yet
//! far below what an unbounded server does. Failures are collected and
//! reported together, so one run shows every bound a change breaks.
//!
//! What the server of issue 9 (before its fix) did here, debug build:
//!
//! | test | unbounded server |
//! |---|---|
//! | 300 `STAT huge` never read | no greeting for new clients within 4 s |
//! | FEAT / HELP flood never read | RSS 140-185 MiB |
//! | STAT flood during a transfer | RSS 345-376 MiB |
//! | 64 KiB of NOOP + STAT during a transfer | every client stalled > 4 s |
//! | 3,000 resets with an 8,100-byte PASS | honest login 3.9 s, then none within 5 s |
//! | 300 wrong PASS from one address | honest login > 5 s; no 421 |
//! | 25 stalled LISTs of 100,000 names | RSS 261 MiB |
//! | SITE CHMOD | 6777, 4755, and the root itself: all 200 |

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::process::Server;
use common::{parse_pasv, sha256, Ctl, Reply};

/// The server's RSS must stay under this (in KiB), during and after a flood.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// One honest round trip (connect + greeting, USER, NOOP, PWD, a small RETR).
const ROUND_TRIP_BOUND: Duration = Duration::from_secs(1);
/// One honest login (PASS → 230), which may wait for the helper thread.
const LOGIN_BOUND: Duration = Duration::from_secs(2);
/// Connect + greeting: one round trip, plus one SYN retransmission (the
/// kernel's initial 1 s timeout) when a connection flood fills the listen
/// backlog for an instant — a discrete 1 s step that a 1 s bound would
/// turn into a coin toss on a shared machine.
const CONNECT_BOUND: Duration = Duration::from_secs(2);
/// How much longer than its bound a reply is waited for before it is
/// reported as missing (so a stalled server fails the test in seconds).
const GRACE: Duration = Duration::from_secs(3);
/// How long a hostile client keeps flooding at most. Long because the
/// test binary is a debug build: unoptimised, it answers a FEAT flood at
/// ~15 MB/s of replies, so the unbounded server needs seconds to pass the
/// RSS bound. Against a bounded server the flood ends [`STALL`] after it
/// stops reading, within seconds.
const FLOOD_TIME: Duration = Duration::from_secs(8);
/// How long a hostile client holds its unread connection after flooding,
/// while honest sessions go on (an unbounded server still works through
/// what the kernel buffered meanwhile).
const HOLD: Duration = Duration::from_secs(3);
/// A flood writer gives up once the server has not read for this long (it
/// stopped reading). 2 s, not 1: an unbounded debug build working through a
/// HELP flood reads so slowly that the writer can wait a second for window.
const STALL: Duration = Duration::from_secs(2);
/// Where honest clients connect from; hostile ones use 127.0.0.1 or 127.0.0.10 and up.
const HONEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The small file honest clients download.
const SMALL: &str = "small.bin";
/// Entries in the huge directory (issue 9 measured with 100,000).
const HUGE_ENTRIES: usize = 100_000;

// ---------------------------------------------------------------------------
// Helpers

/// One flood at a time (see the module doc).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a test found wrong, reported together at the end.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn add(&mut self, what: String) {
        self.0.push(what);
    }

    #[track_caller]
    fn assert_none(self, claim: &str) {
        assert!(self.0.is_empty(), "{claim}: {} problem(s)\n  - {}", self.0.len(), self.0.join("\n  - "));
    }
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Samples a process's RSS every 100 ms in a background thread and keeps
/// the peak.
struct RssWatch {
    pid: u32,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssWatch { pid, peak, stop, thread: Some(thread) }
    }

    /// The peak so far, including a sample taken now.
    fn peak_kib(&self) -> u64 {
        if let Some(kib) = rss_kib(self.pid) {
            self.peak.fetch_max(kib, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }

    /// Adds a problem if the peak is over the bound.
    fn check(&self, problems: &mut Problems, when: &str) {
        let peak = self.peak_kib();
        problems.check(peak < RSS_BOUND_KIB, || {
            format!("server RSS peaked at {} MiB {when} (bound {} MiB)", peak / 1024, RSS_BOUND_KIB / 1024)
        });
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    }
}

/// A TCP connection from `src` (any 127.0.0.0/8 address; the port is chosen
/// at connect time) to `dst`, with a 5 s connect timeout and read/write
/// timeouts of 10 s. std cannot bind before connecting; `libc` is a
/// dependency of the crate, so this does it by hand.
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<TcpStream> {
    connect_from_with(src, dst, None)
}

/// [`connect_from`], with `SO_RCVBUF` set before connecting if asked (so
/// that the window the peer sees is small from the first segment).
fn connect_from_with(src: Ipv4Addr, dst: SocketAddr, rcvbuf: Option<libc::c_int>) -> io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else { panic!("connect_from: IPv4 only, got {dst}") };
    assert!(src.octets()[0] == 127 && dst.ip().octets()[0] == 127, "loopback only: {src} -> {dst}");
    // SAFETY: plain socket calls on a descriptor this function owns (the
    // TcpStream closes it on every path), with correctly sized arguments.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        // Pick the port at connect(), by the 4-tuple: thousands of
        // connections from one address then never run out of ports.
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        if let Some(bytes) = rcvbuf {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &bytes as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // A blocking connect() waits at most SO_SNDTIMEO on Linux.
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let local = sockaddr_in(src, 0);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr_in(*dst.ip(), dst.port());
        loop {
            let rc = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t);
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

/// How a flood writer ended.
struct Flood {
    bytes: u64,
    ended: String,
}

impl std::fmt::Display for Flood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes written, ended because {}", self.bytes, self.ended)
    }
}

/// Write `unit` over and over to `s` without ever reading, as fast as the
/// server takes it, until `max_bytes` are written, `max_time` has passed, or
/// the server has taken nothing for [`STALL`] (it stopped reading). Never
/// blocks for longer than that.
fn write_flood(s: &TcpStream, unit: &[u8], max_bytes: u64, max_time: Duration) -> Flood {
    let reps = (64 * 1024 / unit.len()).max(1);
    let buf = unit.repeat(reps);
    s.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut last_progress = start;
    let mut bytes = 0u64;
    let mut off = 0usize;
    let mut w: &TcpStream = s;
    let ended = loop {
        if bytes >= max_bytes {
            break "its fixed size was written".to_string();
        }
        let now = Instant::now();
        if now - start >= max_time {
            break format!("its {max_time:?} were up");
        }
        if now - last_progress >= STALL {
            break format!("the server read nothing for {STALL:?}");
        }
        let want = ((max_bytes - bytes) as usize).min(buf.len() - off);
        match w.write(&buf[off..off + want]) {
            Ok(n) => {
                bytes += n as u64;
                off = (off + n) % buf.len();
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break format!("write failed: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    Flood { bytes, ended }
}

/// Who the honest client is and what it fetches.
#[derive(Clone)]
struct Honest {
    addr: SocketAddr,
    src: Ipv4Addr,
    user: String,
    pass: String,
    /// `Some(sha256)` of [`SMALL`] to RETR and check.
    small_sha: Option<String>,
}

impl Honest {
    fn anonymous(srv: &Server, small_sha: Option<String>) -> Honest {
        Honest { addr: srv.addr, src: HONEST_IP, user: "anonymous".into(), pass: "honest@example.com".into(), small_sha }
    }
}

/// Send `line` (if any) and read one reply within `bound` (waiting
/// [`GRACE`] longer before calling it missing); the reply must have code
/// `want`. `start` is when the round trip began (before connect, for the
/// greeting). Returns the time it took.
fn round_trip(c: &mut Ctl, what: &str, line: Option<&str>, want: u16, bound: Duration, start: Option<Instant>) -> Result<Duration, String> {
    c.set_read_timeout(bound + GRACE);
    let start = start.unwrap_or_else(Instant::now);
    if let Some(line) = line {
        let mut b = line.as_bytes().to_vec();
        b.extend_from_slice(b"\r\n");
        c.send_raw(&b);
    }
    let r = c.try_reply().map_err(|e| format!("{what}: no reply within {:?} ({e})", bound + GRACE))?;
    let took = start.elapsed();
    if r.code != want {
        return Err(format!("{what}: expected {want}, got {}", r.text()));
    }
    if took > bound {
        return Err(format!("{what} took {took:.2?} (bound {bound:?})"));
    }
    Ok(took)
}

/// RETR [`SMALL`] over PASV (data connection from the same address), timed
/// as one round trip from the command to `226`, and checked by sha256.
fn honest_retr(c: &mut Ctl, src: Ipv4Addr, want_sha: &str) -> Result<Duration, String> {
    round_trip(c, "TYPE I", Some("TYPE I"), 200, ROUND_TRIP_BOUND, None)?;
    c.set_read_timeout(ROUND_TRIP_BOUND + GRACE);
    let t = Instant::now();
    c.send("PASV");
    let r: Reply = c.try_reply().map_err(|e| format!("PASV: no reply ({e})"))?;
    let addr = parse_pasv(&r.lines[0]).ok_or_else(|| format!("PASV: {}", r.text()))?;
    let mut data = connect_from(src, addr).map_err(|e| format!("data connection to {addr}: {e}"))?;
    let t_retr = Instant::now();
    c.send(&format!("RETR {SMALL}"));
    let r = c.try_reply().map_err(|e| format!("RETR: no 150 ({e})"))?;
    if !r.is_preliminary() {
        return Err(format!("RETR: {}", r.text()));
    }
    data.set_read_timeout(Some(ROUND_TRIP_BOUND + GRACE)).unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).map_err(|e| format!("RETR: reading data after {} bytes: {e}", got.len()))?;
    drop(data);
    let r = c.try_reply().map_err(|e| format!("RETR: no 226 ({e})"))?;
    if r.code != 226 {
        return Err(format!("RETR: {}", r.text()));
    }
    let took = t_retr.elapsed();
    if sha256(&got) != want_sha {
        return Err(format!("RETR {SMALL}: {} bytes with the wrong sha256", got.len()));
    }
    if took > ROUND_TRIP_BOUND {
        return Err(format!("RETR {SMALL} took {took:.2?} (bound {ROUND_TRIP_BOUND:?}; PASV {:.2?} before)", t_retr - t));
    }
    Ok(took)
}

/// One honest session, every round trip against its bound: connect +
/// greeting, USER, PASS, NOOP, PWD, then RETR of [`SMALL`] if asked, QUIT.
/// `Err` names the first step that failed or was slow.
fn honest_session(h: &Honest) -> Result<(), String> {
    let t = Instant::now();
    let s = connect_from(h.src, h.addr).map_err(|e| format!("connect from {}: {e}", h.src))?;
    let mut c = Ctl::from_stream(s);
    round_trip(&mut c, "connect + greeting", None, 220, CONNECT_BOUND, Some(t))?;
    round_trip(&mut c, "USER", Some(&format!("USER {}", h.user)), 331, ROUND_TRIP_BOUND, None)?;
    round_trip(&mut c, "login (PASS)", Some(&format!("PASS {}", h.pass)), 230, LOGIN_BOUND, None)?;
    round_trip(&mut c, "NOOP", Some("NOOP"), 200, ROUND_TRIP_BOUND, None)?;
    round_trip(&mut c, "PWD", Some("PWD"), 257, ROUND_TRIP_BOUND, None)?;
    if let Some(sha) = &h.small_sha {
        honest_retr(&mut c, h.src, sha)?;
    }
    c.send("QUIT");
    Ok(())
}

/// Honest sessions one after another (the first at once, then every
/// 200 ms) until `stop` is set; at least one. Returns how many ran and
/// what went wrong.
fn honest_during(h: Honest, stop: Arc<AtomicBool>) -> JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut runs = 0;
        let mut errs = Vec::new();
        loop {
            runs += 1;
            let t = Instant::now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| honest_session(&h)));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errs.push(format!("honest session {runs} (+{:.1?}): {e}", t.elapsed())),
                Err(_) => errs.push(format!("honest session {runs}: the client panicked (connection lost?)")),
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (runs, errs)
    })
}

/// NOOP round trips on an honest session that is already logged in, every
/// 50 ms until `stop`; returns the slowest and the problems.
fn noop_during(mut c: Ctl, stop: Arc<AtomicBool>) -> JoinHandle<(usize, Duration, Vec<String>)> {
    std::thread::spawn(move || {
        let mut n = 0;
        let mut slowest = Duration::ZERO;
        let mut errs = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let t = Instant::now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| round_trip(&mut c, "NOOP", Some("NOOP"), 200, ROUND_TRIP_BOUND, None)));
            slowest = slowest.max(t.elapsed());
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    errs.push(format!("logged-in honest session, NOOP {n}: {e}"));
                    if e.contains("no reply") {
                        break;
                    }
                }
                Err(_) => {
                    errs.push(format!("logged-in honest session, NOOP {n}: connection lost"));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (n, slowest, errs)
    })
}

/// Collect an honest thread's findings.
fn join_honest(t: JoinHandle<(usize, Vec<String>)>, problems: &mut Problems, when: &str) -> usize {
    match t.join() {
        Ok((runs, errs)) => {
            for e in errs {
                problems.add(format!("{when}: {e}"));
            }
            runs
        }
        Err(_) => {
            problems.add(format!("{when}: the honest client thread panicked"));
            0
        }
    }
}

/// The server is still running, and a fresh honest session works.
fn check_alive_and_serving(srv: &mut Server, h: &Honest, problems: &mut Problems, when: &str) {
    match srv.child.as_mut().map(|c| c.try_wait()) {
        Some(Ok(None)) => {}
        other => {
            problems.add(format!("{when}: the server is not running any more: {other:?}"));
            return;
        }
    }
    if let Err(e) = honest_session(h) {
        problems.add(format!("{when}: {e}"));
    }
}

/// A served root: a temp dir readable by all, with [`SMALL`] in it.
/// Returns the dir and the sha256 of [`SMALL`].
fn served_root() -> (tempfile::TempDir, String) {
    // tmpfs when there is one: creating the huge directory is 5-10 times
    // faster there than on a disk.
    let shm = Path::new("/dev/shm");
    let mut b = tempfile::Builder::new();
    b.prefix("leanftpd-hostile-");
    let root = if shm.is_dir() { b.tempdir_in(shm) } else { b.tempdir() }.unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let small = common::pattern(64 * 1024, 9);
    fs::write(root.path().join(SMALL), &small).unwrap();
    (root, sha256(&small))
}

/// `dir` with `n` empty files named `entry-000000`…, or with `long_names`
/// `000000-xxx…` (100 bytes, so that every copy of the names a server
/// keeps weighs ~10 MB); returns their names.
/// Two threads, `openat` on the directory's descriptor: on this machine's
/// tmpfs 100,000 files take about 2 s (20 s on its ext4 /tmp).
fn make_huge_dir(dir: &Path, n: usize, long_names: bool) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    let t = Instant::now();
    fs::create_dir(dir).unwrap();
    let names: Vec<String> =
        (0..n).map(|i| if long_names { format!("{i:06}-{}", "x".repeat(93)) } else { format!("entry-{i:06}") }).collect();
    let d = fs::File::open(dir).unwrap();
    std::thread::scope(|s| {
        for half in names.chunks(n.div_ceil(2)) {
            let d = &d;
            s.spawn(move || {
                for name in half {
                    let c = std::ffi::CString::new(std::ffi::OsStr::new(name).as_bytes()).unwrap();
                    // SAFETY: a valid directory descriptor and C string.
                    let fd = unsafe { libc::openat(d.as_raw_fd(), c.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
                    assert!(fd >= 0, "create {name}: {}", io::Error::last_os_error());
                    // SAFETY: the descriptor just opened, closed once.
                    unsafe { libc::close(fd) };
                }
            });
        }
    });
    eprintln!("created {n} files in {:.2?}", t.elapsed());
    names
}

/// A control connection from 127.0.0.1 logged in as anonymous.
fn hostile_anon(srv: &Server) -> Ctl {
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "hostile@example.com");
    c
}

// ---------------------------------------------------------------------------
// 0. The harness itself: a flood stops by itself.

#[test]
fn the_flood_writer_stops_by_itself_when_the_peer_stops_reading() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (_peer, _) = l.accept().unwrap();
    let t = Instant::now();
    let flood = write_flood(&s, b"FEAT\r\n", u64::MAX, FLOOD_TIME);
    assert!(flood.ended.contains("read nothing"), "{flood}");
    assert!(t.elapsed() < STALL + Duration::from_secs(2), "{flood} after {:.2?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// 1. Replies pile up for a client that does not read.

/// A hostile client logs in, sends `unit` over and over (at most
/// `max_bytes`, within [`FLOOD_TIME`]), never reads, and holds its
/// connection open for [`HOLD`] more; honest sessions run throughout.
fn non_reading_client(claim: &str, root: &Path, small_sha: String, unit: &[u8], max_bytes: u64) {
    let mut srv = Server::start(root, &["--shutdown-grace", "0"]);
    let rss = RssWatch::start(srv.pid());
    let honest = Honest::anonymous(&srv, Some(small_sha));
    let mut problems = Problems::default();

    let hostile = TcpStream::connect(srv.addr).unwrap();
    hostile.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    (&hostile).write_all(b"USER anonymous\r\nPASS hostile@example.com\r\n").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let during = honest_during(honest.clone(), stop.clone());
    let flood = write_flood(&hostile, unit, max_bytes, FLOOD_TIME);
    std::thread::sleep(HOLD);
    stop.store(true, Ordering::Relaxed);
    let runs = join_honest(during, &mut problems, "during the flood");
    eprintln!("{claim}: flood: {flood}; {runs} honest sessions; RSS peak {} MiB", rss.peak_kib() / 1024);
    rss.check(&mut problems, "during the flood");

    // Still holding the unread connection: the server is serving.
    let when = "after the flood (hostile still connected)";
    check_alive_and_serving(&mut srv, &honest, &mut problems, when);
    rss.check(&mut problems, when);
    drop(hostile);
    let when = "after the hostile client left";
    check_alive_and_serving(&mut srv, &honest, &mut problems, when);
    rss.check(&mut problems, when);
    problems.assert_none(claim);
}

#[test]
fn non_reading_stat_flood_pauses_the_session_not_the_server() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    make_huge_dir(&root.path().join("huge"), HUGE_ENTRIES, false);
    let unit = b"STAT huge\r\n";
    non_reading_client(
        "300 pipelined `STAT huge` never read",
        root.path(),
        sha,
        unit,
        300 * unit.len() as u64,
    );
}

#[test]
fn non_reading_feat_flood_pauses_the_session_not_the_server() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    non_reading_client("a FEAT flood never read", root.path(), sha, b"FEAT\r\n", u64::MAX);
}

#[test]
fn non_reading_help_flood_pauses_the_session_not_the_server() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    non_reading_client("a HELP flood never read", root.path(), sha, b"HELP\r\n", u64::MAX);
}

// ---------------------------------------------------------------------------
// 2. STAT during a transfer escapes the queue bound, and costs O(n²).

/// A 64 MiB file that reads as zeros (sparse: made at once).
const BIG: &str = "big.bin";

fn put_big(root: &Path) {
    let f = fs::File::create(root.join(BIG)).unwrap();
    f.set_len(64 * 1024 * 1024).unwrap();
}

/// A hostile session from 127.0.0.1 with `RETR big.bin` running and its
/// data connection never read (64 MiB cannot sit in socket buffers, so the
/// transfer stays in flight): the control socket and the data socket.
fn stalled_retr(srv: &Server) -> (TcpStream, TcpStream) {
    let mut c = hostile_anon(srv);
    c.expect("TYPE I", 200);
    let (_, data) = c.open_transfer(common::Mode::Pasv, &format!("RETR {BIG}"));
    (c.into_stream(), data)
}

/// An honest session from [`HONEST_IP`], logged in before the flood.
fn steady_session(srv: &Server) -> Ctl {
    let mut c = Ctl::from_stream(connect_from(HONEST_IP, srv.addr).unwrap());
    assert_eq!(c.reply().code, 220);
    c.login("anonymous", "steady@example.com");
    c
}

fn join_noops(t: JoinHandle<(usize, Duration, Vec<String>)>, problems: &mut Problems, when: &str) -> (usize, Duration) {
    match t.join() {
        Ok((n, slowest, errs)) => {
            for e in errs {
                problems.add(format!("{when}: {e}"));
            }
            (n, slowest)
        }
        Err(_) => {
            problems.add(format!("{when}: the NOOP thread panicked"));
            (0, Duration::ZERO)
        }
    }
}

#[test]
fn stat_flood_during_a_transfer_pauses_the_session_not_the_server() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    put_big(root.path());
    let mut srv = Server::start(root.path(), &["--shutdown-grace", "0"]);
    let rss = RssWatch::start(srv.pid());
    let honest = Honest::anonymous(&srv, Some(sha));
    let mut problems = Problems::default();
    let steady = steady_session(&srv);
    let (hostile, data) = stalled_retr(&srv);

    let stop = Arc::new(AtomicBool::new(false));
    let during = honest_during(honest.clone(), stop.clone());
    let noops = noop_during(steady, stop.clone());
    // Issue 9: 37 MB of STAT took the server to 1.2 GB.
    let flood = write_flood(&hostile, b"STAT\r\n", 37_000_000, FLOOD_TIME);
    std::thread::sleep(HOLD);
    stop.store(true, Ordering::Relaxed);
    let runs = join_honest(during, &mut problems, "during the flood");
    let (n, slowest) = join_noops(noops, &mut problems, "during the flood");
    eprintln!(
        "STAT during a transfer: flood: {flood}; {runs} honest sessions; {n} NOOPs, slowest {slowest:.2?}; RSS peak {} MiB",
        rss.peak_kib() / 1024
    );
    rss.check(&mut problems, "during the flood");

    let when = "after the flood (hostile still connected)";
    check_alive_and_serving(&mut srv, &honest, &mut problems, when);
    rss.check(&mut problems, when);
    drop(data);
    drop(hostile);
    let when = "after the hostile client left";
    check_alive_and_serving(&mut srv, &honest, &mut problems, when);
    rss.check(&mut problems, when);
    problems.assert_none("a STAT flood during a transfer, never read");
}

#[test]
fn a_64kib_burst_of_stat_during_a_transfer_does_not_stall_other_clients() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    put_big(root.path());
    let mut srv = Server::start(root.path(), &["--shutdown-grace", "0"]);
    let rss = RssWatch::start(srv.pid());
    let honest = Honest::anonymous(&srv, Some(sha));
    let mut problems = Problems::default();
    let mut steady = steady_session(&srv);
    let (hostile, data) = stalled_retr(&srv);
    if let Err(e) = round_trip(&mut steady, "NOOP before the burst", Some("NOOP"), 200, ROUND_TRIP_BOUND, None) {
        problems.add(e);
    }

    // Ordinary commands wait in the queue during a transfer, STAT is
    // answered at once: 32 KiB of NOOP lines ahead of 32 KiB of STAT lines
    // make a server that rescans its queue for each STAT do 5,461 × 5,461
    // line scans.
    let mut burst = b"NOOP\r\n".repeat(32 * 1024 / 6);
    burst.extend_from_slice(&b"STAT\r\n".repeat(32 * 1024 / 6));
    let t = Instant::now();
    (&hostile).write_all(&burst).expect("write the 64 KiB burst");
    let written = t.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let during = honest_during(honest.clone(), stop.clone());
    let noops = noop_during(steady, stop.clone());
    std::thread::sleep(HOLD);
    stop.store(true, Ordering::Relaxed);
    let runs = join_honest(during, &mut problems, "just after the burst");
    let (n, slowest) = join_noops(noops, &mut problems, "just after the burst");
    eprintln!(
        "64 KiB of STAT during a transfer (written in {written:.2?}): {runs} honest sessions; {n} NOOPs, slowest {slowest:.2?}; RSS peak {} MiB",
        rss.peak_kib() / 1024
    );
    rss.check(&mut problems, "during the burst");
    drop(data);
    drop(hostile);
    check_alive_and_serving(&mut srv, &honest, &mut problems, "after the hostile client left");
    problems.assert_none("a 64 KiB burst of STAT during a transfer");
}

// ---------------------------------------------------------------------------
// 3. The password queue is unbounded.

/// The honest user of the users-file tests.
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "correct horse";

/// A served root with a users file beside it (outside the jail): `alice`,
/// read-write, home `alice/` holding [`SMALL`], her password hashed as
/// SHA-512-crypt with `rounds` rounds. Returns the root, the users file
/// and the sha256 of [`SMALL`].
fn users_root(rounds: u32) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let (root, sha) = served_root();
    let home = root.path().join(ALICE);
    fs::create_dir(&home).unwrap();
    fs::rename(root.path().join(SMALL), home.join(SMALL)).unwrap();
    let hash = common::openssl_passwd("-6", &format!("rounds={rounds}$hostile"), ALICE_PASSWORD);
    // The users file must be outside the served tree: beside it.
    let users = root.path().with_extension("users");
    fs::write(&users, format!("{ALICE}:{hash}:{ALICE}:rw\n")).unwrap();
    fs::set_permissions(&users, fs::Permissions::from_mode(0o600)).unwrap();
    (root, users, sha)
}

/// Removes the users file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn alice(srv: &Server, small_sha: String) -> Honest {
    Honest { addr: srv.addr, src: HONEST_IP, user: ALICE.into(), pass: ALICE_PASSWORD.into(), small_sha: Some(small_sha) }
}

/// Rounds of SHA-512-crypt for alice (and so for the dummy hash that
/// unknown names are checked against). 2,000 rounds: one check of a short
/// password takes ~35 ms in this debug build (one of a 1,024-byte password
/// far more). 8 hostile jobs ahead of an honest one, what a per-address
/// share lets through, then fit in [`LOGIN_BOUND`] many times over, and
/// 300 of them do not.
const ROUNDS: u32 = 2000;

#[test]
fn long_pass_flood_from_reset_connections_leaves_honest_logins_fast() {
    let _one = one_at_a_time();
    let (root, users, sha) = users_root(ROUNDS);
    let _users = RemoveOnDrop(users.clone());
    let mut srv = Server::start(root.path(), &["--users", users.to_str().unwrap(), "--login-cache", "0", "--shutdown-grace", "0"]);
    let rss = RssWatch::start(srv.pid());
    let honest = alice(&srv, sha);
    let mut problems = Problems::default();
    let t = Instant::now();
    if let Err(e) = honest_session(&honest) {
        problems.add(format!("before the flood: {e}"));
    }
    eprintln!("unloaded honest session: {:.2?}", t.elapsed());

    // 3,000 connections from 127.0.0.10-19, each `USER u` + an 8,100-byte
    // PASS, reset at once; 4 threads, at most 20 s.
    const CONNECTIONS: usize = 3000;
    const THREADS: usize = 4;
    let mut flood_line = b"USER u\r\nPASS ".to_vec();
    flood_line.extend(std::iter::repeat_n(b'x', 8100));
    flood_line.extend_from_slice(b"\r\n");
    let flood_line = Arc::new(flood_line);
    let stop = Arc::new(AtomicBool::new(false));
    let during = honest_during(honest.clone(), stop.clone());
    let t = Instant::now();
    let threads: Vec<JoinHandle<(usize, Vec<String>)>> = (0..THREADS)
        .map(|i| {
            let (line, addr) = (flood_line.clone(), srv.addr);
            std::thread::spawn(move || {
                let mut sent = 0;
                let mut errs = Vec::new();
                for n in 0..CONNECTIONS / THREADS {
                    if t.elapsed() > Duration::from_secs(20) {
                        errs.push(format!("flood thread {i}: stopped at its 20 s limit"));
                        break;
                    }
                    let src = Ipv4Addr::new(127, 0, 0, 10 + ((n * THREADS + i) % 10) as u8);
                    match connect_from(src, addr) {
                        Ok(mut s) => {
                            if s.write_all(&line).is_ok() {
                                sent += 1;
                            }
                            common::reset(s);
                        }
                        Err(e) => {
                            if errs.len() < 3 {
                                errs.push(format!("flood connect from {src}: {e}"));
                            }
                        }
                    }
                }
                (sent, errs)
            })
        })
        .collect();
    let mut sent = 0;
    for th in threads {
        let (n, errs) = th.join().unwrap();
        sent += n;
        for e in errs {
            eprintln!("{e}");
        }
    }
    let flood_took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let runs = join_honest(during, &mut problems, "during the flood");
    eprintln!("long PASS flood: {sent} of {CONNECTIONS} sent in {flood_took:.2?}; {runs} honest sessions; RSS peak {} MiB", rss.peak_kib() / 1024);
    problems.check(sent >= CONNECTIONS * 9 / 10, || format!("the flood itself failed: only {sent} of {CONNECTIONS} connections sent"));
    rss.check(&mut problems, "during the flood");

    // Just after: an honest login, and a long PASS on a connection that
    // waits for its answer (a failed login, 530, after the 1 s fail delay).
    check_alive_and_serving(&mut srv, &honest, &mut problems, "just after the flood");
    let mut c = Ctl::from_stream(connect_from(Ipv4Addr::new(127, 0, 0, 3), srv.addr).unwrap());
    if let Err(e) = round_trip(&mut c, "long PASS: greeting", None, 220, ROUND_TRIP_BOUND, None)
        .and_then(|_| round_trip(&mut c, "long PASS: USER u", Some("USER u"), 331, ROUND_TRIP_BOUND, None))
        .and_then(|_| {
            let pass = format!("PASS {}", "x".repeat(8100));
            round_trip(&mut c, "long PASS (8,100 bytes)", Some(&pass), 530, Duration::from_secs(1) + LOGIN_BOUND, None)
        })
    {
        problems.add(format!("just after the flood: {e}"));
    }
    drop(c);
    rss.check(&mut problems, "after the flood");
    problems.assert_none("3,000 reset connections each with an 8,100-byte PASS");
}

/// True if a line of `got` starts with `code`.
fn has_reply(got: &[u8], code: &str) -> bool {
    String::from_utf8_lossy(got).lines().any(|l| l.starts_with(code))
}

#[test]
fn short_pass_flood_from_one_address_is_capped_and_honest_logins_stay_fast() {
    let _one = one_at_a_time();
    let (root, users, sha) = users_root(ROUNDS);
    let _users = RemoveOnDrop(users.clone());
    let mut srv = Server::start(root.path(), &["--users", users.to_str().unwrap(), "--login-cache", "0", "--shutdown-grace", "0"]);
    let rss = RssWatch::start(srv.pid());
    let honest = alice(&srv, sha);
    let mut problems = Problems::default();
    let t = Instant::now();
    if let Err(e) = honest_session(&honest) {
        problems.add(format!("before the flood: {e}"));
    }
    eprintln!("unloaded honest session: {:.2?}", t.elapsed());

    // 300 connections from 127.0.0.20 (under the default --max-per-ip of
    // 500), each `USER u` + `PASS wrong`, kept open and not read until the
    // end.
    const CONNECTIONS: usize = 300;
    let flooder = Ipv4Addr::new(127, 0, 0, 20);
    let t = Instant::now();
    let mut held = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        match connect_from(flooder, srv.addr) {
            Ok(mut s) => {
                if s.write_all(b"USER u\r\nPASS wrong\r\n").is_ok() {
                    held.push(s);
                }
            }
            Err(e) => {
                problems.add(format!("flood connect from {flooder}: {e}"));
                break;
            }
        }
    }
    let flood_took = t.elapsed();
    // The honest login comes after every hostile PASS.
    let stop = Arc::new(AtomicBool::new(false));
    let during = honest_during(honest.clone(), stop.clone());
    std::thread::sleep(HOLD);
    stop.store(true, Ordering::Relaxed);
    let runs = join_honest(during, &mut problems, "during the flood");
    rss.check(&mut problems, "during the flood");

    // What each hostile connection got: its greeting, 331, then 421 and
    // the end of the connection (refused, not queued) or 530 (checked).
    let mut refused = 0;
    let mut failed = 0;
    let mut silent = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    for s in &held {
        let _ = s.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))));
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let closed = loop {
            match (&*s).read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
            // A 530 leaves the connection open; after a 421 read on to
            // its end (bounded by the deadline).
            if has_reply(&got, "530") {
                break false;
            }
        };
        if has_reply(&got, "421") && closed {
            refused += 1;
        } else if has_reply(&got, "530") {
            failed += 1;
        } else {
            silent += 1;
        }
    }
    eprintln!(
        "short PASS flood from one address: {} connections in {flood_took:.2?}; {runs} honest sessions; {refused} got 421 and were closed, {failed} got 530, {silent} no answer yet; RSS peak {} MiB",
        held.len(),
        rss.peak_kib() / 1024
    );
    problems.check(held.len() == CONNECTIONS, || format!("the flood itself failed: {} of {CONNECTIONS} connections", held.len()));
    // The queue takes at most 8 jobs from one address (64 in all): most of
    // the 300 must be refused at once.
    problems.check(refused + 64 >= held.len(), || {
        format!("only {refused} of {} flooding connections were refused with 421 and closed ({failed} got 530, {silent} no answer within 2 s)", held.len())
    });
    drop(held);
    check_alive_and_serving(&mut srv, &honest, &mut problems, "after the flood");
    rss.check(&mut problems, "after the flood");
    problems.assert_none("300 connections from one address each with a wrong PASS, kept open");
}

// ---------------------------------------------------------------------------
// 4. A listing holds all names of the directory.

/// A hostile session from 127.0.0.1 with `LIST huge` started and its data
/// connection (a 4 KiB receive buffer) never read: the control and data
/// sockets.
fn stalled_list(srv: &Server) -> Result<(Ctl, TcpStream), String> {
    let mut c = hostile_anon(srv);
    let addr = c.pasv();
    c.send("LIST huge");
    let data = connect_from_with(Ipv4Addr::LOCALHOST, addr, Some(4096)).map_err(|e| format!("data connection: {e}"))?;
    c.set_read_timeout(ROUND_TRIP_BOUND + GRACE);
    let r = c.try_reply().map_err(|e| format!("LIST huge: no 150 ({e})"))?;
    if !r.is_preliminary() {
        return Err(format!("LIST huge: {}", r.text()));
    }
    Ok((c, data))
}

#[test]
fn stalled_listings_of_a_huge_directory_hold_bounded_memory_and_a_full_one_names_every_entry_once() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    let names = make_huge_dir(&root.path().join("huge"), HUGE_ENTRIES, true);
    let mut srv = Server::start(root.path(), &["--shutdown-grace", "0"]);
    let rss = RssWatch::start(srv.pid());
    let honest = Honest::anonymous(&srv, Some(sha));
    let mut problems = Problems::default();

    // 25 LISTs of the 100,000-entry directory, none of them read. (Issue
    // 9 held 100 with short names; in this debug build each LIST takes
    // ~0.9 s to start, so fewer listings of longer names keep the test
    // short and the unbounded server still far over the bound.)
    const LISTINGS: usize = 25;
    let t = Instant::now();
    let mut stalled = Vec::with_capacity(LISTINGS);
    for i in 0..LISTINGS {
        match stalled_list(&srv) {
            Ok(pair) => stalled.push(pair),
            Err(e) => {
                problems.add(format!("stalled LIST {i}: {e}"));
                break;
            }
        }
    }
    let opened = t.elapsed();
    // Honest sessions while they are all stalled. (Not while they are
    // being opened: starting a LIST of 100,000 names may take this debug
    // build half a second, which is not what this test is about.)
    let stop = Arc::new(AtomicBool::new(false));
    let during = honest_during(honest.clone(), stop.clone());
    std::thread::sleep(HOLD);
    stop.store(true, Ordering::Relaxed);
    let runs = join_honest(during, &mut problems, "while the listings were stalled");
    eprintln!(
        "{} stalled LISTs of {HUGE_ENTRIES} entries, started in {opened:.2?}; {runs} honest sessions; RSS peak {} MiB",
        stalled.len(),
        rss.peak_kib() / 1024
    );
    rss.check(&mut problems, &format!("with {} stalled listings", stalled.len()));
    check_alive_and_serving(&mut srv, &honest, &mut problems, "with the listings still stalled");
    drop(stalled);

    // An honest client reading the whole listing gets every name once.
    let mut c = Ctl::from_stream(connect_from(HONEST_IP, srv.addr).unwrap());
    c.reply();
    c.login("anonymous", "honest@example.com");
    let addr = c.pasv();
    c.send("LIST huge");
    let mut data = connect_from(HONEST_IP, addr).unwrap();
    let r = c.reply();
    assert!(r.is_preliminary(), "LIST huge -> {r:?}");
    data.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut listing = Vec::new();
    data.read_to_end(&mut listing).expect("read the whole listing of huge");
    assert_eq!(c.reply().code, 226);
    let listing = String::from_utf8_lossy(&listing);
    let listed: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().last()).collect();
    let unique: HashSet<&str> = listed.iter().copied().collect();
    let expected: HashSet<&str> = names.iter().map(String::as_str).collect();
    problems.check(listed.len() == HUGE_ENTRIES && unique == expected, || {
        format!(
            "LIST huge read to its end: {} lines, {} distinct names, {} of the {HUGE_ENTRIES} names missing, {} not in the directory",
            listed.len(),
            unique.len(),
            expected.difference(&unique).count(),
            unique.difference(&expected).count()
        )
    });
    rss.check(&mut problems, "after the listings");
    check_alive_and_serving(&mut srv, &honest, &mut problems, "after the listings");
    problems.assert_none("25 stalled LISTs of a 100,000-entry directory");
}

// ---------------------------------------------------------------------------
// 5. SITE CHMOD is too strong.

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).permissions().mode() & 0o7777
}

/// Send `line`, expect `want`; a problem otherwise.
fn expect_code(c: &mut Ctl, line: &str, want: u16, problems: &mut Problems) {
    c.set_read_timeout(ROUND_TRIP_BOUND + GRACE);
    c.send(line);
    match c.try_reply() {
        Ok(r) => problems.check(r.code == want, || format!("{line:?} -> {:?}, expected {want}", r.text())),
        Err(e) => problems.add(format!("{line:?}: no reply ({e})")),
    }
}

#[test]
fn site_chmod_is_refused_to_anonymous_users_and_never_sets_special_bits_or_touches_the_root() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    let mut srv = Server::start(root.path(), &["--anonymous-write", "--shutdown-grace", "0"]);
    let honest = Honest::anonymous(&srv, Some(sha));
    let mut problems = Problems::default();
    let root_mode = mode_of(root.path());

    let mut c = hostile_anon(&srv);
    c.stor(common::Mode::Pasv, "tool", b"#!/bin/sh\nid\n");
    let tool = root.path().join("tool");
    let tool_mode = mode_of(&tool);
    expect_code(&mut c, "SITE CHMOD 6777 tool", 550, &mut problems);
    let m = mode_of(&tool);
    problems.check(m & 0o7000 == 0, || format!("after SITE CHMOD 6777 tool, its mode on disk is {m:04o} (set-uid/set-gid/sticky)"));
    expect_code(&mut c, "SITE CHMOD 000 /", 550, &mut problems);
    let m = mode_of(root.path());
    problems.check(m == root_mode, || format!("after SITE CHMOD 000 /, the served root's mode is {m:04o} (was {root_mode:04o})"));
    expect_code(&mut c, "SITE CHMOD 644 tool", 550, &mut problems);
    let m = mode_of(&tool);
    problems.check(m & 0o777 == tool_mode & 0o777, || format!("anonymous SITE CHMOD 644 tool changed its mode from {tool_mode:04o} to {m:04o}"));
    c.send("QUIT");
    // Put the root back, so that the checks below and the cleanup work.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(root_mode)).unwrap();
    check_alive_and_serving(&mut srv, &honest, &mut problems, "afterwards");
    problems.assert_none("SITE CHMOD by an anonymous user with --anonymous-write");
}

#[test]
fn site_chmod_for_a_writing_user_sets_permission_bits_only_and_never_on_the_home() {
    let _one = one_at_a_time();
    let (root, users, sha) = users_root(ROUNDS);
    let _users = RemoveOnDrop(users.clone());
    let home = root.path().join(ALICE);
    let f = home.join("f");
    fs::write(&f, b"alice's file\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    let mut srv = Server::start(root.path(), &["--users", users.to_str().unwrap(), "--shutdown-grace", "0"]);
    let honest = alice(&srv, sha);
    let mut problems = Problems::default();

    let mut c = Ctl::open(srv.addr);
    c.login(ALICE, ALICE_PASSWORD);
    expect_code(&mut c, "SITE CHMOD 644 f", 200, &mut problems);
    let m = mode_of(&f);
    problems.check(m == 0o644, || format!("after SITE CHMOD 644 f, its mode on disk is {m:04o}"));
    expect_code(&mut c, "SITE CHMOD 4755 f", 550, &mut problems);
    let m = mode_of(&f);
    problems.check(m & 0o7000 == 0, || format!("after SITE CHMOD 4755 f, its mode on disk is {m:04o} (set-uid)"));
    expect_code(&mut c, "SITE CHMOD 755 /", 550, &mut problems);
    let m = mode_of(&home);
    problems.check(m == 0o700, || format!("after SITE CHMOD 755 /, alice's home (her root) has mode {m:04o} (was 0700)"));
    c.send("QUIT");
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    check_alive_and_serving(&mut srv, &honest, &mut problems, "afterwards");
    problems.assert_none("SITE CHMOD by a users-file user with write permission");
}

// ---------------------------------------------------------------------------
// 6. Found by the red team: a client that *reads* its replies but pipelines
//    a 64 KiB burst of heavy commands. The reply budget never engages (the
//    kernel takes every reply), so only a budget of work per turn keeps the
//    loop's pass short: before it, one burst of `STAT <dir>` stalled every
//    other client for ~57 s, one of `SIZE` in TYPE A for ~2.3 s.

/// Write `burst`, and read every reply on another thread until `replies`
/// final replies arrived or `limit` passed. Returns the reader thread.
fn fast_reader_burst(mut c: Ctl, burst: Vec<u8>, replies: usize, limit: Duration) -> JoinHandle<usize> {
    let mut w = c.writer_clone();
    std::thread::spawn(move || {
        let writer = std::thread::spawn(move || w.write_all(&burst));
        let t = Instant::now();
        let mut got = 0;
        c.set_read_timeout(Duration::from_millis(500));
        while got < replies && t.elapsed() < limit {
            if c.try_reply().is_ok() {
                got += 1;
            }
        }
        drop(c);
        let _ = writer.join();
        got
    })
}

#[test]
fn a_fast_reader_pipelining_64kib_of_heavy_commands_is_served_in_slices() {
    let _one = one_at_a_time();
    let (root, sha) = served_root();
    make_huge_dir(&root.path().join("dir"), 8_000, false);
    let text: Vec<u8> = common::pattern(250 * 1024, 4).iter().map(|b| if b % 40 == 0 { b'\n' } else { b'a' + b % 26 }).collect();
    fs::write(root.path().join("text.txt"), &text).unwrap();
    for (what, setup, line) in [
        ("STAT of an 8,000-entry directory", None, "STAT dir\r\n"),
        ("SIZE in TYPE A of a 250 KiB file", Some("TYPE A"), "SIZE text.txt\r\n"),
    ] {
        let mut srv = Server::start(root.path(), &["--shutdown-grace", "0"]);
        let honest = Honest::anonymous(&srv, Some(sha.clone()));
        let mut problems = Problems::default();
        let steady = steady_session(&srv);
        let mut hostile = hostile_anon(&srv);
        if let Some(cmd) = setup {
            hostile.cmd(cmd);
        }
        let burst = line.as_bytes().repeat(64 * 1024 / line.len());
        let n = burst.len() / line.len();
        let reader = fast_reader_burst(hostile, burst, n, HOLD + Duration::from_secs(1));
        let stop = Arc::new(AtomicBool::new(false));
        let during = honest_during(honest.clone(), stop.clone());
        let noops = noop_during(steady, stop.clone());
        std::thread::sleep(HOLD);
        stop.store(true, Ordering::Relaxed);
        let runs = join_honest(during, &mut problems, "during the burst");
        let (k, slowest) = join_noops(noops, &mut problems, "during the burst");
        let answered = reader.join().unwrap();
        eprintln!("{what}: {n} pipelined, {answered} answered to the fast reader; {runs} honest sessions, {k} NOOPs, slowest {slowest:.2?}");
        check_alive_and_serving(&mut srv, &honest, &mut problems, "after the burst");
        problems.assert_none(&format!("a fast reader's 64 KiB burst of {what}"));
    }
}
