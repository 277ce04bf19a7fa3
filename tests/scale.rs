//! Where the four pieces of issue 12 meet (`--workers N` with the metrics,
//! systemd and the PROXY protocol): the built binary over loopback, with
//! two workers, checked for exact outcomes — the sums of one scrape over
//! both workers, one readiness for the whole process, limits that count
//! the real client over both workers.
//!
//! Which worker holds a session is read from the server's log (see
//! `common::workers`); the kernel decides, so a test opens connections
//! until each worker holds what it needs (bounded: the odds of 40
//! connections all on one worker are 2^-39).

#![cfg(all(feature = "metrics", feature = "proxy"))]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::balancer::{connect_bound, seen_as, v1, v2};
use common::metrics::{drain, scrape_url, Ftp, Metrics};
use common::process::{free_port, Server};
use common::systemd::{field, next_message, socket_activate};
use common::workers::{worker_of_line, workers_of};
use common::{openssl_passwd, pattern, read_to_eof_within, sha256, sha256_file, wait_until, Ctl, Mode, IO_TIMEOUT};

/// Connections a test opens at most to find one on each worker.
const TRIES: usize = 40;

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A free `127.0.0.1:PORT` for `--metrics-listen`, and its URL.
fn metrics_addr() -> (String, String) {
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    (addr.to_string(), format!("http://{addr}/metrics"))
}

/// `after - before` of one series.
#[track_caller]
fn delta(after: &Metrics, before: &Metrics, series: &str) -> i64 {
    after.get(series) - before.get(series)
}

/// The worker whose log says it took the client at `local`.
#[track_caller]
fn worker_of_ftp(srv: &Server, f: &Ftp) -> u32 {
    workers_of(srv, &[f.s.local_addr().unwrap()])[0]
}

// ---------------------------------------------------------------------------
// Metrics: one scrape, the sum over both workers

/// Sessions on both workers (the log says which), a failed login, RETR
/// and STOR on each worker: one scrape of the one metrics listener shows
/// the exact sums of what every client counted itself, and promtool finds
/// the text clean.
#[test]
fn one_scrape_sums_both_workers_exactly() {
    let root = tempfile::tempdir().unwrap();
    let small = pattern(100_003, 7);
    fs::write(root.path().join("small.bin"), &small).unwrap();
    let (maddr, url) = metrics_addr();
    let srv = Server::start(root.path(), &["--workers", "2", "--metrics-listen", &maddr, "--anonymous-write", "--login-fail-delay", "0"]);
    // The start-up probe's session (`process::Server`) is gone first.
    wait_until("the start-up probe's session to close", IO_TIMEOUT, || scrape_url(&url).get("leanftpd_sessions_open") == 0);
    let before = scrape_url(&url);

    let mut on: BTreeMap<u32, Ftp> = BTreeMap::new();
    let mut others: Vec<Ftp> = Vec::new();
    for _ in 0..TRIES {
        let f = Ftp::connect(srv.addr);
        let w = worker_of_ftp(&srv, &f);
        match on.entry(w) {
            std::collections::btree_map::Entry::Occupied(_) => others.push(f),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(f);
            }
        }
        if on.len() == 2 {
            break;
        }
    }
    assert_eq!(on.keys().copied().collect::<Vec<_>>(), vec![1, 2], "{TRIES} connections, one worker");

    // A failed login, and the connections that were not needed, leave.
    let mut bad = Ftp::connect(srv.addr);
    bad.expect("USER nobody", 331);
    bad.expect("PASS wrong", 530);
    bad.expect("QUIT", 221);
    for o in &mut others {
        o.expect("QUIT", 221);
    }

    // On each worker: a login, a RETR and a STOR.
    let mut uploaded = 0u64;
    for (&w, c) in on.iter_mut() {
        c.expect("USER anonymous", 331);
        c.expect("PASS guest@", 230);
        c.expect("TYPE I", 200);
        let mut d = c.data();
        c.start("RETR small.bin");
        let mut got = Vec::new();
        d.read_to_end(&mut got).unwrap();
        assert_eq!(c.reply().0, 226, "worker {w}: RETR");
        assert_eq!(sha256(&got), sha256(&small), "worker {w}: RETR");
        let up = pattern(70_001 + w as usize * 1000, 11 + u64::from(w));
        let mut d = c.data();
        c.start(&format!("STOR up{w}.bin"));
        d.write_all(&up).unwrap();
        d.shutdown(Shutdown::Write).unwrap();
        assert_eq!(drain(d), 0);
        assert_eq!(c.reply().0, 226, "worker {w}: STOR");
        assert_eq!(sha256_file(&root.path().join(format!("up{w}.bin"))), sha256(&up), "worker {w}: STOR");
        uploaded += up.len() as u64;
    }
    wait_until("the sessions that left to close", IO_TIMEOUT, || scrape_url(&url).get("leanftpd_sessions_open") == 2);

    let m = scrape_url(&url);
    m.promtool_clean();
    let clients: Vec<&Ftp> = on.values().chain([&bad]).chain(others.iter()).collect();
    let d = |series: &str| delta(&m, &before, series);
    assert_eq!(d("leanftpd_sessions_total"), clients.len() as i64);
    assert_eq!(m.get("leanftpd_sessions_open"), 2);
    assert_eq!(d("leanftpd_logins_total{result=\"ok\"}"), 2);
    assert_eq!(d("leanftpd_logins_total{result=\"failed\"}"), 1);
    assert_eq!(d("leanftpd_transfers_total{kind=\"retr\",result=\"ok\"}"), 2);
    assert_eq!(d("leanftpd_transfers_total{kind=\"stor\",result=\"ok\"}"), 2);
    for result in ["failed", "aborted"] {
        for kind in ["retr", "stor"] {
            assert_eq!(d(&format!("leanftpd_transfers_total{{kind=\"{kind}\",result=\"{result}\"}}")), 0);
        }
    }
    let commands = [("USER", 3), ("PASS", 3), ("TYPE", 2), ("EPSV", 4), ("RETR", 2), ("STOR", 2), ("QUIT", 1 + others.len() as i64)];
    for (verb, n) in commands {
        assert_eq!(d(&format!("leanftpd_commands_total{{verb=\"{verb}\"}}")), n, "{verb}");
    }
    for class in 0..5 {
        let want: u64 = clients.iter().map(|c| c.classes[class]).sum();
        assert_eq!(d(&format!("leanftpd_replies_total{{class=\"{}xx\"}}", class + 1)), want as i64, "{}xx", class + 1);
    }
    let sent: u64 = clients.iter().map(|c| c.sent).sum();
    let received: u64 = clients.iter().map(|c| c.received).sum();
    assert_eq!(d("leanftpd_received_bytes_total{channel=\"control\"}"), sent as i64);
    assert_eq!(d("leanftpd_sent_bytes_total{channel=\"control\"}"), received as i64);
    assert_eq!(d("leanftpd_sent_bytes_total{channel=\"data\"}"), 2 * small.len() as i64);
    assert_eq!(d("leanftpd_received_bytes_total{channel=\"data\"}"), uploaded as i64);
    for gauge in ["leanftpd_passive_listeners_open", "leanftpd_data_connections_open", "leanftpd_upload_temp_files_open"] {
        assert_eq!(m.get(gauge), 0, "{gauge}");
    }
    m.family_is("leanftpd_limit_refusals_total", &[]);
    for c in on.values_mut() {
        c.expect("QUIT", 221);
    }
    wait_until("every session to close", IO_TIMEOUT, || scrape_url(&url).get("leanftpd_sessions_open") == 0);
}

