//! The protocol interpreter (`leanftpd::ftp::session::Session`, sans-IO),
//! driven by arbitrary command lines over a real (temporary) file tree, with
//! every `Action` completed as the reactor (src/reactor/mod.rs `perform`,
//! `check_queue`, `on_verdict`) would complete it.
//!
//! Input layout: byte 0 holds flags (see `Flags`), the rest is the client's
//! byte stream, split on LF and cleaned by `leanftpd::line::clean` as the
//! reactor does (a line over the limit ends the input: the reactor closes).
//!
//! The file tree (a temporary directory made once per process, under
//! `$TMPDIR`) is rebuilt before every input that follows one that could
//! write, so every input starts from the same tree and an input that crashes
//! crashes again when replayed.
//! It holds ordinary files, a directory, names with CR, `"`, 0xFF and a
//! leading number, and three symbolic links that point out of the jail.
//!
//! What the fake reactor simplifies: a password check is answered at once
//! (any user in the users file with the password `secret` is granted), the
//! failed-login delay fires at once, a passive listener is "opened" without
//! a socket, and a transfer completes at once without moving data (a STOR
//! writes a few fixed bytes, a REST/APPE prefix is not copied). ABOR and
//! STAT are taken out of the queue during a transfer only when they come
//! next (the reactor finds them anywhere in the queue).
//!
//! `LEANFTPD_FUZZ_TRACE=1` prints the dialogue (to read a crash).
//!
//! Checked, after every step:
//! - no panic (a `debug_assert` in the session counts: cargo fuzz builds
//!   with debug assertions and overflow checks by default);
//! - every reply line is `NNN SP`/`NNN-` followed by text, or a continuation
//!   line starting with a space inside a multi-line reply, and a multi-line
//!   reply is closed by `NNN SP` with its code;
//! - no CR or LF inside a line: the output is a sequence of CRLF-terminated
//!   lines (no reply injection from a file name or an argument);
//! - every command line that the session handles gets a final (2xx-5xx)
//!   reply once its action is complete, and the session is then not busy;
//! - the jail holds: symbolic links in the tree point at `outside/`, beside
//!   the root; no RETR sends the canary file there, and after an input that
//!   could write, nothing beside the root or in `outside/` has changed;
//! - no upload's temporary file is left behind (aborted, failed or not);
//! - a listing (LIST, NLST, MLSD) is CRLF-terminated lines with no bare CR
//!   or LF, whatever the names in the directory.

#![no_main]

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use leanftpd::auth::{Grant, Perm};
use leanftpd::config::Config;
use leanftpd::dtp::transfer::{Transfer, TransferError};
use leanftpd::ftp::command::{parse, Verb};
use leanftpd::ftp::session::{Action, Ctx, Env, Pending, Session};
use leanftpd::line::clean;
use leanftpd::vfs::{FsError, Vfs, UPLOAD_TEMP_PREFIX};
use libfuzzer_sys::fuzz_target;

const PEER: &str = "127.0.0.1:5000";
const LOCAL: &str = "127.0.0.1:2121";
const PASV_ADDR: &str = "127.0.0.1:50000";
/// The password the fake helper thread accepts for any user in the users file.
const GOOD_PASSWORD: &[u8] = b"secret";

/// What the canary outside the jail holds; no upload in this harness writes it.
const CANARY: &[u8] = b"leanftpd fuzz canary: this file is outside the jail\n";

/// `$TMPDIR/leanftpd-fuzz-<pid>/`, made once per process: `root/` is the
/// jail, `outside/canary` must stay unreachable.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("leanftpd-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("outside")).expect("temp dir");
        std::fs::write(base.join("outside/canary"), CANARY).unwrap();
        base
    })
}

/// The jail's root.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| base().join("root"))
}

/// Nothing outside the jail was created, removed or changed.
fn check_outside() {
    let mut names: Vec<_> = std::fs::read_dir(base()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["outside", "root"], "a file appeared beside the jail");
    let names: Vec<_> = std::fs::read_dir(base().join("outside")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["canary"], "the directory outside the jail changed");
    assert_eq!(std::fs::read(base().join("outside/canary")).unwrap(), CANARY, "the canary outside the jail changed");
}

/// No upload's temporary file is left anywhere in the tree.
fn check_no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        assert!(
            !name.as_bytes().starts_with(UPLOAD_TEMP_PREFIX),
            "a temporary upload file was left behind: {:?}",
            e.path()
        );
        if e.file_type().unwrap().is_dir() {
            check_no_temp_files(&e.path());
        }
    }
}

