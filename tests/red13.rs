//! Red team for issue 13: attacks an outsider would try on the config
//! file (SIGHUP), rate limits, upload hooks, drop boxes and the Landlock
//! sandbox, each asserting the correct behaviour. Each of the seven bugs
//! it found failed here first and was fixed with the test: a SIGHUP asking
//! for an access the sandbox did not give at start (anonymous write, a new
//! upload dir, a new hook, a users or TLS file in a new directory) now
//! keeps the running value and says it needs a restart; a SIGHUP naming a
//! bad upload dir keeps anonymous logins working; `users = 5` is a type
//! error at its line; a NUL in `on-upload` is exit 2.
//!
//! Most attacks need TLS, the metrics endpoint or the Landlock sandbox
//! (the default build's features).
#![cfg(all(feature = "tls", feature = "metrics", feature = "sandbox"))]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::metrics::scrape_url;
use common::process::{self as proc, free_port, Server, BIN};
use common::*;

fn metrics_addr() -> String {
    format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()))
}

/// Replaces `file` atomically with `text` (as an editor or a config
/// manager would).
fn write_config(file: &Path, text: &str) {
    let tmp = file.with_extension("new");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, file).unwrap();
}

/// Anonymous login on a fresh control connection.
fn anon_login(addr: SocketAddr) -> Ctl {
    let mut c = Ctl::open(addr);
    c.login("anonymous", "red@example.com");
    c
}

/// STOR `name` with `bytes` over PASV; the final reply.
fn stor_reply(c: &mut Ctl, name: &str, bytes: &[u8]) -> Reply {
    let a = c.pasv();
    c.send(&format!("STOR {name}"));
    // The server answers 150 once the data connection is there.
    let mut d = connect_data(a);
    let r = c.reply();
    if r.code != 150 && r.code != 125 {
        return r;
    }
    d.write_all(bytes).unwrap();
    drop(d);
    c.reply()
}

/// Waits for `n` more lines containing `needle` in the server's log.
fn wait_log(srv: &Server, needle: &str, n: usize) {
    wait_until(&format!("{n}× {needle:?} in the log"), Duration::from_secs(10), || srv.log_text().matches(needle).count() >= n);
}

/// The log line of a SIGHUP that could not apply `key`: under the
/// sandbox, an access Landlock was not given at start (src/sandbox.rs
/// `uncovered`) needs a restart, and the running value is kept.
fn restart_line(key: &str, file: &Path) -> String {
    format!("SIGHUP: {key} changed in {}; restart to apply", file.display())
}

/// Start with `--config file` (and `--no-sandbox` when `sandbox` is
/// false), then rewrite the file and SIGHUP.
fn start_then_reload(root: &Path, file: &Path, before: &str, after: &str, sandbox: bool) -> Server {
    write_config(file, before);
    let mut args = vec!["--config", file.to_str().unwrap()];
    if !sandbox {
        args.push("--no-sandbox");
    }
    let srv = Server::start(root, &args);
    write_config(file, after);
    srv.signal("HUP");
    wait_log(&srv, "SIGHUP: read", 1);
    srv
}

// ---------------------------------------------------------------------------
// Sandbox × SIGHUP: the README says SIGHUP applies `anonymous-upload-dir`
// and `anonymous-write` to new sessions, and the sandbox section names only
// new *homes* as needing a restart.

#[test]
fn sighup_adding_an_anonymous_upload_dir_needs_a_restart_under_the_sandbox_only() {
    for sandbox in [true, false] {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("incoming")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("leanftpd.toml");
        let srv = start_then_reload(root.path(), &file, "anonymous = true\n", "anonymous = true\nanonymous-upload-dir = \"/incoming\"\n", sandbox);
        let mut c = anon_login(srv.addr);
        c.expect("CWD /incoming", 250);
        let r = stor_reply(&mut c, "late.bin", b"delivered after SIGHUP");
        let log = srv.log_text();
        assert_eq!(log.contains(&restart_line("anonymous-upload-dir", &file)), sandbox, "{log}");
        assert_eq!(r.code, if sandbox { 550 } else { 226 }, "{r:?}\n{log}");
        assert_eq!(root.path().join("incoming/late.bin").exists(), !sandbox);
    }
}

#[test]
fn sighup_turning_on_anonymous_write_needs_a_restart_under_the_sandbox_only() {
    for sandbox in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("leanftpd.toml");
        let srv = start_then_reload(root.path(), &file, "anonymous = true\n", "anonymous-write = true\n", sandbox);
        let mut c = anon_login(srv.addr);
        let r = stor_reply(&mut c, "new.bin", b"written after SIGHUP");
        let log = srv.log_text();
        assert_eq!(log.contains(&restart_line("anonymous-write", &file)), sandbox, "{log}");
        assert_eq!(r.code, if sandbox { 550 } else { 226 }, "{r:?}\n{log}");
        assert_eq!(root.path().join("new.bin").exists(), !sandbox);
    }
}

#[test]
fn sighup_adding_on_upload_needs_a_restart_under_the_sandbox_only() {
    for sandbox in [true, false] {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("done")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("leanftpd.toml");
        let done = root.path().join("done");
        let hook = format!("touch {}/hooked", done.display());
        let after = format!("anonymous-write = true\non-upload = {hook:?}\n");
        let srv = start_then_reload(root.path(), &file, "anonymous-write = true\n", &after, sandbox);
        let mut c = anon_login(srv.addr);
        assert_eq!(stor_reply(&mut c, "pic.jpg", b"jpeg").code, 226);
        let log = srv.log_text();
        assert_eq!(log.contains(&restart_line("on-upload", &file)), sandbox, "{log}");
        if sandbox {
            // No hook is configured: nothing is spawned, nothing fails.
            c.expect("NOOP", 200);
            assert!(!srv.log_text().contains("cannot start"), "{}", srv.log_text());
        } else {
            wait_until("the hook to run", Duration::from_secs(10), || done.join("hooked").exists());
        }
        assert_eq!(done.join("hooked").exists(), !sandbox);
    }
}

// ---------------------------------------------------------------------------
// Sandbox: what the server legitimately needs at run time.

