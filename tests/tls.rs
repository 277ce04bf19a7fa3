//! FTPS (issue 11; RFC 4217 with RFC 2228's reply codes) over loopback.
//!
//! The harness is `tests/common/tls.rs`: a rustls client (TLS 1.2 or 1.3
//! only) trusting a test CA, and `TlsCtl`, a control connection upgraded by
//! `AUTH TLS` or TLS from the first byte (implicit FTPS).
//!
//! - Every transfer kind under `PROT P` × PASV, EPSV, PORT, EPRT × TLS 1.2
//!   and 1.3 × the data connection made before the command, after it, or
//!   with the ClientHello sent before it × small and large files: sha256 on
//!   the wire and on disk, the final reply, and that every data connection
//!   resumed the control connection's session and (downloads) ended with
//!   close_notify.
//! - Each command's codes (AUTH, PBSZ, PROT, CCC, FEAT), `--tls-required`,
//!   session reuse (522 without it, 522 for another control connection's
//!   session, accepted with `insecure_tls_no_reuse`), an upload truncated
//!   without close_notify, plaintext injected after `AUTH TLS`, a data
//!   connection from a foreign address, ALPN, implicit FTPS, CCC, ABOR and
//!   STAT during a protected transfer.
//! - Hostile TLS clients beside an honest one, against the built binary so
//!   that its RSS can be read (as `tests/hostile.rs` does).
//!
//! A rustls client spends a TLS 1.3 ticket per resumed data connection, so
//! the tables open a control connection per transfer (see the note in
//! `tests/common/tls.rs`); the tests about reuse say how many transfers one
//! control connection makes.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;

/// The large file of the tables: many TLS records, many data-budget slices.
const LARGE: usize = 5 * MIB;

/// Sizes of the tables: empty, one byte, one record, many records.
const SIZES: [usize; 4] = [0, 1, 100, LARGE];

// ---------------------------------------------------------------------------
// Helpers

/// A logged-in anonymous control connection under `PROT P`, `TYPE I`.
#[track_caller]
fn session(srv: &TestServer, v: Version) -> TlsCtl {
    let mut c = srv.tls_anon(v);
    c.expect("TYPE I", 200);
    c
}

/// sha256, by `sha256sum` above 256 KiB: the `sha2` crate in this
/// unoptimised test build does ~30 MB/s, and the tables hash ~1 GB.
fn sha(bytes: &[u8]) -> String {
    if bytes.len() > 256 * 1024 {
        sha256_external(bytes)
    } else {
        sha256(bytes)
    }
}

/// Runs every case, catching each failure, and fails once at the end with
/// all of them (at most `MAX_FAILURES`, then it stops: a broken server
/// should not cost minutes of timeouts).
struct Table {
    failures: Vec<String>,
    cases: usize,
}

const MAX_FAILURES: usize = 6;

impl Table {
    fn new() -> Table {
        Table { failures: Vec::new(), cases: 0 }
    }

    fn case(&mut self, what: &str, f: impl FnOnce()) {
        if self.failures.len() >= MAX_FAILURES {
            return;
        }
        self.cases += 1;
        if let Err(e) = catch_unwind(AssertUnwindSafe(f)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            self.failures.push(format!("{what}: {msg}"));
        }
    }

    #[track_caller]
    fn assert_all_passed(self, claim: &str) {
        assert!(
            self.failures.is_empty(),
            "{claim}: {} failing case(s) (stopped after {MAX_FAILURES}), {} run:\n  - {}",
            self.failures.len(),
            self.cases,
            self.failures.join("\n  - ")
        );
    }
}

/// What happened to a transfer command whose data connection should be refused.
#[derive(Debug)]
struct Refusal {
    /// Every reply to the command (a 1xx then the final, or just the final).
    codes: Vec<u16>,
    /// Bytes that came over the data connection.
    bytes: usize,
}

/// Send `command` with the data connection made by `c.data_client`; read
/// whatever arrives, then the final reply.
#[track_caller]
fn attempt(c: &mut TlsCtl, mode: Mode, order: Order, command: &str, upload: Option<&[u8]>) -> Refusal {
    let prep = c.prepare(mode);
    match c.try_start(prep, order, command) {
        Err(r) => Refusal { codes: vec![r.code], bytes: 0 },
        Ok((first, data)) => {
            let mut bytes = 0;
            if let Ok(mut d) = data {
                match upload {
                    Some(body) => {
                        let _ = d.write_all(body);
                        let _ = d.finish();
                    }
                    None => {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match d.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => bytes += n,
                            }
                        }
                    }
                }
            }
            let last = c.reply();
            Refusal { codes: vec![first.code, last.code], bytes }
        }
    }
}

fn is_522(r: &Refusal) -> bool {
    r.codes.last() == Some(&522) && r.codes.iter().all(|&c| c == 522 || (100..200).contains(&c))
}

/// The xferlog records of a server configured with `xferlog`.
fn records(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

// ---------------------------------------------------------------------------
// Every transfer kind, in every way

/// One case of the transfer tables.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Retr(usize),
    RestRetr(usize),
    Stor(usize),
    Appe(usize),
    List,
    Nlst,
    Mlsd,
    /// LIST of an empty directory: zero bytes under TLS.
    ListEmpty,
    AsciiRetr(usize),
    AsciiStor(usize),
}

