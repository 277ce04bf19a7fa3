//! systemd integration of the built binary (issue 12), without systemd as
//! PID 1:
//! - socket activation through `systemd-socket-activate` (Debian's
//!   `systemd` package, installed by `.ci/setup.sh`): it binds, waits for
//!   the first connection, then execs leanftpd in the same process with
//!   `LISTEN_PID`/`LISTEN_FDS` (and `LISTEN_FDNAMES` with `--fdname`), so
//!   the server's PID is the child's;
//! - readiness (`sd_notify(3)`): the test binds its own `NOTIFY_SOCKET`
//!   (a path, or an abstract `@name`) and reads what the server sends.
//!
//! Every server is stopped by PID when its test ends (`process::Server`'s
//! `Drop`), even on failure; every wait is bounded.

mod common;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{self, free_port, need, BIN};
use common::systemd::{field, next_message, socket_activate, NOTIFY_TIMEOUT};
use common::{pattern, sha256, Ctl, Mode};

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// A served root with one file of `len` pattern bytes; returns the root
/// (inside `dir`) and the file's sha256.
fn root_with_file(dir: &Path, name: &str, len: usize) -> (PathBuf, String) {
    let root = dir.join("root");
    fs::create_dir_all(&root).unwrap();
    let bytes = pattern(len, 12);
    fs::write(root.join(name), &bytes).unwrap();
    (root, sha256(&bytes))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Log in anonymously on `addr` and download `name` in passive mode.
fn download(addr: SocketAddr, name: &str) -> Vec<u8> {
    let mut c = Ctl::open(addr);
    c.login("anonymous", "test@");
    c.expect("TYPE I", 200);
    let got = c.retr(Mode::Pasv, name);
    c.expect("QUIT", 221);
    got
}

#[test]
fn socket_activation_serves_through_the_inherited_socket_matched_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let (root, sha) = root_with_file(dir.path(), "f.bin", 3 * 1024 * 1024 + 7);
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    let mut server = socket_activate(
        &s(&["-l", &addr.to_string()]),
        &s(&["--root", root.to_str().unwrap(), "--listen", &addr.to_string()]),
        addr,
    );
    // The first connection makes systemd-socket-activate exec the server;
    // it is queued on the inherited socket and served by it.
    let got = download(addr, "f.bin");
    assert_eq!(sha256(&got), sha);
    let log = server.log_text();
    assert!(log.contains(&format!("socket activation: --listen {addr} from fd 3")), "log:\n{log}");
    // A second session on the same socket, then a clean drain.
    assert_eq!(sha256(&download(addr, "f.bin")), sha);
    server.signal("TERM");
    let st = server.wait_exit(Duration::from_secs(10)).expect("leanftpd exits after SIGTERM");
    assert_eq!(st.code(), Some(0), "log:\n{}", server.log_text());
}

#[test]
fn socket_activation_by_fdname_ignores_the_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let (root, sha) = root_with_file(dir.path(), "g.bin", 100_000);
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    // --listen names another port: the name `control` wins.
    let other = SocketAddr::new(loopback(), free_port(loopback()));
    let server = socket_activate(
        &s(&["-l", &addr.to_string(), "--fdname=control"]),
        &s(&["--root", root.to_str().unwrap(), "--listen", &other.to_string()]),
        addr,
    );
    assert_eq!(sha256(&download(addr, "g.bin")), sha);
    let log = server.log_text();
    assert!(log.contains(&format!("socket activation: --listen {addr} from fd 3 (control)")), "log:\n{log}");
    assert!(!common::is_listening(other), "{other} must not be bound: the inherited socket replaces it");
}

#[test]
fn socket_activation_of_control_and_implicit_tls_by_fdnames() {
    let dir = tempfile::tempdir().unwrap();
    let (root, sha) = root_with_file(dir.path(), "h.bin", 200_000);
    let (_files, tls_args) = common::tls::binary_args(&dir.path().join("tls"));
    let control = SocketAddr::new(loopback(), free_port(loopback()));
    let implicit = SocketAddr::new(loopback(), free_port(loopback()));
    let mut args = s(&["--root", root.to_str().unwrap(), "--implicit-tls-listen", "127.0.0.1:1"]);
    args.extend(tls_args);
    let _server = socket_activate(
        &s(&["-l", &implicit.to_string(), "-l", &control.to_string(), "--fdname=implicit-tls:control"]),
        &args,
        control,
    );
    assert_eq!(sha256(&download(control, "h.bin")), sha);
    // The implicit FTPS socket is fd 3: TLS from the first byte, then 220.
    let client = common::tls::TlsClient::new(common::tls::Version::Tls13);
    let mut c = common::tls::TlsCtl::implicit(implicit, client);
    c.expect("USER anonymous", 331);
    c.expect("PASS x", 230);
    c.expect("QUIT", 221);
}

