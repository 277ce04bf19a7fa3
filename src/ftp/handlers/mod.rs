//! One function per command, grouped by family, named after the verb
//! (Twisted's `ftp_RETR` → `transfer::retr`). Each handler's doc quotes the
//! RFC sentence it follows.
//!
//! Handlers see only the session, the argument bytes and the context; they
//! return an `Action` or a `CmdError`, which `ftp::error` turns into a reply.
//! The gate (login, arity, implemented) ran before them, in `Session::handle`.

pub mod dataconn;
pub mod fileops;
pub mod info;
pub mod login;
pub mod nav;
pub mod security;
pub mod transfer;

use super::error::CmdError;
use super::session::{Action, Ctx, Session};

/// The signature every handler has.
pub type Handler = fn(&mut Session, &[u8], &mut Ctx<'_>) -> Result<Action, CmdError>;