#[test]
fn under_the_sandbox_a_hook_writes_into_the_served_tree_and_active_mode_reaches_127_0_0_2() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("done")).unwrap();
    let done = root.path().join("done");
    let hook = format!("cp \"$LEANFTPD_PATH\" {}/copy", done.display());
    let srv = Server::start(root.path(), &["--anonymous-write", "--on-upload", &hook]);
    assert!(srv.log_text().contains("sandbox: Landlock"), "{}", srv.log_text());
    let mut c = anon_login(srv.addr);
    assert_eq!(stor_reply(&mut c, "in.bin", b"copy me").code, 226);
    wait_until("the hook's copy", Duration::from_secs(10), || fs::read(done.join("copy")).is_ok_and(|b| b == b"copy me"));
    // Active mode to another loopback address, port >= 1024.
    let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let a = l.local_addr().unwrap();
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x@example.com");
    c.expect("TYPE I", 200);
    // 127.0.0.2 is not the client's address: PORT to it is refused (200
    // would be a bounce), unless the server allows it.
    let r = c.cmd(&format!("PORT {}", port_arg(a)));
    assert!(r.code == 500 || r.code == 501 || r.code == 504 || r.code == 200, "{r:?}");
}

// ---------------------------------------------------------------------------
// Rate limits: a hostile client against a throttled transfer.

/// A server with every download at 1K/s, anonymous, metrics on.
fn throttled_server(root: &Path, metrics: &str) -> Server {
    Server::start(root, &["--max-download-rate", "1K", "--max-upload-rate", "1K", "--metrics-listen", metrics, "--anonymous-write"])
}

#[track_caller]
fn gauges_settle(metrics: &str, sessions: i64) {
    let url = format!("http://{metrics}/metrics");
    wait_until("the gauges to settle", Duration::from_secs(10), || {
        let m = scrape_url(&url);
        m.get("leanftpd_sessions_open") == sessions
            && m.get("leanftpd_data_connections_open") == 0
            && m.get("leanftpd_passive_listeners_open") == 0
            && m.get("leanftpd_upload_temp_files_open") == 0
    });
}

#[test]
fn reset_abor_and_quit_during_a_throttle_pause_free_everything_and_the_session_goes_on() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("big.bin"), pattern(1 << 20, 7)).unwrap();
    fs::write(root.path().join("small.bin"), b"tiny").unwrap();
    let metrics = metrics_addr();
    let srv = throttled_server(root.path(), &metrics);
    // Twenty sessions, each with a paused RETR; half are cut by a reset of
    // the control connection, half by a reset of the data connection.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut c = anon_login(srv.addr);
        c.expect("TYPE I", 200);
        let (r, mut d) = c.open_transfer(Mode::Pasv, "RETR big.bin");
        assert_eq!(r.code, 150);
        let mut buf = [0u8; 512];
        d.read_exact(&mut buf).unwrap();
        held.push((i, c, d));
    }
    std::thread::sleep(Duration::from_millis(300));
    for (i, c, d) in held {
        if i % 2 == 0 {
            reset(c.into_stream());
            drop(d);
        } else {
            reset(d);
            let mut c = c;
            let r = c.reply();
            assert!(r.code == 426 || r.code == 451, "{r:?}");
            // The same session: a new transfer works (throttled, small).
            assert_eq!(c.retr(Mode::Pasv, "small.bin"), b"tiny");
            c.expect("QUIT", 221);
        }
    }
    gauges_settle(&metrics, 0);
    // ABOR during a pause, then an upload on the same session.
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    let (_, mut d) = c.open_transfer(Mode::Pasv, "RETR big.bin");
    let mut buf = [0u8; 512];
    d.read_exact(&mut buf).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.send("ABOR");
    let r = c.reply();
    assert!(r.code == 426 || r.code == 226, "{r:?}");
    if r.code == 426 {
        c.expect_reply_code(226);
    }
    drop(d);
    let r = stor_reply(&mut c, "up.bin", b"after abor");
    assert_eq!(r.code, 226, "{r:?}");
    assert_eq!(fs::read(root.path().join("up.bin")).unwrap(), b"after abor");
    c.expect("QUIT", 221);
    gauges_settle(&metrics, 0);
    // A paused *upload* (it left the poll) whose client vanishes entirely.
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    let (r, mut d) = c.open_transfer(Mode::Pasv, "STOR gone.bin");
    assert_eq!(r.code, 150);
    d.write_all(&pattern(64 * 1024, 3)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    reset(d);
    reset(c.into_stream());
    gauges_settle(&metrics, 0);
}

trait ExpectCode {
    fn expect_reply_code(&mut self, code: u16);
}

impl ExpectCode for Ctl {
    fn expect_reply_code(&mut self, code: u16) {
        let r = self.reply();
        assert_eq!(r.code, code, "{r:?}");
    }
}

#[test]
fn a_file_that_shrinks_under_a_paused_rest_retr_ends_the_transfer_and_the_session_serves() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("shrink.bin");
    fs::write(&path, pattern(256 * 1024, 9)).unwrap();
    let metrics = metrics_addr();
    let srv = throttled_server(root.path(), &metrics);
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    c.expect("REST 100000", 350);
    let (r, mut d) = c.open_transfer(Mode::Pasv, "RETR shrink.bin");
    assert_eq!(r.code, 150);
    let mut buf = [0u8; 1024];
    d.read_exact(&mut buf).unwrap();
    // The file is truncated below the restart offset while paused.
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(10).unwrap();
    let got = read_to_eof_within(&mut d, Duration::from_secs(60)).expect("the data connection ends");
    assert!(got.len() < 256 * 1024, "{} bytes", got.len());
    let r = c.reply();
    assert!(matches!(r.code, 226 | 426 | 451 | 551), "{r:?}");
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
    gauges_settle(&metrics, 0);
}

#[test]
fn many_paused_downloads_do_not_starve_an_unthrottled_user() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("free")).unwrap();
    fs::write(root.path().join("big.bin"), pattern(1 << 20, 5)).unwrap();
    fs::write(root.path().join("free/data.bin"), pattern(4 << 20, 6)).unwrap();
    let users = root.path().join("../red13-users");
    let hash = openssl_passwd("-6", "s4lt", "pw");
    fs::write(&users, format!("free:{hash}:free:r:download-rate=0\n")).unwrap();
    let srv = Server::start(root.path(), &["--users", users.to_str().unwrap(), "--anonymous", "--max-download-rate", "1K", "--max-per-ip", "500", "--max-data-per-ip", "500", "--login-fail-delay", "0"]);
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut c = anon_login(srv.addr);
        c.expect("TYPE I", 200);
        let (r, d) = c.open_transfer(Mode::Pasv, "RETR big.bin");
        assert_eq!(r.code, 150);
        held.push((c, d));
    }
    let mut f = Ctl::open(srv.addr);
    f.login("free", "pw");
    f.expect("TYPE I", 200);
    let got = f.retr(Mode::Pasv, "data.bin");
    assert_eq!(sha256(&got), sha256(&pattern(4 << 20, 6)));
    for (c, _) in &mut held {
        c.expect("STAT", 211);
    }
    let _ = fs::remove_file(users);
}