/// Run one case on a new control connection.
fn run(srv: &TestServer, v: Version, mode: Mode, order: Order, kind: Kind) {
    let what = format!("{kind:?} {v:?} {mode:?} {order:?}");
    let mut c = session(srv, v);
    let name = unique("t");
    let seed = name.len() as u64 ^ (kind_seed(kind));
    match kind {
        Kind::Retr(size) => {
            let body = pattern(size, seed);
            srv.put(&name, &body);
            let got = c.retr(mode, order, &name);
            assert_eq!((got.len(), sha(&got)), (body.len(), sha(&body)), "{what}: bytes received");
        }
        Kind::RestRetr(size) => {
            let body = pattern(size, seed);
            srv.put(&name, &body);
            let n = size / 3;
            let prep = c.prepare(mode);
            c.expect(&format!("REST {n}"), 350);
            let (_, mut data) = c.start(prep, order, &format!("RETR {name}"));
            let got = data.read_all().unwrap_or_else(|e| panic!("{what}: reading: {e}"));
            drop(data);
            let r = c.reply();
            assert_eq!(r.code, 226, "{what}: {r:?}");
            assert_eq!((got.len(), sha(&got)), (size - n, sha(&body[n..])), "{what}: the tail from {n}");
        }
        Kind::Stor(size) => {
            let body = pattern(size, seed);
            c.stor(mode, order, &name, &body);
            let disk = std::fs::read(srv.path(&name)).unwrap_or_else(|e| panic!("{what}: nothing on disk: {e}"));
            assert_eq!((disk.len(), sha(&disk)), (body.len(), sha(&body)), "{what}: bytes on disk");
            assert!(srv.temp_files("").iter().all(|t| !t.contains(&name)), "{what}: temp file left");
        }
        Kind::Appe(size) => {
            let head = b"the head of the file\n".to_vec();
            srv.put(&name, &head);
            let body = pattern(size, seed);
            c.upload(mode, order, &format!("APPE {name}"), &body);
            let disk = std::fs::read(srv.path(&name)).unwrap();
            let want = [head, body].concat();
            assert_eq!((disk.len(), sha(&disk)), (want.len(), sha(&want)), "{what}: bytes on disk");
        }
        Kind::List | Kind::Nlst | Kind::Mlsd => {
            srv.put(&format!("{name}/a.txt"), b"aaa");
            srv.put(&format!("{name}/b b.txt"), b"bbbbb");
            std::fs::create_dir(srv.path(&format!("{name}/sub"))).unwrap();
            c.expect(&format!("CWD {name}"), 250);
            let verb = match kind {
                Kind::List => "LIST",
                Kind::Nlst => "NLST",
                _ => "MLSD",
            };
            let listing = c.listing(mode, order, verb);
            match kind {
                Kind::Nlst => {
                    let mut names: Vec<&str> = listing.lines().collect();
                    names.sort();
                    assert_eq!(names, ["a.txt", "b b.txt", "sub"], "{what}: {listing:?}");
                }
                Kind::List => {
                    assert_eq!(listing.lines().count(), 3, "{what}: {listing:?}");
                    for n in [" a.txt", " b b.txt", " sub"] {
                        assert!(listing.lines().any(|l| l.ends_with(n)), "{what}: no {n:?} in {listing:?}");
                    }
                }
                _ => {
                    for (n, facts) in [("a.txt", "size=3;"), ("b b.txt", "size=5;"), ("sub", "type=dir;")] {
                        assert!(
                            listing.lines().any(|l| l.ends_with(&format!(" {n}")) && l.contains(facts)),
                            "{what}: no {n:?} with {facts:?} in {listing:?}"
                        );
                    }
                }
            }
        }
        Kind::ListEmpty => {
            std::fs::create_dir(srv.path(&name)).unwrap();
            c.expect(&format!("CWD {name}"), 250);
            let listing = c.listing(mode, order, "LIST");
            assert_eq!(listing, "", "{what}");
        }
        Kind::AsciiRetr(size) => {
            let disk = lf_text(size, seed);
            srv.put(&name, &disk);
            c.expect("TYPE A", 200);
            let got = c.retr(mode, order, &name);
            let wire = to_crlf(&disk);
            assert_eq!((got.len(), sha(&got)), (wire.len(), sha(&wire)), "{what}: CRLF text received");
        }
        Kind::AsciiStor(size) => {
            let lf = lf_text(size, seed);
            c.expect("TYPE A", 200);
            c.stor(mode, order, &name, &to_crlf(&lf));
            let disk = std::fs::read(srv.path(&name)).unwrap();
            assert_eq!((disk.len(), sha(&disk)), (lf.len(), sha(&lf)), "{what}: LF text on disk");
        }
    }
    c.expect("NOOP", 200);
}

fn kind_seed(kind: Kind) -> u64 {
    match kind {
        Kind::Retr(s) | Kind::RestRetr(s) | Kind::Stor(s) | Kind::Appe(s) | Kind::AsciiRetr(s) | Kind::AsciiStor(s) => s as u64,
        Kind::List | Kind::Nlst | Kind::Mlsd | Kind::ListEmpty => 7,
    }
}

/// Every version × mode × order for `kinds`.
fn table(srv: &TestServer, kinds: &[Kind], claim: &str) {
    let mut t = Table::new();
    for v in VERSIONS {
        for (mode, order) in ways() {
            for &kind in kinds {
                t.case(&format!("{kind:?} {v:?} {mode:?} {order:?}"), || run(srv, v, mode, order, kind));
            }
        }
    }
    t.assert_all_passed(claim);
}

#[test]
fn prot_p_retr_in_every_mode_order_version_and_size() {
    let srv = TestServer::tls();
    let kinds: Vec<Kind> = SIZES.iter().map(|&s| Kind::Retr(s)).collect();
    table(&srv, &kinds, "RETR under PROT P");
}

#[test]
fn prot_p_rest_retr_in_every_mode_order_and_version() {
    let srv = TestServer::tls();
    table(&srv, &[Kind::RestRetr(100), Kind::RestRetr(LARGE)], "REST + RETR under PROT P");
}

#[test]
fn prot_p_stor_in_every_mode_order_version_and_size() {
    let srv = TestServer::tls();
    let kinds: Vec<Kind> = SIZES.iter().map(|&s| Kind::Stor(s)).collect();
    table(&srv, &kinds, "STOR under PROT P");
}

#[test]
fn prot_p_appe_in_every_mode_order_and_version() {
    let srv = TestServer::tls();
    table(&srv, &[Kind::Appe(1), Kind::Appe(100), Kind::Appe(LARGE)], "APPE under PROT P");
}

#[test]
fn prot_p_list_nlst_and_mlsd_in_every_mode_order_and_version() {
    let srv = TestServer::tls();
    table(&srv, &[Kind::List, Kind::Nlst, Kind::Mlsd, Kind::ListEmpty], "listings under PROT P");
}

#[test]
fn prot_p_type_a_retr_and_stor_in_every_mode_order_and_version() {
    let srv = TestServer::tls();
    let kinds = [Kind::AsciiRetr(0), Kind::AsciiRetr(100), Kind::AsciiRetr(LARGE), Kind::AsciiStor(1), Kind::AsciiStor(100), Kind::AsciiStor(LARGE)];
    table(&srv, &kinds, "TYPE A under PROT P");
}

#[test]
fn a_tls12_control_connection_resumes_every_one_of_many_data_connections() {
    // TLS 1.2 sessions are not spent by a resumption: one control
    // connection serves a whole mirror.
    let srv = TestServer::tls();
    let body = pattern(3000, 1);
    srv.put("f", &body);
    let mut c = session(&srv, Version::Tls12);
    for i in 0..12 {
        let mode = MODES[i % 4];
        assert_eq!(sha(&c.retr(mode, Order::CommandFirst, "f")), sha(&body), "transfer {i} ({mode:?})");
    }
    c.stor(Mode::Epsv, Order::ConnectFirst, "up", &body);
    assert_eq!(c.listing(Mode::Pasv, Order::HelloFirst, "NLST").lines().count(), 2);
}

#[test]
fn a_tls13_control_connection_resumes_a_data_connection_per_ticket_it_was_sent() {
    let srv = TestServer::tls();
    let body = pattern(3000, 2);
    srv.put("f", &body);
    let mut c = session(&srv, Version::Tls13);
    let tickets = c.client.store().tls13_tickets_left();
    assert!(tickets >= 2, "the server sent {tickets} TLS 1.3 ticket(s) on the control connection; a client needs one per data connection");
    for i in 0..tickets {
        let mode = MODES[i % 4];
        assert_eq!(sha(&c.retr(mode, Order::CommandFirst, "f")), sha(&body), "transfer {i} of {tickets} ({mode:?})");
    }
}

