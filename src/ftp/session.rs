//! The protocol interpreter (Twisted's `ftp.FTP`): one `Session` per control
//! connection, a state machine driven by command lines and by the outcomes
//! of work the reactor did for it.
//!
//! The PI is sans-IO: it takes a cleaned line and returns replies (appended
//! to `Ctx::out`) and an `Action` for the reactor — check a password on the
//! helper thread, open a passive listener, run a transfer, close. It never
//! touches a socket and never reads the clock; its tests drive it line by
//! line, as Twisted's do with a string transport.
//!
//! States, as in Twisted: `Unauth` → `InAuth` (after USER) → `Authed` ⇄
//! `Renaming` (after RNFR). Orthogonal to them, `Pending` says what the
//! reactor is doing for the session: while it is not `Nothing` the reactor
//! queues further command lines, so replies leave in command order; and
//! `Protection` says what TLS covers (RFC 4217): `Plain` → `Tls` (AUTH TLS,
//! or implicit FTPS from the start) → `Cleared` (CCC), each but `Plain`
//! carrying the data connections' `DataProtection` (PBSZ, PROT).
//!
//! # Invariants
//! - Every command line gets exactly one final reply (a 1xx is never final).
//! - `handle` is only called while `pending` is `Nothing`.
//! - An idle session at `/` owns no heap memory beyond its login record.
//! - `Protection` only moves forward: `Plain` → `Tls` → `Cleared`, never
//!   back (a second AUTH is `503`), and it leaves `Plain` only while TLS is
//!   configured.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::command::{self, ParseError, Verb};
use super::error::CmdError;
use super::reply::{self, ReplyCode};
use super::table::{self, Access, Arity};
use crate::auth::{Grant, Password};
use crate::config::Config;
use crate::dtp::transfer::{Transfer, TransferError};
use crate::vfs::{VirtualPath, Vfs};

/// Unknown commands tolerated before login; then the connection is closed
/// (vsftpd 3.0.4's defence against cross-protocol attacks such as ALPACA).
pub const MAX_UNKNOWN_BEFORE_LOGIN: u8 = 3;

/// What the whole server shares with every session (read-only).
pub struct Env {
    /// The configuration.
    pub config: Config,
    /// The anonymous users' filesystem, if anonymous login is allowed.
    pub anonymous: Option<Rc<Vfs>>,
    /// Whether a users file is loaded (otherwise only anonymous can log in).
    pub has_users: bool,
    /// The counters, shared by every reactor of the process: the PI counts
    /// commands, logins and upload temp files where they happen.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Env {
    /// True when a certificate is loaded: AUTH, PBSZ, PROT and CCC are
    /// offered (and FEAT lists them); otherwise they are `502`.
    pub fn tls_configured(&self) -> bool {
        self.config.tls_cert.is_some()
    }
}

/// Per-call context: where replies go, the shared environment, wall time.
pub struct Ctx<'a> {
    /// Replies are appended here; the reactor sends them.
    pub out: &'a mut Vec<u8>,
    /// The shared environment.
    pub env: &'a Env,
    /// Wall-clock time in Unix seconds (for listings), passed in.
    pub now_unix: i64,
}

/// A logged-in user.
pub struct Login {
    /// The user name (for logs).
    pub user: Box<str>,
    /// The user's jailed filesystem.
    pub vfs: Rc<Vfs>,
    /// Logged in as `anonymous`/`ftp` (for the transfer log).
    pub anonymous: bool,
    /// The transfer rates, fixed at login (`--max-*-rate`, the anonymous
    /// pair, the users file's options).
    pub rates: crate::dtp::throttle::Rates,
}

/// Authentication state (Twisted's UNAUTH / INAUTH / AUTHED / RENAMING).
pub enum State {
    /// Connected, nothing said.
    Unauth,
    /// USER given, PASS expected.
    InAuth {
        /// The name given by USER.
        user: Box<[u8]>,
    },
    /// Logged in.
    Authed(Login),
    /// Logged in, RNFR given, RNTO expected.
    Renaming(Login, VirtualPath),
}

