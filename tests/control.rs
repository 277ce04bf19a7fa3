//! The control connection over real loopback sockets: reply codes and their
//! order, pipelining, passive listeners kept or closed, bad input, and logins from a users
//! file.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;

// ----- reply codes -----------------------------------------------------------

#[test]
fn feat_is_a_multi_line_211_reply() {
    let srv = TestServer::start();
    let mut c = srv.ctl();
    let r = c.expect("FEAT", 211);
    assert!(r.lines.len() >= 3, "{r:?}");
    assert!(r.lines[0].starts_with("211-"), "{r:?}");
    assert!(r.lines.last().unwrap().starts_with("211 "), "{r:?}");
    for feature in ["EPSV", "EPRT", "SIZE"] {
        assert!(r.lines.iter().any(|l| l.trim() == feature), "FEAT lacks {feature}: {r:?}");
    }
    // The next reply is a new one, not a leftover of the multi-line reply.
    c.expect("NOOP", 200);
}

#[test]
fn retr_in_active_modes_answers_150_then_226() {
    let srv = TestServer::start();
    srv.put("f.txt", b"hello");
    let mut c = srv.anon();
    for mode in [Mode::Port, Mode::Eprt] {
        let (first, mut data) = c.open_transfer(mode, "RETR f.txt");
        assert_eq!(first.code, 150, "{mode:?}: {first:?}");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
        assert_eq!(c.reply().code, 226, "{mode:?}");
    }
}

#[test]
fn stor_and_list_in_active_modes_answer_150_then_226() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    for mode in [Mode::Port, Mode::Eprt] {
        let (first, mut data) = c.open_transfer(mode, "STOR up.txt");
        assert_eq!(first.code, 150, "{mode:?} STOR: {first:?}");
        data.write_all(b"data").unwrap();
        drop(data);
        assert_eq!(c.reply().code, 226, "{mode:?} STOR");
        let (first, mut data) = c.open_transfer(mode, "LIST");
        assert_eq!(first.code, 150, "{mode:?} LIST: {first:?}");
        let mut got = String::new();
        data.read_to_string(&mut got).unwrap();
        assert!(got.contains("up.txt"), "{got:?}");
        assert_eq!(c.reply().code, 226, "{mode:?} LIST");
    }
}

#[test]
fn retr_in_passive_modes_answers_1xx_then_226() {
    // 150, or 125 if the server had accepted the data connection before the
    // RETR line reached it (RFC 959 §4.2: both are preliminary).
    let srv = TestServer::start();
    srv.put("f.txt", b"hello");
    let mut c = srv.anon();
    for mode in [Mode::Pasv, Mode::Epsv] {
        let (first, mut data) = c.open_transfer(mode, "RETR f.txt");
        assert!(first.code == 150 || first.code == 125, "{mode:?}: {first:?}");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
        assert_eq!(c.reply().code, 226, "{mode:?}");
    }
}

#[test]
fn transfer_without_pasv_or_port_is_425() {
    let srv = TestServer::start();
    srv.put("f.txt", b"hello");
    let mut c = srv.anon();
    for cmd in ["RETR f.txt", "STOR g.txt", "LIST", "NLST"] {
        c.expect(cmd, 425);
    }
    // A refused STOR has no side effect.
    assert!(!srv.path("g.txt").exists());
    // The data mode is one-shot: after a transfer, the next needs PASV again.
    assert_eq!(c.retr(Mode::Pasv, "f.txt"), b"hello");
    c.expect("RETR f.txt", 425);
}

#[test]
fn missing_file_is_550() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    c.expect("SIZE nope.txt", 550);
    c.expect("MDTM nope.txt", 550);
    c.expect("CWD nope", 550);
    c.expect("DELE nope.txt", 550);
    c.expect("RMD nope", 550);
    c.expect("RNFR nope.txt", 550);
    for mode in MODES {
        match c.prepare(mode) {
            DataPrep::Passive(_) => {}
            DataPrep::Active(l) => {
                c.expect("RETR nope.txt", 550);
                assert!(accept_within(&l, Duration::from_millis(200)).is_none(), "{mode:?}: connected for a missing file");
                continue;
            }
        }
        c.expect("RETR nope.txt", 550);
        c.expect("LIST nope", 550);
    }
    c.expect("NOOP", 200);
}

