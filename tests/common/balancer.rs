//! Helpers of the PROXY protocol tests (`tests/proxy.rs`, `tests/scale.rs`):
//! connections from a chosen loopback address (the "balancer"), hand-made
//! v1 and v2 headers, and what the server says or does not say.

#![allow(dead_code)]

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};

use super::{Ctl, IO_TIMEOUT};

/// A TCP connection from `src` (any port) to `dst`.
#[track_caller]
pub fn connect_bound(src: &str, dst: SocketAddr) -> TcpStream {
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
pub fn v1(client: &str, port: u16, dst: SocketAddr) -> Vec<u8> {
    format!("PROXY TCP4 {client} {} {port} {}\r\n", dst.ip(), dst.port()).into_bytes()
}

/// A v2 PROXY header (TCP over IPv4).
pub fn v2(client: &str, port: u16, dst: SocketAddr) -> Vec<u8> {
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
pub fn v2_local() -> Vec<u8> {
    b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00".to_vec()
}

/// What the server sent before it closed `s` (a reset counts as closed);
/// fails if it is still open after `IO_TIMEOUT`.
#[track_caller]
pub fn closed_silently(mut s: TcpStream) -> Vec<u8> {
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
pub fn seen_as(c: &mut Ctl) -> String {
    let r = c.expect("STAT", 211);
    let line = r.lines.iter().find(|l| l.contains("Connected to")).unwrap_or_else(|| panic!("no address in STAT: {r:?}"));
    line.trim().trim_start_matches("Connected to ").to_string()
}
