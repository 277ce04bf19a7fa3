//! Unit tests of the protocol interpreter, in the style of Twisted's
//! `test_ftp.py` (a string transport and `task.Clock`) and smoltcp's
//! `send!`/`recv!`: a `Harness` drives a `Session` line by line, with no
//! socket, over a temporary directory and a fake clock.
//!
//! The harness plays the reactor's part exactly as `src/reactor/mod.rs` does:
//! after every step it sets the control deadline from `Session::deadline()`
//! (login or idle timeout), an `Action::Delay` arms the failed-login delay,
//! and `advance` fires `delay_over` or `timed_out` when a deadline passes.
//! Actions are asserted as data and completed by the test
//! (`passive_opened`, `transfer_started`, `transfer_finished`,
//! `login_checked`).
//!
//! Every batch of replies is checked for framing on the way: CRLF endings,
//! no CR or LF inside a line, multi-line replies closed by `NNN SP`.

use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::auth::{Grant, Perm};
use crate::config::Config;
use crate::dtp::transfer::TransferError;
use crate::ftp::command::{self, Verb};
use crate::ftp::session::{
    Action, Ctx, DataMode, DataProtection, Deadline, Env, Pending, Protection, Session, TransferRequest, XferKind,
};
use crate::ftp::table::{self, Access, Offer};
use crate::vfs::{FsError, Vfs, UPLOAD_TEMP_PREFIX};

// ---------------------------------------------------------------------------
// Replies

/// One complete reply: its code and its lines (without CRLF).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    code: u16,
    lines: Vec<Vec<u8>>,
}

impl Reply {
    /// The text of the final line after `NNN SP`.
    fn text(&self) -> String {
        let last = self.lines.last().map(|l| &l[4..]).unwrap_or(b"");
        String::from_utf8_lossy(last).into_owned()
    }

    /// All lines, lossily, joined by `\n` (for messages and searches).
    fn all(&self) -> String {
        self.lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>().join("\n")
    }
}

fn code_of(line: &[u8]) -> Option<(u16, u8)> {
    if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) || !(line[3] == b' ' || line[3] == b'-') {
        return None;
    }
    let n = line[..3].iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Some((n, line[3]))
}

/// Split `out` into replies, asserting RFC 959 §4.2 framing: each line ends
/// with CRLF and holds no other CR or LF; `NNN-` opens a multi-line reply
/// that only `NNN SP` with the same code closes.
#[track_caller]
fn parse_replies(out: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    if out.is_empty() {
        return replies;
    }
    assert!(out.ends_with(b"\r\n"), "output does not end with CRLF: {:?}", String::from_utf8_lossy(out));
    let body = &out[..out.len() - 2];
    let mut open: Option<Reply> = None;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "a reply line holds a bare CR or LF: {:?} in {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(out)
        );
        match open.as_mut() {
            None => {
                let (code, sep) = code_of(line)
                    .unwrap_or_else(|| panic!("not a reply line: {:?} in {:?}", String::from_utf8_lossy(line), String::from_utf8_lossy(out)));
                let r = Reply { code, lines: vec![line.to_vec()] };
                if sep == b' ' {
                    replies.push(r);
                } else {
                    open = Some(r);
                }
            }
            Some(r) => {
                r.lines.push(line.to_vec());
                if code_of(line) == Some((r.code, b' ')) {
                    replies.push(open.take().unwrap());
                }
            }
        }
    }
    // Each line was split on LF; check that every LF had its CR.
    let lf = out.iter().filter(|&&b| b == b'\n').count();
    let crlf = out.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(lf, crlf, "a bare LF in {:?}", String::from_utf8_lossy(out));
    assert!(open.is_none(), "unterminated multi-line reply in {:?}", String::from_utf8_lossy(out));
    replies
}

fn codes(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.code).collect()
}

fn show(replies: &[Reply]) -> String {
    replies.iter().map(Reply::all).collect::<Vec<_>>().join(" | ")
}

/// `Action` has no `Debug` (it holds a password); this names it.
fn describe(a: &Action) -> String {
    match a {
        Action::None => "None".into(),
        Action::Close => "Close".into(),
        Action::CheckLogin { user, .. } => format!("CheckLogin({:?})", String::from_utf8_lossy(user)),
        Action::Delay(d) => format!("Delay({d:?})"),
        Action::OpenPassive { extended } => format!("OpenPassive {{ extended: {extended} }}"),
        Action::DropData => "DropData".into(),
        Action::Transfer(r) => format!("Transfer({:?}, {})", r.kind, r.path),
        Action::StartTls => "StartTls".into(),
        Action::EndTls => "EndTls".into(),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------
// The harness

const PEER: &str = "127.0.0.1:5000";
const LOCAL: &str = "127.0.0.1:2121";
/// What the fake reactor's passive listener is bound to.
const PASV_ADDR: &str = "127.0.0.1:50000";

/// The file tree of every harness: `hello.txt` (12 bytes), `sub/inner.txt`,
/// an empty directory `empty`.
const HELLO: &[u8] = b"hello world\n";

/// How to build the environment.
#[derive(Clone, Copy)]
struct Opts {
    /// Anonymous login allowed (`Env::anonymous` is `Some`).
    anonymous: bool,
    /// Anonymous users may write.
    writable: bool,
    /// A users file is loaded.
    has_users: bool,
    /// FTPS: no certificate, a certificate, or a certificate and
    /// `--tls-required`.
    tls: TlsOpt,
    /// Connections are implicit FTPS (`Session::set_implicit_tls` before
    /// the greeting, as the reactor's implicit listener does).
    implicit: bool,
}

/// The FTPS configuration of a harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsOpt {
    /// No certificate: AUTH, PBSZ, PROT and CCC are `502`.
    Off,
    /// `--tls-cert`/`--tls-key`.
    On,
    /// And `--tls-required`.
    Required,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts { anonymous: true, writable: false, has_users: false, tls: TlsOpt::Off, implicit: false }
    }
}

struct Harness {
    s: Session,
    env: Env,
    out: Vec<u8>,
    dir: tempfile::TempDir,
    /// The fake clock: `base + offset`.
    base: Instant,
    offset: Duration,
    /// The control deadline, as the reactor's wheel would hold it.
    timer: Option<Instant>,
    /// An `Action::Close` was returned: the reactor closed the connection.
    closed: bool,
    now_unix: i64,
    /// Every connection is implicit FTPS.
    implicit: bool,
}

impl Harness {
    fn build(opts: Opts, tweak: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::Builder::new().prefix("leanftpd-session-").tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::write(root.join("hello.txt"), HELLO).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/inner.txt"), b"inner\n").unwrap();
        std::fs::create_dir(root.join("empty")).unwrap();
        let mut config = Config::new(root.to_path_buf());
        config.anonymous = opts.anonymous;
        config.anonymous_write = opts.writable;
        if opts.tls != TlsOpt::Off {
            // Never read by the PI: only whether they are set matters.
            config.tls_cert = Some(root.join("cert.pem"));
            config.tls_key = Some(root.join("key.pem"));
            config.tls_required = opts.tls == TlsOpt::Required;
        }
        tweak(&mut config);
        let anonymous = if opts.anonymous { Some(Rc::new(Vfs::open(root, opts.writable).expect("vfs"))) } else { None };
        let env = Env { config, anonymous, has_users: opts.has_users, metrics: Default::default() };
        let mut h = Harness {
            s: Session::new(PEER.parse().unwrap(), LOCAL.parse().unwrap()),
            env,
            out: Vec::new(),
            dir,
            base: Instant::now(),
            offset: Duration::ZERO,
            timer: None,
            closed: false,
            now_unix: 1_700_000_000,
            implicit: opts.implicit,
        };
        if opts.implicit {
            h.s.set_implicit_tls();
        }
        h.refresh_deadline();
        h
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn now(&self) -> Instant {
        self.base + self.offset
    }

    /// A new control connection on the same environment (after a close).
    fn reconnect(&mut self) {
        self.s = Session::new(PEER.parse().unwrap(), LOCAL.parse().unwrap());
        if self.implicit {
            self.s.set_implicit_tls();
        }
        self.closed = false;
        self.out.clear();
        self.timer = None;
        self.refresh_deadline();
    }

    fn call<R>(&mut self, f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> R) -> R {
        let Harness { s, env, out, now_unix, .. } = self;
        let mut ctx = Ctx { out, env, now_unix: *now_unix };
        f(s, &mut ctx)
    }

    /// What the reactor does after every step (`after_step`): carry out the
    /// action's effect on the control timer, then set the deadline.
    fn after(&mut self, a: &Action) {
        match a {
            Action::Close => {
                self.closed = true;
                self.timer = None;
                return;
            }
            Action::Delay(d) => self.timer = Some(self.now() + *d),
            _ => {}
        }
        self.refresh_deadline();
    }

    /// `Reactor::refresh_deadline`.
    fn refresh_deadline(&mut self) {
        if self.closed {
            return;
        }
        match self.s.deadline() {
            // Absolute: from the connection (or the last failed login), not
            // from the last command (slowloris).
            Deadline::Login => {
                if self.timer.is_none() {
                    self.timer = Some(self.now() + self.env.config.login_timeout)
                }
            }
            Deadline::Idle => self.timer = Some(self.now() + self.env.config.idle_timeout),
            Deadline::None => {
                if self.s.pending() != Pending::LoginDelay {
                    self.timer = None;
                }
            }
        }
    }

    /// Hand one command line to the session, as the reactor does.
    #[track_caller]
    fn send(&mut self, line: impl AsRef<[u8]>) -> Action {
        assert!(!self.closed, "a command after the connection was closed");
        assert!(!self.s.is_busy(), "the reactor queues lines while {:?} is pending", self.s.pending());
        let line = line.as_ref();
        let a = self.call(|s, c| s.handle(line, c));
        self.after(&a);
        a
    }

    fn login_checked(&mut self, result: Result<(Grant, Rc<Vfs>), ()>) -> Action {
        let a = self.call(|s, c| s.login_checked(result, c));
        self.after(&a);
        a
    }

    fn passive_opened(&mut self, result: std::io::Result<SocketAddr>, extended: bool) {
        self.call(|s, c| s.passive_opened(result, extended, c));
        self.refresh_deadline();
    }

    fn transfer_started(&mut self, already_open: bool) {
        self.call(|s, c| s.transfer_started(already_open, c));
    }

    fn transfer_finished(&mut self, result: Result<u64, TransferError>) {
        self.call(|s, c| s.transfer_finished(result, c));
        self.refresh_deadline();
    }

    /// Let fake time pass, firing the control timer as the reactor's wheel
    /// would: `delay_over` during a failed-login delay, else `timed_out`.
    fn advance(&mut self, d: Duration) {
        let target = self.now() + d;
        while let Some(at) = self.timer {
            if at > target || self.closed {
                break;
            }
            self.offset = at - self.base;
            self.timer = None;
            let a = self.call(|s, c| match s.pending() {
                Pending::LoginDelay => s.delay_over(c),
                Pending::Nothing => s.timed_out(c),
                _ => Action::None,
            });
            self.after(&a);
        }
        self.offset = target - self.base;
    }

    /// Take the replies produced so far (framing checked).
    #[track_caller]
    fn take(&mut self) -> Vec<Reply> {
        let r = parse_replies(&self.out);
        self.out.clear();
        r
    }

    /// Assert the codes of the replies produced since the last check.
    #[track_caller]
    fn expect(&mut self, want: &[u16]) -> Vec<Reply> {
        let r = self.take();
        assert_eq!(codes(&r), want, "replies: {}", show(&r));
        r
    }

    /// Send a line and return its only reply, asserting its code.
    #[track_caller]
    fn reply(&mut self, line: impl AsRef<[u8]>, code: u16) -> Reply {
        let a = self.send(line);
        assert!(matches!(a, Action::None | Action::DropData), "unexpected action {}", describe(&a));
        let mut r = self.expect(&[code]);
        r.pop().unwrap()
    }

    /// Names in the root directory that are upload temp files.
    fn temp_files(&self, dir: &str) -> Vec<String> {
        std::fs::read_dir(self.path(dir))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.as_bytes().starts_with(UPLOAD_TEMP_PREFIX))
            .collect()
    }

    /// A `Grant` and its filesystem, as the reactor hands them to `login_checked`.
    fn grant(&self, name: &str, perm: Perm) -> (Grant, Rc<Vfs>) {
        let vfs = Rc::new(Vfs::open_with(self.root(), perm.rights()).unwrap());
        (Grant { name: name.into(), home: self.root().to_path_buf(), perm, options: Default::default() }, vfs)
    }

    /// PASV and its completion by the reactor: `227`.
    #[track_caller]
    fn pasv(&mut self) {
        let a = self.send("PASV");
        assert!(matches!(a, Action::OpenPassive { extended: false }), "{}", describe(&a));
        self.passive_opened(Ok(PASV_ADDR.parse().unwrap()), false);
        self.expect(&[227]);
        assert_eq!(self.s.data_mode(), DataMode::Passive);
    }

    /// Send a transfer command (after PASV) and return its request.
    #[track_caller]
    fn transfer(&mut self, line: &str, kind: XferKind) -> TransferRequest {
        self.pasv();
        match self.send(line) {
            Action::Transfer(req) => {
                assert_eq!(req.kind, kind);
                assert_eq!(self.s.pending(), Pending::Transfer(kind));
                self.expect(&[]);
                req
            }
            a => panic!("{line}: expected a transfer, got {} and {}", describe(&a), show(&self.take())),
        }
    }
}

macro_rules! send {
    ($h:expr, $line:expr) => {
        $h.send($line)
    };
}

/// `expect!(h, 331)`, `expect!(h, 150, 226)`, `expect!(h)` (no reply),
/// `expect!(h, 530, 421; close)`.
macro_rules! expect {
    ($h:expr $(, $code:literal)* ; close) => {{
        let r = $h.expect(&[$($code),*]);
        assert!($h.closed, "expected the connection to close");
        r
    }};
    ($h:expr $(, $code:literal)*) => {{
        let r = $h.expect(&[$($code),*]);
        assert!(!$h.closed, "the connection closed unexpectedly");
        r
    }};
}

// Fixtures, one per state (smoltcp's `socket_established()`).

fn unauth() -> Harness {
    Harness::build(Opts::default(), |_| {})
}

fn unauth_with(opts: Opts) -> Harness {
    Harness::build(opts, |_| {})
}

fn inauth() -> Harness {
    let mut h = unauth();
    send!(h, "USER anonymous");
    expect!(h, 331);
    h
}

fn logged_in_as(opts: Opts) -> Harness {
    let mut h = unauth_with(opts);
    send!(h, "USER anonymous");
    expect!(h, 331);
    send!(h, "PASS guest@example.com");
    expect!(h, 230);
    assert!(h.s.is_logged_in());
    h
}

fn logged_in() -> Harness {
    logged_in_as(Opts::default())
}

fn logged_in_writable() -> Harness {
    logged_in_as(Opts { writable: true, ..Opts::default() })
}

/// Writable, `RNFR hello.txt` given.
fn renaming() -> Harness {
    let mut h = logged_in_writable();
    send!(h, "RNFR hello.txt");
    expect!(h, 350);
    h
}

fn with_users() -> Harness {
    unauth_with(Opts { has_users: true, ..Opts::default() })
}

// ---------------------------------------------------------------------------
// Every command in every state

/// A representative line for each verb (the arguments refer to the fixture tree).
#[allow(unreachable_patterns)]
fn sample(v: Verb) -> &'static str {
    match v {
        Verb::User => "USER anonymous",
        Verb::Pass => "PASS guest@",
        Verb::Acct => "ACCT x",
        Verb::Quit => "QUIT",
        Verb::Rein => "REIN",
        Verb::Noop => "NOOP",
        Verb::Syst => "SYST",
        Verb::Feat => "FEAT",
        Verb::Opts => "OPTS UTF8 ON",
        Verb::Help => "HELP",
        Verb::Stat => "STAT",
        Verb::Site => "SITE HELP",
        Verb::Host => "HOST ftp.example.com",
        Verb::Lang => "LANG EN",
        Verb::Auth => "AUTH TLS",
        Verb::Pbsz => "PBSZ 0",
        Verb::Prot => "PROT P",
        Verb::Ccc => "CCC",
        Verb::Pwd => "PWD",
        Verb::Xpwd => "XPWD",
        Verb::Cwd => "CWD sub",
        Verb::Xcwd => "XCWD sub",
        Verb::Cdup => "CDUP",
        Verb::Xcup => "XCUP",
        Verb::Smnt => "SMNT /",
        Verb::Mkd => "MKD newdir",
        Verb::Xmkd => "XMKD newdir",
        Verb::Rmd => "RMD empty",
        Verb::Xrmd => "XRMD empty",
        Verb::Dele => "DELE hello.txt",
        Verb::Rnfr => "RNFR hello.txt",
        Verb::Rnto => "RNTO moved.txt",
        Verb::Size => "SIZE hello.txt",
        Verb::Mdtm => "MDTM hello.txt",
        Verb::Mfmt => "MFMT 20200101000000 hello.txt",
        Verb::Type => "TYPE I",
        Verb::Mode => "MODE S",
        Verb::Stru => "STRU F",
        Verb::Pasv => "PASV",
        Verb::Epsv => "EPSV",
        Verb::Port => "PORT 127,0,0,1,4,1",
        Verb::Eprt => "EPRT |1|127.0.0.1|1025|",
        Verb::List => "LIST",
        Verb::Nlst => "NLST",
        Verb::Mlsd => "MLSD",
        Verb::Mlst => "MLST hello.txt",
        Verb::Retr => "RETR hello.txt",
        Verb::Stor => "STOR up.txt",
        Verb::Appe => "APPE up.txt",
        Verb::Stou => "STOU",
        Verb::Rest => "REST 0",
        Verb::Allo => "ALLO 10",
        Verb::Abor => "ABOR",
        _ => panic!("no sample line for {v:?}: add one to session_tests::sample"),
    }
}