#[test]
fn commands_before_login_are_530_and_pass_before_user_is_503() {
    let srv = TestServer::start();
    let mut c = srv.ctl();
    for cmd in ["PWD", "CWD /", "PASV", "LIST", "RETR x", "STOR x", "SIZE x"] {
        c.expect(cmd, 530);
    }
    c.expect("PASS x", 503);
    c.expect("NOOP", 200);
    c.login("anonymous", "a@b");
    c.expect("PWD", 257);
}

#[test]
fn quit_is_221_and_closes() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    c.expect("QUIT", 221);
    assert!(c.expect_closed().is_empty());
}

// ----- ordering -------------------------------------------------------------

#[test]
fn commands_pipelined_during_a_retr_are_answered_in_order_after_226() {
    let srv = TestServer::start();
    let body = pattern(4 * MIB, 21);
    srv.put("f.bin", &body);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    for mode in MODES {
        let prep = c.prepare(mode);
        // RETR, NOOP and PWD in one write, without waiting for any reply.
        c.send_raw(b"RETR f.bin\r\nNOOP\r\nPWD\r\n");
        let mut data = match prep {
            DataPrep::Passive(a) => connect_data(a),
            DataPrep::Active(l) => accept_within(&l, IO_TIMEOUT).expect("server connects"),
        };
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(sha256(&got), sha256(&body), "{mode:?}");
        let codes: Vec<u16> = (0..4).map(|_| c.reply().code).collect();
        let first_ok = if matches!(mode, Mode::Port | Mode::Eprt) { codes[0] == 150 } else { codes[0] == 150 || codes[0] == 125 };
        assert!(first_ok && codes[1..] == [226, 200, 257], "{mode:?}: replies in order {codes:?}");
    }
}

#[test]
fn commands_pipelined_during_a_stor_are_answered_in_order_after_226() {
    let srv = TestServer::start();
    let body = pattern(2 * MIB, 22);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let l = c.port();
    c.send_raw(b"STOR up.bin\r\nNOOP\r\nSIZE up.bin\r\n");
    let mut data = accept_within(&l, IO_TIMEOUT).expect("server connects");
    data.write_all(&body).unwrap();
    drop(data);
    let r: Vec<Reply> = (0..4).map(|_| c.reply()).collect();
    let codes: Vec<u16> = r.iter().map(|r| r.code).collect();
    assert_eq!(codes, [150, 226, 200, 213], "{r:?}");
    // SIZE ran after the STOR completed: it sees the whole file.
    assert_eq!(r[3].lines[0], format!("213 {}", body.len()));
}

#[test]
fn the_data_command_after_pasv_in_the_same_write_is_answered_in_order() {
    let srv = TestServer::start();
    srv.put("f.txt", b"pipelined");
    let mut c = srv.anon();
    c.send_raw(b"PASV\r\nRETR f.txt\r\n");
    let r = c.reply();
    assert_eq!(r.code, 227, "{r:?}");
    let mut data = connect_data(parse_pasv(&r.lines[0]).unwrap());
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"pipelined");
    assert_eq!(c.reply().code, 226);
}

// ----- passive listeners ------------------------------------------------------

#[test]
fn pasv_while_a_passive_listener_waits_answers_the_same_port() {
    // A listener nobody used yet is kept: a second PASV (or a pipelined
    // storm of them) costs a reply, not a socket, bind, listen and close.
    let srv = TestServer::start();
    srv.put("f.txt", b"kept listener");
    let mut c = srv.anon();
    let first = c.pasv();
    let second = c.pasv();
    assert_eq!(first, second);
    let third = c.epsv();
    assert_eq!(third.port(), first.port());
    c.send("RETR f.txt");
    let mut data = connect_data(second);
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"kept listener");
    assert_eq!(c.reply().code, 226);
    // One connection per PASV: after the transfer the port is closed, and
    // the next PASV opens a new listener.
    assert!(!is_listening(first), "the used listener {first} still accepts");
    let next = c.pasv();
    assert!(is_listening(next));
}

