//! Thin, safe wrappers around the Linux system calls that leanftpd needs
//! and that `std` does not expose (`openat2`, `*at` calls on directory
//! handles, `getdents64`, `sendfile`, `getrandom`, timestamps).
//!
//! This is the only module of the crate that contains `unsafe` code. Every
//! wrapper takes borrowed file descriptors and `&CStr` names, retries on
//! `EINTR`, and turns a failure into an [`io::Error`] carrying the raw
//! errno, so that callers (notably [`crate::vfs::FsError::from_io`]) can map
//! it in one place.
//!
//! It owns no state and never decides policy: it does not know about the
//! jail, FTP replies, or which paths are allowed. The jail rules live in
//! `crate::vfs`, which must go through [`openat2_in_root`] for every lookup.
//!
//! # Invariants
//! - Every descriptor returned is owned (`OwnedFd`) and has `O_CLOEXEC` set.
//! - [`openat2_in_root`] always passes `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`;
//!   there is no way to call `openat2` with weaker resolve flags from here.
//! - No wrapper follows a path from the process's working directory
//!   (`AT_FDCWD` is never used).
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `struct open_how` from `<linux/openat2.h>` (libc marks its own copy
/// `#[non_exhaustive]`, so it cannot be built outside libc).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// How many times [`openat2_in_root`] retries when the kernel reports a
/// concurrent rename/mount race with `EAGAIN`.
const OPENAT2_EAGAIN_RETRIES: u32 = 16;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn is_eintr(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINTR)
}

/// Run `f` until it does not fail with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if is_eintr(&e) => continue,
            other => return other,
        }
    }
}

/// Open `rel` beneath the directory `root` with
/// `openat2(root, rel, {flags | O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS})`.
///
/// `..` components and symbolic links (absolute or relative) are resolved as
/// if `root` were `/`, so the result is always inside `root`'s tree; magic
/// links (`/proc/*/fd/*`) fail with `ELOOP`. `mode` is only passed when
/// `flags` contains `O_CREAT` or `O_TMPFILE` (the kernel rejects it
/// otherwise). A leading `/` in `rel` is harmless: it names `root` too.
/// `EAGAIN` (the kernel's answer to a racing rename) is retried a few times.
pub fn openat2_in_root(
    root: BorrowedFd<'_>,
    rel: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC;
    let wants_mode = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let how = OpenHow {
        // The kernel reads the flags as an unsigned 64-bit value; a negative
        // c_int must not be sign-extended into unknown high bits.
        flags: u64::from(flags as u32),
        mode: if wants_mode { u64::from(mode) } else { 0 },
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    let mut eagain = 0;
    loop {
        // SAFETY: `rel` is a valid NUL-terminated string and `how` a valid
        // `open_how` of the size we pass; both outlive the call. The kernel
        // does not retain either pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                rel.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel just returned this new descriptor to us and
            // nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) if eagain < OPENAT2_EAGAIN_RETRIES => eagain += 1,
            _ => return Err(err),
        }
    }
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`: open a single name relative
/// to an already-jailed directory handle. Callers pass `O_NOFOLLOW` when the
/// final name must not be a symbolic link.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    retry(|| {
        // SAFETY: `name` is NUL-terminated and valid for the call.
        let fd = cvt(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })?;
        // SAFETY: fresh descriptor returned by the kernel, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

/// `sendfile(out_fd, in_fd, &offset, count)`: copy up to `count` bytes from
/// `in_fd` at `*offset` to `out_fd` inside the kernel, advancing `*offset`
/// by the number of bytes sent (which is returned; 0 means end of file).
/// A non-blocking `out_fd` that is full yields `ErrorKind::WouldBlock`.
pub fn sendfile(out_fd: RawFd, in_fd: RawFd, offset: &mut u64, count: usize) -> io::Result<usize> {
    let mut off: libc::off_t = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    loop {
        // SAFETY: `off` is a valid, exclusively borrowed off_t for the call;
        // invalid descriptors are reported by the kernel as EBADF.
        let ret = unsafe { libc::sendfile(out_fd, in_fd, &mut off, count) };
        if ret >= 0 {
            *offset = off as u64;
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        if !is_eintr(&err) {
            return Err(err);
        }
    }
}

/// `mkdirat(dir, name, mode)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and valid for the call.
    retry(|| {
        cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
            .map(drop)
    })
}