/// What a command must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exp {
    /// This reply, connection stays open.
    Code(u16),
    /// This reply, then close.
    Close(u16),
    /// `Action::OpenPassive`, no reply yet.
    Passive(bool),
    /// `234` and `Action::StartTls` (AUTH TLS accepted).
    StartTls,
    /// `200` and `Action::EndTls` (CCC accepted).
    EndTls,
}

/// Recognised but not implemented (no handler in the table), or not
/// offered on the default harness, which has no certificate (AUTH, PBSZ,
/// PROT, CCC): `502`, before the login gate.
fn unimplemented(v: Verb) -> bool {
    let spec = table::spec(v);
    spec.handler.is_none() || spec.offer == Offer::WithTls
}

/// The only commands that do anything before login. An explicit list, so
/// that opening a new command to unauthenticated clients is a conscious
/// change of this test.
const PUBLIC: &[Verb] = &[
    Verb::User,
    Verb::Pass,
    Verb::Quit,
    Verb::Noop,
    Verb::Syst,
    Verb::Feat,
    Verb::Opts,
    Verb::Help,
    Verb::Host,
    // RFC 4217 §4: AUTH comes before USER; PBSZ and PROT may follow it at
    // once. Only offered with a certificate (`502` otherwise).
    Verb::Auth,
    Verb::Pbsz,
    Verb::Prot,
];

/// Before login (no USER yet).
fn exp_unauth(v: Verb) -> Exp {
    match v {
        // Not offered: 502 before the login gate (CCC without a certificate).
        v if unimplemented(v) => Exp::Code(502),
        v if table::spec(v).access == Access::LoggedIn => Exp::Code(530),
        Verb::User => Exp::Code(331),
        Verb::Pass => Exp::Code(503),
        Verb::Quit => Exp::Close(221),
        Verb::Noop | Verb::Opts => Exp::Code(200),
        Verb::Syst => Exp::Code(215),
        Verb::Feat => Exp::Code(211),
        Verb::Help => Exp::Code(214),
        Verb::Host => Exp::Code(220),
        v => panic!("{v:?} is open before login but not in PUBLIC"),
    }
}

/// After `USER anonymous`.
fn exp_inauth(v: Verb) -> Exp {
    match v {
        Verb::Pass => Exp::Code(230),
        // RFC 7151 §3: HOST must come before USER.
        Verb::Host => Exp::Code(503),
        v => exp_unauth(v),
    }
}

/// Logged in as anonymous, read-only or writable.
fn exp_authed(v: Verb, writable: bool) -> Exp {
    let w = |ro: u16, rw: u16| Exp::Code(if writable { rw } else { ro });
    match v {
        v if unimplemented(v) => Exp::Code(502),
        Verb::User | Verb::Pass | Verb::Rnto | Verb::Host => Exp::Code(503),
        Verb::Quit => Exp::Close(221),
        Verb::Noop | Verb::Opts | Verb::Type | Verb::Mode | Verb::Stru | Verb::Port | Verb::Eprt => Exp::Code(200),
        Verb::Allo => Exp::Code(202),
        Verb::Syst => Exp::Code(215),
        Verb::Feat | Verb::Stat => Exp::Code(211),
        Verb::Help | Verb::Site => Exp::Code(214),
        Verb::Pwd | Verb::Xpwd => Exp::Code(257),
        Verb::Cwd | Verb::Xcwd | Verb::Cdup | Verb::Xcup | Verb::Mlst => Exp::Code(250),
        Verb::Size | Verb::Mdtm => Exp::Code(213),
        Verb::Rest => Exp::Code(350),
        Verb::Abor => Exp::Code(226),
        Verb::Mkd | Verb::Xmkd => w(550, 257),
        Verb::Rmd | Verb::Xrmd | Verb::Dele => w(550, 250),
        Verb::Rnfr => w(550, 350),
        Verb::Mfmt => w(550, 213),
        Verb::Pasv => Exp::Passive(false),
        Verb::Epsv => Exp::Passive(true),
        Verb::List | Verb::Nlst | Verb::Mlsd | Verb::Retr | Verb::Stor | Verb::Appe | Verb::Stou => Exp::Code(425),
        v => panic!("no expectation for {v:?} after login: add one to session_tests::exp_authed"),
    }
}

#[track_caller]
fn check(h: &mut Harness, line: &str, want: Exp) {
    let a = h.send(line);
    let r = h.take();
    let got = match a {
        Action::OpenPassive { extended } if r.is_empty() => Exp::Passive(extended),
        Action::StartTls if codes(&r) == [234] => Exp::StartTls,
        Action::EndTls if codes(&r) == [200] => Exp::EndTls,
        Action::Close if r.len() == 1 => Exp::Close(r[0].code),
        Action::None | Action::DropData if r.len() == 1 => Exp::Code(r[0].code),
        ref a => panic!("{line:?}: action {} with replies {}", describe(a), show(&r)),
    };
    assert_eq!(got, want, "{line:?}: {}", show(&r));
}

#[test]
fn before_login_only_user_pass_quit_noop_syst_feat_opts_help_work() {
    for &v in Verb::ALL {
        check(&mut unauth(), sample(v), exp_unauth(v));
    }
}

#[test]
fn before_login_every_command_needing_a_login_is_530() {
    for &v in Verb::ALL {
        let mut h = unauth();
        send!(h, sample(v));
        let r = h.take();
        let ok = r.iter().all(|r| r.code < 400);
        assert_eq!(ok, PUBLIC.contains(&v) && v != Verb::Pass && !unimplemented(v), "{v:?}: {}", show(&r));
        if table::spec(v).access == Access::LoggedIn && !unimplemented(v) {
            assert_eq!(codes(&r), [530], "{v:?}");
        }
    }
}

#[test]
fn commands_needing_a_login_are_530_even_without_their_argument() {
    let mut h = unauth();
    for line in ["RETR", "STOR", "CWD", "MKD", "DELE", "PORT", "SIZE"] {
        send!(h, line);
        expect!(h, 530);
    }
}

#[test]
fn in_inauth_pass_logs_in_and_the_rest_behave_as_before_login() {
    for &v in Verb::ALL {
        check(&mut inauth(), sample(v), exp_inauth(v));
    }
}

#[test]
fn after_anonymous_login_every_command_gets_its_code() {
    for &v in Verb::ALL {
        check(&mut logged_in(), sample(v), exp_authed(v, false));
    }
}

#[test]
fn after_writable_login_every_command_gets_its_code() {
    for &v in Verb::ALL {
        check(&mut logged_in_writable(), sample(v), exp_authed(v, true));
    }
}

#[test]
fn unimplemented_commands_are_502_after_login() {
    let mut h = logged_in();
    for &v in Verb::ALL.iter().filter(|&&v| unimplemented(v)) {
        send!(h, sample(v));
        expect!(h, 502);
    }
}

#[test]
fn unknown_command_is_500_in_every_state() {
    for mut h in [unauth(), inauth(), logged_in(), renaming()] {
        send!(h, "XYZZY");
        expect!(h, 500);
    }
}

#[test]
fn missing_argument_is_501_after_login() {
    let mut h = logged_in();
    for line in ["CWD", "RETR", "STOR", "MKD", "RMD", "DELE", "RNFR", "SIZE", "MDTM", "TYPE", "MODE", "STRU", "PORT", "EPRT", "USER"] {
        send!(h, line);
        expect!(h, 501);
    }
}

#[test]
fn verbs_are_case_insensitive() {
    let mut h = unauth();
    h.reply("user anonymous", 331);
    h.reply("pass x", 230);
    h.reply("pWd", 257);
}

// RENAMING

#[test]
fn rnto_completes_the_rename() {
    let mut h = renaming();
    send!(h, "RNTO moved.txt");
    expect!(h, 250);
    assert!(!h.path("hello.txt").exists());
    assert_eq!(std::fs::read(h.path("moved.txt")).unwrap(), HELLO);
    // The rename is over.
    send!(h, "RNTO again.txt");
    expect!(h, 503);
}

#[test]
fn in_renaming_every_command_gets_its_code() {
    for &v in Verb::ALL {
        let want = match v {
            Verb::Rnto => Exp::Code(250),
            v => exp_authed(v, true),
        };
        check(&mut renaming(), sample(v), want);
    }
}

#[test]
fn any_implemented_command_but_rnto_ends_the_rename() {
    for &v in Verb::ALL {
        // RNFR starts a new rename; QUIT closes.
        if v == Verb::Rnto || v == Verb::Rnfr || v == Verb::Quit || unimplemented(v) {
            continue;
        }
        let mut h = renaming();
        match send!(h, sample(v)) {
            Action::OpenPassive { extended } => h.passive_opened(Ok(PASV_ADDR.parse().unwrap()), extended),
            Action::Transfer(_) => unreachable!("no data connection was set up"),
            _ => {}
        }
        h.take();
        send!(h, "RNTO moved.txt");
        expect!(h, 503);
        assert!(!h.path("moved.txt").exists(), "{v:?} did not end the rename");
    }
}

/// RFC 959 §4.1.3: RNFR "must be immediately followed by a 'rename to'
/// command" — a command refused by the gate (unknown, not implemented,
/// missing argument) is still a command in between.
#[test]
fn a_command_refused_by_the_gate_also_ends_the_rename() {
    for line in ["XYZZY", "CWD", "AUTH TLS", "LANG EN"] {
        let mut h = renaming();
        send!(h, line);
        h.take();
        send!(h, "RNTO moved.txt");
        expect!(h, 503);
        assert!(!h.path("moved.txt").exists(), "{line:?} did not end the rename");
        assert!(h.path("hello.txt").exists());
    }
}

#[test]
fn rnto_without_rnfr_is_503() {
    let mut h = logged_in_writable();
    send!(h, "RNTO moved.txt");
    expect!(h, 503);
}

#[test]
fn rnfr_again_restarts_the_rename_from_the_new_name() {
    let mut h = renaming();
    send!(h, "RNFR sub/inner.txt");
    expect!(h, 350);
    send!(h, "RNTO inner-moved.txt");
    expect!(h, 250);
    assert!(h.path("hello.txt").exists());
    assert!(h.path("inner-moved.txt").exists());
}

#[test]
fn failed_rnto_ends_the_rename() {
    let mut h = renaming();
    send!(h, "RNTO nodir/x.txt");
    expect!(h, 550);
    send!(h, "RNTO moved.txt");
    expect!(h, 503);
    assert!(h.path("hello.txt").exists());
}

// ---------------------------------------------------------------------------
// Login

#[test]
fn user_is_always_331() {
    for name in ["anonymous", "ftp", "alice", "no-such-user", "root"] {
        for opts in [
            Opts::default(),
            Opts { anonymous: false, ..Opts::default() },
            Opts { has_users: true, ..Opts::default() },
            Opts { anonymous: false, has_users: true, ..Opts::default() },
        ] {
            let mut h = unauth_with(opts);
            send!(h, format!("USER {name}"));
            expect!(h, 331);
        }
    }
}

#[test]
fn user_again_before_pass_is_331() {
    let mut h = inauth();
    send!(h, "USER ftp");
    expect!(h, 331);
    send!(h, "PASS x");
    expect!(h, 230);
}

#[test]
fn pass_before_user_is_503() {
    let mut h = unauth();
    send!(h, "PASS secret");
    expect!(h, 503);
    assert!(!h.s.is_logged_in());
}

#[test]
fn anonymous_login_is_230() {
    let mut h = inauth();
    let a = send!(h, "PASS guest@example.com");
    assert!(matches!(a, Action::None));
    expect!(h, 230);
    assert!(h.s.is_logged_in());
    assert_eq!(h.s.user(), "anonymous");
    h.reply("PWD", 257);
}

#[test]
fn ftp_is_also_anonymous() {
    for name in ["ftp", "FTP", "Anonymous"] {
        let mut h = unauth();
        send!(h, format!("USER {name}"));
        expect!(h, 331);
        send!(h, "PASS");
        expect!(h, 230);
        assert_eq!(h.s.user(), "anonymous");
    }
}

#[test]
fn user_or_pass_after_login_is_503() {
    let mut h = logged_in();
    send!(h, "USER alice");
    expect!(h, 503);
    send!(h, "PASS x");
    expect!(h, 503);
    assert_eq!(h.s.user(), "anonymous");
}

#[test]
fn anonymous_refused_when_not_allowed_is_a_delay_then_530() {
    let mut h = unauth_with(Opts { anonymous: false, ..Opts::default() });
    send!(h, "USER anonymous");
    expect!(h, 331);
    let a = send!(h, "PASS guest@");
    assert!(matches!(a, Action::Delay(d) if d == secs(1)), "{}", describe(&a));
    expect!(h);
    assert_eq!(h.s.pending(), Pending::LoginDelay);
    h.advance(Duration::from_millis(999));
    expect!(h);
    h.advance(Duration::from_millis(1));
    expect!(h, 530);
    assert!(!h.s.is_logged_in());
    assert_eq!(h.s.pending(), Pending::Nothing);
}

#[test]
fn real_user_without_users_file_is_refused_after_a_delay() {
    let mut h = unauth();
    send!(h, "USER alice");
    expect!(h, 331);
    let a = send!(h, "PASS secret");
    assert!(matches!(a, Action::Delay(_)), "{}", describe(&a));
    h.advance(secs(1));
    expect!(h, 530);
}

#[test]
fn real_user_password_is_checked_off_the_loop() {
    let mut h = with_users();
    send!(h, "USER alice");
    expect!(h, 331);
    match send!(h, "PASS s3cr3t-Pa55") {
        Action::CheckLogin { user, password } => {
            assert_eq!(&*user, b"alice");
            assert_eq!(password.as_bytes(), b"s3cr3t-Pa55");
            let shown = format!("{password:?} {password}");
            assert!(!shown.contains("s3cr3t"), "the password leaks through Debug/Display: {shown}");
        }
        a => panic!("expected CheckLogin, got {}", describe(&a)),
    }
    expect!(h);
    assert_eq!(h.s.pending(), Pending::Login);
    assert_eq!(h.s.deadline(), Deadline::None);
    assert!(h.s.is_busy());
}

#[test]
fn refused_password_is_a_delay_then_530() {
    let mut h = with_users();
    send!(h, "USER alice");
    send!(h, "PASS wrong");
    h.take();
    let a = h.login_checked(Err(()));
    assert!(matches!(a, Action::Delay(d) if d == secs(1)), "{}", describe(&a));
    expect!(h);
    h.advance(secs(1));
    expect!(h, 530);
    assert!(!h.s.is_logged_in());
    send!(h, "PASS again");
    expect!(h, 503);
}

#[test]
fn accepted_password_is_230() {
    let mut h = with_users();
    send!(h, "USER alice");
    send!(h, "PASS right");
    h.take();
    let grant = h.grant("alice", Perm::ReadWrite);
    let a = h.login_checked(Ok(grant));
    assert!(matches!(a, Action::None));
    expect!(h, 230);
    assert!(h.s.is_logged_in());
    assert_eq!(h.s.user(), "alice");
    assert_eq!(h.s.deadline(), Deadline::Idle);
    h.reply("MKD made-by-alice", 257);
    assert!(h.path("made-by-alice").is_dir());
}

#[test]
fn anonymous_still_works_beside_a_users_file() {
    let mut h = with_users();
    send!(h, "USER anonymous");
    let a = send!(h, "PASS x");
    assert!(matches!(a, Action::None), "{}", describe(&a));
    expect!(h, 331, 230);
}

#[test]
fn failed_login_delay_doubles() {
    let mut h = unauth_with(Opts { anonymous: false, ..Opts::default() });
    h.env.config.max_login_fails = 10;
    for want in [1, 2, 4, 8] {
        send!(h, "USER anonymous");
        let a = send!(h, "PASS x");
        assert!(matches!(a, Action::Delay(d) if d == secs(want)), "want {want}s, got {}", describe(&a));
        h.advance(secs(want));
        expect!(h, 331, 530);
    }
}

#[test]
fn too_many_failed_logins_close_with_421() {
    let mut h = with_users();
    for i in 1..=3u64 {
        send!(h, "USER alice");
        send!(h, "PASS wrong");
        let a = h.login_checked(Err(()));
        let d = match a {
            Action::Delay(d) => d,
            a => panic!("failure {i}: {}", describe(&a)),
        };
        h.advance(d);
        if i < 3 {
            expect!(h, 331, 530);
        } else {
            expect!(h, 331, 530, 421; close);
        }
    }
}

#[test]
fn zero_failed_login_delay_answers_530_at_once() {
    let mut h = Harness::build(Opts { anonymous: false, ..Opts::default() }, |c| c.login_fail_delay = Duration::ZERO);
    send!(h, "USER anonymous");
    let a = send!(h, "PASS x");
    assert!(matches!(a, Action::None), "{}", describe(&a));
    expect!(h, 331, 530);
    assert_eq!(h.s.pending(), Pending::Nothing);
}

// ---------------------------------------------------------------------------
// Timeouts

#[test]
fn login_timeout_is_421_and_close() {
    let mut h = unauth();
    assert_eq!(h.s.deadline(), Deadline::Login);
    h.advance(secs(59));
    expect!(h);
    h.advance(secs(2));
    expect!(h, 421; close);
}

#[test]
fn login_deadline_counts_from_the_connection_not_from_the_last_command() {
    let mut h = unauth();
    h.advance(secs(40));
    send!(h, "NOOP");
    expect!(h, 200);
    h.advance(secs(21));
    expect!(h, 421; close);
}

#[test]
fn idle_timeout_is_421_and_close() {
    let mut h = logged_in();
    assert_eq!(h.s.deadline(), Deadline::Idle);
    h.advance(secs(299));
    expect!(h);
    h.advance(secs(2));
    let r = expect!(h, 421; close);
    assert!(r[0].text().contains("dle"), "{}", r[0].text());
}

#[test]
fn commands_reset_the_idle_deadline() {
    let mut h = logged_in();
    for _ in 0..5 {
        h.advance(secs(250));
        h.reply("NOOP", 200);
    }
    h.advance(secs(299));
    expect!(h);
    h.advance(secs(1));
    expect!(h, 421; close);
}

