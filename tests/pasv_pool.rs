//! The pool of passive listeners (`reactor/data.rs`, `Transfers`): a
//! listener whose connection came is kept for the next PASV/EPSV, never
//! hands a connection queued on it to another session, holds its bound,
//! honours `--passive-ports`, and is closed when idle.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::*;
use leanftpd::reactor::{PASV_POOL_IDLE, PASV_POOL_MAX};

/// The tests of this file count listening sockets in a port range, which a
/// server of another test running at the same time could bind into: they
/// run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Listening sockets on 127.0.0.1 with a port in `lo..=hi`, from
/// `/proc/net/tcp` (looking does not consume a listener).
fn listening_in(lo: u16, hi: u16) -> Vec<u16> {
    (lo..=hi).filter(|&p| is_listening(SocketAddr::from(([127, 0, 0, 1], p)))).collect()
}

/// `len` consecutive ports that are free now (probed by binding them).
fn free_range(len: u16) -> (u16, u16) {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let lo = probe.local_addr().unwrap().port();
        drop(probe);
        if !(1024..=65535 - len).contains(&lo) {
            continue;
        }
        let held: Vec<_> = (lo..lo + len).map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == usize::from(len) {
            return (lo, lo + len - 1);
        }
    }
    panic!("no {len} free consecutive ports");
}

/// EPSV, RETR `name` over it: the port, and the bytes (226 asserted).
#[track_caller]
fn epsv_retr(c: &mut Ctl, name: &str) -> (u16, Vec<u8>) {
    let addr = c.epsv();
    let got = c.start_on(DataPrep::Passive(addr), &format!("RETR {name}"));
    let (_, mut data) = got;
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).unwrap();
    drop(data);
    assert_eq!(c.reply().code, 226);
    (addr.port(), bytes)
}

#[test]
fn the_next_session_gets_the_listener_a_finished_transfer_left() {
    let _serial = serial();
    let s = TestServer::start();
    let body = pattern(4096, 1);
    s.put("f", &body);
    let mut a = s.anon();
    let (pa, got) = epsv_retr(&mut a, "f");
    assert_eq!(got, body);
    let mut b = s.anon();
    let (pb, got) = epsv_retr(&mut b, "f");
    assert_eq!(got, body);
    assert_eq!(pb, pa, "the second session reuses the pooled listener");
    // And through PASV too, in the same session.
    let p = b.pasv();
    assert_eq!(p.port(), pa, "PASV takes the pooled listener as EPSV does");
}

#[test]
fn a_connection_queued_on_a_pooled_listener_never_reaches_the_next_session() {
    let _serial = serial();
    let s = TestServer::start();
    let body = pattern(64 * 1024, 2);
    s.put("f", &body);
    let mut a = s.anon();
    let (pa, _) = epsv_retr(&mut a, "f");
    // A late connection to A's old port: the pooled listener is still
    // listening, so the kernel queues it.
    let mut stale = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    stale.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // B asks for a port: not that listener (its queue is not empty), and
    // B's transfer reaches B's own connection, whole.
    let mut b = s.anon();
    let (pb, got) = epsv_retr(&mut b, "f");
    assert_ne!(pb, pa, "a listener with a queued connection was handed out");
    assert_eq!(sha256(&got), sha256(&body));
    // The stale connection got nothing: the listener was closed (reset).
    let mut buf = [0u8; 16];
    match stale.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("the stale connection received {n} bytes"),
    }
    assert!(!is_listening(SocketAddr::from(([127, 0, 0, 1], pa))), "the listener with a queued connection is closed");
}

#[test]
fn the_pool_holds_its_bound() {
    let _serial = serial();
    let n = PASV_POOL_MAX + 6;
    let (lo, hi) = free_range(u16::try_from(4 * PASV_POOL_MAX + 16).unwrap());
    let s = TestServer::with(|c| {
        c.passive_ports = Some((lo, hi));
        c.max_data_per_ip = 1000;
        c.max_passive = 1000;
    });
    s.put("f", b"x");
    // n sessions each hold a passive listener at once, then each takes its
    // connection: n listeners go back, the pool keeps PASV_POOL_MAX.
    let mut ctls: Vec<Ctl> = (0..n).map(|_| s.anon()).collect();
    let addrs: Vec<SocketAddr> = ctls.iter_mut().map(|c| c.epsv()).collect();
    assert_eq!(listening_in(lo, hi).len(), n);
    for (c, a) in ctls.iter_mut().zip(&addrs) {
        let (_, mut data) = c.start_on(DataPrep::Passive(*a), "RETR f");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"x");
        assert_eq!(c.reply().code, 226);
    }
    let pooled = listening_in(lo, hi);
    assert_eq!(pooled.len(), PASV_POOL_MAX, "the pool keeps its bound: {pooled:?}");
}

#[test]
fn the_pool_empties_when_idle_for_the_data_timeout() {
    let _serial = serial();
    let (lo, hi) = free_range(64);
    let s = TestServer::with(|c| {
        c.passive_ports = Some((lo, hi));
        c.data_timeout = Duration::from_secs(1);
    });
    assert!(PASV_POOL_IDLE > Duration::from_secs(1));
    s.put("f", b"x");
    let mut ctls: Vec<Ctl> = (0..3).map(|_| s.anon()).collect();
    let addrs: Vec<SocketAddr> = ctls.iter_mut().map(|c| c.epsv()).collect();
    for (c, a) in ctls.iter_mut().zip(&addrs) {
        let (_, mut data) = c.start_on(DataPrep::Passive(*a), "RETR f");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(c.reply().code, 226);
    }
    // Pooled (those that waited less than the second so far).
    assert!(!listening_in(lo, hi).is_empty(), "listeners pooled");
    // Idle for the data timeout (1 s, shorter than PASV_POOL_IDLE): closed.
    wait_until("the idle pool closes", Duration::from_secs(5), || listening_in(lo, hi).is_empty());
    // The next PASV binds afresh, in the range.
    let p = ctls[0].epsv().port();
    assert!((lo..=hi).contains(&p), "{p} outside {lo}-{hi}");
}

#[test]
fn pooled_ports_honour_passive_ports_and_a_small_range_pools_a_quarter() {
    let _serial = serial();
    // 8 ports, one worker: the pool keeps at most 8 / 4 = 2 of them.
    let (lo, hi) = free_range(8);
    let s = TestServer::with(|c| c.passive_ports = Some((lo, hi)));
    s.put("f", b"data");
    let mut a = s.anon();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (p, got) = epsv_retr(&mut a, "f");
        assert_eq!(got, b"data");
        assert!((lo..=hi).contains(&p), "{p} outside {lo}-{hi}");
        seen.push(p);
    }
    assert!(seen.iter().all(|&p| p == seen[0]), "one session's transfers reuse one pooled port: {seen:?}");
    let mut ctls: Vec<Ctl> = (0..5).map(|_| s.anon()).collect();
    let addrs: Vec<SocketAddr> = ctls.iter_mut().map(|c| c.epsv()).collect();
    for (c, a) in ctls.iter_mut().zip(&addrs) {
        let (_, mut data) = c.start_on(DataPrep::Passive(*a), "RETR f");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(c.reply().code, 226);
    }
    assert_eq!(listening_in(lo, hi).len(), 2, "a range of 8 ports pools 2");
}
