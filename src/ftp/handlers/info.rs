//! NOOP, SYST, FEAT, OPTS, HELP, STAT, HOST.

use crate::ftp::command;
use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Session};
use crate::ftp::table::{self, COMMANDS, EXTRA_FEATURES};
use crate::vfs::{listing, Next};

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
/// it advertises exactly what is implemented and offered: " AUTH TLS",
/// " PBSZ" and " PROT" (RFC 4217 §15) only when a certificate is
/// configured.
pub fn feat(_s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::begin_multi(ctx.out, ReplyCode::SystemStatus);
    ctx.out.extend_from_slice(b"Features:");
    reply::end(ctx.out);
    let env = ctx.env;
    for line in COMMANDS.iter().filter(|s| s.is_offered(env)).filter_map(|s| s.feat) {
        if line == "MLST" {
            // RFC 3659 §7.8: the facts, `*` on those selected.
            ctx.out.extend_from_slice(b" MLST ");
            listing::write_fact_list(_s.mlst_facts, ctx.out);
            reply::end(ctx.out);
            continue;
        }
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
///
/// `OPTS MLST fact;fact;` (RFC 3659 §7.9) chooses the MLSx facts and echoes
/// the ones now selected.
pub fn opts(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let (name, value) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], arg[i + 1..].trim_ascii()),
        None => (arg.trim_ascii(), &b""[..]),
    };
    if name.eq_ignore_ascii_case(b"MLST") {
        s.mlst_facts = listing::parse_facts(value);
        reply::begin(ctx.out, ReplyCode::Ok);
        ctx.out.extend_from_slice(b"MLST OPTS ");
        for (n, b) in listing::fact::ALL {
            if s.mlst_facts & b != 0 {
                ctx.out.extend_from_slice(n.as_bytes());
                ctx.out.push(b';');
            }
        }
        reply::end(ctx.out);
        return Ok(Action::None);
    }
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

/// HELP — RFC 959 §4.1.3: without argument, the commands offered (the
/// FTPS ones only with a certificate); with a command name, its syntax
/// (`214`).
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
    // Eight names a line, each in a column of five (" NAME" padded).
    let env = ctx.env;
    let implemented = COMMANDS.iter().filter(|s| s.is_offered(env));
    for (i, spec) in implemented.enumerate() {
        if i % HELP_VERBS_PER_LINE == 0 {
            if i > 0 {
                reply::end(ctx.out);
            }
            ctx.out.push(b' ');
        }
        let name = spec.verb.name().as_bytes();
        ctx.out.push(b' ');
        ctx.out.extend_from_slice(name);
        ctx.out.extend_from_slice(&b"    "[name.len().min(4)..]);
    }
    reply::end(ctx.out);
    reply::reply(ctx.out, ReplyCode::Help, "Help OK.");
    Ok(Action::None)
}

/// How many verb names each line of the HELP reply holds.
const HELP_VERBS_PER_LINE: usize = 8;

/// The most entries `STAT <path>` writes over the control connection. A
/// LIST over a data connection is written as the socket drains; a STAT
/// reply is formatted whole into the session's reply buffer, so it is
/// capped: 1,000 lines is ~70 KiB, enough to look into any directory a
/// person browses, and a directory of 100,000 entries costs a STAT no more.
pub const STAT_MAX_ENTRIES: usize = 1_000;

/// The most names a `STAT <glob>` skips (names in a directory streamed
/// past the sort caps that do not match) before it ends the reply with
/// [`STAT_TRUNCATED_LINE`]: the reply is formatted in one turn of the loop,
/// so its scan is bounded however big the directory (CVE-2011-0762 was a
/// STAT glob that kept vsftpd's CPU busy). A sorted directory is filtered
/// whole when it opens and never reaches it.
pub const STAT_MAX_SKIPPED_NAMES: usize = 16_384;

/// The continuation line that ends a STAT listing cut at [`STAT_MAX_ENTRIES`]
/// or [`STAT_MAX_SKIPPED_NAMES`].
const STAT_TRUNCATED_LINE: &[u8] = b"... more entries not shown; use LIST for the full listing";

/// STAT — RFC 959 §4.1.3: without argument, the server's status (`211`);
/// with a pathname, "analogous to the LIST command … over the control
/// connection" (`213`). During a transfer the reactor answers it at once
/// with the progress (`Session::handle_urgent`). The last component may be
/// a glob, as for LIST (see `transfer::open_list_arg`): `STAT *.txt`.
///
/// # Bounded reply
/// The entries come one at a time from [`crate::vfs::Vfs::open_listing`]
/// (bounded memory, sorted for directories within its caps) and are
/// formatted straight into the reply, at most [`STAT_MAX_ENTRIES`] of them;
/// if more remain, one last continuation line says the listing was cut and
/// that LIST gives all of it.
pub fn stat(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if arg.trim_ascii().is_empty() {
        s.write_status(None, ctx.env, ctx.out);
        return Ok(Action::None);
    }
    if !s.is_logged_in() {
        return Err(CmdError::NotLoggedIn);
    }
    let (path, mut entries) = super::transfer::open_list_arg(s, arg, false)?;
    let vfs = &s.login()?.vfs;
    let mut skips = STAT_MAX_SKIPPED_NAMES;
    // The first entry is read before any reply line, so that a directory
    // that cannot be read is one error reply, not half a 213.
    let mut next = entries.next_entry_within(vfs, true, &mut skips)?;
    reply::begin_multi(ctx.out, ReplyCode::FileStatus);
    ctx.out.extend_from_slice(b"Status of ");
    reply::push_text(ctx.out, path.as_bytes());
    ctx.out.push(b':');
    reply::end(ctx.out);
    let format = listing::ListFormat::Long { now_unix: ctx.now_unix };
    // One line at a time: a name's 0xFF bytes must be doubled (Telnet IAC)
    // by `continuation`, which the data-connection format does not do.
    let mut line = Vec::new();
    let mut written = 0;
    loop {
        let e = match next {
            Next::End => break,
            Next::Entry(e) if written < STAT_MAX_ENTRIES => e,
            Next::Entry(_) | Next::Pending => {
                reply::continuation(ctx.out, STAT_TRUNCATED_LINE);
                break;
            }
        };
        line.clear();
        listing::write_entry(format, &e, &mut line);
        // Each listing line is a continuation line (leading space), so a
        // name that starts with digits can never end the reply early.
        reply::continuation(ctx.out, line.strip_suffix(b"\r\n").unwrap_or(&line));
        written += 1;
        // A directory that fails mid-way ends the listing where it got to:
        // the 213 is already begun and must be closed.
        next = entries.next_entry_within(vfs, true, &mut skips).unwrap_or(Next::End);
    }
    reply::reply(ctx.out, ReplyCode::FileStatus, "End of status.");
    Ok(Action::None)
}

/// HOST — RFC 7151 §3: "HOST <SP> <host>" before USER selects a virtual
/// host. leanftpd serves one site under every name: `220` before login,
/// `503` after ("the HOST command MUST be sent before USER").
pub fn host(s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if s.is_logged_in() || !matches!(s.state, crate::ftp::session::State::Unauth) {
        return Err(CmdError::BadSequence("HOST must come before USER."));
    }
    reply::reply(ctx.out, ReplyCode::Ready, "Host accepted.");
    Ok(Action::None)
}
