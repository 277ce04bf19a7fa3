//! `--config FILE` (issue 13) with the real binary over loopback sockets:
//! a bad file is one line naming its line and exit code 2; the file's
//! values are in force and the command line overrides them; SIGHUP reads
//! the file again and applies a new user and a new limit to new sessions
//! (one worker and two); a file broken on SIGHUP keeps the running
//! configuration.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{self as proc, Server, BIN};
use common::*;

/// Runs the binary with `args` and returns its exit code and stderr.
fn run_bin(args: &[&str]) -> (Option<i32>, String) {
    let out = proc::run(proc::cmd(Path::new(BIN), args), None);
    (out.code(), out.stderr)
}

#[test]
fn a_bad_file_exits_2_with_one_line_naming_the_file_and_the_line() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("leanftpd.toml");
    let path = file.to_str().unwrap();
    let cases: &[(&str, String)] = &[
        (
            "# limits\nmax-per-ip = 4\n\nmax-clients = \"lots\"\n",
            format!("leanftpd: {path}:4: max-clients = \"lots\": expected a number\n"),
        ),
        ("anonymous = true\nfrobnicate = 1\n", format!("leanftpd: {path}:2: unknown key frobnicate (see --help)\n")),
        ("anonymous = \"yes\"\n", format!("leanftpd: {path}:1: anonymous = \"yes\": expected true or false\n")),
        (
            "idle-timeout = 30\n[server]\nlisten = \"127.0.0.1:21\"\n",
            format!("leanftpd: {path}:2: server: the file has no tables (no [section], no dotted keys), only top-level `key = value` lines\n"),
        ),
        (
            "passive-ports = \"80-90\"\n",
            format!("leanftpd: {path}:1: passive-ports = \"80-90\": expected MIN-MAX with 1024 <= MIN <= MAX <= 65535\n"),
        ),
    ];
    for (text, want) in cases {
        fs::write(&file, text).unwrap();
        let (code, stderr) = run_bin(&["--root", root.path().to_str().unwrap(), "--config", path]);
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert_eq!(&stderr, want, "{text:?}");
    }
    let (code, stderr) = run_bin(&["--root", root.path().to_str().unwrap(), "--config", "/nonexistent/leanftpd.toml"]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr, "leanftpd: --config /nonexistent/leanftpd.toml: No such file or directory (os error 2)\n");
    let (code, stderr) = run_bin(&["--root", root.path().to_str().unwrap(), "--max-clients=lots"]);
    assert_eq!((code, stderr.as_str()), (Some(2), "leanftpd: --max-clients lots: expected a number\n"));
}

/// A first session, once the start probe's own connection has been
/// released (with `max-per-ip = 1` it holds the address's one slot for a
/// moment after its QUIT).
fn first_session(addr: SocketAddr) -> Ctl {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Ctl::connect(addr);
        let r = c.reply();
        if r.code == 220 {
            return c;
        }
        assert!(Instant::now() < deadline, "no session slot: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reply to a new connection from 127.0.0.1: `220` or `421`.
fn greeting(addr: SocketAddr) -> u16 {
    Ctl::connect(addr).reply().code
}

#[test]
fn the_files_values_are_in_force_and_the_command_line_overrides_them() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("leanftpd.toml");
    // `listen` is overridden by the harness's own --listen.
    fs::write(&file, "listen = \"127.0.0.1:1\"\nmax-per-ip = 1\n").unwrap();
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap()]);
    let mut held = first_session(srv.addr);
    assert_eq!(greeting(srv.addr), 421, "max-per-ip = 1 from the file");
    held.expect("NOOP", 200);
    drop(srv);
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap(), "--max-per-ip", "2"]);
    let _held = first_session(srv.addr);
    assert_eq!(greeting(srv.addr), 220, "--max-per-ip 2 over the file's 1");
}