#[test]
fn epsv_replaces_pasv_and_port_closes_the_passive_listener() {
    let srv = TestServer::start();
    srv.put("f.txt", b"x");
    let mut c = srv.anon();
    let pasv = c.pasv();
    let epsv = c.epsv();
    assert!(!is_listening(pasv) || pasv == epsv, "PASV listener {pasv} left open after EPSV");
    let l = c.port();
    wait_until("the EPSV listener to close after PORT", Duration::from_secs(5), || !is_listening(epsv));
    let (first, mut data) = c.start_on(DataPrep::Active(l), "RETR f.txt");
    assert_eq!(first.code, 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"x");
    assert_eq!(c.reply().code, 226);
}

// ----- bad input ----------------------------------------------------------------

#[test]
fn over_long_command_line_is_500_and_closes() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 9000));
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line);
    let r = c.reply();
    assert_eq!(r.code, 500, "{r:?}");
    c.expect_closed();
    // The server itself is fine.
    srv.anon().expect("NOOP", 200);
}

#[test]
fn over_long_line_without_end_is_500_and_closes() {
    let srv = TestServer::start();
    let mut c = srv.ctl();
    c.send_raw(&vec![b'X'; 20_000]);
    let r = c.reply();
    assert_eq!(r.code, 500, "{r:?}");
    c.expect_closed();
    srv.anon().expect("NOOP", 200);
}

#[test]
fn a_long_but_legal_line_is_answered() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    let line = format!("NOOP {}", "a".repeat(8000));
    c.expect(&line, 200);
    c.expect("PWD", 257);
}

#[test]
fn nul_byte_in_a_command_is_a_clear_5xx_and_the_server_keeps_serving() {
    let srv = TestServer::start();
    srv.put("a", b"just a");
    let mut c = srv.anon();
    let r = c.cmd_raw(b"NO\0OP");
    assert!((500..600).contains(&r.code), "{r:?}");
    for cmd in [&b"CWD a\0b"[..], b"SIZE a\0b", b"MKD x\0y", b"DELE a\0b", b"RNFR a\0b"] {
        let r = c.cmd_raw(cmd);
        assert!((500..600).contains(&r.code), "{:?} -> {r:?}", String::from_utf8_lossy(cmd));
    }
    let _ = c.pasv();
    let r = c.cmd_raw(b"RETR a\0b");
    assert!((500..600).contains(&r.code), "RETR with NUL -> {r:?}");
    let _ = c.pasv();
    let r = c.cmd_raw(b"STOR a\0b");
    assert!((500..600).contains(&r.code), "STOR with NUL -> {r:?}");
    assert!(!srv.path("x").exists(), "MKD with a NUL created its prefix");
    assert_eq!(std::fs::read(srv.path("a")).unwrap(), b"just a");
    c.expect("NOOP", 200);
    c.expect("PWD", 257);
}

#[test]
fn invalid_utf8_in_a_command_is_a_clear_5xx_and_the_server_keeps_serving() {
    let srv = TestServer::start();
    let mut c = srv.ctl();
    // Before login: one unknown verb is 500, and login still works.
    let r = c.cmd_raw(b"\xc3\x28\xfe");
    assert_eq!(r.code, 500, "{r:?}");
    c.login("anonymous", "a@b");
    let r = c.cmd_raw(b"N\xc3\xa9OP");
    assert_eq!(r.code, 500, "{r:?}");
    for cmd in [&b"CWD \xc3\x28"[..], b"SIZE \xfe\xfe", b"TYPE \xc3\x28", b"PORT \xc3\x28", b"EPRT \xc3\x28"] {
        let r = c.cmd_raw(cmd);
        assert!((500..600).contains(&r.code), "{:?} -> {r:?}", String::from_utf8_lossy(cmd));
    }
    let _ = c.pasv();
    let r = c.cmd_raw(b"RETR \xc3\x28.txt");
    assert_eq!(r.code, 550, "{r:?}");
    c.expect("NOOP", 200);
}

#[test]
fn http_request_on_the_control_port_is_refused_and_closed() {
    let srv = TestServer::start();
    let mut c = srv.ctl();
    let r = c.cmd("GET / HTTP/1.1");
    assert!((500..600).contains(&r.code), "{r:?}");
    c.expect_closed();
}

// ----- users file -----------------------------------------------------------------

