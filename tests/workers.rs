//! `--workers N` (issue 12): the built binary with two reactor threads,
//! over real loopback sockets. Each test asserts what the workers share —
//! the global limits, exact whichever worker a connection lands on; the
//! passive port range; signals — and that connections do land on both.
//!
//! Which worker holds a session is read from the server's log: with
//! N > 1 every line carries its thread's name, `(worker 2) [c5
//! 127.0.0.1:40000 -] connected`, and the client knows its own address.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::process::Server;
use common::workers::{anon, open_when_free, tally, workers_of};
use common::{connect_from, openssl_passwd, sha256, wait_until, Ctl, Foreign, Mode};

#[test]
fn connections_land_on_both_workers() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &["--workers", "2"]);
    let mut clients: Vec<Ctl> = (0..40).map(|_| anon(&srv)).collect();
    for c in &mut clients {
        c.expect("NOOP", 200);
    }
    let locals: Vec<SocketAddr> = clients.iter().map(|c| c.local).collect();
    let t = tally(&workers_of(&srv, &locals));
    // The kernel hashes each connection's 4-tuple over the two listening
    // sockets: 40 connections all on one worker has odds of 2^-39.
    assert_eq!(t.keys().copied().collect::<Vec<_>>(), vec![1, 2], "sessions per worker: {t:?}");
    assert_eq!(t.values().sum::<usize>(), 40);
    for mut c in clients {
        c.expect("QUIT", 221);
    }
    let log = srv.log_text();
    assert!(log.contains("(worker 1) worker 1: listening on") && log.contains("(worker 2) worker 2: listening on"), "{log}");
}

#[test]
fn max_clients_is_exact_across_workers() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &["--workers", "2", "--max-clients", "10"]);
    let mut sessions: Vec<Ctl> = Vec::new();
    for _ in 0..10 {
        let mut c = open_when_free(&srv);
        c.login("anonymous", "x");
        sessions.push(c);
    }
    // Logged-in sessions are never evicted: the 11th, and every one after
    // it, is refused, whichever worker the kernel gives it to.
    for i in 0..6 {
        let mut c = Ctl::connect(srv.addr);
        assert_eq!(c.reply().code, 421, "connection {} of 10 allowed", 11 + i);
        c.expect_closed();
    }
    for c in &mut sessions {
        c.expect("NOOP", 200);
    }
    // One leaves: exactly one newcomer gets in (on either worker).
    sessions.pop().unwrap().expect("QUIT", 221);
    let mut newcomer = None;
    wait_until("the freed slot to be given out", Duration::from_secs(5), || {
        let mut c = Ctl::connect(srv.addr);
        match c.reply().code {
            220 => {
                newcomer = Some(c);
                true
            }
            code => {
                assert_eq!(code, 421);
                false
            }
        }
    });
    let mut newcomer = newcomer.unwrap();
    newcomer.login("anonymous", "x");
    let mut c = Ctl::connect(srv.addr);
    assert_eq!(c.reply().code, 421, "an 11th after the newcomer");
    let locals: Vec<SocketAddr> = sessions.iter().chain([&newcomer]).map(|c| c.local).collect();
    assert_eq!(workers_of(&srv, &locals).len(), 10);
}

#[test]
fn max_per_ip_is_exact_across_workers() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &["--workers", "2", "--max-per-ip", "5"]);
    let mut sessions: Vec<Ctl> = (0..5).map(|_| open_when_free(&srv)).collect();
    for i in 0..6 {
        let mut c = Ctl::connect(srv.addr);
        assert_eq!(c.reply().code, 421, "connection {} from 127.0.0.1 allowed", 6 + i);
    }
    // Another address has its own share.
    match connect_from("127.0.0.2", srv.addr, Duration::from_millis(800)) {
        Foreign::StillOpen(n) => assert!(n > 0, "no greeting for 127.0.0.2"),
        other => panic!("127.0.0.2 was refused: {other:?}"),
    }
    sessions.pop().unwrap().expect("QUIT", 221);
    let mut again = None;
    wait_until("the freed slot", Duration::from_secs(5), || {
        let mut c = Ctl::connect(srv.addr);
        let ok = c.reply().code == 220;
        if ok {
            again = Some(c);
        }
        ok
    });
    let mut c = Ctl::connect(srv.addr);
    assert_eq!(c.reply().code, 421, "a 6th from 127.0.0.1 after the freed slot was taken");
    for s in &mut sessions {
        s.expect("NOOP", 200);
    }
}