#[test]
fn logging_in_switches_from_the_login_to_the_idle_timeout() {
    let mut h = unauth();
    h.advance(secs(50));
    h.reply("USER anonymous", 331);
    h.reply("PASS x", 230);
    h.advance(secs(61));
    expect!(h);
    h.advance(secs(300));
    expect!(h, 421; close);
}

#[test]
fn no_control_timeout_while_a_transfer_runs() {
    let mut h = logged_in();
    let _req = h.transfer("RETR hello.txt", XferKind::Retr);
    assert_eq!(h.s.deadline(), Deadline::None);
    h.advance(secs(3600));
    expect!(h);
    h.transfer_started(false);
    h.transfer_finished(Ok(12));
    expect!(h, 150, 226);
    h.advance(secs(299));
    expect!(h);
    h.advance(secs(1));
    expect!(h, 421; close);
}

#[test]
fn no_login_timeout_while_a_password_is_checked() {
    let mut h = with_users();
    send!(h, "USER alice");
    send!(h, "PASS x");
    h.take();
    h.advance(secs(600));
    expect!(h);
    let g = h.grant("alice", Perm::Read);
    h.login_checked(Ok(g));
    expect!(h, 230);
}

// ---------------------------------------------------------------------------
// Paths and names

#[test]
fn pwd_at_login_is_root() {
    let mut h = logged_in();
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/\""), "{}", r.text());
}

#[test]
fn mkd_and_pwd_double_embedded_quotes() {
    let mut h = logged_in_writable();
    let r = h.reply("MKD a\"b", 257);
    assert!(r.text().starts_with("\"/a\"\"b\" "), "{}", r.text());
    assert!(h.path("a\"b").is_dir());
    h.reply("CWD a\"b", 250);
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/a\"\"b\" "), "{}", r.text());
}

#[test]
fn mkd_replies_with_the_absolute_path() {
    let mut h = logged_in_writable();
    h.reply("CWD sub", 250);
    let r = h.reply("MKD deeper", 257);
    assert!(r.text().starts_with("\"/sub/deeper\""), "{}", r.text());
    assert!(h.path("sub/deeper").is_dir());
}

#[test]
fn a_name_with_cr_or_lf_never_breaks_a_reply_line() {
    let mut h = logged_in_writable();
    std::fs::create_dir(h.path("x\ry")).unwrap();
    std::fs::create_dir(h.path("p\nq")).unwrap();
    // CWD into them: PWD and every reply must stay one line each.
    h.reply("CWD x\ry", 250);
    let r = h.reply("PWD", 257);
    assert_eq!(r.lines.len(), 1);
    h.reply("CWD /p\nq", 250);
    h.reply("PWD", 257);
    h.reply("CWD /", 250);
    // Names from the client that would inject a reply.
    for line in [
        &b"MKD evil\r\n230 injected"[..],
        b"RETR evil\r\n226 fake",
        b"SIZE nope\n200 fake",
        b"CWD nope\r213 fake",
        b"DELE nope\r\n250 fake",
        b"RNFR nope\n350 fake",
    ] {
        let a = send!(h, line);
        assert!(matches!(a, Action::None), "{}", describe(&a));
        let r = h.take();
        assert_eq!(r.len(), 1, "{:?}: {}", String::from_utf8_lossy(line), show(&r));
        assert!(r[0].code >= 400, "{:?}: {}", String::from_utf8_lossy(line), show(&r));
    }
    // MKD of such a name is refused (553), nothing created.
    assert!(!h.path("evil\r\n230 injected").exists());
}

#[test]
fn a_listing_never_carries_a_cr_or_lf_from_a_name() {
    let mut h = logged_in();
    std::fs::write(h.path("bad\r\nname"), b"").unwrap();
    let mut req = h.transfer("NLST", XferKind::List);
    let buf = buffer_of(&mut req);
    assert!(buf.windows(2).filter(|w| w == b"\r\n").count() == buf.iter().filter(|&&b| b == b'\n').count());
    assert!(String::from_utf8_lossy(&buf).contains("bad??name\r\n"), "{}", String::from_utf8_lossy(&buf));
}

#[test]
fn cwd_into_a_subdirectory_and_back() {
    let mut h = logged_in();
    h.reply("CWD sub", 250);
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/sub\""), "{}", r.text());
    h.reply("SIZE inner.txt", 213);
    h.reply("CDUP", 250);
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/\""), "{}", r.text());
    h.reply("XCWD /sub", 250);
    h.reply("XCUP", 250);
    let r = h.reply("XPWD", 257);
    assert!(r.text().starts_with("\"/\""), "{}", r.text());
}

#[test]
fn cwd_to_a_missing_directory_is_550_and_stays_put() {
    let mut h = logged_in();
    h.reply("CWD sub", 250);
    h.reply("CWD nowhere", 550);
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/sub\""), "{}", r.text());
}

#[test]
fn cwd_to_a_file_is_550() {
    let mut h = logged_in();
    h.reply("CWD hello.txt", 550);
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/\""), "{}", r.text());
}

#[test]
fn cdup_at_root_stays_at_root() {
    let mut h = logged_in();
    h.reply("CDUP", 250);
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/\""), "{}", r.text());
}

#[test]
fn dotdot_above_root_stays_at_root() {
    let mut h = logged_in();
    for line in ["CWD ..", "CWD ../../..", "CWD /../../", "CWD sub/../../.."] {
        h.reply(line, 250);
        let r = h.reply("PWD", 257);
        assert!(r.text().starts_with("\"/\""), "{line}: {}", r.text());
    }
    h.reply("CWD ../sub", 250);
    let r = h.reply("PWD", 257);
    assert!(r.text().starts_with("\"/sub\""), "{}", r.text());
    // And nothing beyond the root is reachable.
    h.reply("SIZE ../../../../etc/passwd", 550);
}

#[test]
fn mutations_on_read_only_are_550_and_change_nothing() {
    let mut h = logged_in();
    for line in ["MKD newdir", "XMKD newdir", "RMD empty", "XRMD empty", "DELE hello.txt", "RNFR hello.txt"] {
        h.reply(line, 550);
    }
    assert!(!h.path("newdir").exists());
    assert!(h.path("empty").is_dir());
    assert!(h.path("hello.txt").is_file());
    h.reply("RNTO moved.txt", 503);
}

#[test]
fn mutations_on_writable_change_the_disk() {
    let mut h = logged_in_writable();
    h.reply("MKD newdir", 257);
    assert!(h.path("newdir").is_dir());
    h.reply("RMD newdir", 250);
    assert!(!h.path("newdir").exists());
    h.reply("XRMD empty", 250);
    assert!(!h.path("empty").exists());
    h.reply("DELE sub/inner.txt", 250);
    assert!(!h.path("sub/inner.txt").exists());
    h.reply("RNFR hello.txt", 350);
    h.reply("RNTO sub/hello2.txt", 250);
    assert_eq!(std::fs::read(h.path("sub/hello2.txt")).unwrap(), HELLO);
}

#[test]
fn writable_refusals_are_550() {
    let mut h = logged_in_writable();
    h.reply("MKD sub", 550); // exists
    h.reply("RMD sub", 550); // not empty
    h.reply("RMD hello.txt", 550); // not a directory
    h.reply("DELE sub", 550); // a directory
    h.reply("DELE nope.txt", 550);
    h.reply("RMD /", 550);
    h.reply("RNFR /", 550);
}

#[test]
fn rnfr_of_a_missing_file_is_550_and_no_rename_is_pending() {
    let mut h = logged_in_writable();
    h.reply("RNFR nope.txt", 550);
    h.reply("RNTO moved.txt", 503);
}

#[test]
fn size_of_a_file_is_213_with_its_exact_size() {
    let mut h = logged_in();
    let r = h.reply("SIZE hello.txt", 213);
    assert_eq!(r.lines, [b"213 12".to_vec()]);
    let r = h.reply("SIZE /sub/inner.txt", 213);
    assert_eq!(r.text(), "6");
    // In ASCII mode, what a TYPE A RETR sends (RFC 3659 §4): one CR more
    // per LF ("hello world\n" -> 13).
    h.reply("TYPE A", 200);
    let r = h.reply("SIZE hello.txt", 213);
    assert_eq!(r.text(), "13");
}

#[test]
fn size_of_a_directory_or_a_missing_file_is_550() {
    let mut h = logged_in();
    h.reply("SIZE sub", 550);
    h.reply("SIZE /", 550);
    h.reply("SIZE nope", 550);
}

#[test]
fn mdtm_is_213_and_fourteen_digits_in_utc() {
    let mut h = logged_in();
    let f = std::fs::File::options().write(true).open(h.path("hello.txt")).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + secs(1_612_325_106)).unwrap();
    drop(f);
    let r = h.reply("MDTM hello.txt", 213);
    assert_eq!(r.text(), "20210203040506");
    let r = h.reply("MDTM sub/inner.txt", 213);
    assert!(r.text().len() == 14 && r.text().bytes().all(|b| b.is_ascii_digit()), "{}", r.text());
    h.reply("MDTM nope", 550);
}

// ---------------------------------------------------------------------------
// TYPE, MODE, STRU

#[test]
fn type_a_i_l8_and_a_n_are_200() {
    let mut h = logged_in();
    for line in ["TYPE A", "TYPE I", "TYPE L 8", "TYPE A N", "type i", "TYPE L8", "TYPE a n"] {
        h.reply(line, 200);
    }
}

#[test]
fn type_e_is_504_and_type_x_is_501() {
    let mut h = logged_in();
    h.reply("TYPE E", 504);
    h.reply("TYPE A T", 504);
    h.reply("TYPE L 7", 504);
    h.reply("TYPE X", 501);
    h.reply("TYPE I I I", 501);
}

#[test]
fn type_sets_the_transfer_mode_of_the_150() {
    let mut h = logged_in();
    h.reply("TYPE A", 200);
    let _req = h.transfer("RETR hello.txt", XferKind::Retr);
    h.transfer_started(false);
    let r = expect!(h, 150);
    assert!(r[0].text().contains("ASCII"), "{}", r[0].text());
    h.transfer_finished(Ok(13));
    expect!(h, 226);
    h.reply("TYPE I", 200);
    let _req = h.transfer("RETR hello.txt", XferKind::Retr);
    h.transfer_started(false);
    let r = expect!(h, 150);
    assert!(r[0].text().contains("BINARY"), "{}", r[0].text());
}

#[test]
fn mode_s_is_200_and_mode_b_is_504() {
    let mut h = logged_in();
    h.reply("MODE S", 200);
    h.reply("mode s", 200);
    h.reply("MODE B", 504);
    h.reply("MODE C", 504);
    h.reply("MODE X", 501);
}

#[test]
fn stru_f_is_200_and_stru_r_is_504() {
    let mut h = logged_in();
    h.reply("STRU F", 200);
    h.reply("STRU R", 504);
    h.reply("STRU P", 504);
    h.reply("STRU X", 501);
}

// ---------------------------------------------------------------------------
// PASV, EPSV, PORT, EPRT

#[test]
fn pasv_asks_for_a_listener_then_replies_227_with_its_address() {
    let mut h = logged_in();
    let a = send!(h, "PASV");
    assert!(matches!(a, Action::OpenPassive { extended: false }), "{}", describe(&a));
    expect!(h);
    h.passive_opened(Ok(PASV_ADDR.parse().unwrap()), false);
    let r = expect!(h, 227);
    // 50000 = 195 * 256 + 80.
    assert!(r[0].text().contains("(127,0,0,1,195,80)"), "{}", r[0].text());
    assert_eq!(h.s.data_mode(), DataMode::Passive);
}

#[test]
fn pasv_advertises_the_configured_passive_address() {
    let mut h = Harness::build(Opts::default(), |c| c.passive_address = Some("203.0.113.5".parse().unwrap()));
    send!(h, "USER ftp");
    send!(h, "PASS x");
    expect!(h, 331, 230);
    send!(h, "PASV");
    h.passive_opened(Ok("0.0.0.0:1025".parse().unwrap()), false);
    let r = expect!(h, 227);
    assert!(r[0].text().contains("(203,0,113,5,4,1)"), "{}", r[0].text());
}

#[test]
fn pasv_that_cannot_listen_is_425() {
    let mut h = logged_in();
    send!(h, "PASV");
    h.passive_opened(Err(std::io::Error::from(std::io::ErrorKind::AddrInUse)), false);
    expect!(h, 425);
    assert_eq!(h.s.data_mode(), DataMode::None);
    h.reply("LIST", 425);
}

#[test]
fn epsv_asks_for_an_extended_listener_and_replies_229() {
    let mut h = logged_in();
    for line in ["EPSV", "EPSV 1"] {
        let a = send!(h, line);
        assert!(matches!(a, Action::OpenPassive { extended: true }), "{}", describe(&a));
        h.passive_opened(Ok(PASV_ADDR.parse().unwrap()), true);
        let r = expect!(h, 229);
        assert!(r[0].text().contains("(|||50000|)"), "{}", r[0].text());
    }
}

#[test]
fn epsv_all_refuses_pasv_port_and_eprt_but_not_epsv() {
    let mut h = logged_in();
    h.reply("EPSV ALL", 200);
    h.reply("PASV", 503);
    h.reply("PORT 127,0,0,1,4,1", 503);
    h.reply("EPRT |1|127.0.0.1|1025|", 503);
    assert_eq!(h.s.data_mode(), DataMode::None);
    let a = send!(h, "EPSV");
    assert!(matches!(a, Action::OpenPassive { extended: true }), "{}", describe(&a));
    h.passive_opened(Ok(PASV_ADDR.parse().unwrap()), true);
    expect!(h, 229);
}

#[test]
fn epsv_2_on_ipv4_is_522() {
    let mut h = logged_in();
    h.reply("EPSV 2", 522);
    h.reply("EPSV 3", 522);
    h.reply("EPSV foo", 501);
}

#[test]
fn eprt_with_protocol_3_is_522() {
    let mut h = logged_in();
    h.reply("EPRT |3|127.0.0.1|1025|", 522);
    assert_eq!(h.s.data_mode(), DataMode::None);
}

#[test]
fn port_to_another_host_is_504_without_dropping_data() {
    let mut h = logged_in();
    h.pasv();
    let a = send!(h, "PORT 127,0,0,2,4,1");
    assert!(matches!(a, Action::None), "PORT refused must not touch the data connection: {}", describe(&a));
    expect!(h, 504);
    assert_eq!(h.s.data_mode(), DataMode::Passive);
    let a = send!(h, "EPRT |1|10.0.0.1|2000|");
    assert!(matches!(a, Action::None), "{}", describe(&a));
    expect!(h, 504);
}

#[test]
fn port_below_1024_is_504() {
    let mut h = logged_in();
    h.reply("PORT 127,0,0,1,0,21", 504);
    h.reply("PORT 127,0,0,1,3,255", 504);
    h.reply("EPRT |1|127.0.0.1|80|", 504);
    assert_eq!(h.s.data_mode(), DataMode::None);
}

#[test]
fn port_malformed_is_501() {
    let mut h = logged_in();
    for line in [
        "PORT 127,0,0,1,4",
        "PORT 127,0,0,1,4,1,1",
        "PORT 256,0,0,1,4,1",
        "PORT a,b,c,d,e,f",
        "PORT 127.0.0.1:1025",
        "PORT ,,,,,",
        "EPRT 127.0.0.1",
        "EPRT |1|::1|1025|",
        "EPRT |1|127.0.0.1|99999|",
    ] {
        h.reply(line, 501);
    }
    let a = send!(h, b"PORT \xff\xfe,0,0,1,4,1");
    assert!(matches!(a, Action::None));
    expect!(h, 501);
}

#[test]
fn port_ok_is_200_and_drops_any_data_connection() {
    let mut h = logged_in();
    let a = send!(h, "PORT 127,0,0,1,4,1");
    assert!(matches!(a, Action::DropData), "{}", describe(&a));
    expect!(h, 200);
    assert_eq!(h.s.data_mode(), DataMode::Active("127.0.0.1:1025".parse().unwrap()));
    let a = send!(h, "EPRT |1|127.0.0.1|6275|");
    assert!(matches!(a, Action::DropData), "{}", describe(&a));
    expect!(h, 200);
    assert_eq!(h.s.data_mode(), DataMode::Active("127.0.0.1:6275".parse().unwrap()));
}

#[test]
fn port_to_any_host_only_with_the_insecure_option() {
    let mut h = Harness::build(Opts::default(), |c| c.insecure_port_any_host = true);
    send!(h, "USER ftp");
    send!(h, "PASS x");
    expect!(h, 331, 230);
    let a = send!(h, "PORT 10,0,0,9,0,21");
    assert!(matches!(a, Action::DropData), "{}", describe(&a));
    expect!(h, 200);
    assert_eq!(h.s.data_mode(), DataMode::Active("10.0.0.9:21".parse().unwrap()));
}

#[test]
fn pasv_on_an_ipv6_control_connection_is_refused_and_epsv_works() {
    let mut h = logged_in();
    h.s = Session::new("[::1]:5000".parse().unwrap(), "[::1]:2121".parse().unwrap());
    send!(h, "USER ftp");
    send!(h, "PASS x");
    expect!(h, 331, 230);
    h.reply("PASV", 425);
    h.reply("EPSV 1", 522);
    let a = send!(h, "EPSV 2");
    assert!(matches!(a, Action::OpenPassive { extended: true }), "{}", describe(&a));
    h.passive_opened(Ok("[::1]:50000".parse().unwrap()), true);
    expect!(h, 229);
    let a = send!(h, "EPRT |2|::1|6275|");
    assert!(matches!(a, Action::DropData), "{}", describe(&a));
    expect!(h, 200);
}

// ---------------------------------------------------------------------------
// Transfers

fn buffer_of(req: &mut TransferRequest) -> Vec<u8> {
    req.transfer.listing_text().expect("a listing transfer")
}

#[test]
fn transfers_without_pasv_or_port_are_425_with_no_side_effect() {
    let mut h = logged_in_writable();
    for line in ["RETR hello.txt", "STOR up.txt", "LIST", "NLST", "LIST sub", "RETR nope"] {
        h.reply(line, 425);
        assert_eq!(h.s.pending(), Pending::Nothing);
    }
    assert!(!h.path("up.txt").exists());
    assert!(h.temp_files("").is_empty(), "STOR without a data connection left {:?}", h.temp_files(""));
}