/// What TLS covers on this session (RFC 4217). One byte: the variants
/// carry the data connections' protection, so no combination that cannot
/// happen can be written (PROT without AUTH, PROT P on a session that never
/// had TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// The control connection is plaintext and no AUTH was accepted: data
    /// connections are clear, PBSZ and PROT are `503`.
    Plain,
    /// The control connection is TLS (after `AUTH TLS`, or implicit FTPS
    /// from the first byte).
    Tls(DataProtection),
    /// TLS was negotiated, then CCC (RFC 4217 §6) returned the control
    /// connection to plaintext. The data connections keep the protection
    /// set before (a PROT P data connection still resumes the TLS session
    /// of the control connection), and PBSZ and PROT still work, as in
    /// ProFTPD; a second AUTH is `503`.
    Cleared(DataProtection),
}

/// The data connections' protection (RFC 4217 §8 PBSZ, §9 PROT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataProtection {
    /// No PBSZ yet: PROT is `503`; data connections are clear (RFC 4217
    /// §9: "the default protection level … is 'Clear'").
    NoPbsz,
    /// PBSZ given, PROT C: data connections in plaintext.
    Clear,
    /// PBSZ given, PROT P: data connections are TLS, resuming the control
    /// connection's session.
    Private,
}

impl Protection {
    /// The data connections' protection, if TLS was ever negotiated.
    pub fn data(self) -> Option<DataProtection> {
        match self {
            Protection::Plain => None,
            Protection::Tls(d) | Protection::Cleared(d) => Some(d),
        }
    }

    /// True if the next data connection is TLS (PROT P in force).
    pub fn is_data_private(self) -> bool {
        self.data() == Some(DataProtection::Private)
    }

    /// True if the control connection is TLS now.
    pub fn is_control_tls(self) -> bool {
        matches!(self, Protection::Tls(_))
    }
}

/// What the reactor is doing for the session; lines are queued meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Nothing: commands are handled as they come.
    Nothing,
    /// A password is being checked on the helper thread.
    Login,
    /// A failed login is being delayed.
    LoginDelay,
    /// A data transfer is being set up or running.
    Transfer(XferKind),
}

/// The kinds of transfer, for replies and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XferKind {
    /// RETR.
    Retr,
    /// STOR, APPE.
    Stor,
    /// STOU: the reply names the file chosen.
    Stou,
    /// LIST, NLST, MLSD.
    List,
}

/// How the next data connection is made (one-shot: reset after each transfer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    /// Neither PASV nor PORT given.
    None,
    /// The reactor holds a passive listener (or its accepted connection).
    Passive,
    /// Connect to this address (PORT/EPRT).
    Active(SocketAddr),
}

/// A transfer the session asks the reactor to run.
pub struct TransferRequest {
    /// The bytes to move.
    pub transfer: Transfer,
    /// What it is.
    pub kind: XferKind,
    /// The file (for the log).
    pub path: VirtualPath,
    /// TYPE A (for the transfer log).
    pub ascii: bool,
    /// PROT P (RFC 4217 §9): the data connection is TLS, and must resume
    /// the control connection's TLS session.
    pub protected: bool,
    /// What it counts as in `leanftpd_transfers_total` (its command: STOR
    /// and APPE are one `XferKind`, two kinds there).
    pub counted_as: crate::metrics::TransferKind,
    /// The token bucket of a rate-limited RETR or upload (`None`: not
    /// limited; listings never are). Boxed: 8 bytes in every request and
    /// every `Action`, one small allocation per limited transfer.
    pub throttle: Option<Box<crate::dtp::throttle::Throttle>>,
}