#[test]
fn sigterm_drains_both_workers_and_transfers_in_flight_complete() {
    let root = tempfile::tempdir().unwrap();
    let big = common::pattern(8 << 20, 12);
    fs::write(root.path().join("big.bin"), &big).unwrap();
    let mut srv = Server::start(root.path(), &["--workers", "2", "--shutdown-grace", "20"]);
    // Sessions until each worker holds at least two: one to download, one idle.
    let mut by_worker: BTreeMap<u32, Vec<Ctl>> = BTreeMap::new();
    for _ in 0..64 {
        let c = anon(&srv);
        let w = workers_of(&srv, &[c.local])[0];
        by_worker.entry(w).or_default().push(c);
        if by_worker.len() == 2 && by_worker.values().all(|v| v.len() >= 2) {
            break;
        }
    }
    assert_eq!(by_worker.len(), 2, "64 sessions, one worker: {:?}", by_worker.keys());
    let mut downloads = Vec::new();
    for (&w, sessions) in by_worker.iter_mut() {
        let mut c = sessions.pop().unwrap();
        let (r, mut data) = c.open_transfer(Mode::Pasv, "RETR big.bin");
        assert!(r.is_preliminary(), "worker {w}: {r:?}");
        let mut first = vec![0u8; 1 << 20];
        data.read_exact(&mut first).unwrap();
        downloads.push((w, c, data, first));
    }
    srv.signal("TERM");
    // Both listening sockets close: no worker accepts any more.
    wait_until("every listener to close", Duration::from_secs(5), || TcpStream::connect(srv.addr).is_err());
    // Idle sessions on both workers are told 421 and closed.
    for (w, sessions) in by_worker.iter_mut() {
        for c in sessions.iter_mut() {
            assert_eq!(c.reply().code, 421, "idle session on worker {w}");
            c.expect_closed();
        }
    }
    // The transfers in flight finish, whole.
    for (w, mut c, mut data, mut got) in downloads {
        data.read_to_end(&mut got).unwrap();
        assert_eq!(sha256(&got), sha256(&big), "download on worker {w}");
        assert_eq!(c.reply().code, 226, "worker {w}");
        assert_eq!(c.reply().code, 421, "worker {w}");
    }
    let status = srv.wait_exit(Duration::from_secs(10)).expect("no exit after the sessions closed");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let log = srv.log_text();
    assert!(log.contains("worker 1: shut down") && log.contains("worker 2: shut down"), "{log}");
}

#[test]
fn sighup_reloads_users_on_both_workers() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("alice")).unwrap();
    fs::create_dir(root.path().join("bob")).unwrap();
    fs::write(root.path().join("bob/bob.txt"), b"bob's\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let users = work.path().join("users");
    let alice = format!("alice:{}:alice:rw\n", openssl_passwd("-6", "s4lt", "secret"));
    fs::write(&users, &alice).unwrap();
    let srv = Server::start(
        root.path(),
        &["--workers", "2", "--users", users.to_str().unwrap(), "--login-fail-delay", "0", "--login-cache", "0"],
    );
    let mut c = Ctl::open(srv.addr);
    c.expect("USER bob", 331);
    c.expect("PASS hunter2", 530);
    drop(c);
    let tmp = work.path().join("users.new");
    fs::write(&tmp, format!("{alice}bob:{}:bob:r\n", openssl_passwd("-6", "s4lt", "hunter2"))).unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal("HUP");
    wait_until("both workers to reload", Duration::from_secs(5), || {
        srv.log_text().matches("SIGHUP: reloaded 2 users").count() == 2
    });
    // Bob now logs in on every connection, whichever worker takes it.
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let mut c = Ctl::open(srv.addr);
        c.login("bob", "hunter2");
        assert_eq!(c.listing(Mode::Pasv, "NLST").trim(), "bob.txt");
        sessions.push(c);
    }
    let locals: Vec<SocketAddr> = sessions.iter().map(|c| c.local).collect();
    let t = tally(&workers_of(&srv, &locals));
    assert_eq!(t.keys().copied().collect::<Vec<_>>(), vec![1, 2], "bob's sessions per worker: {t:?}");
}

