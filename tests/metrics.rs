//! Prometheus metrics (`--metrics-listen`, issue 12): scraped with curl
//! during a session that logs in, fails a login, transfers (RETR, STOR)
//! and aborts one (ABOR); every value checked exactly against what the
//! clients themselves counted, the text validated by `promtool check
//! metrics`; and hostile scrapers (an over-long head, one that never reads,
//! more than the bound at once, a slow loris) while an FTP client keeps
//! being served.
//!
//! The server runs in-process (its metrics address with port 0 resolved
//! comes from `Server::metrics_addr`); curl and promtool are children,
//! run with a bound and waited for.

#![cfg(feature = "metrics")]

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::metrics::{curl, drain, scrape_url, Ftp, Metrics};
use common::{pattern, sha256, sha256_file, wait_until, IO_TIMEOUT, STOP_WAIT};
use leanftpd::ftp::command::Verb;
use leanftpd::{Config, Server, StopHandle};

/// The server in-process, with its metrics listener on a port of its own.
struct Srv {
    ftp: SocketAddr,
    metrics: SocketAddr,
    root: PathBuf,
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Srv {
    #[track_caller]
    fn start(tweak: impl FnOnce(&mut Config)) -> Srv {
        let dir = tempfile::Builder::new().prefix("leanftpd-metrics-").tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut config = Config::new(root.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.anonymous = true;
        config.anonymous_write = true;
        config.login_fail_delay = Duration::from_millis(50);
        config.shutdown_grace = Duration::from_secs(1);
        tweak(&mut config);
        config.validate().unwrap();
        // The server is not `Send` (sessions share `Rc`s): bound on its thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let server = Server::bind(config).expect("bind");
            let _ = tx.send((server.local_addr(), server.metrics_addr().expect("metrics address"), server.stop_handle()));
            server.run()
        });
        let (ftp, metrics, stop) = rx.recv_timeout(IO_TIMEOUT).expect("the server bound");
        Srv { ftp, metrics, root, stop, thread: Some(thread), _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.stop.stop();
        let Some(t) = self.thread.take() else { return };
        let deadline = Instant::now() + STOP_WAIT;
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("server thread panicked").expect("server run failed");
            }
        } else if !std::thread::panicking() {
            panic!("server did not stop within {STOP_WAIT:?}");
        }
    }
}

/// `GET /metrics` of `srv` with curl (see `common::metrics::scrape_url`).
#[track_caller]
fn scrape(srv: &Srv) -> Metrics {
    scrape_url(&srv.url())
}

