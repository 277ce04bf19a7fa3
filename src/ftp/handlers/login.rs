//! USER, PASS, QUIT.

use crate::auth::{is_anonymous_name, Password, MAX_PASSWORD_LEN};
use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Login, Pending, Session, State};
use crate::vfs::VirtualPath;

/// Longest user name accepted by USER, in bytes. The name waits in the
/// session until PASS, so a session that never logs in would otherwise hold
/// a whole command line (8 KiB) for the login timeout.
pub const MAX_USER_BYTES: usize = 256;

/// USER — RFC 959 §4.1.1: "The argument field is a Telnet string
/// identifying the user." Always `331`, whether the user exists or not, so
/// that no one can enumerate users.
///
/// With `--tls-required`, USER on a plaintext control connection is `530`
/// for every name, anonymous included (RFC 4217 §4 lets a server insist on
/// AUTH before USER), and nothing is kept.
pub fn user(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if s.is_logged_in() {
        return Err(CmdError::BadSequence("Already logged in; can't change to another user."));
    }
    require_tls_for_login(s, ctx)?;
    if arg.len() > MAX_USER_BYTES {
        // Refused whether the user exists or not: the length is no secret.
        return Err(CmdError::Syntax("User name too long."));
    }
    s.state = State::InAuth { user: arg.into() };
    reply::reply(ctx.out, ReplyCode::NeedPassword, "Please specify the password.");
    Ok(Action::None)
}

/// PASS — RFC 959 §4.1.1: "This command must be immediately preceded by the
/// user name command". Anonymous (RFC 1635) is answered at once; a real user
/// is checked on the helper thread; a failure is answered after a delay.
/// With `--tls-required` on a plaintext control connection, `530` as for
/// USER: a password sent in clear is never checked.
pub fn pass(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if !s.is_logged_in() {
        require_tls_for_login(s, ctx)?;
    }
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
            let rates = crate::dtp::throttle::Rates::anonymous(&ctx.env.config);
            s.state = State::Authed(Login { user: "anonymous".into(), vfs: vfs.clone(), anonymous: true, rates });
            s.cwd = VirtualPath::root();
            ctx.env.metrics.login(true);
            reply::reply(ctx.out, ReplyCode::LoggedIn, "Login successful.");
            return Ok(Action::None);
        }
        return Ok(s.login_failed(ctx));
    }
    if !ctx.env.has_users {
        return Ok(s.login_failed(ctx));
    }
    if arg.len() > MAX_PASSWORD_LEN {
        // No real password is this long; hashing it would only let a
        // client buy the helper thread's time with bytes. A failed login,
        // delayed like any other (the length is no secret).
        return Ok(s.login_failed(ctx));
    }
    s.pending = Pending::Login;
    Ok(Action::CheckLogin { user, password: Password::new(arg) })
}

/// `530` if TLS is required and the control connection is not protected.
/// (After CCC the session is already logged in, and `--tls-required`
/// refuses CCC, so `Cleared` never gets here in practice.)
fn require_tls_for_login(s: &Session, ctx: &Ctx<'_>) -> Result<(), CmdError> {
    if ctx.env.config.tls_required && !s.protection().is_control_tls() {
        return Err(CmdError::LoginNeedsTls);
    }
    Ok(())
}

/// QUIT — RFC 959 §4.1.1: "terminates a USER and if file transfer is not in
/// progress, the server closes the control connection."
pub fn quit(_s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::reply(ctx.out, ReplyCode::Closing, "Goodbye.");
    Ok(Action::Close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::ftp::session::Env;

    fn session_and_env() -> (Session, Env, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.login_fail_delay = std::time::Duration::from_secs(1);
        let env = Env { config, anonymous: None, has_users: true, metrics: Default::default() };
        let s = Session::new("127.0.0.1:5000".parse().unwrap(), "127.0.0.1:21".parse().unwrap());
        (s, env, dir)
    }

    #[test]
    fn a_password_over_the_limit_is_a_delayed_530_without_hashing() {
        let (mut s, env, _dir) = session_and_env();
        let mut out = Vec::new();
        let mut ctx = Ctx { out: &mut out, env: &env, now_unix: 0 };
        assert!(matches!(user(&mut s, b"alice", &mut ctx), Ok(Action::None)));
        let long = vec![b'x'; MAX_PASSWORD_LEN + 1];
        // A delay, not a helper job: nothing is hashed.
        assert!(matches!(pass(&mut s, &long, &mut ctx), Ok(Action::Delay(_))));
        let action = s.delay_over(&mut ctx);
        assert!(matches!(action, Action::None));
        assert!(out.ends_with(b"530 Login incorrect.\r\n"), "{}", String::from_utf8_lossy(&out));
        // At the limit it is still checked.
        let mut out = Vec::new();
        let mut ctx = Ctx { out: &mut out, env: &env, now_unix: 0 };
        user(&mut s, b"alice", &mut ctx).unwrap();
        let at = vec![b'x'; MAX_PASSWORD_LEN];
        assert!(matches!(pass(&mut s, &at, &mut ctx), Ok(Action::CheckLogin { .. })));
    }

    #[test]
    fn a_user_name_over_the_limit_is_501_and_nothing_is_kept() {
        let (mut s, env, _dir) = session_and_env();
        let mut out = Vec::new();
        let mut ctx = Ctx { out: &mut out, env: &env, now_unix: 0 };
        let long = vec![b'u'; MAX_USER_BYTES + 1];
        let e = user(&mut s, &long, &mut ctx).err().expect("refused");
        e.write(ctx.out);
        assert!(out.starts_with(b"501 "), "{}", String::from_utf8_lossy(&out));
        assert!(matches!(s.state, State::Unauth));
    }
}