/// `mkfifoat(dir, name, mode)` (used by tests to check that nothing blocks
/// on a FIFO).
pub fn mkfifoat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and valid for the call.
    retry(|| {
        cvt(unsafe { libc::mkfifoat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
            .map(drop)
    })
}

/// `unlinkat(dir, name, flags)`; pass `libc::AT_REMOVEDIR` to remove a
/// directory, 0 for anything else (a directory then fails with `EISDIR`).
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and valid for the call.
    retry(|| cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop))
}

/// `renameat(old_dir, old_name, new_dir, new_name)`: atomically replaces an
/// existing non-directory `new_name`. Neither name is followed if it is a
/// symbolic link (the link itself is renamed or replaced).
pub fn renameat(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
) -> io::Result<()> {
    renameat2(old_dir, old_name, new_dir, new_name, 0)
}

/// `renameat2` with `flags` (0 is plain `renameat`).
fn renameat2(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
    flags: libc::c_uint,
) -> io::Result<()> {
    retry(|| {
        // SAFETY: both names are NUL-terminated and valid for the call.
        cvt(unsafe {
            libc::renameat2(old_dir.as_raw_fd(), old_name.as_ptr(), new_dir.as_raw_fd(), new_name.as_ptr(), flags)
        })
        .map(drop)
    })
}

/// `fstatat(dir, name, flags)`; pass `libc::AT_SYMLINK_NOFOLLOW` for lstat
/// semantics, `libc::AT_EMPTY_PATH` with an empty name to stat `dir` itself.
pub fn fstatat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    retry(|| {
        // SAFETY: `st` points to writable storage for one `stat`; `name` is
        // NUL-terminated.
        cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), flags) })
            .map(drop)
    })?;
    // SAFETY: fstatat succeeded, so the kernel filled in the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// `fstat(fd)`; works on `O_PATH` descriptors too.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` points to writable storage for one `stat`.
    retry(|| cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) }).map(drop))?;
    // SAFETY: fstat succeeded, so the kernel filled in the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// `faccessat(dir, name, mode, AT_EACCESS)`: check access with the effective
/// ids (e.g. `name = "."`, `mode = X_OK` asks "may we search `dir`?").
pub fn faccessat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and valid for the call.
    retry(|| {
        cvt(unsafe { libc::faccessat(dir.as_raw_fd(), name.as_ptr(), mode, libc::AT_EACCESS) })
            .map(drop)
    })
}

/// Clear `O_NONBLOCK` on `fd` (other status flags are kept).
pub fn clear_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads descriptor state.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: F_SETFL takes an int argument.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) })?;
    }
    Ok(())
}

fn mtime_times(unix_secs: i64) -> [libc::timespec; 2] {
    [
        // atime: leave unchanged.
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: unix_secs as libc::time_t,
            tv_nsec: 0,
        },
    ]
}

/// `futimens(fd, {UTIME_OMIT, unix_secs})`: set the modification time of an
/// open (non-`O_PATH`) file, leaving the access time alone.
pub fn futimens(fd: BorrowedFd<'_>, unix_secs: i64) -> io::Result<()> {
    let times = mtime_times(unix_secs);
    // SAFETY: `times` is an array of two valid timespecs.
    retry(|| cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }).map(drop))
}

/// `utimensat(dir, name, {UTIME_OMIT, unix_secs}, flags)`: set the
/// modification time of `name` relative to `dir`. With an empty `name` and
/// `libc::AT_EMPTY_PATH` it acts on `dir` itself (works for `O_PATH`
/// descriptors on kernels that support it; older ones answer `EINVAL`).
pub fn utimensat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    unix_secs: i64,
    flags: libc::c_int,
) -> io::Result<()> {
    let times = mtime_times(unix_secs);
    // SAFETY: `name` is NUL-terminated; `times` is two valid timespecs.
    retry(|| {
        cvt(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), times.as_ptr(), flags) })
            .map(drop)
    })
}

/// Fill `buf` with bytes from the kernel's CSPRNG (`getrandom(2)`).
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let ret = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if is_eintr(&err) {
                continue;
            }
            return Err(err);
        }
        filled += ret as usize;
    }
    Ok(())
}

/// Size of the header of a `struct linux_dirent64` record: `d_ino` (u64),
/// `d_off` (i64), `d_reclen` (u16), `d_type` (u8); the NUL-terminated name
/// follows.
const DIRENT64_HEADER_BYTES: usize = 19;

