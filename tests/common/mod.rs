//! Shared harness for the integration tests over real loopback sockets.
//!
//! - [`TestServer`]: a temporary directory holding the served `root/` (and,
//!   beside it, room for things that must stay *outside* the jail), a server
//!   bound to `127.0.0.1:0` running on its own thread, stopped through its
//!   `StopHandle` and joined with a bounded wait when dropped.
//! - [`Ctl`]: a raw control-connection client; `cmd("NOOP")` returns a
//!   [`Reply`] with the code and every line of a (possibly multi-line) reply.
//! - Data connections in the four ways a client can make them ([`Mode`]:
//!   PASV, EPSV, PORT, EPRT), and whole RETR/STOR/LIST transfers on top.
//! - Hashes, test data, deadline polling, and a `python3` helper to connect
//!   from another loopback address (std cannot bind before connecting).
//!
//! Every wait is bounded: sockets carry read/write timeouts of
//! [`IO_TIMEOUT`], and anything that must *happen* is polled for with a
//! deadline ([`wait_until`]) instead of slept for.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod balancer;
pub mod metrics;
pub mod process;
pub mod systemd;
pub mod tls;
pub mod workers;

use leanftpd::{Config, Server, StopHandle};
use sha2::{Digest, Sha256};

/// Read/write timeout of every test socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Drop for TestServer` waits for the server thread to end.
pub const STOP_WAIT: Duration = Duration::from_secs(8);
/// Bytes in a mebibyte.
pub const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// The server

/// A leanftpd serving a fresh temporary directory on `127.0.0.1:<random>`.
pub struct TestServer {
    /// The control address.
    pub addr: SocketAddr,
    /// The implicit FTPS address, when the configuration asked for one
    /// (`tls::enable` does).
    pub implicit_tls: Option<SocketAddr>,
    /// The served directory (canonical).
    pub root: PathBuf,
    /// The temporary directory that holds `root`; whatever is put here
    /// beside `root` is outside the jail.
    pub base: PathBuf,
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Anonymous read-write, test-friendly timeouts.
    #[track_caller]
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// Like `start`, after `tweak` has adjusted the configuration. The
    /// directory `cfg.root.parent()` is the temporary base (outside the
    /// jail), already created, so `tweak` may write a users file there.
    #[track_caller]
    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::Builder::new().prefix("leanftpd-test-").tempdir().expect("create temp dir");
        let base = std::fs::canonicalize(dir.path()).expect("canonicalize temp dir");
        let root = base.join("root");
        std::fs::create_dir(&root).expect("create root");
        let mut config = Config::new(root.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.anonymous = true;
        config.anonymous_write = true;
        config.login_fail_delay = Duration::from_millis(50);
        config.shutdown_grace = Duration::from_secs(1);
        tweak(&mut config);
        config.validate().unwrap_or_else(|e| panic!("test config does not validate: {e}"));
        let root = config.root.clone();

        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("leanftpd-server".into())
            .spawn(move || match Server::bind(config) {
                Ok(server) => {
                    let _ = tx.send(Ok((server.local_addr(), server.implicit_tls_addr(), server.stop_handle())));
                    server.run()
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    Ok(())
                }
            })
            .expect("spawn server thread");
        let (addr, implicit_tls, stop) = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => panic!("Server::bind failed: {e}"),
            Err(e) => panic!("server thread did not report its address within {IO_TIMEOUT:?}: {e}"),
        };
        TestServer { addr, implicit_tls, root, base, stop, thread: Some(thread), _dir: dir }
    }

    /// A control connection that has read the `220` greeting.
    #[track_caller]
    pub fn ctl(&self) -> Ctl {
        Ctl::open(self.addr)
    }

    /// A control connection logged in as `anonymous`.
    #[track_caller]
    pub fn anon(&self) -> Ctl {
        let mut c = self.ctl();
        c.login("anonymous", "test@example.com");
        c
    }

    /// Ask the server to shut down (as on SIGTERM) without waiting; `Drop`
    /// still joins the thread.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// True once the server thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// A path under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Write a file under the root.
    #[track_caller]
    pub fn put(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// Names in a directory under the root that are upload temp files.
    pub fn temp_files(&self, rel_dir: &str) -> Vec<String> {
        std::fs::read_dir(self.path(rel_dir))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".leanftpd-upload-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.stop();
        let Some(thread) = self.thread.take() else { return };
        let deadline = Instant::now() + STOP_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            // A thread cannot be killed; it is left behind and reported.
            if !std::thread::panicking() {
                panic!("server thread still running {STOP_WAIT:?} after StopHandle::stop()");
            }
            return;
        }
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !std::thread::panicking() => panic!("Server::run returned an error: {e}"),
            Err(_) if !std::thread::panicking() => panic!("server thread panicked"),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The control client

/// One reply: its code and every line (without CRLF; lossy UTF-8).
#[derive(Clone, Debug)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The lines, first to last (one for a single-line reply).
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// True for 1xx.
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }
}