/// Start `systemd-socket-activate` for `server_args`, trigger it with
/// `trigger`, and return the server's exit code and log.
fn activation_failure(activate_args: &[String], server_args: &[String], trigger: impl FnOnce()) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut args = s(&["--root", root.to_str().unwrap()]);
    args.extend_from_slice(server_args);
    let unused = SocketAddr::new(loopback(), 1);
    let mut server = socket_activate(activate_args, &args, unused);
    trigger();
    let st = server.wait_exit(Duration::from_secs(10)).expect("leanftpd exits at start-up");
    (st.code(), server.log_text())
}

#[test]
fn an_inherited_socket_matching_no_listener_is_exit_2() {
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    let listen = SocketAddr::new(loopback(), free_port(loopback()));
    let (code, log) = activation_failure(&s(&["-l", &addr.to_string()]), &s(&["--listen", &listen.to_string()]), || {
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
    });
    assert_eq!(code, Some(2), "log:\n{log}");
    assert!(log.contains(&format!("inherited fd 3 ({addr}) matches neither --listen {listen}")), "log:\n{log}");
}

#[test]
fn an_inherited_unix_socket_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activate.sock");
    let p = path.clone();
    let (code, log) = activation_failure(&s(&["-l", path.to_str().unwrap()]), &[], move || {
        let _ = std::os::unix::net::UnixStream::connect(&p);
    });
    assert_eq!(code, Some(2), "log:\n{log}");
    assert!(log.contains("inherited fd 3 is a unix stream socket"), "log:\n{log}");
}

#[test]
fn an_inherited_udp_socket_is_exit_2() {
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    let (code, log) = activation_failure(&s(&["--datagram", "-l", &addr.to_string()]), &s(&["--listen", &addr.to_string()]), || {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(b"wake", addr).unwrap();
    });
    assert_eq!(code, Some(2), "log:\n{log}");
    assert!(log.contains("inherited fd 3 is an IPv4 datagram socket"), "log:\n{log}");
}

#[test]
fn a_malformed_listen_fdnames_is_exit_2() {
    // LISTEN_PID must be the server's own PID: a shell that execs it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let out = process::run(
        process::cmd(
            Path::new("/bin/sh"),
            &["-c", "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=a:b exec \"$0\" --root \"$1\"", BIN, root.to_str().unwrap()],
        ),
        None,
    );
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("LISTEN_FDNAMES=\"a:b\" has 2 names for LISTEN_FDS=1"), "{}", out.describe());
}

#[test]
fn listen_variables_for_another_process_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = root_with_file(dir.path(), "x", 10);
    let server = spawn_with_env(&root, &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")]);
    let mut c = Ctl::open(server.addr);
    c.login("anonymous", "x");
}

// ---------------------------------------------------------------------------
// Readiness: NOTIFY_SOCKET

/// `leanftpd --root ROOT --listen 127.0.0.1:PORT` with `env`, not waited
/// for (readiness is what the caller checks).
fn spawn_with_env(root: &Path, env: &[(&str, &str)]) -> process::Server {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("server.log");
    let f = fs::File::create(&log).unwrap();
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    let mut cmd = Command::new(BIN);
    cmd.arg("--root").arg(root).arg("--listen").arg(addr.to_string());
    cmd.env_remove("NOTIFY_SOCKET").env_remove("LISTEN_PID").env_remove("LISTEN_FDS").env_remove("LISTEN_FDNAMES");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("spawn leanftpd");
    let mut server = process::Server { child: Some(child), addr, log, _logdir: logdir };
    if env.iter().all(|(k, _)| *k != "NOTIFY_SOCKET") {
        server.wait_ready().unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    }
    server
}

/// Connect once (no retry) and read the greeting: the port accepts now.
#[track_caller]
fn accepts_now(addr: SocketAddr) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{addr} refused after READY=1: {e}"));
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
}

/// READY=1 once accepting; RELOADING=1 + MONOTONIC_USEC, then READY=1, per
/// SIGHUP; STOPPING=1 on SIGTERM.
fn readiness_cycle(rx: &UnixDatagram, notify_socket: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = root_with_file(dir.path(), "x", 10);
    let mut server = spawn_with_env(&root, &[("NOTIFY_SOCKET", notify_socket)]);
    let pid = server.pid().to_string();

    let ready = next_message(rx);
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    assert_eq!(field(&ready, "MAINPID"), Some(pid.as_str()), "{ready:?}");
    let status = field(&ready, "STATUS").expect("STATUS with READY");
    assert!(status.contains(&format!("Serving FTP on {}", server.addr)), "{status}");
    accepts_now(server.addr);

    let mut last_usec = 0u64;
    for round in 0..2 {
        server.signal("HUP");
        let reloading = next_message(rx);
        assert_eq!(field(&reloading, "RELOADING"), Some("1"), "round {round}: {reloading:?}");
        let usec: u64 = field(&reloading, "MONOTONIC_USEC").expect("MONOTONIC_USEC").parse().expect("MONOTONIC_USEC is a number");
        assert!(usec > last_usec, "MONOTONIC_USEC goes forward: {usec} after {last_usec}");
        last_usec = usec;
        let again = next_message(rx);
        assert_eq!(field(&again, "READY"), Some("1"), "round {round}: {again:?}");
        assert!(field(&again, "STATUS").unwrap_or("").contains("SIGHUP: no users file"), "{again:?}");
        accepts_now(server.addr);
    }

    // A session open while the drain begins shows in the status.
    let mut c = Ctl::open(server.addr);
    c.login("anonymous", "x");
    server.signal("TERM");
    let stopping = next_message(rx);
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    assert!(field(&stopping, "STATUS").unwrap_or("").starts_with("Draining 1 sessions"), "{stopping:?}");
    let st = server.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn notify_socket_path_gets_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    readiness_cycle(&rx, path.to_str().unwrap());
}