// ---------------------------------------------------------------------------
// Drop boxes: what a `w` user can learn.

fn dropbox_server() -> (tempfile::TempDir, Server) {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("cam")).unwrap();
    fs::create_dir(root.path().join("cam/olddir")).unwrap();
    fs::write(root.path().join("cam/old.bin"), b"someone else's delivery").unwrap();
    let users = root.path().join("cam/../users.txt");
    let hash = openssl_passwd("-6", "s4lt", "secret");
    fs::write(&users, format!("cam:{hash}:cam:w\n")).unwrap();
    let srv = Server::start(root.path(), &["--users", users.to_str().unwrap(), "--login-fail-delay", "0"]);
    (root, srv)
}

/// Replies to `cmd` for an existing file and for a missing name must be
/// the same (code and text, with the name replaced).
#[test]
fn a_drop_box_answers_the_same_for_an_existing_file_and_a_missing_name() {
    let (_root, srv) = dropbox_server();
    let mut c = Ctl::open(srv.addr);
    c.login("cam", "secret");
    for cmd in ["SIZE", "MDTM", "MLST", "STAT", "DELE", "RNFR", "RMD", "NLST", "LIST", "MLSD", "APPE", "RETR", "SITE CHMOD 777", "MFMT 20200101000000"] {
        let needs_data = matches!(cmd, "NLST" | "LIST" | "MLSD" | "APPE" | "RETR");
        let mut ask = |name: &str| {
            if needs_data {
                let a = c.pasv();
                c.send(&format!("{cmd} {name}"));
                let _d = TcpStream::connect(a);
                c.reply()
            } else {
                c.cmd(&format!("{cmd} {name}"))
            }
        };
        let old = ask("old.bin");
        let missing = ask("nothere.bin");
        assert_eq!(old.code, 550, "{cmd} old.bin: {old:?}");
        assert_eq!((old.code, old.text().replace("old.bin", "X")), (missing.code, missing.text().replace("nothere.bin", "X")), "{cmd}");
    }
    // MLST without argument: the facts of the drop box itself (its
    // modify time changes with every delivery).
    let r = c.cmd("MLST");
    assert_eq!(r.code, 550, "MLST of the drop box: {r:?}");
    let r = c.cmd("MDTM .");
    assert_eq!(r.code, 550, "{r:?}");
    let r = c.cmd("SIZE .");
    assert_eq!(r.code, 550, "{r:?}");
    // RNTO without RNFR: 503, nothing learnt.
    assert_eq!(c.cmd("RNTO x").code, 503);
    // A glob: 550 or an empty listing, never a name.
    let a = c.pasv();
    c.send("NLST *.bin");
    let mut d = connect_data(a);
    let r = c.reply();
    if r.is_preliminary() {
        let got = read_to_eof_within(&mut d, IO_TIMEOUT).unwrap();
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        assert_eq!(c.reply().code, 226);
    } else {
        assert_eq!(r.code, 550);
    }
    // STAT of the directory: no entry.
    let r = c.cmd("STAT .");
    assert!(!r.text().contains("old.bin") && !r.text().contains("olddir"), "{r:?}");
    let r = c.cmd("STAT -la");
    assert!(!r.text().contains("old.bin") && !r.text().contains("olddir"), "{r:?}");
    // LIST with flags: still empty.
    let got = c.listing(Mode::Pasv, "LIST -la");
    assert!(!got.contains("old.bin") && !got.contains("olddir"), "{got}");
    // The size of a delivery through REST: refused before any byte.
    c.expect("REST 5", 350);
    let r = stor_reply(&mut c, "old.bin", b"x");
    assert_ne!(r.code, 226, "{r:?}");
    assert_eq!(fs::read(_root.path().join("cam/old.bin")).unwrap(), b"someone else's delivery");
    c.expect("QUIT", 221);
}

#[test]
fn a_drop_box_stou_and_stor_into_a_file_as_a_directory_leave_the_delivery_alone() {
    let (root, srv) = dropbox_server();
    let mut c = Ctl::open(srv.addr);
    c.login("cam", "secret");
    // STOU: a fresh name each time, the delivery untouched.
    let a = c.pasv();
    c.send("STOU");
    let mut d = connect_data(a);
    let r = c.reply();
    assert!(r.is_preliminary(), "{r:?}");
    d.write_all(b"stou").unwrap();
    drop(d);
    assert_eq!(c.reply().code, 226);
    assert!(!r.text().contains("old.bin"));
    let r = stor_reply(&mut c, "old.bin/x", b"under a file");
    assert!(r.code >= 400, "{r:?}");
    let r = stor_reply(&mut c, "olddir", b"over a dir");
    assert!(r.code >= 400, "{r:?}");
    assert!(root.path().join("cam/olddir").is_dir());
    assert_eq!(fs::read(root.path().join("cam/old.bin")).unwrap(), b"someone else's delivery");
    c.expect("QUIT", 221);
}

// ---------------------------------------------------------------------------
// The config file at its edges.

fn run_bin(args: &[&str]) -> (Option<i32>, String) {
    let out = proc::run(proc::cmd(Path::new(BIN), args), None);
    (out.code(), out.stderr)
}

#[test]
fn hostile_config_files_exit_2_with_one_line() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    let path = file.to_str().unwrap();
    let r = root.path().to_str().unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        b"max-clients = 5\nmax-clients = 6\n".to_vec(),
        b"anonymous = true\n\xff\xfe = 1\n".to_vec(),
        b"root = \"\xff\xfe\"\n".to_vec(),
        b"max-clients = 99999999999999999999999\n".to_vec(),
        b"max-clients = -1\n".to_vec(),
        b"login-timeout = nan\n".to_vec(),
        b"login-timeout = inf\n".to_vec(),
        b"login-timeout = -0.0\n".to_vec(),
        b"login-timeout = 1e-12\n".to_vec(),
        b"idle-timeout = 1e300\n".to_vec(),
        b"max-download-rate = \"4096M\"\n".to_vec(),
        b"max-download-rate = \"1023\"\n".to_vec(),
        b"workers = 0\n".to_vec(),
        b"workers = 257\n".to_vec(),
        b"max-line = 1\n".to_vec(),
        b"max-hooks = 65\n".to_vec(),
        b"hook-timeout = 86401\n".to_vec(),
        b"listen = \"\"\n".to_vec(),
        b"passive-ports = \"2000-1999\"\n".to_vec(),
        b"config = \"/etc/x\"\n".to_vec(),
        b"help = true\n".to_vec(),
        b"\"max-clients\" = 5\nmax-clients = 7\n".to_vec(),
        b"[[x]]\n".to_vec(),
        b"a = { b = 1 }\n".to_vec(),
    ];
    let mut huge = b"# padding\n".repeat(110_000);
    huge.extend_from_slice(b"max-clients = 5\n");
    cases.push(huge);
    for text in &cases {
        fs::write(&file, text).unwrap();
        let (code, stderr) = run_bin(&["--root", r, "--config", path]);
        let shown = String::from_utf8_lossy(&text[..text.len().min(60)]).into_owned();
        assert_eq!(code, Some(2), "{shown:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{shown:?}: {stderr}");
        assert!(stderr.starts_with("leanftpd: ") && stderr.contains(path), "{shown:?}: {stderr}");
    }
    // A contradiction between two options: one line, exit 2 (it cannot
    // name one line of the file).
    fs::write(&file, "proxy-from = []\nproxy-protocol = true\n").unwrap();
    let (code, stderr) = run_bin(&["--root", r, "--config", path]);
    assert_eq!((code, stderr.lines().count()), (Some(2), 1), "{stderr}");
    // A symlink loop and a directory.
    let lp = work.path().join("loop.toml");
    std::os::unix::fs::symlink(&lp, &lp).unwrap();
    for p in [lp.to_str().unwrap(), work.path().to_str().unwrap(), "/dev/zero"] {
        let (code, stderr) = run_bin(&["--root", r, "--config", p]);
        assert_eq!(code, Some(2), "{p}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{p}: {stderr}");
    }
}

