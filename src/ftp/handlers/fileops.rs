//! MKD (XMKD), RMD (XRMD), DELE, RNFR, RNTO, SIZE, MDTM.

use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Session, State};
use crate::vfs::{listing, Kind};

/// MKD — RFC 959 §4.1.3 and Appendix II: `257 "PATHNAME" created`, the
/// absolute path with embedded quotes doubled.
pub fn mkd(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    s.login()?.vfs.mkdir(&path)?;
    reply::begin(ctx.out, ReplyCode::PathCreated);
    reply::push_quoted_path(ctx.out, path.as_bytes());
    ctx.out.extend_from_slice(b" created.");
    reply::end(ctx.out);
    Ok(Action::None)
}

/// RMD — RFC 959 §4.1.3: "causes the directory specified in the pathname to
/// be removed". Only an empty directory (`550` otherwise).
pub fn rmd(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    s.login()?.vfs.rmdir(&path)?;
    reply::reply(ctx.out, ReplyCode::FileActionOk, "Directory removed.");
    Ok(Action::None)
}

/// DELE — RFC 959 §4.1.3: "causes the file specified in the pathname to be
/// deleted at the server site."
pub fn dele(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    s.login()?.vfs.remove_file(&path)?;
    reply::reply(ctx.out, ReplyCode::FileActionOk, "File deleted.");
    Ok(Action::None)
}

/// RNFR — RFC 959 §4.1.3: "specifies the old pathname of the file which is
/// to be renamed. This command must be immediately followed by a 'rename
/// to' command." `350` if it exists (and we may write).
pub fn rnfr(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    let login = s.login()?;
    if !login.vfs.is_writable() {
        return Err(CmdError::Fs(crate::vfs::FsError::ReadOnly));
    }
    if path.is_root() {
        return Err(CmdError::Fs(crate::vfs::FsError::PermissionDenied));
    }
    login.vfs.metadata(&path)?;
    if let State::Authed(login) = std::mem::replace(&mut s.state, State::Unauth) {
        s.state = State::Renaming(login, path);
    } else {
        return Err(CmdError::Internal);
    }
    reply::reply(ctx.out, ReplyCode::PendingInfo, "Ready for RNTO.");
    Ok(Action::None)
}

/// RNTO — RFC 959 §4.1.3: "specifies the new pathname of the file specified
/// in the immediately preceding 'rename from' command." `503` without RNFR.
pub fn rnto(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let to = s.cwd.resolve(arg)?;
    let (login, from) = match std::mem::replace(&mut s.state, State::Unauth) {
        State::Renaming(login, from) => (login, from),
        other => {
            s.state = other;
            return Err(CmdError::BadSequence("RNFR required first."));
        }
    };
    let result = login.vfs.rename(&from, &to);
    s.state = State::Authed(login);
    result?;
    reply::reply(ctx.out, ReplyCode::FileActionOk, "Rename successful.");
    Ok(Action::None)
}

/// SIZE — RFC 3659 §4: "213 <SP> size", `550` for a directory or a missing
/// file. The size on disk is given in both types (as vsftpd does): clients
/// use it for progress and resume of binary transfers.
pub fn size(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    let meta = s.login()?.vfs.metadata(&path)?;
    if meta.kind != Kind::File {
        return Err(CmdError::Refused("Not a regular file."));
    }
    reply::begin(ctx.out, ReplyCode::FileStatus);
    reply::push_num(ctx.out, meta.size);
    reply::end(ctx.out);
    Ok(Action::None)
}

/// MDTM — RFC 3659 §3: "213 <SP> YYYYMMDDHHMMSS", in UTC.
pub fn mdtm(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    let meta = s.login()?.vfs.metadata(&path)?;
    if meta.kind != Kind::File {
        return Err(CmdError::Refused("Not a regular file."));
    }
    reply::begin(ctx.out, ReplyCode::FileStatus);
    ctx.out.extend_from_slice(&listing::format_mdtm(meta.mtime));
    reply::end(ctx.out);
    Ok(Action::None)
}
