//! Reply codes and the writing of replies into the reactor's output buffer.
//!
//! Owns the wire format of replies (RFC 959 §4.2): `code SP text CRLF`, and
//! multi-line replies `code-first line` … `code last line`. It never touches a
//! socket: replies are appended to a `Vec<u8>` the reactor owns and flushes.
//!
//! # Invariants
//! - No reply line ever contains a CR or LF that came from a name: `push_text`
//!   maps them to NUL (as vsftpd does, after RFC 959's convention that NUL
//!   stands for LF in a pathname) and doubles Telnet IAC (0xFF).
//! - Appending never allocates once the buffer has grown to its working size.

use std::io::Write;

/// The reply codes leanftpd sends, named by meaning (RFC 959 §4.2.2 unless noted).
#[allow(missing_docs)]
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyCode {
    /// 125 Data connection already open; transfer starting.
    DataOpenStarting = 125,
    /// 150 File status okay; about to open data connection.
    AboutToOpenData = 150,
    /// 200 Command okay.
    Ok = 200,
    /// 202 Command not implemented, superfluous at this site.
    Superfluous = 202,
    /// 211 System status, or system help reply (FEAT, RFC 2389).
    SystemStatus = 211,
    /// 213 File status (SIZE, MDTM: RFC 3659).
    FileStatus = 213,
    /// 214 Help message.
    Help = 214,
    /// 215 NAME system type.
    SystemType = 215,
    /// 220 Service ready for new user.
    Ready = 220,
    /// 221 Service closing control connection.
    Closing = 221,
    /// 225 Data connection open; no transfer in progress.
    DataOpenIdle = 225,
    /// 226 Closing data connection; requested file action successful.
    TransferComplete = 226,
    /// 227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).
    Passive = 227,
    /// 229 Entering Extended Passive Mode (|||port|) (RFC 2428).
    ExtendedPassive = 229,
    /// 230 User logged in, proceed.
    LoggedIn = 230,
    /// 234 Security data exchange complete (RFC 2228 §4; AUTH TLS, RFC 4217 §4).
    SecurityExchangeDone = 234,
    /// 250 Requested file action okay, completed.
    FileActionOk = 250,
    /// 257 "PATHNAME" created.
    PathCreated = 257,
    /// 331 User name okay, need password.
    NeedPassword = 331,
    /// 350 Requested file action pending further information.
    PendingInfo = 350,
    /// 421 Service not available, closing control connection.
    NotAvailable = 421,
    /// 425 Can't open data connection.
    CantOpenData = 425,
    /// 426 Connection closed; transfer aborted.
    TransferAborted = 426,
    /// 450 Requested file action not taken; file unavailable (busy).
    FileBusy = 450,
    /// 451 Requested action aborted: local error in processing.
    LocalError = 451,
    /// 452 Requested action not taken. Insufficient storage space in system.
    NoSpace = 452,
    /// 500 Syntax error, command unrecognized.
    Unrecognized = 500,
    /// 501 Syntax error in parameters or arguments.
    BadArguments = 501,
    /// 502 Command not implemented.
    NotImplemented = 502,
    /// 503 Bad sequence of commands.
    BadSequence = 503,
    /// 504 Command not implemented for that parameter.
    NotImplementedForParam = 504,
    /// 521 Data connection cannot be opened with this PROT setting: not in
    /// RFC 2228 or 4217, but what vsftpd and ProFTPD send (and issue 11
    /// asks for) when data connections must be protected.
    DataProtectionRequired = 521,
    /// 522 Network protocol not supported (RFC 2428).
    ProtocolNotSupported = 522,
    /// 530 Not logged in.
    NotLoggedIn = 530,
    /// 533 Command protection level denied for policy reasons (RFC 2228
    /// §4; CCC on a control connection that is not protected, RFC 4217 §6).
    ProtectionDenied = 533,
    /// 534 Request denied for policy reasons (RFC 2228 §4; CCC when TLS is
    /// required, RFC 4217 §6).
    DeniedByPolicy = 534,
    /// 536 Requested PROT level not supported by mechanism (RFC 2228 §4;
    /// PROT S and E under TLS, RFC 4217 §9).
    ProtLevelNotSupported = 536,
    /// 550 Requested action not taken; file unavailable.
    FileUnavailable = 550,
    /// 552 Requested file action aborted. Exceeded storage allocation.
    StorageExceeded = 552,
    /// 553 Requested action not taken. File name not allowed.
    NameNotAllowed = 553,
}

