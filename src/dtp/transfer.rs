//! The DTP's transfers: moving the bytes of one RETR, STOR or listing over
//! an established data connection.
//!
//! Owns the transfer's file (or listing in progress) and its progress. It does
//! I/O on the data socket and the file, but never registers anything with
//! the poll, never reads the clock and never replies: the reactor calls
//! `step` on readiness with a byte budget, and reports the outcome to the
//! session.
//!
//! - RETR in binary mode is `sendfile(2)`: no user-space buffer at all.
//! - RETR in ASCII mode converts LF to CRLF (RFC 959 §3.1.1.1) through a
//!   buffer allocated once at the start of the transfer.
//! - STOR writes what arrives into the upload's temporary file (converting
//!   CRLF to LF in ASCII mode); `finish` renames it into place.
//!
//! # Invariants
//! - `step` stops at `WouldBlock` or when `budget` bytes have moved, so that
//!   one big transfer cannot starve the other clients.
//! - A STOR's temporary file is removed unless `finish` committed it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use std::rc::Rc;

use crate::vfs::listing::write_entry;
use crate::vfs::{FsError, ListFormat, Listing, Next, Upload, Vfs};

/// Size of the ASCII conversion buffer.
const ASCII_CHUNK_BYTES: usize = 32 * 1024;

/// Listing text formatted per refill: a few socket writes' worth.
const LIST_CHUNK_BYTES: usize = 16 * 1024;

/// Names a listing's step may skip without writing them (a glob's
/// non-matches in a streamed directory) before it yields the turn: a glob
/// matching nothing, or one name in 4,000, in a directory of a million
/// names is read over many turns of the loop, not in one (each skip is one
/// linear match).
const LIST_SKIPS_PER_STEP: usize = 4_096;

/// A data connection as a transfer sees it: bytes in and out, its socket
/// for the zero-copy paths, and whether those may be taken (not under TLS:
/// `sendfile` and `splice` would move the file's bytes past the record
/// layer, in clear).
pub trait DataStream: Read + Write + AsRawFd {
    /// `sendfile(2)` and `splice(2)` may move bytes between the socket and
    /// a file.
    fn zero_copy(&self) -> bool;
}

impl DataStream for std::os::unix::net::UnixStream {
    fn zero_copy(&self) -> bool {
        true
    }
}

/// The failure a data socket's error means. TLS reports its own through
/// the error kind (see `crate::tls::stream`): a refused handshake or
/// session, and a TLS stream cut without `close_notify`.
pub(crate) fn lost(e: &io::Error) -> TransferError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => TransferError::TlsRefused,
        io::ErrorKind::UnexpectedEof => TransferError::TlsTruncated,
        _ => TransferError::ConnectionLost,
    }
}

/// Bytes read from the file per write under TLS (`Transfer::SendFile`
/// without `sendfile`): four TLS records.
const TLS_FILE_CHUNK_BYTES: usize = 64 * 1024;

