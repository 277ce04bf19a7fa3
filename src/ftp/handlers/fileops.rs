//! MKD (XMKD), RMD (XRMD), DELE, RNFR, RNTO, SIZE, MDTM, MLST, MFMT, SITE.

use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Session, State};
use crate::vfs::{listing, Kind, CHMOD_MODE_MASK};

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
    login.vfs.allow(crate::vfs::Op::Rename, &path)?;
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

/// Largest file whose TYPE A size SIZE computes: counting the line ends
/// means reading the file, on the loop, so it is bounded. At 256 KiB a
/// SIZE costs ~0.1 ms of page-cache reads, and a session runs at most 16
/// commands per turn: a SIZE flood stalls no one (a 1 MiB cap let one
/// 64 KiB burst cost 2.3 s before the turn budget).
pub const ASCII_SIZE_MAX_BYTES: u64 = 256 * 1024;

/// SIZE — RFC 3659 §4: "The presented size [...] is the number of octets
/// that would be transmitted [...] if the file were transferred in the
/// current TYPE". `550` for a directory or a missing file.
///
/// TYPE I: the size on disk. TYPE A: the exact size a TYPE A RETR sends
/// (each LF not preceded by CR becomes CRLF), for files up to
/// [`ASCII_SIZE_MAX_BYTES`]; above that `550` (pyftpdlib refuses SIZE in
/// TYPE A altogether): counting would read the whole file on the loop.
pub fn size(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    let vfs = &s.login()?.vfs;
    let meta = vfs.stat(&path)?;
    if meta.kind != Kind::File {
        return Err(CmdError::Refused("Not a regular file."));
    }
    let size = if s.ascii {
        if meta.size > ASCII_SIZE_MAX_BYTES {
            return Err(CmdError::Refused("SIZE in ASCII mode only for files up to 256 KiB; use TYPE I."));
        }
        let (file, _) = vfs.open_file(&path)?;
        ascii_size(file, ASCII_SIZE_MAX_BYTES).map_err(|e| CmdError::Fs(crate::vfs::FsError::from_io(&e)))?
    } else {
        meta.size
    };
    reply::begin(ctx.out, ReplyCode::FileStatus);
    reply::push_num(ctx.out, size);
    reply::end(ctx.out);
    Ok(Action::None)
}

/// The bytes a TYPE A RETR sends for the first `max` bytes of `file`: as
/// `dtp::transfer` converts them, an LF not preceded by CR gains a CR.
fn ascii_size(mut file: std::fs::File, max: u64) -> std::io::Result<u64> {
    use std::io::Read;
    let mut buf = [0u8; 8192];
    let (mut total, mut extra, mut prev_cr) = (0u64, 0u64, false);
    while total < max {
        let want = buf.len().min((max - total) as usize);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            if b == b'\n' && !prev_cr {
                extra += 1;
            }
            prev_cr = b == b'\r';
        }
        total += n as u64;
    }
    Ok(total + extra)
}

/// MDTM — RFC 3659 §3: "213 <SP> YYYYMMDDHHMMSS", in UTC.
pub fn mdtm(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    let meta = s.login()?.vfs.stat(&path)?;
    if meta.kind != Kind::File {
        return Err(CmdError::Refused("Not a regular file."));
    }
    reply::begin(ctx.out, ReplyCode::FileStatus);
    ctx.out.extend_from_slice(&listing::format_mdtm(meta.mtime));
    reply::end(ctx.out);
    Ok(Action::None)
}

/// MLST — RFC 3659 §7: the facts of one file or directory over the control
/// connection: `250-` header, one continuation line ` facts; pathname`,
/// `250` end.
pub fn mlst(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let path = s.cwd.resolve(arg)?;
    let login = s.login()?;
    let meta = login.vfs.stat(&path)?;
    reply::begin_multi(ctx.out, ReplyCode::FileActionOk);
    ctx.out.extend_from_slice(b"Listing ");
    reply::push_text(ctx.out, path.as_bytes());
    reply::end(ctx.out);
    ctx.out.push(b' ');
    listing::write_mlsx(&meta, path.as_bytes(), s.mlst_facts, login.vfs.is_writable(), ctx.out);
    reply::end(ctx.out);
    reply::reply(ctx.out, ReplyCode::FileActionOk, "End");
    Ok(Action::None)
}

/// MFMT — draft-somers-ftp-mfxx §3: "MFMT <SP> time-val <SP> pathname",
/// sets the modification time; reply "213 Modify=<time-val>; <pathname>".
pub fn mfmt(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let sp = arg.iter().position(|&b| b == b' ').ok_or(CmdError::Syntax("MFMT takes YYYYMMDDHHMMSS and a path."))?;
    let secs = listing::parse_mdtm(&arg[..sp]).ok_or(CmdError::Syntax("MFMT: bad time, expected YYYYMMDDHHMMSS."))?;
    let path = s.cwd.resolve(&arg[sp + 1..])?;
    let vfs = &s.login()?.vfs;
    vfs.allow(crate::vfs::Op::SetTime, &path)?;
    let before = vfs.stat(&path)?.mtime;
    vfs.set_mtime(&path, secs)?;
    // Read back what the filesystem stored: ext4 keeps times only up to
    // 2446, and a 9999 request would silently land there.
    let stored = vfs.metadata(&path)?.mtime;
    if stored != secs {
        let _ = vfs.set_mtime(&path, before);
        return Err(CmdError::Syntax("MFMT: the filesystem cannot store that time."));
    }
    reply::begin(ctx.out, ReplyCode::FileStatus);
    ctx.out.extend_from_slice(b"Modify=");
    ctx.out.extend_from_slice(&listing::format_mdtm(stored));
    ctx.out.extend_from_slice(b"; ");
    reply::push_text(ctx.out, path.as_bytes());
    reply::end(ctx.out);
    Ok(Action::None)
}

