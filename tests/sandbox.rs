//! The Landlock sandbox (issue 13, `src/sandbox.rs`), on the built binary:
//! the test-only `SITE OPEN <real path>` (a plain `open(2)`, bypassing the
//! VFS jail) and `SITE CONNECT <ip:port>` (a plain TCP connect) of the
//! `fault-injection` feature report the errno the kernel gave, and the
//! thread that ran them (`200 errno=N thread=NAME`).
//!
//! These tests need a kernel with Landlock ABI ≥ 6 (Linux 6.12): on an
//! older one they fail, they do not skip.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::Server;
use common::{openssl_passwd, sha256, wait_until, Ctl, Mode};

const EACCES: i32 = 13;
const ECONNREFUSED: i32 = 111;

/// `SITE OPEN`/`SITE CONNECT`: (errno, thread name).
#[track_caller]
fn probe(c: &mut Ctl, what: &str, arg: &str) -> (i32, String) {
    let r = c.expect(&format!("SITE {what} {arg}"), 200);
    let t = r.text();
    let errno = t.split("errno=").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.trim().parse().ok());
    let thread = t.split("thread=").nth(1).map(|s| s.trim().to_string());
    match (errno, thread) {
        (Some(e), Some(th)) => (e, th),
        _ => panic!("SITE {what} {arg}: unexpected reply {t:?}"),
    }
}

/// A served root, a file beside it (outside every root) and one inside.
struct Tree {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("inside.txt"), b"inside").unwrap();
        fs::create_dir(dir.path().join("elsewhere")).unwrap();
        fs::write(dir.path().join("elsewhere/outside.txt"), b"outside").unwrap();
        Tree { dir, root }
    }
    fn root(&self) -> &Path {
        &self.root
    }
    fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_string()
    }
}

/// A users file `alice:…:alice:rw` (home `root/alice`) beside the root, in
/// a directory of its own; the password is `secret`.
fn users_file(t: &Tree) -> String {
    fs::create_dir_all(t.dir.path().join("root/alice")).unwrap();
    fs::create_dir_all(t.dir.path().join("etc")).unwrap();
    let hash = openssl_passwd("-6", "s4lt", "secret");
    let path = t.p("etc/users");
    fs::write(&path, format!("alice:{hash}:alice:rw\n")).unwrap();
    path
}

#[test]
fn open_outside_the_roots_is_eacces_under_the_sandbox_and_allowed_without_it() {
    let t = Tree::new();
    assert!(Path::new("/etc/hostname").exists(), "/etc/hostname is this test's system file outside the roots");
    let srv = Server::start(t.root(), &[]);
    let log = srv.log_text();
    assert!(log.contains("sandbox: Landlock ABI 6+ enforced") && log.contains("scoped: signals, abstract unix sockets"), "{log}");
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x");
    assert_eq!(probe(&mut c, "OPEN", &t.p("elsewhere/outside.txt")).0, EACCES);
    assert_eq!(probe(&mut c, "OPEN", "/etc/hostname").0, EACCES);
    assert_eq!(probe(&mut c, "OPEN", &t.p("root/inside.txt")).0, 0);
    // The VFS jail and the sandbox agree: inside is served.
    assert_eq!(c.retr(Mode::Pasv, "inside.txt"), b"inside");
    drop(c);
    drop(srv);

    let srv = Server::start(t.root(), &["--no-sandbox"]);
    assert!(srv.log_text().contains("sandbox: off (--no-sandbox)"), "{}", srv.log_text());
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x");
    assert_eq!(probe(&mut c, "OPEN", &t.p("elsewhere/outside.txt")).0, 0);
    assert_eq!(probe(&mut c, "OPEN", "/etc/hostname").0, 0);
    assert_eq!(probe(&mut c, "OPEN", &t.p("root/inside.txt")).0, 0);
}