/// `LEANFTPD_FUZZ_TRACE=1`: print each command line and its replies (to
/// read a crash or check a seed; slow, not for fuzzing).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("LEANFTPD_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// Set when a session could write (a writable login): the tree must be
/// rebuilt before the next input. Read-only inputs leave it as it was, so
/// most inputs skip the rebuild.
static DIRTY: AtomicBool = AtomicBool::new(true);

/// Rebuild the tree if an earlier input could have changed it, so that
/// every input starts from the same state.
fn reset_tree() {
    if !DIRTY.swap(false, Ordering::Relaxed) {
        return;
    }
    let root = root();
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello world\n").unwrap();
    std::fs::write(root.join("crlf.txt"), b"a\r\nb\nc\r").unwrap();
    std::fs::write(root.join("sub/inner.txt"), b"inner\n").unwrap();
    for name in [&b"cr\rname"[..], b"quote\"d", b"ff\xffname", b"226 fake reply", b"bad\xc3utf8", b" lead space"] {
        std::fs::write(root.join(OsStr::from_bytes(name)), b"x").unwrap();
    }
    // Links that point out of the jail: openat2(RESOLVE_IN_ROOT) must keep
    // them inside (the absolute one then names root/<base>/outside).
    std::os::unix::fs::symlink(base().join("outside"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join("sub/up")).unwrap();
    std::os::unix::fs::symlink("../outside/canary", root.join("canary_link")).unwrap();
}

/// Byte 0 of the input.
#[derive(Clone, Copy)]
struct Flags(u8);

impl Flags {
    fn anonymous(self) -> bool {
        self.0 & 0x01 == 0
    }
    fn anonymous_write(self) -> bool {
        self.0 & 0x02 != 0
    }
    fn has_users(self) -> bool {
        self.0 & 0x04 == 0
    }
    fn passive_fails(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// How transfers end: 0 ok, 1 can't open, 2 connection lost, 3 disk full.
    fn transfer_outcome(self) -> u8 {
        (self.0 >> 4) & 3
    }
    fn read_only_user(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// The data connection was open before the transfer command (passive
    /// mode, as ftplib, curl and lftp do): `125` instead of `150`.
    fn data_open_first(self) -> bool {
        self.0 & 0x80 != 0
    }
}

fn code_of(line: &[u8]) -> Option<(u16, u8)> {
    if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) || !(line[3] == b' ' || line[3] == b'-') {
        return None;
    }
    let n = line[..3].iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Some((n, line[3]))
}

/// Check the framing of `out` (RFC 959 §4.2) and return the codes of the
/// complete replies in it.
fn check_replies(out: &[u8], ctx: &str) -> Vec<u16> {
    let show = || format!("{ctx}: {:?}", String::from_utf8_lossy(out));
    let mut codes = Vec::new();
    if out.is_empty() {
        return codes;
    }
    assert!(out.ends_with(b"\r\n"), "output does not end with CRLF: {}", show());
    let mut open: Option<u16> = None;
    for line in out.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r\n").unwrap_or_else(|| panic!("a bare LF: {}", show()));
        assert!(!line.contains(&b'\r'), "a bare CR inside a reply line: {}", show());
        match open {
            None => {
                let (code, sep) = code_of(line).unwrap_or_else(|| panic!("not a reply line {:?}: {}", String::from_utf8_lossy(line), show()));
                assert!((100..600).contains(&code), "reply code {code}: {}", show());
                if sep == b' ' {
                    codes.push(code);
                } else {
                    open = Some(code);
                }
            }
            Some(code) => {
                if code_of(line) == Some((code, b' ')) {
                    codes.push(code);
                    open = None;
                } else {
                    assert!(
                        line.first() == Some(&b' ') || code_of(line).map(|(c, _)| c) == Some(code),
                        "continuation line {:?} does not start with a space: {}",
                        String::from_utf8_lossy(line),
                        show()
                    );
                }
            }
        }
    }
    assert!(open.is_none(), "unterminated multi-line reply: {}", show());
    codes
}

struct Driver<'e> {
    s: Session,
    env: &'e Env,
    out: Vec<u8>,
    flags: Flags,
    closed: bool,
}