#[test]
fn prot_p_data_connections_carry_no_tls13_session_tickets() {
    // curl 7.88 and lftp 4.9 lose the tail of an upload when the server
    // sends tickets on a data connection (issue 11).
    let srv = TestServer::tls();
    srv.put("f", &pattern(200_000, 3));
    let mut t = Table::new();
    for (mode, order) in ways() {
        t.case(&format!("{mode:?} {order:?}"), || {
            let mut c = session(&srv, Version::Tls13);
            let before = c.client.store().tls13_tickets_received();
            c.retr(mode, order, "f");
            c.stor(mode, order, &unique("up"), &pattern(100_000, 4));
            let after = c.client.store().tls13_tickets_received();
            assert_eq!(after, before, "tickets arrived on data connections");
        });
    }
    t.assert_all_passed("no TLS 1.3 tickets on data connections");
}

// ---------------------------------------------------------------------------
// Reply codes

#[test]
fn without_tls_configured_auth_is_502_and_feat_lists_no_tls() {
    let srv = TestServer::start();
    let mut c = srv.ctl();
    c.expect("AUTH TLS", 502);
    c.expect("AUTH SSL", 502);
    let feat = c.expect("FEAT", 211).text();
    for f in ["AUTH", "PBSZ", "PROT"] {
        assert!(!feat.lines().any(|l| l.trim_start().starts_with(f)), "FEAT lists {f} without TLS: {feat}");
    }
    c.login("anonymous", "x@y");
    c.expect("NOOP", 200);
}

#[test]
fn feat_lists_auth_tls_pbsz_and_prot_when_tls_is_configured() {
    let srv = TestServer::tls();
    let mut c = srv.ctl();
    let feat = c.expect("FEAT", 211).text();
    let lines: Vec<String> = feat.lines().map(|l| l.trim().to_ascii_uppercase()).collect();
    assert!(lines.iter().any(|l| l == "AUTH TLS" || l.starts_with("AUTH TLS;") || l.starts_with("AUTH TLS ")), "{feat}");
    assert!(lines.iter().any(|l| l == "PBSZ"), "{feat}");
    assert!(lines.iter().any(|l| l == "PROT"), "{feat}");
    // And inside TLS too.
    let mut t = srv.tls_ctl(Version::Tls13);
    let feat = t.expect("FEAT", 211).text();
    assert!(feat.contains("PBSZ") && feat.contains("PROT"), "{feat}");
}

#[test]
fn auth_tls_and_auth_ssl_are_234_and_an_unknown_mechanism_is_504() {
    let srv = TestServer::tls();
    for v in VERSIONS {
        let mut c = srv.ctl();
        c.expect("AUTH KERBEROS_V4", 504);
        c.expect("AUTH GSSAPI", 504);
        c.expect("NOOP", 200);
        drop(c);
        for mech in ["TLS", "SSL", "tls", "TLS-C"] {
            let mut c = TlsCtl::connect(srv.addr, TlsClient::new(v));
            assert_eq!(c.reply().code, 220);
            let r = c.cmd(&format!("AUTH {mech}"));
            if mech == "TLS-C" {
                // RFC 4217 §4: TLS-C is a synonym some servers take; 234 or 504.
                assert!(r.code == 234 || r.code == 504, "AUTH TLS-C: {r:?}");
                if r.code == 504 {
                    continue;
                }
            } else {
                assert_eq!(r.code, 234, "AUTH {mech}: {r:?}");
            }
            c.upgrade().unwrap_or_else(|e| panic!("{v:?}: handshake after AUTH {mech}: {e}"));
            assert_eq!(c.tls().protocol_version(), Some(v.wire()));
            c.login("anonymous", "x@y");
            c.expect("PWD", 257);
        }
    }
}

#[test]
fn a_second_auth_once_protected_is_503() {
    let srv = TestServer::tls();
    for v in VERSIONS {
        let mut c = srv.tls_ctl(v);
        c.expect("AUTH TLS", 503);
        c.expect("AUTH SSL", 503);
        c.login("anonymous", "x@y");
        c.expect("AUTH TLS", 503);
        // The session is intact.
        c.expect("PWD", 257);
    }
}

#[test]
fn pbsz_before_auth_is_503_and_prot_before_pbsz_is_503() {
    let srv = TestServer::tls();
    let mut c = srv.ctl();
    c.expect("PBSZ 0", 503);
    c.expect("PROT P", 503);
    c.login("anonymous", "x@y");
    c.expect("PBSZ 0", 503);
    c.expect("PROT P", 503);
    c.expect("PROT C", 503);
    let mut t = srv.tls_ctl(Version::Tls13);
    t.login("anonymous", "x@y");
    t.expect("PROT P", 503);
    t.expect("PBSZ 0", 200);
    t.expect("PROT P", 200);
}

#[test]
fn prot_c_and_p_are_200_s_and_e_are_536_other_levels_504() {
    let srv = TestServer::tls();
    let mut c = srv.tls_ctl(Version::Tls12);
    c.login("anonymous", "x@y");
    c.expect("PBSZ 0", 200);
    c.expect("PROT C", 200);
    c.expect("PROT P", 200);
    c.expect("PROT S", 536);
    c.expect("PROT E", 536);
    c.expect("PROT X", 504);
    c.expect("PROT Q", 504);
    // The level is still P: a data connection is TLS.
    c.prot_p = true;
    srv.put("f", b"still private");
    assert_eq!(c.retr(Mode::Epsv, Order::CommandFirst, "f"), b"still private");
    // Lower case is the same command.
    c.expect("prot c", 200);
    c.prot_p = false;
    assert_eq!(c.retr(Mode::Pasv, Order::CommandFirst, "f"), b"still private");
}

#[test]
fn ccc_on_an_unprotected_connection_is_533() {
    let srv = TestServer::tls();
    let mut c = srv.anon();
    c.expect("CCC", 533);
    c.expect("PWD", 257);
}

#[test]
fn ccc_after_login_returns_the_control_connection_to_plaintext() {
    // A server per case: a case that breaks the server does not hide the others.
    let mut t = Table::new();
    for v in VERSIONS {
        for how in [CloseNotify::ClientFirst, CloseNotify::ServerFirst, CloseNotify::ClientNever] {
            t.case(&format!("{v:?} {how:?}"), || {
                let srv = TestServer::tls();
                srv.put("f", b"after ccc");
                let r = catch_unwind(AssertUnwindSafe(|| ccc_then_plaintext(&srv, v, how)));
                std::thread::sleep(Duration::from_millis(100));
                assert!(!srv.is_finished(), "the whole server stopped (its thread panicked) after this client's CCC");
                if let Err(e) = r {
                    std::panic::resume_unwind(e);
                }
                // The server still serves others.
                let mut other = session(&srv, v);
                other.expect("NOOP", 200);
            });
        }
    }
    t.assert_all_passed("CCC");
}

fn ccc_then_plaintext(srv: &TestServer, v: Version, how: CloseNotify) {
    {
        let mut c = session(srv, v);
        c.ccc_with(how);
        assert!(!c.is_tls());
        // Plain commands now, on the same socket.
        c.expect("PWD", 257);
        c.expect("NOOP", 200);
        // PROT P still holds for data connections (RFC 4217 §6).
        assert_eq!(c.retr(Mode::Epsv, Order::CommandFirst, "f"), b"after ccc", "{v:?}");
        c.expect("QUIT", 221);
    }
}