/// The smallest buffer [`DirReader`] accepts. `getdents64` fails with
/// `EINVAL` when the next record does not fit, and a record is at most
/// `DIRENT64_HEADER_BYTES` + a 255-byte name + its NUL, padded to 8: 280
/// bytes; 512 leaves room for odd filesystems.
pub const DIR_READER_MIN_BUFFER_BYTES: usize = 512;

/// One `getdents64(fd, buf)`, retried on `EINTR`: the number of bytes of
/// records written into `buf`, 0 at the end of the directory.
fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes;
        // the kernel writes at most that many.
        let ret = unsafe { libc::syscall(libc::SYS_getdents64, fd.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        if !is_eintr(&err) {
            return Err(err);
        }
    }
}

/// The record at the start of `recs` (the unread part of a `getdents64`
/// result): its length and the range of its name within `recs`. `None` if
/// fewer than a header's bytes are left; an error for a record whose length
/// does not fit what the kernel returned (never seen, but not trusted).
fn dirent64_record(recs: &[u8]) -> io::Result<Option<(usize, std::ops::Range<usize>)>> {
    let Some(header) = recs.get(..DIRENT64_HEADER_BYTES) else { return Ok(None) };
    let reclen = usize::from(u16::from_ne_bytes([header[16], header[17]]));
    if reclen < DIRENT64_HEADER_BYTES || reclen > recs.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed getdents64 record"));
    }
    let name_area = &recs[DIRENT64_HEADER_BYTES..reclen];
    let name_len = name_area.iter().position(|&b| b == 0).unwrap_or(name_area.len());
    Ok(Some((reclen, DIRENT64_HEADER_BYTES..DIRENT64_HEADER_BYTES + name_len)))
}

/// Whether a directory entry's name is one a listing shows at all: not
/// `.`, `..` or empty.
fn is_listed_name(name: &[u8]) -> bool {
    name != b"." && name != b".." && !name.is_empty()
}

/// An open directory read a few entries at a time with `getdents64`
/// through one buffer of fixed size, allocated once: however many entries
/// the directory has, reading it never holds more than that buffer.
///
/// Names come in the order the filesystem returns them, without `.` and
/// `..`; a name never contains `/` or NUL. [`DirReader::rewind`] starts
/// over from the first entry (`lseek(fd, 0, SEEK_SET)`, which is what
/// `rewinddir(3)` does).
pub struct DirReader {
    /// The directory, opened `O_RDONLY | O_DIRECTORY` (not `O_PATH`).
    fd: OwnedFd,
    /// Records of the last `getdents64`.
    buf: Box<[u8]>,
    /// How many bytes of `buf` hold records.
    len: usize,
    /// The offset in `buf` of the next record to hand out.
    pos: usize,
}

impl std::fmt::Debug for DirReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirReader")
            .field("fd", &self.fd)
            .field("buffer_bytes", &self.buf.len())
            .field("pending_bytes", &(self.len - self.pos))
            .finish()
    }
}

impl DirReader {
    /// Read the directory open on `fd` (`O_RDONLY | O_DIRECTORY`) from its
    /// current position, through a buffer of `buffer_bytes` (raised to
    /// [`DIR_READER_MIN_BUFFER_BYTES`] if smaller).
    pub fn new(fd: OwnedFd, buffer_bytes: usize) -> DirReader {
        let size = buffer_bytes.max(DIR_READER_MIN_BUFFER_BYTES);
        DirReader { fd, buf: vec![0u8; size].into_boxed_slice(), len: 0, pos: 0 }
    }