#[test]
fn connect_below_1024_is_eacces_under_the_sandbox_and_above_it_is_allowed() {
    let t = Tree::new();
    let high = TcpListener::bind("127.0.0.1:0").unwrap();
    let high = high.local_addr().unwrap().to_string();
    let srv = Server::start(t.root(), &[]);
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x");
    assert_eq!(probe(&mut c, "CONNECT", "127.0.0.1:25").0, EACCES);
    assert_eq!(probe(&mut c, "CONNECT", "127.0.0.1:1023").0, EACCES);
    assert_eq!(probe(&mut c, "CONNECT", &high).0, 0);
    drop(c);
    drop(srv);

    let srv = Server::start(t.root(), &["--no-sandbox"]);
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x");
    let (e, _) = probe(&mut c, "CONNECT", "127.0.0.1:25");
    assert!(e == 0 || e == ECONNREFUSED, "port 25 without the sandbox: errno {e}");
    assert_eq!(probe(&mut c, "CONNECT", &high).0, 0);
}

/// `/proc/PID/task/*`: (thread name, NoNewPrivs) of every thread.
fn threads(pid: u32) -> Vec<(String, bool)> {
    let mut v = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = fs::read_to_string(task.join("comm")).unwrap_or_default().trim().to_string();
        let status = fs::read_to_string(task.join("status")).unwrap_or_default();
        let nnp = status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1'));
        v.push((comm, nnp));
    }
    v.sort();
    v
}

/// With `--workers 2` every thread is confined: sessions served by each
/// worker are refused outside the roots and below port 1024, also after a
/// login checked by the password helper; and every thread of the process
/// (main/signal thread, both workers, both helpers) carries
/// `NoNewPrivs: 1`, which `landlock_restrict_self` requires and which only
/// threads created after it inherit (without the sandbox: none has it).
#[test]
fn every_worker_and_every_helper_thread_is_confined() {
    let t = Tree::new();
    let users = users_file(&t);
    let high = TcpListener::bind("127.0.0.1:0").unwrap();
    let high = high.local_addr().unwrap().to_string();
    let srv = Server::start(t.root(), &["--workers", "2", "--users", &users, "--anonymous"]);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..24 {
        let mut c = Ctl::open(srv.addr);
        // Half through the password helper, half anonymous.
        if i % 2 == 0 {
            c.login("alice", "secret");
        } else {
            c.login("anonymous", "x");
        }
        let (e, thread) = probe(&mut c, "OPEN", &t.p("elsewhere/outside.txt"));
        assert_eq!(e, EACCES, "open outside on {thread}");
        assert_eq!(probe(&mut c, "OPEN", "/etc/hostname").0, EACCES, "on {thread}");
        assert_eq!(probe(&mut c, "OPEN", &users).0, 0, "the users file stays readable, on {thread}");
        assert_eq!(probe(&mut c, "CONNECT", "127.0.0.1:25").0, EACCES, "on {thread}");
        assert_eq!(probe(&mut c, "CONNECT", &high).0, 0, "on {thread}");
        seen.insert(thread);
        c.expect("QUIT", 221);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["worker 1".to_string(), "worker 2".to_string()]);
    let tasks = threads(srv.pid());
    let names: Vec<&str> = tasks.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "leanftpd-helper").count(), 2, "{tasks:?}");
    assert!(names.contains(&"worker 1") && names.contains(&"worker 2"), "{tasks:?}");
    assert!(tasks.iter().all(|t| t.1), "a thread without NoNewPrivs (not confined): {tasks:?}");
    drop(srv);

    let srv = Server::start(t.root(), &["--workers", "2", "--users", &users, "--anonymous", "--no-sandbox"]);
    let tasks = threads(srv.pid());
    assert!(tasks.len() >= 5 && tasks.iter().all(|t| !t.1), "{tasks:?}");
}