#[test]
fn every_limit_at_its_smallest_still_serves_and_refuses_exactly() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.txt"), b"hello").unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    write_config(
        &file,
        "anonymous = true\nmax-clients = 2\nmax-per-ip = 2\nmax-passive = 1\nmax-transfers = 1\nmax-data-per-ip = 1\nmax-line = 64\nmax-login-fails = 1\nlogin-fail-delay = 0\nmax-hooks = 1\nhook-timeout = 0.001\nmax-download-rate = \"1K\"\nlogin-cache = 0\n",
    );
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap()]);
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    assert_eq!(c.retr(Mode::Pasv, "f.txt"), b"hello");
    // max-line 64: a 65-byte line is refused, the session goes on (or is
    // closed with a reply); the server keeps serving others.
    let long = format!("NOOP {}", "x".repeat(80));
    c.send(&long);
    let r = c.try_reply();
    if let Ok(r) = r {
        assert!(r.code >= 500, "{r:?}");
    }
    let mut d = anon_login(srv.addr);
    d.expect("NOOP", 200);
    // max-passive 1: a second session's PASV is refused while the first holds one.
    let _held = d.pasv();
    let mut e = anon_login(srv.addr);
    let r = e.cmd("PASV");
    assert_eq!(r.code, 425, "{r:?}");
    // max-login-fails 1 does not apply to anonymous; max-clients 2 refuses a third.
    drop(c);
    e.expect("NOOP", 200);
}