/// A server with a users file: `alice` (`$6$`, rw, home `alice`), `bob`
/// (`$5$`, r, home `bob`); anonymous off.
fn users_server(fail_delay: Duration) -> TestServer {
    let six = openssl_passwd("-6", "xyz", "secret");
    assert!(six.starts_with("$6$xyz$"), "{six}");
    let five = openssl_passwd("-5", "abc", "hunter2");
    assert!(five.starts_with("$5$abc$"), "{five}");
    TestServer::with(move |cfg| {
        std::fs::create_dir(cfg.root.join("alice")).unwrap();
        std::fs::create_dir(cfg.root.join("bob")).unwrap();
        std::fs::write(cfg.root.join("alice/alice.txt"), b"alice's").unwrap();
        std::fs::write(cfg.root.join("bob/bob.txt"), b"bob's").unwrap();
        let users = cfg.root.parent().unwrap().join("users.txt");
        std::fs::write(&users, format!("# test users\nalice:{six}:alice:rw\nbob:{five}:bob:r\n")).unwrap();
        cfg.users = Some(users);
        cfg.anonymous = false;
        cfg.anonymous_write = false;
        cfg.login_fail_delay = fail_delay;
    })
}

#[test]
fn users_file_login_with_sha512_crypt_hash_is_230_and_lands_in_the_home() {
    let srv = users_server(Duration::from_millis(50));
    let mut c = srv.ctl();
    c.login("alice", "secret");
    let r = c.expect("PWD", 257);
    assert!(r.lines[0].contains("\"/\""), "{r:?}");
    let names = c.listing(Mode::Pasv, "NLST");
    assert!(names.contains("alice.txt") && !names.contains("bob"), "{names:?}");
    assert_eq!(c.retr(Mode::Epsv, "alice.txt"), b"alice's");
}

#[test]
fn users_file_login_with_sha256_crypt_hash_is_230() {
    let srv = users_server(Duration::from_millis(50));
    let mut c = srv.ctl();
    c.login("bob", "hunter2");
    assert_eq!(c.retr(Mode::Pasv, "bob.txt"), b"bob's");
}

#[test]
fn wrong_password_is_530_after_the_delay() {
    let delay = Duration::from_millis(300);
    let srv = users_server(delay);
    let mut c = srv.ctl();
    c.expect("USER alice", 331);
    let t = Instant::now();
    c.expect("PASS not-the-secret", 530);
    // A lower bound only: the answer is held back at least the delay.
    assert!(t.elapsed() >= delay - Duration::from_millis(50), "530 after {:?}, delay {delay:?}", t.elapsed());
    c.expect("PWD", 530);
    // The right password still works on the same connection.
    c.login("alice", "secret");
    c.expect("PWD", 257);
}

#[test]
fn unknown_user_and_empty_password_are_530() {
    let srv = users_server(Duration::from_millis(10));
    let mut c = srv.ctl();
    c.expect("USER mallory", 331);
    c.expect("PASS secret", 530);
    c.expect("USER alice", 331);
    c.expect("PASS", 530);
}

#[test]
fn too_many_failed_logins_close_the_connection() {
    let srv = users_server(Duration::from_millis(10));
    let mut c = srv.ctl();
    for _ in 0..2 {
        c.expect("USER alice", 331);
        c.expect("PASS wrong", 530);
    }
    c.expect("USER alice", 331);
    c.send("PASS wrong");
    let first = c.reply();
    assert_eq!(first.code, 530, "{first:?}");
    let rest = String::from_utf8_lossy(&c.expect_closed()).into_owned();
    assert!(rest.is_empty() || rest.starts_with("421"), "{rest:?}");
}

#[test]
fn read_write_user_can_stor_and_read_only_user_gets_550() {
    let srv = users_server(Duration::from_millis(10));
    let mut alice = srv.ctl();
    alice.login("alice", "secret");
    alice.stor(Mode::Pasv, "new.txt", b"written by alice");
    assert_eq!(std::fs::read(srv.path("alice/new.txt")).unwrap(), b"written by alice");
    alice.expect("MKD made", 257);
    assert!(srv.path("alice/made").is_dir());

    let mut bob = srv.ctl();
    bob.login("bob", "hunter2");
    let _ = bob.pasv();
    bob.expect("STOR new.txt", 550);
    bob.expect("MKD made", 550);
    bob.expect("DELE bob.txt", 550);
    assert!(!srv.path("bob/new.txt").exists() && !srv.path("bob/made").exists());
    assert!(srv.temp_files("bob").is_empty());
    assert_eq!(std::fs::read(srv.path("bob/bob.txt")).unwrap(), b"bob's");
    bob.expect("NOOP", 200);
}