#[test]
fn a_control_connection_that_resumed_an_earlier_session_still_transfers_under_prot_p() {
    // curl and lftp resume their last session when they connect again;
    // the data connections then resume the new control connection's
    // session, which must count as its own.
    let srv = TestServer::tls();
    srv.put("f", b"resumed control");
    for v in VERSIONS {
        let client = TlsClient::new(v);
        let mut first = TlsCtl::open(srv.addr, client.clone());
        first.login("anonymous", "x@y");
        first.expect("QUIT", 221);
        drop(first);
        let mut c = TlsCtl::open(srv.addr, client);
        assert_eq!(c.tls().handshake_kind(), Some(rustls::HandshakeKind::Resumed), "{v:?}: the control connection did not resume");
        c.login("anonymous", "x@y");
        c.protect();
        assert_eq!(c.retr(Mode::Epsv, Order::CommandFirst, "f"), b"resumed control", "{v:?}");
    }
}

#[test]
fn ccc_with_tls_required_is_534() {
    let srv = TestServer::tls_with(|c| c.tls_required = true);
    let mut c = session(&srv, Version::Tls13);
    c.expect("CCC", 534);
    // Still TLS.
    c.expect("PWD", 257);
    assert!(c.is_tls());
}

// ---------------------------------------------------------------------------
// --tls-required

#[test]
fn tls_required_refuses_user_before_auth_tls_with_530_anonymous_too() {
    let srv = TestServer::tls_with(|c| c.tls_required = true);
    let mut c = srv.ctl();
    c.expect("USER anonymous", 530);
    c.expect("USER ftp", 530);
    c.expect("USER alice", 530);
    let r = c.cmd("PASS x");
    assert!(r.code == 503 || r.code == 530, "PASS after a refused USER: {r:?}");
    // Nothing was logged in: a file command is still refused.
    c.expect("PWD", 530);
    // The same connection can still upgrade and log in.
    let mut t = TlsCtl::from_stream(c.into_stream(), TlsClient::new(Version::Tls13));
    t.auth();
    t.login("anonymous", "x@y");
    t.expect("PWD", 257);
}

#[test]
fn tls_required_refuses_every_transfer_command_under_prot_c_with_521() {
    let srv = TestServer::tls_with(|c| c.tls_required = true);
    srv.put("f", b"secret");
    let mut c = srv.tls_ctl(Version::Tls13);
    c.login("anonymous", "x@y");
    // Never PROT'd: the level is C.
    for cmd in ["RETR f", "STOR up", "APPE f", "STOU", "LIST", "NLST", "MLSD"] {
        let _ = c.pasv();
        c.expect(cmd, 521);
    }
    c.expect("PBSZ 0", 200);
    c.expect("PROT C", 200);
    for cmd in ["RETR f", "STOR up", "LIST"] {
        let _ = c.epsv();
        c.expect(cmd, 521);
    }
    assert_eq!(std::fs::read(srv.path("f")).unwrap(), b"secret");
    assert!(!srv.path("up").exists(), "a refused STOR made a file");
    // PROT P: the same commands work.
    c.expect("PROT P", 200);
    c.prot_p = true;
    c.expect("TYPE I", 200);
    assert_eq!(c.retr(Mode::Pasv, Order::CommandFirst, "f"), b"secret");
}