#[test]
fn a_sighup_storm_with_two_workers_loses_no_session_and_leaves_exact_limits() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.bin"), pattern(64 * 1024, 2)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    let cfg = |per_ip: u32| format!("anonymous = true\nmax-per-ip = {per_ip}\nmax-download-rate = \"{}K\"\n", per_ip * 64);
    write_config(&file, &cfg(8));
    let mut srv = Server::start(root.path(), &["--config", file.to_str().unwrap(), "--workers", "2"]);
    let mut held = anon_login(srv.addr);
    held.expect("TYPE I", 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = srv.pid();
    let (f2, stop2) = (file.clone(), stop.clone());
    let storm = std::thread::spawn(move || {
        let mut i = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            write_config(&f2, &cfg(if i.is_multiple_of(2) { 3 } else { 8 }));
            let _ = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status();
            i += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        i
    });
    let t0 = Instant::now();
    let mut rounds = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        assert_eq!(held.retr(Mode::Pasv, "f.bin").len(), 64 * 1024);
        held.expect("NOOP", 200);
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = storm.join().unwrap();
    assert!(sent >= 50 && rounds >= 1, "{sent} SIGHUPs, {rounds} rounds");
    assert!(srv.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the server died: {}", srv.log_text());
    // Settle on max-per-ip = 2: with `held` one more gets in, then 421.
    std::thread::sleep(Duration::from_millis(500));
    write_config(&file, "anonymous = true\nmax-per-ip = 2\n");
    srv.signal("HUP");
    let mut second = None;
    wait_until("max-per-ip 2 to be in force", Duration::from_secs(10), || {
        let mut c = Ctl::connect(srv.addr);
        let r = c.reply();
        if r.code != 220 {
            return false;
        }
        let mut c3 = Ctl::connect(srv.addr);
        let r3 = c3.reply();
        if r3.code == 421 {
            second = Some(c);
            return true;
        }
        false
    });
    held.expect("NOOP", 200);
    drop(second);
    let log = srv.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// A number where the option takes a path: the README calls "a value of
/// the wrong type" an error naming the file and line; the file reader
/// turns every scalar into text, so `users = 5` is the path `5` and the
/// error (if any) names no line of the file.
#[test]
fn a_number_where_a_path_belongs_is_a_type_error_naming_the_line() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    for text in ["users = 5\n", "xferlog = 1.5\n", "tls-cert = 0x10\n"] {
        fs::write(&file, text).unwrap();
        let (code, stderr) = run_bin(&["--root", root.path().to_str().unwrap(), "--config", file.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert!(stderr.starts_with(&format!("leanftpd: {}:1: ", file.display())), "{text:?}: {stderr}");
    }
}

/// The README: SIGHUP applies "the new `users` (a new path too)". Under
/// the sandbox only the start's users file directory is readable.
#[test]
fn sighup_pointing_users_at_another_directory_needs_a_restart_under_the_sandbox_only() {
    for sandbox in [true, false] {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("alice")).unwrap();
        fs::create_dir(root.path().join("bob")).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let alice = format!("alice:{}:alice:rw\n", openssl_passwd("-6", "s4lt", "secret"));
        let bob = format!("bob:{}:bob:rw\n", openssl_passwd("-6", "s4lt", "hunter2"));
        fs::write(a.path().join("users"), &alice).unwrap();
        fs::write(b.path().join("users"), format!("{alice}{bob}")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("c.toml");
        let cfg = |d: &Path| format!("users = {:?}\nlogin-fail-delay = 0\n", d.join("users").to_str().unwrap());
        let srv = start_then_reload(root.path(), &file, &cfg(a.path()), &cfg(b.path()), sandbox);
        let log = srv.log_text();
        assert_eq!(log.contains(&restart_line("users", &file)), sandbox, "{log}");
        let mut c = Ctl::open(srv.addr);
        c.expect("USER bob", 331);
        assert_eq!(c.cmd("PASS hunter2").code, if sandbox { 530 } else { 230 }, "{}", srv.log_text());
        let mut c = Ctl::open(srv.addr);
        c.login("alice", "secret");
    }
}

/// The README: "an upload that completes during the drain still starts
/// its hook if a slot is free". The name carries shell syntax: it must
/// reach the hook as a value, never as code.
#[test]
fn an_upload_completing_during_the_drain_runs_its_hook_with_a_hostile_name() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("done")).unwrap();
    let done = root.path().join("done");
    let hook = format!("cp \"$LEANFTPD_PATH\" {}/", done.display());
    let mut srv = Server::start(root.path(), &["--anonymous-write", "--on-upload", &hook, "--shutdown-grace", "10"]);
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    let name = "a;b $(touch PWNED) `touch PWNED2` 'q\"\\x.jpg";
    let (r, mut d) = c.open_transfer(Mode::Pasv, &format!("STOR {name}"));
    assert_eq!(r.code, 150);
    d.write_all(b"first half, ").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    srv.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    d.write_all(b"second half").unwrap();
    drop(d);
    assert_eq!(c.reply().code, 226);
    // Complete: the hook's `cp` may still be writing when the name appears.
    wait_until("the hook's copy", Duration::from_secs(8), || fs::read(done.join(name)).is_ok_and(|b| b == b"first half, second half"));
    assert!(srv.wait_exit(Duration::from_secs(15)).is_some_and(|s| s.success()), "{}", srv.log_text());
    for p in ["PWNED", "PWNED2", "done/PWNED", "done/PWNED2"] {
        assert!(!root.path().join(p).exists(), "{p}");
    }
}

/// A throttled transfer longer than every timeout: neither the control
/// connection's idle timeout nor the stall timeout may cut it (the
/// README: "A throttled transfer is not a stalled one").
#[test]
fn a_throttled_transfer_longer_than_every_timeout_completes() {
    let root = tempfile::tempdir().unwrap();
    let body = pattern(6 * 1024, 11);
    fs::write(root.path().join("f.bin"), &body).unwrap();
    let srv = Server::start(
        root.path(),
        &["--anonymous-write", "--max-download-rate", "1K", "--max-upload-rate", "1K", "--idle-timeout", "1", "--stall-timeout", "1", "--data-timeout", "1"],
    );
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    let t0 = Instant::now();
    let got = c.retr(Mode::Pasv, "f.bin");
    assert_eq!(sha256(&got), sha256(&body));
    assert!(t0.elapsed() > Duration::from_secs(3), "the rate held: {:?}", t0.elapsed());
    // And the upload direction.
    let (r, mut d) = c.open_transfer(Mode::Pasv, "STOR up.bin");
    assert_eq!(r.code, 150);
    d.write_all(&body).unwrap();
    drop(d);
    let r = c.reply();
    assert_eq!(r.code, 226, "{r:?}\n{}", srv.log_text());
    assert_eq!(sha256(&fs::read(root.path().join("up.bin")).unwrap()), sha256(&body));
    c.expect("QUIT", 221);
}

/// ABOR and QUIT while an upload is paused (it left the poll): answered,
/// and nothing stays open.
#[test]
fn abor_and_quit_during_a_paused_upload_are_answered_and_free_everything() {
    let root = tempfile::tempdir().unwrap();
    let metrics = metrics_addr();
    let srv = Server::start(root.path(), &["--anonymous-write", "--max-upload-rate", "1K", "--metrics-listen", &metrics, "--atomic-uploads"]);
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    let (r, mut d) = c.open_transfer(Mode::Pasv, "STOR a.bin");
    assert_eq!(r.code, 150);
    d.write_all(&pattern(32 * 1024, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.send("ABOR");
    let r = c.reply();
    assert!(r.code == 426 || r.code == 226, "{r:?}");
    if r.code == 426 {
        c.expect_reply_code(226);
    }
    drop(d);
    gauges_settle(&metrics, 1);
    assert!(!root.path().join("a.bin").exists(), "an aborted atomic upload leaves nothing");
    let (r, mut d) = c.open_transfer(Mode::Pasv, "STOR q.bin");
    assert_eq!(r.code, 150);
    d.write_all(&pattern(3 * 1024, 2)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // RFC 959 §4.1.1: QUIT during a transfer waits for its result; the
    // client ends the file by closing the data connection.
    c.send("QUIT");
    drop(d);
    let mut codes = Vec::new();
    while let Ok(r) = c.try_reply() {
        codes.push(r.code);
        if r.code == 221 {
            break;
        }
    }
    assert_eq!(codes, [226, 221]);
    assert_eq!(fs::read(root.path().join("q.bin")).unwrap(), pattern(3 * 1024, 2));
    gauges_settle(&metrics, 0);
}

/// A non-UTF-8 name reaches the hook's environment byte for byte.
#[test]
fn a_non_utf8_name_reaches_the_hook_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt;
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("done")).unwrap();
    let done = root.path().join("done");
    let hook = format!("cp \"$LEANFTPD_PATH\" {}/", done.display());
    let srv = Server::start(root.path(), &["--anonymous-write", "--on-upload", &hook]);
    let mut c = anon_login(srv.addr);
    c.expect("TYPE I", 200);
    let a = c.pasv();
    // (no 0xFF: that is Telnet IAC on the control connection, RFC 854)
    let name: &[u8] = b"caf\xe9 \x80\xfe.jpg";
    let mut line = b"STOR ".to_vec();
    line.extend_from_slice(name);
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line);
    let mut d = connect_data(a);
    assert_eq!(c.reply().code, 150);
    d.write_all(b"latin-1 bytes").unwrap();
    drop(d);
    assert_eq!(c.reply().code, 226);
    let target = done.join(std::ffi::OsStr::from_bytes(name));
    wait_until("the hook's copy", Duration::from_secs(10), || fs::read(&target).is_ok_and(|b| b == b"latin-1 bytes"));
}

/// A SIGHUP whose file names an upload dir that does not exist, or one
/// together with anonymous-write (excluded at start, exit 2): the README
/// says a file that no longer loads changes no option; either way
/// anonymous users must still log in and read.
fn sighup_with_bad_upload_dirs_keeps_anonymous_working(bad: &[&str]) {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("incoming")).unwrap();
    fs::write(root.path().join("f.txt"), b"readable").unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    write_config(&file, "anonymous = true\nanonymous-upload-dir = \"/incoming\"\n");
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap(), "--no-sandbox"]);
    for (i, text) in bad.iter().enumerate() {
        write_config(&file, text);
        srv.signal("HUP");
        wait_log(&srv, "SIGHUP:", i + 1);
        std::thread::sleep(Duration::from_millis(300));
        let mut c = anon_login(srv.addr);
        c.expect("TYPE I", 200);
        assert_eq!(c.retr(Mode::Pasv, "f.txt"), b"readable", "{text}");
        c.expect("CWD /incoming", 250);
        let r = stor_reply(&mut c, &format!("x{i}.bin"), b"drop");
        assert_eq!(r.code, 226, "{text}: {r:?}\n{}", srv.log_text());
        c.expect("QUIT", 221);
    }
}

