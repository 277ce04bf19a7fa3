//! Transfer rate limits (issue 13): `--max-download-rate`,
//! `--max-upload-rate`, the anonymous pair, and a users file's own
//! `download-rate=`/`upload-rate=`; a token bucket per transfer, paused and
//! resumed by the timing wheel.
//!
//! The rate is the feature, so these tests time transfers, but only ever
//! against the configured rate (a limiter that does not limit, or one that
//! loses time at each pause), never against the machine's speed: the free
//! session is compared by ratio. The one long pair (20 MiB each way at 2M,
//! ~10 s) runs once; every other case moves 256 KiB at 128K (~1.9 s), all
//! at once.
//!
//! What is asserted besides time: bytes (sha256, on the wire and on disk),
//! reply codes, and the server's CPU time from `/proc/PID/stat`.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::process::Server;
use common::tls::{Order, TlsClient, TlsCtl, Version};
use common::*;

const KIB: usize = 1024;

/// `utime + stime` of a process, in seconds (`/proc/PID/stat` fields 14
/// and 15, in USER_HZ = 100 ticks per second on Linux).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3: utime is field 14, stime field 15.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// A users file line for `name` (password `secret`, home the root) with
/// an optional fifth field.
fn user_line(name: &str, perms: &str, options: &str) -> String {
    let hash = openssl_passwd("-6", "ratesalt", "secret");
    if options.is_empty() {
        format!("{name}:{hash}:.:{perms}\n")
    } else {
        format!("{name}:{hash}:.:{perms}:{options}\n")
    }
}

/// RETR `path` on a fresh EPSV data connection: the bytes and the seconds
/// from the command to the `226`.
#[track_caller]
fn timed_retr(c: &mut Ctl, path: &str) -> (Vec<u8>, f64) {
    let t0 = Instant::now();
    let (_, mut data) = c.open_transfer(Mode::Epsv, &format!("RETR {path}"));
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap_or_else(|e| panic!("RETR {path}: after {} bytes: {e}", got.len()));
    drop(data);
    assert_eq!(c.reply().code, 226, "RETR {path}");
    (got, t0.elapsed().as_secs_f64())
}

/// STOR `bytes` as `path`: the seconds from the command to the `226`.
#[track_caller]
fn timed_stor(c: &mut Ctl, path: &str, bytes: &[u8]) -> f64 {
    let t0 = Instant::now();
    let (_, mut data) = c.open_transfer(Mode::Epsv, &format!("STOR {path}"));
    data.write_all(bytes).unwrap_or_else(|e| panic!("STOR {path}: {e}"));
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
    assert_eq!(c.reply().code, 226, "STOR {path}");
    t0.elapsed().as_secs_f64()
}

