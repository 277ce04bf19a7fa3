//! USER, PASS, QUIT.

use crate::auth::{is_anonymous_name, Password};
use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Login, Pending, Session, State};
use crate::vfs::VirtualPath;

/// USER — RFC 959 §4.1.1: "The argument field is a Telnet string
/// identifying the user." Always `331`, whether the user exists or not, so
/// that no one can enumerate users.
pub fn user(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if s.is_logged_in() {
        return Err(CmdError::BadSequence("Already logged in; can't change to another user."));
    }
    s.state = State::InAuth { user: arg.into() };
    reply::reply(ctx.out, ReplyCode::NeedPassword, "Please specify the password.");
    Ok(Action::None)
}

/// PASS — RFC 959 §4.1.1: "This command must be immediately preceded by the
/// user name command". Anonymous (RFC 1635) is answered at once; a real user
/// is checked on the helper thread; a failure is answered after a delay.
pub fn pass(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let user = match std::mem::replace(&mut s.state, State::Unauth) {
        State::InAuth { user } => user,
        other => {
            let logged_in = matches!(other, State::Authed(_) | State::Renaming(..));
            s.state = other;
            return Err(CmdError::BadSequence(if logged_in { "Already logged in." } else { "Login with USER first." }));
        }
    };
    if is_anonymous_name(&user) {
        if let Some(vfs) = &ctx.env.anonymous {
            s.state = State::Authed(Login { user: "anonymous".into(), vfs: vfs.clone(), anonymous: true });
            s.cwd = VirtualPath::root();
            reply::reply(ctx.out, ReplyCode::LoggedIn, "Login successful.");
            return Ok(Action::None);
        }
        return Ok(s.login_failed(ctx));
    }
    if !ctx.env.has_users {
        return Ok(s.login_failed(ctx));
    }
    s.pending = Pending::Login;
    Ok(Action::CheckLogin { user, password: Password::new(arg) })
}

/// QUIT — RFC 959 §4.1.1: "terminates a USER and if file transfer is not in
/// progress, the server closes the control connection."
pub fn quit(_s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::reply(ctx.out, ReplyCode::Closing, "Goodbye.");
    Ok(Action::Close)
}