    /// The directory's descriptor (for `fstatat` of the names read).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Bytes of heap this reader holds: its buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Give up the buffer and keep the directory's descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Start again from the first entry: `lseek(fd, 0, SEEK_SET)`, and
    /// forget the records still buffered.
    pub fn rewind(&mut self) -> io::Result<()> {
        // SAFETY: lseek takes no pointers; a bad descriptor is EBADF.
        let ret = unsafe { libc::lseek(self.fd.as_raw_fd(), 0, libc::SEEK_SET) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        self.len = 0;
        self.pos = 0;
        Ok(())
    }

    /// The next name (`.` and `..` skipped), lent until the next call;
    /// `Ok(None)` at the end of the directory. Calls `getdents64` only
    /// when the buffered records are used up.
    pub fn next_name(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            match dirent64_record(&self.buf[self.pos..self.len])? {
                Some((reclen, name)) => {
                    let at = self.pos;
                    self.pos += reclen;
                    let name = at + name.start..at + name.end;
                    if is_listed_name(&self.buf[name.clone()]) {
                        return Ok(Some(&self.buf[name]));
                    }
                }
                None => {
                    self.pos = 0;
                    self.len = 0;
                    let n = getdents64(self.fd.as_fd(), &mut self.buf)?;
                    if n == 0 {
                        return Ok(None);
                    }
                    self.len = n.min(self.buf.len());
                }
            }
        }
    }
}

/// Call `f` with every name of the directory open on `dir` (opened with
/// `O_RDONLY | O_DIRECTORY`, not `O_PATH`), read with `getdents64` through
/// one 32 KiB buffer, skipping `.` and `..`, in the order the filesystem
/// returns them. A name never contains `/` or NUL. Reads from the
/// descriptor's current position, so pass a freshly opened descriptor.
/// Names are lent, not allocated. (Listings use [`DirReader`], which can
/// stop and resume; this is the whole-directory form of the same reading.)
pub fn read_dir_names(dir: BorrowedFd<'_>, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = getdents64(dir, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut pos = 0;
        while let Some((reclen, name)) = dirent64_record(&buf[pos..n])? {
            let name = &buf[pos + name.start..pos + name.end];
            if is_listed_name(name) {
                f(name);
            }
            pos += reclen;
        }
    }
}

/// `renameat2(…, RENAME_NOREPLACE)`: like `renameat`, but fails with
/// `EEXIST` instead of replacing an existing `new_name` (STOU must never
/// overwrite a file created meanwhile).
pub fn renameat_noreplace(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
) -> io::Result<()> {
    renameat2(old_dir, old_name, new_dir, new_name, libc::RENAME_NOREPLACE)
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: an exclusive advisory lock, refused at
/// once (`EWOULDBLOCK`) when another open file description holds one. It
/// lasts until every descriptor of this description is closed.
pub fn flock_exclusive_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: a valid descriptor for the duration of the call.
        let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !is_eintr(&err) {
            return Err(err);
        }
    }
}

/// `copy_file_range(in, &in_off, out, NULL, len)`: copy inside the kernel
/// (a reflink on filesystems that can) from `in_fd` at `*in_off` to
/// `out_fd` at its file position. Used to carry the kept part of a file
/// into a resumed or appended upload's temporary file.
pub fn copy_file_range(in_fd: RawFd, in_off: &mut u64, out_fd: RawFd, len: usize) -> io::Result<usize> {
    let mut off: libc::loff_t = *in_off as libc::loff_t;
    // SAFETY: `off` is a valid loff_t for the duration of the call; a null
    // output offset means "use and advance the file position".
    let n = unsafe { libc::copy_file_range(in_fd, &mut off, out_fd, std::ptr::null_mut(), len, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *in_off = off as u64;
    Ok(n as usize)
}

/// `SO_OOBINLINE` on a control socket: clients send ABOR (or the Telnet
/// "Synch" before it) as TCP urgent data — Python's ftplib sends the whole
/// `ABOR\r\n` with `MSG_OOB` — and without this option the kernel would take
/// the urgent byte (the final LF) out of the stream, so the line would never
/// end.
pub fn set_oobinline(fd: RawFd) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_OOBINLINE, 1)
}

/// `listen(2)` again on a listening socket: Linux then takes the new
/// backlog (capped by `net.core.somaxconn`).
pub fn set_backlog(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: plain system call on a descriptor the caller owns.
    cvt(unsafe { libc::listen(fd, backlog) }).map(|_| ())
}

/// `SO_SNDBUF`: the kernel's send buffer for a socket, in bytes (Linux
/// doubles the value for its bookkeeping and stops autotuning it).
pub fn set_send_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes.min(libc::c_int::MAX as usize) as libc::c_int)
}

/// `SO_RCVBUF`: the kernel's receive buffer for a socket, in bytes (Linux
/// doubles the value and stops autotuning it).
pub fn set_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes.min(libc::c_int::MAX as usize) as libc::c_int)
}