/// A raw control connection.
pub struct Ctl {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Our address.
    pub local: SocketAddr,
    /// The server's address.
    pub peer: SocketAddr,
}

impl Ctl {
    /// Connect without reading anything.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Ctl {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Ctl::from_stream(s)
    }

    /// Wrap a connected stream.
    pub fn from_stream(s: TcpStream) -> Ctl {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = s.set_nodelay(true);
        let local = s.local_addr().unwrap();
        let peer = s.peer_addr().unwrap();
        let writer = s.try_clone().unwrap();
        Ctl { reader: BufReader::new(s), writer, local, peer }
    }

    /// Connect and read the `220` greeting.
    #[track_caller]
    pub fn open(addr: SocketAddr) -> Ctl {
        let mut c = Ctl::connect(addr);
        let r = c.reply();
        assert_eq!(r.code, 220, "greeting: {r:?}");
        c
    }

    /// Change the read timeout (for waits shorter than `IO_TIMEOUT`).
    pub fn set_read_timeout(&mut self, t: Duration) {
        self.reader.get_ref().set_read_timeout(Some(t)).unwrap();
    }

    /// Read one reply, or the I/O error (timeout, EOF as `UnexpectedEof`,
    /// a malformed line as `InvalidData`).
    pub fn try_reply(&mut self) -> io::Result<Reply> {
        let first = self.read_line()?;
        let code = parse_code(&first)
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, format!("not a reply line: {first:?}")))?;
        let mut lines = vec![first.clone()];
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code:03} ");
            loop {
                let l = self.read_line()?;
                let done = l.starts_with(&end) || l == end.trim_end();
                lines.push(l);
                if done {
                    break;
                }
            }
        }
        Ok(Reply { code, lines })
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf)?;
        if n == 0 || !buf.ends_with(b"\n") {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("connection closed (partial line {:?})", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Read one reply; panic on timeout or EOF.
    #[track_caller]
    pub fn reply(&mut self) -> Reply {
        self.try_reply().unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    /// Send `line` + CRLF.
    #[track_caller]
    pub fn send(&mut self, line: &str) {
        let mut b = line.as_bytes().to_vec();
        b.extend_from_slice(b"\r\n");
        self.send_raw(&b);
    }

    /// A second handle on the control socket, for a writer thread that
    /// pipelines while this one reads.
    pub fn writer_clone(&self) -> TcpStream {
        self.writer.try_clone().expect("clone the control socket")
    }

    /// Send bytes as they are.
    #[track_caller]
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap_or_else(|e| panic!("sending on the control connection: {e}"));
    }

    /// Send a command, read its (first) reply.
    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.reply()
    }

    /// Send raw bytes + CRLF, read the reply.
    #[track_caller]
    pub fn cmd_raw(&mut self, line: &[u8]) -> Reply {
        let mut b = line.to_vec();
        b.extend_from_slice(b"\r\n");
        self.send_raw(&b);
        self.reply()
    }

    /// Send a command and assert the code of its reply.
    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line:?} -> {r:?}");
        r
    }

    /// USER + PASS; asserts `230`.
    #[track_caller]
    pub fn login(&mut self, user: &str, pass: &str) {
        self.expect(&format!("USER {user}"), 331);
        self.expect(&format!("PASS {pass}"), 230);
    }

    /// Assert that the server closes the connection within `IO_TIMEOUT`;
    /// returns what arrived before the end (reset counts as closed).
    #[track_caller]
    /// The control socket itself (to reset it, for example).
    pub fn into_stream(self) -> TcpStream {
        self.writer
    }

    pub fn expect_closed(&mut self) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "connection not closed by the server; got {:?}", String::from_utf8_lossy(&got));
            match self.reader.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("connection not closed by the server ({e}); got {:?}", String::from_utf8_lossy(&got)),
            }
        }
    }

    /// Close both directions now.
    pub fn shutdown(&self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }

    // ----- data connections --------------------------------------------

    /// PASV; asserts `227`, returns the address it names.
    #[track_caller]
    pub fn pasv(&mut self) -> SocketAddr {
        let r = self.expect("PASV", 227);
        parse_pasv(&r.lines[0]).unwrap_or_else(|| panic!("cannot parse PASV reply {r:?}"))
    }

    /// EPSV; asserts `229`, returns the control peer's IP with its port.
    #[track_caller]
    pub fn epsv(&mut self) -> SocketAddr {
        let r = self.expect("EPSV", 229);
        let port = parse_epsv(&r.lines[0]).unwrap_or_else(|| panic!("cannot parse EPSV reply {r:?}"));
        SocketAddr::new(self.peer.ip(), port)
    }

    /// Listen on `127.0.0.1:0`, send PORT for it; asserts `200`.
    #[track_caller]
    pub fn port(&mut self) -> TcpListener {
        let l = TcpListener::bind((self.local.ip(), 0)).expect("bind active listener");
        let a = l.local_addr().unwrap();
        self.expect(&port_arg(a), 200);
        l
    }

    /// Listen on `127.0.0.1:0`, send EPRT for it; asserts `200`.
    #[track_caller]
    pub fn eprt(&mut self) -> TcpListener {
        let l = TcpListener::bind((self.local.ip(), 0)).expect("bind active listener");
        let a = l.local_addr().unwrap();
        self.expect(&eprt_arg(a), 200);
        l
    }

    /// Ask for the next data connection in `mode`.
    #[track_caller]
    pub fn prepare(&mut self, mode: Mode) -> DataPrep {
        match mode {
            Mode::Pasv => DataPrep::Passive(self.pasv()),
            Mode::Epsv => DataPrep::Passive(self.epsv()),
            Mode::Port => DataPrep::Active(self.port()),
            Mode::Eprt => DataPrep::Active(self.eprt()),
        }
    }

    /// Send `command` (RETR, STOR, LIST, NLST) after setting up `mode`;
    /// returns the preliminary reply and the data connection. Panics if
    /// the first reply is not 1xx.
    #[track_caller]
    pub fn open_transfer(&mut self, mode: Mode, command: &str) -> (Reply, TcpStream) {
        let prep = self.prepare(mode);
        self.start_on(prep, command)
    }

    /// Send `command` on a data connection already asked for.
    #[track_caller]
    pub fn start_on(&mut self, prep: DataPrep, command: &str) -> (Reply, TcpStream) {
        match prep {
            DataPrep::Passive(addr) => {
                self.send(command);
                let data = connect_data(addr);
                let r = self.reply();
                assert!(r.is_preliminary(), "{command:?} -> {r:?}, expected 1xx");
                (r, data)
            }
            DataPrep::Active(listener) => {
                self.send(command);
                // The server connects before it answers 150; the kernel
                // completes the handshake into the backlog meanwhile.
                let r = self.reply();
                assert!(r.is_preliminary(), "{command:?} -> {r:?}, expected 1xx");
                let data = accept_within(&listener, IO_TIMEOUT).unwrap_or_else(|| panic!("the server did not connect for {command:?}"));
                (r, data)
            }
        }
    }

    /// RETR `path` in `mode`: 1xx, every byte to EOF, 226.
    #[track_caller]
    pub fn retr(&mut self, mode: Mode, path: &str) -> Vec<u8> {
        let (_, mut data) = self.open_transfer(mode, &format!("RETR {path}"));
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap_or_else(|e| panic!("RETR {path} ({mode:?}): reading data after {} bytes: {e}", got.len()));
        drop(data);
        let r = self.reply();
        assert_eq!(r.code, 226, "RETR {path} ({mode:?}) after {} bytes: {r:?}", got.len());
        got
    }

    /// STOR `bytes` as `path` in `mode`: 1xx, write, close, 226.
    #[track_caller]
    pub fn stor(&mut self, mode: Mode, path: &str, bytes: &[u8]) {
        let (_, mut data) = self.open_transfer(mode, &format!("STOR {path}"));
        data.write_all(bytes).unwrap_or_else(|e| panic!("STOR {path} ({mode:?}): writing data: {e}"));
        data.shutdown(Shutdown::Write).unwrap();
        drop(data);
        let r = self.reply();
        assert_eq!(r.code, 226, "STOR {path} ({mode:?}) of {} bytes: {r:?}", bytes.len());
    }

    /// LIST (or NLST, with `command`) in `mode`: the listing as text.
    #[track_caller]
    pub fn listing(&mut self, mode: Mode, command: &str) -> String {
        let (_, mut data) = self.open_transfer(mode, command);
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap_or_else(|e| panic!("{command}: reading listing: {e}"));
        drop(data);
        let r = self.reply();
        assert_eq!(r.code, 226, "{command} -> {r:?}");
        String::from_utf8_lossy(&got).into_owned()
    }
}

