//! AUTH, PBSZ, PROT, CCC: FTPS (RFC 4217, with RFC 2228's reply codes).
//!
//! These handlers only move `Session::protection` and say what the reactor
//! must do (`Action::StartTls`, `Action::EndTls`); the handshakes, records
//! and `close_notify` are the reactor's. The gate has already refused them
//! with `502` when no certificate is configured (`table::Offer::WithTls`).
//!
//! | command | state | reply |
//! | --- | --- | --- |
//! | AUTH TLS, TLS-C, SSL | plaintext, not logged in | `234`, `StartTls` |
//! | AUTH TLS-P | plaintext, not logged in | `234`, `StartTls`, PBSZ 0 and PROT P implied |
//! | AUTH other | plaintext, not logged in | `504` |
//! | AUTH | protected, cleared by CCC, or logged in | `503` |
//! | PBSZ n | plaintext (no AUTH) | `503` |
//! | PBSZ n (digits) | after AUTH | `200 PBSZ=0` |
//! | PBSZ x | after AUTH | `501` |
//! | PROT | before PBSZ | `503` |
//! | PROT C, P | after PBSZ | `200` |
//! | PROT S, E | after PBSZ | `536` |
//! | PROT other | after PBSZ | `504` |
//! | CCC | not logged in | `530` (the gate) |
//! | CCC | control not protected | `533` |
//! | CCC | `--tls-required` | `534` |
//! | CCC | protected | `200`, `EndTls` |

use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, DataProtection, Protection, Session, State};

/// AUTH — RFC 4217 §4: "AUTH TLS"; RFC 2228 §3: "If the server is willing
/// to accept the named security mechanism, and does not require any
/// security data, it must respond with reply code 234", and "If the server
/// does not understand the named security mechanism, it should respond with
/// reply code 504".
///
/// - `TLS`, `TLS-C` (draft-murray-auth-ftp-ssl) and `SSL`: `234`, data
///   clear until PBSZ and PROT P. `SSL` is a plain synonym, as Microsoft's
///   MS-FTPS ("There is no semantic difference between processing AUTH TLS
///   and AUTH SSL"), vsftpd and BS2000's server treat it: the legacy
///   clients that send it (old Python ftplib among them) send PBSZ and
///   PROT P themselves when they want protected data.
/// - `TLS-P`: `234` with PBSZ 0 and PROT P implied, the one mechanism
///   name whose meaning in the draft is "protect the data connections
///   too". A client that sends PBSZ and PROT anyway gets the same state,
///   and PROT C still turns protection off.
/// - Refused with `503` on a control connection already protected
///   (implicit FTPS, or a second AUTH), after CCC (the TLS session is not
///   started twice on one connection), and after login: RFC 2228 makes an
///   accepted AUTH demand a new USER/PASS, and RFC 4217 §4 lets the server
///   refuse instead; credentials already sent in clear are not made good
///   by encrypting what follows.
/// - A USER waiting for its PASS is forgotten (`InAuth` → `Unauth`): RFC
///   2228 §3 says an accepted AUTH requires the user to authenticate again,
///   and the name was sent in clear.
///
/// The session counts as protected as soon as `StartTls` is returned: the
/// reactor sends the `234` in plaintext, drops any input that followed the
/// AUTH line (CVE-2011-1575), and closes the connection if the handshake
/// fails, so no command is ever read in plaintext after this point.
pub fn auth(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if s.is_logged_in() {
        return Err(CmdError::BadSequence("AUTH must come before login."));
    }
    if s.protection != Protection::Plain {
        return Err(CmdError::BadSequence("TLS was already negotiated on this connection."));
    }
    let mechanism = arg.trim_ascii();
    let is = |name: &[u8]| mechanism.eq_ignore_ascii_case(name);
    let data = if is(b"TLS") || is(b"TLS-C") || is(b"SSL") {
        DataProtection::NoPbsz
    } else if is(b"TLS-P") {
        DataProtection::Private
    } else {
        return Err(CmdError::NotForParameter("Unknown AUTH mechanism; use AUTH TLS."));
    };
    if matches!(s.state, State::InAuth { .. }) {
        s.state = State::Unauth;
    }
    s.protection = Protection::Tls(data);
    reply::reply(ctx.out, ReplyCode::SecurityExchangeDone, "AUTH TLS ok; proceed with the TLS handshake.");
    Ok(Action::StartTls)
}