/// SIGHUP under the sandbox: a users file replaced by `rename(2)` (a new
/// inode) is read; a new user whose home the sandbox covers (beneath
/// alice's) logs in and downloads; one whose home it does not cover is
/// named in a warning (a restart applies it) and stays unreachable.
#[test]
fn sighup_reloads_a_renamed_users_file_and_warns_about_uncovered_homes() {
    let t = Tree::new();
    let users = users_file(&t);
    fs::create_dir_all(t.root.join("alice/pub")).unwrap();
    fs::write(t.root.join("alice/pub/b.txt"), b"for bob").unwrap();
    let srv = Server::start(t.root(), &["--users", &users]);
    let hash = openssl_passwd("-6", "s4lt", "secret");
    let old = fs::read_to_string(&users).unwrap();
    let new = format!("{old}bob:{hash}:alice/pub:r\ncarol:{hash}:{}:rw\n", t.p("elsewhere"));
    let tmp = t.p("etc/users.new");
    fs::write(&tmp, new).unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal("HUP");
    wait_until("the reload", Duration::from_secs(10), || srv.log_text().contains("SIGHUP: reloaded 3 users"));
    let log = srv.log_text();
    assert!(log.contains(&format!("the sandbox does not cover the home of carol ({})", t.p("elsewhere"))), "{log}");
    assert!(!log.contains("bob (") && !log.contains("alice ("), "{log}");
    let mut c = Ctl::open(srv.addr);
    c.login("bob", "secret");
    assert_eq!(c.retr(Mode::Pasv, "b.txt"), b"for bob");
    assert_eq!(probe(&mut c, "OPEN", &t.p("elsewhere/outside.txt")).0, EACCES);
    c.expect("QUIT", 221);
    let mut c = Ctl::open(srv.addr);
    c.login("carol", "secret");
    c.send("LIST");
    let r = c.reply();
    assert!(r.code >= 400, "carol's uncovered home listed: {r:?}");
}

/// Everyday operation with every part confined at once: two workers, a
/// passive range, an xferlog that does not exist yet, metrics: LIST, RETR,
/// STOR, MKD, RNFR/RNTO, DELE, RMD, active mode; the xferlog gets its
/// records but the server itself cannot read it back (write-only rule).
#[test]
fn normal_operation_under_the_sandbox() {
    let t = Tree::new();
    let users = users_file(&t);
    let xferlog = t.p("log/xferlog");
    fs::create_dir(t.p("log")).unwrap();
    let metrics_port = common::process::free_port("127.0.0.1".parse().unwrap());
    let metrics = format!("127.0.0.1:{metrics_port}");
    let pasv_lo = common::process::free_port("127.0.0.1".parse().unwrap());
    let range = format!("{pasv_lo}-{}", pasv_lo.saturating_add(20));
    let srv = Server::start(
        t.root(),
        &["--workers", "2", "--users", &users, "--xferlog", &xferlog, "--metrics-listen", &metrics, "--passive-ports", &range],
    );
    assert!(srv.log_text().contains(&format!("TCP bind on {range}")), "{}", srv.log_text());
    let body = common::pattern(300_000, 7);
    for mode in [Mode::Pasv, Mode::Port] {
        let mut c = Ctl::open(srv.addr);
        c.login("alice", "secret");
        c.expect("TYPE I", 200);
        c.expect("MKD d", 257);
        let (_, mut data) = c.open_transfer(mode, "STOR d/up.bin");
        data.write_all(&body).unwrap();
        drop(data);
        assert_eq!(c.reply().code, 226);
        assert_eq!(sha256(&fs::read(t.root.join("alice/d/up.bin")).unwrap()), sha256(&body));
        assert_eq!(c.retr(mode, "d/up.bin"), body);
        let (_, mut data) = c.open_transfer(mode, "LIST d");
        let mut list = String::new();
        data.read_to_string(&mut list).unwrap();
        drop(data);
        assert_eq!(c.reply().code, 226);
        assert!(list.contains("up.bin"), "{list}");
        c.expect("RNFR d/up.bin", 350);
        c.expect("RNTO moved.bin", 250);
        assert!(t.root.join("alice/moved.bin").exists());
        c.expect("DELE moved.bin", 250);
        c.expect("RMD d", 250);
        assert_eq!(probe(&mut c, "OPEN", &xferlog).0, EACCES, "the xferlog is not readable");
        c.expect("QUIT", 221);
    }
    wait_until("xferlog records", Duration::from_secs(10), || {
        fs::read_to_string(&xferlog).unwrap_or_default().lines().count() == 4
    });
    let (code, _, text) = common::metrics::curl(&["-s"], &format!("http://{metrics}/metrics"));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("leanftpd_"), "{text}");
}