/// What a transfer does, with its state.
pub enum Transfer {
    /// RETR, binary: `sendfile(2)` from `offset` to `end`.
    SendFile {
        /// The file being sent.
        file: File,
        /// Next byte to send.
        offset: u64,
        /// File size at open time: we send exactly this much.
        end: u64,
    },
    /// RETR, ASCII: LF → CRLF.
    AsciiOut {
        /// The file being sent.
        file: File,
        /// Converted bytes not yet sent.
        buf: Vec<u8>,
        /// How much of `buf` is sent.
        pos: usize,
        /// The file is read to its end.
        eof: bool,
        /// The last byte read was CR (a following LF is already a CRLF).
        prev_cr: bool,
        /// File bytes still to read: the size at open time less the REST
        /// offset. Reaching the end of the file before that is a truncation.
        left: u64,
        /// The size at open time: the next byte read is at `end - left`.
        end: u64,
    },
    /// LIST / NLST / MLSD: lines formatted a chunk at a time as the data
    /// connection takes them, so a big directory never sits formatted in
    /// memory. The listing itself holds at most
    /// [`crate::vfs::LISTING_SORTED_MAX_HEAP_BYTES`] of names (a directory
    /// past the sort caps is streamed through a 16 KiB buffer), and `buf`
    /// at most [`LIST_CHUNK_BYTES`] plus one line.
    Listing {
        /// The session's filesystem (symlinks are resolved in its jail).
        vfs: Rc<Vfs>,
        /// The names still to write, and the open directory.
        listing: Listing,
        /// The line format.
        format: ListFormat,
        /// Formatted lines not yet sent.
        buf: Vec<u8>,
        /// How much of `buf` is sent.
        pos: usize,
    },
    /// STOR, APPE, STOU: into a temporary file beside the target.
    Stor {
        /// The temporary file and its target.
        upload: Upload,
        /// Convert CRLF → LF.
        ascii: bool,
        /// ASCII: a CR ended the previous chunk and is not written yet.
        held_cr: bool,
        /// Resume (REST n) and APPE: the part of the old file to keep,
        /// copied into the temporary file before the new bytes.
        prefill: Option<Prefill>,
        /// Binary mode: the pipe (read end, write end) through which socket
        /// pages are spliced into the file, so the bytes never cross into
        /// user space. `None` in ASCII mode or if no pipe could be made.
        pipe: Option<(OwnedFd, OwnedFd)>,
    },
}

/// Kernel buffer of a STOR's splice pipe.
const STOR_PIPE_BYTES: usize = 1024 * 1024;

/// The kept part of an existing file, copied in bounded slices (in the
/// kernel with `copy_file_range`) so that a resumed upload of a big file
/// cannot stall the loop, and the old file stays intact until the commit.
pub struct Prefill {
    /// The existing file.
    pub src: File,
    /// Bytes copied so far (also the read offset).
    pub copied: u64,
    /// Bytes to keep.
    pub len: u64,
}

/// How far a `step` got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything is moved (for STOR: the client closed its side).
    Done,
    /// The socket would block: wait for readiness.
    Blocked,
    /// The budget ran out before `WouldBlock`: call again soon.
    Budget,
}

/// Why a transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// The data connection could not be made (`425`).
    CantOpen,
    /// The peer reset or closed the data connection early (`426`).
    ConnectionLost,
    /// No progress within the stall timeout (`426`).
    Stalled,
    /// Aborted by the client (ABOR) or by shutdown (`426`).
    Aborted,
    /// The file ended before the size it had when the transfer began (it
    /// was truncated meanwhile): fewer bytes were sent than meant (`451`).
    FileShrank,
    /// The file side failed (`451`, `452`, `552`, …).
    Local(FsError),
    /// PROT P: the data connection's TLS handshake failed, or it did not
    /// resume its own control connection's TLS session (`522`, as vsftpd
    /// and FileZilla Server answer; RFC 4217 §10 leaves the code to the
    /// server).
    TlsRefused,
    /// PROT P upload: the TLS stream ended without `close_notify`, so the
    /// end of the file may be missing (`426`; the upload is handled as
    /// interrupted).
    TlsTruncated,
}

impl Transfer {
    /// RETR in binary (`sendfile`) or ASCII mode, from `offset` of a file of `size` bytes.
    pub fn retr(mut file: File, offset: u64, size: u64, ascii: bool) -> Transfer {
        if ascii {
            use std::io::{Seek, SeekFrom};
            let _ = file.seek(SeekFrom::Start(offset));
            let left = size.saturating_sub(offset);
            Transfer::AsciiOut { file, buf: Vec::new(), pos: 0, eof: left == 0, prev_cr: false, left, end: size }
        } else {
            Transfer::SendFile { file, offset: offset.min(size), end: size }
        }
    }

    /// A listing, written as it is sent.
    pub fn listing(vfs: Rc<Vfs>, listing: Listing, format: ListFormat) -> Transfer {
        Transfer::Listing { vfs, listing, format, buf: Vec::new(), pos: 0 }
    }