/// PBSZ — RFC 4217 §8: TLS is a streaming mechanism, so the buffer size is
/// meaningless, but "the PBSZ command must still be issued, but must have a
/// parameter of '0'"; whatever number the client sends, the reply names
/// the size in force, `200 PBSZ=0` (RFC 2228 §3: "PBSZ=number"). RFC 2228
/// §3: without a completed security data exchange, `503`; a parameter that
/// is not a number, `501`.
///
/// Accepted after CCC too (the TLS session was negotiated and PROT P data
/// connections still resume it), as ProFTPD does.
pub fn pbsz(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let Some(data) = s.protection.data() else {
        return Err(CmdError::BadSequence("PBSZ needs AUTH TLS first."));
    };
    let size = arg.trim_ascii();
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return Err(CmdError::Syntax("PBSZ takes a decimal number (0 for TLS)."));
    }
    if data == DataProtection::NoPbsz {
        s.set_data_protection(DataProtection::Clear);
    }
    reply::reply(ctx.out, ReplyCode::Ok, "PBSZ=0");
    Ok(Action::None)
}

/// PROT — RFC 4217 §9: "C - Clear" and "P - Private" are the levels TLS
/// provides; "S - Safe" and "E - Confidential" get `536` ("Requested PROT
/// level not supported by mechanism", RFC 2228); any other letter `504`.
/// RFC 2228 §3: "The PROT command must be preceded by a successful protection
/// buffer size negotiation", else `503` (and so also before AUTH).
///
/// PROT P takes effect on the next data connection
/// (`TransferRequest::protected`).
pub fn prot(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    match s.protection.data() {
        None => return Err(CmdError::BadSequence("PROT needs AUTH TLS and PBSZ first.")),
        Some(DataProtection::NoPbsz) => return Err(CmdError::BadSequence("PROT needs PBSZ first.")),
        Some(_) => {}
    }
    let (level, text) = match arg.trim_ascii() {
        [b'C' | b'c'] => (DataProtection::Clear, "PROT now Clear."),
        [b'P' | b'p'] => (DataProtection::Private, "PROT now Private."),
        [b'S' | b's' | b'E' | b'e'] => return Err(CmdError::ProtLevelNotSupported),
        _ => return Err(CmdError::NotForParameter("Unknown PROT level; use C or P.")),
    };
    s.set_data_protection(level);
    reply::reply(ctx.out, ReplyCode::Ok, text);
    Ok(Action::None)
}

/// CCC — RFC 4217 §6: "Clear Command Channel": after the `200` the TLS
/// session on the control connection is closed (`close_notify`) and the
/// commands that follow come in plaintext, so that NAT devices can read
/// PORT and PASV. Needs a login (the gate's `530`); on a control
/// connection that is not protected `533`; when TLS is required
/// (`--tls-required`) `534`, by policy.
///
/// The data connections' protection stays as it was set: PROT P data
/// connections remain TLS.
pub fn ccc(s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let Protection::Tls(data) = s.protection else {
        return Err(CmdError::ProtectionDenied("The control connection is not protected."));
    };
    if ctx.env.config.tls_required {
        return Err(CmdError::DeniedByPolicy("TLS is required on the control connection."));
    }
    s.protection = Protection::Cleared(data);
    reply::reply(ctx.out, ReplyCode::Ok, "CCC ok; the control connection continues in plaintext.");
    Ok(Action::EndTls)
}

impl Session {
    /// Set the data connections' protection, keeping the control
    /// connection's (no-op while `Plain`: PBSZ and PROT refuse first).
    fn set_data_protection(&mut self, data: DataProtection) {
        self.protection = match self.protection {
            Protection::Plain => Protection::Plain,
            Protection::Tls(_) => Protection::Tls(data),
            Protection::Cleared(_) => Protection::Cleared(data),
        };
    }
}
