//! Red-team tests of FTPS (RFC 4217): one hostile TLS client against the
//! built binary, each test named after the bound or rule it claims.
//!
//! Every test starts its own server process (stopped by PID when the test
//! ends, see `common::process::Server`), talks to it over loopback only,
//! and is bounded in time and in the number of connections and bytes it
//! makes. Tests that are about the loop run an honest TLS client beside
//! the hostile one; the tests run one at a time (a lock).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(field))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:").expect("the server's /proc/PID/status")
}

/// The server's CPU time (user + system) in clock ticks (100 Hz).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's /proc/PID/stat");
    // Fields after the command name (which ends with the last ')').
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, so 11 and 12 here (0-based).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Voluntary and involuntary context switches of every thread of the server.
fn wakeups(pid: u32) -> u64 {
    let mut n = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in s.lines() {
            if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:")) {
                n += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    n
}

fn sha(bytes: &[u8]) -> String {
    sha256_in_process(bytes)
}

/// Replies up to the first that is not `1xx`.
fn final_reply(c: &mut TlsCtl) -> Vec<u16> {
    let mut codes = Vec::new();
    loop {
        match c.try_reply() {
            Ok(r) => {
                codes.push(r.code);
                if r.code >= 200 {
                    return codes;
                }
            }
            Err(e) => {
                codes.push(0);
                eprintln!("reading a reply: {e}");
                return codes;
            }
        }
    }
}

/// A logged-in PROT P, TYPE I TLS control connection.
fn protected(addr: SocketAddr, v: Version) -> TlsCtl {
    let mut c = TlsCtl::open(addr, TlsClient::new(v));
    c.login("anonymous", "x@y");
    c.protect();
    c.expect("TYPE I", 200);
    c
}

// ---------------------------------------------------------------------------
// (e) Data connections belong to their own control connection's TLS session

/// A data connection that completes a full TLS 1.2 handshake is refused
/// (`522`) — but before the refusal the server has already sent it a TLS
/// 1.2 session ticket (and cached its session id), made while processing
/// on behalf of the *victim's* control connection, so the ticket carries
/// the victim's owner id. Whoever took the victim's passive connection
/// (same address: NAT, a shared host) resumes that ticket on the victim's
/// next passive connection, and `require_reuse` accepts it as the victim's
/// own session.
#[test]
fn a_refused_full_handshake_on_a_data_connection_earns_no_session_that_later_passes_as_the_owners() {
    let _lock = one_at_a_time();
    let b = binary();
    let addr = b.srv.addr;
    let mut victim = protected(addr, Version::Tls12);
    let thief = TlsClient::new(Version::Tls12);

    // Round 1: the thief takes the victim's passive connection first and
    // makes a full handshake: refused, as it should be.
    let pasv = victim.pasv();
    let tcp = with_timeouts(TcpStream::connect(pasv).unwrap());
    victim.send("RETR small.bin");
    let first = handshake(&thief, tcp).map(|mut s| {
        let mut v = Vec::new();
        let _ = s.read_to_end(&mut v);
        v.len()
    });
    let codes = final_reply(&mut victim);
    assert_eq!(codes.last(), Some(&522), "round 1: a full handshake on the victim's data connection: {codes:?} (thief got {first:?})");
    let stored = thief.store().tls12_sessions_stored();

    // Round 2: the thief resumes what round 1 gave it.
    let pasv = victim.pasv();
    let tcp = with_timeouts(TcpStream::connect(pasv).unwrap());
    victim.send("RETR small.bin");
    let stolen = handshake(&thief, tcp).map(|mut s| {
        let kind = s.conn.handshake_kind();
        let mut v = Vec::new();
        let _ = s.read_to_end(&mut v);
        (kind, v)
    });
    let codes = final_reply(&mut victim);
    let stolen_bytes = match &stolen {
        Ok((_, v)) => v.len(),
        Err(_) => 0,
    };
    eprintln!("round 1: {stored} TLS 1.2 session(s) stored by the thief; round 2: {codes:?}, {:?}", stolen.as_ref().map(|(k, v)| (k, v.len())));
    assert!(
        stored == 0 && stolen_bytes == 0 && codes.last() == Some(&522),
        "a refused data connection earned {stored} resumable TLS 1.2 session(s) bound to the victim's control connection; \
         resuming it on the victim's next passive connection gave the thief {stolen_bytes} bytes of the file \
         (handshake {:?}) and the victim {codes:?}",
        stolen.as_ref().map(|(k, _)| *k)
    );
    assert_ne!(stolen.as_ref().ok().map(|(_, v)| sha(v)), Some(sha(&b.small)));
}

// ---------------------------------------------------------------------------
// (c) Work linear in what was sent

/// AUTH TLS on a new control connection; the socket, ready for a ClientHello.
fn auth_tls_socket(addr: SocketAddr) -> TcpStream {
    let mut c = TlsCtl::connect(addr, TlsClient::new(Version::Tls13));
    c.reply();
    c.expect("AUTH TLS", 234);
    let s = c.socket().try_clone().unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One byte of a handshake message per TLS record (6 bytes on the wire
/// each): a ClientHello header promising 65,535 bytes, then its body a
/// byte at a time, each record its own `write` (its own segment). Returns
/// the bytes sent before the server closed or `max_records` were sent.
fn one_byte_handshake_records(mut s: TcpStream, max_records: usize, pace: Option<Duration>) -> usize {
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let header = [0x01u8, 0x00, 0xff, 0xff];
    let mut sent = 0;
    for i in 0..max_records {
        let b = if i < header.len() { header[i] } else { (i % 251) as u8 };
        if s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x01, b]).is_err() {
            break;
        }
        sent += 6;
        if let Some(p) = pace {
            if i % 64 == 63 {
                std::thread::sleep(p);
            }
        }
    }
    sent
}

/// A ClientHello sent one byte per TLS record, one record per segment,
/// on 8 connections at once (14,000 records each, past the 80 KiB read
/// buffer that bounds an unfinished handshake message): the server's work
/// stays linear (measured: ~50 ms of CPU in the debug build), each
/// connection is closed at the buffer's bound, and an honest client is
/// served meanwhile.
#[test]
fn a_client_hello_in_one_byte_records_costs_linear_work_and_is_cut_at_the_read_buffer() {
    let _lock = one_at_a_time();
    let b = binary();
    let addr = b.srv.addr;
    let pid = b.srv.pid();
    let t0 = cpu_ticks(pid);
    let socks: Vec<TcpStream> = (0..8).map(|_| auth_tls_socket(addr)).collect();
    let readers: Vec<TcpStream> = socks.iter().map(|s| s.try_clone().unwrap()).collect();
    let hs: Vec<_> = socks.into_iter().map(|s| std::thread::spawn(move || one_byte_handshake_records(s, 14_000, None))).collect();
    // An honest client meanwhile.
    let t = Instant::now();
    let mut honest = protected(addr, Version::Tls13);
    let got = honest.retr(Mode::Epsv, Order::ConnectFirst, "small.bin");
    let honest_took = t.elapsed();
    let sent: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    std::thread::sleep(Duration::from_millis(300));
    let ticks = cpu_ticks(pid) - t0;
    let mut open = 0;
    for mut r in readers {
        r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut sink = Vec::new();
        if let Err(e) = r.read_to_end(&mut sink) {
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                open += 1;
            }
        }
    }
    eprintln!("{sent} bytes in one-byte handshake records: server CPU {ticks} ticks; honest RETR {honest_took:?}; {open} left open");
    assert_eq!(sha(&got), sha(&b.small));
    assert!(ticks < 200, "{sent} bytes of one-byte records cost the server {ticks} ticks (10 ms each) of CPU");
    assert!(honest_took < Duration::from_secs(4), "honest login + RETR took {honest_took:?}");
    assert_eq!(open, 0, "{open} connection(s) with an unfinished 64 KiB handshake message in 84,000 bytes of records were not closed");
}