#[test]
fn passive_ports_from_one_narrow_range_are_distinct_across_workers() {
    let root = tempfile::tempdir().unwrap();
    let files: Vec<Vec<u8>> = (0..12).map(|i| common::pattern(200_000 + i * 1000, i as u64)).collect();
    for (i, f) in files.iter().enumerate() {
        fs::write(root.path().join(format!("f{i}.bin")), f).unwrap();
    }
    // Twelve ports below the ephemeral range (no client socket takes one).
    let base = (20_000..30_000)
        .step_by(97)
        .find(|&b| (b..b + 12).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()))
        .expect("12 free ports in a row");
    let range = format!("{base}-{}", base + 11);
    let logs = tempfile::tempdir().unwrap();
    let xferlog = logs.path().join("xferlog");
    let srv = Server::start(
        root.path(),
        &["--workers", "2", "--passive-ports", &range, "--xferlog", xferlog.to_str().unwrap()],
    );
    let mut sessions: Vec<Ctl> = (0..13).map(|_| anon(&srv)).collect();
    let mut extra = sessions.pop().unwrap();
    // Every session holds a passive listener at once: twelve ports, no
    // two the same, each in the range, over both workers.
    let addrs: Vec<SocketAddr> = sessions.iter_mut().map(|c| c.pasv()).collect();
    let ports: HashSet<u16> = addrs.iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 12, "ports {addrs:?}");
    assert!(ports.iter().all(|p| (base..base + 12).contains(p)), "ports {ports:?} outside {range}");
    // The range is used up, on whichever worker the 13th session is.
    assert_eq!(extra.cmd("PASV").code, 425);
    let locals: Vec<SocketAddr> = sessions.iter().map(|c| c.local).collect();
    let t = tally(&workers_of(&srv, &locals));
    assert_eq!(t.len(), 2, "sessions per worker: {t:?}");
    // And every transfer succeeds, on its own port, at once.
    let mut running = Vec::new();
    for (i, (c, addr)) in sessions.iter_mut().zip(&addrs).enumerate() {
        c.send(&format!("RETR f{i}.bin"));
        let data = common::connect_data(*addr);
        running.push(data);
    }
    for (i, (c, mut data)) in sessions.iter_mut().zip(running).enumerate() {
        assert!(c.reply().is_preliminary());
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(sha256(&got), sha256(&files[i]), "f{i}.bin");
        assert_eq!(c.reply().code, 226);
    }
    // The ports are free again: the 13th gets one.
    wait_until("a port to be free again", Duration::from_secs(5), || extra.cmd("PASV").code == 227);
    // Both workers append to one xferlog (each its own O_APPEND
    // descriptor): one whole line per transfer, none lost or mixed.
    let text = fs::read_to_string(&xferlog).unwrap();
    let mut names: Vec<String> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 18, "xferlog line {l:?}");
            assert_eq!(f[17], "c", "incomplete transfer in {l:?}");
            f[8].to_string()
        })
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("/f{i}.bin")).collect();
    want.sort();
    assert_eq!(names, want);
}