#[test]
fn sighup_with_a_missing_anonymous_upload_dir_keeps_anonymous_working() {
    sighup_with_bad_upload_dirs_keeps_anonymous_working(&[
        "anonymous = true\nanonymous-upload-dir = \"/nope\"\n",
        "anonymous = true\nanonymous-upload-dir = \"/f.txt\"\n",
    ]);
}

#[test]
fn sighup_with_an_upload_dir_and_anonymous_write_keeps_the_running_configuration() {
    sighup_with_bad_upload_dirs_keeps_anonymous_working(&["anonymous-write = true\nanonymous-upload-dir = \"/incoming\"\n"]);
}

/// logrotate against `--xferlog` under the sandbox. `copytruncate`
/// (copy, then truncate in place) works with the server's O_APPEND
/// descriptor; `create` (rename, create a new file, then signal the
/// daemon — SIGHUP is the only reload signal) must get the next line
/// into the new file, or the log goes on growing in the rotated one.
fn xferlog_lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn xferlog_rotated_by_copytruncate_gets_the_next_line_at_its_start() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.txt"), b"x").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let xl = logs.path().join("xferlog");
    let srv = Server::start(root.path(), &["--xferlog", xl.to_str().unwrap()]);
    let mut c = anon_login(srv.addr);
    c.retr(Mode::Pasv, "f.txt");
    wait_until("one line", Duration::from_secs(5), || xferlog_lines(&xl).len() == 1);
    fs::copy(&xl, logs.path().join("xferlog.1")).unwrap();
    fs::OpenOptions::new().write(true).open(&xl).unwrap().set_len(0).unwrap();
    c.retr(Mode::Pasv, "f.txt");
    wait_until("the next line", Duration::from_secs(5), || !xferlog_lines(&xl).is_empty());
    let bytes = fs::read(&xl).unwrap();
    assert!(!bytes.contains(&0), "no hole of NULs before the line");
    assert_eq!(xferlog_lines(&xl).len(), 1);
}

/// Certificate renewal that puts the new pair in a new directory and
/// points the config file at it (the README: SIGHUP applies "new
/// `tls-cert`/`tls-key` paths").
#[test]
fn sighup_with_a_certificate_in_a_new_directory_needs_a_restart_under_the_sandbox_only() {
    for sandbox in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = common::tls::write_certs(old.path());
        let b = common::tls::write_certs(new.path());
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("c.toml");
        let cfg = |f: &common::tls::CertFiles| format!("tls-cert = {:?}\ntls-key = {:?}\n", f.chain.to_str().unwrap(), f.key.to_str().unwrap());
        let srv = start_then_reload(root.path(), &file, &cfg(&a), &cfg(&b), sandbox);
        wait_until("the TLS reload", Duration::from_secs(10), || srv.log_text().contains("SIGHUP: reloaded the TLS certificate") || srv.log_text().contains("SIGHUP: keeping the old TLS"));
        let log = srv.log_text();
        assert_eq!(log.contains(&restart_line("tls-cert", &file)), sandbox, "{log}");
        // Under the sandbox the running paths are read again (a renewal in
        // place works); without it, the new ones.
        let loaded = if sandbox { &a } else { &b };
        assert!(log.contains(&format!("SIGHUP: reloaded the TLS certificate {}", loaded.chain.display())), "{log}");
    }
}

/// A `w` user under the real sandbox: MKD, STOR into it, STOU, a refused
/// overwrite, and an interrupted upload that leaves no temporary file
/// (its removal needs RemoveFile in the drop box), with and without
/// --atomic-uploads.
#[test]
fn a_drop_box_user_under_the_sandbox_uploads_and_leaves_no_temp_file() {
    for atomic in [false, true] {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("cam")).unwrap();
        let work = tempfile::tempdir().unwrap();
        let users = work.path().join("users");
        fs::write(&users, format!("cam:{}:cam:w\n", openssl_passwd("-6", "s4lt", "secret"))).unwrap();
        let mut args = vec!["--users", users.to_str().unwrap(), "--login-fail-delay", "0"];
        if atomic {
            args.push("--atomic-uploads");
        }
        let srv = Server::start(root.path(), &args);
        assert!(srv.log_text().contains("1 upload-only tree"), "{}", srv.log_text());
        let mut c = Ctl::open(srv.addr);
        c.login("cam", "secret");
        c.expect("TYPE I", 200);
        c.expect("MKD 2026", 257);
        assert_eq!(stor_reply(&mut c, "2026/a.jpg", b"picture").code, 226, "{}", srv.log_text());
        assert_eq!(fs::read(root.path().join("cam/2026/a.jpg")).unwrap(), b"picture");
        assert_eq!(stor_reply(&mut c, "2026/a.jpg", b"overwrite").code, 553);
        let a = c.pasv();
        c.send("STOU");
        let mut d = connect_data(a);
        assert!(c.reply().is_preliminary());
        d.write_all(b"unique").unwrap();
        drop(d);
        assert_eq!(c.reply().code, 226, "{}", srv.log_text());
        // Interrupted: reset of the data connection.
        let (r, mut d) = c.open_transfer(Mode::Pasv, "STOR 2026/cut.jpg");
        assert_eq!(r.code, 150);
        d.write_all(&pattern(100_000, 4)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        reset(d);
        let r = c.reply();
        assert!(r.code >= 400, "{r:?}");
        std::thread::sleep(Duration::from_millis(200));
        let mut left: Vec<String> = fs::read_dir(root.path().join("cam/2026")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["a.jpg"], "atomic {atomic}\n{}", srv.log_text());
        c.expect("QUIT", 221);
    }
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

/// Fifty paused downloads and fifty paused uploads (whose clients keep
/// pushing) at 1K/s: the server sleeps between the wheel's resumes (a
/// generous bound: under a second of CPU in four), and a SIGTERM with a
/// one-second grace cuts them all and exits 0, leaving no temp file.
#[test]
fn paused_transfers_cost_no_busy_loop_and_a_drain_cuts_them() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("big.bin"), pattern(1 << 20, 5)).unwrap();
    let mut srv = Server::start(
        root.path(),
        &["--anonymous-write", "--atomic-uploads", "--max-download-rate", "1K", "--max-upload-rate", "1K", "--shutdown-grace", "1", "--max-data-per-ip", "200"],
    );
    let mut held = Vec::new();
    let mut pushers = Vec::new();
    for i in 0..100 {
        let mut c = anon_login(srv.addr);
        c.expect("TYPE I", 200);
        if i % 2 == 0 {
            let (r, d) = c.open_transfer(Mode::Pasv, "RETR big.bin");
            assert_eq!(r.code, 150);
            held.push((c, Some(d)));
        } else {
            let (r, mut d) = c.open_transfer(Mode::Pasv, &format!("STOR up{i}.bin"));
            assert_eq!(r.code, 150);
            d.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
            pushers.push(std::thread::spawn(move || {
                let chunk = vec![7u8; 16 * 1024];
                while d.write_all(&chunk).is_ok() {}
            }));
            held.push((c, None));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let cpu0 = cpu_secs(srv.pid());
    std::thread::sleep(Duration::from_secs(4));
    let cpu = cpu_secs(srv.pid()) - cpu0;
    assert!(cpu < 1.0, "{cpu} s of CPU in 4 s with 100 paused transfers");
    srv.signal("TERM");
    let st = srv.wait_exit(Duration::from_secs(15));
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", srv.log_text());
    for p in pushers {
        p.join().unwrap();
    }
    let left: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != "big.bin").collect();
    assert!(left.is_empty(), "{left:?}");
    drop(held);
}