/// One metrics listener for the process (the first worker's), so its
/// bound of 8 scrapes at once is the process's: with 8 scrapers that never
/// send a request, a 9th is answered `503` and counted once, while FTP
/// clients on both workers are served; once the 8 leave, a scrape works.
#[test]
fn the_scrape_bound_holds_for_the_process_with_two_workers() {
    let root = tempfile::tempdir().unwrap();
    let (maddr, url) = metrics_addr();
    let srv = Server::start(root.path(), &["--workers", "2", "--metrics-listen", &maddr]);
    let before = scrape_url(&url);
    let maddr: SocketAddr = maddr.parse().unwrap();
    let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect_timeout(&maddr, IO_TIMEOUT).unwrap()).collect();
    // One metrics listener for the process: the 9th scraper takes the
    // place of the oldest silent one (closed with nothing said).
    std::thread::sleep(Duration::from_millis(100));
    let ninth = TcpStream::connect_timeout(&maddr, IO_TIMEOUT).unwrap();
    let evicted = read_to_eof_within(&mut idle[0], IO_TIMEOUT).expect("the oldest silent scraper is closed");
    assert!(evicted.is_empty(), "{}", String::from_utf8_lossy(&evicted));
    let mut on = BTreeMap::new();
    for _ in 0..TRIES {
        let (c, w) = session_on(&srv, srv.addr, "anonymous", "x");
        on.entry(w).or_insert(c);
        if on.len() == 2 {
            break;
        }
    }
    assert_eq!(on.len(), 2, "{TRIES} sessions, one worker");
    for c in on.values_mut() {
        c.expect("NOOP", 200);
    }
    drop(idle);
    drop(ninth);
    // Each silent scraper that made room, or a scrape refused while all
    // were being answered, counts once.
    let (mut m, mut refused) = (None, 1);
    wait_until("a scrape once the idle scrapers left", IO_TIMEOUT, || {
        let (status, _, body) = common::metrics::curl(&[], &url);
        match status {
            200 => m = Some(Metrics::parse(body)),
            503 => refused += 1,
            other => panic!("scrape: {other} {body}"),
        }
        status == 200
    });
    let m = m.unwrap();
    assert_eq!(delta(&m, &before, "leanftpd_limit_refusals_total{limit=\"metrics_scrapes\"}"), refused);
}