    /// The rest of a listing's text at once (tests look at what a listing
    /// command would send); `None` for other transfers.
    pub fn listing_text(&mut self) -> Option<Vec<u8>> {
        let Transfer::Listing { vfs, listing, format, buf, pos } = self else { return None };
        let mut text = buf.split_off(*pos);
        let mut skips = usize::MAX;
        while let Ok(true) = fill_listing(vfs, listing, *format, &mut text, usize::MAX, &mut skips) {}
        Some(text)
    }

    /// STOR into `upload`.
    pub fn stor(upload: Upload, ascii: bool) -> Transfer {
        let pipe = stor_pipe(ascii, upload.is_append());
        Transfer::Stor { upload, ascii, held_cr: false, prefill: None, pipe }
    }

    /// STOR after REST n, or APPE: keep the first `keep` bytes of `src`,
    /// then the bytes that arrive.
    pub fn stor_after(upload: Upload, ascii: bool, src: File, keep: u64) -> Transfer {
        let prefill = (keep > 0).then_some(Prefill { src, copied: 0, len: keep });
        let pipe = stor_pipe(ascii, upload.is_append());
        Transfer::Stor { upload, ascii, held_cr: false, prefill, pipe }
    }

    /// Count an upload's temp file in `metrics` while it exists.
    pub fn count_temp_file(&mut self, metrics: &std::sync::Arc<crate::metrics::Metrics>) {
        if let Transfer::Stor { upload, .. } = self {
            upload.count_temp_file(metrics);
        }
    }

    /// Bytes the client has moved so far is counted by the reactor; this is
    /// the size of a RETR (for STAT), if known.
    pub fn total(&self) -> Option<u64> {
        match self {
            Transfer::SendFile { end, .. } => Some(*end),
            _ => None,
        }
    }

    /// The data connection is not plain TCP (TLS): close an upload's splice
    /// pipe now rather than hold its descriptors and its 1 MiB of pipe
    /// buffer for nothing (`step` never splices into TLS anyway).
    pub fn no_zero_copy(&mut self) {
        if let Transfer::Stor { pipe, .. } = self {
            *pipe = None;
        }
    }

    /// An upload still copying the kept part of the old file (REST, APPE):
    /// disk work, not network bytes, so a rate limit does not apply to it.
    pub fn is_prefilling(&self) -> bool {
        matches!(self, Transfer::Stor { prefill: Some(_), .. })
    }

    /// True if bytes flow from the client to us (wait for readable).
    pub fn is_upload(&self) -> bool {
        matches!(self, Transfer::Stor { .. })
    }

