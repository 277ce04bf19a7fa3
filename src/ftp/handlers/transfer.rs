//! TYPE, MODE, STRU, LIST, NLST, MLSD, RETR, STOR, APPE, STOU, REST, ALLO, ABOR.

use crate::dtp::transfer::Transfer;
use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, Session, XferKind};
use crate::vfs::glob::{has_wildcards, Glob};
use crate::vfs::{FsError, Kind, ListFormat, Listing, Op, VirtualPath, Vfs};

/// TYPE — RFC 959 §3.1.1: `A` (ASCII, optionally `A N`), `I` (image) and
/// `L 8` (bytes of 8 bits = image). EBCDIC, `A T`, `A C` and other byte
/// sizes: `504`.
pub fn type_(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let mut words = arg.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let first = words.next().unwrap_or(b"");
    let second = words.next();
    if words.next().is_some() {
        return Err(CmdError::Syntax("Syntax error in TYPE."));
    }
    let ascii = match (first.to_ascii_uppercase().as_slice(), second.map(|w| w.to_ascii_uppercase())) {
        (b"A", None) => true,
        (b"A", Some(f)) if f == b"N" => true,
        (b"I", None) => false,
        (b"L", Some(n)) if n == b"8" => false,
        (b"L8", None) => false,
        (b"A" | b"E", Some(_)) | (b"E", None) | (b"L", _) => {
            return Err(CmdError::NotForParameter("Only TYPE A, I and L 8 are supported."))
        }
        _ => return Err(CmdError::Syntax("Unknown TYPE.")),
    };
    s.ascii = ascii;
    reply::reply(ctx.out, ReplyCode::Ok, if ascii { "Switching to ASCII mode." } else { "Switching to Binary mode." });
    Ok(Action::None)
}

/// MODE — RFC 959 §3.4: only Stream (`S`); Block and Compressed: `504`.
pub fn mode(_s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    match arg.trim_ascii().to_ascii_uppercase().as_slice() {
        b"S" => {
            reply::reply(ctx.out, ReplyCode::Ok, "Mode set to S.");
            Ok(Action::None)
        }
        b"B" | b"C" | b"Z" => Err(CmdError::NotForParameter("Only MODE S is supported.")),
        _ => Err(CmdError::Syntax("Unknown MODE.")),
    }
}

/// STRU — RFC 959 §3.1.2: only File (`F`); Record and Page: `504`.
pub fn stru(_s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    match arg.trim_ascii().to_ascii_uppercase().as_slice() {
        b"F" => {
            reply::reply(ctx.out, ReplyCode::Ok, "Structure set to F.");
            Ok(Action::None)
        }
        b"R" | b"P" => Err(CmdError::NotForParameter("Only STRU F is supported.")),
        _ => Err(CmdError::Syntax("Unknown STRU.")),
    }
}

/// Split `LIST -la dir` into the path; the `ls` options that WinSCP,
/// NetBeans, gFTP and lftp send (`-a`, `-l`, `-la`, `-al`, `-aL`, …) are
/// accepted and ignored: every entry is always listed in long form. A word
/// starting with `-` that is not made of `ls` option letters is a path
/// (a file may be named `-x.txt`).
pub(super) fn list_path(arg: &[u8]) -> &[u8] {
    let mut rest = arg;
    loop {
        let trimmed = rest.trim_ascii_start();
        if trimmed.first() != Some(&b'-') {
            return trimmed;
        }
        let word_end = trimmed.iter().position(|&b| b == b' ').unwrap_or(trimmed.len());
        let word = &trimmed[1..word_end];
        if word.is_empty() || !word.iter().all(|b| b"aAlLRdFhtrS1nC".contains(b)) {
            return trimmed;
        }
        rest = &trimmed[word_end..];
    }
}