/// SITE — RFC 959 §4.1.3: "services specific to [the] system". `SITE
/// CHMOD <octal> <path>` for users who may write; `SITE HELP`.
///
/// # SITE CHMOD is deliberately weak
/// As vsftpd: only the permission bits 0–0777 (a set-uid, set-gid or
/// sticky bit is `550`: run as root, `SITE CHMOD 6777` on an upload would
/// make a root set-uid program), never for anonymous users (`550`), and
/// never on the user's root directory (`550`: `SITE CHMOD 000 /` would lock
/// the whole served tree). The filesystem masks the mode and refuses the
/// root again, whatever reaches it.
pub fn site(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let (cmd, rest) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], &arg[i + 1..]),
        None => (arg, &b""[..]),
    };
    if cmd.eq_ignore_ascii_case(b"HELP") {
        reply::reply(ctx.out, ReplyCode::Help, "SITE commands: CHMOD <octal-mode> <path>, HELP");
        return Ok(Action::None);
    }
    // Test builds only (`--features fault-injection`): a panic inside a
    // handler, to prove that it costs one session, not the server.
    #[cfg(feature = "fault-injection")]
    if cmd.eq_ignore_ascii_case(b"PANIC") {
        panic!("SITE PANIC (fault injection)");
    }
    // Test builds only: probes of the sandbox (`crate::sandbox`), run on
    // this reactor's thread. `SITE OPEN <real path>`: a plain `open(2)`
    // read-only, bypassing the VFS jail; `SITE CONNECT <ip:port>`: a plain
    // TCP connect (2 s timeout). The reply is `200 errno=N thread=NAME`
    // (N = 0 on success), so a test sees which worker answered.
    #[cfg(feature = "fault-injection")]
    if cmd.eq_ignore_ascii_case(b"OPEN") || cmd.eq_ignore_ascii_case(b"CONNECT") {
        let arg = String::from_utf8_lossy(rest).into_owned();
        let result = if cmd.eq_ignore_ascii_case(b"OPEN") {
            std::fs::File::open(&arg).map(drop)
        } else {
            match arg.parse::<std::net::SocketAddr>() {
                Ok(a) => std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).map(drop),
                Err(_) => return Err(CmdError::Syntax("SITE CONNECT takes IP:PORT.")),
            }
        };
        let errno = result.err().map_or(0, |e| e.raw_os_error().unwrap_or(-1));
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        reply::reply(ctx.out, ReplyCode::Ok, &format!("errno={errno} thread={thread}"));
        return Ok(Action::None);
    }
    if !cmd.eq_ignore_ascii_case(b"CHMOD") {
        return Err(CmdError::NotForParameter("Unknown SITE command; try SITE HELP."));
    }
    if s.is_anonymous() {
        return Err(CmdError::Refused("SITE CHMOD is not available to anonymous users."));
    }
    let sp = rest.iter().position(|&b| b == b' ').ok_or(CmdError::Syntax("SITE CHMOD takes a mode and a path."))?;
    let digits = &rest[..sp];
    if digits.is_empty() || digits.len() > 4 || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(CmdError::Syntax("SITE CHMOD: the mode must be octal, e.g. 644."));
    }
    let mode = digits.iter().fold(0u32, |m, &d| m * 8 + u32::from(d - b'0'));
    if mode & !CHMOD_MODE_MASK != 0 {
        return Err(CmdError::Refused("SITE CHMOD: set-uid, set-gid and sticky bits are not allowed."));
    }
    let path = s.cwd.resolve(&rest[sp + 1..])?;
    if path.is_root() {
        return Err(CmdError::Refused("SITE CHMOD: the mode of your root directory cannot be changed."));
    }
    s.login()?.vfs.chmod(&path, mode)?;
    reply::reply(ctx.out, ReplyCode::Ok, "SITE CHMOD command ok.");
    Ok(Action::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_size_counts_the_crs_a_type_a_retr_adds() {
        let cases: [(&[u8], u64); 6] = [
            (b"", 0),
            (b"abc", 3),
            (b"a\nb\n", 6),
            (b"a\r\nb\r\n", 6),
            (b"\n\n", 4),
            (b"a\rb\n", 5),
        ];
        for (text, want) in cases {
            let mut f = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut f, text).unwrap();
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
            assert_eq!(ascii_size(f, ASCII_SIZE_MAX_BYTES).unwrap(), want, "{text:?}");
        }
    }
}