#[test]
fn anonymous_is_refused_when_a_users_file_is_given_and_anonymous_is_off() {
    let srv = users_server(Duration::from_millis(10));
    for name in ["anonymous", "ftp"] {
        let mut c = srv.ctl();
        c.expect(&format!("USER {name}"), 331);
        c.expect("PASS guest@example.com", 530);
        c.expect("PWD", 530);
    }
}

#[test]
fn a_client_that_closes_while_its_password_is_checked_does_not_hurt_others() {
    let srv = users_server(Duration::from_millis(10));
    let mut c = srv.ctl();
    c.send_raw(b"USER alice\r\nPASS secret\r\n");
    c.shutdown();
    drop(c);
    let mut d = srv.ctl();
    d.login("alice", "secret");
    d.expect("NOOP", 200);
}

#[test]
fn half_closed_client_still_gets_its_replies() {
    let srv = TestServer::start();
    let c = srv.ctl();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    drop(c);
    s.write_all(b"USER anonymous\r\nPASS x\r\nNOOP\r\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    let codes: Vec<&str> = text.lines().map(|l| &l[..3.min(l.len())]).collect();
    assert!(codes.starts_with(&["220", "331", "230", "200"]), "{text:?}");
}

#[test]
fn telnet_iac_sequences_in_a_command_are_dropped() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    // IAC IP IAC DM before the verb (what a Telnet-style ABOR prefix looks
    // like), and IAC NOP in the middle of it.
    c.send_raw(b"\xff\xf4\xff\xf2NO\xff\xf1OP\r\n");
    let r = c.reply();
    assert_eq!(r.code, 200, "{r:?}");
    c.expect("PWD", 257);
}

#[test]
fn anonymous_without_write_permission_gets_550_on_stor() {
    let srv = TestServer::with(|c| c.anonymous_write = false);
    srv.put("f.txt", b"read me");
    let mut c = srv.anon();
    assert_eq!(c.retr(Mode::Pasv, "f.txt"), b"read me");
    let _ = c.pasv();
    c.expect("STOR f.txt", 550);
    c.expect("STOR new.txt", 550);
    c.expect("MKD d", 550);
    c.expect("DELE f.txt", 550);
    c.expect("RNFR f.txt", 550);
    assert_eq!(std::fs::read(srv.path("f.txt")).unwrap(), b"read me");
    assert!(!srv.path("new.txt").exists() && !srv.path("d").exists());
    assert!(srv.temp_files("").is_empty());
}

#[test]
fn over_long_line_pipelined_during_a_transfer_is_500_after_226() {
    let srv = TestServer::start();
    let body = pattern(2 * MIB, 23);
    srv.put("f.bin", &body);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let l = c.port();
    let mut burst = b"RETR f.bin\r\nNOOP\r\n".to_vec();
    burst.extend(std::iter::repeat_n(b'z', 20_000));
    burst.extend_from_slice(b"\r\nNOOP\r\n");
    c.send_raw(&burst);
    let mut data = accept_within(&l, IO_TIMEOUT).expect("server connects");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&body));
    let codes: Vec<u16> = (0..4).map(|_| c.reply().code).collect();
    assert_eq!(codes, [150, 226, 200, 500], "replies in order");
    c.expect_closed();
}

#[test]
fn quit_during_a_transfer_is_answered_after_226_then_closes() {
    // RFC 959 §4.1.1 QUIT: "If file transfer is in progress, the connection
    // will remain open for result response and the server will then close it."
    let srv = TestServer::start();
    let body = pattern(4 * MIB, 24);
    srv.put("f.bin", &body);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let l = c.eprt();
    c.send_raw(b"RETR f.bin\r\nQUIT\r\n");
    let mut data = accept_within(&l, IO_TIMEOUT).expect("server connects");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&body));
    let codes: Vec<u16> = (0..3).map(|_| c.reply().code).collect();
    assert_eq!(codes, [150, 226, 221]);
    c.expect_closed();
}