fn sighup_applies_a_new_user_and_a_new_limit(workers: &str) {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("alice")).unwrap();
    fs::create_dir(root.path().join("bob")).unwrap();
    fs::write(root.path().join("bob/bob.txt"), b"bob's\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let alice = format!("alice:{}:alice:rw\n", openssl_passwd("-6", "s4lt", "secret"));
    let bob = format!("bob:{}:bob:r\n", openssl_passwd("-6", "s4lt", "hunter2"));
    let (users_a, users_b) = (work.path().join("users.a"), work.path().join("users.b"));
    fs::write(&users_a, &alice).unwrap();
    fs::write(&users_b, format!("{alice}{bob}")).unwrap();
    let file = work.path().join("leanftpd.toml");
    // alice and bob each get a file worth several 0.1 s buckets at 64K.
    fs::write(root.path().join("alice/a.bin"), vec![b'a'; 96 * 1024]).unwrap();
    fs::write(root.path().join("bob/b.bin"), vec![b'b'; 96 * 1024]).unwrap();
    let write_file = |users: &Path, per_ip: u32, ports: &str, rate: &str| {
        let text = format!(
            "users = {:?}\nmax-per-ip = {per_ip}\nlogin-fail-delay = 0\nlogin-cache = 0\npassive-ports = {ports:?}\nmax-download-rate = {rate:?}\n",
            users.to_str().unwrap()
        );
        let tmp = work.path().join("leanftpd.toml.new");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, &file).unwrap();
    };
    write_file(&users_a, 1, "40000-40999", "64K");
    let metrics = format!("127.0.0.1:{}", proc::free_port("127.0.0.1".parse().unwrap()));
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap(), "--workers", workers, "--metrics-listen", &metrics]);
    let pauses = || {
        common::metrics::scrape_url(&format!("http://{metrics}/metrics")).get("leanftpd_transfer_throttle_pauses_total{direction=\"download\"}")
    };
    let n: usize = workers.parse().unwrap();
    // Before: bob is unknown, and a second connection from 127.0.0.1 is refused.
    let mut held = first_session(srv.addr);
    held.expect("USER bob", 331);
    held.expect("PASS hunter2", 530);
    held.login("alice", "secret");
    assert_eq!(greeting(srv.addr), 421, "max-per-ip 1 before SIGHUP");
    // The file's rate is in force: alice's download is paused by it.
    assert_eq!(held.retr(Mode::Pasv, "a.bin").len(), 96 * 1024);
    let paused = pauses();
    assert!(paused > 0, "a 96 KiB download at 64K pauses");

    write_file(&users_b, 2, "41000-41999", "0");
    srv.signal("HUP");
    let file_name = file.display().to_string();
    wait_until("every worker to reload", Duration::from_secs(5), || {
        srv.log_text().matches("SIGHUP: reloaded 2 users").count() == n
    });
    let log = srv.log_text();
    assert_eq!(log.matches(&format!("SIGHUP: passive-ports changed in {file_name}; restart to apply")).count(), 1, "{log}");
    assert_eq!(
        log.matches(&format!("SIGHUP: read {file_name}: users, max-per-ip, max-download-rate in force for new sessions")).count(),
        1,
        "{log}"
    );

    // After: a second connection is let in and bob logs in; a third is refused.
    let mut second = Ctl::open(srv.addr);
    second.login("bob", "hunter2");
    let mut names: Vec<String> = second.listing(Mode::Pasv, "NLST").lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["b.bin", "bob.txt"]);
    assert_eq!(greeting(srv.addr), 421, "max-per-ip 2 after SIGHUP");
    // The new session is not limited any more: its download never pauses.
    assert_eq!(second.retr(Mode::Pasv, "b.bin").len(), 96 * 1024);
    assert_eq!(pauses(), paused, "a session after the reload has no rate");
    // The session from before is still served, still as alice, and keeps
    // the rate it logged in with.
    held.expect("PWD", 257);
    held.expect("NOOP", 200);
    assert_eq!(held.retr(Mode::Pasv, "a.bin").len(), 96 * 1024);
    assert!(pauses() > paused, "a session keeps the rate it logged in with");
}

#[test]
fn sighup_applies_a_new_user_and_a_new_limit_to_new_sessions() {
    sighup_applies_a_new_user_and_a_new_limit("1");
}

#[test]
fn sighup_applies_a_new_user_and_a_new_limit_with_two_workers() {
    sighup_applies_a_new_user_and_a_new_limit("2");
}

#[test]
fn a_file_broken_on_sighup_keeps_the_running_configuration() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("leanftpd.toml");
    fs::write(&file, "max-per-ip = 1\n").unwrap();
    let srv = Server::start(root.path(), &["--config", file.to_str().unwrap()]);
    let mut held = first_session(srv.addr);
    fs::write(&file, "# now broken\nanonymous = true\nmax-per-ip = \"two\"\n").unwrap();
    srv.signal("HUP");
    let want = format!("SIGHUP: keeping the running configuration: {}:3: max-per-ip = \"two\": expected a number", file.display());
    wait_until("the reload error", Duration::from_secs(5), || srv.log_text().contains(&want));
    assert_eq!(greeting(srv.addr), 421, "the old max-per-ip 1 is still in force");
    held.expect("USER anonymous", 331);
    held.expect("PASS a@b", 230);
    // A fixed file is taken on the next SIGHUP.
    fs::write(&file, "max-per-ip = 2\n").unwrap();
    srv.signal("HUP");
    wait_until("the reload", Duration::from_secs(5), || srv.log_text().contains("max-per-ip in force for new sessions"));
    assert_eq!(greeting(srv.addr), 220, "max-per-ip 2 after the fixed file");
}
