//! Limits and deadlines over real loopback sockets: many idle sessions
//! beside a big transfer, connection limits, and every timeout (login,
//! idle, data connection, stalled transfer), plus a clean stop.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn two_hundred_idle_sessions_still_answer_noop_during_and_after_a_64mib_transfer() {
    let srv = TestServer::with(|c| {
        c.max_per_ip = 1000;
        c.max_clients = 1000;
    });
    srv.put("big.bin", big());
    let mut idle: Vec<Ctl> = (0..200).map(|_| srv.anon()).collect();
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let (_, mut data) = c.open_transfer(Mode::Pasv, "RETR big.bin");
    let mut got = vec![0u8; 8 * MIB];
    data.read_exact(&mut got).unwrap();
    // The transfer is in flight (56 MiB cannot sit in socket buffers), and
    // every idle session is still served.
    for (i, s) in idle.iter_mut().enumerate() {
        let r = s.cmd("NOOP");
        assert_eq!(r.code, 200, "idle session {i} during the transfer: {r:?}");
    }
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 64 * MIB);
    assert_eq!(sha256(&got), big_sha());
    assert_eq!(c.reply().code, 226);
    for (i, s) in idle.iter_mut().enumerate() {
        let r = s.cmd("NOOP");
        assert_eq!(r.code, 200, "idle session {i} after the transfer: {r:?}");
    }
    idle.iter_mut().take(5).for_each(|s| {
        s.expect("PWD", 257);
    });
}

#[test]
fn the_connection_over_max_clients_gets_421() {
    let srv = TestServer::with(|c| c.max_clients = 3);
    // Logged in: sessions that are not may be evicted to make room.
    let mut held: Vec<Ctl> = (0..3).map(|_| srv.anon()).collect();
    let mut fourth = Ctl::connect(srv.addr);
    let r = fourth.reply();
    assert_eq!(r.code, 421, "{r:?}");
    fourth.expect_closed();
    // The three are unaffected.
    for s in held.iter_mut() {
        s.expect("NOOP", 200);
    }
    // When one leaves, a newcomer is let in.
    let mut gone = held.pop().unwrap();
    gone.expect("QUIT", 221);
    gone.expect_closed();
    let mut admitted = None;
    wait_until("a slot to free up after QUIT", Duration::from_secs(5), || {
        let mut c = Ctl::connect(srv.addr);
        match c.try_reply() {
            Ok(r) if r.code == 220 => {
                admitted = Some(c);
                true
            }
            Ok(r) if r.code == 421 => false,
            other => panic!("unexpected greeting {other:?}"),
        }
    });
    admitted.unwrap().login("anonymous", "a@b");
}

#[test]
fn at_max_clients_the_oldest_session_not_logged_in_makes_room() {
    let srv = TestServer::with(|c| c.max_clients = 3);
    let mut logged_in = srv.anon();
    let mut oldest_silent = srv.ctl();
    let mut newer_silent = srv.ctl();
    let mut newcomer = Ctl::connect(srv.addr);
    assert_eq!(newcomer.reply().code, 220, "the newcomer is let in");
    let r = oldest_silent.reply();
    assert_eq!(r.code, 421, "the oldest session not logged in is evicted: {r:?}");
    oldest_silent.expect_closed();
    newer_silent.expect("NOOP", 200);
    logged_in.expect("NOOP", 200);
    newcomer.login("anonymous", "a@b");
}

#[test]
fn the_connection_over_max_per_ip_gets_421() {
    let srv = TestServer::with(|c| c.max_per_ip = 2);
    let mut a = srv.ctl();
    let mut b = srv.ctl();
    let mut third = Ctl::connect(srv.addr);
    assert_eq!(third.reply().code, 421);
    third.expect_closed();
    a.expect("NOOP", 200);
    b.expect("NOOP", 200);
}

#[test]
fn idle_timeout_sends_421_and_closes() {
    let srv = TestServer::with(|c| c.idle_timeout = Duration::from_secs(1));
    let mut c = srv.anon();
    c.expect("NOOP", 200);
    let r = c.reply(); // bounded by IO_TIMEOUT
    assert_eq!(r.code, 421, "{r:?}");
    c.expect_closed();
}

#[test]
fn login_timeout_sends_421_and_closes() {
    let srv = TestServer::with(|c| {
        c.login_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(600);
    });
    let mut c = srv.ctl();
    c.expect("USER anonymous", 331);
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    c.expect_closed();
}

#[test]
fn commands_keep_an_idle_session_alive() {
    // Each command restarts the idle deadline: a session that talks every
    // 400 ms outlives a 1 s idle timeout.
    let srv = TestServer::with(|c| c.idle_timeout = Duration::from_secs(1));
    let mut c = srv.anon();
    for _ in 0..6 {
        c.set_read_timeout(Duration::from_millis(400));
        match c.try_reply() {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("nothing was expected yet, got {other:?}"),
        }
        c.set_read_timeout(IO_TIMEOUT);
        c.expect("NOOP", 200);
    }
}

#[test]
fn data_timeout_closes_an_unused_passive_listener() {
    let srv = TestServer::with(|c| c.data_timeout = Duration::from_secs(1));
    srv.put("f.txt", b"x");
    let mut c = srv.anon();
    for mode in [Mode::Pasv, Mode::Epsv] {
        let DataPrep::Passive(addr) = c.prepare(mode) else { unreachable!() };
        assert!(is_listening(addr), "{mode:?}: no listener at {addr}");
        wait_until("the unused passive listener to close", Duration::from_secs(5), || !is_listening(addr));
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(), "{mode:?}: {addr} still accepts");
        // The session is fine; the stale passive mode gives 425.
        c.expect("NOOP", 200);
        c.expect("RETR f.txt", 425);
    }
}