/// The four ways of making a data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// RFC 959 PASV.
    Pasv,
    /// RFC 2428 EPSV.
    Epsv,
    /// RFC 959 PORT.
    Port,
    /// RFC 2428 EPRT.
    Eprt,
}

/// Every mode.
pub const MODES: [Mode; 4] = [Mode::Pasv, Mode::Epsv, Mode::Port, Mode::Eprt];

/// A data connection that has been asked for.
pub enum DataPrep {
    /// Connect to this address.
    Passive(SocketAddr),
    /// The server will connect to this listener.
    Active(TcpListener),
}

/// The code of a reply line (`"227 ..."`, `"211-..."`).
pub fn parse_code(line: &str) -> Option<u16> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 3 && b[3] != b' ' && b[3] != b'-' {
        return None;
    }
    line[..3].parse().ok()
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).` → the address.
pub fn parse_pasv(line: &str) -> Option<SocketAddr> {
    let open = line.find('(')?;
    let close = line[open..].find(')')? + open;
    let nums: Vec<u8> = line[open + 1..close].split(',').map(|p| p.trim().parse().ok()).collect::<Option<_>>()?;
    if nums.len() != 6 {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    Some(SocketAddr::new(IpAddr::V4(ip), u16::from(nums[4]) << 8 | u16::from(nums[5])))
}

/// `229 Entering Extended Passive Mode (|||port|).` → the port.
pub fn parse_epsv(line: &str) -> Option<u16> {
    let open = line.find('(')?;
    let close = line[open..].find(')')? + open;
    let inner = &line[open + 1..close];
    let d = inner.chars().next()?;
    let fields: Vec<&str> = inner.split(d).collect();
    if fields.len() != 5 {
        return None;
    }
    fields[3].parse().ok()
}

/// `PORT h1,h2,h3,h4,p1,p2` for an IPv4 address.
pub fn port_arg(a: SocketAddr) -> String {
    let IpAddr::V4(ip) = a.ip() else { panic!("PORT needs IPv4, got {a}") };
    let o = ip.octets();
    format!("PORT {},{},{},{},{},{}", o[0], o[1], o[2], o[3], a.port() >> 8, a.port() & 0xff)
}

/// `EPRT |1|addr|port|` (or `|2|` for IPv6).
pub fn eprt_arg(a: SocketAddr) -> String {
    let proto = if a.is_ipv4() { 1 } else { 2 };
    format!("EPRT |{proto}|{}|{}|", a.ip(), a.port())
}

/// Connect a data connection (with timeouts).
#[track_caller]
pub fn connect_data(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("data connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Accept one connection within `wait`, or `None`.
pub fn accept_within(listener: &TcpListener, wait: Duration) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return Some(s);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept on {:?}: {e}", listener.local_addr()),
        }
    }
}

/// Read a stream to its end, bounded by `wait`; `Err` if it did not end.
pub fn read_to_eof_within(s: &mut TcpStream, wait: Duration) -> io::Result<Vec<u8>> {
    s.set_read_timeout(Some(wait))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).map(|_| got)
}

// ---------------------------------------------------------------------------
// Waiting, data, hashes

/// Poll `cond` until it holds; panic with `what` after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Text with LF line ends, lines of 60 letters (TYPE A sends it with CRLF).
pub fn lf_text(size: usize, seed: u64) -> Vec<u8> {
    let mut t = pattern(size, seed);
    for (i, b) in t.iter_mut().enumerate() {
        *b = if i % 61 == 60 { b'\n' } else { b'a' + (*b % 26) };
    }
    t
}

/// `lf` as TYPE A puts it on the wire: every LF as CRLF.
pub fn to_crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 32);
    for &b in lf {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift64).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = vec![0u8; len];
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    let rest = chunks.into_remainder();
    x ^= x << 13;
    let bytes = x.to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&bytes[..n]);
    v
}

/// 64 MiB of pattern bytes, made once per test binary.
pub fn big() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| pattern(64 * MIB, 64))
}

/// sha256 of [`big`], computed once per test binary.
pub fn big_sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| sha256(big()))
}

/// Above this size hashes are computed by `sha256sum`: the `sha2` crate in
/// an unoptimised test build does about 30 MB/s, which would make the
/// 64 MiB cases dominate the suite. Both give the same digest (checked by
/// `sha256_helper_agrees_with_sha256sum` in tests/transfer.rs).
pub const SHA_IN_PROCESS_MAX: usize = 4 * MIB;

/// Lower-case hex sha256 of `bytes`.
#[track_caller]
pub fn sha256(bytes: &[u8]) -> String {
    if bytes.len() <= SHA_IN_PROCESS_MAX {
        sha256_in_process(bytes)
    } else {
        sha256_external(bytes)
    }
}

/// sha256 with the `sha2` crate.
pub fn sha256_in_process(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 by piping into `sha256sum`.
#[track_caller]
pub fn sha256_external(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("sha256sum is required for large hashes ({e}); install coreutils: apt-get install coreutils"));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::scope(|s| {
        let h = s.spawn(move || stdin.write_all(bytes));
        let out = child.wait_with_output();
        (h.join().unwrap(), out)
    });
    writer.0.expect("write to sha256sum");
    let out = writer.1.expect("sha256sum output");
    assert!(out.status.success(), "sha256sum failed: {:?}", out);
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// sha256 of a file on disk.
#[track_caller]
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    sha256(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos:x}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// Sockets std cannot make, and kernel state

/// What a connection from another address saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Foreign {
    /// The connection was made and then closed by the server; `n` bytes came first.
    Closed(usize),
    /// The connection was made and stayed open, silent, for the whole wait.
    StillOpen(usize),
    /// The connection could not be made.
    ConnectFailed(String),
}

/// Connect from `src_ip` (e.g. `127.0.0.2`) to `dst` with `python3`, read
/// until the server closes or `wait` passes. std's `TcpStream` cannot bind
/// before connecting, and no socket crate is a dev-dependency.
#[track_caller]
pub fn connect_from(src_ip: &str, dst: SocketAddr, wait: Duration) -> Foreign {
    const SCRIPT: &str = r#"
import socket, sys
src, host, port, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((src, 0))
s.settimeout(wait)
try:
    s.connect((host, port))
except Exception as e:
    print("CONNECT-FAILED", type(e).__name__); sys.exit(0)
n = 0
try:
    while True:
        d = s.recv(65536)
        if not d:
            print("CLOSED", n); break
        n += len(d)
except socket.timeout:
    print("OPEN", n)
except ConnectionResetError:
    print("CLOSED", n)
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT, src_ip, &dst.ip().to_string(), &dst.port().to_string(), &format!("{}", wait.as_secs_f64())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is required to connect from {src_ip} ({e}); install it: apt-get install python3"));
    let deadline = Instant::now() + wait + Duration::from_secs(10);
    loop {
        match child.try_wait().unwrap() {
            Some(_) => break,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("python3 helper did not finish");
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut words = stdout.split_whitespace();
    match (words.next(), words.next()) {
        (Some("CLOSED"), Some(n)) => Foreign::Closed(n.parse().unwrap()),
        (Some("OPEN"), Some(n)) => Foreign::StillOpen(n.parse().unwrap()),
        (Some("CONNECT-FAILED"), Some(e)) => Foreign::ConnectFailed(e.to_string()),
        _ => panic!("python3 helper: stdout {stdout:?}, stderr {:?}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// True if a TCP socket is listening on exactly `addr` (IPv4), read from
/// `/proc/net/tcp` so that looking does not consume a one-shot listener.
pub fn is_listening(addr: SocketAddr) -> bool {
    let IpAddr::V4(ip) = addr.ip() else { panic!("is_listening: IPv4 only") };
    let want = format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == want && f[3] == "0A"
    })
}

/// `openssl passwd <scheme> -salt <salt> <password>` (scheme `-6` or `-5`).
#[track_caller]
pub fn openssl_passwd(scheme: &str, salt: &str, password: &str) -> String {
    let openssl = if Path::new("/usr/bin/openssl").exists() { "/usr/bin/openssl" } else { "openssl" };
    let out = Command::new(openssl)
        .args(["passwd", scheme, "-salt", salt, password])
        .output()
        .unwrap_or_else(|e| panic!("openssl is required to hash test passwords ({e}); install it: apt-get install openssl"));
    assert!(out.status.success(), "openssl passwd {scheme} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Close `s` with a TCP reset instead of a FIN (`SO_LINGER` 0), as a
/// crashed or aborting client does. std has no stable `set_linger` and no
/// socket crate is a dev-dependency, so this declares `setsockopt` itself.
#[track_caller]
pub fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1; // Linux
    const SO_LINGER: i32 = 13; // Linux
    let l = Linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid descriptor we own and a correctly sized `struct linger`.
    let rc = unsafe {
        setsockopt(s.as_raw_fd(), SOL_SOCKET, SO_LINGER, &l as *const Linger as *const _, std::mem::size_of::<Linger>() as u32)
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER): {}", std::io::Error::last_os_error());
    drop(s);
}