#[test]
fn retr_missing_is_550() {
    let mut h = logged_in();
    h.pasv();
    h.reply("RETR nope.txt", 550);
    assert_eq!(h.s.pending(), Pending::Nothing);
}

#[test]
fn retr_directory_is_550() {
    let mut h = logged_in();
    h.pasv();
    h.reply("RETR sub", 550);
    h.reply("RETR /", 550);
}

#[test]
fn retr_replies_150_then_226_and_the_data_mode_is_one_shot() {
    let mut h = logged_in();
    let req = h.transfer("RETR hello.txt", XferKind::Retr);
    assert_eq!(req.path.as_bytes(), b"/hello.txt");
    assert!(!req.transfer.is_upload());
    h.transfer_started(false);
    expect!(h, 150);
    h.transfer_finished(Ok(12));
    expect!(h, 226);
    assert_eq!(h.s.pending(), Pending::Nothing);
    assert_eq!(h.s.data_mode(), DataMode::None);
    h.reply("RETR hello.txt", 425);
}

#[test]
fn transfer_on_an_open_data_connection_is_125() {
    let mut h = logged_in();
    let _req = h.transfer("RETR hello.txt", XferKind::Retr);
    h.transfer_started(true);
    expect!(h, 125);
    h.transfer_finished(Ok(12));
    expect!(h, 226);
}

#[test]
fn failed_transfers_are_425_426_or_the_file_error() {
    let cases = [
        (TransferError::CantOpen, 425),
        (TransferError::ConnectionLost, 426),
        (TransferError::Stalled, 426),
        (TransferError::Aborted, 426),
        (TransferError::Local(FsError::NoSpace), 452),
        (TransferError::Local(FsError::QuotaExceeded), 552),
        (TransferError::Local(FsError::Io(5)), 451),
    ];
    for (e, code) in cases {
        let mut h = logged_in_writable();
        let _req = h.transfer("STOR up.txt", XferKind::Stor);
        if e != TransferError::CantOpen {
            h.transfer_started(false);
            expect!(h, 150);
        }
        h.transfer_finished(Err(e));
        let r = h.take();
        assert_eq!(codes(&r), [code], "{e:?}: {}", show(&r));
        assert_eq!(h.s.pending(), Pending::Nothing);
        assert_eq!(h.s.data_mode(), DataMode::None);
        h.reply("NOOP", 200);
    }
}

#[test]
fn port_then_retr_is_a_transfer_in_active_mode() {
    let mut h = logged_in();
    send!(h, "PORT 127,0,0,1,4,1");
    expect!(h, 200);
    match send!(h, "RETR hello.txt") {
        Action::Transfer(req) => assert_eq!(req.kind, XferKind::Retr),
        a => panic!("{}", describe(&a)),
    }
    assert_eq!(h.s.data_mode(), DataMode::Active("127.0.0.1:1025".parse().unwrap()));
}

#[test]
fn stor_on_read_only_is_550() {
    let mut h = logged_in();
    h.pasv();
    h.reply("STOR up.txt", 550);
    assert!(!h.path("up.txt").exists());
    assert!(h.temp_files("").is_empty());
    assert_eq!(h.s.pending(), Pending::Nothing);
}

#[test]
fn stor_writes_to_a_temp_file_beside_the_target_until_dropped() {
    let mut h = logged_in_writable();
    let req = h.transfer("STOR sub/up.txt", XferKind::Stor);
    assert_eq!(req.path.as_bytes(), b"/sub/up.txt");
    assert!(req.transfer.is_upload());
    assert_eq!(h.temp_files("sub").len(), 1, "one temp file beside the target");
    assert!(h.temp_files("").is_empty());
    assert!(!h.path("sub/up.txt").exists(), "the target appears only on commit");
    drop(req);
    assert!(h.temp_files("sub").is_empty(), "a dropped upload leaves no trace");
    assert!(!h.path("sub/up.txt").exists());
}

#[test]
fn stor_to_a_directory_or_a_bad_name_is_refused() {
    let mut h = logged_in_writable();
    h.pasv();
    h.reply("STOR sub", 550);
    h.reply("STOR /", 550);
    h.reply("STOR nodir/x.txt", 550);
    let r = h.reply(b"STOR a\rb", 553);
    assert_eq!(r.lines.len(), 1);
    assert!(h.temp_files("").is_empty());
}

#[test]
fn list_sends_ls_long_lines() {
    let mut h = logged_in();
    let mut req = h.transfer("LIST", XferKind::List);
    let text = String::from_utf8(buffer_of(&mut req)).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, (name, kind)) in lines.iter().zip([("empty", 'd'), ("hello.txt", '-'), ("sub", 'd')]) {
        assert!(line.starts_with(kind), "{line}");
        assert!(line.ends_with(&format!(" {name}")), "{line}");
        assert!(line.contains(" ftp ftp "), "{line}");
    }
    assert!(lines[1].contains(" 12 "), "{}", lines[1]);
    assert!(text.ends_with("\r\n"));
    h.transfer_started(false);
    h.transfer_finished(Ok(text.len() as u64));
    let r = expect!(h, 150, 226);
    assert!(r[0].text().contains("directory listing"), "{}", r[0].text());
}

#[test]
fn list_accepts_the_ls_options_clients_send() {
    for opt in ["-la", "-al", "-aL", "-a", "-l", "-la sub"] {
        let mut h = logged_in();
        let mut req = h.transfer(&format!("LIST {opt}"), XferKind::List);
        let text = String::from_utf8(buffer_of(&mut req)).unwrap();
        let want = if opt.ends_with("sub") { " inner.txt\r\n" } else { " hello.txt\r\n" };
        assert!(text.contains(want), "LIST {opt}: {text}");
    }
}

#[test]
fn list_of_a_subdirectory_a_file_and_a_missing_path() {
    let mut h = logged_in();
    let mut req = h.transfer("LIST sub", XferKind::List);
    assert!(String::from_utf8_lossy(&buffer_of(&mut req)).contains(" inner.txt\r\n"));
    h.transfer_finished(Ok(0));
    expect!(h, 226);
    let mut req = h.transfer("LIST hello.txt", XferKind::List);
    let text = String::from_utf8(buffer_of(&mut req)).unwrap();
    assert_eq!(text.matches("\r\n").count(), 1);
    assert!(text.ends_with(" hello.txt\r\n"), "{text}");
    h.transfer_finished(Ok(0));
    expect!(h, 226);
    h.pasv();
    h.reply("LIST nope", 550);
    h.reply("NLST nope", 550);
}

#[test]
fn nlst_sends_names_only() {
    let mut h = logged_in();
    let mut req = h.transfer("NLST", XferKind::List);
    assert_eq!(buffer_of(&mut req), b"empty\r\nhello.txt\r\nsub\r\n");
}

#[test]
fn listings_hide_upload_temp_files() {
    let mut h = logged_in_writable();
    let _upload = h.transfer("STOR up.txt", XferKind::Stor);
    h.transfer_finished(Err(TransferError::ConnectionLost));
    expect!(h, 426);
    assert_eq!(h.temp_files("").len(), 1);
    let mut req = h.transfer("NLST", XferKind::List);
    assert_eq!(buffer_of(&mut req), b"empty\r\nhello.txt\r\nsub\r\n");
}

// ---------------------------------------------------------------------------
// FEAT, HELP, OPTS, SYST, QUIT

fn feat_lines(h: &mut Harness) -> Vec<String> {
    let r = h.reply("FEAT", 211);
    assert!(r.lines[0].starts_with(b"211-"), "{}", r.all());
    assert_eq!(r.lines.last().unwrap(), b"211 End");
    r.lines[1..r.lines.len() - 1]
        .iter()
        .map(|l| {
            assert!(l.starts_with(b" "), "a feature line starts with a space: {:?}", String::from_utf8_lossy(l));
            String::from_utf8_lossy(&l[1..]).into_owned()
        })
        .collect()
}

#[test]
fn feat_lists_exactly_what_the_table_offers_with_and_without_tls() {
    for tls in [TlsOpt::Off, TlsOpt::On, TlsOpt::Required] {
        let mut h = unauth_with(Opts { tls, ..Opts::default() });
        // The feature names (MLST is followed by its facts).
        let lines = feat_lines(&mut h);
        let mut feats: Vec<String> = lines.iter().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect();
        feats.sort();
        let mut want: Vec<String> = table::COMMANDS
            .iter()
            .filter(|s| s.is_offered(&h.env))
            .filter_map(|s| s.feat)
            .chain(table::EXTRA_FEATURES.iter().copied())
            .map(|f| f.split(' ').next().unwrap_or("").to_string())
            .collect();
        want.sort();
        assert_eq!(feats, want, "{tls:?}");
        for f in ["EPRT", "EPSV", "MDTM", "PASV", "SIZE", "TVFS", "UTF8"] {
            assert!(feats.iter().any(|l| l == f), "FEAT lacks {f}: {feats:?}");
        }
        // RFC 4217 §15: " AUTH TLS", " PBSZ", " PROT" — exactly these
        // lines, and only with a certificate.
        for f in ["AUTH TLS", "PBSZ", "PROT"] {
            assert_eq!(lines.iter().any(|l| l == f), tls != TlsOpt::Off, "{tls:?}: {f:?} in {lines:?}");
        }
        assert!(!lines.iter().any(|l| l.starts_with("CCC")), "CCC is no FEAT line (RFC 4217 §15)");
    }
}

#[test]
fn every_advertised_feature_is_accepted() {
    for tls in [TlsOpt::Off, TlsOpt::On] {
        let opts = Opts { writable: true, tls, ..Opts::default() };
        let mut h = unauth_with(opts);
        if tls == TlsOpt::On {
            send!(h, "AUTH TLS");
            expect!(h, 234);
        }
        h.reply("USER anonymous", 331);
        h.reply("PASS x", 230);
        for feat in feat_lines(&mut h) {
            let word = feat.split(' ').next().unwrap().to_string();
            let (verb, line) = match command::parse(word.as_bytes()) {
                Ok(c) => (Some(c.verb), sample(c.verb).to_string()),
                Err(_) if word == "UTF8" => (Some(Verb::Opts), "OPTS UTF8 ON".to_string()),
                Err(_) if word == "TVFS" => continue, // a property of paths, not a command
                Err(_) => panic!("FEAT advertises {feat:?}, which is no command"),
            };
            // RFC 7151: HOST is only valid before USER; AUTH too (RFC 4217 §4).
            let mut fresh;
            let h = if matches!(verb, Some(Verb::Host | Verb::Auth)) {
                fresh = unauth_with(opts);
                &mut fresh
            } else {
                &mut h
            };
            let a = send!(h, &line);
            if let Action::OpenPassive { extended } = a {
                h.passive_opened(Ok(PASV_ADDR.parse().unwrap()), extended);
            }
            let r = h.take();
            assert_eq!(r.len(), 1, "{line}: {}", show(&r));
            assert!(r[0].code < 400, "FEAT advertises {feat} but {line:?} gives {}", r[0].all());
        }
    }
}