/// The issue's check: a 20 MiB download and a 20 MiB upload at `2M` each
/// take 10 s within 5 %, the server uses under 5 % of a CPU meanwhile (no
/// sleeping, no polling: the wheel's deadlines only), and a session the
/// limit does not cover moves its own 20 MiB each way far faster at the
/// same time.
#[test]
fn twenty_mib_each_way_at_2m_take_ten_seconds_with_little_cpu_while_another_session_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, user_line("free", "rw", "download-rate=0,upload-rate=0")).unwrap();
    let body = pattern(20 * MIB, 13);
    std::fs::write(root.join("big"), &body).unwrap();
    let metrics = format!("127.0.0.1:{}", common::process::free_port("127.0.0.1".parse().unwrap()));
    let srv = Server::start(&root, &["--users", users.to_str().unwrap(), "--anonymous-write", "--max-download-rate", "2M", "--max-upload-rate", "2M", "--metrics-listen", &metrics]);
    let pid = srv.pid();
    let addr = srv.addr;

    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let down = std::thread::spawn(move || {
        let mut c = Ctl::open(addr);
        c.login("anonymous", "x@y");
        c.expect("TYPE I", 200);
        timed_retr(&mut c, "big")
    });
    let up_body = body.clone();
    let up = std::thread::spawn(move || {
        let mut c = Ctl::open(addr);
        c.login("anonymous", "x@y");
        c.expect("TYPE I", 200);
        timed_stor(&mut c, "up", &up_body)
    });
    // Meanwhile, the free user: the same bytes both ways.
    std::thread::sleep(Duration::from_millis(500));
    let mut f = Ctl::open(addr);
    f.login("free", "secret");
    f.expect("TYPE I", 200);
    let (free_got, free_down) = timed_retr(&mut f, "big");
    let free_up = timed_stor(&mut f, "free-up", &body);
    let (got, down_secs) = down.join().unwrap();
    let up_secs = up.join().unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid) - cpu0;

    println!("limited: {down_secs:.2} s down, {up_secs:.2} s up; free: {free_down:.2} s down, {free_up:.2} s up; server CPU {cpu:.2} s in {wall:.2} s");
    assert_eq!(sha256(&got), sha256(&body), "the throttled download");
    assert_eq!(sha256(&free_got), sha256(&body), "the free download");
    assert_eq!(sha256_file(&root.join("up")), sha256(&body), "the throttled upload on disk");
    assert_eq!(sha256_file(&root.join("free-up")), sha256(&body), "the free upload on disk");
    for (what, secs) in [("download", down_secs), ("upload", up_secs)] {
        assert!((9.5..=10.5).contains(&secs), "20 MiB {what} at 2M took {secs:.2} s, not 10 s ± 5 %");
    }
    let free = free_down.max(free_up);
    assert!(free * 5.0 < down_secs.min(up_secs), "the free session ({free_down:.2} s down, {free_up:.2} s up) is not far faster than the limited ones");
    assert!(cpu / wall < 0.05, "the server used {cpu:.2} CPU-s in {wall:.2} s ({:.1} %)", 100.0 * cpu / wall);
    // At most a pause per burst (0.1 s of the rate); about one per two
    // wheel ticks (a resume waits for its tick), fewer on a loaded machine.
    let m = common::metrics::scrape_url(&format!("http://{metrics}/metrics"));
    for direction in ["download", "upload"] {
        let pauses = m.get(&format!("leanftpd_transfer_throttle_pauses_total{{direction=\"{direction}\"}}"));
        println!("{pauses} {direction} pauses");
        assert!((25..=100).contains(&pauses), "{pauses} {direction} pauses in 10 s");
    }
    let log = srv.log_text();
    drop(srv);
    assert!(!log.contains("panic"), "{log}");
}