    /// Move up to `budget` bytes. `scratch` is the reactor's shared buffer.
    /// `moved` is increased by the bytes moved over the network.
    pub fn step<S: DataStream>(
        &mut self,
        sock: &mut S,
        budget: usize,
        scratch: &mut [u8],
        moved: &mut u64,
    ) -> Result<Progress, TransferError> {
        match self {
            Transfer::SendFile { file, offset, end } if sock.zero_copy() => send_file(file, offset, *end, sock, budget, moved),
            Transfer::SendFile { file, offset, end } => copy_out(file, offset, *end, sock, budget, scratch, moved),
            Transfer::AsciiOut { file, buf, pos, eof, prev_cr, left: file_left, end } => {
                let mut left = budget;
                loop {
                    if *pos == buf.len() {
                        if *eof {
                            return Ok(Progress::Done);
                        }
                        if buf.capacity() == 0 {
                            buf.reserve_exact(2 * ASCII_CHUNK_BYTES);
                        }
                        buf.clear();
                        *pos = 0;
                        debug_assert!(!scratch.is_empty(), "an empty scratch would read as the end of the file");
                        // Only what the file held at open time: bytes
                        // appended meanwhile are not part of this transfer.
                        let n_max = (ASCII_CHUNK_BYTES as u64).min(*file_left) as usize;
                        let chunk = super::align::window(scratch, *end - *file_left, n_max);
                        let n = retry(|| file.read(chunk)).map_err(|e| TransferError::Local(FsError::from_io(&e)))?;
                        if n == 0 {
                            return Err(TransferError::FileShrank);
                        }
                        *file_left -= n as u64;
                        if *file_left == 0 {
                            *eof = true;
                        }
                        for &b in &chunk[..n] {
                            if b == b'\n' && !*prev_cr {
                                buf.push(b'\r');
                            }
                            buf.push(b);
                            *prev_cr = b == b'\r';
                        }
                    }
                    match write_some(sock, &buf[*pos..], &mut left, moved)? {
                        Some(n) => *pos += n,
                        None => return Ok(Progress::Blocked),
                    }
                    if left == 0 {
                        return Ok(Progress::Budget);
                    }
                }
            }
            Transfer::Listing { vfs, listing, format, buf, pos } => {
                let mut left = budget;
                let mut skips = LIST_SKIPS_PER_STEP;
                loop {
                    if *pos == buf.len() {
                        buf.clear();
                        *pos = 0;
                        let more = fill_listing(vfs, listing, *format, buf, LIST_CHUNK_BYTES, &mut skips)?;
                        if buf.is_empty() {
                            // Nothing to write: the end, or the step's
                            // names to skip are spent (its turn is over).
                            return Ok(if more { Progress::Budget } else { Progress::Done });
                        }
                    }
                    match write_some(sock, &buf[*pos..], &mut left, moved)? {
                        Some(n) => *pos += n,
                        None => return Ok(Progress::Blocked),
                    }
                    if left == 0 {
                        return Ok(if *pos == buf.len() && listing.is_done() { Progress::Done } else { Progress::Budget });
                    }
                }
            }
            Transfer::Stor { upload, ascii, held_cr, prefill, pipe } => {
                let mut left = budget;
                if let Some(p) = prefill {
                    if !copy_prefix(p, &mut upload.file, &mut left, scratch)? {
                        return Ok(Progress::Budget);
                    }
                    *prefill = None;
                    // The network's bytes begin with the next step, so that
                    // a rate limit (not applied to the copy, see
                    // `is_prefilling`) counts them from the start.
                    return Ok(Progress::Budget);
                }
                if let Some((r, w)) = pipe {
                    if sock.zero_copy() {
                        return splice_in(sock.as_raw_fd(), r, w, &upload.file, left, moved);
                    }
                }
                loop {
                    let want = scratch.len().min(left.max(1));
                    let n = match sock.read(&mut scratch[..want]) {
                        Ok(0) => {
                            if *held_cr {
                                write_file(&mut upload.file, b"\r")?;
                                *held_cr = false;
                            }
                            return Ok(Progress::Done);
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Blocked),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(lost(&e)),
                    };
                    *moved += n as u64;
                    left = left.saturating_sub(n);
                    if *ascii {
                        write_ascii_in(&mut upload.file, &mut scratch[..n], held_cr)?;
                    } else {
                        write_file(&mut upload.file, &scratch[..n])?;
                    }
                    if left == 0 {
                        return Ok(Progress::Budget);
                    }
                }
            }
        }
    }

    /// The transfer ended early (ABOR, a lost connection, a stall, a local
    /// error): an upload keeps what arrived where that destroys no file
    /// (see `Upload::interrupted`); anything else is just closed.
    pub fn interrupted(self) {
        if let Transfer::Stor { upload, .. } = self {
            upload.interrupted();
        }
    }

    /// An upload's target path and size (see `Upload::target_facts`), for
    /// the upload hook; `None` for a download or listing.
    pub fn upload_facts(&self) -> Option<io::Result<(std::path::PathBuf, u64)>> {
        match self {
            Transfer::Stor { upload, .. } => Some(upload.target_facts()),
            _ => None,
        }
    }