#[test]
fn names_with_spaces_and_directories_behave() {
    let srv = TestServer::start();
    srv.put("dir/inner.txt", b"in");
    let mut c = srv.anon();
    c.stor(Mode::Pasv, "my file .txt", b"spaced");
    assert_eq!(std::fs::read(srv.path("my file .txt")).unwrap(), b"spaced");
    assert_eq!(c.retr(Mode::Epsv, "my file .txt"), b"spaced");
    let _ = c.pasv();
    c.expect("RETR dir", 550);
    c.expect("CWD my file .txt", 550);
    c.expect("CWD dir", 250);
    assert_eq!(c.retr(Mode::Port, "inner.txt"), b"in");
    assert_eq!(c.retr(Mode::Eprt, "/dir/inner.txt"), b"in");
    c.expect("CDUP", 250);
    let pwd = c.expect("PWD", 257);
    assert!(pwd.lines[0].contains("\"/\""), "{pwd:?}");
}

// ----- the reply budget: a client that reads late loses nothing ---------------

/// Pipeline `n` copies of `line` (plus a final PWD) from a writer thread
/// while the reader waits `delay` before reading anything, so the server's
/// unsent replies pass its budget and it must stop reading and resume.
/// Returns the codes of every reply, in order.
fn pipeline_then_read_late(c: &mut Ctl, line: &str, n: usize, delay: Duration) -> Vec<u16> {
    let mut batch = Vec::with_capacity(n * (line.len() + 2) + 5);
    for _ in 0..n {
        batch.extend_from_slice(line.as_bytes());
        batch.extend_from_slice(b"\r\n");
    }
    batch.extend_from_slice(b"PWD\r\n");
    let mut w = c.writer_clone();
    let writer = std::thread::spawn(move || w.write_all(&batch));
    std::thread::sleep(delay);
    let mut codes = Vec::with_capacity(n + 1);
    loop {
        let r = c.reply();
        codes.push(r.code);
        if r.code == 257 {
            break;
        }
    }
    writer.join().unwrap().expect("the server reads the whole batch once replies drain");
    codes
}

#[test]
fn pipelined_commands_read_late_are_all_answered_in_order() {
    // Small replies (NOOP: 14 bytes) and multi-line ones (FEAT, HELP: ~1 KiB
    // each), far past the 64 KiB reply budget.
    for (line, n, code) in [("NOOP", 40_000, 200), ("FEAT", 2_000, 211), ("HELP", 2_000, 214)] {
        let srv = TestServer::start();
        let mut c = srv.anon();
        let codes = pipeline_then_read_late(&mut c, line, n, Duration::from_millis(500));
        assert_eq!(codes.len(), n + 1, "{line}: one reply per command");
        assert!(codes[..n].iter().all(|&k| k == code), "{line}: every reply is {code}");
        // The session goes on normally.
        c.expect("NOOP", 200);
    }
}

#[test]
fn stat_pipelined_during_a_retr_and_read_late_is_answered_and_the_transfer_is_whole() {
    let srv = TestServer::start();
    let body = pattern(8 * MIB, 5);
    srv.put("f.bin", &body);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    for (connect_first, mode) in [(true, Mode::Pasv), (false, Mode::Epsv)] {
        let prep = c.prepare(mode);
        let DataPrep::Passive(addr) = prep else { unreachable!() };
        let mut data = if connect_first { Some(connect_data(addr)) } else { None };
        c.send("RETR f.bin");
        let mut data = data.take().unwrap_or_else(|| connect_data(addr));
        let first = c.reply();
        assert!(first.is_preliminary(), "{first:?}");
        // Read a little so the transfer is running, then pipeline STATs
        // (each answered at once with the progress) without reading them.
        let mut got = vec![0u8; 64 * 1024];
        data.read_exact(&mut got).unwrap();
        let n = 3_000;
        let mut w = c.writer_clone();
        let writer = std::thread::spawn(move || w.write_all(&b"STAT\r\n".repeat(n)));
        std::thread::sleep(Duration::from_millis(300));
        data.read_to_end(&mut got).unwrap();
        assert_eq!(sha256(&got), sha256(&body), "connect first: {connect_first}");
        let mut stats = 0;
        let mut end = None;
        while end.is_none() || stats < n {
            let r = c.reply();
            match r.code {
                211 => stats += 1,
                226 => end = Some(226),
                other => panic!("unexpected {other}: {r:?}"),
            }
        }
        writer.join().unwrap().unwrap();
        assert_eq!((stats, end), (n, Some(226)));
        c.expect("NOOP", 200);
    }
}