impl Driver<'_> {
    fn ctx_call<R>(&mut self, f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx { out: &mut self.out, env: self.env, now_unix: 1_700_000_000 };
        f(&mut self.s, &mut ctx)
    }

    /// Carry out `action` as `Reactor::perform` and the events after it
    /// would: until nothing is pending. `queue` is the lines not yet handled
    /// (for ABOR/STAT during a transfer, as `check_queue` does).
    fn complete(&mut self, mut action: Action, queue: &mut std::collections::VecDeque<Vec<u8>>) {
        loop {
            action = match action {
                Action::None | Action::DropData => break,
                // The reactor switches the stream; the session is already
                // in its new state (the handshake is not the PI's).
                Action::StartTls | Action::EndTls => break,
                Action::Close => {
                    self.closed = true;
                    break;
                }
                // The wheel fires the failed-login delay (lines wait meanwhile).
                Action::Delay(d) => {
                    assert!(d <= Duration::from_secs(3600), "absurd login delay {d:?}");
                    assert_eq!(self.s.pending(), Pending::LoginDelay);
                    self.ctx_call(|s, c| s.delay_over(c))
                }
                // The helper thread's verdict.
                Action::CheckLogin { user, password } => {
                    assert_eq!(self.s.pending(), Pending::Login);
                    let result = if password.as_bytes() == GOOD_PASSWORD {
                        let perm = if self.flags.read_only_user() { Perm::Read } else { Perm::ReadWrite };
                        let vfs = Rc::new(Vfs::open(root(), perm.is_writable()).expect("vfs"));
                        let name: Box<str> = String::from_utf8_lossy(&user).into();
                        Ok((Grant { name, home: root().to_path_buf(), perm, options: Default::default() }, vfs))
                    } else {
                        Err(())
                    };
                    self.ctx_call(|s, c| s.login_checked(result, c))
                }
                Action::OpenPassive { extended } => {
                    let result = if self.flags.passive_fails() {
                        Err(std::io::Error::other("too many passive listeners"))
                    } else {
                        Ok(PASV_ADDR.parse::<SocketAddr>().unwrap())
                    };
                    self.ctx_call(|s, c| s.passive_opened(result, extended, c));
                    break;
                }
                Action::Transfer(req) => {
                    self.transfer(req.transfer, queue);
                    break;
                }
            };
        }
        assert!(self.closed || !self.s.is_busy(), "the session is still busy ({:?}) after its action", self.s.pending());
    }

    fn transfer(&mut self, mut transfer: Transfer, queue: &mut std::collections::VecDeque<Vec<u8>>) {
        assert!(matches!(self.s.pending(), Pending::Transfer(_)), "a transfer action while {:?}", self.s.pending());
        let outcome = self.flags.transfer_outcome();
        if outcome == 1 {
            // The data connection could not be made.
            drop(transfer);
            self.ctx_call(|s, c| s.transfer_finished(Err(TransferError::CantOpen), c));
            return;
        }
        check_transfer(&mut transfer);
        let open_first = self.flags.data_open_first() && self.s.data_mode() == leanftpd::ftp::session::DataMode::Passive;
        let before = self.out.len();
        self.ctx_call(|s, c| s.transfer_started(open_first, c));
        let started = check_replies(&self.out[before..], "transfer start");
        // STOU always names its file in a 150 (RFC 1123 §4.1.2.9).
        let stou = self.s.pending() == Pending::Transfer(leanftpd::ftp::session::XferKind::Stou);
        let want = if open_first && !stou { 125 } else { 150 };
        assert_eq!(started, [want], "a transfer on a data connection {} the command", if open_first { "open before" } else { "made after" });
        // ABOR and STAT queued during the transfer are answered at once.
        while let Some(line) = queue.front() {
            let urgent = match parse(line) {
                Ok(cmd) if cmd.verb == Verb::Abor => Some(Verb::Abor),
                Ok(cmd) if cmd.verb == Verb::Stat && cmd.arg.trim_ascii().is_empty() => Some(Verb::Stat),
                _ => None,
            };
            let Some(verb) = urgent else { break };
            queue.pop_front();
            let before = self.out.len();
            let abort = self.ctx_call(|s, c| s.handle_urgent(verb, 3, c));
            if abort {
                drop(transfer);
                self.ctx_call(|s, c| s.transfer_finished(Err(TransferError::Aborted), c));
                self.ctx_call(|s, c| s.aborted(c));
                let codes = check_replies(&self.out[before..], "ABOR during a transfer");
                assert!(codes.iter().any(|&c| c >= 200), "ABOR got no final reply");
                return;
            }
        }
        let result = match outcome {
            2 => {
                drop(transfer);
                Err(TransferError::ConnectionLost)
            }
            3 => {
                drop(transfer);
                Err(TransferError::Local(FsError::NoSpace))
            }
            _ => {
                if let Transfer::Stor { upload, .. } = &mut transfer {
                    upload.file.write_all(b"uploaded\r\n").expect("write the temporary file");
                }
                transfer.finish().map(|()| 10)
            }
        };
        self.ctx_call(|s, c| s.transfer_finished(result, c));
    }
}