#[test]
fn a_session_shows_in_the_metrics_exactly() {
    let srv = Srv::start(|_| {});
    let small = pattern(100_003, 7);
    std::fs::write(srv.root.join("small.bin"), &small).unwrap();
    // Sparse and larger than any socket buffer: its RETR is still running
    // when the ABOR comes.
    std::fs::File::create(srv.root.join("huge.bin")).unwrap().set_len(1 << 30).unwrap();

    let before = scrape(&srv);
    assert_eq!(before.get("leanftpd_sessions_total"), 0);
    before.promtool_clean();

    // A failed login on a connection of its own.
    let mut bad = Ftp::connect(srv.ftp);
    bad.expect("USER nobody", 331);
    bad.expect("PASS wrong", 530);
    bad.expect("QUIT", 221);
    let mut eof = [0u8; 1];
    assert_eq!(bad.s.read(&mut eof).unwrap(), 0, "closed after QUIT");

    let mut c = Ftp::connect(srv.ftp);
    c.expect("USER anonymous", 331);
    c.expect("PASS guest@example.com", 230);
    c.expect("TYPE I", 200);
    c.expect("XYZZY", 500);

    // RETR.
    let d = c.data();
    c.start("RETR small.bin");
    let mut got = Vec::new();
    let mut d = d;
    d.read_to_end(&mut got).unwrap();
    assert_eq!(c.reply().0, 226);
    assert_eq!(sha256(&got), sha256(&small));

    // STOR, scraped while it runs.
    let up = pattern(70_001, 11);
    let mut d = c.data();
    c.start("STOR up.bin");
    d.write_all(&up[..30_000]).unwrap();
    let during = scrape(&srv);
    assert_eq!(during.get("leanftpd_upload_temp_files_open"), 1);
    assert_eq!(during.get("leanftpd_data_connections_open"), 1);
    assert_eq!(during.get("leanftpd_sessions_open"), 1);
    assert_eq!(during.get("leanftpd_sessions_total"), 2);
    d.write_all(&up[30_000..]).unwrap();
    d.shutdown(Shutdown::Write).unwrap();
    assert_eq!(drain(d), 0);
    assert_eq!(c.reply().0, 226);
    assert_eq!(sha256_file(&srv.root.join("up.bin")), sha256(&up));

    // A RETR aborted while it runs (the client does not read until the
    // server closed the data connection; then it counts what was sent).
    let d = c.data();
    c.start("RETR huge.bin");
    let running = scrape(&srv);
    assert_eq!(running.get("leanftpd_data_connections_open"), 1);
    assert_eq!(running.get("leanftpd_passive_listeners_open"), 0);
    assert_eq!(running.get("leanftpd_upload_temp_files_open"), 0);
    running.family_is("leanftpd_transfers_total", &[("kind=\"retr\",result=\"ok\"", 1), ("kind=\"stor\",result=\"ok\"", 1)]);
    c.expect("ABOR", 426);
    assert_eq!(c.reply().0, 226, "ABOR's own reply");
    let aborted_bytes = drain(d);
    assert!(aborted_bytes < 1 << 30, "the transfer was cut");

    let m = scrape(&srv);
    m.promtool_clean();
    assert_eq!(m.get("leanftpd_sessions_total"), 2);
    assert_eq!(m.get("leanftpd_sessions_open"), 1);
    assert_eq!(m.get("leanftpd_logins_total{result=\"ok\"}"), 1);
    assert_eq!(m.get("leanftpd_logins_total{result=\"failed\"}"), 1);
    let commands: &[(&str, i64)] = &[
        ("verb=\"USER\"", 2),
        ("verb=\"PASS\"", 2),
        ("verb=\"QUIT\"", 1),
        ("verb=\"TYPE\"", 1),
        ("verb=\"EPSV\"", 3),
        ("verb=\"RETR\"", 2),
        ("verb=\"STOR\"", 1),
        ("verb=\"ABOR\"", 1),
        ("verb=\"other\"", 1),
    ];
    m.family_is("leanftpd_commands_total", commands);
    assert_eq!(
        m.samples.keys().filter(|k| k.starts_with("leanftpd_commands_total{")).count(),
        Verb::ALL.len() + 1,
        "every verb and other, always"
    );
    let classes: Vec<(String, i64)> = (0..5)
        .map(|i| (format!("class=\"{}xx\"", i + 1), (c.classes[i] + bad.classes[i]) as i64))
        .collect();
    let classes: Vec<(&str, i64)> = classes.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    m.family_is("leanftpd_replies_total", &classes);
    assert_eq!(m.get("leanftpd_received_bytes_total{channel=\"control\"}"), (c.sent + bad.sent) as i64);
    assert_eq!(m.get("leanftpd_sent_bytes_total{channel=\"control\"}"), (c.received + bad.received) as i64);
    assert_eq!(m.get("leanftpd_received_bytes_total{channel=\"data\"}"), up.len() as i64);
    assert_eq!(m.get("leanftpd_sent_bytes_total{channel=\"data\"}"), (small.len() as u64 + aborted_bytes) as i64);
    m.family_is(
        "leanftpd_transfers_total",
        &[("kind=\"retr\",result=\"ok\"", 1), ("kind=\"stor\",result=\"ok\"", 1), ("kind=\"retr\",result=\"aborted\"", 1)],
    );
    assert_eq!(m.get("leanftpd_passive_listeners_open"), 0);
    assert_eq!(m.get("leanftpd_data_connections_open"), 0);
    assert_eq!(m.get("leanftpd_upload_temp_files_open"), 0);
    m.family_is("leanftpd_limit_refusals_total", &[]);
    if leanftpd::TLS_BUILT_IN {
        m.family_is("leanftpd_tls_handshakes_total", &[]);
    }
    c.expect("QUIT", 221);
    wait_until("the session is closed", IO_TIMEOUT, || scrape(&srv).get("leanftpd_sessions_open") == 0);
}

#[test]
fn only_get_and_head_of_metrics_are_served() {
    let srv = Srv::start(|_| {});
    let base = format!("http://{}", srv.metrics);
    assert_eq!(curl(&[], &format!("{base}/")).0, 404);
    assert_eq!(curl(&[], &format!("{base}/metrics/x")).0, 404);
    let (status, headers, _) = curl(&["-X", "POST"], &srv.url());
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");
    let (status, headers, body) = curl(&["-I"], &srv.url());
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD has no body: {body:?}");
    assert!(headers["content-length"].parse::<usize>().unwrap() > 1000);
    // Not HTTP at all.
    let mut s = TcpStream::connect(srv.metrics).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"USER anonymous\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
}