/// `--max-clients 4` over two workers: every connection past the fourth
/// is refused `421`, on either worker (the debug log names the worker of
/// each refusal), and counted once under `limit="max_clients"`, with no
/// session and one 4xx reply each.
#[test]
fn max_clients_refusals_over_both_workers_are_counted_exactly() {
    let root = tempfile::tempdir().unwrap();
    let (maddr, url) = metrics_addr();
    let srv = Server::start(root.path(), &["--workers", "2", "--max-clients", "4", "--metrics-listen", &maddr, "--log-level", "debug"]);
    let mut sessions: Vec<Ctl> = (0..4).map(|_| common::workers::open_when_free(&srv)).collect();
    for c in &mut sessions {
        c.login("anonymous", "x");
    }
    wait_until("four sessions open", IO_TIMEOUT, || scrape_url(&url).get("leanftpd_sessions_open") == 4);
    let before = scrape_url(&url);
    let mut refused_on = BTreeMap::new();
    let mut refusals = 0;
    while refused_on.len() < 2 {
        assert!(refusals < TRIES, "{TRIES} refusals, all on one worker: {refused_on:?}");
        let mut c = Ctl::connect(srv.addr);
        assert_eq!(c.reply().code, 421, "connection {} of 4 allowed", 5 + refusals);
        c.expect_closed();
        refusals += 1;
        let w = worker_of_line(&srv, &format!(" refused {}: too many connections (Clients)", c.local));
        *refused_on.entry(w).or_insert(0) += 1;
    }
    let m = scrape_url(&url);
    assert_eq!(delta(&m, &before, "leanftpd_limit_refusals_total{limit=\"max_clients\"}"), refusals as i64);
    assert_eq!(delta(&m, &before, "leanftpd_limit_refusals_total{limit=\"max_per_ip\"}"), 0);
    assert_eq!(delta(&m, &before, "leanftpd_sessions_total"), 0, "a refused connection is no session");
    assert_eq!(m.get("leanftpd_sessions_open"), 4);
    assert_eq!(delta(&m, &before, "leanftpd_replies_total{class=\"4xx\"}"), refusals as i64);
    for c in &mut sessions {
        c.expect("NOOP", 200);
    }
}

