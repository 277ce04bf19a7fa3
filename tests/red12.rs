//! Red-team findings against issue 12's surfaces (PROXY protocol, metrics,
//! workers), each a hostile client's reproduction with a real outcome.

#![cfg(feature = "proxy")]

mod common;

use std::io::Write;
use std::time::Duration;

use common::balancer::*;
use common::*;

const BALANCER: &str = "127.0.0.2";

fn behind_balancer(tweak: impl FnOnce(&mut leanftpd::Config)) -> TestServer {
    TestServer::with(|c| {
        c.proxy_protocol = true;
        c.proxy_from = vec![format!("{BALANCER}/32").parse().unwrap()];
        tweak(c);
    })
}

/// A v1 header whose line is complete (it has its line end) but malformed
/// (too few fields, an empty one, a bare LF) can never become valid: it is
/// refused at once, not left holding one of the `--max-clients` slots of
/// the connections waiting for a header until `--login-timeout`. Before
/// the fix, `proxy-header` said "too short" for these, and the connection
/// waited the whole login timeout (here 600 s; `closed_silently` gives up
/// after `IO_TIMEOUT`, 10 s).
#[test]
fn a_complete_but_malformed_v1_line_is_refused_at_once() {
    let srv = behind_balancer(|c| c.login_timeout = Duration::from_secs(600));
    for line in [&b"PROXY TCP4 192.0.2.7\r\n"[..], b"PROXY \r\n", b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 21\n", b"PROXY TCP4\r\n"] {
        let mut s = connect_bound(BALANCER, srv.addr);
        s.write_all(line).unwrap();
        let got = closed_silently(s);
        assert!(got.is_empty(), "{:?}: nothing said before the close, got {:?}", String::from_utf8_lossy(line), String::from_utf8_lossy(&got));
    }
    // The server still serves a well-formed header.
    let mut s = connect_bound(BALANCER, srv.addr);
    s.write_all(&v1("127.0.0.3", 40000, srv.addr)).unwrap();
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
}

/// Metrics slow loris: `MAX_SCRAPES` (8) connections that never send a
/// request hold every scrape slot for `--login-timeout` (60 s by default),
/// and can reconnect at once: Prometheus gets `503` for as long as the
/// attacker keeps it up. The FTP side evicts its oldest connection that
/// has not logged in at `--max-clients` for exactly this reason; now the
/// metrics side does the same: a new scraper takes the place of the oldest
/// scrape still sending its request (it got 503 before).
#[cfg(feature = "metrics")]
#[test]
fn eight_silent_connections_do_not_lock_prometheus_out() {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _srv = TestServer::with(|c| {
        c.metrics_listen = Some(metrics);
        c.login_timeout = Duration::from_secs(600);
    });
    let _held: Vec<TcpStream> = (0..leanftpd::reactor::scrape::MAX_SCRAPES).map(|_| TcpStream::connect(metrics).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut honest = TcpStream::connect(metrics).unwrap();
    honest.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    honest.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = honest.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&answer[..answer.len().min(80)]));
}

/// At shutdown, a balancer's data connection still waiting for its header
/// whose session is already gone (closed at once: it was idle) can never
/// become a transfer, yet the worker waited the whole `--shutdown-grace`
/// for it (here 60 s) before it exited. It ends once its last session is
/// gone.
#[test]
fn shutdown_does_not_wait_the_grace_for_an_orphaned_data_header() {
    let srv = behind_balancer(|c| c.shutdown_grace = Duration::from_secs(60));
    let mut s = connect_bound(BALANCER, srv.addr);
    s.write_all(&v1("127.0.0.3", 40000, srv.addr)).unwrap();
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
    c.login("anonymous", "x@y");
    let pasv = c.pasv();
    let mut data = connect_bound(BALANCER, pasv);
    data.write_all(b"PROXY TCP4 127.0").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    srv.stop();
    // The idle session is told, and closed at once.
    let _ = c.expect_closed();
    wait_until("the server stopped", IO_TIMEOUT, || srv.is_finished());
    assert!(closed_silently(data).is_empty());
}