/// What a transfer would send: never the canary outside the jail; a
/// listing is CRLF-terminated lines with no other CR or LF (a file name
/// cannot add a line).
fn check_transfer(transfer: &mut Transfer) {
    if let Some(buf) = transfer.listing_text() {
        for line in buf.split_inclusive(|&b| b == b'\n') {
            let body = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
                panic!("a listing line without CRLF: {:?}", String::from_utf8_lossy(&buf))
            });
            assert!(!body.contains(&b'\r'), "a bare CR in a listing line: {:?}", String::from_utf8_lossy(&buf));
            assert!(!body.is_empty(), "an empty listing line: {:?}", String::from_utf8_lossy(&buf));
        }
        return;
    }
    match transfer {
        Transfer::SendFile { file, .. } | Transfer::AsciiOut { file, .. } => {
            let mut head = vec![0u8; CANARY.len()];
            let n = file.read_at(&mut head, 0).unwrap_or(0);
            assert!(n < CANARY.len() || head != CANARY, "RETR sends the canary from outside the jail");
        }
        Transfer::Listing { .. } | Transfer::Stor { .. } => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else { return };
    let flags = Flags(flags);
    reset_tree();
    let mut config = Config::new(root().to_path_buf());
    config.anonymous = flags.anonymous();
    config.anonymous_write = flags.anonymous_write();
    let anonymous = flags.anonymous().then(|| Rc::new(Vfs::open(root(), flags.anonymous_write()).expect("vfs")));
    let env = Env { config, anonymous, has_users: flags.has_users(), metrics: Default::default() };
    let max = env.config.max_line_bytes;

    let mut d = Driver {
        s: Session::new(PEER.parse().unwrap(), LOCAL.parse().unwrap()),
        env: &env,
        out: Vec::new(),
        flags,
        closed: false,
    };
    d.s.greeting(&mut d.out);
    assert_eq!(check_replies(&d.out, "greeting"), [220]);
    d.out.clear();

    // Frame as the reactor does: split on LF, clean each line.
    let mut queue = std::collections::VecDeque::new();
    let mut cleaned = Vec::new();
    for raw in stream.split(|&b| b == b'\n') {
        let content = raw.strip_suffix(b"\r").unwrap_or(raw);
        if content.len() > max {
            break; // `500 Command line too long.` and close.
        }
        clean(raw, &mut cleaned);
        queue.push_back(cleaned.clone());
    }

    while let Some(line) = queue.pop_front() {
        if d.closed {
            break;
        }
        d.out.clear();
        let action = d.ctx_call(|s, c| s.handle(&line, c));
        d.complete(action, &mut queue);
        if d.s.is_logged_in() && (if d.s.is_anonymous() { flags.anonymous_write() } else { !flags.read_only_user() }) {
            DIRTY.store(true, Ordering::Relaxed);
        }
        let what = format!("after {:?}", String::from_utf8_lossy(&line));
        if trace() {
            eprintln!("-> {:?}\n<- {:?}", String::from_utf8_lossy(&line), String::from_utf8_lossy(&d.out));
        }
        let codes = check_replies(&d.out, &what);
        assert!(codes.iter().any(|&c| c >= 200), "no final reply {what}: {codes:?}");
    }
    // After an input that could write: nothing escaped, nothing left behind.
    if DIRTY.load(Ordering::Relaxed) {
        check_outside();
        check_no_temp_files(root());
    }
    if !d.closed {
        // The control timer fires (login or idle timeout).
        d.out.clear();
        let action = d.ctx_call(|s, c| s.timed_out(c));
        assert!(matches!(action, Action::Close), "a timeout does not close");
        assert_eq!(check_replies(&d.out, "timeout"), [421]);
    }
});