    /// Complete a successful transfer: for STOR, flush and rename the
    /// temporary file into place.
    pub fn finish(self) -> Result<(), TransferError> {
        match self {
            Transfer::Stor { upload, .. } => upload.commit().map_err(TransferError::Local),
            _ => Ok(()),
        }
    }
}

/// Format entries of `listing` into `out` until it holds `want` bytes or
/// `skips` names were skipped (see [`LIST_SKIPS_PER_STEP`]); `Ok(false)`
/// once the listing has no entries left. A directory that can no longer be read (a
/// streamed listing reads it as it goes), or a glob past
/// [`crate::vfs::GLOB_MAX_MATCHES`], fails the transfer rather than ending
/// the listing early as if complete.
fn fill_listing(vfs: &Vfs, listing: &mut Listing, format: ListFormat, out: &mut Vec<u8>, want: usize, skips: &mut usize) -> Result<bool, TransferError> {
    while out.len() < want {
        match listing.next_entry_within(vfs, format.needs_meta(), skips).map_err(TransferError::Local)? {
            Next::Entry(e) => write_entry(format, &e, out),
            Next::Pending => return Ok(true),
            Next::End => return Ok(false),
        }
    }
    Ok(true)
}

/// `splice(2)` cannot write to a file opened with `O_APPEND` (`EINVAL`):
/// an APPE in place takes the copy through the scratch buffer.
fn stor_pipe(ascii: bool, append: bool) -> Option<(OwnedFd, OwnedFd)> {
    if ascii || append || std::env::var_os("LEANFTPD_NO_SPLICE").is_some() {
        return None;
    }
    crate::sys::pipe(STOR_PIPE_BYTES).ok()
}

/// STOR in binary mode: socket → pipe → file with `splice(2)`, within the
/// budget. Whatever enters the pipe is drained into the file before
/// returning, so the pipe is empty between steps.
fn splice_in(sock: RawFd, r: &OwnedFd, w: &OwnedFd, file: &File, budget: usize, moved: &mut u64) -> Result<Progress, TransferError> {
    let mut left = budget;
    loop {
        let n = match crate::sys::splice(sock, w.as_raw_fd(), left.clamp(1, STOR_PIPE_BYTES)) {
            Ok(0) => return Ok(Progress::Done),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(TransferError::ConnectionLost),
        };
        *moved += n as u64;
        let mut in_pipe = n;
        while in_pipe > 0 {
            match crate::sys::splice(r.as_raw_fd(), file.as_raw_fd(), in_pipe) {
                Ok(0) => return Err(TransferError::Local(FsError::Io(libc::EIO))),
                Ok(k) => in_pipe -= k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TransferError::Local(FsError::from_io(&e))),
            }
        }
        left = left.saturating_sub(n);
        if left == 0 {
            return Ok(Progress::Budget);
        }
    }
}

/// Copy the kept prefix within the budget; true when complete.
fn copy_prefix(p: &mut Prefill, dst: &mut File, left: &mut usize, scratch: &mut [u8]) -> Result<bool, TransferError> {
    use std::os::unix::fs::FileExt;
    while p.copied < p.len {
        if *left == 0 {
            return Ok(false);
        }
        let want = ((p.len - p.copied) as usize).min(*left);
        let n = match crate::sys::copy_file_range(p.src.as_raw_fd(), &mut p.copied, dst.as_raw_fd(), want) {
            Ok(0) => return Err(TransferError::Local(FsError::Io(libc::EIO))), // the old file shrank
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)) => {
                // No in-kernel copy here: through the scratch buffer.
                // Read and written at the same offset: one window serves both.
                let chunk = super::align::window(scratch, p.copied, want);
                let n = retry(|| p.src.read_at(chunk, p.copied)).map_err(|e| TransferError::Local(FsError::from_io(&e)))?;
                if n == 0 {
                    return Err(TransferError::Local(FsError::Io(libc::EIO)));
                }
                write_file(dst, &chunk[..n])?;
                p.copied += n as u64;
                n
            }
            Err(e) => return Err(TransferError::Local(FsError::from_io(&e))),
        };
        *left = left.saturating_sub(n);
    }
    Ok(true)
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn write_file(file: &mut File, bytes: &[u8]) -> Result<(), TransferError> {
    file.write_all(bytes).map_err(|e| TransferError::Local(FsError::from_io(&e)))
}