/// The hostile client beside the honest one: silent connections fill
/// `--max-clients` over both workers; honest clients still get in, on
/// whichever worker (each worker closes its own oldest session that has
/// not logged in, and a flood lands on both).
#[test]
fn a_silent_flood_over_both_workers_does_not_lock_out_honest_clients() {
    use std::io::Write;
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.txt"), b"honest data").unwrap();
    let srv = Server::start(root.path(), &["--workers", "2", "--max-clients", "40", "--max-per-ip", "20000"]);
    let mut flood = Vec::with_capacity(400);
    for _ in 0..400 {
        if let Ok(mut s) = TcpStream::connect(srv.addr) {
            let _ = s.write_all(b"U");
            flood.push(s);
        }
    }
    assert!(flood.len() > 200, "the flood opened only {} connections", flood.len());
    let mut honest = Vec::new();
    for _ in 0..10 {
        let mut c = anon(&srv);
        assert_eq!(c.retr(Mode::Pasv, "f.txt"), b"honest data");
        honest.push(c);
    }
    let locals: Vec<SocketAddr> = honest.iter().map(|c| c.local).collect();
    assert_eq!(workers_of(&srv, &locals).len(), 10);
    assert!(srv.log_text().matches("evicted").count() >= 10, "no eviction logged");
    drop(flood);
}

/// FTPS on both workers, explicit (AUTH TLS) and implicit: every PROT P
/// download resumes its own control connection's session and arrives
/// whole; and one client's control connections resume each other's TLS
/// sessions whichever worker issued the ticket (the ticket key is shared).
#[cfg(feature = "tls")]
#[test]
fn ftps_on_both_workers_and_tls_sessions_resume_across_workers() {
    use common::tls::{binary_with, Order, TlsClient, TlsCtl, Version};
    use rustls::HandshakeKind;
    let implicit = SocketAddr::new("127.0.0.1".parse().unwrap(), common::process::free_port("127.0.0.1".parse().unwrap()));
    let b = binary_with(&["--workers", "2", "--implicit-tls-listen", &implicit.to_string()]);
    let mut locals = Vec::new();
    for i in 0..16 {
        let client = TlsClient::new(Version::Tls13);
        let mut c = if i % 2 == 0 { TlsCtl::open(b.srv.addr, client) } else { TlsCtl::implicit(implicit, client) };
        c.login("anonymous", "x");
        c.protect();
        assert_eq!(sha256(&c.retr(Mode::Pasv, Order::CommandFirst, "small.bin")), sha256(&b.small), "connection {i}");
        locals.push(c.local);
        c.expect("QUIT", 221);
    }
    let t = tally(&workers_of(&b.srv, &locals));
    assert_eq!(t.len(), 2, "FTPS sessions per worker: {t:?}");

    let client = TlsClient::new(Version::Tls13);
    let mut kinds = Vec::new();
    let mut locals = Vec::new();
    for _ in 0..12 {
        let mut c = TlsCtl::open(b.srv.addr, client.clone());
        // The reply carries the session tickets along.
        c.expect("NOOP", 200);
        kinds.push(c.tls().handshake_kind());
        locals.push(c.local);
        c.expect("QUIT", 221);
    }
    let workers = workers_of(&b.srv, &locals);
    assert!(workers.windows(2).any(|w| w[0] != w[1]), "no connection changed worker: {workers:?}");
    assert_eq!(kinds[0], Some(HandshakeKind::Full));
    for (i, k) in kinds.iter().enumerate().skip(1) {
        assert_eq!(*k, Some(HandshakeKind::Resumed), "connection {i} (workers {workers:?})");
    }
}