// ---------------------------------------------------------------------------
// (g) An idle TLS session costs its keys and nothing else, and no wake-ups

/// 400 idle, logged-in TLS control connections (half TLS 1.2, half 1.3,
/// PROT P, one in eight after a PROT P RETR: the handshake's and the
/// transfer's buffers have come and gone): the server's RSS grows by at
/// most 6 KiB per session — its keys, rustls's state (~3.3 KB), the plain
/// session and a TLS 1.2 session-cache entry, but no buffer: one 8 KiB
/// read buffer kept per session would break it — and over 2 s of idleness
/// the server wakes up at most a few times (the timer wheel's next
/// deadline), not once per session. The target (4 KiB of PSS per
/// session at 5,000 sessions) is the benchmark's to check
/// (`bench/compare.sh --scenarios idle-tls`), not a test's.
#[test]
fn an_idle_tls_session_holds_no_buffer_and_no_wakeups() {
    let _lock = one_at_a_time();
    let b = binary_with(&["--max-per-ip", "1000", "--max-clients", "2000"]);
    let addr = b.srv.addr;
    let pid = b.srv.pid();
    // Warm up: the per-thread buffers, the first session of each version.
    let mut warm: Vec<TlsCtl> = VERSIONS.iter().map(|v| protected(addr, *v)).collect();
    for w in warm.iter_mut() {
        assert_eq!(w.retr(Mode::Epsv, Order::ConnectFirst, "small.bin"), b.small);
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(pid);
    const N: usize = 400;
    let mut idle = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = protected(addr, VERSIONS[i % 2]);
        if i % 8 == 0 {
            assert_eq!(c.retr(Mode::Epsv, Order::ConnectFirst, "small.bin"), b.small);
        }
        idle.push(c);
    }
    for c in idle.iter_mut() {
        c.expect("NOOP", 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid);
    let w0 = wakeups(pid);
    std::thread::sleep(Duration::from_secs(2));
    let woke = wakeups(pid) - w0;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / N as f64;
    eprintln!("RSS {before} KiB -> {after} KiB with {N} idle TLS sessions: {per:.0} bytes each; {woke} wake-ups in 2 s idle");
    // The sessions are still served.
    for c in idle.iter_mut().step_by(50) {
        c.expect("NOOP", 200);
    }
    let mut problems = Vec::new();
    if per > 6144.0 {
        problems.push(format!("an idle TLS session costs {per:.0} bytes of RSS (bound 6144)"));
    }
    if woke > 10 {
        problems.push(format!("{woke} wake-ups in 2 s with {N} idle TLS sessions (bound 10)"));
    }
    assert!(problems.is_empty(), "{}", problems.join("; "));
}

// ---------------------------------------------------------------------------
// (f) Nothing the client sent after CCC is lost

/// A client that pipelines `CCC`, its `close_notify` and then 12 KB of
/// plaintext commands in one write (as a script would): every command is
/// answered. The server reads the close_notify record and the plaintext
/// after it into the TLS layer's pending input; once the close_notify is
/// seen, `Stream::read` (src/reactor/stream.rs, the CCC branch) hands back
/// `rest.len().min(buf.len())` bytes of that leftover and drops the rest
/// (the control reader's buffer is 8 KiB).
#[test]
fn plaintext_pipelined_after_ccc_and_close_notify_is_not_lost() {
    let _lock = one_at_a_time();
    let b = binary();
    let addr = b.srv.addr;
    let mut c = TlsCtl::open(addr, TlsClient::new(Version::Tls13));
    c.login("anonymous", "x@y");
    // CCC and close_notify sealed by the client's TLS, then plaintext: one write.
    let mut wire = c.seal(b"CCC\r\n");
    wire.extend(c.seal_close_notify());
    const N: usize = 2000;
    wire.extend(b"NOOP\r\n".repeat(N));
    let mut raw = c.socket().try_clone().unwrap();
    raw.write_all(&wire).unwrap();
    // Read: the 200 of CCC inside TLS, the server's close_notify, then N
    // plaintext 200s. Only count "200 " lines in what follows the TLS part.
    raw.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        match raw.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if count(&got, b"200 ") >= N {
            break;
        }
    }
    let plain_200s = count(&got, b"200 ");
    eprintln!("{} bytes back, {plain_200s} plaintext 200s for {N} NOOPs", got.len());
    assert!(plain_200s >= N, "{N} NOOPs pipelined after CCC's close_notify (12,000 bytes in one write): only {plain_200s} answered");
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// ---------------------------------------------------------------------------
// (b)/(c) TLS 1.3 post-handshake messages

/// KeyUpdate floods (TLS 1.3, update_requested): 40 in a row without
/// application data close the connection (rustls allows 32); 3 s of
/// KeyUpdate + NOOP pairs from a client that never reads (each pair
/// resets rustls's count and asks the server for a KeyUpdate of its own)
/// leave the server under 64 MiB of RSS, and an honest client is served
/// meanwhile.
#[test]
fn key_update_floods_are_cut_or_held_back_and_an_honest_client_is_served() {
    let _lock = one_at_a_time();
    let b = binary();
    let addr = b.srv.addr;
    let pid = b.srv.pid();
    let mut problems = Vec::new();
    // 40 in a row.
    let mut c = TlsCtl::open(addr, TlsClient::new(Version::Tls13));
    c.login("anonymous", "x@y");
    let mut wire = Vec::new();
    for _ in 0..40 {
        wire.extend(c.seal_key_update());
    }
    let mut raw = c.socket().try_clone().unwrap();
    raw.write_all(&wire).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut sink = Vec::new();
    if let Err(e) = raw.read_to_end(&mut sink) {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            problems.push("40 KeyUpdates in a row did not close the connection".to_string());
        }
    }
    // Pairs, never read, from 4 connections.
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(rss_kib(pid));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let floods: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut c = TlsCtl::open(addr, TlsClient::new(Version::Tls13));
                    c.login("anonymous", "x@y");
                    let mut raw = c.socket().try_clone().unwrap();
                    raw.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
                    let t = Instant::now();
                    let mut sent = 0usize;
                    'flood: while t.elapsed() < Duration::from_secs(3) {
                        let mut batch = Vec::new();
                        for _ in 0..200 {
                            batch.extend(c.seal_key_update());
                            batch.extend(c.seal(b"NOOP\r\n"));
                        }
                        if raw.write_all(&batch).is_err() {
                            break 'flood;
                        }
                        sent += batch.len();
                    }
                    c.shutdown();
                    sent
                })
            })
            .collect();
        let t = Instant::now();
        let mut rounds = 0;
        while t.elapsed() < Duration::from_secs(3) {
            let r = Instant::now();
            let mut h = protected(addr, Version::Tls13);
            let got = h.retr(Mode::Epsv, Order::ConnectFirst, "small.bin");
            if sha(&got) != sha(&b.small) {
                problems.push("honest RETR: wrong bytes".into());
            }
            if r.elapsed() > Duration::from_secs(5) {
                problems.push(format!("honest round took {:?}", r.elapsed()));
            }
            rounds += 1;
        }
        let sent: usize = floods.into_iter().map(|f| f.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        eprintln!("KeyUpdate + NOOP pairs: {sent} bytes sent; {rounds} honest rounds; RSS peak {} KiB", peak.load(Ordering::Relaxed));
    });
    if peak.load(Ordering::Relaxed) > 64 * 1024 {
        problems.push(format!("RSS peaked at {} KiB", peak.load(Ordering::Relaxed)));
    }
    assert!(problems.is_empty(), "{}", problems.join("; "));
}
