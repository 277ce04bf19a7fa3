//! The PROXY protocol (`--proxy-protocol`, `--proxy-from`), issue 12.
//!
//! First without HAProxy, over loopback with hand-made headers sent from
//! 127.0.0.2 (the "balancer", the only `--proxy-from` source): headers
//! whole, split into 1-byte writes, with FTP bytes in the same segment,
//! and the hostile cases (garbage, an over-long v1 line, a v2 header
//! declaring a huge length, silence until the login timeout, a direct
//! connection from outside `--proxy-from`, a passive data connection whose
//! header names another client).
//!
//! Then with HAProxy (Debian's `haproxy`, installed by `.ci/setup.sh`) in
//! front of two leanftpd processes on one root: see the second half.

#![cfg(feature = "proxy")]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::*;

/// The balancer's address in these tests (the `--proxy-from` source).
const BALANCER: &str = "127.0.0.2";
/// The real clients the headers name.
const CLIENT: &str = "127.0.0.3";
const OTHER_CLIENT: &str = "127.0.0.4";

/// A TCP connection from `src` (any port) to `dst`.
#[track_caller]
fn connect_bound(src: &str, dst: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let src: SocketAddr = SocketAddr::new(src.parse().unwrap(), 0);
    socket.bind(&src.into()).unwrap_or_else(|e| panic!("bind {src}: {e}"));
    socket.connect_timeout(&dst.into(), IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {src} -> {dst}: {e}"));
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A v1 header naming `client:port` as the source and `dst` as the
/// destination.
fn v1(client: &str, port: u16, dst: SocketAddr) -> Vec<u8> {
    format!("PROXY TCP4 {client} {} {port} {}\r\n", dst.ip(), dst.port()).into_bytes()
}

/// A v2 PROXY header (TCP over IPv4).
fn v2(client: &str, port: u16, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    let IpAddr::V4(src) = client.parse::<IpAddr>().unwrap() else { unreachable!() };
    let IpAddr::V4(d) = dst.ip() else { unreachable!() };
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&d.octets());
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// A v2 LOCAL header (a balancer's health check).
fn v2_local() -> Vec<u8> {
    b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00".to_vec()
}

/// A server behind a "balancer" at 127.0.0.2, with `tweak` on top.
fn behind_balancer(tweak: impl FnOnce(&mut leanftpd::Config)) -> TestServer {
    TestServer::with(|c| {
        c.proxy_protocol = true;
        c.proxy_from = vec![format!("{BALANCER}/32").parse().unwrap()];
        tweak(c);
    })
}

/// A control connection through the "balancer" for `client`, header sent
/// and greeting read.
#[track_caller]
fn through_balancer(srv: &TestServer, header: &[u8]) -> Ctl {
    let mut s = connect_bound(BALANCER, srv.addr);
    s.write_all(header).unwrap();
    let mut c = Ctl::from_stream(s);
    let r = c.reply();
    assert_eq!(r.code, 220, "greeting after the header: {r:?}");
    c
}

/// What the server sent before it closed `s` (a reset counts as closed);
/// fails if it is still open after `IO_TIMEOUT`.
#[track_caller]
fn closed_silently(mut s: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("connection not closed by the server ({e}); got {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

/// The client address the server believes in, from `STAT`.
#[track_caller]
fn seen_as(c: &mut Ctl) -> String {
    let r = c.expect("STAT", 211);
    let line = r.lines.iter().find(|l| l.contains("Connected to")).unwrap_or_else(|| panic!("no address in STAT: {r:?}"));
    line.trim().trim_start_matches("Connected to ").to_string()
}

#[test]
fn v1_header_and_commands_in_one_segment_are_all_run() {
    let srv = behind_balancer(|_| {});
    let mut s = connect_bound(BALANCER, srv.addr);
    let mut bytes = v1(CLIENT, 40001, srv.addr);
    bytes.extend_from_slice(b"USER anonymous\r\nPASS x@y\r\nPWD\r\n");
    s.write_all(&bytes).unwrap();
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
    assert_eq!(c.reply().code, 331);
    assert_eq!(c.reply().code, 230);
    assert_eq!(c.reply().code, 257);
    assert_eq!(seen_as(&mut c), CLIENT);
}

#[test]
fn v2_header_sent_one_byte_per_segment_is_assembled() {
    let srv = behind_balancer(|_| {});
    let mut s = connect_bound(BALANCER, srv.addr);
    for b in v2(CLIENT, 40002, srv.addr) {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    // Nothing is said before the header is whole; then the greeting.
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
    c.login("anonymous", "x@y");
    assert_eq!(seen_as(&mut c), CLIENT);
}

#[test]
fn a_v2_local_header_uses_the_balancers_own_address() {
    let srv = behind_balancer(|_| {});
    let mut c = through_balancer(&srv, &v2_local());
    c.login("anonymous", "x@y");
    assert_eq!(seen_as(&mut c), BALANCER);
}

#[test]
fn bytes_that_are_no_header_close_the_connection_without_a_byte() {
    let srv = behind_balancer(|c| c.login_timeout = Duration::from_secs(60));
    let huge_v2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    let mut long_v1 = b"PROXY UNKNOWN ".to_vec();
    long_v1.resize(200, b'x');
    let cases: [(&str, Vec<u8>); 5] = [
        ("an FTP command", b"USER anonymous\r\n".to_vec()),
        ("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
        ("a v1 line past 107 bytes", long_v1),
        ("a v2 header declaring 65,535 bytes", huge_v2),
        ("a v1 header with a bad address", b"PROXY TCP4 127.0.0.300 127.0.0.1 1 2\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let mut s = connect_bound(BALANCER, srv.addr);
        s.write_all(&bytes).unwrap();
        // Closed at once (the login timeout is a minute away, the read
        // timeout 10 s), and nothing was said.
        let got = closed_silently(s);
        assert!(got.is_empty(), "{what}: the server sent {:?}", String::from_utf8_lossy(&got));
    }
    // And the server serves the next one.
    let mut c = through_balancer(&srv, &v1(CLIENT, 40003, srv.addr));
    c.login("anonymous", "x@y");
}

#[test]
fn no_header_until_the_login_timeout_is_closed_while_others_are_served() {
    let srv = behind_balancer(|c| c.login_timeout = Duration::from_secs(2));
    let silent = connect_bound(BALANCER, srv.addr);
    let mut half = connect_bound(BALANCER, srv.addr);
    half.write_all(&v1(CLIENT, 40004, srv.addr)[..10]).unwrap();
    let mut c = through_balancer(&srv, &v2(OTHER_CLIENT, 40005, srv.addr));
    c.login("anonymous", "x@y");
    for (what, s) in [("silent", silent), ("half a header", half)] {
        let got = closed_silently(s);
        assert!(got.is_empty(), "{what}: the server sent {:?}", String::from_utf8_lossy(&got));
    }
    assert_eq!(c.expect("NOOP", 200).code, 200);
    assert_eq!(seen_as(&mut c), OTHER_CLIENT);
}

#[test]
fn a_direct_connection_from_outside_proxy_from_is_closed() {
    let srv = behind_balancer(|_| {});
    for src in ["127.0.0.1", CLIENT] {
        let got = closed_silently(connect_bound(src, srv.addr));
        assert!(got.is_empty(), "from {src}: the server sent {:?}", String::from_utf8_lossy(&got));
    }
    // Even with a header: only the balancer may name a client.
    let mut s = connect_bound(CLIENT, srv.addr);
    let _ = s.write_all(&v1(OTHER_CLIENT, 40006, srv.addr));
    assert!(closed_silently(s).is_empty());
    let mut c = through_balancer(&srv, &v1(CLIENT, 40015, srv.addr));
    c.login("anonymous", "x@y");
}

#[test]
fn max_per_ip_counts_the_real_client_not_the_balancer() {
    let srv = behind_balancer(|c| c.max_per_ip = 1);
    let mut first = through_balancer(&srv, &v1(CLIENT, 40007, srv.addr));
    first.login("anonymous", "x@y");
    let mut s = connect_bound(BALANCER, srv.addr);
    s.write_all(&v1(CLIENT, 40008, srv.addr)).unwrap();
    let mut second = Ctl::from_stream(s);
    assert_eq!(second.reply().code, 421, "a second connection of the same real client");
    let mut other = through_balancer(&srv, &v2(OTHER_CLIENT, 40009, srv.addr));
    other.login("anonymous", "x@y");
    assert_eq!(first.expect("NOOP", 200).code, 200);
}

#[test]
fn port_and_eprt_must_name_the_real_client_and_active_mode_connects_to_it() {
    let srv = behind_balancer(|_| {});
    srv.put("f.txt", b"to the real client\n");
    let mut c = through_balancer(&srv, &v1(CLIENT, 40010, srv.addr));
    c.login("anonymous", "x@y");
    // The balancer's address is not the client's.
    let l = TcpListener::bind((BALANCER, 0)).unwrap();
    let r = c.cmd(&port_arg(l.local_addr().unwrap()));
    assert_eq!(r.code, 504, "PORT to the balancer: {r:?}");
    let r = c.cmd(&eprt_arg(l.local_addr().unwrap()));
    assert_eq!(r.code, 504, "EPRT to the balancer: {r:?}");
    // The real client's address is, and the server connects there.
    let l = TcpListener::bind((CLIENT, 0)).unwrap();
    c.expect(&port_arg(l.local_addr().unwrap()), 200);
    let (_, mut data) = c.start_on(DataPrep::Active(l), "RETR f.txt");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"to the real client\n");
    assert_eq!(c.reply().code, 226);
}

#[test]
fn passive_data_through_the_balancer_must_name_the_sessions_client() {
    let srv = behind_balancer(|c| c.data_timeout = Duration::from_secs(2));
    srv.put("f.bin", &pattern(100_000, 7));
    let mut c = through_balancer(&srv, &v1(CLIENT, 40011, srv.addr));
    c.login("anonymous", "x@y");
    c.expect("TYPE I", 200);

    // A header naming another client: refused, the transfer gets 425.
    let addr = c.pasv();
    c.send("RETR f.bin");
    let mut thief = connect_bound(BALANCER, addr);
    thief.write_all(&v2(OTHER_CLIENT, 40012, addr)).unwrap();
    let got = read_to_eof_within(&mut thief, IO_TIMEOUT).unwrap_or_default();
    assert!(got.is_empty(), "the foreign data connection got {} bytes", got.len());
    assert_eq!(c.reply().code, 425);

    // A direct connection from the real client is still fine.
    let addr = c.pasv();
    c.send("RETR f.bin");
    let mut data = connect_bound(CLIENT, addr);
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&pattern(100_000, 7)));
    assert_eq!(c.reply().code, 226);

    // Through the balancer with the right header, the data in the same
    // segment as the header: every byte of the upload arrives.
    let upload = pattern(50_000, 9);
    let addr = c.pasv();
    c.send("STOR up.bin");
    let mut data = connect_bound(BALANCER, addr);
    let mut first = v2(CLIENT, 40013, addr);
    first.extend_from_slice(&upload);
    data.write_all(&first).unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    assert!(c.reply().is_preliminary());
    drop(data);
    assert_eq!(c.reply().code, 226);
    assert_eq!(sha256(&std::fs::read(srv.path("up.bin")).unwrap()), sha256(&upload));

    // And a download through the balancer (v1 header, split in two).
    let addr = c.pasv();
    c.send("RETR f.bin");
    let mut data = connect_bound(BALANCER, addr);
    let h = v1(CLIENT, 40014, addr);
    data.write_all(&h[..7]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    data.write_all(&h[7..]).unwrap();
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&pattern(100_000, 7)));
    assert_eq!(c.reply().code, 226);
}