/// Two drop-box uploads racing for one name: the loser's transfer ends
/// 553 after its 150, and its hook must not run (README: never for a
/// refused upload); the winner's runs once, with the winner's size.
#[test]
fn the_loser_of_a_drop_box_race_runs_no_hook() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("incoming")).unwrap();
    // Under the sandbox the hook has the server's rights: the drop box
    // is the only place it may write.
    fs::create_dir(root.path().join("incoming/done")).unwrap();
    let done = root.path().join("incoming/done");
    let hook = format!("echo \"$LEANFTPD_SIZE $LEANFTPD_VIRTUAL_PATH\" >> {}/log", done.display());
    let srv = Server::start(root.path(), &["--anonymous-upload-dir", "/incoming", "--on-upload", &hook, "--max-hooks", "1"]);
    let mut a = anon_login(srv.addr);
    let mut b = anon_login(srv.addr);
    for c in [&mut a, &mut b] {
        c.expect("TYPE I", 200);
        c.expect("CWD /incoming", 250);
    }
    let (r, mut da) = a.open_transfer(Mode::Pasv, "STOR x.bin");
    assert_eq!(r.code, 150);
    let (r, mut db) = b.open_transfer(Mode::Pasv, "STOR x.bin");
    assert_eq!(r.code, 150);
    da.write_all(b"loser's longer bytes").unwrap();
    db.write_all(b"winner").unwrap();
    drop(db);
    assert_eq!(b.reply().code, 226);
    drop(da);
    assert_eq!(a.reply().code, 553);
    assert_eq!(fs::read(root.path().join("incoming/x.bin")).unwrap(), b"winner");
    wait_until("the winner's hook", Duration::from_secs(10), || fs::read_to_string(done.join("log")).is_ok_and(|l| !l.is_empty()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fs::read_to_string(done.join("log")).unwrap(), "6 /incoming/x.bin\n");
}

/// SIGHUP changing `on-upload` (set at start, so the sandbox allows the
/// shell) with two workers: the next upload on either worker runs the new
/// command, and removing it stops hooks.
#[test]
fn sighup_changing_and_removing_on_upload_reaches_every_worker() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("done")).unwrap();
    let done = root.path().join("done");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    let cfg = |tag: &str| format!("anonymous-write = true\non-upload = {:?}\n", format!("echo \"{tag} $LEANFTPD_VIRTUAL_PATH\" >> {}/log", done.display()));
    write_config(&file, &cfg("old"));
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap(), "--workers", "2"]);
    write_config(&file, &cfg("new"));
    srv.signal("HUP");
    wait_log(&srv, "SIGHUP: read", 1);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..8 {
        let mut c = anon_login(srv.addr);
        assert_eq!(stor_reply(&mut c, &format!("f{i}"), b"x").code, 226);
    }
    wait_until("8 hook lines", Duration::from_secs(10), || fs::read_to_string(done.join("log")).unwrap_or_default().lines().count() >= 8);
    let log = fs::read_to_string(done.join("log")).unwrap();
    assert!(log.lines().all(|l| l.starts_with("new ")), "{log}");
    write_config(&file, "anonymous-write = true\n");
    srv.signal("HUP");
    wait_log(&srv, "SIGHUP: read", 2);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..8 {
        let mut c = anon_login(srv.addr);
        assert_eq!(stor_reply(&mut c, &format!("g{i}"), b"x").code, 226);
    }
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(fs::read_to_string(done.join("log")).unwrap().lines().count(), 8);
}

