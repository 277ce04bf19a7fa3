//! Errors of command handling and their replies, mapped in this one place
//! (Twisted's `FTPCmdError.response`).
//!
//! A `CmdError` is bad client input or a refused action — never a Rust error
//! that reaches the reactor. It is `Copy`, holds no heap data and carries its
//! reply text as `&'static str`.

use super::reply::{self, ReplyCode};
use crate::vfs::FsError;

/// Why a command was not carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdError {
    /// `530`: the command needs a login.
    NotLoggedIn,
    /// `503`: out of sequence (e.g. PASS before USER, RNTO without RNFR).
    BadSequence(&'static str),
    /// `501`: the argument is malformed or missing.
    Syntax(&'static str),
    /// `502`: recognised, not implemented.
    NotImplemented,
    /// `504`: not implemented for that parameter (TYPE E, MODE B, PORT to a
    /// foreign host, …).
    NotForParameter(&'static str),
    /// `425`: no data connection could be set up (or none was asked for).
    CantOpenData(&'static str),
    /// `522`: network protocol not supported (RFC 2428).
    ProtocolNotSupported(&'static str),
    /// `550` with our own text (a refusal that is not an errno).
    Refused(&'static str),
    /// A filesystem error; its code comes from `FsError::code`.
    Fs(FsError),
    /// `554`: REST beyond the end of the file (RFC 3659 §5.5: "554
    /// Requested action not taken: invalid REST parameter").
    InvalidRestart,
    /// `530`: USER or PASS on a plaintext control connection while TLS is
    /// required (`--tls-required`), for every user, anonymous included.
    LoginNeedsTls,
    /// `521`: a transfer under PROT C while TLS is required.
    DataNeedsProt,
    /// `533` (RFC 2228): the control connection's protection does not allow
    /// it (CCC on a connection that is not protected, RFC 4217 §6).
    ProtectionDenied(&'static str),
    /// `534` (RFC 2228): refused by the server's policy (CCC when TLS is
    /// required, RFC 4217 §6).
    DeniedByPolicy(&'static str),
    /// `536` (RFC 2228): PROT S or E, which TLS does not provide (RFC 4217 §9).
    ProtLevelNotSupported,
    /// `451`: a state that should be impossible; logged as a bug.
    Internal,
}

impl From<FsError> for CmdError {
    fn from(e: FsError) -> CmdError {
        CmdError::Fs(e)
    }
}

impl CmdError {
    /// The reply code.
    pub fn code(self) -> u16 {
        match self {
            CmdError::NotLoggedIn => 530,
            CmdError::BadSequence(_) => 503,
            CmdError::Syntax(_) => 501,
            CmdError::NotImplemented => 502,
            CmdError::NotForParameter(_) => 504,
            CmdError::CantOpenData(_) => 425,
            CmdError::ProtocolNotSupported(_) => 522,
            CmdError::Refused(_) => 550,
            CmdError::Fs(e) => e.code(),
            CmdError::InvalidRestart => 554,
            CmdError::LoginNeedsTls => ReplyCode::NotLoggedIn.number(),
            CmdError::DataNeedsProt => ReplyCode::DataProtectionRequired.number(),
            CmdError::ProtectionDenied(_) => ReplyCode::ProtectionDenied.number(),
            CmdError::DeniedByPolicy(_) => ReplyCode::DeniedByPolicy.number(),
            CmdError::ProtLevelNotSupported => ReplyCode::ProtLevelNotSupported.number(),
            CmdError::Internal => 451,
        }
    }

    /// The reply text.
    pub fn text(self) -> &'static str {
        match self {
            CmdError::NotLoggedIn => "Please login with USER and PASS.",
            CmdError::NotImplemented => "Command not implemented.",
            CmdError::Internal => "Local error in processing.",
            CmdError::InvalidRestart => "Invalid REST parameter: beyond the end of the file.",
            CmdError::Fs(e) => e.text(),
            CmdError::LoginNeedsTls => "TLS required: send AUTH TLS before USER.",
            CmdError::DataNeedsProt => "Data connection must be protected: send PROT P.",
            CmdError::ProtLevelNotSupported => "PROT S and E are not supported with TLS; use PROT C or P.",
            CmdError::BadSequence(t)
            | CmdError::Syntax(t)
            | CmdError::NotForParameter(t)
            | CmdError::CantOpenData(t)
            | CmdError::ProtocolNotSupported(t)
            | CmdError::ProtectionDenied(t)
            | CmdError::DeniedByPolicy(t)
            | CmdError::Refused(t) => t,
        }
    }

    /// Append the reply for this error.
    pub fn write(self, out: &mut Vec<u8>) {
        let code = self.code();
        out.extend_from_slice(&[
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
            b' ',
        ]);
        reply::push_text(out, self.text().as_bytes());
        reply::end(out);
    }
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_writes_one_line_with_its_code() {
        let cases = [
            (CmdError::NotLoggedIn, 530),
            (CmdError::BadSequence("x"), 503),
            (CmdError::Syntax("x"), 501),
            (CmdError::NotImplemented, 502),
            (CmdError::NotForParameter("x"), 504),
            (CmdError::CantOpenData("x"), 425),
            (CmdError::ProtocolNotSupported("x"), 522),
            (CmdError::Fs(FsError::NotFound), 550),
            (CmdError::Fs(FsError::NoSpace), 452),
            (CmdError::LoginNeedsTls, 530),
            (CmdError::DataNeedsProt, 521),
            (CmdError::ProtectionDenied("x"), 533),
            (CmdError::DeniedByPolicy("x"), 534),
            (CmdError::ProtLevelNotSupported, 536),
            (CmdError::Internal, 451),
        ];
        for (e, code) in cases {
            let mut out = Vec::new();
            e.write(&mut out);
            assert!(out.starts_with(format!("{code} ").as_bytes()), "{e:?}");
            assert!(out.ends_with(b"\r\n"));
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}