#[test]
fn tls_required_lets_a_protected_session_transfer_in_every_mode() {
    let srv = TestServer::tls_with(|c| c.tls_required = true);
    let body = pattern(70_000, 5);
    srv.put("f", &body);
    for v in VERSIONS {
        for mode in MODES {
            let mut c = session(&srv, v);
            assert_eq!(sha(&c.retr(mode, Order::CommandFirst, "f")), sha(&body), "{v:?} {mode:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Session reuse on data connections

#[test]
fn prot_p_retr_without_resumption_is_522() {
    let srv = TestServer::tls();
    srv.put("f", &pattern(100_000, 6));
    // Nothing to send: the refusal shows only when the transfer completes
    // its handshake for close_notify (it said 426 there, not 522).
    srv.put("empty", b"");
    std::fs::create_dir_all(srv.path("emptydir")).unwrap();
    let mut t = Table::new();
    for v in VERSIONS {
        for (mode, order) in [(Mode::Pasv, Order::CommandFirst), (Mode::Epsv, Order::ConnectFirst), (Mode::Eprt, Order::CommandFirst)] {
            for cmd in ["RETR f", "RETR empty", "LIST emptydir"] {
                t.case(&format!("{cmd} {v:?} {mode:?} {order:?}"), || {
                    let mut c = session(&srv, v);
                    c.data_client = TlsClient::without_resumption(v);
                    let r = attempt(&mut c, mode, order, cmd, None);
                    assert!(is_522(&r), "{r:?}");
                    assert_eq!(r.bytes, 0, "file bytes reached a data connection that did not resume");
                    c.expect("NOOP", 200);
                    // The control connection can still transfer with its own session.
                    c.data_client = c.client.clone();
                    assert_eq!(c.retr(Mode::Pasv, Order::CommandFirst, "f").len(), 100_000);
                });
            }
        }
    }
    t.assert_all_passed("a data connection without resumption is refused");
}

#[test]
fn prot_p_stor_without_resumption_is_522_and_stores_nothing() {
    let srv = TestServer::tls();
    srv.put("old", b"old contents");
    for v in VERSIONS {
        let mut c = session(&srv, v);
        c.data_client = TlsClient::without_resumption(v);
        let r = attempt(&mut c, Mode::Epsv, Order::CommandFirst, "STOR new", Some(&pattern(50_000, 7)));
        assert!(is_522(&r), "{v:?}: {r:?}");
        let r = attempt(&mut c, Mode::Pasv, Order::ConnectFirst, "STOR old", Some(&pattern(50_000, 7)));
        assert!(is_522(&r), "{v:?}: {r:?}");
        assert!(std::fs::metadata(srv.path("new")).map(|m| m.len() == 0).unwrap_or(true), "{v:?}: a refused STOR stored bytes");
        assert_eq!(std::fs::read(srv.path("old")).unwrap(), b"old contents", "{v:?}");
    }
}

#[test]
fn prot_p_data_resuming_another_control_connections_session_is_522() {
    let srv = TestServer::tls();
    srv.put("f", &pattern(100_000, 8));
    for v in VERSIONS {
        for (mode, order) in [(Mode::Epsv, Order::CommandFirst), (Mode::Pasv, Order::HelloFirst), (Mode::Port, Order::CommandFirst)] {
            // Two logged-in control connections, each with its own store.
            let other = session(&srv, v);
            let mut c = session(&srv, v);
            // c's data connection offers other's session.
            c.data_client = other.client.clone();
            let prep = c.prepare(mode);
            let outcome = c.try_start(prep, order, "RETR f");
            let (codes, resumed, bytes) = match outcome {
                Err(r) => (vec![r.code], None, 0),
                Ok((first, data)) => {
                    let (resumed, bytes) = match data {
                        Ok(mut d) => {
                            let kind = d.tls().and_then(|t| t.handshake_kind());
                            let n = d.read_all().map(|b| b.len()).unwrap_or(0);
                            (kind, n)
                        }
                        Err(_) => (None, 0),
                    };
                    (vec![first.code, c.reply().code], resumed, bytes)
                }
            };
            let r = Refusal { codes, bytes };
            assert!(is_522(&r), "{v:?} {mode:?} {order:?}: resumed {resumed:?}: {r:?}");
            assert_eq!(r.bytes, 0, "{v:?} {mode:?}: bytes reached a data connection with another control connection's session");
            drop(other);
        }
    }
}

#[test]
fn insecure_tls_no_reuse_accepts_data_connections_that_do_not_resume() {
    let srv = TestServer::tls_with(|c| c.insecure_tls_no_reuse = true);
    let body = pattern(300_000, 9);
    srv.put("f", &body);
    for v in VERSIONS {
        for mode in MODES {
            let mut c = session(&srv, v);
            c.data_client = TlsClient::without_resumption(v);
            assert_eq!(sha(&c.retr(mode, Order::CommandFirst, "f")), sha(&body), "{v:?} {mode:?}");
            let name = unique("up");
            c.stor(mode, Order::CommandFirst, &name, &body);
            assert_eq!(sha256_file(&srv.path(&name)), sha(&body), "{v:?} {mode:?}");
        }
        // Resuming still works too.
        let mut c = session(&srv, v);
        assert_eq!(sha(&c.retr(Mode::Epsv, Order::ConnectFirst, "f")), sha(&body));
    }
}

// ---------------------------------------------------------------------------
// Truncation, injection, foreign peers, ALPN

/// How a protected upload ends without close_notify.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// A FIN after whole records.
    AtRecordBoundary,
    /// A FIN inside a record (its header sent, part of its body).
    MidRecord,
}

#[test]
fn prot_p_upload_ending_without_close_notify_is_426_or_451_and_not_complete() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("xferlog");
    let log2 = log.clone();
    let srv = TestServer::tls_with(move |c| c.xferlog = Some(log2));
    let logdir_atomic = tempfile::tempdir().unwrap();
    let log_atomic = logdir_atomic.path().join("xferlog");
    let log_atomic2 = log_atomic.clone();
    let atomic = TestServer::tls_with(move |c| {
        c.xferlog = Some(log_atomic2);
        c.atomic_uploads = true;
    });
    let body = pattern(300_000, 10);
    let mut t = Table::new();
    for v in VERSIONS {
        for cut in [Cut::AtRecordBoundary, Cut::MidRecord] {
            for (server, log, over_existing) in [(&srv, &log, false), (&srv, &log, true), (&atomic, &log_atomic, false)] {
                let what = format!("{v:?} {cut:?} over_existing={over_existing} atomic={}", std::ptr::eq(server, &atomic));
                t.case(&what, || {
                    let name = unique("cut");
                    if over_existing {
                        server.put(&name, b"the old file");
                    }
                    let n_before = records(log).len();
                    let mut c = session(server, v);
                    let (_, mut data) = c.open_transfer(Mode::Epsv, Order::CommandFirst, &format!("STOR {name}"));
                    data.write_all(&body).unwrap();
                    data.flush().unwrap();
                    if let (Cut::MidRecord, Data::Tls(s)) = (cut, &mut data) {
                        // An application-data record header promising 1,000
                        // bytes, and 10 of them.
                        let mut raw = vec![0x17, 0x03, 0x03, 0x03, 0xe8];
                        raw.extend_from_slice(&[0u8; 10]);
                        s.sock.write_all(&raw).unwrap();
                    }
                    data.cut();
                    let r = c.reply();
                    assert!(r.code == 426 || r.code == 451, "final reply {r:?}");
                    c.expect("NOOP", 200);
                    wait_until("the xferlog record", Duration::from_secs(5), || records(log).len() > n_before);
                    let recs = records(log);
                    assert_eq!(recs.len(), n_before + 1, "one record: {recs:?}");
                    assert!(recs[n_before].ends_with(" i"), "the record is not marked incomplete: {}", recs[n_before]);
                    let on_disk = std::fs::read(server.path(&name)).ok();
                    if over_existing {
                        assert_eq!(on_disk.as_deref(), Some(&b"the old file"[..]), "a truncated upload replaced the file");
                    } else if std::ptr::eq(server, &atomic) {
                        assert_eq!(on_disk, None, "atomic uploads: a truncated upload left a file");
                    } else if let Some(d) = on_disk {
                        // Kept as an interrupted upload: a prefix of what was sent.
                        assert!(d.len() <= body.len() && d[..] == body[..d.len()], "kept bytes are not a prefix ({} bytes)", d.len());
                    }
                    assert!(server.temp_files("").is_empty(), "temp files left: {:?}", server.temp_files(""));
                });
            }
        }
    }
    t.assert_all_passed("a truncated protected upload is not complete");
}

#[test]
fn commands_pipelined_after_auth_tls_are_discarded_not_executed() {
    // CVE-2011-1575: plaintext that arrives with AUTH TLS must not run
    // inside the TLS session that follows.
    let srv = TestServer::tls();
    for v in VERSIONS {
        let dir = unique("injected");
        let mut c = TlsCtl::connect(srv.addr, TlsClient::new(v));
        assert_eq!(c.reply().code, 220);
        c.send_raw(format!("AUTH TLS\r\nUSER anonymous\r\nPASS x@y\r\nMKD {dir}\r\n").as_bytes());
        assert_eq!(c.reply().code, 234);
        c.upgrade().unwrap_or_else(|e| panic!("{v:?}: the handshake after AUTH TLS with pipelined plaintext: {e}"));
        // The first reply inside TLS is for our PWD: nobody logged in.
        let r = c.cmd("PWD");
        assert_eq!(r.code, 530, "{v:?}: PWD after injected USER/PASS: {r:?}");
        c.login("anonymous", "x@y");
        c.expect("NOOP", 200);
        assert!(!srv.path(&dir).exists(), "{v:?}: the injected MKD ran");
        // The injected lines left no replies behind.
        c.set_read_timeout(Duration::from_millis(300));
        assert!(c.try_reply().is_err(), "{v:?}: a stray reply");
    }
}

#[test]
fn a_prot_p_passive_connection_from_another_address_is_refused_and_the_client_still_transfers() {
    let srv = TestServer::tls();
    let body = pattern(200_000, 11);
    srv.put("f", &body);
    for v in VERSIONS {
        for mode in [Mode::Pasv, Mode::Epsv] {
            let mut c = session(&srv, v);
            let DataPrep::Passive(addr) = c.prepare(mode) else { unreachable!() };
            c.send("RETR f");
            let thief = connect_from("127.0.0.2", addr, Duration::from_secs(3));
            assert_eq!(thief, Foreign::Closed(0), "{v:?} {mode:?}: a connection from 127.0.0.2 to {addr}");
            assert!(is_listening(addr), "{v:?} {mode:?}: the passive listener closed after the foreign connection");
            let tcp = connect_data(addr);
            let first = c.reply();
            assert!(first.is_preliminary(), "{v:?} {mode:?}: {first:?}");
            let mut data = handshake(&c.data_client, tcp).unwrap_or_else(|e| panic!("{v:?} {mode:?}: handshake: {e}"));
            let mut got = Vec::new();
            data.read_to_end(&mut got).unwrap();
            assert_eq!(sha(&got), sha(&body), "{v:?} {mode:?}");
            assert_eq!(c.reply().code, 226);
        }
    }
}

#[test]
fn a_client_hello_offering_only_other_alpn_protocols_is_refused() {
    // The ALPACA defence: a TLS connection meant for another protocol.
    let srv = TestServer::tls();
    for v in VERSIONS {
        for alpn in [&["http/1.1"][..], &["h2", "imap"][..]] {
            let mut c = TlsCtl::connect(srv.addr, TlsClient::with_alpn(v, alpn));
            assert_eq!(c.reply().code, 220);
            c.expect("AUTH TLS", 234);
            let r = c.upgrade().and_then(|_| {
                c.try_send_raw(b"NOOP\r\n")?;
                c.try_reply()
            });
            assert!(r.is_err(), "{v:?} {alpn:?}: the handshake succeeded: {r:?}");
        }
        // Implicit FTPS too.
        let tcp = TcpStream::connect(srv.implicit_addr()).unwrap();
        let r = handshake(&TlsClient::with_alpn(v, &["http/1.1"]), with_timeouts(tcp)).and_then(|s| {
            let mut c = s;
            let mut buf = [0u8; 64];
            c.read(&mut buf)
        });
        assert!(!matches!(r, Ok(n) if n > 0), "{v:?}: implicit FTPS accepted ALPN http/1.1: {r:?}");
    }
}

#[test]
fn a_client_hello_offering_ftp_or_no_alpn_is_accepted() {
    let srv = TestServer::tls();
    srv.put("f", b"alpn ok");
    for v in VERSIONS {
        for alpn in [&[][..], &["ftp"][..], &["http/1.1", "ftp"][..]] {
            let mut c = TlsCtl::open(srv.addr, TlsClient::with_alpn(v, alpn));
            if !alpn.is_empty() {
                let got = c.tls().alpn_protocol().map(|p| p.to_vec());
                assert!(got.is_none() || got.as_deref() == Some(&b"ftp"[..]), "{v:?} {alpn:?}: negotiated {got:?}");
            }
            c.login("anonymous", "x@y");
            c.protect();
            assert_eq!(c.retr(Mode::Epsv, Order::CommandFirst, "f"), b"alpn ok", "{v:?} {alpn:?}");
        }
    }
}

#[test]
fn a_prot_p_data_connection_offering_only_other_alpn_protocols_is_refused() {
    // Even where no resumption is asked for.
    let srv = TestServer::tls_with(|c| c.insecure_tls_no_reuse = true);
    srv.put("f", &pattern(50_000, 12));
    for v in VERSIONS {
        let mut c = session(&srv, v);
        c.data_client = TlsClient::with_alpn(v, &["http/1.1"]);
        let r = attempt(&mut c, Mode::Epsv, Order::CommandFirst, "RETR f", None);
        assert_eq!(r.bytes, 0, "{v:?}: file bytes over a data connection with ALPN http/1.1: {r:?}");
        assert!(r.codes.last().is_some_and(|&k| k >= 400), "{v:?}: {r:?}");
        c.expect("NOOP", 200);
    }
}

// ---------------------------------------------------------------------------
// Implicit FTPS

/// A client without tickets (TLS 1.2 session ids only) opens a second
/// control connection that resumes the first one's session: that session
/// is the second connection's too, and its data connections, which resume
/// it, are accepted — in both orders of connecting, while the first
/// connection still transfers. (Found by the black-box FTPS suite: every
/// transfer of the second connection got `522`.)
#[test]
fn a_control_connection_resumed_by_session_id_transfers_under_prot_p() {
    use rustls::HandshakeKind;
    let srv = TestServer::tls();
    let body = pattern(300_000, 29);
    srv.put("f", &body);
    let client = TlsClient::session_id_only();
    let mut first = TlsCtl::open(srv.addr, client.clone());
    assert_eq!(first.tls().handshake_kind(), Some(HandshakeKind::Full));
    let mut second = TlsCtl::open(srv.addr, client.clone());
    assert_eq!(second.tls().handshake_kind(), Some(HandshakeKind::Resumed), "the second control connection resumed by session id");
    for c in [&mut first, &mut second] {
        c.login("anonymous", "x@y");
        c.protect();
        c.expect("TYPE I", 200);
    }
    for order in [Order::CommandFirst, Order::ConnectFirst] {
        for (i, c) in [&mut second, &mut first].into_iter().enumerate() {
            assert_eq!(sha(&c.retr(Mode::Epsv, order, "f")), sha(&body), "control connection {} {order:?}", 2 - i);
        }
    }
    // A new client (its own store): a full handshake, its own session.
    let mut other = TlsCtl::open(srv.addr, TlsClient::session_id_only());
    assert_eq!(other.tls().handshake_kind(), Some(HandshakeKind::Full));
    other.login("anonymous", "x@y");
    other.protect();
    assert_eq!(sha(&other.retr(Mode::Pasv, Order::CommandFirst, "f")), sha(&body));
}

#[test]
fn implicit_ftps_greets_inside_tls_and_transfers_under_prot_p() {
    let srv = TestServer::tls();
    let body = pattern(400_000, 13);
    srv.put("f", &body);
    for v in VERSIONS {
        for mode in MODES {
            let mut c = TlsCtl::implicit(srv.implicit_addr(), TlsClient::new(v));
            assert_eq!(c.tls().protocol_version(), Some(v.wire()));
            c.expect("AUTH TLS", 503);
            c.login("anonymous", "x@y");
            c.protect();
            c.expect("TYPE I", 200);
            assert_eq!(sha(&c.retr(mode, Order::CommandFirst, "f")), sha(&body), "{v:?} {mode:?}");
            let name = unique("imp");
            c.stor(mode, Order::CommandFirst, &name, &body);
            assert_eq!(sha256_file(&srv.path(&name)), sha(&body), "{v:?} {mode:?}");
        }
        let mut c = TlsCtl::implicit(srv.implicit_addr(), TlsClient::new(v));
        c.login("anonymous", "x@y");
        c.protect();
        assert!(c.listing(Mode::Pasv, Order::ConnectFirst, "NLST").lines().any(|l| l == "f"));
    }
    // The explicit port is still plain until AUTH TLS.
    srv.ctl().expect("NOOP", 200);
}

#[test]
fn implicit_ftps_port_sends_nothing_in_plaintext() {
    let srv = TestServer::tls();
    let mut s = with_timeouts(TcpStream::connect(srv.implicit_addr()).unwrap());
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(n) => assert!(n == 0 || !buf[..n].starts_with(b"220"), "a plaintext greeting on the implicit port"),
        Err(e) => assert!(e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut, "{e}"),
    }
    // A plaintext command there is not a ClientHello: closed, never answered.
    let _ = s.write_all(b"USER anonymous\r\n");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("331"), "USER answered in plaintext on the implicit port");
}