#[test]
fn help_is_a_multi_line_214_listing_what_is_offered() {
    for tls in [TlsOpt::Off, TlsOpt::On] {
        let mut h = unauth_with(Opts { tls, ..Opts::default() });
        let r = h.reply("HELP", 214);
        assert!(r.lines.len() > 3, "{}", r.all());
        assert!(r.lines[0].starts_with(b"214-"));
        // The listed names are exactly the offered verbs of the table.
        let mut listed: Vec<String> = r.lines[1..r.lines.len() - 1]
            .iter()
            .flat_map(|l| String::from_utf8_lossy(l).split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect();
        listed.sort();
        let mut want: Vec<String> =
            table::COMMANDS.iter().filter(|s| s.is_offered(&h.env)).map(|s| s.verb.name().to_string()).collect();
        want.sort();
        assert_eq!(listed, want, "{}", r.all());
        for v in ["AUTH", "PBSZ", "PROT", "CCC"] {
            assert_eq!(listed.iter().any(|l| l == v), tls == TlsOpt::On, "{tls:?}: {v}");
        }
    }
}

#[test]
fn help_with_a_command_is_214() {
    let mut h = unauth();
    let r = h.reply("HELP RETR", 214);
    assert!(r.text().contains("RETR"), "{}", r.text());
    h.reply("help epsv", 214);
    h.reply("HELP XYZZY", 501);
}

#[test]
fn opts_utf8_on_is_200_before_and_after_login() {
    let mut h = unauth();
    h.reply("OPTS UTF8 ON", 200);
    h.reply("OPTS utf8 on", 200);
    h.reply("OPTS UTF8 OFF", 200);
    h.reply("OPTS UTF8", 200);
    h.reply("OPTS UTF8 MAYBE", 501);
    h.reply("OPTS FOO", 501);
    h.reply("OPTS", 501);
    let mut h = logged_in();
    h.reply("OPTS UTF8 ON", 200);
    h.reply("OPTS FOO", 501);
}

#[test]
fn syst_is_unix_type_l8() {
    let mut h = unauth();
    let r = h.reply("SYST", 215);
    assert_eq!(r.text(), "UNIX Type: L8");
}

#[test]
fn noop_is_200_in_every_state() {
    for mut h in [unauth(), inauth(), logged_in(), renaming()] {
        h.reply("NOOP", 200);
    }
}

#[test]
fn quit_is_221_and_close_in_every_state() {
    for mut h in [unauth(), inauth(), logged_in(), renaming()] {
        send!(h, "QUIT");
        expect!(h, 221; close);
    }
}

#[test]
fn greeting_is_220_and_names_no_version() {
    let h = unauth();
    let mut out = Vec::new();
    h.s.greeting(&mut out);
    let r = parse_replies(&out);
    assert_eq!(codes(&r), [220]);
    assert!(!r[0].text().contains(env!("CARGO_PKG_VERSION")), "{}", r[0].text());
}

#[test]
fn shutting_down_is_421() {
    let mut h = logged_in();
    let mut out = Vec::new();
    h.s.shutting_down(&mut out);
    assert_eq!(codes(&parse_replies(&out)), [421]);
}

#[test]
fn abor_during_a_transfer_is_426_then_226() {
    let mut h = logged_in();
    let _req = h.transfer("RETR hello.txt", XferKind::Retr);
    h.transfer_started(false);
    expect!(h, 150);
    let abort = h.call(|s, c| s.handle_urgent(Verb::Abor, 5, c));
    assert!(abort, "ABOR during a transfer aborts it");
    expect!(h);
    h.transfer_finished(Err(TransferError::Aborted));
    h.call(|s, c| s.aborted(c));
    expect!(h, 426, 226);
    assert_eq!(h.s.pending(), Pending::Nothing);
    assert_eq!(h.s.data_mode(), DataMode::None);
}

#[test]
fn stat_during_a_transfer_reports_its_progress() {
    let mut h = logged_in();
    let _req = h.transfer("RETR hello.txt", XferKind::Retr);
    h.transfer_started(false);
    expect!(h, 150);
    let abort = h.call(|s, c| s.handle_urgent(Verb::Stat, 1234, c));
    assert!(!abort);
    let r = expect!(h, 211);
    assert!(r[0].all().contains("1234"), "{}", r[0].all());
    assert!(r[0].all().contains("/hello.txt"), "{}", r[0].all());
    assert_eq!(h.s.pending(), Pending::Transfer(XferKind::Retr));
    // Other commands wait in the reactor's queue: nothing here.
    let abort = h.call(|s, c| s.handle_urgent(Verb::Noop, 0, c));
    assert!(!abort);
    expect!(h);
}

#[test]
fn abor_without_a_transfer_is_226_or_225() {
    let mut h = logged_in();
    h.reply("ABOR", 226);
    h.pasv();
    let a = send!(h, "ABOR");
    assert!(matches!(a, Action::DropData), "{}", describe(&a));
    expect!(h, 225);
    assert_eq!(h.s.data_mode(), DataMode::None);
}

// ---------------------------------------------------------------------------
// Hostile input

#[test]
fn http_request_line_is_500_and_close() {
    for mut h in [unauth(), logged_in()] {
        send!(h, "GET / HTTP/1.1");
        expect!(h, 500; close);
    }
    let mut h = unauth();
    send!(h, "POST /upload HTTP/1.0");
    expect!(h, 500; close);
}

#[test]
fn three_unknown_commands_before_login_close() {
    let mut h = unauth();
    h.reply("XYZZY", 500);
    h.reply("", 500);
    let a = send!(h, "FOO bar");
    assert!(matches!(a, Action::Close), "{}", describe(&a));
    expect!(h, 500, 421; close);
}

#[test]
fn unknown_commands_after_login_never_close() {
    let mut h = logged_in();
    for i in 0..50 {
        let line = format!("BOGUS{i}");
        h.reply(&line, 500);
    }
    h.reply("NOOP", 200);
}

#[test]
fn garbage_bytes_are_500_and_never_panic() {
    let mut h = logged_in();
    for line in [&b"\0\0\0"[..], b"\xff\xfe\xfd", b"\xc3\xa9t\xc3\xa9", b" NOOP", b"\x1b[2J", b"\r", b"NO\0P"] {
        let a = send!(h, line);
        assert!(matches!(a, Action::None), "{}", describe(&a));
        expect!(h, 500);
    }
}

#[test]
fn a_nul_in_a_path_is_refused() {
    let mut h = logged_in_writable();
    let r = h.reply(b"MKD a\0b", 553);
    assert_eq!(r.lines.len(), 1);
    h.reply(b"CWD a\0b", 553);
}

// ---------------------------------------------------------------------------
// FTPS (RFC 4217, RFC 2228's codes): AUTH, PBSZ, PROT, CCC and --tls-required

fn tls_opts(tls: TlsOpt) -> Opts {
    Opts { tls, has_users: true, writable: true, ..Opts::default() }
}

/// A certificate configured, nothing said yet.
fn tls_unauth() -> Harness {
    unauth_with(tls_opts(TlsOpt::On))
}

/// `AUTH TLS` accepted (the reactor's handshake completes at once).
#[track_caller]
fn auth_tls(h: &mut Harness) {
    check(h, "AUTH TLS", Exp::StartTls);
    assert!(h.s.protection().is_control_tls());
}

/// AUTH TLS, then an anonymous login.
fn tls_logged_in_with(tls: TlsOpt) -> Harness {
    let mut h = unauth_with(tls_opts(tls));
    auth_tls(&mut h);
    h.reply("USER anonymous", 331);
    h.reply("PASS x", 230);
    h
}

/// An implicit FTPS connection, logged in.
fn implicit_logged_in(tls: TlsOpt) -> Harness {
    let mut h = unauth_with(Opts { implicit: true, ..tls_opts(tls) });
    h.reply("USER anonymous", 331);
    h.reply("PASS x", 230);
    h
}

#[test]
fn without_a_certificate_auth_pbsz_prot_and_ccc_are_502() {
    let mut h = unauth();
    // Before login too: a command not offered is 502 whoever asks (the
    // black-box FTPS suite found CCC answered 530 here).
    for line in ["AUTH TLS", "AUTH SSL", "AUTH", "PBSZ 0", "PROT P", "CCC"] {
        h.reply(line, 502);
    }
    let mut h = logged_in();
    for line in ["AUTH TLS", "PBSZ 0", "PROT P", "PROT C", "CCC"] {
        h.reply(line, 502);
    }
    assert_eq!(h.s.protection(), Protection::Plain);
}

#[test]
fn auth_mechanisms_are_234_and_start_tls_or_504() {
    use DataProtection::*;
    let cases: &[(&str, Exp, Protection)] = &[
        ("AUTH TLS", Exp::StartTls, Protection::Tls(NoPbsz)),
        ("auth tls", Exp::StartTls, Protection::Tls(NoPbsz)),
        ("AUTH Tls ", Exp::StartTls, Protection::Tls(NoPbsz)),
        ("AUTH TLS-C", Exp::StartTls, Protection::Tls(NoPbsz)),
        ("AUTH tls-c", Exp::StartTls, Protection::Tls(NoPbsz)),
        // A synonym (MS-FTPS, vsftpd): data stays clear until PROT P.
        ("AUTH SSL", Exp::StartTls, Protection::Tls(NoPbsz)),
        ("auth ssl", Exp::StartTls, Protection::Tls(NoPbsz)),
        // draft-murray: TLS-P protects the data connections too.
        ("AUTH TLS-P", Exp::StartTls, Protection::Tls(Private)),
        ("AUTH KERBEROS_V4", Exp::Code(504), Protection::Plain),
        ("AUTH GSSAPI", Exp::Code(504), Protection::Plain),
        ("AUTH TLSX", Exp::Code(504), Protection::Plain),
        ("AUTH TLS C", Exp::Code(504), Protection::Plain),
        ("AUTH", Exp::Code(501), Protection::Plain),
        ("AUTH ", Exp::Code(501), Protection::Plain),
    ];
    for &(line, want, protection) in cases {
        let mut h = tls_unauth();
        check(&mut h, line, want);
        assert_eq!(h.s.protection(), protection, "{line:?}");
    }
}

#[test]
fn a_second_auth_is_503_whatever_came_between() {
    // After AUTH; after implicit FTPS; after login; after CCC.
    let mut h = tls_unauth();
    auth_tls(&mut h);
    h.reply("AUTH TLS", 503);
    h.reply("AUTH SSL", 503);
    h.reply("AUTH XYZ", 503);
    assert_eq!(h.s.protection(), Protection::Tls(DataProtection::NoPbsz));

    let mut h = unauth_with(Opts { implicit: true, ..tls_opts(TlsOpt::On) });
    h.reply("AUTH TLS", 503);

    let mut h = tls_logged_in_with(TlsOpt::On);
    h.reply("AUTH TLS", 503);
    check(&mut h, "CCC", Exp::EndTls);
    h.reply("AUTH TLS", 503);
    assert!(matches!(h.s.protection(), Protection::Cleared(_)));
}

#[test]
fn auth_after_a_plaintext_login_is_503() {
    // RFC 4217 §4 lets the server refuse; RFC 2228 would otherwise demand a
    // new USER/PASS.
    let mut h = logged_in_as(tls_opts(TlsOpt::On));
    h.reply("AUTH TLS", 503);
    assert_eq!(h.s.protection(), Protection::Plain);
    assert!(h.s.is_logged_in());
}

#[test]
fn auth_forgets_a_user_given_before_it() {
    let mut h = tls_unauth();
    h.reply("USER anonymous", 331);
    auth_tls(&mut h);
    // The name came in clear: PASS must follow a new USER.
    h.reply("PASS x", 503);
    h.reply("USER anonymous", 331);
    h.reply("PASS x", 230);
}

#[test]
fn pbsz_is_503_before_auth_200_with_a_number_and_501_without() {
    let mut h = tls_unauth();
    h.reply("PBSZ 0", 503);
    h.reply("PBSZ x", 503);
    auth_tls(&mut h);
    for line in ["PBSZ x", "PBSZ -1", "PBSZ 0x10", "PBSZ 1 2"] {
        h.reply(line, 501);
    }
    send!(h, "PBSZ");
    expect!(h, 501);
    assert_eq!(h.s.protection(), Protection::Tls(DataProtection::NoPbsz), "a refused PBSZ changes nothing");
    for line in ["PBSZ 0", "PBSZ 1024", "pbsz 00", "PBSZ 99999999999999999999999"] {
        let r = h.reply(line, 200);
        // RFC 4217 §8 / RFC 2228: the size in force is named.
        assert_eq!(r.text(), "PBSZ=0", "{line:?}");
    }
    assert_eq!(h.s.protection(), Protection::Tls(DataProtection::Clear));
}

#[test]
fn prot_levels_after_pbsz() {
    let cases: &[(&str, u16, DataProtection)] = &[
        ("PROT C", 200, DataProtection::Clear),
        ("prot c", 200, DataProtection::Clear),
        ("PROT P", 200, DataProtection::Private),
        ("prot p ", 200, DataProtection::Private),
        ("PROT S", 536, DataProtection::Clear),
        ("PROT E", 536, DataProtection::Clear),
        ("prot s", 536, DataProtection::Clear),
        ("PROT X", 504, DataProtection::Clear),
        ("PROT CP", 504, DataProtection::Clear),
        ("PROT Private", 504, DataProtection::Clear),
        ("PROT", 501, DataProtection::Clear),
    ];
    for &(line, code, data) in cases {
        let mut h = tls_unauth();
        auth_tls(&mut h);
        h.reply("PBSZ 0", 200);
        h.reply(line, code);
        assert_eq!(h.s.protection(), Protection::Tls(data), "{line:?}");
    }
}

#[test]
fn prot_is_503_before_auth_and_before_pbsz() {
    let mut h = tls_unauth();
    h.reply("PROT P", 503);
    h.reply("PROT C", 503);
    h.reply("PROT X", 503);
    auth_tls(&mut h);
    h.reply("PROT P", 503);
    h.reply("PROT S", 503);
    assert_eq!(h.s.protection(), Protection::Tls(DataProtection::NoPbsz));
    h.reply("PBSZ 0", 200);
    h.reply("PROT P", 200);
    // And after login the same.
    let mut h = tls_logged_in_with(TlsOpt::On);
    h.reply("PROT P", 503);
    h.reply("PBSZ 0", 200);
    h.reply("PROT P", 200);
}

/// Whether the next RETR asks the reactor for a protected data connection.
#[track_caller]
fn retr_is_protected(h: &mut Harness) -> bool {
    let req = h.transfer("RETR hello.txt", XferKind::Retr);
    let protected = req.protected;
    h.transfer_started(false);
    h.transfer_finished(req.transfer.finish().map(|()| 0));
    h.expect(&[150, 226]);
    protected
}

#[test]
fn the_transfer_request_is_protected_exactly_under_prot_p() {
    let mut h = logged_in_as(tls_opts(TlsOpt::On));
    assert!(!retr_is_protected(&mut h), "plaintext");
    let mut h = tls_logged_in_with(TlsOpt::On);
    assert!(!retr_is_protected(&mut h), "AUTH TLS, no PBSZ: PROT C is the default");
    h.reply("PBSZ 0", 200);
    assert!(!retr_is_protected(&mut h), "PBSZ alone");
    h.reply("PROT P", 200);
    assert!(retr_is_protected(&mut h), "PROT P");
    assert!(retr_is_protected(&mut h), "PROT P lasts beyond one transfer");
    h.reply("PROT C", 200);
    assert!(!retr_is_protected(&mut h), "PROT C again");
    // AUTH TLS-P and implicit FTPS imply PBSZ 0 and PROT P.
    let mut h = unauth_with(tls_opts(TlsOpt::On));
    check(&mut h, "AUTH TLS-P", Exp::StartTls);
    h.reply("USER anonymous", 331);
    h.reply("PASS x", 230);
    assert!(retr_is_protected(&mut h), "AUTH TLS-P");
    h.reply("PROT C", 200);
    assert!(!retr_is_protected(&mut h), "PROT C after TLS-P");
    let mut h = implicit_logged_in(TlsOpt::On);
    assert!(retr_is_protected(&mut h), "implicit FTPS");
    h.reply("PBSZ 0", 200);
    h.reply("PROT P", 200);
    assert!(retr_is_protected(&mut h), "implicit FTPS, PBSZ and PROT sent anyway");
}

#[test]
fn ccc_is_530_before_login_533_unprotected_534_when_required_else_200() {
    // Before login: the gate.
    let mut h = tls_unauth();
    h.reply("CCC", 530);
    auth_tls(&mut h);
    h.reply("CCC", 530);
    assert!(h.s.protection().is_control_tls());
    // A plaintext control connection.
    let mut h = logged_in_as(tls_opts(TlsOpt::On));
    h.reply("CCC", 533);
    assert_eq!(h.s.protection(), Protection::Plain);
    // TLS required: the control connection stays protected.
    let mut h = tls_logged_in_with(TlsOpt::Required);
    h.reply("CCC", 534);
    assert!(h.s.protection().is_control_tls());
    let mut h = implicit_logged_in(TlsOpt::Required);
    h.reply("CCC", 534);
    // Accepted: 200 under TLS, then plaintext.
    let mut h = tls_logged_in_with(TlsOpt::On);
    check(&mut h, "ccc", Exp::EndTls);
    assert_eq!(h.s.protection(), Protection::Cleared(DataProtection::NoPbsz));
    // Once cleared, the control connection is not protected any more.
    h.reply("CCC", 533);
    let mut h = implicit_logged_in(TlsOpt::On);
    check(&mut h, "CCC", Exp::EndTls);
}

#[test]
fn after_ccc_prot_stays_as_set_and_pbsz_and_prot_still_work() {
    let mut h = tls_logged_in_with(TlsOpt::On);
    h.reply("PBSZ 0", 200);
    h.reply("PROT P", 200);
    check(&mut h, "CCC", Exp::EndTls);
    assert_eq!(h.s.protection(), Protection::Cleared(DataProtection::Private));
    assert!(retr_is_protected(&mut h), "PROT P survives CCC");
    h.reply("PROT C", 200);
    assert!(!retr_is_protected(&mut h));
    h.reply("PBSZ 0", 200);
    h.reply("PROT P", 200);
    assert!(retr_is_protected(&mut h));
    h.reply("PROT E", 536);
    h.reply("AUTH TLS", 503);
    // The session goes on in plaintext as before.
    h.reply("PWD", 257);
}

#[test]
fn tls_required_user_and_pass_before_auth_are_530_for_every_user() {
    for user in ["USER anonymous", "USER ftp", "USER alice", "user ANONYMOUS"] {
        let mut h = unauth_with(tls_opts(TlsOpt::Required));
        h.reply(user, 530);
        h.reply("PASS secret", 530);
        assert!(!h.s.is_logged_in());
        assert_eq!(h.s.pending(), Pending::Nothing, "no password check, no delay");
        // No login timeout change, no failed-login count: AUTH TLS and it works.
        auth_tls(&mut h);
        h.reply(user, 331);
        match send!(h, "PASS secret") {
            Action::None => {
                expect!(h, 230);
            }
            Action::CheckLogin { user: name, .. } => {
                assert_eq!(name.as_ref(), b"alice");
                let grant = h.grant("alice", Perm::ReadWrite);
                h.login_checked(Ok(grant));
                expect!(h, 230);
            }
            a => panic!("{user}: {}", describe(&a)),
        }
        assert!(h.s.is_logged_in());
    }
}

#[test]
fn tls_required_does_not_bind_a_certificate_only_configuration() {
    let mut h = unauth_with(tls_opts(TlsOpt::On));
    h.reply("USER anonymous", 331);
    h.reply("PASS x", 230);
    assert!(!retr_is_protected(&mut h));
}

#[test]
fn tls_required_implicit_ftps_logs_in_and_transfers_at_once() {
    let mut h = implicit_logged_in(TlsOpt::Required);
    assert!(retr_is_protected(&mut h));
}

const TRANSFER_LINES: &[(&str, Verb)] = &[
    ("RETR hello.txt", Verb::Retr),
    ("STOR up.txt", Verb::Stor),
    ("STOU", Verb::Stou),
    ("APPE up.txt", Verb::Appe),
    ("LIST", Verb::List),
    ("NLST", Verb::Nlst),
    ("MLSD", Verb::Mlsd),
];

#[test]
fn tls_required_every_transfer_under_prot_c_is_521_without_side_effect() {
    // Every transfer verb (a test fails here if a new one is added to the
    // table without being listed), in each state where PROT C is in force.
    let listed: Vec<Verb> = TRANSFER_LINES.iter().map(|&(_, v)| v).collect();
    for v in [Verb::Retr, Verb::Stor, Verb::Stou, Verb::Appe, Verb::List, Verb::Nlst, Verb::Mlsd] {
        assert!(listed.contains(&v));
    }
    for prot in ["", "PBSZ 0", "PROT C"] {
        for &(line, _) in TRANSFER_LINES {
            let mut h = tls_logged_in_with(TlsOpt::Required);
            if prot == "PROT C" {
                h.reply("PBSZ 0", 200);
            }
            if !prot.is_empty() {
                h.reply(prot, 200);
            }
            // With or without a data connection asked for: 521 first.
            h.reply(line, 521);
            h.pasv();
            let r = h.reply(line, 521);
            assert!(r.text().contains("PROT P"), "{}", r.text());
            assert_eq!(h.s.data_mode(), DataMode::Passive, "{line}: the PASV stays for the retry");
            assert!(h.temp_files("").is_empty(), "{line}: no upload was begun");
            assert!(!h.path("up.txt").exists());
            // PROT P and the same line again: a protected transfer.
            if prot != "PROT C" {
                h.reply("PBSZ 0", 200);
            }
            h.reply("PROT P", 200);
            match send!(h, line) {
                Action::Transfer(req) => {
                    assert!(req.protected, "{line}");
                    h.transfer_started(true);
                    h.transfer_finished(req.transfer.finish().map(|()| 0));
                    // 125, or STOU's "150 FILE:".
                    let r = h.take();
                    assert!(codes(&r) == [125, 226] || codes(&r) == [150, 226], "{line}: {}", show(&r));
                }
                a => panic!("{line} after PROT P: {} {}", describe(&a), show(&h.take())),
            }
        }
    }
}

#[test]
fn tls_required_after_prot_c_again_is_521_again() {
    let mut h = tls_logged_in_with(TlsOpt::Required);
    h.reply("PBSZ 0", 200);
    h.reply("PROT P", 200);
    assert!(retr_is_protected(&mut h));
    h.reply("PROT C", 200);
    h.pasv();
    h.reply("RETR hello.txt", 521);
}

#[test]
fn stat_names_the_protection_only_with_a_certificate() {
    let line = |h: &mut Harness| -> Option<String> {
        let r = h.reply("STAT", 211);
        r.lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).find(|l| l.contains("Control connection"))
    };
    let mut h = logged_in();
    assert_eq!(line(&mut h), None);
    let mut h = logged_in_as(tls_opts(TlsOpt::On));
    assert_eq!(line(&mut h).as_deref(), Some(" Control connection: plaintext; data connections: PROT C"));
    let mut h = tls_logged_in_with(TlsOpt::On);
    assert_eq!(line(&mut h).as_deref(), Some(" Control connection: TLS; data connections: PROT C"));
    h.reply("PBSZ 0", 200);
    h.reply("PROT P", 200);
    assert_eq!(line(&mut h).as_deref(), Some(" Control connection: TLS; data connections: PROT P"));
    check(&mut h, "CCC", Exp::EndTls);
    assert_eq!(line(&mut h).as_deref(), Some(" Control connection: plaintext (cleared by CCC); data connections: PROT P"));
}

#[test]
fn with_tls_every_other_command_behaves_as_without() {
    // Before login, after USER and after login, a certificate changes
    // nothing but the four FTPS commands.
    let tls_verbs = [Verb::Auth, Verb::Pbsz, Verb::Prot, Verb::Ccc];
    for &v in Verb::ALL.iter().filter(|v| !tls_verbs.contains(v)) {
        check(&mut tls_unauth(), sample(v), exp_unauth(v));
        let mut h = tls_unauth();
        h.reply("USER anonymous", 331);
        check(&mut h, sample(v), exp_inauth(v));
        let mut h = tls_logged_in_with(TlsOpt::On);
        check(&mut h, sample(v), exp_authed(v, true));
    }
}

