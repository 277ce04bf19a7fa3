//! NOOP, SYST, FEAT, OPTS, HELP.

use crate::ftp::command::{self, Verb};
use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Session};
use crate::ftp::table::{self, COMMANDS, EXTRA_FEATURES};

/// NOOP — RFC 959 §4.1.3: "This command does not affect any parameters or
/// previously entered commands. It specifies no action other than that the
/// server send an OK reply."
pub fn noop(_s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::reply(ctx.out, ReplyCode::Ok, "NOOP ok.");
    Ok(Action::None)
}

/// SYST — RFC 959 §4.1.3; "UNIX Type: L8" is what clients expect to parse
/// `ls -l` listings.
pub fn syst(_s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::reply(ctx.out, ReplyCode::SystemType, "UNIX Type: L8");
    Ok(Action::None)
}

/// FEAT — RFC 2389 §3.2: "211-<any descriptive text>", one feature a line
/// beginning with a space, then "211 End". Built from the command table, so
/// it advertises exactly what is implemented.
pub fn feat(_s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::begin_multi(ctx.out, ReplyCode::SystemStatus);
    ctx.out.extend_from_slice(b"Features:");
    reply::end(ctx.out);
    for line in COMMANDS.iter().filter(|s| s.handler.is_some()).filter_map(|s| s.feat) {
        reply::continuation(ctx.out, line.as_bytes());
    }
    for line in EXTRA_FEATURES {
        reply::continuation(ctx.out, line.as_bytes());
    }
    reply::reply(ctx.out, ReplyCode::SystemStatus, "End");
    Ok(Action::None)
}

/// OPTS — RFC 2389 §4: "OPTS <SP> command-name [<SP> command-options]".
/// `OPTS UTF8 ON` (RFC 2640, and what Windows clients send before login):
/// names are always passed through as bytes, so ON and OFF both succeed.
pub fn opts(_s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let (name, value) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], arg[i + 1..].trim_ascii()),
        None => (arg.trim_ascii(), &b""[..]),
    };
    if name.eq_ignore_ascii_case(b"UTF8") || name.eq_ignore_ascii_case(b"UTF-8") {
        if value.is_empty() || value.eq_ignore_ascii_case(b"ON") {
            reply::reply(ctx.out, ReplyCode::Ok, "UTF8 mode on.");
            return Ok(Action::None);
        }
        if value.eq_ignore_ascii_case(b"OFF") {
            reply::reply(ctx.out, ReplyCode::Ok, "UTF8 mode off (names are still passed through as sent).");
            return Ok(Action::None);
        }
        return Err(CmdError::Syntax("OPTS UTF8 takes ON or OFF."));
    }
    Err(CmdError::Syntax("Option not understood."))
}

/// HELP — RFC 959 §4.1.3: without argument, the commands; with a command
/// name, its syntax (`214`).
pub fn help(_s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let arg = arg.trim_ascii();
    if !arg.is_empty() {
        let verb = match command::parse(arg) {
            Ok(c) => c.verb,
            Err(_) => return Err(CmdError::Syntax("Unknown command.")),
        };
        let spec = table::spec(verb);
        reply::begin(ctx.out, ReplyCode::Help);
        reply::push_text(ctx.out, b"Syntax: ");
        reply::push_text(ctx.out, spec.help.as_bytes());
        reply::end(ctx.out);
        return Ok(Action::None);
    }
    reply::begin_multi(ctx.out, ReplyCode::Help);
    ctx.out.extend_from_slice(b"The following commands are recognized:");
    reply::end(ctx.out);
    let implemented: Vec<Verb> = COMMANDS.iter().filter(|s| s.handler.is_some()).map(|s| s.verb).collect();
    for row in implemented.chunks(8) {
        ctx.out.push(b' ');
        for v in row {
            ctx.out.extend_from_slice(format!(" {:<4}", v.name()).as_bytes());
        }
        reply::end(ctx.out);
    }
    reply::reply(ctx.out, ReplyCode::Help, "Help OK.");
    Ok(Action::None)
}