// ---------------------------------------------------------------------------
// ABOR and STAT during a protected transfer

#[test]
fn abor_during_a_prot_p_retr_is_426_then_226_and_the_session_goes_on() {
    let srv = TestServer::tls();
    srv.put("big", big());
    srv.put("small", b"small file");
    for v in VERSIONS {
        for (mode, order) in [(Mode::Epsv, Order::ConnectFirst), (Mode::Port, Order::CommandFirst)] {
            let mut c = session(&srv, v);
            let (_, mut data) = c.open_transfer(mode, order, "RETR big");
            let mut some = vec![0u8; 256 * 1024];
            data.read_exact(&mut some).unwrap();
            assert_eq!(some[..], big()[..some.len()], "{v:?} {mode:?}");
            c.send("ABOR");
            let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
            assert_eq!(codes, [426, 226], "{v:?} {mode:?}");
            drop(data);
            c.expect("NOOP", 200);
            if v == Version::Tls12 || c.client.store().tls13_tickets_left() > 0 {
                assert_eq!(c.retr(Mode::Pasv, Order::CommandFirst, "small"), b"small file", "{v:?} {mode:?}: after ABOR");
            }
        }
    }
}

#[test]
fn abor_during_a_prot_p_stor_keeps_the_old_file() {
    let srv = TestServer::tls();
    for v in VERSIONS {
        srv.put("old", b"old contents");
        let mut c = session(&srv, v);
        let (_, mut data) = c.open_transfer(Mode::Epsv, Order::CommandFirst, "STOR old");
        data.write_all(&big()[..MIB]).unwrap();
        data.flush().unwrap();
        c.send("ABOR");
        let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
        assert_eq!(codes, [426, 226], "{v:?}");
        drop(data);
        c.expect("NOOP", 200);
        assert_eq!(std::fs::read(srv.path("old")).unwrap(), b"old contents", "{v:?}: an aborted STOR replaced the file");
        wait_until("no temp files", Duration::from_secs(5), || srv.temp_files("").is_empty());
    }
}