/// A SIGHUP storm (users file and config re-read every 10 ms) while four
/// clients log in over and over on two workers: every login with the
/// right password gets 230, none is lost or refused.
#[test]
fn logins_during_a_sighup_storm_all_succeed() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("alice")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let users = work.path().join("users");
    fs::write(&users, format!("alice:{}:alice:rw\n", openssl_passwd("-5", "s4lt", "secret"))).unwrap();
    let file = work.path().join("c.toml");
    write_config(&file, &format!("users = {:?}\nlogin-cache = 0\nlogin-fail-delay = 0\n", users.to_str().unwrap()));
    let mut srv = Server::start(root.path(), &["--config", file.to_str().unwrap(), "--workers", "2"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = srv.pid();
    let stop2 = stop.clone();
    let storm = std::thread::spawn(move || {
        let mut n = 0;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status();
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        n
    });
    let addr = srv.addr;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut done = 0;
                while t0.elapsed() < Duration::from_secs(3) {
                    let mut c = Ctl::open(addr);
                    c.expect("USER alice", 331);
                    let r = c.cmd("PASS secret");
                    assert_eq!(r.code, 230, "login {done}: {r:?}");
                    c.expect("PWD", 257);
                    c.expect("QUIT", 221);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|h| h.join()).collect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let n = storm.join().unwrap();
    assert!(srv.child.as_mut().unwrap().try_wait().unwrap().is_none(), "{}", srv.log_text());
    for r in results {
        match r {
            Ok(done) => assert!(done > 0),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
    assert!(n > 50, "{n} SIGHUPs");
}

/// PROT P: ABOR of a paused download and of a paused upload, then a
/// transfer on the same session (the TLS data connection of a paused
/// upload has left the poll).
#[test]
fn under_tls_abor_during_a_pause_then_the_session_transfers_again() {
    use common::tls::{Order, TlsClient, TlsCtl, Version};
    let srv = TestServer::tls_with(|cfg| {
        cfg.max_download_rate = 16 * 1024;
        cfg.max_upload_rate = 16 * 1024;
        cfg.anonymous_write = true;
    });
    srv.put("f", &pattern(MIB, 3));
    let mut c = TlsCtl::open(srv.addr, TlsClient::new(Version::Tls13));
    c.login("anonymous", "x@y");
    c.protect();
    c.expect("TYPE I", 200);
    let (r, mut d) = c.open_transfer(Mode::Pasv, Order::ConnectFirst, "RETR f");
    assert!(r.is_preliminary(), "{r:?}");
    let mut some = vec![0u8; 20 * 1024];
    d.read_exact(&mut some).unwrap();
    c.send("ABOR");
    let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
    assert_eq!(codes, [426, 226]);
    drop(d);
    let (r, mut d) = c.open_transfer(Mode::Pasv, Order::ConnectFirst, "STOR up");
    assert!(r.is_preliminary(), "{r:?}");
    d.write_all(&pattern(64 * 1024, 4)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.send("ABOR");
    let r = c.reply();
    assert!(r.code == 426 || r.code == 226, "{r:?}");
    if r.code == 426 {
        assert_eq!(c.reply().code, 226);
    }
    drop(d);
    c.expect("NOOP", 200);
    c.upload(Mode::Pasv, Order::ConnectFirst, "STOR small", b"small after abor");
    assert_eq!(fs::read(srv.path("small")).unwrap(), b"small after abor");
    assert_eq!(c.retr(Mode::Pasv, Order::ConnectFirst, "small"), b"small after abor");
}

/// Hooks that fail (the command does not exist: the shell exits 127)
/// release their slot: after ten failures the gauges are 0, the counter
/// says 10 failed, and uploads go on (`--max-hooks 1`).
#[test]
fn hooks_that_fail_release_their_slots_and_are_counted() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    write_config(&file, "anonymous-write = true\nmax-hooks = 1\non-upload = \"/nonexistent/leanftpd-hook\"\n");
    let metrics = metrics_addr();
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap(), "--metrics-listen", &metrics]);
    let mut c = anon_login(srv.addr);
    for i in 0..10 {
        assert_eq!(stor_reply(&mut c, &format!("f{i}"), b"x").code, 226);
    }
    let url = format!("http://{metrics}/metrics");
    wait_until("10 failed hooks", Duration::from_secs(20), || scrape_url(&url).get("leanftpd_upload_hooks_finished_total{result=\"failed\"}") == 10);
    let m = scrape_url(&url);
    assert_eq!(m.get("leanftpd_upload_hooks_running"), 0, "{}", m.text);
    assert_eq!(m.get("leanftpd_upload_hooks_queued"), 0, "{}", m.text);
    c.expect("QUIT", 221);
}

/// Runs the binary with `args`; kills it if it still runs after `wait`
/// (then `None`: it started serving).
fn exit_within(args: &[&str], wait: Duration) -> Option<(Option<i32>, String)> {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + wait;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some((st.code(), fs::read_to_string(err.path()).unwrap()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A NUL byte (TOML's `\u0000`) where the option is a command or a path:
/// no command line or path can hold it, so it is a usage error at start
/// (exit 2, one line), not a server whose every hook fails to spawn.
fn nul_bytes_are_usage_errors(texts: &[&str]) {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("c.toml");
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()));
    for text in texts {
        fs::write(&file, text).unwrap();
        let got = exit_within(&["--root", root.path().to_str().unwrap(), "--listen", &listen, "--config", file.to_str().unwrap()], Duration::from_secs(5));
        let (code, stderr) = got.unwrap_or_else(|| panic!("{text:?}: the server started"));
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{text:?}: {stderr}");
    }
}

#[test]
fn a_nul_byte_in_a_path_is_a_usage_error() {
    nul_bytes_are_usage_errors(&[
        "xferlog = \"/tmp/x\\u0000y\"\n",
        "users = \"/tmp/u\\u0000\"\n",
        "anonymous-upload-dir = \"/in\\u0000coming\"\n",
        "tls-cert = \"/tmp/c\\u0000\"\ntls-key = \"/tmp/k\"\n",
    ]);
}

#[test]
fn a_nul_byte_in_the_on_upload_command_is_a_usage_error() {
    nul_bytes_are_usage_errors(&["anonymous-write = true\non-upload = \"true\\u0000; rm -rf /\"\n"]);
}

/// Kills its child on drop (even when the test fails).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--config c.toml` and `users = "users"`, relative to the directory the
/// server was started in: SIGHUP reads both again there, under the
/// sandbox too (a new user in the reloaded users file logs in).
#[test]
fn relative_config_and_users_paths_reload_on_sighup() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("alice")).unwrap();
    fs::create_dir(root.path().join("bob")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let alice = format!("alice:{}:alice:r\n", openssl_passwd("-6", "s4lt", "secret"));
    let bob = format!("bob:{}:bob:r\n", openssl_passwd("-6", "s4lt", "hunter2"));
    fs::write(work.path().join("users"), &alice).unwrap();
    fs::write(work.path().join("c.toml"), "users = \"users\"\nlogin-fail-delay = 0\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()));
    let addr: SocketAddr = listen.parse().unwrap();
    let log = work.path().join("log");
    let child = Child(
        std::process::Command::new(BIN)
            .current_dir(work.path())
            .args(["--root", root.path().to_str().unwrap(), "--listen", &listen, "--config", "c.toml"])
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the server to listen", Duration::from_secs(10), || is_listening(addr));
    let mut c = Ctl::open(addr);
    c.login("alice", "secret");
    let tmp = work.path().join("users.new");
    fs::write(&tmp, format!("{alice}{bob}")).unwrap();
    fs::rename(&tmp, work.path().join("users")).unwrap();
    let st = std::process::Command::new("kill").arg("-HUP").arg(child.0.id().to_string()).status().unwrap();
    assert!(st.success());
    wait_until("the reload", Duration::from_secs(10), || fs::read_to_string(&log).unwrap_or_default().contains("SIGHUP:"));
    std::thread::sleep(Duration::from_millis(300));
    let mut b = Ctl::open(addr);
    b.expect("USER bob", 331);
    let r = b.cmd("PASS hunter2");
    assert_eq!(r.code, 230, "{r:?}\n{}", fs::read_to_string(&log).unwrap_or_default());
    c.expect("NOOP", 200);
}