impl ReplyCode {
    /// The number on the wire.
    pub fn number(self) -> u16 {
        self as u16
    }
}

/// Append a three-digit code (no allocation, no formatting machinery).
fn push_code(out: &mut Vec<u8>, code: u16) {
    debug_assert!((100..1000).contains(&code));
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
}

/// Append client- or disk-supplied bytes to a reply line, making them safe:
/// CR and LF become NUL, IAC is doubled.
pub fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        match b {
            b'\r' | b'\n' => out.push(0),
            0xFF => out.extend_from_slice(&[0xFF, 0xFF]),
            _ => out.push(b),
        }
    }
}

/// Append a pathname in double quotes with embedded `"` doubled (RFC 959
/// Appendix II), made safe by `push_text`.
pub fn push_quoted_path(out: &mut Vec<u8>, path: &[u8]) {
    out.push(b'"');
    for chunk in path.split_inclusive(|&b| b == b'"') {
        push_text(out, chunk);
        if chunk.last() == Some(&b'"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// `code SP text CRLF`.
pub fn reply(out: &mut Vec<u8>, code: ReplyCode, text: &str) {
    push_code(out, code.number());
    out.push(b' ');
    push_text(out, text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `code SP` — the start of a single-line reply built piece by piece; finish
/// it with `end`.
pub fn begin(out: &mut Vec<u8>, code: ReplyCode) {
    push_code(out, code.number());
    out.push(b' ');
}

/// `code-` — the first line of a multi-line reply; finish its text with `end`.
pub fn begin_multi(out: &mut Vec<u8>, code: ReplyCode) {
    push_code(out, code.number());
    out.push(b'-');
}

/// A continuation line of a multi-line reply: starts with a space so that it
/// can never be mistaken for the final `code SP` line (RFC 959 §4.2).
pub fn continuation(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b' ');
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// End the current line.
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Append a number in decimal.
pub fn push_num(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_reply_is_code_space_text_crlf() {
        let mut out = Vec::new();
        reply(&mut out, ReplyCode::Ok, "NOOP ok.");
        assert_eq!(out, b"200 NOOP ok.\r\n");
    }

    #[test]
    fn multi_line_reply_frames_with_dash_and_space() {
        let mut out = Vec::new();
        begin_multi(&mut out, ReplyCode::SystemStatus);
        out.extend_from_slice(b"Features:");
        end(&mut out);
        continuation(&mut out, b"UTF8");
        reply(&mut out, ReplyCode::SystemStatus, "End");
        assert_eq!(out, b"211-Features:\r\n UTF8\r\n211 End\r\n");
    }

    #[test]
    fn quoted_path_doubles_embedded_quotes() {
        let mut out = Vec::new();
        push_quoted_path(&mut out, b"/a\"b\"");
        assert_eq!(out, b"\"/a\"\"b\"\"\"");
    }

    #[test]
    fn cr_and_lf_from_a_name_never_reach_the_wire() {
        let mut out = Vec::new();
        push_quoted_path(&mut out, b"/x\r\n230 fake");
        assert!(!out.contains(&b'\r') && !out.contains(&b'\n'));
    }

    #[test]
    fn iac_in_a_name_is_doubled() {
        let mut out = Vec::new();
        push_text(&mut out, &[b'a', 0xFF]);
        assert_eq!(out, [b'a', 0xFF, 0xFF]);
    }
}