/// Reads what the server sends until it closes; `Err` on a timeout.
fn read_until_closed(s: &mut TcpStream, wait: Duration) -> io::Result<Vec<u8>> {
    s.set_read_timeout(Some(wait))?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    Ok(all)
}

#[test]
fn hostile_scrapers_are_bounded_and_ftp_clients_keep_being_served() {
    const LOGIN_TIMEOUT: Duration = Duration::from_secs(2);
    let srv = Srv::start(|c| c.login_timeout = LOGIN_TIMEOUT);
    let mut honest = Ftp::connect(srv.ftp);
    honest.expect("USER anonymous", 331);
    honest.expect("PASS guest@", 230);

    // An over-long request head: 431, and the connection closed.
    let mut long = TcpStream::connect(srv.metrics).unwrap();
    let mut head = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    head.resize(9 * 1024, b'a');
    long.write_all(&head).unwrap();
    let answer = read_until_closed(&mut long, IO_TIMEOUT).expect("431 and close");
    assert!(answer.starts_with(b"HTTP/1.1 431 "), "{}", String::from_utf8_lossy(&answer));
    honest.expect("NOOP", 200);

    // The bound: 8 scrapers that send nothing hold every slot; a 9th, a
    // real scraper, takes the place of the oldest of them (closed with
    // nothing said) and is answered.
    let mut held: Vec<TcpStream> = (0..leanftpd::reactor::scrape::MAX_SCRAPES).map(|_| TcpStream::connect(srv.metrics).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut ninth = TcpStream::connect(srv.metrics).unwrap();
    ninth.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut ninth, IO_TIMEOUT).expect("200 and close");
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&answer));
    let mut oldest = held.remove(0);
    let got = read_until_closed(&mut oldest, IO_TIMEOUT).expect("the oldest silent scraper closed at once");
    assert!(got.is_empty(), "an evicted scraper gets nothing");
    honest.expect("NOOP", 200);
    // The others are closed at their deadline (the login timeout from
    // their connection).
    for mut h in held {
        let got = read_until_closed(&mut h, LOGIN_TIMEOUT * 4).expect("closed at the deadline");
        assert!(got.is_empty(), "nothing was asked, nothing answered");
    }
    honest.expect("NOOP", 200);

    // A slow loris: one byte a second. It never completes its head, and is
    // closed at its deadline while the FTP client is answered meanwhile.
    let mut loris = TcpStream::connect(srv.metrics).unwrap();
    let mut closed = false;
    for &b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter() {
        if loris.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        honest.expect("NOOP", 200);
        let mut probe = [0u8; 1];
        loris.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        match loris.read(&mut probe) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("a response to a partial head"),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the slow loris was closed at its deadline");

    // A scraper that asks and never reads: its response waits in the
    // kernel (at most RENDER_MAX_BYTES), and it is closed after writing;
    // nobody else waits for it.
    let mut mute = TcpStream::connect(srv.metrics).unwrap();
    mute.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    honest.expect("NOOP", 200);
    let got = read_until_closed(&mut mute, IO_TIMEOUT).expect("the response, then the close");
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(got.len() <= leanftpd::metrics::RENDER_MAX_BYTES + 256);

    // What was refused is counted, and all of it is gone.
    let m = scrape(&srv);
    m.family_is("leanftpd_limit_refusals_total", &[("limit=\"metrics_scrapes\"", 1)]);
    assert_eq!(m.get("leanftpd_sessions_open"), 1);
    honest.expect("QUIT", 221);
}