#[test]
fn with_tls_the_ftps_commands_answer_in_every_state() {
    type Fixture = fn() -> Harness;
    fn inauth_tls() -> Harness {
        let mut h = tls_unauth();
        h.reply("USER anonymous", 331);
        h
    }
    fn plain_logged_in() -> Harness {
        logged_in_as(tls_opts(TlsOpt::On))
    }
    fn protected_logged_in() -> Harness {
        tls_logged_in_with(TlsOpt::On)
    }
    fn required_unauth() -> Harness {
        unauth_with(tls_opts(TlsOpt::Required))
    }
    fn required_logged_in() -> Harness {
        tls_logged_in_with(TlsOpt::Required)
    }
    let cases: &[(&str, Fixture, [Exp; 4])] = &[
        //                              AUTH TLS        PBSZ 0          PROT P          CCC
        ("unauth", tls_unauth, [Exp::StartTls, Exp::Code(503), Exp::Code(503), Exp::Code(530)]),
        ("inauth", inauth_tls, [Exp::StartTls, Exp::Code(503), Exp::Code(503), Exp::Code(530)]),
        ("plain login", plain_logged_in, [Exp::Code(503), Exp::Code(503), Exp::Code(503), Exp::Code(533)]),
        ("protected login", protected_logged_in, [Exp::Code(503), Exp::Code(200), Exp::Code(503), Exp::EndTls]),
        ("required unauth", required_unauth, [Exp::StartTls, Exp::Code(503), Exp::Code(503), Exp::Code(530)]),
        ("required login", required_logged_in, [Exp::Code(503), Exp::Code(200), Exp::Code(503), Exp::Code(534)]),
    ];
    for (name, fixture, want) in cases {
        for (line, &want) in ["AUTH TLS", "PBSZ 0", "PROT P", "CCC"].iter().zip(want.iter()) {
            let mut h = fixture();
            let a = h.send(line);
            let r = h.take();
            let got = match a {
                Action::StartTls if codes(&r) == [234] => Exp::StartTls,
                Action::EndTls if codes(&r) == [200] => Exp::EndTls,
                Action::None if r.len() == 1 => Exp::Code(r[0].code),
                ref a => panic!("{name} {line}: {} {}", describe(a), show(&r)),
            };
            assert_eq!(got, want, "{name}: {line}: {}", show(&r));
        }
    }
}

// ---------------------------------------------------------------------------
// Seeded simulation (sozu's `udp_simulation.rs`)

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const VOCABULARY: &[&str] = &[
    "USER anonymous",
    "USER ftp",
    "USER alice",
    "USER",
    "PASS guest@",
    "PASS",
    "PASS secret",
    "ACCT x",
    "NOOP",
    "SYST",
    "FEAT",
    "HELP",
    "HELP RETR",
    "HELP NOPE",
    "OPTS UTF8 ON",
    "OPTS FOO",
    "PWD",
    "XPWD",
    "CWD sub",
    "CWD ..",
    "CWD /nope",
    "CWD hello.txt",
    "CDUP",
    "MKD d",
    "MKD a\"b",
    "MKD sub/d2",
    "RMD d",
    "RMD sub",
    "DELE up.txt",
    "DELE hello.txt",
    "RNFR hello.txt",
    "RNFR up.txt",
    "RNFR nope",
    "RNTO moved.txt",
    "RNTO hello.txt",
    "SIZE hello.txt",
    "SIZE sub",
    "MDTM hello.txt",
    "TYPE A",
    "TYPE I",
    "TYPE E",
    "TYPE X",
    "MODE S",
    "MODE B",
    "STRU F",
    "STRU R",
    "PASV",
    "PASV",
    "EPSV",
    "EPSV ALL",
    "EPSV 2",
    "PORT 127,0,0,1,4,1",
    "PORT 127,0,0,2,4,1",
    "PORT 127,0,0,1,0,21",
    "PORT 1,2,3",
    "EPRT |1|127.0.0.1|2000|",
    "EPRT |3|127.0.0.1|2000|",
    "LIST",
    "LIST -la",
    "LIST sub",
    "NLST",
    "NLST nope",
    "RETR hello.txt",
    "RETR hello.txt",
    "RETR nope",
    "RETR sub",
    "STOR up.txt",
    "STOR up.txt",
    "STOR sub",
    "ABOR",
    "REST 0",
    "STAT",
    "MLSD",
    "AUTH TLS",
    "AUTH tls",
    "AUTH SSL",
    "AUTH TLS-P",
    "AUTH XYZ",
    "AUTH",
    "PBSZ 0",
    "PBSZ 0",
    "PBSZ x",
    "PROT P",
    "PROT P",
    "PROT C",
    "PROT S",
    "PROT Q",
    "CCC",
    "XYZZY",
    "",
];

/// Lines that end the connection, sent rarely so that sessions live long
/// enough to reach their deeper states.
const RARE: &[&str] = &["QUIT", "GET / HTTP/1.1", "OPTS * HTTP/1.1"];

fn random_line(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(60) {
        return rng.pick(RARE).as_bytes().to_vec();
    }
    match rng.below(12) {
        0 => {
            // Garbage: any bytes but LF (the framer splits there).
            let n = rng.below(24) as usize;
            (0..n).map(|_| loop {
                let b = rng.below(256) as u8;
                if b != b'\n' {
                    break b;
                }
            })
            .collect()
        }
        1 => {
            // A valid verb with a garbage argument.
            let v = *rng.pick(Verb::ALL);
            let mut line = v.name().as_bytes().to_vec();
            line.push(b' ');
            let n = rng.below(12) as usize;
            line.extend((0..n).map(|_| *rng.pick(&b"./\\\"\r\0\xff ab-*,|1"[..])));
            line
        }
        _ => rng.pick(VOCABULARY).as_bytes().to_vec(),
    }
}

/// What one simulation step did.
#[derive(Default)]
struct Step {
    replies: Vec<Reply>,
    /// A transfer was started.
    transfer: bool,
    /// Command lines handled in this step: the line itself, plus any
    /// urgent ABOR/STAT handled during its transfer.
    lines: usize,
}

/// Coverage counters, so that the simulation cannot silently degenerate.
#[derive(Default, Debug)]
struct Stats {
    commands: usize,
    transfers: usize,
    logins: usize,
    closes: usize,
    timeouts: usize,
    urgent: usize,
    /// AUTH accepted (`StartTls`).
    tls_starts: usize,
    /// CCC accepted (`EndTls`).
    tls_ends: usize,
    /// Transfers asked for with a protected data connection.
    protected_transfers: usize,
    /// Transfers refused with 521 (`--tls-required`, PROT C).
    refused_521: usize,
}

/// How far along `Plain` → `Tls` → `Cleared` a session is: it never goes back.
fn protection_rank(p: Protection) -> u8 {
    match p {
        Protection::Plain => 0,
        Protection::Tls(_) => 1,
        Protection::Cleared(_) => 2,
    }
}

/// Send one line and complete every action as the reactor would.
fn sim_command(h: &mut Harness, rng: &mut Rng, line: &[u8], stats: &mut Stats) -> Step {
    let mut action = h.send(line);
    let mut step = Step { lines: 1, ..Step::default() };
    loop {
        match action {
            Action::None | Action::DropData | Action::Close => break,
            Action::StartTls => {
                // The reactor sends the 234 in plaintext, drops queued input
                // and completes the handshake at once.
                assert!(h.env.tls_configured());
                assert!(h.out.ends_with(b"\r\n") && h.out.starts_with(b"234 "), "{:?}", String::from_utf8_lossy(&h.out));
                assert!(h.s.protection().is_control_tls());
                assert!(!h.s.is_logged_in(), "AUTH after login");
                stats.tls_starts += 1;
                break;
            }
            Action::EndTls => {
                // 200 under TLS, close_notify, then plaintext.
                assert!(h.out.starts_with(b"200 "), "{:?}", String::from_utf8_lossy(&h.out));
                assert!(matches!(h.s.protection(), Protection::Cleared(_)));
                assert!(!h.env.config.tls_required, "CCC accepted with --tls-required");
                assert!(h.s.is_logged_in());
                stats.tls_ends += 1;
                break;
            }
            Action::CheckLogin { user, .. } => {
                assert_eq!(h.s.pending(), Pending::Login);
                let result = if rng.chance(2) {
                    let name = String::from_utf8_lossy(&user).into_owned();
                    Ok(h.grant(&name, if rng.chance(2) { Perm::Read } else { Perm::ReadWrite }))
                } else {
                    Err(())
                };
                action = h.login_checked(result);
            }
            Action::Delay(d) => {
                assert_eq!(h.s.pending(), Pending::LoginDelay);
                assert!(d > Duration::ZERO && d <= secs(64), "{d:?}");
                h.advance(d);
                assert!(h.closed || h.s.pending() == Pending::Nothing);
                break;
            }
            Action::OpenPassive { extended } => {
                let result = if rng.chance(10) {
                    Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
                } else {
                    Ok(PASV_ADDR.parse().unwrap())
                };
                h.passive_opened(result, extended);
                break;
            }
            Action::Transfer(req) => {
                step.transfer = true;
                stats.transfers += 1;
                assert_eq!(h.s.pending(), Pending::Transfer(req.kind));
                assert_ne!(h.s.data_mode(), DataMode::None, "a transfer without PASV/PORT");
                assert_eq!(h.s.deadline(), Deadline::None);
                assert_eq!(req.protected, h.s.protection().is_data_private(), "protected exactly under PROT P");
                assert!(req.protected || !h.env.config.tls_required, "a clear transfer with --tls-required");
                if req.protected {
                    stats.protected_transfers += 1;
                }
                // Both orders real clients use: in passive mode the data
                // connection may be open before the command (125) or not.
                let open_first = h.s.data_mode() == DataMode::Passive && rng.chance(2);
                match rng.below(9) {
                    0 => h.transfer_finished(Err(TransferError::CantOpen)),
                    1 => {
                        h.transfer_started(open_first);
                        h.transfer_finished(Err(TransferError::ConnectionLost));
                    }
                    2 => {
                        h.transfer_started(open_first);
                        h.transfer_finished(Err(TransferError::Local(FsError::NoSpace)));
                    }
                    8 => {
                        // The file shrank while it was sent: 451, not 226.
                        h.transfer_started(open_first);
                        let before = h.out.len();
                        h.transfer_finished(Err(TransferError::FileShrank));
                        assert!(h.out[before..].starts_with(b"451 "), "{:?}", String::from_utf8_lossy(&h.out[before..]));
                    }
                    3 => {
                        // STAT while it runs: answered at once, no abort.
                        h.transfer_started(open_first);
                        let abort = h.call(|s, c| s.handle_urgent(Verb::Stat, 42, c));
                        assert!(!abort);
                        step.lines += 1;
                        stats.urgent += 1;
                        let result = req.transfer.finish().map(|()| 0);
                        h.transfer_finished(result);
                    }
                    4 => {
                        // ABOR while it runs: the reactor aborts (426), then 226.
                        h.transfer_started(open_first);
                        let abort = h.call(|s, c| s.handle_urgent(Verb::Abor, 7, c));
                        assert!(abort);
                        step.lines += 1;
                        stats.urgent += 1;
                        h.transfer_finished(Err(TransferError::Aborted));
                        h.call(|s, c| s.aborted(c));
                        h.refresh_deadline();
                    }
                    _ => {
                        h.transfer_started(open_first);
                        let result = req.transfer.finish().map(|()| 0);
                        h.transfer_finished(result);
                    }
                }
                break;
            }
        }
    }
    step.replies = h.take();
    step
}