#[test]
fn stat_during_a_prot_p_retr_is_211_and_the_transfer_is_whole() {
    let srv = TestServer::tls();
    let body = &big()[..8 * MIB];
    srv.put("f", body);
    for v in VERSIONS {
        for (mode, order) in [(Mode::Pasv, Order::HelloFirst), (Mode::Eprt, Order::CommandFirst)] {
            let mut c = session(&srv, v);
            let (_, mut data) = c.open_transfer(mode, order, "RETR f");
            let mut got = vec![0u8; 64 * 1024];
            data.read_exact(&mut got).unwrap();
            for _ in 0..3 {
                let r = c.cmd("STAT");
                assert_eq!(r.code, 211, "{v:?} {mode:?}: STAT during the transfer: {r:?}");
                assert!(r.text().contains("in progress"), "{v:?} {mode:?}: STAT does not show the transfer: {r:?}");
            }
            // Other commands wait for the transfer: replies in command order.
            c.send("NOOP");
            let rest = data.read_all().unwrap_or_else(|e| panic!("{v:?} {mode:?}: {e}"));
            got.extend_from_slice(&rest);
            assert_eq!((got.len(), sha(&got)), (body.len(), sha(body)), "{v:?} {mode:?}");
            assert_eq!(c.reply().code, 226, "{v:?} {mode:?}");
            assert_eq!(c.reply().code, 200, "{v:?} {mode:?}: NOOP after the transfer");
        }
    }
}

// ---------------------------------------------------------------------------
// SIGHUP reloads the certificate (the built binary, for the signal)