/// TLS handshakes by channel and result: a control and a data handshake
/// that complete; a data connection that does not resume its control
/// connection's session (refused, `522`); garbage instead of a
/// ClientHello; an `AUTH TLS` whose client leaves before its hello.
#[cfg(feature = "tls")]
#[test]
fn tls_handshakes_are_counted_by_channel_and_result() {
    use common::tls::{enable, Order, TlsClient, TlsCtl, Version};
    use common::Mode;
    let srv = Srv::start(enable);
    // Not empty: a listing with bytes to send meets the refusal in its
    // first write (`522`); an empty one would meet it at its close_notify.
    std::fs::write(srv.root.join("f"), b"x").unwrap();
    let mut c = TlsCtl::open(srv.ftp, TlsClient::new(Version::Tls13));
    c.login("anonymous", "guest@");
    c.protect();
    c.listing(Mode::Epsv, Order::CommandFirst, "LIST");
    c.data_client = TlsClient::without_resumption(Version::Tls13);
    let prep = c.prepare(Mode::Epsv);
    let refused = match c.try_start(prep, Order::CommandFirst, "LIST") {
        Ok((_, data)) => {
            // Read until the server ends it: the refusal, not a lost
            // connection, is what the reply says.
            if let Ok(mut d) = data {
                let mut buf = [0u8; 4096];
                while matches!(d.read(&mut buf), Ok(n) if n > 0) {}
            }
            c.reply()
        }
        Err(r) => r,
    };
    assert_eq!(refused.code, 522, "{refused:?}");

    let mut garbage = Ftp::connect(srv.ftp);
    garbage.expect("AUTH TLS", 234);
    garbage.s.write_all(b"\x16\x03\x01\x00\x10not a hello!!!!!").unwrap();
    read_until_closed(&mut garbage.s, IO_TIMEOUT).expect("closed after a failed handshake");

    let mut gone = Ftp::connect(srv.ftp);
    gone.expect("AUTH TLS", 234);
    drop(gone);

    wait_until("the abandoned handshake is counted", IO_TIMEOUT, || {
        scrape(&srv).get("leanftpd_tls_handshakes_total{channel=\"control\",result=\"failed\"}") == 2
    });
    let m = scrape(&srv);
    m.promtool_clean();
    m.family_is(
        "leanftpd_tls_handshakes_total",
        &[
            ("channel=\"control\",result=\"ok\"", 1),
            ("channel=\"control\",result=\"failed\"", 2),
            ("channel=\"data\",result=\"ok\"", 1),
            ("channel=\"data\",result=\"failed\"", 1),
        ],
    );
    m.family_is("leanftpd_transfers_total", &[("kind=\"list\",result=\"ok\"", 1), ("kind=\"list\",result=\"failed\"", 1)]);
    c.expect("QUIT", 221);
}

/// Refusals by limit, each under its own label, with the `421`/`425`
/// the client got; a refused connection is no session.
#[test]
fn limit_refusals_are_counted_by_limit() {
    // --max-per-ip: the second connection from 127.0.0.1.
    let srv = Srv::start(|c| c.max_per_ip = 1);
    let mut c1 = Ftp::connect(srv.ftp);
    c1.expect("USER anonymous", 331);
    c1.expect("PASS guest@", 230);
    let mut c2 = TcpStream::connect(srv.ftp).unwrap();
    let refusal = read_until_closed(&mut c2, IO_TIMEOUT).unwrap();
    assert!(refusal.starts_with(b"421 "), "{}", String::from_utf8_lossy(&refusal));
    let m = scrape(&srv);
    m.family_is("leanftpd_limit_refusals_total", &[("limit=\"max_per_ip\"", 1)]);
    assert_eq!(m.get("leanftpd_sessions_total"), 1);
    assert_eq!(m.get("leanftpd_replies_total{class=\"4xx\"}"), 1);
    assert_eq!(m.get("leanftpd_sent_bytes_total{channel=\"control\"}"), (c1.received + refusal.len() as u64) as i64);
    drop(srv);

    // --max-clients: full, and nobody to evict (the one session is logged in).
    let srv = Srv::start(|c| c.max_clients = 1);
    let mut c1 = Ftp::connect(srv.ftp);
    c1.expect("USER anonymous", 331);
    c1.expect("PASS guest@", 230);
    let mut c2 = TcpStream::connect(srv.ftp).unwrap();
    assert!(read_until_closed(&mut c2, IO_TIMEOUT).unwrap().starts_with(b"421 "));
    scrape(&srv).family_is("leanftpd_limit_refusals_total", &[("limit=\"max_clients\"", 1)]);
    drop(srv);

    // --max-passive: a second session's EPSV while the first holds the one listener.
    let srv = Srv::start(|c| c.max_passive = 1);
    let mut c1 = Ftp::connect(srv.ftp);
    c1.expect("USER anonymous", 331);
    c1.expect("PASS guest@", 230);
    c1.expect("EPSV", 229);
    let mut c2 = Ftp::connect(srv.ftp);
    c2.expect("USER anonymous", 331);
    c2.expect("PASS guest@", 230);
    c2.expect("EPSV", 425);
    let m = scrape(&srv);
    m.family_is("leanftpd_limit_refusals_total", &[("limit=\"max_passive\"", 1)]);
    assert_eq!(m.get("leanftpd_passive_listeners_open"), 1);
    c1.expect("QUIT", 221);
    wait_until("the passive listener closed with its session", IO_TIMEOUT, || {
        scrape(&srv).get("leanftpd_passive_listeners_open") == 0
    });
}