/// Open what the argument of LIST, NLST or STAT names (issue 10): the
/// path after [`list_path`] if it exists, else, if its last component
/// holds `*`, `?` or `[`, the entries of its directory that match that
/// component as a [`Glob`]. Returns the path (for the log and STAT's
/// header) and the listing.
///
/// - **Literal first.** A name that exists is listed as it is, so a file
///   named `a*b` is still `NLST a*b`; only a missing one (or one too long
///   to be a name) is a pattern. Matching rules: [`crate::vfs::glob`].
/// - **The last component only.** `*/x` is looked up literally (`550`
///   unless a directory is named `*`), as vsftpd does; RFC 3659 §2.2.2
///   keeps MLSD/MLST free of globs, and they never come here.
/// - **No match is `550 No files found.`**, before any `150`, when the
///   directory is within the sort caps (the filter runs now). A directory
///   streamed past the caps is filtered as it is sent, so there no match
///   is an empty listing and `226` (vsftpd answers `226` always).
/// - **NLST names** (`nlst`): as the client wrote the directory, so each
///   works in RETR from the same working directory, as RFC 959 §4.1.3's
///   "multiple get" needs and vsftpd and ProFTPD answer: `NLST test` →
///   `test/file1.txt`, `NLST sub/*.txt` → `sub/a.txt`, `NLST f.txt` →
///   `f.txt`; plain `NLST` and `NLST .` give bare names. LIST and STAT
///   lines show bare names, as `ls -l dir` does.
pub(super) fn open_list_arg(s: &Session, arg: &[u8], nlst: bool) -> Result<(VirtualPath, Listing), CmdError> {
    let written = list_path(arg);
    let path = s.cwd.resolve(written)?;
    let vfs = &s.login()?.vfs;
    let (listing, dir_written) = match vfs.open_listing(&path) {
        Ok(listing) => (listing, written),
        // A pattern longer than NAME_MAX (`[ab]` is 4 bytes for one) cannot
        // exist literally either.
        Err(literal @ (FsError::NotFound | FsError::NameTooLong)) => {
            let (dir_written, pattern) = match written.iter().rposition(|&b| b == b'/') {
                Some(i) => written.split_at(i + 1),
                None => (&b""[..], written),
            };
            let glob = Some(pattern).filter(|p| has_wildcards(p)).and_then(Glob::new).ok_or(literal)?;
            let listing = vfs.open_glob(&s.cwd.resolve(dir_written)?, glob)?;
            if listing.is_done() {
                return Err(CmdError::Refused("No files found."));
            }
            (listing, dir_written)
        }
        Err(e) => return Err(e.into()),
    };
    Ok((path, if nlst { listing.named_as_written(dir_written) } else { listing }))
}

/// LIST — RFC 959 §4.1.3: "causes a list to be sent from the server to the
/// passive DTP", in the `ls -l` form that curl, lftp, wget and FileZilla
/// parse. A missing path is `550` before any data connection is used. The
/// last component may be a glob (see [`open_list_arg`]).
pub fn list(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    listing_common(s, arg, ctx, false)
}

/// NLST — RFC 959 §4.1.3: "a directory listing … the server will return a
/// stream of names of files and no other information … This command is
/// intended to return information that can be used by a program to
/// further process the files automatically. For example, in the
/// implementation of a 'multiple get' function." So the names of `NLST
/// dir` come as `dir/name`, and the last component may be a glob (see
/// [`open_list_arg`]).
pub fn nlst(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    listing_common(s, arg, ctx, true)
}

fn listing_common(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>, names_only: bool) -> Result<Action, CmdError> {
    s.require_data(ctx.env)?;
    let (path, names) = open_list_arg(s, arg, names_only)?;
    let vfs = s.login()?.vfs.clone();
    let format = if names_only { ListFormat::Names } else { ListFormat::Long { now_unix: ctx.now_unix } };
    Ok(s.start_transfer(XferKind::List, Transfer::listing(vfs, names, format), path))
}

/// RETR — RFC 959 §4.1.3: "causes the server-DTP to transfer a copy of the
/// file, specified in the pathname, to the server- or user-DTP at the other
/// end of the data connection." Binary mode is `sendfile(2)`.
pub fn retr(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    s.require_data(ctx.env)?;
    let offset = std::mem::take(&mut s.rest);
    let path = s.cwd.resolve(arg)?;
    let (file, meta) = s.login()?.vfs.open_file(&path)?;
    if meta.kind != Kind::File {
        return Err(CmdError::Refused("Not a regular file."));
    }
    if offset > meta.size {
        return Err(CmdError::InvalidRestart);
    }
    let transfer = Transfer::retr(file, offset, meta.size, s.ascii);
    Ok(s.start_transfer(XferKind::Retr, transfer, path))
}