/// At `--max-clients`, a worker with no session of its own to evict (all
/// of its sessions logged in) evicts another worker's oldest session that
/// has not logged in, and its new client gets in: the slowloris defence
/// of one reactor holds across workers.
#[test]
fn at_the_limit_a_worker_evicts_another_workers_silent_session() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &["--workers", "2", "--max-clients", "10", "--max-per-ip", "1000"]);
    // Ten greeted sessions, on both workers.
    let mut sessions: Vec<(Ctl, u32)> = Vec::new();
    for _ in 0..40 {
        if sessions.len() == 10 {
            let ws: HashSet<u32> = sessions.iter().map(|s| s.1).collect();
            if ws.len() == 2 {
                break;
            }
            let (mut c, _) = sessions.remove(0);
            c.expect("QUIT", 221);
        }
        let c = open_when_free(&srv);
        let w = workers_of(&srv, &[c.local])[0];
        sessions.push((c, w));
    }
    let ws: HashSet<u32> = sessions.iter().map(|s| s.1).collect();
    assert_eq!((sessions.len(), ws.len()), (10, 2));
    // Worker `busy`'s sessions all log in; the other's stay silent.
    let busy = sessions[0].1;
    let (mut logged, mut silent): (Vec<_>, Vec<_>) = sessions.into_iter().partition(|s| s.1 == busy);
    for (c, _) in &mut logged {
        c.login("anonymous", "x");
    }
    // New clients until one lands on `busy`: it must get in by evicting a
    // silent session of the other worker.
    for _ in 0..40 {
        let mut c = Ctl::connect(srv.addr);
        let r = c.reply();
        assert_eq!(r.code, 220, "a new client at the limit: {r:?}");
        let w = workers_of(&srv, &[c.local])[0];
        if w != busy {
            // Evicted a silent session of its own worker; joins the silent.
            silent.push((c, w));
            continue;
        }
        c.login("anonymous", "x");
        c.expect("NOOP", 200);
        let log = srv.log_text();
        assert!(log.contains(&format!("for a new client of worker {busy}")), "no eviction across workers logged:\n{log}");
        // A silent session of the other worker was closed for it (its
        // socket shut down: end-of-file with no reply; one evicted by its
        // own worker reads `421` first).
        let mut closed = 0;
        let mut alive = Vec::new();
        for (mut s, _) in silent {
            s.set_read_timeout(Duration::from_millis(300));
            match s.try_reply() {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof || e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => alive.push(s),
                Err(e) => panic!("silent session: {e}"),
                Ok(r) => assert_eq!(r.code, 421, "silent session: {r:?}"),
            }
        }
        assert!(closed >= 1, "no silent session was shut down by the other worker");
        // Still exact: every session left logs in, they are ten, and an
        // 11th, with no one left to evict anywhere, is refused.
        for s in &mut alive {
            s.set_read_timeout(Duration::from_secs(10));
            s.login("anonymous", "x");
        }
        for (s, _) in &mut logged {
            s.expect("NOOP", 200);
        }
        assert_eq!(logged.len() + 1 + alive.len(), 10, "sessions open");
        let mut extra = Ctl::connect(srv.addr);
        assert_eq!(extra.reply().code, 421, "an 11th with every session logged in");
        return;
    }
    panic!("40 new clients and none landed on worker {busy}");
}

/// A second server on a port the first's workers hold is an error (exit
/// 1), not a silent share of its connections: the first socket of a
/// group binds before it sets `SO_REUSEPORT`. `--workers` out of range is
/// a usage error (exit 2).
#[test]
fn a_port_held_by_another_server_is_exit_1_and_bad_workers_exit_2() {
    use std::process::{Command, Stdio};
    let root = tempfile::tempdir().unwrap();
    let first = Server::start(root.path(), &["--workers", "2"]);
    let run = |args: &[&str]| {
        let mut child = Command::new(common::process::BIN)
            .arg("--root")
            .arg(root.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                return (st.code(), err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("leanftpd {args:?} did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let addr = first.addr.to_string();
    for workers in ["1", "2"] {
        let (code, err) = run(&["--listen", &addr, "--workers", workers]);
        assert_eq!(code, Some(1), "--workers {workers}: {err}");
        assert!(err.contains("cannot listen on") && err.contains("in use"), "{err}");
    }
    for bad in ["0", "257", "lots"] {
        let (code, err) = run(&["--listen", "127.0.0.1:0", "--workers", bad]);
        assert_eq!(code, Some(2), "--workers {bad}: {err}");
        assert!(err.contains("--workers"), "{err}");
    }
    // The first server still serves.
    let mut c = anon(&first);
    c.expect("NOOP", 200);
}
