//! Helpers of the systemd tests (`tests/systemd.rs`, `tests/scale.rs`):
//! the server started by `systemd-socket-activate`, and the notifications
//! a test's own `NOTIFY_SOCKET` receives.

#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{self, need, BIN};

/// Longest wait for one notification.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// `systemd-socket-activate ARGS -- leanftpd SERVER_ARGS`, its output in a
/// log file; the result is stopped by PID on drop. `addr` is what the test
/// connects to (the first connection makes it exec the server).
pub fn socket_activate(activate_args: &[String], server_args: &[String], addr: SocketAddr) -> process::Server {
    let tool = need("systemd-socket-activate", "systemd");
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("server.log");
    let f = fs::File::create(&log).unwrap();
    let child = Command::new(tool)
        .args(activate_args)
        .arg(BIN)
        .args(server_args)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("spawn systemd-socket-activate");
    let server = process::Server { child: Some(child), addr, log, _logdir: logdir };
    wait_for_log(&server, "Listening on", "systemd-socket-activate to listen");
    server
}

/// Bounded wait until the server's log contains `needle`.
#[track_caller]
pub fn wait_for_log(server: &process::Server, needle: &str, what: &str) {
    let deadline = Instant::now() + process::START_TIMEOUT;
    while !server.log_text().contains(needle) {
        assert!(Instant::now() < deadline, "no {what} within {:?}; log:\n{}", process::START_TIMEOUT, server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next notification, as `KEY=VALUE` lines.
#[track_caller]
pub fn next_message(rx: &UnixDatagram) -> Vec<(String, String)> {
    rx.set_read_timeout(Some(NOTIFY_TIMEOUT)).unwrap();
    let mut buf = [0u8; 4096];
    let n = rx.recv(&mut buf).unwrap_or_else(|e| panic!("no notification within {NOTIFY_TIMEOUT:?}: {e}"));
    let text = std::str::from_utf8(&buf[..n]).expect("notification is UTF-8");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l:?} in {text:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn field<'a>(msg: &'a [(String, String)], key: &str) -> Option<&'a str> {
    msg.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