/// STOR — RFC 959 §4.1.3: "causes the server-DTP to accept the data
/// transferred via the data connection and to store the data as a file at
/// the server site. If the file specified in the pathname exists at the
/// server site, then its contents shall be replaced".
///
/// Received bytes are kept unless keeping them would destroy an existing
/// file:
/// - a new name: the data go to a temporary file renamed into place when
///   the transfer completes, and also when it is interrupted (what arrived
///   stays, resumable with SIZE + `REST n` + STOR or APPE, as vsftpd,
///   ProFTPD and pyftpdlib keep it);
/// - an existing file: through a temporary file that replaces it only when
///   the transfer completes; an interrupted upload leaves the old file;
/// - after `REST n` (RFC 3659 §5.5) with n the file's size: written in
///   place at n (a resume: no copy of the kept part); with n smaller, the
///   first n bytes are copied into a temporary file and the new bytes
///   follow, replacing the file when complete.
///
/// With `--atomic-uploads` every upload is all-or-nothing, and a resume
/// copies and locks the file (`450` while another upload holds it).
///
/// In a drop box (`w`, `--anonymous-upload-dir`; see
/// [`crate::vfs::access`]): a new name only (`553` for an existing one,
/// and for the loser of two uploads racing for one new name, when its
/// transfer ends), no `REST` (`550`), and all-or-nothing.
pub fn stor(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    s.require_data(ctx.env)?;
    let offset = std::mem::take(&mut s.rest);
    let path = s.cwd.resolve(arg)?;
    if path.is_root() {
        return Err(CmdError::Fs(FsError::IsADirectory));
    }
    let atomic = ctx.env.config.atomic_uploads;
    let vfs = &s.login()?.vfs;
    let transfer = if offset > 0 {
        vfs.allow(Op::Resume, &path)?;
        let (src, meta) = match vfs.open_file(&path) {
            Ok(x) => x,
            Err(FsError::NotFound) => return Err(CmdError::InvalidRestart),
            Err(e) => return Err(e.into()),
        };
        if offset > meta.size {
            return Err(CmdError::InvalidRestart);
        }
        if offset == meta.size && !atomic {
            Transfer::stor(vfs.open_in_place(&path, false, offset)?, s.ascii)
        } else {
            let mut upload = vfs.create_upload(&path)?;
            if atomic {
                upload.hold_lock(Vfs::lock_target(&src)?);
            }
            Transfer::stor_after(upload, s.ascii, src, offset)
        }
    } else {
        let mut upload = vfs.create_upload(&path)?;
        if !atomic {
            upload.keep_partial_if_new();
        }
        Transfer::stor(upload, s.ascii)
    };
    Ok(s.start_transfer(XferKind::Stor, transfer, path))
}

/// APPE — RFC 959 §4.1.3: "causes the server-DTP to accept the data … and
/// to store the data in a file at the server site. If the file specified in
/// the pathname exists at the server site, then the data shall be appended
/// to that file; otherwise the file specified in the pathname shall be
/// created".
///
/// Written in place with `O_APPEND`: no copy of the old content (a 1-byte
/// APPE to a big file costs one byte), two sessions appending at once both
/// land, and an interrupted APPE keeps what arrived. With
/// `--atomic-uploads`: old content + new data replace the file only when
/// the transfer completes, under a lock (`450` while another upload holds
/// the file).
pub fn appe(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    s.require_data(ctx.env)?;
    s.rest = 0;
    let path = s.cwd.resolve(arg)?;
    if path.is_root() {
        return Err(CmdError::Fs(FsError::IsADirectory));
    }
    let vfs = &s.login()?.vfs;
    vfs.allow(Op::Append, &path)?;
    if !ctx.env.config.atomic_uploads {
        let transfer = Transfer::stor(vfs.open_in_place(&path, true, 0)?, s.ascii);
        return Ok(s.start_transfer(XferKind::Stor, transfer, path));
    }
    let transfer = match vfs.open_file(&path) {
        Ok((src, meta)) => {
            let mut upload = vfs.create_upload(&path)?;
            upload.hold_lock(Vfs::lock_target(&src)?);
            Transfer::stor_after(upload, s.ascii, src, meta.size)
        }
        Err(FsError::NotFound) => Transfer::stor(vfs.create_upload(&path)?, s.ascii),
        Err(e) => return Err(e.into()),
    };
    Ok(s.start_transfer(XferKind::Stor, transfer, path))
}