/// At `--max-clients` with every silent session on worker 1, a client
/// that worker 2 takes evicts one of worker 1's: the gauge of open
/// sessions comes back to the limit (the victim's worker closes it), the
/// eviction is no refusal, and the limit still holds exactly.
#[test]
fn sessions_open_agrees_with_the_limit_after_an_eviction_across_workers() {
    const MAX: usize = 6;
    let root = tempfile::tempdir().unwrap();
    let (maddr, url) = metrics_addr();
    let max = MAX.to_string();
    let srv = Server::start(root.path(), &["--workers", "2", "--max-clients", &max, "--metrics-listen", &maddr, "--login-timeout", "60"]);
    wait_until("the start-up probe's session to close", IO_TIMEOUT, || scrape_url(&url).get("leanftpd_sessions_open") == 0);
    let before = scrape_url(&url);
    // Silent sessions (greeted, never logged in), all on worker 1: those
    // the kernel gives worker 2 leave again.
    let mut silent: Vec<Ctl> = Vec::new();
    let mut opened = 0;
    while silent.len() < MAX {
        assert!(opened < 4 * TRIES, "no {MAX} sessions on worker 1");
        let mut c = Ctl::connect(srv.addr);
        assert_eq!(c.reply().code, 220);
        opened += 1;
        if workers_of(&srv, &[c.local])[0] == 1 {
            silent.push(c);
        } else {
            c.expect("QUIT", 221);
        }
    }
    wait_until("only worker 1's silent sessions open", IO_TIMEOUT, || scrape_url(&url).get("leanftpd_sessions_open") == MAX as i64);
    // Newcomers until worker 2 takes one: worker 1 evicts its own silent
    // ones for its newcomers (who stay silent: the state is the same),
    // worker 2 has none of its own and takes one of worker 1's.
    let mut newcomer = None;
    for _ in 0..TRIES {
        let mut c = Ctl::connect(srv.addr);
        assert_eq!(c.reply().code, 220, "a newcomer at the limit is let in by an eviction");
        opened += 1;
        if workers_of(&srv, &[c.local])[0] == 2 {
            newcomer = Some(c);
            break;
        }
        silent.push(c);
    }
    let mut newcomer = newcomer.expect("no newcomer on worker 2");
    newcomer.login("anonymous", "x");
    wait_until("the log of the eviction across workers", IO_TIMEOUT, || {
        srv.log_text().contains("of worker 1 (not logged in) for a new client of worker 2")
    });
    // Every victim's worker closes it: the gauge is at the limit again.
    wait_until("sessions_open back at the limit", IO_TIMEOUT, || scrape_url(&url).get("leanftpd_sessions_open") == MAX as i64);
    let mut alive = Vec::new();
    let mut evicted = 0;
    for mut c in silent {
        c.set_read_timeout(Duration::from_millis(300));
        match c.try_reply() {
            Ok(r) => {
                assert_eq!(r.code, 421, "an evicted session: {r:?}");
                evicted += 1;
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof || e.kind() == ErrorKind::ConnectionReset => evicted += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => alive.push(c),
            Err(e) => panic!("silent session: {e}"),
        }
    }
    assert_eq!(alive.len() + 1, MAX, "sessions left: the newcomer and {} silent ({evicted} evicted)", alive.len());
    let m = scrape_url(&url);
    assert_eq!(delta(&m, &before, "leanftpd_sessions_total"), opened as i64);
    assert_eq!(m.get("leanftpd_sessions_open"), MAX as i64);
    m.family_is("leanftpd_limit_refusals_total", &[]);
    // Everyone logs in: no one is left to evict, the next is refused.
    for c in &mut alive {
        c.set_read_timeout(IO_TIMEOUT);
        c.login("anonymous", "x");
    }
    let mut extra = Ctl::connect(srv.addr);
    assert_eq!(extra.reply().code, 421);
    let m = scrape_url(&url);
    assert_eq!(m.get("leanftpd_sessions_open"), MAX as i64);
    m.family_is("leanftpd_limit_refusals_total", &[("limit=\"max_clients\"", 1)]);
}

/// A new session of worker 1 that has not logged in: connections worker 2
/// takes leave again (QUIT), a refusal (the server has not yet closed
/// one that left) is tried again.
#[track_caller]
fn silent_on_worker_1(srv: &Server) -> Ctl {
    for _ in 0..8 * TRIES {
        let mut c = Ctl::connect(srv.addr);
        match c.reply().code {
            220 if workers_of(srv, &[c.local])[0] == 1 => return c,
            220 => {
                c.expect("QUIT", 221);
            }
            code => {
                assert_eq!(code, 421);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    panic!("no session on worker 1");
}

/// At `--max-clients` with one session of worker 1 not logged in and the
/// others logged in, that session logs in and its client at once opens
/// another connection: the newcomer is refused `421` (there is no one
/// left to evict) whichever worker takes it, and the session whose client
/// has its `230` lives on. Worker 2 could evict it, before the fix, in
/// the instant between the `230` and worker 1's bookkeeping (the session
/// is now forgotten by the eviction list before its `230` is written): a
/// race of microseconds, run for many rounds.
#[test]
fn a_session_whose_client_has_its_230_is_never_evicted_by_another_worker() {
    const ROUNDS: usize = 200;
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &["--workers", "2", "--max-clients", "3", "--login-timeout", "60", "--log-level", "debug"]);
    let mut logged: Vec<Ctl> = (0..2).map(|_| common::workers::open_when_free(&srv)).collect();
    for c in &mut logged {
        c.login("anonymous", "x");
    }
    let mut on_worker_2 = 0;
    for round in 0..ROUNDS {
        let mut s = silent_on_worker_1(&srv);
        s.send("USER anonymous");
        s.send("PASS x");
        assert_eq!(s.reply().code, 331, "round {round}");
        assert_eq!(s.reply().code, 230, "round {round}");
        let mut x = Ctl::connect(srv.addr);
        let code = x.reply().code;
        // `[cN ADDR -] connected`, or `refused ADDR: …` (debug).
        let w = worker_of_line(&srv, &format!(" {}", x.local));
        on_worker_2 += usize::from(w == 2);
        s.send("NOOP");
        let r = s.try_reply();
        assert_eq!(r.as_ref().map(|r| r.code).ok(), Some(200), "round {round}: the logged-in session was evicted for a newcomer on worker {w}: {r:?}");
        assert_eq!(code, 421, "round {round}: a newcomer on worker {w} at the limit, everyone logged in");
        s.expect("QUIT", 221);
    }
    assert!(on_worker_2 > 0, "{ROUNDS} newcomers, none on worker 2");
    for c in &mut logged {
        c.expect("NOOP", 200);
    }
}

// ---------------------------------------------------------------------------
// systemd: one inherited socket, one readiness

/// One anonymous session on `addr`, and the worker that took it.
fn session_on(srv: &Server, addr: SocketAddr, user: &str, pass: &str) -> (Ctl, u32) {
    let mut c = Ctl::open(addr);
    c.login(user, pass);
    let w = workers_of(srv, &[c.local])[0];
    (c, w)
}

/// Sessions of `user` until each worker holds one (bounded).
#[track_caller]
fn one_per_worker(srv: &Server, addr: SocketAddr, user: &str, pass: &str) -> BTreeMap<u32, Ctl> {
    let mut on = BTreeMap::new();
    for _ in 0..TRIES {
        let (c, w) = session_on(srv, addr, user, pass);
        on.entry(w).or_insert(c);
        if on.len() == 2 {
            return on;
        }
    }
    panic!("{TRIES} sessions of {user}, all on worker(s) {:?}", on.keys().collect::<Vec<_>>());
}

/// `systemd-socket-activate --fdname=control` with `--workers 2`: both
/// workers accept from the one inherited socket, downloads are whole on
/// each, NOTIFY_SOCKET gets one READY=1 for the process (the next message
/// is the first SIGHUP's RELOADING=1), each SIGHUP gives RELOADING=1 with
/// MONOTONIC_USEC and then READY=1 only once every worker has reloaded
/// (its STATUS says what the reload did), SIGTERM gives STOPPING=1 and
/// exit 0.
#[test]
fn socket_activation_with_two_workers_shares_the_socket_and_notifies_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("alice")).unwrap();
    fs::create_dir_all(root.join("bob")).unwrap();
    let file = pattern(2 * 1024 * 1024 + 3, 21);
    fs::write(root.join("f.bin"), &file).unwrap();
    fs::write(root.join("bob/bob.bin"), &file).unwrap();
    let users = dir.path().join("users");
    let alice = format!("alice:{}:alice:rw\n", openssl_passwd("-6", "s4lt", "secret"));
    fs::write(&users, &alice).unwrap();
    let notify = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&notify).unwrap();
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    // --listen names another port: the socket named `control` replaces it.
    let other = SocketAddr::new(loopback(), free_port(loopback()));
    let mut srv = socket_activate(
        &s(&["-l", &addr.to_string(), "--fdname=control", "-E", &format!("NOTIFY_SOCKET={}", notify.display())]),
        &s(&[
            "--root", root.to_str().unwrap(), "--listen", &other.to_string(), "--workers", "2",
            "--users", users.to_str().unwrap(), "--anonymous", "--login-fail-delay", "0", "--login-cache", "0",
        ]),
        addr,
    );
    // The first connection makes systemd-socket-activate exec the server.
    let mut on = one_per_worker(&srv, addr, "anonymous", "x");
    let ready = next_message(&rx);
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    assert_eq!(field(&ready, "MAINPID"), Some(srv.pid().to_string().as_str()), "{ready:?}");
    assert!(field(&ready, "STATUS").unwrap_or("").contains("with 2 workers"), "{ready:?}");
    let log = srv.log_text();
    assert!(log.contains(&format!("socket activation: --listen {addr} from fd 3 (control)")), "{log}");
    assert!(log.contains(&format!("2 workers on {addr}")), "{log}");
    assert!(!common::is_listening(other), "{other} must not be bound: the inherited socket replaces it");
    for (w, c) in on.iter_mut() {
        c.expect("TYPE I", 200);
        assert_eq!(sha256(&c.retr(Mode::Pasv, "f.bin")), sha256(&file), "worker {w}");
    }

    // SIGHUP with bob added: READY=1 says both workers reloaded two users,
    // and bob logs in at once on either worker.
    let tmp = dir.path().join("users.new");
    fs::write(&tmp, format!("{alice}bob:{}:bob:r\n", openssl_passwd("-6", "s4lt", "hunter2"))).unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal("HUP");
    let reloading = next_message(&rx);
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "one READY=1 at start, then this: {reloading:?}");
    let usec: u64 = field(&reloading, "MONOTONIC_USEC").expect("MONOTONIC_USEC with RELOADING=1").parse().unwrap();
    let again = next_message(&rx);
    assert_eq!(field(&again, "READY"), Some("1"), "{again:?}");
    assert!(field(&again, "STATUS").unwrap_or("").ends_with("SIGHUP: 2 users reloaded"), "{again:?}");
    assert_eq!(srv.log_text().matches("SIGHUP: reloaded 2 users").count(), 2, "both workers reloaded before READY=1");
    for (w, mut c) in one_per_worker(&srv, addr, "bob", "hunter2") {
        c.expect("TYPE I", 200);
        assert_eq!(sha256(&c.retr(Mode::Pasv, "bob.bin")), sha256(&file), "bob on worker {w}");
    }

    // A users file that does not load: both keep the old users, and say so.
    fs::write(&tmp, "bob has no colons\n").unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal("HUP");
    let reloading = next_message(&rx);
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
    let later: u64 = field(&reloading, "MONOTONIC_USEC").expect("MONOTONIC_USEC").parse().unwrap();
    assert!(later > usec, "MONOTONIC_USEC goes forward: {later} after {usec}");
    let again = next_message(&rx);
    assert_eq!(field(&again, "READY"), Some("1"), "{again:?}");
    assert!(field(&again, "STATUS").unwrap_or("").ends_with("SIGHUP: users NOT reloaded (see the log)"), "{again:?}");
    one_per_worker(&srv, addr, "bob", "hunter2");

    srv.signal("TERM");
    let stopping = next_message(&rx);
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    // Sessions and transfers over both workers, and the grace period.
    assert!(field(&stopping, "STATUS").unwrap_or("").ends_with("transfers (grace 10 s)"), "{stopping:?}");
    let st = srv.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0), "{}", srv.log_text());
    let log = srv.log_text();
    assert!(log.contains("worker 1: shut down") && log.contains("worker 2: shut down"), "{log}");
    rx.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let rest = rx.recv(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(rest.is_err(), "nothing after STOPPING=1, got {rest:?}");
}

