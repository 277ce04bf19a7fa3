//! The built `leanftpd` binary as a child process, for the tests that need
//! the real program: real clients (`tests/clients.rs`), signals, exit codes,
//! resource limits and faults (`tests/faults.rs`).
//!
//! Every wait is bounded; the server is stopped by PID on drop (SIGTERM,
//! bounded wait, then SIGKILL).

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_leanftpd");
/// Longest any client command may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the server may take to accept its first connection.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of `tool`, or a failure telling how to install it (package `pkg`).
pub fn need(tool: &str, pkg: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(tool);
            if let Ok(meta) = fs::metadata(&p) {
                use std::os::unix::fs::PermissionsExt;
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return p;
                }
            }
        }
    }
    panic!("missing {tool}: run .ci/setup.sh (apt-get install -y {pkg})");
}


// Helpers: running client commands with a bound

pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn describe(&self) -> String {
        format!("command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.what, self.status, self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn ok(self) -> Out {
        assert!(self.status.success(), "client command failed\n{}", self.describe());
        self
    }
}

/// Runs `cmd` with `stdin` as its input, killing it after `CLIENT_TIMEOUT`.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Out {
    for v in ["ftp_proxy", "FTP_PROXY", "all_proxy", "ALL_PROXY", "http_proxy", "https_proxy"] {
        cmd.env_remove(v);
    }
    cmd.env("LC_ALL", "C.UTF-8").env("LANG", "C.UTF-8");
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = w.write_all(input.as_bytes());
        });
    }
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().unwrap();
            let stdout = String::from_utf8_lossy(&to.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&te.join().unwrap()).into_owned();
            panic!("client timed out after {CLIENT_TIMEOUT:?}: {what}\nstatus {s:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&to.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&te.join().unwrap()).into_owned();
    Out { status, stdout, stderr, what }
}

pub fn cmd(program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}


// Helpers: the server under test

pub fn free_port(ip: IpAddr) -> u16 {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind a free port");
    l.local_addr().unwrap().port()
}

pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub _logdir: tempfile::TempDir,
}

/// Spawn `command` (the server, or a wrapper that execs it) serving
/// `root` on `addr` with `args`, its output into `log`.
fn spawn(command: &mut Command, root: &Path, addr: SocketAddr, args: &[&str], log: fs::File) -> std::process::Child {
    command
        .arg("--root")
        .arg(root)
        .arg("--listen")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn leanftpd")
}

impl Server {
    /// Starts the server on 127.0.0.1 serving `root` with `args`.
    pub fn start(root: &Path, args: &[&str]) -> Server {
        Server::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), root, args)
    }

    pub fn start_on(ip: IpAddr, root: &Path, args: &[&str]) -> Server {
        Server::start_wrapped(&[], ip, root, args)
    }

    /// Starts the server through `wrapper` (e.g. `["prlimit", "--nofile=40:40"]`),
    /// which must end by exec'ing the program it is given, so that the
    /// child's PID is the server's.
    pub fn start_wrapped(wrapper: &[&str], ip: IpAddr, root: &Path, args: &[&str]) -> Server {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("server.log");
        // A free port can be taken by someone else between our probe and the
        // server's bind: try a few ports.
        let mut last_log = String::new();
        for _ in 0..3 {
            let addr = SocketAddr::new(ip, free_port(ip));
            let f = fs::File::create(&log).unwrap();
            let mut command = match wrapper.split_first() {
                Some((program, rest)) => {
                    let mut c = Command::new(program);
                    c.args(rest).arg(BIN);
                    c
                }
                None => Command::new(BIN),
            };
            let child = spawn(&mut command, root, addr, args, f);
            let mut s = Server { child: Some(child), addr, log: log.clone(), _logdir: tempfile::tempdir().unwrap() };
            match s.wait_ready() {
                Ok(()) => {
                    s._logdir = logdir;
                    return s;
                }
                Err(e) => {
                    last_log = format!("{e}\n--- server log ---\n{}", fs::read_to_string(&log).unwrap_or_default());
                    s.stop();
                }
            }
        }
        panic!("leanftpd did not start: {last_log}");
    }

    /// Starts the server on 127.0.0.1 serving `root` with `args`, and waits
    /// only until its control port accepts connections, not for a greeting:
    /// for a server that greets no one from here (`--proxy-protocol`, where
    /// a connection from outside `--proxy-from` is closed without a byte).
    pub fn start_unprobed(root: &Path, args: &[&str]) -> Server {
        Server::start_unprobed_on(IpAddr::V4(Ipv4Addr::LOCALHOST), root, args)
    }

    /// `start_unprobed` on `ip`.
    pub fn start_unprobed_on(ip: IpAddr, root: &Path, args: &[&str]) -> Server {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("server.log");
        let addr = SocketAddr::new(ip, free_port(ip));
        let f = fs::File::create(&log).unwrap();
        let child = spawn(&mut Command::new(BIN), root, addr, args, f);
        let mut s = Server { child: Some(child), addr, log, _logdir: logdir };
        let deadline = Instant::now() + START_TIMEOUT;
        while !super::is_listening(addr) {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("leanftpd exited early with {st:?}: {}", s.log_text());
            }
            assert!(Instant::now() < deadline, "leanftpd did not listen on {addr} within {START_TIMEOUT:?}: {}", s.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// Bounded poll until the control port answers with a 220 greeting.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("leanftpd exited early with {st:?}"));
            }
            if let Ok(s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                if r.read_line(&mut line).is_ok() && line.starts_with("220") {
                    let _ = r.get_mut().write_all(b"QUIT\r\n");
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no 220 greeting on {} within {START_TIMEOUT:?}", self.addr));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `ftp://[user[:pass]@]127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ftp://{}", self.addr)
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits at most `bound` for the server to exit by itself.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        let child = self.child.as_mut()?;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else { return };
        let pid = child.id();
        if child.try_wait().unwrap().is_none() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().unwrap().is_none() {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        self.child = None;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- leanftpd log ({}) ---\n{}--- end of leanftpd log ---", self.addr, self.log_text());
        }
    }
}

// ---------------------------------------------------------------------------
// A raw control connection (for the SIGHUP test)

pub struct Control {
    pub r: BufReader<TcpStream>,
}

impl Control {
    pub fn connect(addr: SocketAddr) -> Control {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Control { r: BufReader::new(s) };
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "greeting: {greeting}");
        c
    }

    /// One whole reply (multi-line replies included), last line returned.
    pub fn reply(&mut self) -> String {
        let mut first = String::new();
        self.r.read_line(&mut first).expect("read reply");
        assert!(first.len() >= 4, "short reply line {first:?}");
        if first.as_bytes()[3] == b'-' {
            let end = format!("{} ", &first[..3]);
            loop {
                let mut line = String::new();
                let n = self.r.read_line(&mut line).expect("read reply");
                assert!(n > 0, "connection closed inside a multi-line reply");
                if line.starts_with(&end) {
                    return line.trim_end().to_string();
                }
            }
        }
        first.trim_end().to_string()
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.r.get_mut().write_all(format!("{line}\r\n").as_bytes()).expect("send command");
        self.reply()
    }
}