/// What the reactor must do after a command.
pub enum Action {
    /// Nothing beyond sending the replies.
    None,
    /// Send the replies, then close the control connection.
    Close,
    /// Check a password on the helper thread, then call `login_checked`.
    CheckLogin {
        /// The user name.
        user: Box<[u8]>,
        /// The password.
        password: Password,
    },
    /// Pause reading for this long, then call `delay_over`.
    Delay(Duration),
    /// Close any data connection, open a passive listener, then call
    /// `passive_opened` (RFC 2428 `EPSV` if `extended`).
    OpenPassive {
        /// EPSV rather than PASV.
        extended: bool,
    },
    /// Close any passive listener or idle data connection (PORT/EPRT given).
    DropData,
    /// Get the data connection (`DataMode`), call `transfer_started`, move
    /// the bytes, close the data connection, call `transfer_finished`.
    Transfer(TransferRequest),
    /// AUTH TLS accepted (`234` is in the replies): send the replies in
    /// plaintext, discard whatever input was queued after the AUTH line
    /// (never run plaintext that arrived before the handshake:
    /// CVE-2011-1575), then run the TLS handshake on the control connection.
    StartTls,
    /// CCC accepted (`200` is in the replies): send them under TLS, then
    /// `close_notify`, and go on in plaintext (RFC 4217 §6).
    EndTls,
}

/// Which timeout applies to the control connection now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Not logged in: the login timeout.
    Login,
    /// Logged in and idle: the idle timeout.
    Idle,
    /// Something is pending: its own timer runs instead.
    None,
}

/// The protocol interpreter of one control connection.
pub struct Session {
    pub(in crate::ftp) state: State,
    pub(in crate::ftp) pending: Pending,
    pub(in crate::ftp) cwd: VirtualPath,
    pub(in crate::ftp) ascii: bool,
    pub(in crate::ftp) data: DataMode,
    pub(in crate::ftp) epsv_all: bool,
    pub(in crate::ftp) failed_logins: u32,
    pub(in crate::ftp) unknown_before_login: u8,
    /// REST offset for the next RETR/STOR (RFC 3659 §5).
    pub(in crate::ftp) rest: u64,
    /// MLST/MLSD facts chosen with OPTS MLST (bits of `vfs::listing::Fact`).
    pub(in crate::ftp) mlst_facts: u8,
    /// What TLS covers (RFC 4217).
    pub(in crate::ftp) protection: Protection,
    /// The file of the transfer in progress (STOU's reply, STAT).
    pub(in crate::ftp) transfer_path: VirtualPath,
    pub(in crate::ftp) peer: SocketAddr,
    /// Our address on the control connection (PASV's reply, EPRT's
    /// family): the port is never needed, so 17 bytes instead of a
    /// `SocketAddr`'s 32 in every session.
    pub(in crate::ftp) local: IpAddr,
}