/// STOU — RFC 959 §4.1.3: "the resulting file is to be created in the
/// current directory under a name unique to that directory", and RFC 1123
/// §4.1.2.9: the reply is "150 FILE: pppp". An argument is taken as the
/// name to start from; the commit never replaces a file.
pub fn stou(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    s.require_data(ctx.env)?;
    s.rest = 0;
    let (dir, base) = if arg.is_empty() {
        (s.cwd.clone(), b"ftp.upload".to_vec())
    } else {
        let p = s.cwd.resolve(arg)?;
        match p.file_name() {
            Some(n) => (p.parent(), n.to_vec()),
            None => (p, b"ftp.upload".to_vec()),
        }
    };
    let (mut upload, path) = s.login()?.vfs.create_unique_upload(&dir, &base)?;
    if !ctx.env.config.atomic_uploads {
        // The name was new: an interrupted STOU keeps what arrived there.
        upload.keep_partial_if_new();
    }
    let transfer = Transfer::stor(upload, s.ascii);
    Ok(s.start_transfer(XferKind::Stou, transfer, path))
}

/// REST — RFC 3659 §5.3: "REST <SP> <restart-marker>": in stream mode the
/// marker is the byte offset at which the next RETR or STOR starts; `350`.
pub fn rest(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let arg = arg.trim_ascii();
    let offset: u64 = std::str::from_utf8(arg)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or(CmdError::Syntax("REST takes a byte offset."))?;
    s.rest = offset;
    reply::begin(ctx.out, ReplyCode::PendingInfo);
    ctx.out.extend_from_slice(b"Restarting at ");
    reply::push_num(ctx.out, offset);
    ctx.out.extend_from_slice(b". Send STOR or RETR to initiate transfer.");
    reply::end(ctx.out);
    Ok(Action::None)
}

/// ALLO — RFC 959 §4.1.3: "This command may be required by some servers
/// to reserve sufficient storage". Not needed here: `202`.
pub fn allo(_s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    reply::reply(ctx.out, ReplyCode::Superfluous, "ALLO command ignored.");
    Ok(Action::None)
}

/// ABOR with no transfer in progress — RFC 959 §4.1.3: "the server closes
/// the data connection (if open)": `225` when a data connection (or a
/// passive listener) was open and is now closed, `226` when there was
/// none. ABOR during a transfer never reaches this handler: the reactor
/// handles it at once (`Session::handle_urgent`).
pub fn abor(s: &mut Session, _arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    s.rest = 0;
    if s.data == crate::ftp::session::DataMode::None {
        reply::reply(ctx.out, ReplyCode::TransferComplete, "No transfer to abort.");
        return Ok(Action::None);
    }
    s.data = crate::ftp::session::DataMode::None;
    reply::reply(ctx.out, ReplyCode::DataOpenIdle, "No transfer to abort; data connection closed.");
    Ok(Action::DropData)
}

/// MLSD — RFC 3659 §7: the entries of a directory, one `facts; name` line
/// each, over the data connection. A path that is not a directory is `501`
/// (§7.2.1: "the server-PI will … respond with a 501 reply").
pub fn mlsd(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    s.require_data(ctx.env)?;
    let path = s.cwd.resolve(arg)?;
    let login = s.login()?;
    // The listing first: in a drop box it refuses a file and a missing
    // name alike, before its kind could tell them apart.
    let names = login.vfs.open_listing(&path)?;
    if login.vfs.metadata(&path)?.kind != Kind::Dir {
        return Err(CmdError::Syntax("MLSD needs a directory; use MLST for a file."));
    }
    let format = ListFormat::Mlsd { facts: s.mlst_facts, writable: login.vfs.is_writable() };
    let vfs = login.vfs.clone();
    Ok(s.start_transfer(XferKind::List, Transfer::listing(vfs, names, format), path))
}

#[cfg(test)]
mod tests {
    use super::list_path;

    #[test]
    fn ls_options_that_clients_send_are_skipped() {
        for (arg, path) in [
            (&b"-a"[..], &b""[..]),
            (b"-l", b""),
            (b"-la", b""),
            (b"-al", b""),
            (b"-aL", b""),
            (b"-la dir", b"dir"),
            (b"-a -l my dir", b"my dir"),
            (b"dir", b"dir"),
            (b"-x.txt", b"-x.txt"),
            (b"-", b"-"),
        ] {
            assert_eq!(list_path(arg), path, "{:?}", String::from_utf8_lossy(arg));
        }
    }
}