fn simulate(seed: u64, steps: usize, trace: &mut Vec<String>, stats: &mut Stats) {
    let mut rng = Rng::new(seed);
    let tls = *rng.pick(&[TlsOpt::Off, TlsOpt::On, TlsOpt::Required]);
    let implicit = tls != TlsOpt::Off && rng.chance(4);
    let opts = Opts { anonymous: !rng.chance(4), writable: rng.chance(2), has_users: rng.chance(2), tls, implicit };
    trace.push(format!(
        "-- anonymous {} writable {} has_users {} tls {:?} implicit {}",
        opts.anonymous, opts.writable, opts.has_users, opts.tls, opts.implicit
    ));
    let mut h = unauth_with(opts);
    let mut seen_230 = false;
    // Lines to send before random ones: most connections start by logging in.
    let mut script: Vec<Vec<u8>> = Vec::new();
    let login_script = |rng: &mut Rng| -> Vec<Vec<u8>> {
        let user: &[u8] = if opts.anonymous && (rng.chance(2) || !opts.has_users) { b"USER anonymous" } else { b"USER alice" };
        let mut script = vec![b"PASS x".to_vec(), user.to_vec()]; // popped from the end
        // With a certificate, most clients start with AUTH TLS (and must,
        // with --tls-required); now and then one forgets.
        if opts.tls != TlsOpt::Off && !opts.implicit && !rng.chance(10) {
            script.push(b"AUTH TLS".to_vec());
        }
        script
    };
    let mut rank = protection_rank(h.s.protection());
    if !rng.chance(5) {
        script = login_script(&mut rng);
    }
    for _ in 0..steps {
        if h.closed {
            trace.push("-- reconnect".into());
            stats.closes += 1;
            h.reconnect();
            rank = protection_rank(h.s.protection());
            seen_230 = false;
            script = if rng.chance(5) { Vec::new() } else { login_script(&mut rng) };
        }
        if script.is_empty() && rng.chance(25) {
            // Mostly short pauses; now and then long enough for a timeout.
            let d = if rng.chance(4) { secs(rng.below(400)) } else { secs(rng.below(30)) };
            trace.push(format!("-- advance {d:?}"));
            h.advance(d);
            let r = h.take();
            trace.push(format!("   {}", show(&r)));
            if h.closed {
                stats.timeouts += 1;
                assert_eq!(codes(&r), [421], "a timeout is one 421");
            } else {
                assert!(r.is_empty(), "time passing without a deadline produced {}", show(&r));
            }
            continue;
        }
        if script.is_empty() && seen_230 && rng.chance(6) {
            // A data connection, then a transfer on it.
            let setup = *rng.pick(&["PASV", "EPSV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|2000|"]);
            let xfer = *rng.pick(&["RETR hello.txt", "STOR up.txt", "LIST", "NLST", "MLSD", "APPE up.txt", "STOU", "RETR sub"]);
            script = vec![xfer.as_bytes().to_vec(), setup.as_bytes().to_vec()];
            if opts.tls != TlsOpt::Off && rng.chance(2) {
                script.extend([b"PROT P".to_vec(), b"PBSZ 0".to_vec()]);
            }
        } else if script.is_empty() && seen_230 && opts.tls == TlsOpt::On && rng.chance(40) {
            // Back to a plaintext control connection (NAT-friendly clients).
            script = vec![b"CCC".to_vec()];
        }
        let line = script.pop().unwrap_or_else(|| random_line(&mut rng));
        trace.push(format!("{:?}", String::from_utf8_lossy(&line)));
        stats.commands += 1;
        let step = sim_command(&mut h, &mut rng, &line, stats);
        let replies = &step.replies;
        trace.push(format!("   {}", show(replies)));

        // Exactly one final reply per command line; a 1xx is never final
        // and only opens a transfer.
        let prelim: Vec<usize> = (0..replies.len()).filter(|&i| replies[i].code < 200).collect();
        let finals: Vec<&Reply> = replies.iter().filter(|r| r.code >= 200).collect();
        assert!(prelim.len() <= 1, "more than one 1xx: {}", show(replies));
        if let Some(&i) = prelim.first() {
            assert!(step.transfer, "a 1xx without a transfer");
            assert!(i == 0 || (step.lines > 1 && i <= 1), "a 1xx after the final reply: {}", show(replies));
            assert!(!finals.is_empty(), "a 1xx with no final reply");
        }
        if h.closed {
            // The command's reply, possibly followed by the 421 of the close.
            assert!(
                finals.len() == step.lines || (finals.len() == step.lines + 1 && finals.last().unwrap().code == 421),
                "replies before a close: {}",
                show(replies)
            );
        } else {
            assert_eq!(finals.len(), step.lines, "exactly one final reply per command: {}", show(replies));
        }
        // 451 is an internal error, but for a file that shrank mid-transfer.
        assert!(replies.iter().all(|r| r.code != 451 || r.text().starts_with("File changed")), "an internal error: {}", show(replies));
        assert!(replies.iter().all(|r| (100..600).contains(&r.code)));

        if replies.iter().any(|r| r.code == 230) {
            seen_230 = true;
            stats.logins += 1;
        }
        if replies.iter().any(|r| r.code == 521) {
            assert!(opts.tls == TlsOpt::Required && !h.s.protection().is_data_private());
            stats.refused_521 += 1;
        }
        if h.closed {
            continue;
        }
        // Protection: only with a certificate, only forward, and with
        // --tls-required a logged-in session is always under TLS.
        let p = h.s.protection();
        if opts.tls == TlsOpt::Off {
            assert_eq!(p, Protection::Plain);
        }
        assert!(protection_rank(p) >= rank, "protection went back to {p:?}");
        rank = protection_rank(p);
        if opts.tls == TlsOpt::Required && h.s.is_logged_in() {
            assert!(p.is_control_tls(), "logged in without TLS under --tls-required: {p:?}");
        }
        // State invariants: nothing pending, so the next command is accepted;
        // the deadline matches the state; a transfer resets the data mode.
        assert_eq!(h.s.pending(), Pending::Nothing);
        assert!(!h.s.is_busy());
        assert_eq!(h.s.is_logged_in(), seen_230, "logged in exactly when a 230 was sent");
        let want = if seen_230 { Deadline::Idle } else { Deadline::Login };
        assert_eq!(h.s.deadline(), want);
        assert!(h.timer.is_some(), "an idle control connection always has a deadline");
        if step.transfer {
            assert_eq!(h.s.data_mode(), DataMode::None);
        }
        if !seen_230 {
            assert_eq!(h.s.user(), "-");
        }
    }
    // No upload temp file outlives its transfer.
    let leftovers = h.temp_files("");
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn seeded_simulation_keeps_one_final_reply_per_command() {
    const SEEDS: &[u64] = &[
        1, 2, 3, 7, 42, 1337, 0xDEAD_BEEF, 0x00C0_FFEE, 20_240_101, 31_337, 65_537, 99_991, 123_456_789, 0x5EED_0001,
        0x5EED_0002, 0x5EED_0003,
    ];
    let mut failed = Vec::new();
    let mut stats = Stats::default();
    for &seed in SEEDS {
        let mut trace = Vec::new();
        let result = panic::catch_unwind(AssertUnwindSafe(|| simulate(seed, 400, &mut trace, &mut stats)));
        if result.is_err() {
            let tail = trace.len().saturating_sub(16);
            eprintln!("simulation seed {seed:#x} failed; last steps:\n{}", trace[tail..].join("\n"));
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "simulation failed for seeds {failed:#x?}");
    eprintln!("simulation coverage: {stats:?}");
    assert!(
        stats.transfers >= 150
            && stats.logins >= 40
            && stats.closes >= 40
            && stats.timeouts >= 5
            && stats.urgent >= 20
            && stats.tls_starts >= 20
            && stats.tls_ends >= 3
            && stats.protected_transfers >= 20
            && stats.refused_521 >= 3,
        "the simulation no longer reaches its states: {stats:?}"
    );
}

// ---------------------------------------------------------------------------
// STAT <path>: a bounded listing over the control connection

/// `dir` (relative to the root) with `n` empty files `e00000`….
fn make_entries(h: &Harness, dir: &str, n: usize) -> Vec<String> {
    std::fs::create_dir(h.path(dir)).unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("e{i:05}")).collect();
    for name in &names {
        std::fs::File::create(h.path(dir).join(name)).unwrap();
    }
    names
}

/// The entry lines of a STAT reply (between the header and the end line),
/// each checked to be a continuation line.
fn stat_lines(r: &Reply) -> Vec<String> {
    assert!(r.lines[0].starts_with(b"213-Status of "), "{}", r.all());
    assert_eq!(r.lines.last().unwrap(), b"213 End of status.");
    r.lines[1..r.lines.len() - 1]
        .iter()
        .map(|l| {
            assert!(l.starts_with(b" "), "not a continuation line: {:?}", String::from_utf8_lossy(l));
            String::from_utf8(l.to_vec()).unwrap()
        })
        .collect()
}

/// The name at the end of a LIST line.
fn last_word(line: &str) -> &str {
    line.rsplit(' ').next().unwrap()
}

#[test]
fn stat_of_a_small_directory_lists_every_entry_sorted() {
    let mut h = logged_in();
    let r = h.reply("STAT /", 213);
    let lines = stat_lines(&r);
    assert_eq!(lines.iter().map(|l| last_word(l)).collect::<Vec<_>>(), ["empty", "hello.txt", "sub"]);
    assert!(lines[1].starts_with(" -rw"), "{}", lines[1]);
    assert!(lines[1].contains(" 12 "), "the size: {}", lines[1]);
    assert!(lines[0].starts_with(" d"), "{}", lines[0]);
    // A file is its own one-line listing; a missing path is 550.
    let r = h.reply("STAT -la hello.txt", 213);
    assert_eq!(stat_lines(&r).iter().map(|l| last_word(l)).collect::<Vec<_>>(), ["hello.txt"]);
    h.reply("STAT nope", 550);
    // An empty directory: the header and the end, nothing between.
    let r = h.reply("STAT empty", 213);
    assert!(stat_lines(&r).is_empty());
}

#[test]
fn stat_of_a_directory_of_1500_entries_shows_the_first_1000_and_says_it_was_cut() {
    let mut h = logged_in();
    let names = make_entries(&h, "big", 1_500);
    let r = h.reply("STAT big", 213);
    let lines = stat_lines(&r);
    assert_eq!(lines.len(), 1_001, "1,000 entries and the truncation line");
    let shown: Vec<&str> = lines[..1_000].iter().map(|l| last_word(l)).collect();
    assert_eq!(shown, names[..1_000], "the first 1,000 in name order");
    assert_eq!(lines[1_000], " ... more entries not shown; use LIST for the full listing");
    // The cap is 1,000 exactly: a directory of 1,000 entries is shown whole.
    for name in &names[1_000..] {
        std::fs::remove_file(h.path("big").join(name)).unwrap();
    }
    let lines = stat_lines(&h.reply("STAT big", 213));
    assert_eq!(lines.len(), 1_000);
    assert!(lines.iter().all(|l| !l.contains("more entries")));
}

// ---------------------------------------------------------------------------
// SITE CHMOD: permission bits only, never anonymous, never the root

/// Logged in as `alice` with `perm` (not anonymous).
fn logged_in_user(perm: Perm) -> Harness {
    let mut h = with_users();
    send!(h, "USER alice");
    send!(h, "PASS right");
    h.take();
    let grant = h.grant("alice", perm);
    h.login_checked(Ok(grant));
    expect!(h, 230);
    assert!(!h.s.is_anonymous());
    h
}

fn mode_of(h: &Harness, rel: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(h.path(rel)).unwrap().permissions().mode() & 0o7777
}

#[test]
fn site_chmod_0644_is_200_and_sets_the_mode() {
    let mut h = logged_in_user(Perm::ReadWrite);
    h.reply("SITE CHMOD 0600 hello.txt", 200);
    assert_eq!(mode_of(&h, "hello.txt"), 0o600);
    h.reply("SITE CHMOD 0644 hello.txt", 200);
    assert_eq!(mode_of(&h, "hello.txt"), 0o644);
    h.reply("site chmod 750 sub", 200);
    assert_eq!(mode_of(&h, "sub"), 0o750);
    h.reply("SITE CHMOD 0 sub/inner.txt", 200);
    assert_eq!(mode_of(&h, "sub/inner.txt"), 0);
}

#[test]
fn site_chmod_with_set_uid_set_gid_or_sticky_is_550() {
    let mut h = logged_in_user(Perm::ReadWrite);
    let before = mode_of(&h, "hello.txt");
    for mode in ["6777", "4755", "2755", "1777", "1000", "7000"] {
        let r = h.reply(format!("SITE CHMOD {mode} hello.txt"), 550);
        assert!(r.text().contains("set-uid, set-gid and sticky"), "{mode}: {}", r.text());
        assert_eq!(mode_of(&h, "hello.txt"), before, "{mode}");
    }
    h.reply("SITE CHMOD 1777 sub", 550);
    assert_eq!(mode_of(&h, "sub") & 0o7000, 0);
}

#[test]
fn site_chmod_is_550_for_anonymous_even_when_writable() {
    let mut h = logged_in_writable();
    assert!(h.s.is_anonymous());
    let before = mode_of(&h, "hello.txt");
    let r = h.reply("SITE CHMOD 0644 hello.txt", 550);
    assert!(r.text().contains("anonymous"), "{}", r.text());
    h.reply("SITE CHMOD 6777 hello.txt", 550);
    h.reply("SITE CHMOD 000 /", 550);
    assert_eq!(mode_of(&h, "hello.txt"), before);
    // SITE HELP still names CHMOD (for the users who may use it).
    let r = h.reply("SITE HELP", 214);
    assert!(r.text().contains("CHMOD"), "{}", r.text());
}

#[test]
fn site_chmod_on_the_root_is_550_however_it_is_spelled() {
    let mut h = logged_in_user(Perm::ReadWrite);
    let before = mode_of(&h, ".");
    for path in ["/", ".", "..", "/./", "//", "sub/..", "/sub/../.", "../../.."] {
        h.reply(format!("SITE CHMOD 000 {path}"), 550);
        assert_eq!(mode_of(&h, "."), before, "{path}");
    }
    h.reply("CWD sub", 250);
    h.reply("SITE CHMOD 000 ..", 550);
    h.reply("SITE CHMOD 700 .", 200);
    assert_eq!(mode_of(&h, "sub"), 0o700);
    assert_eq!(mode_of(&h, "."), before);
}

#[test]
fn site_chmod_bad_modes_are_501_and_read_only_users_550() {
    let mut h = logged_in_user(Perm::ReadWrite);
    for line in ["SITE CHMOD 8 hello.txt", "SITE CHMOD 07777 hello.txt", "SITE CHMOD -1 hello.txt", "SITE CHMOD 644", "SITE CHMOD"] {
        h.reply(line, 501);
    }
    h.reply("SITE CHMOD 644 nope", 550);
    let mut h = logged_in_user(Perm::Read);
    h.reply("SITE CHMOD 644 hello.txt", 550);
}

// ---------------------------------------------------------------------------
// NLST names usable from the same directory, and globs (issue 10)

/// The text a listing command sends; the transfer is then finished (`226`).
#[track_caller]
fn listing_of(h: &mut Harness, line: &str) -> String {
    let mut req = h.transfer(line, XferKind::List);
    let text = String::from_utf8(buffer_of(&mut req)).unwrap();
    h.transfer_finished(Ok(text.len() as u64));
    expect!(h, 226);
    text
}

/// The lines of a listing.
#[track_caller]
fn listing_lines(h: &mut Harness, line: &str) -> Vec<String> {
    listing_of(h, line).split_terminator("\r\n").map(String::from).collect()
}

/// The names at the end of a listing's LIST lines.
#[track_caller]
fn list_names(h: &mut Harness, line: &str) -> Vec<String> {
    listing_lines(h, line).iter().map(|l| last_word(l).to_string()).collect()
}

/// RETR of `name` starts a transfer of the file `path` (not `550`).
#[track_caller]
fn retr_finds(h: &mut Harness, name: &str, path: &str) {
    let req = h.transfer(&format!("RETR {name}"), XferKind::Retr);
    assert_eq!(req.path.as_bytes(), path.as_bytes(), "RETR {name}");
    h.transfer_finished(Ok(0));
    expect!(h, 226);
}

#[test]
fn issue_10_nlst_of_a_directory_names_entries_as_the_argument_wrote_it() {
    let mut h = logged_in();
    // RFC 959 §4.1.3: NLST output is for "a multiple get": each name
    // works in RETR from the same working directory (vsftpd, ProFTPD).
    for (arg, want) in [
        ("sub", "sub/inner.txt"),
        ("sub/", "sub/inner.txt"),
        ("sub//", "sub/inner.txt"),
        ("/sub", "/sub/inner.txt"),
        ("-la sub", "sub/inner.txt"),
        ("./sub", "./sub/inner.txt"),
    ] {
        assert_eq!(listing_lines(&mut h, &format!("NLST {arg}")), [want], "NLST {arg}");
        retr_finds(&mut h, want, "/sub/inner.txt");
    }
    // Plain NLST, `NLST .` and `NLST -l` are bare names; `NLST /` gives
    // `/name`, usable from anywhere.
    for line in ["NLST", "NLST .", "NLST ./", "NLST -l"] {
        assert_eq!(listing_lines(&mut h, line), ["empty", "hello.txt", "sub"], "{line}");
    }
    assert_eq!(listing_lines(&mut h, "NLST /"), ["/empty", "/hello.txt", "/sub"]);
    // A file is named as written.
    assert_eq!(listing_lines(&mut h, "NLST sub/inner.txt"), ["sub/inner.txt"]);
    assert_eq!(listing_lines(&mut h, "NLST hello.txt"), ["hello.txt"]);
    // From another directory, `..` stays in the names, and they still work.
    h.reply("CWD empty", 250);
    assert_eq!(listing_lines(&mut h, "NLST ../sub"), ["../sub/inner.txt"]);
    retr_finds(&mut h, "../sub/inner.txt", "/sub/inner.txt");
    assert!(listing_lines(&mut h, "NLST").is_empty());
    // An empty directory is an empty listing, not 550.
    assert!(listing_lines(&mut h, "NLST /empty").is_empty());
}

#[test]
fn issue_10_list_and_mlsd_keep_bare_names() {
    let mut h = logged_in();
    // `ls -l dir` prints bare names, and so does LIST; RFC 3659 §7.2: MLSD
    // names are bare ("pathname … shall be the name of the object").
    assert_eq!(list_names(&mut h, "LIST sub"), ["inner.txt"]);
    assert_eq!(list_names(&mut h, "LIST -la /sub"), ["inner.txt"]);
    let text = listing_of(&mut h, "MLSD sub");
    assert!(text.ends_with("; inner.txt\r\n"), "{text}");
}

/// A harness whose root also holds `a.txt`, `b.txt`, `c.jpg`,
/// `.hidden.txt` and `sub/x.jpg`, `sub/y.txt`.
fn logged_in_with_glob_files() -> Harness {
    let h = logged_in();
    for n in ["a.txt", "b.txt", "c.jpg", ".hidden.txt", "sub/x.jpg", "sub/y.txt"] {
        std::fs::write(h.path(n), n).unwrap();
    }
    h
}

#[test]
fn issue_10_nlst_expands_globs_in_the_last_component() {
    let mut h = logged_in_with_glob_files();
    for (arg, want) in [
        ("*.txt", &["a.txt", "b.txt", "hello.txt"][..]),
        ("?.txt", &["a.txt", "b.txt"]),
        ("[a-b].*", &["a.txt", "b.txt"]),
        ("[!a]*.txt", &["b.txt", "hello.txt"]),
        ("[^ab]*", &["c.jpg", "empty", "hello.txt", "sub"]),
        ("*", &["a.txt", "b.txt", "c.jpg", "empty", "hello.txt", "sub"]),
        (".*", &[".hidden.txt"]),
        ("sub/*.jpg", &["sub/x.jpg"]),
        ("sub/*", &["sub/inner.txt", "sub/x.jpg", "sub/y.txt"]),
        ("/sub/?.*", &["/sub/x.jpg", "/sub/y.txt"]),
        ("-la sub/*.txt", &["sub/inner.txt", "sub/y.txt"]),
    ] {
        assert_eq!(listing_lines(&mut h, &format!("NLST {arg}")), want, "NLST {arg}");
    }
    // Every name a glob gives is one RETR can use.
    for name in listing_lines(&mut h, "NLST sub/*.txt") {
        let path = format!("/{name}");
        retr_finds(&mut h, &name, &path);
    }
    // A directory that matches is a name like any other (not descended).
    assert_eq!(listing_lines(&mut h, "NLST su?"), ["sub"]);
}

#[test]
fn issue_10_list_and_stat_expand_globs_and_show_bare_names() {
    let mut h = logged_in_with_glob_files();
    let lines = listing_lines(&mut h, "LIST sub/*.jpg");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("-rw") && lines[0].ends_with(" x.jpg"), "{}", lines[0]);
    assert_eq!(list_names(&mut h, "LIST -la *.txt"), ["a.txt", "b.txt", "hello.txt"]);
    // STAT <glob> over the control connection (RFC 959 §4.1.3: "analogous
    // to the LIST command").
    let r = h.reply("STAT *.txt", 213);
    assert_eq!(r.lines[0], b"213-Status of /*.txt:");
    assert_eq!(stat_lines(&r).iter().map(|l| last_word(l)).collect::<Vec<_>>(), ["a.txt", "b.txt", "hello.txt"]);
    let r = h.reply("STAT sub/[xy].*", 213);
    assert_eq!(stat_lines(&r).iter().map(|l| last_word(l)).collect::<Vec<_>>(), ["x.jpg", "y.txt"]);
}

#[test]
fn issue_10_a_glob_matching_nothing_is_550_before_any_data_connection_is_used() {
    let mut h = logged_in_with_glob_files();
    h.pasv();
    for line in [
        "NLST *.png",
        "LIST *.png",
        "NLST sub/*.png",
        "NLST .*.png",
        // Wildcards only in the last component: `*/inner.txt` is literal.
        "NLST */inner.txt",
        "LIST s*/inner.txt",
        // A glob below a missing directory, or below a file.
        "NLST nodir/*.txt",
        "NLST hello.txt/*",
    ] {
        let r = h.reply(line, 550);
        assert_eq!(h.s.pending(), Pending::Nothing, "{line}");
        if line.ends_with(".png") {
            assert_eq!(r.text(), "No files found.", "{line}");
        }
    }
    h.reply("STAT *.png", 550);
    // A pattern no name of 255 bytes could match is not a glob: the name
    // is too long (553, RFC 959 "file name not allowed").
    h.reply(format!("NLST {}", "?".repeat(256)), 553);
    // One longer than NAME_MAX that could match is a glob.
    let long = "l".repeat(100);
    std::fs::write(h.path(&long), b"l").unwrap();
    let mut req = h.transfer(&format!("NLST {}*", "[kl]".repeat(100)), XferKind::List);
    assert_eq!(buffer_of(&mut req), format!("{long}\r\n").as_bytes());
    h.transfer_finished(Ok(0));
    expect!(h, 226);
    h.pasv();
    // The passive listener is still there for a listing that matches.
    let mut req = h.transfer("NLST *.jpg", XferKind::List);
    assert_eq!(buffer_of(&mut req), b"c.jpg\r\n");
}

#[test]
fn issue_10_a_name_that_exists_with_wildcards_in_it_is_listed_literally() {
    let mut h = logged_in();
    for n in ["a*b", "axb", "q?", "qq", "[x]", "x"] {
        std::fs::write(h.path(n), n).unwrap();
    }
    std::fs::create_dir(h.path("*")).unwrap();
    std::fs::write(h.path("*/in star"), b"in").unwrap();
    // Literal first: the name exists, so it is listed, not expanded.
    assert_eq!(listing_lines(&mut h, "NLST a*b"), ["a*b"]);
    assert_eq!(listing_lines(&mut h, "NLST q?"), ["q?"]);
    assert_eq!(listing_lines(&mut h, "NLST [x]"), ["[x]"]);
    assert_eq!(list_names(&mut h, "LIST a*b"), ["a*b"]);
    // A directory named `*` is listed as a directory.
    assert_eq!(listing_lines(&mut h, "NLST *"), ["*/in star"]);
    assert_eq!(list_names(&mut h, "LIST *"), ["star"]);
    assert_eq!(stat_lines(&h.reply("STAT *", 213)).len(), 1);
    // … and a glob below it works, the directory part being literal.
    assert_eq!(listing_lines(&mut h, "NLST */in*"), ["*/in star"]);
    // A pattern that does not exist literally still globs.
    assert_eq!(listing_lines(&mut h, "NLST a?b"), ["a*b", "axb"]);
    // A bracketed wildcard matches it literally.
    assert_eq!(listing_lines(&mut h, "NLST a[*]*"), ["a*b"]);
}

#[test]
fn issue_10_mlsd_never_globs() {
    let mut h = logged_in_with_glob_files();
    // RFC 3659 §2.2.2: "the pathname … is not a pattern"; MLSD of a
    // non-existent path is 550 and of a file 501, whatever it holds.
    h.pasv();
    h.reply("MLSD *", 550);
    h.reply("MLSD sub/*", 550);
    h.reply("MLST *.txt", 550);
    std::fs::create_dir(h.path("*")).unwrap();
    std::fs::write(h.path("*/lit"), b"l").unwrap();
    let text = listing_of(&mut h, "MLSD *");
    assert!(text.ends_with("; lit\r\n") && text.matches("\r\n").count() == 1, "{text}");
}