/// Under socket activation both workers wait on the one inherited socket,
/// and every connection wakes both: without balancing, the first to run
/// takes it (and a burst whole, up to 256 a pass). A worker that holds
/// more sessions than the other leaves the connection to it, so sessions
/// opened one after another alternate, and a burst of 40 opened at once
/// splits too (on a quiet machine 20/20; without the balancing, one
/// worker took 27 to 32 of them).
#[test]
fn socket_activation_spreads_sessions_evenly_over_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::new(loopback(), free_port(loopback()));
    let srv = socket_activate(
        &s(&["-l", &addr.to_string(), "--fdname=control"]),
        &s(&["--root", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--workers", "2", "--anonymous"]),
        addr,
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(Ctl::open(addr));
    }
    let one_by_one = common::workers::tally(&workers_of(&srv, &held.iter().map(|c| c.local).collect::<Vec<_>>()));
    assert_eq!(one_by_one.len(), 2, "both workers: {one_by_one:?}");
    // 10 each on a quiet machine; a worker kept off the CPU for longer
    // than BALANCE_RETRY_AFTER (20 ms) loses its turn to the other, which
    // is what should happen. Without the balancing: 13/7, 16/4, 18/2, 13/7.
    assert!(one_by_one.values().all(|&n| (8..=12).contains(&n)), "20 sessions one after another: {one_by_one:?}");

    // A burst: 40 connections made before any banner is read.
    let mut burst: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut locals = Vec::new();
    for t in burst.iter_mut() {
        t.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut banner = [0u8; 4];
        t.read_exact(&mut banner).unwrap();
        assert_eq!(&banner[..3], b"220");
        locals.push(t.local_addr().unwrap());
    }
    let burst_tally = common::workers::tally(&workers_of(&srv, &locals));
    assert!(burst_tally.values().all(|&n| n >= 8) && burst_tally.len() == 2, "40 connections at once: {burst_tally:?}");
    drop((held, burst));
}

// ---------------------------------------------------------------------------
// PROXY protocol: the real client over both workers

/// The balancer's address (the `--proxy-from` source) in these tests.
const BALANCER: &str = "127.0.0.2";

fn behind_balancer(root: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec!["--workers", "2", "--proxy-protocol", "--proxy-from", "127.0.0.2/32"];
    args.extend_from_slice(extra);
    Server::start_unprobed(root, &args)
}

/// The worker whose log says the connection through the balancer from
/// `balancer_end` carried a header naming a client (`… connected through
/// 127.0.0.2:PORT (PROXY protocol)`).
#[track_caller]
fn worker_through(srv: &Server, balancer_end: SocketAddr) -> u32 {
    worker_of_line(srv, &format!(": connected through {balancer_end} (PROXY protocol"))
}

/// A connection through the balancer whose header names `client:port`:
/// its first reply's code and the worker that read the header.
fn through(srv: &Server, client: &str, port: u16) -> (Ctl, u16, u32) {
    let mut s = connect_bound(BALANCER, srv.addr);
    s.write_all(&v1(client, port, srv.addr)).unwrap();
    let w = worker_through(srv, s.local_addr().unwrap());
    let mut c = Ctl::from_stream(s);
    let code = c.reply().code;
    (c, code, w)
}

/// `--max-per-ip 1` behind a balancer with two workers: a second
/// connection naming the same real client is refused `421` whichever
/// worker reads its header (both are seen doing so), while other real
/// clients are let in.
#[test]
fn max_per_ip_counts_the_real_client_over_both_workers() {
    let root = tempfile::tempdir().unwrap();
    let srv = behind_balancer(root.path(), &["--max-per-ip", "1"]);
    let (mut first, code, _) = through(&srv, "127.0.0.3", 41000);
    assert_eq!(code, 220);
    first.login("anonymous", "x@y");
    assert_eq!(seen_as(&mut first), "127.0.0.3");
    let mut refused_on = BTreeMap::new();
    for i in 0..TRIES as u16 {
        let (mut c, code, w) = through(&srv, "127.0.0.3", 41001 + i);
        assert_eq!(code, 421, "a second connection of 127.0.0.3, on worker {w}");
        c.expect_closed();
        *refused_on.entry(w).or_insert(0) += 1;
        // Another real client is let in (on either worker) meanwhile.
        let other = format!("127.0.0.{}", 10 + i);
        let (mut o, code, _) = through(&srv, &other, 42000 + i);
        assert_eq!(code, 220, "{other}");
        o.login("anonymous", "x@y");
        assert_eq!(seen_as(&mut o), other);
        o.expect("QUIT", 221);
        if refused_on.len() == 2 {
            break;
        }
    }
    assert_eq!(refused_on.keys().copied().collect::<Vec<_>>(), vec![1, 2], "refusals per worker: {refused_on:?}");
    assert_eq!(first.expect("NOOP", 200).code, 200);
}

/// A passive data connection must come from the session's real client on
/// either worker: one from another address is refused (closed without a
/// byte), one straight from the real client (not the balancer) gets the
/// whole file.
#[test]
fn the_passive_peer_check_uses_the_real_client_on_both_workers() {
    let root = tempfile::tempdir().unwrap();
    let file = pattern(300_007, 5);
    fs::write(root.path().join("f.bin"), &file).unwrap();
    let srv = behind_balancer(root.path(), &[]);
    let mut on: BTreeMap<u32, (Ctl, String)> = BTreeMap::new();
    for i in 0..TRIES as u16 {
        let client = format!("127.0.0.{}", 20 + i);
        let (mut c, code, w) = through(&srv, &client, 43000 + i);
        assert_eq!(code, 220);
        c.login("anonymous", "x@y");
        on.entry(w).or_insert((c, client));
        if on.len() == 2 {
            break;
        }
    }
    assert_eq!(on.keys().copied().collect::<Vec<_>>(), vec![1, 2], "{TRIES} sessions, one worker");
    for (w, (c, client)) in on.iter_mut() {
        c.expect("TYPE I", 200);
        let addr = c.pasv();
        c.send("RETR f.bin");
        // The balancer's own address without a header is not the client.
        for thief in ["127.0.0.9", "127.0.0.1"] {
            let mut t = connect_bound(thief, addr);
            let got = read_to_eof_within(&mut t, IO_TIMEOUT).unwrap_or_default();
            assert!(got.is_empty(), "worker {w}: a data connection from {thief} got {} bytes", got.len());
        }
        let mut data = connect_bound(client, addr);
        assert!(c.reply().is_preliminary(), "worker {w}");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(sha256(&got), sha256(&file), "worker {w}");
        assert_eq!(c.reply().code, 226, "worker {w}");
        // And through the balancer, with a header naming the client.
        let addr = c.pasv();
        c.send("RETR f.bin");
        let mut data = connect_bound(BALANCER, addr);
        data.write_all(&v2(client, 44000, addr)).unwrap();
        assert!(c.reply().is_preliminary(), "worker {w}");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(sha256(&got), sha256(&file), "worker {w}: through the balancer");
        assert_eq!(c.reply().code, 226, "worker {w}");
    }
    let log = srv.log_text();
    assert!(log.contains("refused data connection from foreign address 127.0.0.9"), "{log}");
}

/// Connections waiting for their PROXY protocol header are bounded by
/// `--max-clients` over all workers, not per worker: of twelve silent
/// connections from the balancer exactly two wait, the others are closed
/// at once without a byte; the two then get their sessions.
#[test]
fn connections_waiting_for_a_header_are_bounded_over_all_workers() {
    let root = tempfile::tempdir().unwrap();
    let (maddr, url) = metrics_addr();
    let srv = behind_balancer(root.path(), &["--max-clients", "2", "--login-timeout", "60", "--metrics-listen", &maddr]);
    let silent: Vec<TcpStream> = (0..12).map(|_| connect_bound(BALANCER, srv.addr)).collect();
    wait_until("ten refusals in the log", IO_TIMEOUT, || {
        srv.log_text().matches("connections already wait for their PROXY protocol header").count() >= 10
    });
    let mut waiting = Vec::new();
    let mut closed = 0;
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => closed += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => waiting.push(s),
            other => panic!("a silent connection from the balancer got {other:?}"),
        }
    }
    let log = srv.log_text();
    let refusals: BTreeMap<&str, usize> = ["(worker 1) refused", "(worker 2) refused"].iter().map(|w| (*w, log.matches(w).count())).collect();
    assert_eq!((waiting.len(), closed), (2, 10), "refusals by worker: {refusals:?}\n{log}");
    // Each refusal is counted, under the limit that bounds the wait.
    assert_eq!(scrape_url(&url).get("leanftpd_limit_refusals_total{limit=\"max_clients\"}"), 10);
    for (i, mut s) in waiting.into_iter().enumerate() {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let client = format!("127.0.0.{}", 30 + i);
        s.write_all(&v1(&client, 45000, srv.addr)).unwrap();
        let mut c = Ctl::from_stream(s);
        assert_eq!(c.reply().code, 220);
        c.login("anonymous", "x@y");
        assert_eq!(seen_as(&mut c), client);
    }
}