/// Which rate a session gets: the anonymous pair replaces the general one
/// for anonymous sessions, a users-file line's own options replace both,
/// per direction; 0 is unlimited. Six transfers of 256 KiB at once, each
/// either limited to 128K (about 1.9 s) or not limited at all.
#[test]
fn the_anonymous_pair_and_a_users_own_options_replace_the_general_rates() {
    let body = pattern(256 * KIB, 5);
    let srv = TestServer::with(|cfg| {
        let users = cfg.root.parent().unwrap().join("users");
        let text = user_line("plain", "rw", "") + &user_line("own", "rw", "download-rate=0, upload-rate=128K");
        std::fs::write(&users, text).unwrap();
        cfg.users = Some(users);
        cfg.max_download_rate = 128 * 1024;
        cfg.max_upload_rate = 0;
        cfg.anonymous_max_download_rate = Some(0);
        cfg.anonymous_max_upload_rate = Some(128 * 1024);
    });
    srv.put("f", &body);
    // (user, upload?, limited?)
    let cases = [
        ("anonymous", false, false),
        ("anonymous", true, true),
        ("plain", false, true),
        ("plain", true, false),
        ("own", false, false),
        ("own", true, true),
    ];
    let addr = srv.addr;
    let runs: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, &(user, upload, _))| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut c = Ctl::open(addr);
                c.login(user, "secret");
                c.expect("TYPE I", 200);
                if upload {
                    timed_stor(&mut c, &format!("up{i}"), &body)
                } else {
                    let (got, secs) = timed_retr(&mut c, "f");
                    assert_eq!(sha256(&got), sha256(&body), "{user}");
                    secs
                }
            })
        })
        .collect();
    for (i, (run, &(user, upload, limited))) in runs.into_iter().zip(&cases).enumerate() {
        let secs = run.join().unwrap();
        let what = format!("{user} {}", if upload { "upload" } else { "download" });
        if limited {
            // 256 KiB at 128 KiB/s, a 16 KiB burst in hand: 1.875 s.
            assert!((1.6..=3.0).contains(&secs), "{what}: {secs:.2} s, expected about 1.9 s (limited to 128K)");
        } else {
            assert!(secs < 0.6, "{what}: {secs:.2} s, expected no limit");
        }
        if upload {
            assert_eq!(sha256_file(&srv.path(&format!("up{i}"))), sha256(&body), "{what} on disk");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Retr,
    /// RETR after `REST` (the first 128 KiB skipped).
    RetrRest,
    Stor,
    /// APPE to a 100 KiB file (its copy is disk work, not limited).
    Appe,
    Stou,
}

const KINDS: [Kind; 5] = [Kind::Retr, Kind::RetrRest, Kind::Stor, Kind::Appe, Kind::Stou];
const REST_BYTES: usize = 128 * KIB;
const APPE_PREFIX_BYTES: usize = 100 * KIB;

/// A data connection under either protection.
enum Data {
    Plain(TcpStream),
    Tls(common::tls::Data),
}

impl Data {
    fn read_all(&mut self) -> Vec<u8> {
        match self {
            Data::Plain(s) => {
                let mut v = Vec::new();
                s.read_to_end(&mut v).unwrap();
                v
            }
            Data::Tls(d) => d.read_all().unwrap(),
        }
    }

    fn send_all(self, bytes: &[u8]) {
        match self {
            Data::Plain(mut s) => {
                s.write_all(bytes).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            }
            Data::Tls(mut d) => {
                d.write_all(bytes).unwrap();
                d.finish().unwrap();
            }
        }
    }
}

/// One control connection, plain or under PROT P.
enum Session {
    Plain(Ctl),
    Tls(TlsCtl),
}

impl Session {
    fn cmd(&mut self, line: &str) -> Reply {
        match self {
            Session::Plain(c) => c.cmd(line),
            Session::Tls(c) => c.cmd(line),
        }
    }

    fn reply(&mut self) -> Reply {
        match self {
            Session::Plain(c) => c.reply(),
            Session::Tls(c) => c.reply(),
        }
    }

    /// EPSV, then `command` with the data connection opened in `order`.
    fn open(&mut self, order: Order, command: &str) -> Data {
        match self {
            Session::Plain(c) => {
                let addr = c.epsv();
                let data = match order {
                    Order::ConnectFirst => {
                        let d = connect_data(addr);
                        c.send(command);
                        d
                    }
                    _ => {
                        c.send(command);
                        connect_data(addr)
                    }
                };
                let r = c.reply();
                assert!(r.is_preliminary(), "{command} ({order:?}): {r:?}");
                Data::Plain(data)
            }
            Session::Tls(c) => Data::Tls(c.open_transfer(Mode::Epsv, order, command).1),
        }
    }
}

/// Every path a limited transfer can take: RETR by sendfile, in ASCII, under
/// TLS, after REST; STOR by splice, in ASCII, under TLS; APPE; STOU — with
/// the data connection opened before the command and after it. Each moves
/// 256 KiB on the wire at 128K (about 1.9 s), all at once; the stall
/// timeout (0.5 s) is shorter than the transfers but must not fire, since
/// they are only throttled (each pause is about 0.125 s, and a throttled
/// transfer is not a stalled one).
#[test]
fn every_transfer_path_is_limited_plain_and_tls_ascii_and_binary_in_both_orders() {
    let srv = TestServer::tls_with(|cfg| {
        cfg.max_download_rate = 128 * 1024;
        cfg.max_upload_rate = 128 * 1024;
        cfg.stall_timeout = Duration::from_millis(500);
    });
    let lf = lf_text(256 * KIB, 21);
    srv.put("t", &lf);
    let mut cases = Vec::new();
    for tls in [false, true] {
        for ascii in [false, true] {
            for order in [Order::ConnectFirst, Order::CommandFirst] {
                for kind in KINDS {
                    cases.push((tls, ascii, order, kind));
                }
            }
        }
    }
    for i in 0..cases.len() {
        std::fs::create_dir(srv.path(&format!("d{i}"))).unwrap();
        // REST skips 128 KiB of the file (in ASCII, of the file's bytes).
        let mut rest_file = pattern(REST_BYTES, 3);
        for b in rest_file.iter_mut() {
            *b = b'a' + (*b % 26);
        }
        rest_file.extend_from_slice(&lf);
        srv.put(&format!("d{i}/r"), &rest_file);
        srv.put(&format!("d{i}/a"), &b"p".repeat(APPE_PREFIX_BYTES));
    }
    let addr = srv.addr;
    let runs: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, &(tls, ascii, order, kind))| {
            let lf = lf.clone();
            std::thread::spawn(move || {
                let mut s = if tls {
                    let mut c = TlsCtl::open(addr, TlsClient::new(Version::Tls13));
                    c.login("anonymous", "x@y");
                    c.protect();
                    Session::Tls(c)
                } else {
                    let mut c = Ctl::open(addr);
                    c.login("anonymous", "x@y");
                    Session::Plain(c)
                };
                assert_eq!(s.cmd(&format!("CWD /d{i}")).code, 250);
                assert_eq!(s.cmd(if ascii { "TYPE A" } else { "TYPE I" }).code, 200);
                let wire = if ascii { to_crlf(&lf) } else { lf.clone() };
                let t0 = Instant::now();
                match kind {
                    Kind::Retr | Kind::RetrRest => {
                        let path = if kind == Kind::Retr { "/t" } else { "r" };
                        if kind == Kind::RetrRest {
                            assert_eq!(s.cmd(&format!("REST {REST_BYTES}")).code, 350);
                        }
                        let mut d = s.open(order, &format!("RETR {path}"));
                        let got = d.read_all();
                        drop(d);
                        assert_eq!(s.reply().code, 226);
                        assert!(got == wire, "{} bytes, not the {} expected", got.len(), wire.len());
                    }
                    Kind::Stor | Kind::Appe | Kind::Stou => {
                        let command = match kind {
                            Kind::Stor => "STOR s",
                            Kind::Appe => "APPE a",
                            _ => "STOU",
                        };
                        s.open(order, command).send_all(&wire);
                        assert_eq!(s.reply().code, 226, "{command}");
                    }
                }
                t0.elapsed().as_secs_f64()
            })
        })
        .collect();
    let mut failures = Vec::new();
    for (i, (run, case)) in runs.into_iter().zip(&cases).enumerate() {
        let (tls, ascii, order, kind) = *case;
        let what = format!("{} {} {order:?} {kind:?}", if tls { "PROT P" } else { "plain" }, if ascii { "TYPE A" } else { "TYPE I" });
        let secs = match run.join() {
            Ok(s) => s,
            Err(_) => {
                failures.push(format!("{what}: failed (see its panic above)"));
                continue;
            }
        };
        if !(1.6..=3.5).contains(&secs) {
            failures.push(format!("{what}: {secs:.2} s, expected about 1.9 s (256 KiB at 128K)"));
        }
        let dir = srv.path(&format!("d{i}"));
        let on_disk = |p: &Path| std::fs::read(p).unwrap_or_default();
        let ok = match kind {
            Kind::Retr | Kind::RetrRest => true,
            Kind::Stor => on_disk(&dir.join("s")) == lf,
            Kind::Appe => {
                let mut want = b"p".repeat(APPE_PREFIX_BYTES);
                want.extend_from_slice(&lf);
                on_disk(&dir.join("a")) == want
            }
            Kind::Stou => {
                let new: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.ends_with("r") && !p.ends_with("a")).collect();
                new.len() == 1 && on_disk(&new[0]) == lf
            }
        };
        if !ok {
            failures.push(format!("{what}: the bytes on disk are not the ones sent"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// While a limited download is paused, the control connection still
/// works: STAT shows the transfer, and ABOR ends it at once with `426`
/// then `226`, with the data connection closed.
#[test]
fn abor_and_stat_answer_at_once_during_a_throttled_download() {
    let srv = TestServer::with(|cfg| cfg.max_download_rate = 64 * 1024);
    srv.put("f", &pattern(MIB, 9)); // 16 s at 64K
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let (_, mut data) = c.open_transfer(Mode::Pasv, "RETR f");
    let mut some = vec![0u8; 40 * KIB];
    data.read_exact(&mut some).unwrap();
    let t0 = Instant::now();
    let r = c.cmd("STAT");
    assert_eq!(r.code, 211, "{r:?}");
    assert!(r.text().contains("in progress"), "{r:?}");
    c.send("ABOR");
    let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(codes, [426, 226]);
    assert!(secs < 1.0, "STAT and ABOR took {secs:.2} s");
    // The rest of what was sent, then EOF: the data connection is closed.
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    assert!(40 * KIB + rest.len() < MIB / 2, "{} bytes in {secs:.2} s: not limited", 40 * KIB + rest.len());
    c.expect("NOOP", 200);
}

/// A throttled upload whose client stops sending (without closing) is a
/// stalled transfer: the stall timeout still ends it with `426`, though
/// throttle pauses alone never do (see the test of every path above).
#[test]
fn a_throttled_upload_whose_client_goes_quiet_still_stalls_out() {
    let srv = TestServer::with(|cfg| {
        cfg.max_upload_rate = 64 * 1024;
        cfg.stall_timeout = Duration::from_millis(500);
    });
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let (_, mut data) = c.open_transfer(Mode::Epsv, "STOR quiet");
    data.write_all(&pattern(100 * KIB, 4)).unwrap();
    let t0 = Instant::now();
    let r = c.reply();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(r.code, 426, "{r:?}");
    // 100 KiB at 64K is 1.3 s of throttling (less its 16 KiB burst), then
    // 0.5 s without a byte.
    assert!((1.3..=4.0).contains(&secs), "426 after {secs:.2} s");
    drop(data);
    c.expect("NOOP", 200);
}

/// The hostile client beside the honest one: a client that floods a
/// throttled upload cannot make the server buffer what it does not read —
/// the server stops reading, and the kernel's windows hold the client back
/// — while another session is served at once.
#[test]
fn a_client_flooding_a_throttled_upload_is_held_back_by_tcp() {
    let srv = TestServer::with(|cfg| cfg.anonymous_max_upload_rate = Some(64 * 1024));
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let (_, mut data) = c.open_transfer(Mode::Epsv, "STOR flood");
    data.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let chunk = vec![7u8; 256 * KIB];
    let t0 = Instant::now();
    let mut pushed = 0usize;
    // At most 64 MiB, for at most 2 s: writes block once the windows are full.
    while pushed < 64 * MIB && t0.elapsed() < Duration::from_secs(2) {
        match data.write(&chunk) {
            Ok(n) => pushed += n,
            Err(_) => break,
        }
    }
    // What the kernel took: the socket buffers' worth plus about 2 s at
    // the rate, never the whole flood.
    println!("{pushed} bytes pushed in {:.2} s", t0.elapsed().as_secs_f64());
    assert!(pushed < 32 * MIB, "{pushed} bytes accepted from a client limited to 64K");
    let small = pattern(100 * KIB, 8);
    srv.put("small", &small);
    let mut honest = srv.anon();
    honest.expect("TYPE I", 200);
    assert_eq!(sha256(&honest.retr(Mode::Epsv, "small")), sha256(&small), "the honest client's download");
    c.send("ABOR");
    let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
    assert_eq!(codes, [426, 226]);
    drop(data);
}