#[test]
fn issue_10_a_glob_over_a_directory_streamed_past_the_sort_cap_scans_a_bounded_slice() {
    let mut h = logged_in();
    // 16,384 skipped names is STAT's scan budget: past it STAT says it
    // was cut, as it does past 1,000 entries.
    make_entries(&h, "big", 16_400);
    std::fs::File::create(h.path("big").join("zz-match")).unwrap();
    let r = h.reply("STAT big/nomatch*", 213);
    assert_eq!(stat_lines(&r), [" ... more entries not shown; use LIST for the full listing"]);
    // A streamed directory cannot be filtered before the 150: no match is
    // an empty listing and 226, as vsftpd answers.
    assert!(listing_of(&mut h, "NLST big/nomatch*").is_empty());
    assert_eq!(listing_lines(&mut h, "NLST big/zz*"), ["big/zz-match"]);
    // In directory order: sort to compare.
    let mut names = list_names(&mut h, "LIST big/e0000?");
    names.sort();
    assert_eq!(names, (0..10).map(|i| format!("e0000{i}")).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// Drop boxes: the `w` permission and `--anonymous-upload-dir`

/// What one command line does: its single reply's code, or a transfer
/// that starts (`T`), whose listing text (for listings) is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Code(u16),
    T,
}

/// Run `line` (after `pre`, each of which must be `2xx`/`3xx`; after PASV
/// when `data`) on a fresh harness logged in as `alice` with `perm`.
/// Returns the outcome, the reply text or the listing text, and the
/// harness.
fn outcome(perm: Perm, pre: &[&str], line: &str, data: bool) -> (Out, String, Harness) {
    let mut h = logged_in_user(perm);
    for p in pre {
        let r = h.reply(p, if p.starts_with("REST") { 350 } else { 200 });
        assert!(r.code < 400);
    }
    if data {
        h.pasv();
    }
    match h.send(line) {
        Action::Transfer(mut req) => {
            let text = req.transfer.listing_text().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            h.expect(&[]);
            (Out::T, text, h)
        }
        a => {
            assert!(matches!(a, Action::None | Action::DropData), "{line}: {}", describe(&a));
            let mut r = h.take();
            assert_eq!(r.len(), 1, "{line}: {}", show(&r));
            let r = r.pop().unwrap();
            (Out::Code(r.code), r.all(), h)
        }
    }
}

/// One row of the table below: lines sent first, the line, whether it
/// needs PASV, the outcome for `r`, `rw` and `w`.
type Row = (&'static [&'static str], &'static str, bool, Out, Out, Out);

/// The table of commands × permission (`r`, `rw`, `w`): every command
/// that touches the filesystem, what each permission gets, on the fixture
/// tree (`hello.txt`, `sub/inner.txt`, `empty/`). `T`: the transfer
/// starts. Each cell runs on a fresh tree.
#[test]
fn drop_box_command_table_for_r_rw_and_w() {
    use Out::{Code as C, T};
    #[rustfmt::skip]
    let table: &[Row] = &[
        // pre, line, needs PASV, r, rw, w
        (&[], "CWD sub", false, C(250), C(250), C(250)),
        (&[], "CDUP", false, C(250), C(250), C(250)),
        (&[], "PWD", false, C(257), C(257), C(257)),
        (&[], "TYPE I", false, C(200), C(200), C(200)),
        (&[], "NOOP", false, C(200), C(200), C(200)),
        (&[], "STAT", false, C(211), C(211), C(211)),
        (&[], "MKD newdir", false, C(550), C(257), C(257)),
        (&[], "MKD sub", false, C(550), C(550), C(550)),
        (&[], "RETR hello.txt", true, T, T, C(550)),
        (&[], "RETR missing.txt", true, C(550), C(550), C(550)),
        (&[], "SIZE hello.txt", false, C(213), C(213), C(550)),
        (&[], "MDTM hello.txt", false, C(213), C(213), C(550)),
        (&[], "MLST hello.txt", false, C(250), C(250), C(550)),
        (&[], "MLST", false, C(250), C(250), C(550)),
        (&[], "DELE hello.txt", false, C(550), C(250), C(550)),
        (&[], "RMD empty", false, C(550), C(250), C(550)),
        (&[], "RNFR hello.txt", false, C(550), C(350), C(550)),
        (&[], "MFMT 20200101000000 hello.txt", false, C(550), C(213), C(550)),
        (&[], "SITE CHMOD 600 hello.txt", false, C(550), C(200), C(550)),
        (&[], "APPE hello.txt", true, C(550), T, C(550)),
        (&[], "APPE new.txt", true, C(550), T, C(550)),
        (&[], "STOR hello.txt", true, C(550), T, C(553)),
        (&["REST 5"], "STOR hello.txt", true, C(550), T, C(550)),
        (&["REST 0"], "STOR new.txt", true, C(550), T, T),
        (&[], "STOR new.txt", true, C(550), T, T),
        (&[], "STOR sub/new.txt", true, C(550), T, T),
        (&[], "STOU", true, C(550), T, T),
        (&[], "LIST", true, T, T, T),
        (&[], "NLST", true, T, T, T),
        (&[], "MLSD", true, T, T, T),
        (&[], "LIST -la sub", true, T, T, T),
        (&[], "LIST hello.txt", true, T, T, C(550)),
        (&[], "LIST missing", true, C(550), C(550), C(550)),
        (&[], "NLST *.txt", true, T, T, C(550)),
        (&[], "MLSD hello.txt", true, C(501), C(501), C(550)),
        (&[], "STAT sub", false, C(213), C(213), C(213)),
        (&[], "STAT hello.txt", false, C(213), C(213), C(550)),
    ];
    for (pre, line, data, r, rw, w) in table {
        for (perm, want) in [(Perm::Read, r), (Perm::ReadWrite, rw), (Perm::Upload, w)] {
            let (got, text, h) = outcome(perm, pre, line, *data);
            assert_eq!(&got, want, "{perm:?} {pre:?} {line}: {text}");
            if perm == Perm::Upload {
                // Nothing a `w` user gets shows a name or a byte of a file.
                for secret in ["hello", "inner", "empty"] {
                    if !line.contains(secret) {
                        assert!(!text.contains(secret), "{line} revealed {secret:?}: {text}");
                    }
                }
                if let Out::Code(550) = got {
                    if *line != "MKD sub" && !line.contains("missing") {
                        assert!(text.contains("drop box"), "{line}: {text}");
                    }
                }
                assert_eq!(std::fs::read(h.path("hello.txt")).unwrap(), HELLO, "{line}");
                assert!(h.path("empty").is_dir() && h.path("sub/inner.txt").is_file(), "{line}");
            }
        }
    }
}

/// A refusal in a drop box comes before the filesystem is looked at: a
/// file and a missing name get the same reply, so no command tells them
/// apart (but STOR over a name, which must say the name is taken).
#[test]
fn drop_box_refusals_do_not_tell_a_file_from_a_missing_name() {
    for (line, data) in [
        ("RETR {}", true),
        ("SIZE {}", false),
        ("MDTM {}", false),
        ("MLST {}", false),
        ("DELE {}", false),
        ("RNFR {}", false),
        ("APPE {}", true),
        ("LIST {}", true),
        ("NLST {}", true),
        ("MLSD {}", true),
        ("STAT {}", false),
        ("MFMT 20200101000000 {}", false),
        ("SITE CHMOD 600 {}", false),
    ] {
        let (a, ta, _h) = outcome(Perm::Upload, &[], &line.replace("{}", "hello.txt"), data);
        let (b, tb, _h) = outcome(Perm::Upload, &[], &line.replace("{}", "missing.txt"), data);
        assert_eq!((a.clone(), ta.replace("hello.txt", "X")), (b, tb.replace("missing.txt", "X")), "{line}");
        assert_eq!(a, Out::Code(550), "{line}");
    }
}

#[test]
fn a_drop_box_listing_is_empty_and_226_and_stat_of_a_dir_shows_no_entry() {
    for line in ["LIST", "NLST", "MLSD", "LIST sub", "NLST sub", "MLSD sub", "LIST -la"] {
        let mut h = logged_in_user(Perm::Upload);
        let mut req = h.transfer(line, XferKind::List);
        assert_eq!(buffer_of(&mut req), b"", "{line}");
        h.transfer_started(false);
        h.transfer_finished(req.transfer.finish().map(|()| 0));
        h.expect(&[150, 226]);
    }
    let mut h = logged_in_user(Perm::Upload);
    let r = h.reply("STAT sub", 213);
    assert_eq!(r.lines.len(), 2, "{}", r.all());
}

#[test]
fn a_w_user_uploads_new_files_and_makes_directories() {
    let mut h = logged_in_user(Perm::Upload);
    h.reply("MKD cam1", 257);
    h.reply("CWD cam1", 250);
    let req = h.transfer("STOR pic.jpg", XferKind::Stor);
    h.transfer_started(false);
    h.transfer_finished(req.transfer.finish().map(|()| 0));
    h.expect(&[150, 226]);
    assert!(h.path("cam1/pic.jpg").is_file());
    // The same name again: 553, the delivered file untouched.
    std::fs::write(h.path("cam1/pic.jpg"), b"delivered").unwrap();
    h.pasv();
    let r = h.reply("STOR pic.jpg", 553);
    assert!(r.text().contains("drop box"), "{}", r.text());
    assert_eq!(std::fs::read(h.path("cam1/pic.jpg")).unwrap(), b"delivered");
    // STOU picks a new name instead.
    let req = h.transfer("STOU pic.jpg", XferKind::Stou);
    h.transfer_started(false);
    h.transfer_finished(req.transfer.finish().map(|()| 0));
    h.expect(&[150, 226]);
    assert!(h.path("cam1/pic.jpg.1").is_file());
    assert_eq!(std::fs::read(h.path("cam1/pic.jpg")).unwrap(), b"delivered");
}

/// Two uploads of one new name in a drop box: the first to complete wins,
/// the other's transfer ends `553` and leaves the winner's bytes.
#[test]
fn of_two_drop_box_uploads_racing_for_one_name_the_first_to_complete_wins() {
    let mut a = logged_in_user(Perm::Upload);
    let mut req_a = a.transfer("STOR race.bin", XferKind::Stor);
    // The second session, on the same tree.
    let vfs = Rc::new(Vfs::open_with(a.root(), Perm::Upload.rights()).unwrap());
    let mut upload_b = vfs.create_upload(&crate::vfs::VirtualPath::root().resolve(b"race.bin").unwrap()).unwrap();
    std::io::Write::write_all(&mut upload_b.file, b"B wins").unwrap();
    upload_b.commit().unwrap();
    if let crate::dtp::transfer::Transfer::Stor { upload, .. } = &mut req_a.transfer {
        std::io::Write::write_all(&mut upload.file, b"A loses").unwrap();
    }
    a.transfer_started(false);
    a.transfer_finished(req_a.transfer.finish().map(|()| 0));
    let r = a.expect(&[150, 553]);
    assert!(r[1].text().contains("drop box"), "{}", r[1].text());
    assert_eq!(std::fs::read(a.path("race.bin")).unwrap(), b"B wins");
    assert!(a.temp_files(".").is_empty());
}

/// `--anonymous-upload-dir /incoming`: anonymous is read-only outside it
/// and a drop box inside it.
fn anonymous_with_upload_dir() -> Harness {
    let mut h = unauth();
    std::fs::create_dir(h.path("incoming")).unwrap();
    std::fs::write(h.path("incoming/old.txt"), b"someone else's").unwrap();
    let dir = crate::vfs::VirtualPath::root().resolve(b"/incoming").unwrap();
    h.env.config.anonymous_upload_dir = Some(dir.clone());
    h.env.anonymous = Some(Rc::new(Vfs::open(h.root(), false).unwrap().with_upload_dir(&dir).unwrap()));
    send!(h, "USER anonymous");
    send!(h, "PASS x@y");
    expect!(h, 331, 230);
    h
}

#[test]
fn anonymous_upload_dir_is_a_drop_box_in_a_read_only_tree() {
    let mut h = anonymous_with_upload_dir();
    // Read-only outside.
    h.reply("MKD /newdir", 550);
    h.pasv();
    h.reply("STOR /new.txt", 550);
    h.pasv();
    h.reply("STOR /sub/new.txt", 550);
    h.reply("DELE /hello.txt", 550);
    let req = h.transfer("RETR /hello.txt", XferKind::Retr);
    drop(req);
    h.transfer_started(false);
    h.transfer_finished(Ok(0));
    h.expect(&[150, 226]);
    // The root's listing names the upload dir.
    let mut req = h.transfer("NLST /", XferKind::List);
    let names = String::from_utf8(buffer_of(&mut req)).unwrap();
    assert!(names.contains("incoming") && names.contains("hello.txt"), "{names}");
    h.transfer_started(false);
    h.transfer_finished(Ok(0));
    h.expect(&[150, 226]);
    // A drop box inside.
    h.reply("CWD /incoming", 250);
    let mut req = h.transfer("NLST", XferKind::List);
    assert_eq!(buffer_of(&mut req), b"");
    h.transfer_started(false);
    h.transfer_finished(Ok(0));
    h.expect(&[150, 226]);
    h.pasv();
    h.reply("RETR old.txt", 550);
    h.reply("SIZE old.txt", 550);
    h.reply("DELE old.txt", 550);
    h.reply("RNFR old.txt", 550);
    h.pasv();
    h.reply("STOR old.txt", 553);
    h.reply("MKD up", 257);
    let req = h.transfer("STOR up/new.txt", XferKind::Stor);
    h.transfer_started(false);
    h.transfer_finished(req.transfer.finish().map(|()| 0));
    h.expect(&[150, 226]);
    assert!(h.path("incoming/up/new.txt").is_file());
    h.reply("MKD /incoming", 550);
    h.pasv();
    h.reply("STOR /incoming", 550);
    // `..` leaves the drop box lexically, into the read-only tree.
    h.pasv();
    h.reply("STOR ../escaped.txt", 550);
    assert!(!h.path("escaped.txt").exists());
    assert_eq!(std::fs::read(h.path("incoming/old.txt")).unwrap(), b"someone else's");
}

/// A symbolic link inside the drop box that points elsewhere in the tree
/// is resolved inside the drop box (its own jail): it gives no write
/// access outside it, whether absolute or relative.
#[test]
fn a_symlink_in_the_upload_dir_gives_no_write_access_outside_it() {
    let mut h = anonymous_with_upload_dir();
    std::os::unix::fs::symlink("/sub", h.path("incoming/abs")).unwrap();
    std::os::unix::fs::symlink("../sub", h.path("incoming/rel")).unwrap();
    std::os::unix::fs::symlink("/hello.txt", h.path("incoming/file")).unwrap();
    for link in ["abs", "rel"] {
        h.pasv();
        h.reply(format!("STOR /incoming/{link}/x.txt"), 550);
        h.reply(format!("MKD /incoming/{link}/d"), 550);
        h.reply(format!("CWD /incoming/{link}"), 550);
    }
    // Over the link to a file outside: the name is taken (553), and the
    // file outside is untouched.
    h.pasv();
    h.reply("STOR /incoming/file", 553);
    assert_eq!(std::fs::read(h.path("hello.txt")).unwrap(), HELLO);
    assert_eq!(std::fs::read_dir(h.path("sub")).unwrap().count(), 1, "only inner.txt");
}

// Rate limits (issue 13): fixed at login, one bucket per RETR or upload

fn rate_of(req: &TransferRequest) -> Option<u64> {
    req.throttle.as_ref().map(|t| t.rate())
}

#[test]
fn an_anonymous_session_gets_the_anonymous_rates_where_set_and_listings_none() {
    let mut h = Harness::build(Opts { writable: true, ..Opts::default() }, |c| {
        c.max_download_rate = 1 << 20;
        c.max_upload_rate = 1 << 21;
        c.anonymous_max_upload_rate = Some(64 * 1024);
    });
    send!(h, "USER anonymous");
    send!(h, "PASS x@y");
    expect!(h, 331, 230);
    // Read at login: a configuration changed afterwards (a SIGHUP's) is
    // for the next sessions.
    h.env.config.max_download_rate = 0;
    let req = h.transfer("RETR hello.txt", XferKind::Retr);
    assert_eq!(rate_of(&req), Some(1 << 20));
    drop(req);
    h.transfer_started(false);
    h.transfer_finished(Ok(1));
    h.take();
    let req = h.transfer("STOR up", XferKind::Stor);
    assert_eq!(rate_of(&req), Some(64 * 1024));
    drop(req);
    h.transfer_started(false);
    h.transfer_finished(Ok(1));
    h.take();
    let req = h.transfer("LIST", XferKind::List);
    assert_eq!(rate_of(&req), None, "listings are not limited");
}

#[test]
fn a_users_own_rates_replace_the_servers_per_direction() {
    let mut h = Harness::build(Opts { has_users: true, ..Opts::default() }, |c| {
        c.max_download_rate = 1 << 20;
        c.max_upload_rate = 1 << 21;
        c.anonymous_max_download_rate = Some(4096);
    });
    send!(h, "USER alice");
    send!(h, "PASS right");
    h.take();
    let (mut grant, vfs) = h.grant("alice", Perm::ReadWrite);
    grant.options = crate::auth::UserOptions { download_rate: Some(0), upload_rate: None };
    h.login_checked(Ok((grant, vfs)));
    expect!(h, 230);
    let req = h.transfer("RETR hello.txt", XferKind::Retr);
    assert_eq!(rate_of(&req), None, "download-rate=0: unlimited");
    drop(req);
    h.transfer_started(false);
    h.transfer_finished(Ok(1));
    h.take();
    let req = h.transfer("APPE hello.txt", XferKind::Stor);
    assert_eq!(rate_of(&req), Some(1 << 21), "the server's upload rate");
}