// ---------------------------------------------------------------------------
// --workers auto

/// `--workers auto` runs one worker per CPU the process may use (its
/// affinity mask and cgroup CPU quota, which the server inherits from
/// this test); with one CPU, the single reactor.
#[test]
fn workers_auto_is_the_cpus_the_process_may_use() {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &["--workers", "auto"]);
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x");
    if n > 1 {
        // Each worker logs this as its loop starts and the main thread
        // once all have started, which may be after a first client was
        // served.
        wait_until(&format!("`{n} workers on` and every worker's `listening on`"), IO_TIMEOUT, || {
            let log = srv.log_text();
            log.contains(&format!("{n} workers on {}", srv.addr))
                && (1..=n).all(|w| log.contains(&format!("(worker {w}) worker {w}: listening on")))
        });
    } else {
        let log = srv.log_text();
        assert!(log.contains("listening on") && !log.contains("workers on"), "{log}");
    }
}

// ---------------------------------------------------------------------------
// TLS: SIGHUP reloads the certificate on every worker

/// `--workers 2` with FTPS: after SIGHUP with a certificate of another CA
/// in the files, both workers serve the new one (a client trusting only
/// the new CA completes `AUTH TLS` and a `PROT P` download on each
/// worker; one trusting only the old CA fails the handshake on each).
#[cfg(feature = "tls")]
#[test]
fn sighup_reloads_the_tls_certificate_on_every_worker() {
    use common::tls::{make_certs, write_cert_set, TlsClient, TlsCtl, Version};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let file = pattern(200_003, 3);
    fs::write(root.join("f.bin"), &file).unwrap();
    let old = make_certs();
    let files = write_cert_set(&dir.path().join("tls"), &old);
    let (cert, key) = (files.chain.to_str().unwrap().to_string(), files.key.to_str().unwrap().to_string());
    let srv = Server::start(&root, &["--workers", "2", "--tls-cert", &cert, "--tls-key", &key]);
    let on_worker = |client: &TlsClient| -> BTreeMap<u32, TlsCtl> {
        let mut on = BTreeMap::new();
        for _ in 0..TRIES {
            let c = TlsCtl::open(srv.addr, client.clone());
            let w = workers_of(&srv, &[c.local])[0];
            on.entry(w).or_insert(c);
            if on.len() == 2 {
                return on;
            }
        }
        panic!("{TRIES} sessions, one worker");
    };
    on_worker(&TlsClient::trusting(Version::Tls13, &old));

    let new = make_certs();
    write_cert_set(&dir.path().join("tls"), &new);
    srv.signal("HUP");
    wait_until("both workers to reload the certificate", IO_TIMEOUT, || {
        srv.log_text().matches("SIGHUP: reloaded the TLS certificate").count() == 2
    });
    for (w, mut c) in on_worker(&TlsClient::trusting(Version::Tls13, &new)) {
        c.login("anonymous", "x");
        c.protect();
        c.expect("TYPE I", 200);
        let got = c.retr(Mode::Pasv, common::tls::Order::CommandFirst, "f.bin");
        assert_eq!(sha256(&got), sha256(&file), "worker {w}");
    }
    let mut refused_on = BTreeMap::new();
    for _ in 0..TRIES {
        let mut c = TlsCtl::connect(srv.addr, TlsClient::trusting(Version::Tls13, &old));
        assert_eq!(c.reply().code, 220);
        c.expect("AUTH TLS", 234);
        let w = workers_of(&srv, &[c.local])[0];
        assert!(c.upgrade().is_err(), "worker {w} still serves the old certificate");
        refused_on.insert(w, ());
        if refused_on.len() == 2 {
            break;
        }
    }
    assert_eq!(refused_on.len(), 2, "{TRIES} handshakes, one worker");
}