#[test]
fn data_timeout_answers_425_when_the_client_never_connects() {
    let srv = TestServer::with(|c| c.data_timeout = Duration::from_secs(1));
    srv.put("f.txt", b"never sent");
    let mut c = srv.anon();
    let addr = c.pasv();
    c.send("RETR f.txt");
    let r = c.reply(); // bounded by IO_TIMEOUT
    assert_eq!(r.code, 425, "{r:?}");
    assert!(!is_listening(addr));
    // And the session goes on.
    assert_eq!(c.retr(Mode::Epsv, "f.txt"), b"never sent");
}

#[test]
fn stalled_upload_is_426_and_leaves_no_temp_file() {
    let srv = TestServer::with(|c| c.stall_timeout = Duration::from_secs(1));
    srv.put("keep.txt", b"old");
    let mut c = srv.anon();
    let (_, mut data) = c.open_transfer(Mode::Pasv, "STOR keep.txt");
    data.write_all(b"a few bytes, then silence").unwrap();
    let r = c.reply(); // bounded by IO_TIMEOUT
    assert_eq!(r.code, 426, "{r:?}");
    wait_until("the temporary file to be removed", Duration::from_secs(5), || srv.temp_files("").is_empty());
    assert_eq!(std::fs::read(srv.path("keep.txt")).unwrap(), b"old");
    drop(data);
    c.expect("NOOP", 200);
}

#[test]
fn idle_timeout_does_not_cut_a_running_transfer() {
    let srv = TestServer::with(|c| {
        c.idle_timeout = Duration::from_secs(1);
        c.stall_timeout = Duration::from_secs(60);
    });
    let mut c = srv.anon();
    let (_, mut data) = c.open_transfer(Mode::Port, "STOR slow.txt");
    // Trickle for longer than the idle timeout; nothing may arrive meanwhile.
    for i in 0..5 {
        data.write_all(format!("chunk {i}\n").as_bytes()).unwrap();
        c.set_read_timeout(Duration::from_millis(400));
        match c.try_reply() {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("the control connection spoke during the transfer: {other:?}"),
        }
    }
    c.set_read_timeout(IO_TIMEOUT);
    drop(data);
    assert_eq!(c.reply().code, 226);
    assert_eq!(std::fs::read_to_string(srv.path("slow.txt")).unwrap().lines().count(), 5);
    c.expect("NOOP", 200);
}

#[test]
fn stop_sends_421_to_idle_sessions_and_the_server_thread_ends() {
    let srv = TestServer::start();
    let mut a = srv.anon();
    let mut b = srv.ctl();
    srv.stop();
    for c in [&mut a, &mut b] {
        let r = c.reply();
        assert_eq!(r.code, 421, "{r:?}");
        c.expect_closed();
    }
    wait_until("the server thread to end after stop()", Duration::from_secs(5), || srv.is_finished());
    assert!(TcpStream::connect_timeout(&srv.addr, Duration::from_secs(2)).is_err(), "still accepting after stop()");
}

#[test]
fn stop_lets_a_running_transfer_finish_within_the_grace_period() {
    let srv = TestServer::with(|c| c.shutdown_grace = Duration::from_secs(5));
    let body = pattern(16 * MIB, 41);
    srv.put("f.bin", &body);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let (_, mut data) = c.open_transfer(Mode::Pasv, "RETR f.bin");
    let mut got = vec![0u8; MIB];
    data.read_exact(&mut got).unwrap();
    srv.stop();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&body));
    assert_eq!(c.reply().code, 226);
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    c.expect_closed();
}

#[test]
fn an_idle_data_connection_is_closed_after_the_data_timeout() {
    // Found by the red team: a connected data socket with no transfer
    // command held its slot for as long as the session lived.
    let srv = TestServer::with(|c| c.data_timeout = Duration::from_secs(1));
    srv.put("f", b"hello");
    let mut c = srv.anon();
    let addr = c.pasv();
    let mut data = connect_data(addr);
    data.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server closes it: EOF within the bound.
    let mut buf = [0u8; 16];
    let n = data.read(&mut buf).expect("the server closes the idle data connection");
    assert_eq!(n, 0);
    let r = c.cmd("RETR f");
    assert_eq!(r.code, 425, "{r:?}");
    // The session goes on, with a new data connection.
    assert_eq!(c.retr(Mode::Pasv, "f"), b"hello");
}

#[test]
fn one_address_holds_at_most_max_data_per_ip_data_slots() {
    let srv = TestServer::with(|c| c.max_data_per_ip = 2);
    srv.put("f", b"hello");
    let mut a = srv.anon();
    let mut b = srv.anon();
    let mut c = srv.anon();
    a.pasv();
    b.pasv();
    c.expect("PASV", 425);
    c.expect("EPSV", 425);
    // Active mode counts too.
    let l = c.port();
    let r = c.cmd("RETR f");
    assert_eq!(r.code, 425, "{r:?}");
    drop(l);
    // A slot comes back when a session gives its listener up.
    a.expect("PORT 127,0,0,1,4,1", 200);
    assert_eq!(c.retr(Mode::Epsv, "f"), b"hello");
}