/// CRLF → LF; a CR at the end of a chunk is held until the next byte is known.
fn write_ascii_in(file: &mut File, chunk: &mut [u8], held_cr: &mut bool) -> Result<(), TransferError> {
    let mut w = 0;
    let mut i = 0;
    if *held_cr {
        *held_cr = false;
        if chunk.first() != Some(&b'\n') {
            write_file(file, b"\r")?;
        }
    }
    while i < chunk.len() {
        let b = chunk[i];
        if b == b'\r' {
            match chunk.get(i + 1) {
                Some(&b'\n') => {
                    i += 1;
                    continue;
                }
                None => {
                    *held_cr = true;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        chunk[w] = b;
        w += 1;
        i += 1;
    }
    write_file(file, &chunk[..w])
}

/// Write from `bytes` within the budget. `Ok(None)` on WouldBlock.
fn write_some<S: Write>(sock: &mut S, bytes: &[u8], left: &mut usize, moved: &mut u64) -> Result<Option<usize>, TransferError> {
    let take = bytes.len().min((*left).max(1));
    loop {
        match sock.write(&bytes[..take]) {
            Ok(0) => return Err(TransferError::ConnectionLost),
            Ok(n) => {
                *left = left.saturating_sub(n);
                *moved += n as u64;
                return Ok(Some(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(lost(&e)),
        }
    }
}

/// RETR in binary mode where `sendfile` cannot serve (TLS): read the file
/// at `offset` into the shared scratch and write it; the stream takes what
/// it can encrypt, and what it did not take is read again next time (from
/// the page cache), so the transfer holds no buffer of its own.
fn copy_out<S: Write>(
    file: &File,
    offset: &mut u64,
    end: u64,
    sock: &mut S,
    budget: usize,
    scratch: &mut [u8],
    moved: &mut u64,
) -> Result<Progress, TransferError> {
    use std::os::unix::fs::FileExt;
    let mut left = budget;
    while *offset < end {
        // Ciphertext of the last write still waits for the socket: reading
        // the file now would be wasted (the stream would refuse it and the
        // bytes be read again next time), once per socket-full event.
        match sock.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(lost(&e)),
        }
        let want = ((end - *offset) as usize).min(TLS_FILE_CHUNK_BYTES).min(left.max(1));
        let chunk = super::align::window(scratch, *offset, want);
        let n = retry(|| file.read_at(chunk, *offset)).map_err(|e| TransferError::Local(FsError::from_io(&e)))?;
        if n == 0 {
            return Err(TransferError::FileShrank);
        }
        match write_some(sock, &chunk[..n], &mut left, moved)? {
            Some(k) => *offset += k as u64,
            None => return Ok(Progress::Blocked),
        }
        if left == 0 && *offset < end {
            return Ok(Progress::Budget);
        }
    }
    Ok(Progress::Done)
}

fn send_file<S: AsRawFd>(
    file: &File,
    offset: &mut u64,
    end: u64,
    sock: &mut S,
    budget: usize,
    moved: &mut u64,
) -> Result<Progress, TransferError> {
    let mut left = budget;
    while *offset < end {
        let count = ((end - *offset) as usize).min(left.max(1));
        let before = *offset;
        match crate::sys::sendfile(sock.as_raw_fd(), file.as_raw_fd(), offset, count) {
            // The file shrank under us: what was sent is less than the
            // file held when the transfer began, and `226` would say it
            // was all.
            Ok(0) => return Err(TransferError::FileShrank),
            Ok(_) => {
                let n = (*offset - before) as usize;
                *moved += n as u64;
                left = left.saturating_sub(n);
                if left == 0 && *offset < end {
                    return Ok(Progress::Budget);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) => TransferError::ConnectionLost,
                    _ => TransferError::Local(FsError::from_io(&e)),
                })
            }
        }
    }
    Ok(Progress::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpfile(name: &str) -> (std::path::PathBuf, File) {
        let p = std::env::temp_dir().join(format!("leanftpd-xfer-{}-{name}", std::process::id()));
        let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&p).unwrap();
        (p, f)
    }

    #[test]
    fn ascii_in_turns_crlf_into_lf_across_chunk_boundaries() {
        let (p, mut f) = tmpfile("ascii-in");
        let mut held = false;
        let mut a = b"one\r".to_vec();
        let mut b = b"\ntwo\r\nlone\rcr\r".to_vec();
        write_ascii_in(&mut f, &mut a, &mut held).unwrap();
        write_ascii_in(&mut f, &mut b, &mut held).unwrap();
        assert!(held);
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"one\ntwo\nlone\rcr");
        std::fs::remove_file(p).unwrap();
    }

    /// A stream that still holds ciphertext (`flush` would block) until
    /// `blocked` flushes are over, then takes `per_write` bytes a write.
    struct Backlogged {
        blocked: usize,
        writes: usize,
        took: Vec<u8>,
        per_write: usize,
    }

    impl Write for Backlogged {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            let n = b.len().min(self.per_write);
            self.took.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            if self.blocked > 0 {
                self.blocked -= 1;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        }
    }

    #[test]
    fn copy_out_reads_nothing_while_ciphertext_waits_and_then_sends_every_byte_once() {
        let (p, mut f) = tmpfile("copy-out");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let mut scratch = vec![0u8; 128 * 1024];
        let mut s = Backlogged { blocked: 1, writes: 0, took: Vec::new(), per_write: 50_000 };
        let (mut offset, mut moved) = (0u64, 0u64);
        let r = copy_out(&f, &mut offset, data.len() as u64, &mut s, 256 * 1024, &mut scratch, &mut moved).unwrap();
        assert!(matches!(r, Progress::Blocked), "{r:?}");
        assert_eq!((s.writes, offset, moved), (0, 0, 0), "nothing is read or written while ciphertext waits");
        loop {
            match copy_out(&f, &mut offset, data.len() as u64, &mut s, 256 * 1024, &mut scratch, &mut moved).unwrap() {
                Progress::Done => break,
                Progress::Budget | Progress::Blocked => {}
            }
        }
        assert_eq!(moved, data.len() as u64);
        assert!(s.took == data, "every byte once, in order");
        std::fs::remove_file(p).unwrap();
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;
    use crate::vfs::VirtualPath;
    use std::os::unix::net::UnixStream;

    /// A jail with `n` files `d/f0000`…, and its Vfs.
    fn tree(tag: &str, n: usize) -> (std::path::PathBuf, Rc<Vfs>) {
        let root = std::env::temp_dir().join(format!("leanftpd-listing-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("d")).unwrap();
        for i in 0..n {
            std::fs::write(root.join(format!("d/f{i:04}")), b"1").unwrap();
        }
        let vfs = Rc::new(Vfs::open(&root, false).unwrap());
        (root, vfs)
    }

    fn listing(vfs: &Rc<Vfs>, format: ListFormat) -> Transfer {
        let p = VirtualPath::root().child(b"d").unwrap();
        Transfer::listing(vfs.clone(), vfs.open_listing(&p).unwrap(), format)
    }

    #[test]
    fn a_listing_is_formatted_a_chunk_at_a_time_as_it_is_sent() {
        let (root, vfs) = tree("chunks", 2000);
        let mut t = listing(&vfs, ListFormat::Long { now_unix: 0 });
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut scratch = [0u8; 64];
        let mut moved = 0;
        // A small budget: one chunk is formatted, not the whole listing.
        assert_eq!(t.step(&mut a, 1000, &mut scratch, &mut moved), Ok(Progress::Budget));
        assert_eq!(moved, 1000);
        let Transfer::Listing { buf, listing, .. } = &t else { unreachable!() };
        assert!(buf.len() >= LIST_CHUNK_BYTES && buf.len() < LIST_CHUNK_BYTES + 200, "{}", buf.len());
        let formatted_lines = buf.iter().filter(|&&c| c == b'\n').count();
        assert_eq!(listing.remaining(), Some(2000 - formatted_lines));
        // Entries removed now, before their lines were formatted, are
        // skipped; the ones already formatted still go out whole.
        for i in 1000..2000 {
            std::fs::remove_file(root.join(format!("d/f{i:04}"))).unwrap();
        }
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            b.read_to_end(&mut all).unwrap();
            all
        });
        loop {
            match t.step(&mut a, 64 * 1024, &mut scratch, &mut moved) {
                Ok(Progress::Done) => break,
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(e) => panic!("{e:?}"),
            }
        }
        drop(a);
        let text = String::from_utf8(reader.join().unwrap()).unwrap();
        let names: Vec<&str> = text.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
        let want: Vec<String> = (0..1000).map(|i| format!("f{i:04}")).collect();
        assert_eq!(names, want);
        assert_eq!(moved as usize, text.len());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_directory_past_the_sort_cap_is_sent_whole_in_directory_order() {
        let n = crate::vfs::LISTING_SORT_MAX_ENTRIES + 1;
        let (root, vfs) = tree("streamed", n);
        for format in [ListFormat::Names, ListFormat::Long { now_unix: 0 }] {
            let mut t = listing(&vfs, format);
            let Transfer::Listing { listing: l, .. } = &t else { unreachable!() };
            assert!(!l.is_sorted());
            let text = String::from_utf8(t.listing_text().unwrap()).unwrap();
            let mut names: Vec<&str> = text.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
            names.sort_unstable();
            let want: Vec<String> = (0..n).map(|i| format!("f{i:04}")).collect();
            assert_eq!(names, want, "every entry exactly once");
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_glob_matching_little_in_a_streamed_directory_yields_its_turn_per_fill() {
        let n = crate::vfs::LISTING_SORT_MAX_ENTRIES + 1;
        let (root, vfs) = tree("glob", n);
        std::fs::write(root.join("d/match"), b"1").unwrap();
        let p = VirtualPath::root().child(b"d").unwrap();
        let glob = crate::vfs::glob::Glob::new(b"m*").unwrap();
        let mut t = Transfer::listing(vfs.clone(), vfs.open_glob(&p, glob).unwrap(), ListFormat::Names);
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let (mut scratch, mut moved, mut turns) = ([0u8; 64], 0, 0);
        // Each step skips at most LIST_SKIPS_PER_STEP names, then gives the
        // loop back (Budget), whether it wrote something or not.
        loop {
            turns += 1;
            match t.step(&mut a, 64 * 1024, &mut scratch, &mut moved) {
                Ok(Progress::Done) => break,
                Ok(Progress::Budget) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(turns > n / LIST_SKIPS_PER_STEP, "{turns} turns for {n} names");
        drop(a);
        let mut text = Vec::new();
        b.read_to_end(&mut text).unwrap();
        assert_eq!(text, b"match\r\n");
        assert_eq!(moved, 7);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn nlst_reads_no_metadata_and_mlsd_has_facts() {
        let (root, vfs) = tree("formats", 3);
        let mut t = listing(&vfs, ListFormat::Names);
        assert_eq!(t.listing_text().unwrap(), b"f0000\r\nf0001\r\nf0002\r\n");
        let mut t = listing(&vfs, ListFormat::Mlsd { facts: crate::vfs::listing::fact::TYPE, writable: false });
        assert_eq!(t.listing_text().unwrap(), b"type=file; f0000\r\ntype=file; f0001\r\ntype=file; f0002\r\n");
        let _ = std::fs::remove_dir_all(root);
    }
}