#[test]
fn issue_10_a_client_that_half_closes_gets_its_queued_commands_and_transfers() {
    // `ftp < script` or `nc -N`: everything in one write, then SHUT_WR.
    let srv = TestServer::start();
    let body = pattern(20 * MIB, 9);
    srv.put("f", &body);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = port_arg(l.local_addr().unwrap());
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let script = format!("USER anonymous\r\nPASS x@y\r\nTYPE I\r\n{port}\r\nRETR f\r\nQUIT\r\n");
    s.write_all(script.as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut data = accept_within(&l, Duration::from_secs(10)).expect("the server connects for RETR");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!((got.len(), sha256(&got)), (body.len(), sha256(&body)));
    let mut replies = String::new();
    s.read_to_string(&mut replies).unwrap();
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["220", "331", "230", "200", "200", "150", "226", "221"], "{replies}");
}

#[test]
fn issue_10_half_close_without_quit_still_closes_after_the_queued_commands() {
    let srv = TestServer::start();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"USER anonymous\r\nPASS x@y\r\nPWD\r\nNOOP\r\nNOOP\r\nPARTIAL-LINE").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut replies = String::new();
    s.read_to_string(&mut replies).unwrap();
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["220", "331", "230", "257", "200", "200"], "{replies}");
}

#[test]
fn issue_10_size_in_type_a_is_what_a_type_a_retr_sends() {
    let srv = TestServer::start();
    srv.put("t.txt", b"line one\nline two\r\nthree\n");
    srv.put("big.txt", &vec![b'\n'; 2 * 1024 * 1024]);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    assert_eq!(c.expect("SIZE t.txt", 213).lines[0], "213 25");
    c.expect("TYPE A", 200);
    assert_eq!(c.expect("SIZE t.txt", 213).lines[0], "213 27");
    let got = c.retr(Mode::Pasv, "t.txt");
    assert_eq!(got.len(), 27, "SIZE and the TYPE A RETR agree");
    // Counting a big file's line ends would read it all on the loop.
    c.expect("SIZE big.txt", 550);
    c.expect("TYPE I", 200);
    c.expect("SIZE big.txt", 213);
}

#[test]
fn issue_10_mfmt_answers_the_time_stored_or_refuses() {
    let srv = TestServer::start();
    srv.put("f", b"x");
    let mut c = srv.anon();
    let r = c.expect("MFMT 20200102030405 f", 213);
    assert!(r.lines[0].starts_with("213 Modify=20200102030405;"), "{r:?}");
    assert_eq!(c.expect("MDTM f", 213).lines[0], "213 20200102030405");
    // Past what some filesystems hold (ext4: 2446): the answer is what MDTM
    // reports afterwards, or a refusal that changed nothing.
    let r = c.cmd("MFMT 99991231235959 f");
    let after = c.expect("MDTM f", 213).lines[0].clone();
    match r.code {
        213 => assert!(r.lines[0].starts_with(&format!("213 Modify={};", &after[4..])), "{r:?} vs {after}"),
        501 => assert_eq!(after, "213 20200102030405"),
        _ => panic!("{r:?}"),
    }
}

/// A login answered from the login cache inside a timer (the lines queued
/// behind a failed login run when its delay is over) used to wait for the
/// next wake-up of the loop — the next deadline in the wheel, a minute
/// away — because the poll slept with a verdict still queued.
#[test]
fn a_cached_login_queued_behind_a_failed_one_is_answered_at_once() {
    let srv = users_server(Duration::from_millis(50));
    let mut warm = srv.ctl();
    warm.login("alice", "secret"); // the password is now in the login cache
    let mut c = srv.ctl();
    c.set_read_timeout(Duration::from_secs(5));
    c.send_raw(b"USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\nPWD\r\n");
    let codes: Vec<u16> = (0..5).map(|_| c.try_reply().map(|r| r.code).unwrap_or(0)).collect();
    assert_eq!(codes, vec![331, 530, 331, 230, 257]);
}