#[test]
fn sighup_reloads_the_certificate_keeps_the_old_on_a_bad_file_and_old_sessions_still_resume() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), b"reload").unwrap();
    let (files, args) = binary_args(&dir.path().join("tls"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = process::Server::start(&root, &args);
    let new = make_certs();
    // Sessions made before the reload, one per version.
    let mut before: Vec<TlsCtl> = VERSIONS
        .iter()
        .map(|&v| {
            let mut c = TlsCtl::open(srv.addr, TlsClient::new(v));
            c.login("anonymous", "x@y");
            c.protect();
            c
        })
        .collect();
    // New files, SIGHUP: new sessions get the new certificate.
    write_cert_set(files.chain.parent().unwrap(), &new);
    srv.signal("HUP");
    wait_until("a handshake with the new certificate", Duration::from_secs(10), || {
        let mut c = TlsCtl::connect(srv.addr, TlsClient::trusting(Version::Tls13, &new));
        c.reply();
        c.expect("AUTH TLS", 234);
        c.upgrade().is_ok()
    });
    let mut c = TlsCtl::connect(srv.addr, TlsClient::new(Version::Tls13));
    c.reply();
    c.expect("AUTH TLS", 234);
    assert!(c.upgrade().is_err(), "the old certificate is still served after the reload");
    // Sessions made before still transfer: their data connections resume
    // the sessions of the old certificate.
    for (c, v) in before.iter_mut().zip(VERSIONS) {
        assert_eq!(c.retr(Mode::Epsv, Order::CommandFirst, "f"), b"reload", "{v:?}: a session from before the reload");
    }
    // A file that does not load: the new certificate stays, an error is logged.
    std::fs::write(&files.chain, "not a certificate\n").unwrap();
    srv.signal("HUP");
    wait_until("the failed reload to be logged as an error", Duration::from_secs(10), || srv.log_text().contains("[ERROR]"));
    for v in VERSIONS {
        let mut c = TlsCtl::open(srv.addr, TlsClient::trusting(v, &new));
        c.login("anonymous", "x@y");
        c.protect();
        assert_eq!(c.retr(Mode::Pasv, Order::ConnectFirst, "f"), b"reload", "{v:?}: after a failed reload");
    }
}

// ---------------------------------------------------------------------------
// Hostile TLS clients beside an honest one (the built binary, for its RSS)

/// The server's RSS must stay under this (KiB) while hostile clients run.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// One honest round trip (liveness, not speed: a debug build, 2 cores).
const ROUND_TRIP_BOUND: Duration = Duration::from_secs(2);
/// How long the hostile clients keep at it.
const FLOOD_TIME: Duration = Duration::from_secs(3);

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The honest client's rounds while `stop` is unset: a new TLS control
/// connection, login, PROT P, a RETR checked by sha256, NOOP. Returns the
/// problems (slow or failed steps).
fn honest_rounds(addr: SocketAddr, small: &[u8], stop: &AtomicBool, rounds: &AtomicU64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && problems.len() < 5 {
        i += 1;
        let v = VERSIONS[i % 2];
        let r = catch_unwind(AssertUnwindSafe(|| {
            let t = Instant::now();
            let mut c = TlsCtl::open(addr, TlsClient::new(v));
            let connect = t.elapsed();
            let t = Instant::now();
            c.login("anonymous", "x@y");
            c.protect();
            c.expect("TYPE I", 200);
            let login = t.elapsed();
            let t = Instant::now();
            let got = c.retr(Mode::Epsv, Order::ConnectFirst, "small.bin");
            assert_eq!(sha(&got), sha(small), "RETR small.bin");
            let retr = t.elapsed();
            let t = Instant::now();
            c.expect("NOOP", 200);
            let noop = t.elapsed();
            let mut slow = Vec::new();
            for (step, d, bound) in [
                ("connect + AUTH TLS", connect, ROUND_TRIP_BOUND * 2),
                ("login + PROT P", login, ROUND_TRIP_BOUND * 2),
                ("RETR", retr, ROUND_TRIP_BOUND * 2),
                ("NOOP", noop, ROUND_TRIP_BOUND),
            ] {
                if d > bound {
                    slow.push(format!("round {i} ({v:?}): {step} took {d:?} (bound {bound:?})"));
                }
            }
            slow
        }));
        match r {
            Ok(slow) => problems.extend(slow),
            Err(e) => problems.push(format!(
                "round {i} ({v:?}) failed: {}",
                e.downcast_ref::<String>().cloned().unwrap_or_else(|| "panic".into())
            )),
        }
        rounds.fetch_add(1, Ordering::Relaxed);
    }
    problems
}

/// Runs `hostile` (which must stop by itself, within about `FLOOD_TIME`)
/// beside the honest client; asserts the honest client's rounds and the
/// RSS bound.
fn beside_an_honest_client(claim: &str, hostile: impl FnOnce(SocketAddr) -> Vec<String>) {
    let _lock = one_at_a_time();
    let b = binary();
    let pid = b.srv.pid();
    let addr = b.srv.addr;
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let peak = AtomicU64::new(rss_kib(pid).unwrap_or(0));
    let (honest, hostile_notes) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Some(k) = rss_kib(pid) {
                    peak.fetch_max(k, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let honest = s.spawn(|| honest_rounds(addr, &b.small, &stop, &rounds));
        let notes = hostile(addr);
        // A few more honest rounds once the hostile clients are gone.
        let n = rounds.load(Ordering::Relaxed);
        let t = Instant::now();
        while rounds.load(Ordering::Relaxed) < n + 2 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let honest = honest.join().unwrap();
        watcher.join().unwrap();
        (honest, notes)
    });
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("{claim}: server RSS peak {} KiB, {} honest rounds", peak, rounds.load(Ordering::Relaxed));
    let mut problems = honest;
    problems.extend(hostile_notes);
    if peak >= RSS_BOUND_KIB {
        problems.push(format!("server RSS peaked at {} MiB (bound {} MiB)", peak / 1024, RSS_BOUND_KIB / 1024));
    }
    if rounds.load(Ordering::Relaxed) < 3 {
        problems.push(format!("only {} honest rounds", rounds.load(Ordering::Relaxed)));
    }
    // The server is alive and serving.
    let mut c = TlsCtl::open(addr, TlsClient::new(Version::Tls13));
    c.login("anonymous", "x@y");
    c.expect("NOOP", 200);
    assert!(problems.is_empty(), "{claim}: {} problem(s)\n  - {}", problems.len(), problems.join("\n  - "));
}

/// A control connection after AUTH TLS and login, from 127.0.0.1.
fn hostile_session(addr: SocketAddr) -> TlsCtl {
    let mut c = TlsCtl::open(addr, TlsClient::new(Version::Tls13));
    c.login("anonymous", "x@y");
    c
}

#[test]
fn never_ending_records_and_garbage_records_leave_an_honest_tls_client_served() {
    beside_an_honest_client("partial and garbage TLS records", |addr| {
        let mut notes = Vec::new();
        // 40 sessions each send a record header promising 16 KiB, then
        // trickle its body a byte at a time, never completing it. (Each
        // socket is a clone: dropping the TlsCtl sends nothing.)
        let mut trickles: Vec<TcpStream> = (0..40)
            .map(|_| {
                let c = hostile_session(addr);
                let mut s = c.socket().try_clone().unwrap();
                s.write_all(&[0x17, 0x03, 0x03, 0x40, 0x00]).unwrap();
                s.write_all(&[0u8; 100]).unwrap();
                s
            })
            .collect();
        // A record longer than TLS allows (2^14 + 256): closed at once.
        let mut huge = hostile_session(addr).socket().try_clone().unwrap();
        huge.write_all(&[0x17, 0x03, 0x03, 0xff, 0xff]).unwrap();
        huge.write_all(&[0u8; 1000]).unwrap();
        // 10 MB of garbage in well-framed records after a handshake, and
        // 10 MB of them where the ClientHello should be; each flood stops
        // when the server closes, or after FLOOD_TIME.
        let garbage = |after_handshake: bool| {
            std::thread::spawn(move || -> Result<usize, String> {
                let mut s = if after_handshake {
                    hostile_session(addr).socket().try_clone().unwrap()
                } else {
                    let mut c = TlsCtl::connect(addr, TlsClient::new(Version::Tls13));
                    c.reply();
                    c.expect("AUTH TLS", 234);
                    c.socket().try_clone().unwrap()
                };
                s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut record = vec![0x17, 0x03, 0x03, 0x40, 0x00];
                record.extend(pattern(0x4000, 15));
                let mut sent = 0;
                let t = Instant::now();
                while sent < 10_000_000 && t.elapsed() < FLOOD_TIME {
                    match s.write(&record) {
                        Ok(n) => sent += n,
                        Err(_) => {
                            eprintln!("garbage (after handshake: {after_handshake}): closed after {sent} bytes in {:?}", t.elapsed());
                            return Ok(sent);
                        }
                    }
                }
                let what = if after_handshake { "after the handshake" } else { "instead of a ClientHello" };
                Err(format!("garbage records {what}: {sent} bytes accepted in {:?} without the server closing", t.elapsed()))
            })
        };
        let g1 = garbage(true);
        let g2 = garbage(false);
        let t = Instant::now();
        while t.elapsed() < FLOOD_TIME {
            for s in trickles.iter_mut() {
                let _ = s.write(&[0u8]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for g in [g1, g2] {
            if let Err(e) = g.join().unwrap() {
                notes.push(e);
            }
        }
        // The over-long record's connection was closed (after an alert).
        huge.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut rest = Vec::new();
        if let Err(e) = huge.read_to_end(&mut rest) {
            if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut {
                notes.push("a record longer than 2^14 + 256 bytes did not close the connection".into());
            }
        }
        notes
    });
}

#[test]
fn pipelining_under_tls_without_reading_leaves_an_honest_tls_client_served() {
    beside_an_honest_client("pipelined commands under TLS, replies never read", |addr| {
        let flooders: Vec<_> = ["FEAT", "HELP", "NOOP", "STAT"]
            .into_iter()
            .map(|verb| {
                std::thread::spawn(move || -> String {
                    let mut c = hostile_session(addr);
                    // Records made by rustls, written straight to the
                    // socket: this client never reads a byte.
                    let commands = format!("{verb}\r\n").repeat(2000);
                    let mut raw = c.socket().try_clone().unwrap();
                    raw.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                    let t = Instant::now();
                    let mut sent = 0usize;
                    let mut end = "time".to_string();
                    while t.elapsed() < FLOOD_TIME {
                        // Each batch sealed anew: records carry sequence numbers.
                        let batch = c.seal(commands.as_bytes());
                        match raw.write_all(&batch) {
                            Ok(()) => sent += batch.len(),
                            Err(e) => {
                                end = e.to_string();
                                break;
                            }
                        }
                    }
                    // Hold the unread connection a moment, then go.
                    std::thread::sleep(Duration::from_secs(1));
                    c.shutdown();
                    format!("{verb}: {sent} bytes of commands in {:?}, ended by {end}", t.elapsed())
                })
            })
            .collect();
        for f in flooders {
            let line = f.join().unwrap();
            eprintln!("{line}");
        }
        Vec::new()
    });
}