/// Overwrite `buf` with zeros in a way the compiler may not elide as a
/// dead store (a password about to be freed).
pub fn zeroize(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference into the
        // slice. A volatile write cannot be removed like a plain one.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// `pipe2(O_NONBLOCK | O_CLOEXEC)`, grown to `size` bytes if the system
/// allows (`F_SETPIPE_SZ`; the default 64 KiB is kept otherwise): the
/// kernel buffer through which STOR splices socket pages into the file.
pub fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: plain fcntl on a descriptor we own.
    let _ = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
    Ok((r, w))
}

/// `splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)`:
/// move up to `len` bytes between a socket or file and a pipe without
/// copying them through user space. `Ok(0)` means end of input.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets mean "use the file positions"; no memory is passed.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `send(2)` with `MSG_MORE`: the data waits in the socket for more (here:
/// the FIN of the `close` that follows), instead of leaving at once.
pub fn send_more(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_MORE | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `TCP_NODELAY` on a socket. Set on a listening socket, Linux passes it
/// on to every accepted socket, which saves a system call per connection.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// A listening TCP socket on `addr` with `SO_REUSEPORT` (and
/// `SO_REUSEADDR`, as `std` sets it), non-blocking and close-on-exec.
///
/// Why: with `--workers N`, every reactor has its own listening socket on
/// the one control port, and the kernel spreads incoming connections over
/// them by a hash of the 4-tuple (Linux ≥ 3.9, `socket(7)`), so no lock
/// and no shared accept queue sit between the workers. Every socket of the
/// group must set the option before `bind`, which `std` cannot do; hence
/// this call (it is not worth a crate: `socket2` would do the same four
/// system calls). Passive listeners never use it: two of them on one port
/// would let another worker's listener take a client's data connection.
///
/// `first`: the first socket of a group binds before it sets the option,
/// so its `bind` fails with `EADDRINUSE` if anything else holds the port
/// (another server: `SO_REUSEPORT` would otherwise let it share our
/// connections, if it runs as the same user), and a port 0 gets a port
/// no one uses; the option, set before `listen`, lets the others join.
pub fn listen_reuseport(addr: std::net::SocketAddr, backlog: i32, first: bool) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain system call; the descriptor is owned at once.
    let raw = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int_option(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if !first {
        set_int_option(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let ret = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: an all-zero `sockaddr_in` is valid; fields are set below.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            // SAFETY: `sin` lives across the call and its size is passed.
            unsafe {
                libc::bind(raw, (&sin as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: an all-zero `sockaddr_in6` is valid; fields are set below.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: `sin6` lives across the call and its size is passed.
            unsafe {
                libc::bind(raw, (&sin6 as *const libc::sockaddr_in6).cast(), std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    };
    cvt(ret)?;
    if first {
        set_int_option(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    // SAFETY: plain system call on a descriptor we own.
    cvt(unsafe { libc::listen(raw, backlog) })?;
    Ok(std::net::TcpListener::from(fd))
}

/// `shutdown(fd, SHUT_RDWR)`: end both directions of a connected socket
/// without closing the descriptor, so that the thread that owns it sees
/// end-of-file and closes it itself (used by one worker to evict another
/// worker's session; the caller guarantees `fd` is still that socket).
pub fn shutdown_both(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain system call; it neither frees nor reuses `fd`.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }).map(drop)
}

/// `setsockopt` of an `int` option.
fn set_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// What a descriptor handed in by a service manager is (socket
/// activation, `sd_listen_fds(3)`): `sd_is_socket_inet(3)`'s checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InheritedKind {
    /// An `AF_INET`/`AF_INET6` `SOCK_STREAM` socket in the listening state.
    TcpListener,
    /// A TCP socket that is not listening (`Accept=yes` hands in connections).
    TcpNotListening,
    /// A socket of another family or type (`AF_UNIX`, UDP, …).
    OtherSocket {
        /// `SO_DOMAIN`.
        domain: libc::c_int,
        /// `SO_TYPE`.
        kind: libc::c_int,
    },
    /// Not a socket at all (a file, a pipe).
    NotSocket,
}

/// Take descriptor `fd`, inherited from the process that executed us (the
/// service manager's `LISTEN_FDS`), as an owned descriptor with
/// `FD_CLOEXEC` set, so that it is closed on drop and not passed on.
///
/// # Errors
/// `EBADF` when `fd` is not open.
///
/// # Safety of the ownership
/// The caller promises that nothing else in the process owns `fd`: it is
/// only called once per descriptor, at start-up, for the range the
/// environment names (which std never uses: it opens no descriptor of its
/// own before `main`).
pub(crate) fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD/F_SETFD only read and set the descriptor's flags.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    }
    // SAFETY: `fd` is open (F_GETFD succeeded) and, by the caller's
    // promise, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What `fd` is: a listening TCP socket or something else.
pub fn inherited_kind(fd: BorrowedFd<'_>) -> io::Result<InheritedKind> {
    let st = fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Ok(InheritedKind::NotSocket);
    }
    let raw = fd.as_raw_fd();
    let domain = get_int_option(raw, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = get_int_option(raw, libc::SOL_SOCKET, libc::SO_TYPE)?;
    if !(domain == libc::AF_INET || domain == libc::AF_INET6) || kind != libc::SOCK_STREAM {
        return Ok(InheritedKind::OtherSocket { domain, kind });
    }
    if get_int_option(raw, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        return Ok(InheritedKind::TcpNotListening);
    }
    Ok(InheritedKind::TcpListener)
}

/// `getsockopt` of an `int` option.
fn get_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` outlive the call; `len` is `value`'s size.
    cvt(unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) })?;
    Ok(value)
}

/// `CLOCK_MONOTONIC` in microseconds: the clock systemd's `RELOADING=1`
/// notification wants in `MONOTONIC_USEC=` (`sd_notify(3)`); `Instant` is
/// this clock too but does not show its value.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` outlives the call; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000) + (ts.tv_nsec as u64) / 1_000
}

/// Give freed heap memory back to the system (glibc's `malloc_trim`, which
/// also releases whole free pages inside every arena). Called after a peak
/// of sessions has gone, so that RSS returns towards its baseline.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `pidfd_open(pid, 0)` (Linux ≥ 5.3): a descriptor that becomes readable
/// when the process `pid` exits, so the reactor's poll can wait for a child
/// like for a socket (no SIGCHLD handler, no `waitpid(-1)` that would reap
/// another part's children). `O_CLOEXEC` is always set by the kernel.
///
/// `pid` must be an unreaped child of this process: only then can its
/// number not have been reused (a zombie keeps it).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signal the process the pidfd
/// names, never another one that took over its number.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a null `siginfo` is allowed (the kernel fills one in as for kill(2)).
    let r = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0 as libc::c_uint)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `kill(-pgid, sig)`: signal every process of the group `pgid`. Only for
/// a group whose leader is an unreaped child of ours (then the number
/// cannot have been reused).
pub fn kill_process_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain system call with integer arguments.
    cvt(unsafe { libc::kill(-pgid, sig) }).map(drop)
}

/// Set `FD_CLOEXEC` on every descriptor from `first` up (nothing is
/// closed): `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)` (Linux 5.11),
/// or one `fcntl` per descriptor listed in `/proc/self/fd` on an older
/// kernel. For descriptors inherited from whoever started the process,
/// which the kernel would otherwise pass on to every program it runs.
pub fn set_cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: plain system call with integer arguments; it changes flags only.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) {
            fds.push(fd);
        }
    }
    for fd in fds.into_iter().filter(|&fd| fd >= first) {
        // SAFETY: fcntl on a descriptor number; one that was closed
        // meanwhile (the directory's own) fails with EBADF, ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::OpenOptionsExt;

    fn cdir() -> std::fs::File {
        std::fs::File::open("/").unwrap()
    }

    #[test]
    fn getrandom_fills_whole_buffer_with_varying_bytes() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        getrandom(&mut a).unwrap();
        getrandom(&mut b).unwrap();
        assert_ne!(a, b);
        getrandom(&mut []).unwrap();
    }

    #[test]
    fn openat2_resolves_dotdot_at_root_to_root() {
        let root = cdir();
        let fd = openat2_in_root(
            root.as_fd(),
            c"../../..",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .unwrap();
        let a = fstat(fd.as_fd()).unwrap();
        let b = fstat(root.as_fd()).unwrap();
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
    }

    #[test]
    fn openat2_refuses_magic_links() {
        let root = cdir();
        let e = openat2_in_root(root.as_fd(), c"proc/self/fd/0", libc::O_PATH, 0).unwrap_err();
        // ELOOP from RESOLVE_NO_MAGICLINKS (or ENOENT without procfs).
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOENT)),
            "{e}"
        );
    }

    #[test]
    fn read_dir_lists_names_without_dots() {
        let root = cdir();
        let fd =
            openat2_in_root(root.as_fd(), c"/", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
        let mut names: Vec<Vec<u8>> = Vec::new();
        read_dir_names(fd.as_fd(), |n| names.push(n.to_vec())).unwrap();
        assert!(names.iter().any(|n| n == b"proc" || n == b"tmp"));
        assert!(names.iter().all(|n| n != b"." && n != b".."));
    }

    /// A fresh directory with `n` files named `n00000`… (long enough that
    /// a minimum-size buffer holds only a few records).
    fn dir_with(tag: &str, n: usize) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("leanftpd-sys-dir-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        for i in 0..n {
            std::fs::write(d.join(format!("n{i:05}-{}", "x".repeat(40))), b"").unwrap();
        }
        d
    }

    fn open_dir(d: &std::path::Path) -> OwnedFd {
        OwnedFd::from(
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(d).unwrap(),
        )
    }

    #[test]
    fn dir_reader_with_a_tiny_buffer_yields_every_name_once_and_rewinds() {
        let d = dir_with("reader", 300);
        let mut r = DirReader::new(open_dir(&d), 1);
        assert_eq!(r.buffer_bytes(), DIR_READER_MIN_BUFFER_BYTES);
        let mut first = Vec::new();
        while let Some(n) = r.next_name().unwrap() {
            first.push(n.to_vec());
        }
        assert_eq!(r.next_name().unwrap(), None, "stays at the end");
        let mut sorted = first.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 300, "every name exactly once");
        assert!(first.iter().all(|n| n != b"." && n != b".."));
        // Half-way, then rewind: the same names again, from the start.
        r.rewind().unwrap();
        for _ in 0..150 {
            r.next_name().unwrap().unwrap();
        }
        r.rewind().unwrap();
        let mut again = Vec::new();
        while let Some(n) = r.next_name().unwrap() {
            again.push(n.to_vec());
        }
        assert_eq!(again, first);
        let mut whole = Vec::new();
        read_dir_names(open_dir(&d).as_fd(), |n| whole.push(n.to_vec())).unwrap();
        assert_eq!(whole, first, "read_dir_names reads the same records");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn dirent_records_that_overrun_the_buffer_are_an_error_not_a_panic() {
        let mut rec = [0u8; 24];
        rec[16..18].copy_from_slice(&200u16.to_ne_bytes());
        assert!(dirent64_record(&rec).is_err());
        rec[16..18].copy_from_slice(&3u16.to_ne_bytes());
        assert!(dirent64_record(&rec).is_err());
        assert!(dirent64_record(&rec[..10]).unwrap().is_none());
        rec[16..18].copy_from_slice(&24u16.to_ne_bytes());
        rec[19] = b'a';
        assert_eq!(dirent64_record(&rec).unwrap(), Some((24, 19..20)));
    }

    #[test]
    fn sendfile_copies_and_advances_offset() {
        use std::io::{Read, Write};
        let dir = std::env::temp_dir();
        let p = dir.join(format!("leanftpd-sys-sendfile-{}", std::process::id()));
        std::fs::File::create(&p)
            .unwrap()
            .write_all(b"hello sendfile")
            .unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let (mut r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut off = 6u64;
        let n = sendfile(w.as_raw_fd(), f.as_raw_fd(), &mut off, 100).unwrap();
        assert_eq!(n, 8);
        assert_eq!(off, 14);
        assert_eq!(
            sendfile(w.as_raw_fd(), f.as_raw_fd(), &mut off, 100).unwrap(),
            0
        );
        drop(w);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "sendfile");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn utimensat_empty_path_sets_mtime_of_an_o_path_descriptor() {
        let p = std::env::temp_dir().join(format!("leanftpd-sys-utimens-{}", std::process::id()));
        std::fs::write(&p, b"x").unwrap();
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&p)
            .unwrap();
        match utimensat(fd.as_fd(), c"", 123_456, libc::AT_EMPTY_PATH) {
            Ok(()) => assert_eq!(fstat(fd.as_fd()).unwrap().st_mtime, 123_456),
            // Older kernels: the Vfs falls back to a parent + name call.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
        }
        std::fs::remove_file(&p).unwrap();
    }
}