#[test]
fn notify_socket_abstract_name_gets_ready_reloading_and_stopping() {
    use std::os::linux::net::SocketAddrExt;
    let name = common::unique("leanftpd-notify");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = UnixDatagram::bind_addr(&addr).unwrap();
    readiness_cycle(&rx, &format!("@{name}"));
}

#[test]
fn an_unreachable_notify_socket_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (root, sha) = root_with_file(dir.path(), "y", 5000);
    let missing = dir.path().join("nobody-listens-here.sock");
    let mut server = spawn_with_env(&root, &[("NOTIFY_SOCKET", missing.to_str().unwrap())]);
    server.wait_ready().unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    assert_eq!(sha256(&download(server.addr, "y")), sha);
    let log = server.log_text();
    assert!(log.contains("NOTIFY_SOCKET: dropped READY=1"), "log:\n{log}");
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).expect("exits").code(), Some(0));
}

/// A manager that never reads: its queue (`net.unix.max_dgram_qlen`,
/// 10 by default on Linux) fills; sending must not block the loop.
#[test]
fn a_notify_socket_nobody_reads_does_not_block_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (root, sha) = root_with_file(dir.path(), "z", 5000);
    let path = dir.path().join("notify.sock");
    let _rx = UnixDatagram::bind(&path).unwrap();
    let qlen: usize = fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen").map(|s| s.trim().parse().unwrap_or(10)).unwrap_or(10);
    let mut server = spawn_with_env(&root, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    server.wait_ready().unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    // Two messages per SIGHUP: enough reloads to fill the queue and more
    // (bounded: at most 64 signals), each one waited for in the log.
    let reloads = (qlen / 2 + 3).min(64);
    for i in 1..=reloads {
        server.signal("HUP");
        let deadline = Instant::now() + NOTIFY_TIMEOUT;
        while server.log_text().matches("SIGHUP: no users file").count() < i {
            assert!(Instant::now() < deadline, "reload {i} not logged:\n{}", server.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let log = server.log_text();
    assert!(log.contains("NOTIFY_SOCKET: dropped"), "the full queue must have refused a message; log:\n{log}");
    // The loop still serves.
    assert_eq!(sha256(&download(server.addr, "z")), sha);
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).expect("exits").code(), Some(0));
}

// ---------------------------------------------------------------------------
// contrib/systemd: the unit files

/// `contrib/systemd/` copied into a temporary directory with `ExecStart=`
/// pointing at the built binary (`systemd-analyze verify` checks that the
/// program exists).
fn units() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap().replace("/usr/local/bin/leanftpd", BIN);
        fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

#[test]
fn contrib_units_pass_systemd_analyze_verify() {
    let tool = need("systemd-analyze", "systemd");
    let dir = units();
    for unit in ["leanftpd.socket", "leanftpd-implicit-tls.socket", "leanftpd.service"] {
        let path = dir.path().join(unit);
        let out = process::run(process::cmd(&tool, &["verify", path.to_str().unwrap()]), None);
        assert_eq!(out.code(), Some(0), "{}", out.describe());
        assert!(out.stderr.trim().is_empty() && out.stdout.trim().is_empty(), "warnings for {unit}:\n{}", out.describe());
    }
}

/// The README states the exposure score `systemd-analyze security` gives
/// the service (0 = fully confined, 10 = not at all): it must not get worse
/// (`--threshold=12` fails above 1.2) nor drift from the README.
#[test]
fn contrib_service_exposure_is_1_2_as_the_readme_says() {
    let tool = need("systemd-analyze", "systemd");
    let dir = units();
    let path = dir.path().join("leanftpd.service");
    let out = process::run(
        process::cmd(&tool, &["security", "--offline=true", "--no-pager", "--threshold=12", path.to_str().unwrap()]),
        None,
    );
    assert!(out.stdout.contains("Overall exposure level for leanftpd.service: 1.2"), "{}", out.describe());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}