impl Session {
    /// A new session for a connection from `peer` to our `local` address.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Session {
        Session {
            state: State::Unauth,
            pending: Pending::Nothing,
            cwd: VirtualPath::root(),
            ascii: false,
            data: DataMode::None,
            epsv_all: false,
            failed_logins: 0,
            unknown_before_login: 0,
            rest: 0,
            mlst_facts: crate::vfs::listing::DEFAULT_FACTS,
            protection: Protection::Plain,
            transfer_path: VirtualPath::root(),
            peer: canonical(peer),
            local: canonical(local).ip(),
        }
    }

    /// An implicit FTPS connection (`--implicit-tls-listen`): TLS from the
    /// first byte, so the session starts protected, as after `AUTH TLS`.
    /// The reactor calls it once the connection is accepted, before the
    /// greeting.
    ///
    /// PBSZ 0 and PROT P are implied: implicit FTPS has no RFC, and
    /// Microsoft's MS-FTPS ("Control Connection Negotiation with Implicit
    /// FTPS") says the client "MUST NOT send PBSZ 0 and PROT P" and "MUST
    /// assume that the server successfully processed" them, as IIS and
    /// FileZilla Server do. Clients that send them anyway (curl, lftp) get
    /// `200` and the same state; `PROT C` still turns data protection off.
    pub fn set_implicit_tls(&mut self) {
        debug_assert_eq!(self.protection, Protection::Plain, "set once, before the greeting");
        debug_assert!(matches!(self.state, State::Unauth));
        self.protection = Protection::Tls(DataProtection::Private);
    }

    /// The `220` greeting. It names no version (nothing to look up in a CVE list).
    pub fn greeting(&self, out: &mut Vec<u8>) {
        reply::reply(out, ReplyCode::Ready, "leanftpd ready.");
    }

    /// Handle one cleaned command line.
    pub fn handle(&mut self, line: &[u8], ctx: &mut Ctx<'_>) -> Action {
        debug_assert_eq!(self.pending, Pending::Nothing, "lines are queued while pending");
        if self.pending != Pending::Nothing {
            CmdError::Internal.write(ctx.out);
            return Action::None;
        }
        let parsed = command::parse(line);
        ctx.env.metrics.command(parsed.as_ref().ok().map(|c| c.verb));
        // RFC 959 §4.1.3: RNFR "must be immediately followed by" RNTO; any
        // other line, even one refused below, ends the pending rename.
        if !matches!(parsed, Ok(c) if c.verb == Verb::Rnto) {
            self.end_rename();
        }
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(ParseError::Http) => {
                reply::reply(ctx.out, ReplyCode::Unrecognized, "This is an FTP server, not an HTTP server.");
                return Action::Close;
            }
            Err(ParseError::Empty | ParseError::Unknown) => {
                reply::reply(ctx.out, ReplyCode::Unrecognized, "Unknown command.");
                if !self.is_logged_in() {
                    self.unknown_before_login += 1;
                    if self.unknown_before_login >= MAX_UNKNOWN_BEFORE_LOGIN {
                        reply::reply(ctx.out, ReplyCode::NotAvailable, "Too many unknown commands; closing.");
                        return Action::Close;
                    }
                }
                return Action::None;
            }
        };
        let spec = table::spec(cmd.verb);
        // A command this server does not offer is `502` whoever asks (CCC
        // without a certificate, REIN): logging in would not change it.
        let Some(handler) = spec.handler.filter(|_| spec.is_offered(ctx.env)) else {
            CmdError::NotImplemented.write(ctx.out);
            return Action::None;
        };
        if spec.access == Access::LoggedIn && !self.is_logged_in() {
            CmdError::NotLoggedIn.write(ctx.out);
            return Action::None;
        }
        if spec.arity == Arity::Required && cmd.arg.is_empty() {
            CmdError::Syntax("Syntax error: this command needs an argument.").write(ctx.out);
            return Action::None;
        }
        match handler(self, cmd.arg, ctx) {
            Ok(Action::Transfer(mut req)) => {
                req.counted_as = crate::metrics::TransferKind::of(cmd.verb);
                req.transfer.count_temp_file(&ctx.env.metrics);
                Action::Transfer(req)
            }
            Ok(action) => action,
            Err(e) => {
                e.write(ctx.out);
                Action::None
            }
        }
    }

    /// The helper thread's verdict on a password (`Err(())` = refused), with
    /// the user's filesystem already opened by the reactor.
    pub fn login_checked(&mut self, result: Result<(Grant, Rc<Vfs>), ()>, ctx: &mut Ctx<'_>) -> Action {
        debug_assert_eq!(self.pending, Pending::Login);
        self.pending = Pending::Nothing;
        match result {
            Ok((grant, vfs)) => {
                let rates = crate::dtp::throttle::Rates::user(&ctx.env.config, &grant.options);
                self.state = State::Authed(Login { user: grant.name, vfs, anonymous: false, rates });
                self.cwd = VirtualPath::root();
                ctx.env.metrics.login(true);
                reply::reply(ctx.out, ReplyCode::LoggedIn, "Login successful.");
                Action::None
            }
            Err(()) => self.login_failed(ctx),
        }
    }

    /// A failed login: delay the `530` (longer after each failure), never
    /// answer at once, so that guessing is slow.
    pub(in crate::ftp) fn login_failed(&mut self, ctx: &mut Ctx<'_>) -> Action {
        self.state = State::Unauth;
        self.failed_logins = self.failed_logins.saturating_add(1);
        ctx.env.metrics.login(false);
        let base = ctx.env.config.login_fail_delay;
        let delay = base.saturating_mul(1u32 << (self.failed_logins - 1).min(5));
        if delay.is_zero() {
            return self.delay_over(ctx);
        }
        self.pending = Pending::LoginDelay;
        Action::Delay(delay)
    }

    /// The failed-login delay has passed: answer `530`, and close after too many.
    pub fn delay_over(&mut self, ctx: &mut Ctx<'_>) -> Action {
        self.pending = Pending::Nothing;
        reply::reply(ctx.out, ReplyCode::NotLoggedIn, "Login incorrect.");
        if self.failed_logins >= ctx.env.config.max_login_fails {
            reply::reply(ctx.out, ReplyCode::NotAvailable, "Too many failed logins; closing.");
            return Action::Close;
        }
        Action::None
    }

    /// The reactor's answer to `Action::OpenPassive`.
    pub fn passive_opened(&mut self, result: std::io::Result<SocketAddr>, extended: bool, ctx: &mut Ctx<'_>) {
        let addr = match result {
            Ok(addr) => addr,
            Err(_) => {
                self.data = DataMode::None;
                CmdError::CantOpenData("Can't open passive connection.").write(ctx.out);
                return;
            }
        };
        self.data = DataMode::Passive;
        let port = addr.port();
        if extended {
            // RFC 2428 §3: "229 Entering Extended Passive Mode (|||port|)".
            reply::begin(ctx.out, ReplyCode::ExtendedPassive);
            ctx.out.extend_from_slice(b"Entering Extended Passive Mode (|||");
            reply::push_num(ctx.out, u64::from(port));
            ctx.out.extend_from_slice(b"|).");
            reply::end(ctx.out);
            return;
        }
        let ip = match ctx.env.config.passive_address.unwrap_or(self.local) {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        };
        let o = ip.octets();
        reply::begin(ctx.out, ReplyCode::Passive);
        ctx.out.extend_from_slice(b"Entering Passive Mode (");
        for n in [o[0], o[1], o[2], o[3], (port >> 8) as u8] {
            reply::push_num(ctx.out, u64::from(n));
            ctx.out.push(b',');
        }
        reply::push_num(ctx.out, u64::from(port & 0xFF));
        ctx.out.extend_from_slice(b").");
        reply::end(ctx.out);
    }

    /// The data connection is up and the transfer begins: `150`, or `125`
    /// if the connection was already open (RFC 959 §4.2).
    pub fn transfer_started(&mut self, already_open: bool, ctx: &mut Ctx<'_>) {
        let mode = if self.ascii { "ASCII" } else { "BINARY" };
        let what = match self.pending {
            Pending::Transfer(XferKind::List) => "Here comes the directory listing.",
            Pending::Transfer(XferKind::Stor) => "Ok to send data.",
            Pending::Transfer(XferKind::Stou) => {
                // RFC 1123 §4.1.2.9: "150 FILE: pppp".
                reply::begin(ctx.out, ReplyCode::AboutToOpenData);
                ctx.out.extend_from_slice(b"FILE: ");
                reply::push_text(ctx.out, self.transfer_path.file_name().unwrap_or(b""));
                reply::end(ctx.out);
                return;
            }
            _ => "Opening data connection.",
        };
        if already_open {
            reply::begin(ctx.out, ReplyCode::DataOpenStarting);
        } else {
            reply::begin(ctx.out, ReplyCode::AboutToOpenData);
        }
        ctx.out.extend_from_slice(mode.as_bytes());
        ctx.out.extend_from_slice(b" mode. ");
        ctx.out.extend_from_slice(what.as_bytes());
        reply::end(ctx.out);
    }

    /// The transfer ended and its data connection is closed: `226` or the
    /// failure's code. The data mode is one-shot and resets.
    pub fn transfer_finished(&mut self, result: Result<u64, TransferError>, ctx: &mut Ctx<'_>) {
        debug_assert!(matches!(self.pending, Pending::Transfer(_)));
        self.pending = Pending::Nothing;
        self.data = DataMode::None;
        self.transfer_path = VirtualPath::root();
        match result {
            Ok(_) => reply::reply(ctx.out, ReplyCode::TransferComplete, "Transfer complete."),
            Err(TransferError::CantOpen) => reply::reply(ctx.out, ReplyCode::CantOpenData, "Can't open data connection."),
            Err(TransferError::ConnectionLost) => {
                reply::reply(ctx.out, ReplyCode::TransferAborted, "Connection closed; transfer aborted.")
            }
            Err(TransferError::Stalled) => {
                reply::reply(ctx.out, ReplyCode::TransferAborted, "Transfer stalled; connection closed.")
            }
            Err(TransferError::Aborted) => reply::reply(ctx.out, ReplyCode::TransferAborted, "Transfer aborted."),
            Err(TransferError::FileShrank) => {
                reply::reply(ctx.out, ReplyCode::LocalError, "File changed during the transfer; not all of it was sent.")
            }
            Err(TransferError::Local(e)) => CmdError::Fs(e).write(ctx.out),
            Err(TransferError::TlsRefused) => reply::reply(
                ctx.out,
                ReplyCode::ProtocolNotSupported,
                "TLS data connection refused: it must resume the control connection's TLS session.",
            ),
            Err(TransferError::TlsTruncated) => reply::reply(
                ctx.out,
                ReplyCode::TransferAborted,
                "TLS data connection ended without close_notify; transfer aborted.",
            ),
        }
    }

    /// A command line that arrived while a transfer is pending or running
    /// and must not wait for it (RFC 959 §4.1.3: ABOR and STAT are the
    /// commands a client sends during a transfer). Returns `true` if the
    /// reactor must abort the transfer (and then call `aborted`).
    pub fn handle_urgent(&mut self, verb: Verb, progress: u64, ctx: &mut Ctx<'_>) -> bool {
        ctx.env.metrics.command(Some(verb));
        match verb {
            Verb::Abor => true,
            Verb::Stat => {
                self.write_status(Some(progress), ctx.env, ctx.out);
                false
            }
            _ => false,
        }
    }

    /// The transfer was aborted by ABOR (its `426` is sent): `226`.
    pub fn aborted(&mut self, ctx: &mut Ctx<'_>) {
        // The ABOR line itself, which the reactor took out of the queue.
        ctx.env.metrics.command(Some(Verb::Abor));
        reply::reply(ctx.out, ReplyCode::TransferComplete, "ABOR successful.");
    }

    /// STAT without argument (RFC 959 §4.1.3): `211` multi-line status,
    /// with the transfer's progress if one runs.
    pub(in crate::ftp) fn write_status(&self, progress: Option<u64>, env: &Env, out: &mut Vec<u8>) {
        use std::io::Write;
        reply::begin_multi(out, ReplyCode::SystemStatus);
        out.extend_from_slice(b"leanftpd status:");
        reply::end(out);
        let _ = write!(out, " Connected to {}\r\n", self.peer.ip());
        out.extend_from_slice(b" Logged in as ");
        reply::push_text(out, self.user().as_bytes());
        reply::end(out);
        let _ = write!(out, " TYPE: {}, STRUcture: File, MODE: Stream\r\n", if self.ascii { "ASCII" } else { "BINARY" });
        if env.tls_configured() {
            let control = match self.protection {
                Protection::Plain => "plaintext",
                Protection::Tls(_) => "TLS",
                Protection::Cleared(_) => "plaintext (cleared by CCC)",
            };
            let data = if self.protection.is_data_private() { "P" } else { "C" };
            let _ = write!(out, " Control connection: {control}; data connections: PROT {data}\r\n");
        }
        let _ = write!(out, " Session timeout in seconds is {}\r\n", env.config.idle_timeout.as_secs());
        match (progress, self.pending) {
            (Some(bytes), Pending::Transfer(kind)) => {
                let _ = write!(out, " {:?} of ", kind);
                reply::push_text(out, self.transfer_path.as_bytes());
                let _ = write!(out, " in progress: {bytes} bytes transferred\r\n");
            }
            _ => out.extend_from_slice(b" No data transfer in progress\r\n"),
        }
        reply::reply(out, ReplyCode::SystemStatus, "End of status.");
    }

    /// The control timer fired (login or idle timeout): `421` and close.
    pub fn timed_out(&mut self, ctx: &mut Ctx<'_>) -> Action {
        let text = if self.is_logged_in() { "Idle timeout; closing control connection." } else { "Login timeout; closing control connection." };
        reply::reply(ctx.out, ReplyCode::NotAvailable, text);
        Action::Close
    }

    /// The server is shutting down: `421`.
    pub fn shutting_down(&mut self, out: &mut Vec<u8>) {
        reply::reply(out, ReplyCode::NotAvailable, "Server shutting down.");
    }

    /// What the reactor is doing for us.
    pub fn pending(&self) -> Pending {
        self.pending
    }

    /// True if lines must be queued rather than handled.
    pub fn is_busy(&self) -> bool {
        self.pending != Pending::Nothing
    }

    /// Which control timeout applies now.
    pub fn deadline(&self) -> Deadline {
        match (self.pending, self.is_logged_in()) {
            (Pending::Nothing, true) => Deadline::Idle,
            (Pending::Nothing, false) => Deadline::Login,
            _ => Deadline::None,
        }
    }

    /// How the next data connection is to be made.
    pub fn data_mode(&self) -> DataMode {
        self.data
    }

    /// True once logged in.
    pub fn is_logged_in(&self) -> bool {
        matches!(self.state, State::Authed(_) | State::Renaming(..))
    }

    /// The logged-in user's name, or "-" (for logs).
    pub fn user(&self) -> &str {
        match &self.state {
            State::Authed(l) | State::Renaming(l, _) => &l.user,
            _ => "-",
        }
    }

    /// True if logged in anonymously.
    pub fn is_anonymous(&self) -> bool {
        matches!(&self.state, State::Authed(l) | State::Renaming(l, _) if l.anonymous)
    }

    /// What TLS covers now (for the reactor's logs and checks; the
    /// reactor learns of changes through `Action::StartTls`/`EndTls` and
    /// `TransferRequest::protected`).
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// The client's address (IPv4-mapped addresses shown as IPv4).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Our address on the control connection.
    pub fn local_ip(&self) -> IpAddr {
        self.local
    }

    /// The current login, or `Internal` (the gate makes that impossible).
    pub(in crate::ftp) fn login(&self) -> Result<&Login, CmdError> {
        match &self.state {
            State::Authed(l) | State::Renaming(l, _) => Ok(l),
            _ => Err(CmdError::Internal),
        }
    }

    /// Leave `Renaming` for `Authed`, dropping the RNFR path.
    pub(in crate::ftp) fn end_rename(&mut self) {
        if let State::Renaming(..) = self.state {
            if let State::Renaming(login, _) = std::mem::replace(&mut self.state, State::Unauth) {
                self.state = State::Authed(login);
            }
        }
    }

    /// Check that a data connection was asked for, then hand the transfer
    /// to the reactor.
    pub(in crate::ftp) fn start_transfer(&mut self, kind: XferKind, transfer: Transfer, path: VirtualPath) -> Action {
        debug_assert!(self.data != DataMode::None, "checked by require_data first");
        self.pending = Pending::Transfer(kind);
        self.transfer_path = path.clone();
        let protected = self.protection.is_data_private();
        // The command's own kind is set by `handle`, which knows the verb.
        let counted_as = match kind {
            XferKind::Retr => crate::metrics::TransferKind::Retr,
            XferKind::Stor => crate::metrics::TransferKind::Stor,
            XferKind::Stou => crate::metrics::TransferKind::Stou,
            XferKind::List => crate::metrics::TransferKind::List,
        };
        let throttle = match (kind, self.login()) {
            (XferKind::List, _) | (_, Err(_)) => None,
            (_, Ok(login)) => login.rates.throttle(transfer.is_upload()).map(Box::new),
        };
        Action::Transfer(TransferRequest { transfer, kind, path, ascii: self.ascii, protected, counted_as, throttle })
    }

    /// Checked by every transfer command before any file is opened, so that
    /// a refused transfer has no side effect:
    /// - `521` under PROT C when TLS is required (`--tls-required`): the
    ///   data connection must be protected (the PASV/PORT given stays, so
    ///   `PROT P` and the same command again work);
    /// - `425` unless PASV/EPSV/PORT/EPRT came first.
    pub(in crate::ftp) fn require_data(&self, env: &Env) -> Result<(), CmdError> {
        if env.config.tls_required && !self.protection.is_data_private() {
            return Err(CmdError::DataNeedsProt);
        }
        match self.data {
            DataMode::None => Err(CmdError::CantOpenData("Use PORT, EPRT, PASV or EPSV first.")),
            _ => Ok(()),
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) as plain IPv4, so
/// that address comparisons and PASV replies work.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}
