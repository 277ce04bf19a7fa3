//! PWD (XPWD), CWD (XCWD), CDUP (XCUP).

use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Session};

/// PWD — RFC 959 §4.1.3 and Appendix II: `257 "PATHNAME"`, with an embedded
/// double quote doubled.
pub fn pwd(s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::begin(ctx.out, ReplyCode::PathCreated);
    reply::push_quoted_path(ctx.out, s.cwd.as_bytes());
    ctx.out.extend_from_slice(b" is the current directory.");
    reply::end(ctx.out);
    Ok(Action::None)
}

/// CWD — RFC 959 §4.1.1: "allows the user to work with a different
/// directory". `250` on success, `550` if it is not a directory we may enter.
pub fn cwd(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    s.login()?.vfs.check_dir(&path)?;
    s.cwd = path;
    reply::reply(ctx.out, ReplyCode::FileActionOk, "Directory successfully changed.");
    Ok(Action::None)
}

/// CDUP — RFC 959 §4.1.1: "a special case of CWD … to simplify the
/// implementation of programs for transferring directory trees". At `/` it
/// stays at `/`.
pub fn cdup(s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.parent();
    s.login()?.vfs.check_dir(&path)?;
    s.cwd = path;
    reply::reply(ctx.out, ReplyCode::FileActionOk, "Directory successfully changed.");
    Ok(Action::None)
}
