//! The virtual filesystem a logged-in FTP user sees: a directory tree
//! jailed beneath the user's root directory.
//!
//! This module owns the file operations the protocol needs (stat, open for
//! reading, upload through a temp file, mkdir, rmdir, delete, rename, set
//! mtime, directory listing) and the single mapping from `errno` to an
//! FTP reply ([`FsError::from_errno`], [`FsError::code`], [`FsError::text`]).
//! Submodules: [`path`] (lexical virtual paths), [`jail`] (the root handle
//! and `openat2` lookups), [`listing`] (LIST/NLST/MDTM text formats),
//! [`glob`] (wildcards in a listing's last component).
//!
//! It never touches sockets, never knows about sessions or users beyond a
//! root directory, the user's [`Rights`] and an optional drop box beneath
//! a read-only tree ([`Vfs::with_upload_dir`]), uses no `unsafe` (system calls are in
//! [`crate::sys`]), and never resolves a path except through the [`jail`].
//! Calls are blocking file-system calls made on the reactor thread; none of
//! them opens a FIFO or device for I/O (non-regular files are refused
//! after an `O_PATH` look), so none can block on a peer.
//!
//! # Invariants
//! - Escaping the root is impossible through `..`, absolute or relative
//!   symbolic links, symlinked directories, or rename targets: every lookup
//!   is `openat2(root, rel, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, and an
//!   operation on a final name works on the parent directory handle with a
//!   single component (`mkdirat`, `unlinkat`, `renameat`,
//!   `openat(O_NOFOLLOW)`).
//! - Every operation asks [`Vfs::allow`] ([`access::check`], the one
//!   permission policy) before touching the filesystem: a read-only
//!   [`Vfs`] refuses every mutation with [`FsError::ReadOnly`], a drop box
//!   everything but entering, creating and (empty) listing.
//! - Beneath an upload directory, paths resolve in a jail rooted at it, so
//!   no symbolic link there reaches outside it.
//! - Names created by clients never contain CR or LF and never start with
//!   [`UPLOAD_TEMP_PREFIX`]; listings hide names with that prefix.
//! - An [`Upload`] either commits (one atomic `renameat` over the target)
//!   or leaves no trace (its temp file is unlinked on drop).
//! - `errno` is turned into an FTP reply code and text in exactly one place:
//!   [`FsError`].
#![forbid(unsafe_code)]

pub mod access;
pub mod glob;
pub mod jail;
pub mod listing;
pub mod path;

pub use access::{Op, Rights, Verdict};
pub use jail::Jail;
pub use listing::{civil_from_unix, format_mdtm, parse_mdtm, write_list, write_nlst, ListFormat};
pub use path::VirtualPath;

use crate::sys;
use jail::c_name;
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// Why a filesystem operation failed, in the terms an FTP reply needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// No such file or directory (`ENOENT`; also a path that would leave the jail).
    NotFound,
    /// Access refused by permissions or by the jail (`EACCES`, `EPERM`, `EXDEV`, `ELOOP`).
    PermissionDenied,
    /// The user (or the file system, `EROFS`) is read-only.
    ReadOnly,
    /// The target already exists (`EEXIST`).
    AlreadyExists,
    /// A directory was required (`ENOTDIR`).
    NotADirectory,
    /// A non-directory was required (`EISDIR`).
    IsADirectory,
    /// The directory is not empty (`ENOTEMPTY`).
    NotEmpty,
    /// Out of disk space (`ENOSPC`).
    NoSpace,
    /// Disk quota exceeded (`EDQUOT`).
    QuotaExceeded,
    /// The name is not allowed (NUL, CR/LF, reserved prefix, `EILSEQ`, moving a directory into itself).
    InvalidName,
    /// A name or path is too long (`ENAMETOOLONG`).
    NameTooLong,
    /// The file is busy (`EBUSY`, `ETXTBSY`).
    Busy,
    /// Refused in a drop box (upload-only: no reading, listing, appending,
    /// deleting or renaming); see [`access`].
    UploadOnly,
    /// A drop box never replaces an existing file; see [`access`].
    NoReplace,
    /// Any other error, with its errno (0 if none was available).
    Io(i32),
}

impl FsError {
    /// Map an errno: `ENOENT`→NotFound, `EACCES`/`EPERM`→PermissionDenied,
    /// `EROFS`→ReadOnly, `EEXIST`→AlreadyExists, `ENOTDIR`→NotADirectory,
    /// `EISDIR`→IsADirectory, `ENOTEMPTY`→NotEmpty, `ENOSPC`→NoSpace,
    /// `EDQUOT`→QuotaExceeded, `ENAMETOOLONG`→NameTooLong, `EILSEQ`→InvalidName,
    /// `EXDEV`/`ELOOP` (cross-device rename, `openat2` refusing an escape or a
    /// magic link, too many links, `O_NOFOLLOW` on a link)→PermissionDenied,
    /// `EBUSY`/`ETXTBSY`→Busy, anything else→`Io(errno)`.
    pub fn from_errno(errno: i32) -> FsError {
        match errno {
            libc::ENOENT => FsError::NotFound,
            libc::EACCES | libc::EPERM => FsError::PermissionDenied,
            libc::EROFS => FsError::ReadOnly,
            libc::EEXIST => FsError::AlreadyExists,
            libc::ENOTDIR => FsError::NotADirectory,
            libc::EISDIR => FsError::IsADirectory,
            libc::ENOTEMPTY => FsError::NotEmpty,
            libc::ENOSPC => FsError::NoSpace,
            libc::EDQUOT => FsError::QuotaExceeded,
            libc::ENAMETOOLONG => FsError::NameTooLong,
            libc::EILSEQ => FsError::InvalidName,
            libc::EXDEV | libc::ELOOP => FsError::PermissionDenied,
            libc::EBUSY | libc::ETXTBSY => FsError::Busy,
            other => FsError::Io(other),
        }
    }

    /// Map an `io::Error`: its raw errno if it has one, else its kind.
    pub fn from_io(e: &io::Error) -> FsError {
        match e.raw_os_error() {
            Some(errno) => FsError::from_errno(errno),
            None => match e.kind() {
                io::ErrorKind::NotFound => FsError::NotFound,
                io::ErrorKind::PermissionDenied => FsError::PermissionDenied,
                io::ErrorKind::AlreadyExists => FsError::AlreadyExists,
                _ => FsError::Io(0),
            },
        }
    }

    /// FTP reply code: 550 for most; NoSpace 452 (RFC 959 "insufficient
    /// storage space"); QuotaExceeded 552; InvalidName/NameTooLong 553
    /// ("file name not allowed", also NoReplace: RFC 959 §5.4 lists 553,
    /// not 550, among STOR's replies); Io 451 ("local error in processing");
    /// Busy 450.
    pub fn code(self) -> u16 {
        match self {
            FsError::NoSpace => 452,
            FsError::QuotaExceeded => 552,
            FsError::InvalidName | FsError::NameTooLong | FsError::NoReplace => 553,
            FsError::Io(_) => 451,
            FsError::Busy => 450,
            FsError::NotFound
            | FsError::PermissionDenied
            | FsError::ReadOnly
            | FsError::UploadOnly
            | FsError::AlreadyExists
            | FsError::NotADirectory
            | FsError::IsADirectory
            | FsError::NotEmpty => 550,
        }
    }

    /// Short reply text, e.g. "No such file or directory"; never contains CR/LF.
    pub fn text(self) -> &'static str {
        match self {
            FsError::NotFound => "No such file or directory",
            FsError::PermissionDenied => "Permission denied",
            FsError::ReadOnly => "Permission denied (read-only)",
            FsError::AlreadyExists => "File exists",
            FsError::NotADirectory => "Not a directory",
            FsError::IsADirectory => "Is a directory",
            FsError::NotEmpty => "Directory not empty",
            FsError::NoSpace => "Insufficient storage space",
            FsError::QuotaExceeded => "Disk quota exceeded",
            FsError::InvalidName => "File name not allowed",
            FsError::NameTooLong => "File name too long",
            FsError::Busy => "File busy",
            FsError::UploadOnly => "Permission denied: this is an upload-only drop box",
            FsError::NoReplace => "File exists: a drop box never replaces a delivered file",
            FsError::Io(_) => "Local error in processing",
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Io(errno) => write!(f, "{} (errno {errno})", self.text()),
            _ => f.write_str(self.text()),
        }
    }
}

impl std::error::Error for FsError {}

impl From<io::Error> for FsError {
    fn from(e: io::Error) -> FsError {
        FsError::from_io(&e)
    }
}

/// What kind of object a directory entry or path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only reported for links that do not resolve inside the jail).
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl Kind {
    /// The kind encoded in an `st_mode`.
    pub fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// File metadata, copied from a `stat` (all zero and `File` by default:
/// what NLST, which needs none, carries).
#[derive(Clone, Copy, Debug, Default)]
pub struct Meta {
    /// Kind of object.
    pub kind: Kind,
    /// Size in bytes (`st_size`; 0 for a dangling or escaping symlink).
    pub size: u64,
    /// Modification time, unix seconds.
    pub mtime: i64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl Meta {
    /// Copy the fields we use out of a `stat`.
    #[allow(clippy::unnecessary_cast)] // field widths differ between architectures
    pub fn from_stat(st: &libc::stat) -> Meta {
        Meta {
            kind: Kind::from_mode(st.st_mode),
            size: st.st_size.max(0) as u64,
            mtime: st.st_mtime as i64,
            mode: st.st_mode,
            nlink: st.st_nlink as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
        }
    }
}

/// One listed name and its metadata.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The name within its directory (raw bytes; may contain CR/LF, which
    /// the listing writers replace).
    pub name: Box<[u8]>,
    /// Its metadata (of the symlink's target when it resolves inside the jail).
    pub meta: Meta,
}

/// Names of in-progress upload temp files start with this; LIST/NLST hide them.
pub const UPLOAD_TEMP_PREFIX: &[u8] = b".leanftpd-upload-";

/// The mode bits SITE CHMOD may set: read, write and execute for owner,
/// group and others. Never set-uid (0o4000), set-gid (0o2000) or sticky
/// (0o1000), as vsftpd: an FTP user must not be able to make a program that
/// runs with the owner's rights (the server's, when it runs as root).
pub const CHMOD_MODE_MASK: u32 = 0o777;

/// How many random temp names [`Vfs::create_upload`] tries before giving up.
const TEMP_NAME_ATTEMPTS: usize = 8;

/// Refuse names a client may not create: CR/LF (they would break reply and
/// listing lines) and the upload temp prefix (such files would be hidden).
fn check_new_name(name: &[u8]) -> Result<(), FsError> {
    if name.iter().any(|&b| b == b'\r' || b == b'\n') || name.starts_with(UPLOAD_TEMP_PREFIX) {
        Err(FsError::InvalidName)
    } else {
        Ok(())
    }
}

fn io_err(e: io::Error) -> FsError {
    FsError::from_io(&e)
}

/// A user's jailed view of the filesystem.
#[derive(Debug)]
pub struct Vfs {
    /// The root handle (`O_PATH | O_DIRECTORY`) and its lookups.
    jail: Jail,
    /// What the user may do (outside `upload_dir`).
    rights: Rights,
    /// `--anonymous-upload-dir`: a drop box beneath a read-only tree.
    upload_dir: Option<UploadDir>,
}

/// A drop box beneath a read-only tree (`--anonymous-upload-dir`).
///
/// # Why a jail of its own
/// Every path at or beneath `path` is resolved in a jail rooted at the
/// upload directory itself (`openat2(RESOLVE_IN_ROOT)` on its handle), not
/// in the user's root: a symbolic link inside the drop box that points
/// elsewhere in the tree (`incoming/evil -> /pub`, or `../pub`) resolves
/// beneath the drop box (`incoming/pub`), so the upload-only rights never
/// reach a file outside it. The kernel enforces it, not a lexical check.
#[derive(Debug)]
struct UploadDir {
    /// Its virtual path in the user's tree.
    path: VirtualPath,
    /// Its handle, as a jail.
    jail: Jail,
}

/// Where a virtual path lives: the jail to resolve it in, the path inside
/// that jail, and the rights there.
struct Place<'a> {
    jail: &'a Jail,
    path: std::borrow::Cow<'a, VirtualPath>,
    rights: Rights,
}

impl Vfs {
    /// Open `root` as a jail. Errors if it is not a directory; probes
    /// `openat2` once and returns a clear `io::Error` ("kernel lacks openat2
    /// (Linux >= 5.6 required)") if the kernel lacks it (`ENOSYS`).
    pub fn open(root: &Path, writable: bool) -> io::Result<Vfs> {
        Vfs::open_with(root, if writable { Rights::ReadWrite } else { Rights::ReadOnly })
    }

    /// Open `root` as a jail (see [`Vfs::open`]) for a user with `rights`.
    pub fn open_with(root: &Path, rights: Rights) -> io::Result<Vfs> {
        Ok(Vfs { jail: Jail::new(root)?, rights, upload_dir: None })
    }

    /// Make the directory `dir` (which must exist, resolved inside the
    /// jail) and everything beneath it a drop box (upload-only, see
    /// [`access`]) in this otherwise read-only view
    /// (`--anonymous-upload-dir`). `NotADirectory`/`NotFound` if it is not
    /// an existing directory; `PermissionDenied` unless the view is
    /// read-only (the drop box would take rights away from a writable one).
    pub fn with_upload_dir(mut self, dir: &VirtualPath) -> Result<Vfs, FsError> {
        if self.rights != Rights::ReadOnly {
            return Err(FsError::PermissionDenied);
        }
        let fd = self.jail.open(dir, libc::O_PATH | libc::O_DIRECTORY)?;
        self.upload_dir = Some(UploadDir { path: dir.clone(), jail: Jail::from_dir(fd) });
        Ok(self)
    }

    /// Another `Vfs` on the same root directory handle (`dup`), with the
    /// given write permission (and, read-only, the same upload directory,
    /// if any: it belongs to a read-only view only).
    pub fn try_clone(&self, writable: bool) -> io::Result<Vfs> {
        let upload_dir = match &self.upload_dir {
            Some(u) if !writable => Some(UploadDir { path: u.path.clone(), jail: u.jail.try_clone()? }),
            _ => None,
        };
        Ok(Vfs {
            jail: self.jail.try_clone()?,
            rights: if writable { Rights::ReadWrite } else { Rights::ReadOnly },
            upload_dir,
        })
    }

    /// Whether this view allows every mutation (`rw`).
    pub fn is_writable(&self) -> bool {
        self.rights == Rights::ReadWrite
    }

    /// The rights at `p`: the drop box's at or beneath the upload
    /// directory, the user's elsewhere. Lexical on the normalised path;
    /// the drop box's own jail (see [`UploadDir`]) keeps it honest.
    pub fn rights_at(&self, p: &VirtualPath) -> Rights {
        match &self.upload_dir {
            Some(u) if p.starts_with(&u.path) => Rights::UploadOnly,
            _ => self.rights,
        }
    }

    /// May this user do `op` at `p`? The one check every operation goes
    /// through ([`access::check`]), before it touches the filesystem.
    /// A listing that hides names ([`Verdict::HideNames`]) is allowed here;
    /// [`Vfs::open_listing`] makes it empty.
    pub fn allow(&self, op: Op, p: &VirtualPath) -> Result<(), FsError> {
        match access::check(self.rights_at(p), op) {
            Verdict::Allow | Verdict::HideNames => Ok(()),
            Verdict::Refuse(e) => Err(e),
        }
    }

    /// The jail `p` is resolved in, and its path there.
    fn place<'a>(&'a self, p: &'a VirtualPath) -> Place<'a> {
        use std::borrow::Cow;
        match &self.upload_dir {
            Some(u) if p.starts_with(&u.path) => Place {
                jail: &u.jail,
                path: Cow::Owned(p.strip_prefix(&u.path).unwrap_or_default()),
                rights: Rights::UploadOnly,
            },
            _ => Place { jail: &self.jail, path: Cow::Borrowed(p), rights: self.rights },
        }
    }

    /// Metadata of `p`, following symbolic links inside the jail only.
    /// Asks no permission: for the server's own checks. What a client sees
    /// goes through [`Vfs::stat`].
    pub fn metadata(&self, p: &VirtualPath) -> Result<Meta, FsError> {
        let pl = self.place(p);
        let fd = pl.jail.open(&pl.path, libc::O_PATH)?;
        Ok(Meta::from_stat(&sys::fstat(fd.as_fd()).map_err(io_err)?))
    }

    /// SIZE, MDTM, MLST, MFMT: the metadata of `p` for the client
    /// ([`Op::Stat`]: refused in a drop box, whether `p` exists or not).
    pub fn stat(&self, p: &VirtualPath) -> Result<Meta, FsError> {
        self.allow(Op::Stat, p)?;
        self.metadata(p)
    }

    /// For CWD: `p` must be a directory (`NotADirectory` otherwise) that we
    /// may search.
    pub fn check_dir(&self, p: &VirtualPath) -> Result<(), FsError> {
        self.allow(Op::Enter, p)?;
        let pl = self.place(p);
        let fd = pl.jail.open(&pl.path, libc::O_PATH | libc::O_DIRECTORY)?;
        sys::faccessat(fd.as_fd(), c".", libc::X_OK).map_err(io_err)
    }

    /// Open `p` for reading (RETR). `IsADirectory` for a directory;
    /// `PermissionDenied` for anything but a regular file (FIFOs and
    /// devices are never opened for I/O). The returned file is blocking.
    pub fn open_file(&self, p: &VirtualPath) -> Result<(File, Meta), FsError> {
        self.allow(Op::Read, p)?;
        // Look before opening for I/O: opening a FIFO or device has effects.
        let probe = self.metadata(p)?;
        match probe.kind {
            Kind::File => {}
            Kind::Dir => return Err(FsError::IsADirectory),
            Kind::Symlink | Kind::Other => return Err(FsError::PermissionDenied),
        }
        // O_NONBLOCK so that an object swapped in since the look cannot
        // block the open; checked again below.
        let pl = self.place(p);
        let fd = pl.jail.open(&pl.path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)?;
        let meta = Meta::from_stat(&sys::fstat(fd.as_fd()).map_err(io_err)?);
        match meta.kind {
            Kind::File => {}
            Kind::Dir => return Err(FsError::IsADirectory),
            Kind::Symlink | Kind::Other => return Err(FsError::PermissionDenied),
        }
        sys::clear_nonblocking(fd.as_fd()).map_err(io_err)?;
        Ok((File::from(fd), meta))
    }

    /// STOR: `ReadOnly` unless writable; target dir must exist; target an
    /// existing dir → `IsADirectory`; final name must not start with
    /// [`UPLOAD_TEMP_PREFIX`] or contain CR/LF (`InvalidName`); creates a
    /// temp file `UPLOAD_TEMP_PREFIX + random hex` beside the target
    /// (`O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC|O_NOFOLLOW`, mode 0o644).
    /// If the target is a symbolic link, commit replaces the link itself.
    ///
    /// In a drop box ([`Op::Replace`] refused): an existing target (a
    /// dangling symbolic link too) is [`FsError::NoReplace`] now, and the
    /// commit never replaces a file that appeared meanwhile
    /// (`renameat2(RENAME_NOREPLACE)`): of two uploads racing for one new
    /// name, the first to complete wins and the other's commit fails with
    /// `NoReplace`. The upload is all-or-nothing (an interrupted one
    /// leaves nothing: its uploader could neither resume nor remove it).
    pub fn create_upload(&self, p: &VirtualPath) -> Result<Upload, FsError> {
        self.allow(Op::Create, p)?;
        let name = p.file_name().ok_or(FsError::IsADirectory)?;
        check_new_name(name)?;
        let pl = self.place(p);
        let (dir, final_name) = pl.jail.open_parent(&pl.path).map_err(|e| match e {
            // The drop box's own root has no name in its jail.
            FsError::PermissionDenied if pl.path.is_root() => FsError::IsADirectory,
            e => e,
        })?;
        let target_existed = match sys::fstatat(dir.as_fd(), &final_name, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if Kind::from_mode(st.st_mode) == Kind::Dir => {
                return Err(FsError::IsADirectory)
            }
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
            Err(e) => return Err(io_err(e)),
        };
        let drop_box = access::check(pl.rights, Op::Replace) != Verdict::Allow;
        if target_existed {
            self.allow(Op::Replace, p)?;
        }
        for _ in 0..TEMP_NAME_ATTEMPTS {
            let temp = random_temp_name()?;
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
            match sys::openat(dir.as_fd(), &temp, flags, 0o644) {
                Ok(fd) => {
                    return Ok(Upload {
                        file: File::from(fd),
                        dir,
                        temp: Some(temp),
                        final_name,
                        done: false,
                        no_replace: drop_box,
                        drop_box,
                        target_existed,
                        keep_partial: false,
                        lock: None,
                        append: false,
                        temp_gauge: None,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(FsError::AlreadyExists)
    }

    /// STOU: an upload to a name that does not exist yet in `dir`: `base`,
    /// then `base.1`, `base.2`, … The commit never replaces a file that
    /// appeared meanwhile (`renameat2(RENAME_NOREPLACE)`, `AlreadyExists`).
    pub fn create_unique_upload(&self, dir: &VirtualPath, base: &[u8]) -> Result<(Upload, VirtualPath), FsError> {
        for n in 0..1000u32 {
            let name = if n == 0 { base.to_vec() } else { [base, format!(".{n}").as_bytes()].concat() };
            let p = dir.child(&name).ok_or(FsError::InvalidName)?;
            self.allow(Op::Create, &p)?;
            // lstat: a dangling symbolic link takes the name too.
            match self.lstat(&p) {
                Err(FsError::NotFound) => {}
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
            let mut upload = self.create_upload(&p)?;
            upload.no_replace = true;
            return Ok((upload, p));
        }
        Err(FsError::AlreadyExists)
    }

    /// An upload written straight into its target, for APPE and for a
    /// resumed STOR (`REST n` where n is the file's size): no copy of the
    /// kept part, and what arrives is in the file at once, so an
    /// interrupted upload keeps every byte received. `append`: `O_APPEND`
    /// (concurrent appends both land, each write at the end) and the file
    /// is created if missing; otherwise the file must exist and writing
    /// starts at `offset`. `O_NOFOLLOW`: a symbolic link as the last
    /// component is refused, as for every upload.
    pub fn open_in_place(&self, p: &VirtualPath, append: bool, offset: u64) -> Result<Upload, FsError> {
        use std::io::{Seek, SeekFrom};
        self.allow(if append { Op::Append } else { Op::Resume }, p)?;
        let name = p.file_name().ok_or(FsError::IsADirectory)?;
        check_new_name(name)?;
        let pl = self.place(p);
        let (dir, final_name) = pl.jail.open_parent(&pl.path)?;
        let flags = libc::O_WRONLY | libc::O_NOFOLLOW | if append { libc::O_APPEND | libc::O_CREAT } else { 0 };
        let fd = sys::openat(dir.as_fd(), &final_name, flags, 0o644).map_err(io_err)?;
        let st = sys::fstat(fd.as_fd()).map_err(io_err)?;
        if Kind::from_mode(st.st_mode) != Kind::File {
            return Err(FsError::PermissionDenied);
        }
        let mut file = File::from(fd);
        if !append {
            file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        }
        Ok(Upload {
            file,
            dir,
            temp: None,
            final_name,
            done: true,
            no_replace: false,
            drop_box: false,
            target_existed: true,
            keep_partial: false,
            lock: None,
            append,
            temp_gauge: None,
        })
    }

    /// Take an exclusive lock on an upload's existing target (`flock`), for
    /// `--atomic-uploads`: an APPE or resumed STOR copies the old content
    /// into a temporary file, and two at once would lose one's bytes. The
    /// second gets [`FsError::Busy`] (`450`) instead. Returns the locked
    /// descriptor, to be held by the upload ([`Upload::hold_lock`]).
    pub fn lock_target(file: &File) -> Result<File, FsError> {
        match sys::flock_exclusive_nonblocking(file.as_fd()) {
            Ok(()) => file.try_clone().map_err(io_err),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(FsError::Busy),
            Err(e) => Err(io_err(e)),
        }
    }

    /// `lstat` of a path (the link itself if it is a symbolic link).
    fn lstat(&self, p: &VirtualPath) -> Result<Meta, FsError> {
        let pl = self.place(p);
        let (dir, name) = pl.jail.open_parent(&pl.path)?;
        let st = sys::fstatat(dir.as_fd(), &name, libc::AT_SYMLINK_NOFOLLOW).map_err(io_err)?;
        Ok(Meta::from_stat(&st))
    }

    /// SITE CHMOD: set the permission bits of a file or directory inside
    /// the jail (symbolic links followed inside it only) to `mode & 0o777`.
    ///
    /// # Hazards
    /// Run as root, a mode with set-uid or set-gid bits would make a
    /// root-owned set-uid program out of an upload, and `000` on the root
    /// would lock the whole served tree. The handler refuses both with a
    /// reply; this method is the second line: the mode is masked to the
    /// permission bits whatever the caller passes, and the root (also when
    /// reached through a symbolic link to it) is `PermissionDenied`.
    pub fn chmod(&self, p: &VirtualPath, mode: u32) -> Result<(), FsError> {
        use std::os::unix::fs::PermissionsExt;
        self.allow(Op::Chmod, p)?;
        if p.is_root() {
            return Err(FsError::PermissionDenied);
        }
        let pl = self.place(p);
        let fd = pl.jail.open(&pl.path, libc::O_PATH)?;
        let target = sys::fstat(fd.as_fd()).map_err(io_err)?;
        let root = sys::fstat(self.jail.root_fd()).map_err(io_err)?;
        if (target.st_dev, target.st_ino) == (root.st_dev, root.st_ino) {
            return Err(FsError::PermissionDenied);
        }
        // An O_PATH descriptor cannot be fchmod'ed; its /proc/self/fd link
        // names exactly the inode it holds, so no path is resolved twice.
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        std::fs::set_permissions(&proc_path, std::fs::Permissions::from_mode(mode & CHMOD_MODE_MASK))
            .map_err(io_err)
    }

    /// MKD: `ReadOnly` unless writable; root → `AlreadyExists`;
    /// `InvalidName` for CR/LF or the upload prefix in the name. Mode 0o755
    /// (less umask).
    pub fn mkdir(&self, p: &VirtualPath) -> Result<(), FsError> {
        self.allow(Op::MakeDir, p)?;
        let name = p.file_name().ok_or(FsError::AlreadyExists)?;
        check_new_name(name)?;
        let pl = self.place(p);
        if pl.path.is_root() {
            return Err(FsError::AlreadyExists);
        }
        let (dir, name) = pl.jail.open_parent(&pl.path)?;
        sys::mkdirat(dir.as_fd(), &name, 0o755).map_err(io_err)
    }

    /// RMD: `ReadOnly` unless writable; root → `PermissionDenied`; a
    /// non-empty directory → `NotEmpty`; a symlink → `NotADirectory`.
    pub fn rmdir(&self, p: &VirtualPath) -> Result<(), FsError> {
        self.allow(Op::RemoveDir, p)?;
        if p.is_root() {
            return Err(FsError::PermissionDenied);
        }
        let pl = self.place(p);
        let (dir, name) = pl.jail.open_parent(&pl.path)?;
        sys::unlinkat(dir.as_fd(), &name, libc::AT_REMOVEDIR).map_err(io_err)
    }

    /// DELE: `ReadOnly` unless writable; a directory (or the root) →
    /// `IsADirectory`. A symbolic link is removed itself, never its target.
    pub fn remove_file(&self, p: &VirtualPath) -> Result<(), FsError> {
        self.allow(Op::Delete, p)?;
        if p.is_root() {
            return Err(FsError::IsADirectory);
        }
        let pl = self.place(p);
        let (dir, name) = pl.jail.open_parent(&pl.path)?;
        sys::unlinkat(dir.as_fd(), &name, 0).map_err(io_err)
    }

    /// RNFR/RNTO: `ReadOnly` unless writable; either path the root →
    /// `PermissionDenied`; CR/LF or the upload prefix in either name, or
    /// moving a directory beneath itself → `InvalidName`. Replaces an
    /// existing non-directory target atomically.
    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<(), FsError> {
        self.allow(Op::Rename, from)?;
        self.allow(Op::Rename, to)?;
        let (Some(from_name), Some(to_name)) = (from.file_name(), to.file_name()) else {
            return Err(FsError::PermissionDenied);
        };
        check_new_name(to_name)?;
        if from_name.starts_with(UPLOAD_TEMP_PREFIX) || (to != from && to.starts_with(from)) {
            return Err(FsError::InvalidName);
        }
        let (from, to) = (self.place(from), self.place(to));
        if !std::ptr::eq(from.jail, to.jail) {
            // Never across a drop box's border (it has its own jail).
            return Err(FsError::PermissionDenied);
        }
        let (from_dir, from_name) = from.jail.open_parent(&from.path)?;
        let (to_dir, to_name) = to.jail.open_parent(&to.path)?;
        sys::renameat(from_dir.as_fd(), &from_name, to_dir.as_fd(), &to_name).map_err(io_err)
    }

    /// MFMT: set the modification time of `p` (symbolic links followed
    /// inside the jail); `ReadOnly` unless writable.
    pub fn set_mtime(&self, p: &VirtualPath, unix_secs: i64) -> Result<(), FsError> {
        self.allow(Op::SetTime, p)?;
        let pl = self.place(p);
        let fd = pl.jail.open(&pl.path, libc::O_PATH)?;
        match sys::utimensat(fd.as_fd(), c"", unix_secs, libc::AT_EMPTY_PATH) {
            Ok(()) => Ok(()),
            // Kernels before utimensat learnt AT_EMPTY_PATH: work on the
            // resolved object through a name that cannot be followed.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let st = sys::fstat(fd.as_fd()).map_err(io_err)?;
                if Kind::from_mode(st.st_mode) == Kind::Dir {
                    sys::utimensat(fd.as_fd(), c".", unix_secs, libc::AT_SYMLINK_NOFOLLOW)
                        .map_err(io_err)
                } else {
                    let (dir, name) = pl.jail.open_parent(&pl.path)?;
                    sys::utimensat(dir.as_fd(), &name, unix_secs, libc::AT_SYMLINK_NOFOLLOW)
                        .map_err(io_err)
                }
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Every entry of a listing at once (see [`Vfs::open_listing`]), for
    /// tests only: the server itself never holds a whole listing, it takes
    /// entries one at a time from a [`Listing`].
    #[cfg(test)]
    pub fn list(&self, p: &VirtualPath) -> Result<Vec<Entry>, FsError> {
        let mut listing = self.open_listing(p)?;
        let mut entries = Vec::new();
        while let Some(e) = listing.next_entry(self, true)? {
            entries.push(e);
        }
        Ok(entries)
    }

    /// LIST/NLST/MLSD/STAT source: a directory → its entries (no "." /
    /// "..", no upload temp files); a file → one entry named by its own
    /// file name. The directory is opened now, so a missing or unreadable
    /// one is an error before any `150`; each entry's metadata is read only
    /// by [`Listing::next_entry`].
    ///
    /// # Bounded memory and work
    /// Names are read now until the directory turns out to have more than
    /// [`LISTING_SORT_MAX_ENTRIES`] entries or more than
    /// [`LISTING_SORT_MAX_NAME_BYTES`] of names, whichever comes first. A
    /// directory within both caps is listed sorted by name bytes, from its
    /// names held in one buffer (at most [`LISTING_SORTED_MAX_HEAP_BYTES`]).
    /// Past either cap, reading stops at once (never all of a huge
    /// directory before deciding), the names read are dropped, the
    /// directory is rewound, and the listing streams it in directory order
    /// through one [`LISTING_READ_BUFFER_BYTES`] buffer. So however big the
    /// directory, opening a listing reads at most one cap's worth of names
    /// and a listing holds at most ~[`LISTING_SORTED_MAX_HEAP_BYTES`].
    ///
    /// # Drop boxes
    /// Where [`access::check`] hides names ([`Verdict::HideNames`]), the
    /// listing of a directory is empty, and anything else (a file, a
    /// missing name) is [`FsError::UploadOnly`], the same for both.
    pub fn open_listing(&self, p: &VirtualPath) -> Result<Listing, FsError> {
        let pl = self.place(p);
        match access::check(pl.rights, Op::List) {
            Verdict::Allow => {}
            Verdict::Refuse(e) => return Err(e),
            Verdict::HideNames => {
                return match pl.jail.open(&pl.path, libc::O_PATH | libc::O_DIRECTORY) {
                    Ok(_) => Ok(Listing { path: p.clone(), source: Source::Done, prefix: Box::default() }),
                    Err(_) => Err(FsError::UploadOnly),
                };
            }
        }
        let dir = match pl.jail.open(&pl.path, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(FsError::NotADirectory) => {
                let meta = self.metadata(p)?;
                let name = p.file_name().ok_or(FsError::NotADirectory)?;
                return Ok(Listing {
                    path: VirtualPath::root(),
                    source: Source::Single(Entry { name: name.into(), meta }),
                    prefix: Box::default(),
                });
            }
            Err(e) => return Err(e),
        };
        let mut reader = sys::DirReader::new(dir, LISTING_READ_BUFFER_BYTES);
        let mut names: Vec<u8> = Vec::new();
        let mut spans: Vec<(u32, u32)> = Vec::new();
        let mut within_caps = true;
        while let Some(name) = reader.next_name().map_err(io_err)? {
            if name.starts_with(UPLOAD_TEMP_PREFIX) {
                continue;
            }
            if spans.len() >= LISTING_SORT_MAX_ENTRIES
                || names.len() + name.len() > LISTING_SORT_MAX_NAME_BYTES
            {
                within_caps = false;
                break;
            }
            reserve_within(&mut names, name.len(), LISTING_SORT_MAX_NAME_BYTES);
            reserve_within(&mut spans, 1, LISTING_SORT_MAX_ENTRIES);
            // Both fit in u32: names.len() <= LISTING_SORT_MAX_NAME_BYTES.
            let start = names.len() as u32;
            names.extend_from_slice(name);
            spans.push((start, names.len() as u32));
        }
        let source = if within_caps {
            spans.sort_unstable_by(|a, b| {
                names[a.0 as usize..a.1 as usize].cmp(&names[b.0 as usize..b.1 as usize])
            });
            names.shrink_to_fit();
            spans.shrink_to_fit();
            Source::Sorted { dir: reader.into_fd(), names, spans, next: 0 }
        } else {
            drop((names, spans));
            reader.rewind().map_err(io_err)?;
            Source::Streamed { reader, filter: None }
        };
        Ok(Listing { path: p.clone(), source, prefix: Box::default() })
    }

    /// The entries of the directory `dir` whose names match `glob` (issue
    /// 10: `NLST *.txt`, `LIST sub/*.jpg`); `NotADirectory` if `dir` is a
    /// file. A sorted listing (see [`Vfs::open_listing`]) is filtered now,
    /// so [`Listing::is_done`] tells at once that nothing matched; a
    /// streamed one is filtered as it is read.
    ///
    /// # Bounded work (CVE-2011-0762)
    /// Each name costs one linear [`glob::Glob::matches`]. Filtering now
    /// costs at most [`LISTING_SORT_MAX_ENTRIES`] of them; a streamed
    /// listing skips non-matching names within the scan budget its caller
    /// gives [`Listing::next_entry_within`], and fails once more than
    /// [`GLOB_MAX_MATCHES`] names matched.
    pub fn open_glob(&self, dir: &VirtualPath, glob: glob::Glob) -> Result<Listing, FsError> {
        let mut listing = self.open_listing(dir)?;
        match &mut listing.source {
            Source::Single(_) => return Err(FsError::NotADirectory),
            Source::Sorted { names, spans, .. } => {
                spans.retain(|&(start, end)| glob.matches(&names[start as usize..end as usize]));
                debug_assert!(spans.len() <= GLOB_MAX_MATCHES);
                spans.shrink_to_fit();
            }
            Source::Streamed { filter, .. } => *filter = Some(GlobFilter { glob, matched: 0 }),
            Source::Done => {}
        }
        Ok(listing)
    }
}

/// The most entries a glob lists. A sorted listing never reaches it (it
/// holds at most [`LISTING_SORT_MAX_ENTRIES`]); a streamed one that does
/// fails there with `E2BIG` ("argument list too long", the shell's word
/// for a glob that expands too far), so the transfer ends `451`, never
/// `226` over a listing that was cut short.
pub const GLOB_MAX_MATCHES: usize = 10_000;

/// The name prefix that makes NLST names usable from the client's working
/// directory (issue 10, RFC 959 §4.1.3: NLST output is for "a multiple
/// get"): `test` and `test//` give `test/`, `/` gives `/`, `sub/` of a
/// glob `sub/*.txt` gives `sub/`; nothing, `.` and `./` give no prefix (a
/// plain `NLST` and `NLST .` stay bare names, as `ls` prints them).
fn nlst_prefix(written: &[u8]) -> Box<[u8]> {
    let end = written.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let trimmed = &written[..end];
    if trimmed == b"." || (trimmed.is_empty() && !written.starts_with(b"/")) {
        return Box::default();
    }
    let mut p = Vec::with_capacity(trimmed.len() + 1);
    p.extend_from_slice(trimmed);
    p.push(b'/');
    p.into_boxed_slice()
}

/// A directory with at most this many entries (upload temp files not
/// counted) is listed sorted by name; past it, in directory order. Clients
/// and people like sorted listings, but sorting needs every name in memory
/// at once, so it is kept for directories small enough that their names
/// cost little: 8,192 entries is far beyond what people browse, and its
/// spans take 64 KiB.
pub const LISTING_SORT_MAX_ENTRIES: usize = 8_192;

/// A directory whose names take more than this many bytes in all is
/// listed in directory order, however few its entries (255-byte names
/// reach it at ~1,000 entries): the cap on the name buffer a sorted
/// listing holds.
pub const LISTING_SORT_MAX_NAME_BYTES: usize = 256 * 1024;

/// The buffer through which a listing reads its directory with
/// `getdents64`: while deciding whether to sort, and for the whole of a
/// streamed listing. 16 KiB holds ~300 typical records, so a streamed
/// listing makes about one system call per 300 entries and holds no more.
pub const LISTING_READ_BUFFER_BYTES: usize = 16 * 1024;

/// The most heap a sorted listing's names take: the name bytes plus one
/// `(start, end)` span of 8 bytes per entry (320 KiB). A streamed listing
/// holds [`LISTING_READ_BUFFER_BYTES`] instead. Add the listed path and
/// one entry being formatted for the whole of a listing in progress.
pub const LISTING_SORTED_MAX_HEAP_BYTES: usize =
    LISTING_SORT_MAX_NAME_BYTES + LISTING_SORT_MAX_ENTRIES * std::mem::size_of::<(u32, u32)>();

/// Make room for `extra` more elements in `v` without letting its capacity
/// pass `max` (`Vec`'s own doubling could reach almost twice `max`).
fn reserve_within<T>(v: &mut Vec<T>, extra: usize, max: usize) {
    let need = v.len() + extra;
    if need > v.capacity() {
        let target = (v.capacity() * 2).max(need).max(64).min(max.max(need));
        v.reserve_exact(target - v.len());
    }
}

/// A listing in progress (see [`Vfs::open_listing`]): where its entries
/// come from, and the listed path.
#[derive(Debug)]
pub struct Listing {
    /// The listed path (symlinks are resolved from it, inside the jail).
    path: VirtualPath,
    /// Where the next entries come from.
    source: Source,
    /// Written before each directory entry's name (NLST of a path, see
    /// [`Listing::named_as_written`]); empty for bare names.
    prefix: Box<[u8]>,
}

/// What [`Listing::next_entry_within`] found.
#[derive(Debug)]
pub enum Next {
    /// The next entry.
    Entry(Entry),
    /// The scan budget ran out skipping names that do not match the glob:
    /// more may follow, ask again (on a later turn of the loop).
    Pending,
    /// Every entry was handed out.
    End,
}

/// A streamed listing's glob, and how many names it matched so far.
#[derive(Debug)]
struct GlobFilter {
    glob: glob::Glob,
    matched: usize,
}

/// Where a [`Listing`]'s entries come from.
#[derive(Debug)]
enum Source {
    /// The one entry of a file's listing, until handed out.
    Single(Entry),
    /// A directory within the caps: its names, sorted.
    Sorted {
        /// The directory (for `fstatat` of each name).
        dir: OwnedFd,
        /// Every name, one after the other.
        names: Vec<u8>,
        /// `names[start..end]` of each entry, in name order.
        spans: Vec<(u32, u32)>,
        /// The next span to hand out.
        next: usize,
    },
    /// A directory past a cap: read as entries are asked for, in
    /// directory order, through a fixed buffer; only names matching the
    /// filter, if any.
    Streamed {
        /// The directory.
        reader: sys::DirReader,
        /// The glob of [`Vfs::open_glob`] (a sorted listing is filtered
        /// when it opens instead).
        filter: Option<GlobFilter>,
    },
    /// Every entry handed out; the directory is closed.
    Done,
}

impl Listing {
    /// Entries left to hand out, if known (an upper bound: some may vanish):
    /// `None` for a directory streamed in directory order.
    pub fn remaining(&self) -> Option<usize> {
        match &self.source {
            Source::Single(_) => Some(1),
            Source::Sorted { spans, next, .. } => Some(spans.len() - next),
            Source::Streamed { .. } => None,
            Source::Done => Some(0),
        }
    }

    /// Whether every entry is known to be handed out (a streamed listing
    /// knows it only once [`Listing::next_entry`] has returned `None`).
    pub fn is_done(&self) -> bool {
        self.remaining() == Some(0)
    }

    /// Whether the entries come sorted by name (the directory was within
    /// [`LISTING_SORT_MAX_ENTRIES`] and [`LISTING_SORT_MAX_NAME_BYTES`]).
    pub fn is_sorted(&self) -> bool {
        !matches!(self.source, Source::Streamed { .. })
    }

    /// Bytes of heap the listing holds now: the listed path and the NLST
    /// prefix, plus the sorted names and their spans, or a streamed
    /// listing's read buffer and glob. Never more than
    /// [`LISTING_SORTED_MAX_HEAP_BYTES`] plus the path, the prefix and a glob.
    pub fn heap_bytes(&self) -> usize {
        self.path.as_bytes().len()
            + self.prefix.len()
            + match &self.source {
                Source::Single(e) => e.name.len(),
                Source::Sorted { names, spans, .. } => {
                    names.capacity() + spans.capacity() * std::mem::size_of::<(u32, u32)>()
                }
                Source::Streamed { reader, filter } => {
                    reader.buffer_bytes() + filter.as_ref().map_or(0, |f| f.glob.heap_bytes())
                }
                Source::Done => 0,
            }
    }

    /// Name the entries as the client can use them from its working
    /// directory, for NLST (issue 10; RFC 959 §4.1.3: NLST output is input
    /// "to a program … such as a multiple get"; vsftpd and ProFTPD do the
    /// same): `written` is the directory as the client wrote it, after
    /// `ls` options. A directory's entries get it as a prefix with exactly
    /// one `/` between (`test` and `test/` both give `test/file1.txt`;
    /// `/abs` gives `/abs/name`; nothing or `.` gives bare names); a
    /// file's one entry is `written` itself, trailing `/` removed.
    pub fn named_as_written(mut self, written: &[u8]) -> Listing {
        match &mut self.source {
            Source::Single(e) => {
                let end = written.iter().rposition(|&b| b != b'/').map_or(written.len(), |i| i + 1);
                e.name = written[..end].into();
            }
            _ => self.prefix = nlst_prefix(written),
        }
        self
    }

    /// The next name (upload temp files and names the glob does not match
    /// skipped, each skip taking one from `scan`: `Pending` once it is 0);
    /// `End` at the end (the directory is closed then).
    fn next_name(&mut self, scan: &mut usize) -> Result<NextName, FsError> {
        let name: Option<Box<[u8]>> = match &mut self.source {
            Source::Single(_) | Source::Done => None,
            Source::Sorted { names, spans, next, .. } => spans.get(*next).map(|&(start, end)| {
                *next += 1;
                names[start as usize..end as usize].into()
            }),
            Source::Streamed { reader, filter } => loop {
                let Some(n) = reader.next_name().map_err(io_err)? else { break None };
                let skip = n.starts_with(UPLOAD_TEMP_PREFIX) || filter.as_ref().is_some_and(|f| !f.glob.matches(n));
                if skip {
                    *scan = scan.saturating_sub(1);
                    if *scan == 0 {
                        return Ok(NextName::Pending);
                    }
                    continue;
                }
                if let Some(f) = filter {
                    if f.matched == GLOB_MAX_MATCHES {
                        return Err(FsError::Io(libc::E2BIG));
                    }
                    f.matched += 1;
                }
                break Some(n.into());
            },
        };
        match name {
            Some(n) => Ok(NextName::Name(n)),
            None => {
                self.source = Source::Done; // close the directory now
                Ok(NextName::End)
            }
        }
    }

    /// The next entry, with its metadata (`lstat`; a symlink is followed
    /// INSIDE the jail and reported with its target's meta, a dangling or
    /// escaping one as `Kind::Symlink` of size 0) or, without `with_meta`
    /// (NLST), with default metadata and no system call for it. Entries
    /// come sorted by name, or in directory order past the caps (see
    /// [`Vfs::open_listing`]). Entries removed since their names were read
    /// are skipped. `Ok(None)` once every entry was handed out; an error if
    /// the directory cannot be read further (a streamed listing reads it
    /// as it goes).
    ///
    /// # Unbounded skipping
    /// A streamed glob listing skips every name that does not match before
    /// it returns; code on the loop uses [`Listing::next_entry_within`].
    pub fn next_entry(&mut self, vfs: &Vfs, with_meta: bool) -> Result<Option<Entry>, FsError> {
        let mut unbounded = usize::MAX;
        match self.next_entry_within(vfs, with_meta, &mut unbounded)? {
            Next::Entry(e) => Ok(Some(e)),
            Next::Pending | Next::End => Ok(None),
        }
    }

    /// [`Listing::next_entry`] within a scan budget: each name skipped
    /// (not matching the glob of a streamed [`Vfs::open_glob`] listing, or
    /// an upload temp file) takes one from `scan`, and when it reaches 0
    /// the answer is [`Next::Pending`], so that a huge directory with few
    /// matches is read a bounded slice per call. Names get the NLST prefix
    /// of [`Listing::named_as_written`].
    pub fn next_entry_within(&mut self, vfs: &Vfs, with_meta: bool, scan: &mut usize) -> Result<Next, FsError> {
        if let Source::Single(_) = self.source {
            if let Source::Single(e) = std::mem::replace(&mut self.source, Source::Done) {
                return Ok(Next::Entry(e));
            }
        }
        loop {
            let name = match self.next_name(scan)? {
                NextName::Name(n) => n,
                NextName::Pending => return Ok(Next::Pending),
                NextName::End => return Ok(Next::End),
            };
            if !with_meta {
                return Ok(Next::Entry(Entry { name: self.prefixed(name), meta: Meta::default() }));
            }
            let dir = match &self.source {
                Source::Sorted { dir, .. } => dir.as_fd(),
                Source::Streamed { reader, .. } => reader.fd(),
                Source::Single(_) | Source::Done => return Ok(Next::End),
            };
            let Ok(cname) = c_name(&name) else { continue };
            let Ok(st) = sys::fstatat(dir, &cname, libc::AT_SYMLINK_NOFOLLOW) else {
                continue; // removed since the name was read
            };
            let mut meta = Meta::from_stat(&st);
            if meta.kind == Kind::Symlink {
                match self.path.child(&name).map(|c| vfs.metadata(&c)) {
                    Some(Ok(target)) => meta = target,
                    _ => meta.size = 0,
                }
            }
            return Ok(Next::Entry(Entry { name: self.prefixed(name), meta }));
        }
    }

    /// `name` behind the NLST prefix, if there is one.
    fn prefixed(&self, name: Box<[u8]>) -> Box<[u8]> {
        if self.prefix.is_empty() {
            return name;
        }
        let mut v = Vec::with_capacity(self.prefix.len() + name.len());
        v.extend_from_slice(&self.prefix);
        v.extend_from_slice(&name);
        v.into_boxed_slice()
    }
}

/// What [`Listing::next_name`] found.
enum NextName {
    Name(Box<[u8]>),
    Pending,
    End,
}

/// `UPLOAD_TEMP_PREFIX` followed by 16 random hex digits.
fn random_temp_name() -> Result<CString, FsError> {
    let mut rnd = [0u8; 8];
    sys::getrandom(&mut rnd).map_err(io_err)?;
    let mut name = Vec::with_capacity(UPLOAD_TEMP_PREFIX.len() + 16);
    name.extend_from_slice(UPLOAD_TEMP_PREFIX);
    for b in rnd {
        name.push(b"0123456789abcdef"[usize::from(b >> 4)]);
        name.push(b"0123456789abcdef"[usize::from(b & 15)]);
    }
    c_name(&name)
}

/// An upload in progress: a temp file beside its target (STOR, STOU, and
/// APPE or a resumed STOR under `--atomic-uploads`), or the target itself
/// (APPE, a resumed STOR at the end of the file). Dropping a temp upload
/// without commit removes the temp file.
#[derive(Debug)]
pub struct Upload {
    /// The file being written: the temp file, or the target in place.
    pub file: File,
    /// The target's directory (`O_PATH`, resolved in the jail).
    dir: OwnedFd,
    /// The temp file's name in `dir`; `None` when writing in place.
    temp: Option<CString>,
    /// The target's name in `dir`.
    final_name: CString,
    /// Set once the temp name no longer exists (committed or removed).
    done: bool,
    /// STOU, a drop box: never replace an existing target at commit.
    no_replace: bool,
    /// In a drop box: all-or-nothing, and a lost commit race is `NoReplace`.
    drop_box: bool,
    /// The target existed when the upload began.
    target_existed: bool,
    /// An interrupted upload keeps its bytes at the target's name (see
    /// [`Upload::keep_partial`]).
    keep_partial: bool,
    /// The target's `flock`, held until the upload ends (atomic APPE/REST).
    lock: Option<File>,
    /// Written in place with `O_APPEND`.
    append: bool,
    /// Counts the temp file in `leanftpd_upload_temp_files_open` while it
    /// exists (see [`Upload::count_temp_file`]); dropped with the upload,
    /// after `Drop` removed an uncommitted temp file.
    temp_gauge: Option<crate::metrics::TempFileGauge>,
}

impl Upload {
    /// What the upload hook is told (`crate::hooks`): the target's real
    /// path — its directory as the kernel names the handle the jail
    /// resolved (`/proc/self/fd`), so symbolic links inside the jail are
    /// resolved and a directory renamed meanwhile is named as it is now —
    /// and the file's size in bytes (for APPE, the whole file). Called just
    /// before `commit`: the temp file is the same inode the target becomes.
    pub fn target_facts(&self) -> io::Result<(std::path::PathBuf, u64)> {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::fs::read_link(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))?;
        let size = self.file.metadata()?.len();
        Ok((dir.join(std::ffi::OsStr::from_bytes(self.final_name.as_bytes())), size))
    }

    /// Rename the temp file over the target (`renameat`, atomically
    /// replacing an old file). Does not `fsync`. On error the temp file is
    /// removed and an old target is left as it was. In place: nothing to do.
    pub fn commit(mut self) -> Result<(), FsError> {
        let Some(temp) = &self.temp else { return Ok(()) };
        let rename = if self.no_replace { sys::renameat_noreplace } else { sys::renameat };
        rename(self.dir.as_fd(), temp, self.dir.as_fd(), &self.final_name).map_err(|e| match io_err(e) {
            FsError::AlreadyExists if self.drop_box => FsError::NoReplace,
            e => e,
        })?;
        self.done = true;
        Ok(())
    }

    /// Ask that an interruption keep the received bytes, where that cannot
    /// destroy a file: only when the target did not exist when the upload
    /// began (a new name, STOU). Over an existing file the old one stays.
    /// Never in a drop box, whose uploader could neither resume nor
    /// remove a partial file.
    pub fn keep_partial_if_new(&mut self) {
        self.keep_partial = !self.target_existed && !self.drop_box;
    }

    /// Written in place with `O_APPEND`.
    pub fn is_append(&self) -> bool {
        self.append
    }

    /// Hold the target's lock until the upload ends.
    pub fn hold_lock(&mut self, lock: File) {
        self.lock = Some(lock);
    }

    /// The upload was interrupted (ABOR, a reset or closed connection, a
    /// stall, a full disk): keep what arrived if [`keep_partial_if_new`]
    /// asked for it — the temp file takes the target's name, unless a file
    /// appeared there meanwhile (`RENAME_NOREPLACE`): then, and otherwise,
    /// it is removed. In place, the bytes are already in the target.
    ///
    /// [`keep_partial_if_new`]: Upload::keep_partial_if_new
    pub fn interrupted(mut self) {
        if let (Some(temp), true) = (&self.temp, self.keep_partial) {
            if sys::renameat_noreplace(self.dir.as_fd(), temp, self.dir.as_fd(), &self.final_name).is_ok() {
                self.done = true;
            }
        }
        // Drop removes the temp file if it was not renamed.
    }

    /// Remove the temp file (also done on drop).
    pub fn discard(self) {
        drop(self);
    }

    /// Count this upload's temp file, if it has one, in `metrics` until
    /// the upload is committed or dropped (called once the upload is
    /// handed to the reactor).
    pub fn count_temp_file(&mut self, metrics: &std::sync::Arc<crate::metrics::Metrics>) {
        if self.temp.is_some() && self.temp_gauge.is_none() {
            self.temp_gauge = Some(crate::metrics::TempFileGauge::new(metrics));
        }
    }

    /// The temp file's name (in the target's directory); empty in place.
    pub fn temp_name(&self) -> &[u8] {
        self.temp.as_deref().map(std::ffi::CStr::to_bytes).unwrap_or(b"")
    }

    /// The target's name (in the same directory).
    pub fn final_name(&self) -> &[u8] {
        self.final_name.as_bytes()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let (false, Some(temp)) = (self.done, &self.temp) {
            self.done = true;
            // Nothing useful to do on failure: the name is hidden anyway.
            let _ = sys::unlinkat(self.dir.as_fd(), temp, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A temp tree: `base/outside/canary` (must stay unreachable) and
    /// `base/root/` (the jail) with files, dirs and hostile symlinks.
    struct Fixture {
        base: PathBuf,
        root: PathBuf,
        outside: PathBuf,
    }

    const CANARY: &[u8] = b"CANARY: outside the jail";

    impl Fixture {
        fn new(tag: &str) -> Fixture {
            static N: AtomicUsize = AtomicUsize::new(0);
            let base = std::env::temp_dir().join(format!(
                "leanftpd-vfs-{}-{}-{tag}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&base);
            let root = base.join("root");
            let outside = base.join("outside");
            std::fs::create_dir_all(outside.join("secret_dir")).unwrap();
            std::fs::write(outside.join("canary"), CANARY).unwrap();
            std::fs::create_dir_all(root.join("sub")).unwrap();
            std::fs::create_dir_all(root.join("empty")).unwrap();
            std::fs::write(root.join("file.txt"), b"hello").unwrap();
            std::fs::write(root.join("sub/inner.txt"), b"inner").unwrap();
            symlink("/etc/passwd", root.join("abs_passwd")).unwrap();
            symlink(outside.join("canary"), root.join("abs_canary")).unwrap();
            symlink("../outside/canary", root.join("rel_escape")).unwrap();
            symlink("../../outside/canary", root.join("sub/escape")).unwrap();
            symlink(&outside, root.join("outdir_abs")).unwrap();
            symlink("../outside", root.join("outdir_rel")).unwrap();
            symlink("sub", root.join("sub_link")).unwrap();
            symlink("/file.txt", root.join("file_link")).unwrap();
            symlink("nowhere", root.join("dangling")).unwrap();
            symlink("/proc/self/root/etc/passwd", root.join("proc_link")).unwrap();
            Fixture {
                base,
                root,
                outside,
            }
        }

        fn vfs(&self, writable: bool) -> Vfs {
            Vfs::open(&self.root, writable).unwrap()
        }

        fn canary_intact(&self) {
            assert_eq!(std::fs::read(self.outside.join("canary")).unwrap(), CANARY);
            let names: Vec<_> = std::fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names.len(),
                2,
                "something landed outside the jail: {names:?}"
            );
        }

        /// Real names in a real directory of the jail.
        fn real_names(&self, rel: &str) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.root.join(rel))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().resolve(s.as_bytes()).unwrap()
    }

    fn read_all(vfs: &Vfs, p: &str) -> Result<Vec<u8>, FsError> {
        let (mut f, _) = vfs.open_file(&vp(p))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        Ok(v)
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8(e.name.to_vec()).unwrap())
            .collect()
    }

    fn entry<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
        entries
            .iter()
            .find(|e| &*e.name == name.as_bytes())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    // ---- The jail contract, run against every configuration. ----

    /// The configurations under test: read-only, writable, and writable
    /// opened through a symlinked root path.
    fn configurations(fx: &Fixture) -> Vec<(&'static str, Vfs)> {
        let link = fx.base.join("root_link");
        let _ = symlink(&fx.root, &link);
        vec![
            ("read-only", fx.vfs(false)),
            ("writable", fx.vfs(true)),
            (
                "writable via symlinked root",
                Vfs::open(&link, true).unwrap(),
            ),
        ]
    }

    fn for_each_config(tag: &str, check: impl Fn(&Fixture, &Vfs)) {
        let fx = Fixture::new(tag);
        for (name, vfs) in configurations(&fx) {
            eprintln!("configuration: {name}");
            check(&fx, &vfs);
            fx.canary_intact();
        }
    }

    #[test]
    fn absolute_symlink_to_etc_passwd_resolves_inside_the_jail() {
        for_each_config("abs", |fx, vfs| {
            assert_eq!(read_all(vfs, "/abs_passwd"), Err(FsError::NotFound));
            assert_eq!(
                vfs.metadata(&vp("/abs_passwd")).unwrap_err(),
                FsError::NotFound
            );
            assert_eq!(read_all(vfs, "/abs_canary"), Err(FsError::NotFound));
            // Give the jail its own /etc/passwd: the link now finds that one.
            std::fs::create_dir_all(fx.root.join("etc")).unwrap();
            std::fs::write(fx.root.join("etc/passwd"), b"JAILED").unwrap();
            assert_eq!(read_all(vfs, "/abs_passwd").unwrap(), b"JAILED");
            std::fs::remove_dir_all(fx.root.join("etc")).unwrap();
        });
    }

    #[test]
    fn relative_symlink_climbing_out_is_refused() {
        for_each_config("rel", |fx, vfs| {
            assert_eq!(read_all(vfs, "/sub/escape"), Err(FsError::NotFound));
            assert_eq!(read_all(vfs, "/rel_escape"), Err(FsError::NotFound));
            assert_eq!(
                vfs.metadata(&vp("/sub/escape")).unwrap_err(),
                FsError::NotFound
            );
            // `..` in a link target stops at the jail root: a decoy placed
            // at /outside/canary inside the jail is what the links reach.
            std::fs::create_dir_all(fx.root.join("outside")).unwrap();
            std::fs::write(fx.root.join("outside/canary"), b"DECOY").unwrap();
            assert_eq!(read_all(vfs, "/sub/escape").unwrap(), b"DECOY");
            assert_eq!(read_all(vfs, "/rel_escape").unwrap(), b"DECOY");
            std::fs::remove_dir_all(fx.root.join("outside")).unwrap();
        });
    }

    #[test]
    fn dotdot_components_cannot_reach_a_canary_outside() {
        for_each_config("dotdot", |_fx, vfs| {
            for arg in [
                "../outside/canary",
                "/../../outside/canary",
                "sub/../../outside/canary",
            ] {
                let p = VirtualPath::root().resolve(arg.as_bytes()).unwrap();
                assert_eq!(p.as_bytes(), b"/outside/canary");
                assert_eq!(read_all(vfs, arg), Err(FsError::NotFound));
                assert_eq!(vfs.list(&p).unwrap_err(), FsError::NotFound);
            }
            assert_eq!(vfs.check_dir(&vp("/../outside")), Err(FsError::NotFound));
            // `..` from the root is the root itself.
            let up = VirtualPath::root().resolve(b"..").unwrap();
            assert!(names(&vfs.list(&up).unwrap()).contains(&"file.txt".to_string()));
        });
    }

    #[test]
    fn symlinked_directory_pointing_outside_cannot_be_listed_or_entered() {
        for_each_config("outdir", |_fx, vfs| {
            for d in ["/outdir_abs", "/outdir_rel"] {
                assert_eq!(vfs.list(&vp(d)).unwrap_err(), FsError::NotFound, "{d}");
                assert_eq!(vfs.check_dir(&vp(d)), Err(FsError::NotFound), "{d}");
                assert_eq!(
                    read_all(vfs, &format!("{d}/canary")),
                    Err(FsError::NotFound)
                );
                assert_eq!(
                    vfs.list(&vp(&format!("{d}/secret_dir"))).unwrap_err(),
                    FsError::NotFound
                );
            }
        });
    }

    #[test]
    fn magic_links_are_not_followed() {
        for_each_config("magic", |_fx, vfs| {
            // An absolute link into /proc is resolved in the jail, where
            // there is no /proc.
            assert_eq!(read_all(vfs, "/proc_link"), Err(FsError::NotFound));
        });
    }

    #[test]
    fn list_is_sorted_and_reports_links_by_their_jailed_target() {
        for_each_config("list", |_fx, vfs| {
            let es = vfs.list(&VirtualPath::root()).unwrap();
            let got = names(&es);
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(got, sorted);
            assert_eq!(
                got,
                [
                    "abs_canary",
                    "abs_passwd",
                    "dangling",
                    "empty",
                    "file.txt",
                    "file_link",
                    "outdir_abs",
                    "outdir_rel",
                    "proc_link",
                    "rel_escape",
                    "sub",
                    "sub_link"
                ]
            );
            let file = entry(&es, "file.txt").meta;
            assert_eq!((file.kind, file.size), (Kind::File, 5));
            // An absolute link that resolves inside the jail shows its target.
            let fl = entry(&es, "file_link").meta;
            assert_eq!((fl.kind, fl.size, fl.ino), (Kind::File, 5, file.ino));
            assert_eq!(entry(&es, "sub_link").meta.kind, Kind::Dir);
            assert_eq!(entry(&es, "sub").meta.kind, Kind::Dir);
            for bad in [
                "abs_canary",
                "abs_passwd",
                "dangling",
                "outdir_abs",
                "outdir_rel",
                "rel_escape",
                "proc_link",
            ] {
                let m = entry(&es, bad).meta;
                assert_eq!((m.kind, m.size), (Kind::Symlink, 0), "{bad}");
            }
        });
    }

    #[test]
    fn list_of_a_file_is_a_single_entry_named_by_the_file() {
        for_each_config("list1", |_fx, vfs| {
            let es = vfs.list(&vp("/sub/inner.txt")).unwrap();
            assert_eq!(names(&es), ["inner.txt"]);
            assert_eq!((es[0].meta.kind, es[0].meta.size), (Kind::File, 5));
            let es = vfs.list(&vp("/file_link")).unwrap();
            assert_eq!(names(&es), ["file_link"]);
            assert_eq!(es[0].meta.kind, Kind::File);
            assert_eq!(
                vfs.list(&vp("/file.txt/x")).unwrap_err(),
                FsError::NotADirectory
            );
            assert_eq!(vfs.list(&vp("/missing")).unwrap_err(), FsError::NotFound);
            assert_eq!(vfs.list(&vp("/dangling")).unwrap_err(), FsError::NotFound);
            assert!(vfs.list(&vp("/empty")).unwrap().is_empty());
        });
    }

    #[test]
    fn check_dir_accepts_directories_only() {
        for_each_config("cwd", |_fx, vfs| {
            assert_eq!(vfs.check_dir(&VirtualPath::root()), Ok(()));
            assert_eq!(vfs.check_dir(&vp("/sub")), Ok(()));
            assert_eq!(vfs.check_dir(&vp("/sub_link")), Ok(()));
            assert_eq!(vfs.check_dir(&vp("/file.txt")), Err(FsError::NotADirectory));
            assert_eq!(
                vfs.check_dir(&vp("/file_link")),
                Err(FsError::NotADirectory)
            );
            assert_eq!(vfs.check_dir(&vp("/missing")), Err(FsError::NotFound));
        });
    }

    #[test]
    fn open_file_reads_regular_files_only_and_never_blocks_on_a_fifo() {
        for_each_config("open", |fx, vfs| {
            let (mut f, meta) = vfs.open_file(&vp("/sub/inner.txt")).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            assert_eq!((s.as_str(), meta.size, meta.kind), ("inner", 5, Kind::File));
            assert_eq!(read_all(vfs, "/file_link").unwrap(), b"hello");
            assert_eq!(
                vfs.open_file(&vp("/sub")).unwrap_err(),
                FsError::IsADirectory
            );
            assert_eq!(
                vfs.open_file(&VirtualPath::root()).unwrap_err(),
                FsError::IsADirectory
            );
            assert_eq!(
                vfs.open_file(&vp("/missing")).unwrap_err(),
                FsError::NotFound
            );
            let dir = File::open(&fx.root).unwrap();
            if !fx.root.join("fifo").exists() {
                sys::mkfifoat(dir.as_fd(), c"fifo", 0o644).unwrap();
            }
            // Would hang forever if the FIFO were opened for reading.
            assert_eq!(
                vfs.open_file(&vp("/fifo")).unwrap_err(),
                FsError::PermissionDenied
            );
            let m = entry(&vfs.list(&VirtualPath::root()).unwrap(), "fifo").meta;
            assert_eq!(m.kind, Kind::Other);
        });
    }

    #[test]
    fn metadata_follows_links_inside_the_jail() {
        for_each_config("meta", |_fx, vfs| {
            assert_eq!(vfs.metadata(&VirtualPath::root()).unwrap().kind, Kind::Dir);
            assert_eq!(vfs.metadata(&vp("/file_link")).unwrap().size, 5);
            assert_eq!(vfs.metadata(&vp("/sub_link")).unwrap().kind, Kind::Dir);
            assert_eq!(
                vfs.metadata(&vp("/dangling")).unwrap_err(),
                FsError::NotFound
            );
        });
    }

    #[test]
    fn upload_temp_files_are_hidden_from_list() {
        let fx = Fixture::new("hidden");
        std::fs::write(
            fx.root.join(".leanftpd-upload-0123456789abcdef"),
            b"partial",
        )
        .unwrap();
        std::fs::write(fx.root.join(".hidden_but_listed"), b"").unwrap();
        for (_, vfs) in configurations(&fx) {
            let got = names(&vfs.list(&VirtualPath::root()).unwrap());
            assert!(
                got.iter().all(|n| !n.starts_with(".leanftpd-upload-")),
                "{got:?}"
            );
            assert!(got.contains(&".hidden_but_listed".to_string()));
        }
    }

    #[test]
    fn unsearchable_directory_is_refused_as_cwd_when_not_privileged() {
        use std::os::unix::fs::PermissionsExt;
        let fx = Fixture::new("perm");
        let locked = fx.root.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::write(locked.join("f"), b"x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Root (CAP_DAC_OVERRIDE) searches anything: nothing to check then.
        if std::fs::metadata(locked.join("f")).is_err() {
            let vfs = fx.vfs(true);
            assert_eq!(
                vfs.check_dir(&vp("/locked")),
                Err(FsError::PermissionDenied)
            );
            assert_eq!(read_all(&vfs, "/locked/f"), Err(FsError::PermissionDenied));
            assert_eq!(
                vfs.create_upload(&vp("/locked/g")).unwrap_err(),
                FsError::PermissionDenied
            );
        }
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // ---- Read-only configuration. ----

    #[test]
    fn read_only_refuses_every_mutation_with_read_only() {
        let fx = Fixture::new("ro");
        let vfs = fx.vfs(false);
        assert!(!vfs.is_writable());
        let before = fx.real_names(".");
        let mtime = vfs.metadata(&vp("/file.txt")).unwrap().mtime;
        assert_eq!(
            vfs.create_upload(&vp("/new.txt")).unwrap_err(),
            FsError::ReadOnly
        );
        assert_eq!(
            vfs.create_upload(&vp("/file.txt")).unwrap_err(),
            FsError::ReadOnly
        );
        assert_eq!(vfs.mkdir(&vp("/newdir")), Err(FsError::ReadOnly));
        assert_eq!(vfs.mkdir(&VirtualPath::root()), Err(FsError::ReadOnly));
        assert_eq!(vfs.rmdir(&vp("/empty")), Err(FsError::ReadOnly));
        assert_eq!(vfs.remove_file(&vp("/file.txt")), Err(FsError::ReadOnly));
        assert_eq!(
            vfs.rename(&vp("/file.txt"), &vp("/moved")),
            Err(FsError::ReadOnly)
        );
        assert_eq!(vfs.set_mtime(&vp("/file.txt"), 0), Err(FsError::ReadOnly));
        assert_eq!(fx.real_names("."), before);
        assert_eq!(vfs.metadata(&vp("/file.txt")).unwrap().mtime, mtime);
        fx.canary_intact();
    }

    // ---- Writable configuration. ----

    #[test]
    fn rename_target_through_a_symlinked_dir_cannot_land_outside() {
        let fx = Fixture::new("rn-out");
        let vfs = fx.vfs(true);
        for to in [
            "/outdir_abs/stolen",
            "/outdir_rel/stolen",
            "/outdir_abs/secret_dir/stolen",
        ] {
            assert_eq!(
                vfs.rename(&vp("/file.txt"), &vp(to)),
                Err(FsError::NotFound),
                "{to}"
            );
        }
        for from in ["/outdir_abs/canary", "/outdir_rel/canary"] {
            assert_eq!(
                vfs.rename(&vp(from), &vp("/got")),
                Err(FsError::NotFound),
                "{from}"
            );
        }
        // Renaming the escaping link moves the link, not its target.
        vfs.rename(&vp("/abs_canary"), &vp("/sub/moved_link"))
            .unwrap();
        assert!(std::fs::symlink_metadata(fx.root.join("sub/moved_link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(fx.root.join("file.txt")).unwrap(), b"hello");
        fx.canary_intact();
    }

    #[test]
    fn mutations_through_escaping_links_stay_inside() {
        let fx = Fixture::new("mut-out");
        let vfs = fx.vfs(true);
        assert_eq!(vfs.mkdir(&vp("/outdir_abs/newdir")), Err(FsError::NotFound));
        assert_eq!(vfs.mkdir(&vp("/outdir_rel/newdir")), Err(FsError::NotFound));
        assert_eq!(
            vfs.create_upload(&vp("/outdir_abs/up")).unwrap_err(),
            FsError::NotFound
        );
        assert_eq!(
            vfs.remove_file(&vp("/outdir_abs/canary")),
            Err(FsError::NotFound)
        );
        assert_eq!(
            vfs.rmdir(&vp("/outdir_abs/secret_dir")),
            Err(FsError::NotFound)
        );
        assert_eq!(vfs.rmdir(&vp("/outdir_abs")), Err(FsError::NotADirectory));
        let canary_mtime = std::fs::metadata(fx.outside.join("canary"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(vfs.set_mtime(&vp("/rel_escape"), 0), Err(FsError::NotFound));
        assert_eq!(vfs.set_mtime(&vp("/abs_canary"), 0), Err(FsError::NotFound));
        assert_eq!(
            std::fs::metadata(fx.outside.join("canary"))
                .unwrap()
                .modified()
                .unwrap(),
            canary_mtime
        );
        // Uploading onto an escaping link replaces the link, not the target.
        let mut up = vfs.create_upload(&vp("/rel_escape")).unwrap();
        up.file.write_all(b"replaced").unwrap();
        up.commit().unwrap();
        assert_eq!(
            std::fs::read(fx.root.join("rel_escape")).unwrap(),
            b"replaced"
        );
        // Deleting an escaping link removes the link only.
        vfs.remove_file(&vp("/sub/escape")).unwrap();
        assert!(!fx.root.join("sub/escape").exists());
        fx.canary_intact();
    }

    #[test]
    fn upload_temp_file_is_created_beside_the_target_and_hidden() {
        let fx = Fixture::new("up");
        let vfs = fx.vfs(true);
        let mut up = vfs.create_upload(&vp("/sub/new.txt")).unwrap();
        let temp = String::from_utf8(up.temp_name().to_vec()).unwrap();
        assert!(
            temp.starts_with(".leanftpd-upload-") && temp.len() == UPLOAD_TEMP_PREFIX.len() + 16,
            "{temp}"
        );
        assert_eq!(up.final_name(), b"new.txt");
        assert_eq!(fx.real_names("sub"), [temp.as_str(), "escape", "inner.txt"]);
        assert_eq!(
            names(&vfs.list(&vp("/sub")).unwrap()),
            ["escape", "inner.txt"]
        );
        up.file.write_all(b"new data").unwrap();
        let mode = std::fs::metadata(fx.root.join("sub").join(&temp)).unwrap();
        assert!(mode.is_file());
        up.commit().unwrap();
        assert_eq!(read_all(&vfs, "/sub/new.txt").unwrap(), b"new data");
        assert_eq!(fx.real_names("sub"), ["escape", "inner.txt", "new.txt"]);
        // Two uploads at once get distinct temp names.
        let a = vfs.create_upload(&vp("/x")).unwrap();
        let b = vfs.create_upload(&vp("/x")).unwrap();
        assert_ne!(a.temp_name(), b.temp_name());
    }

    #[test]
    fn commit_replaces_an_old_file_atomically() {
        let fx = Fixture::new("commit");
        let vfs = fx.vfs(true);
        let (mut old_reader, old_meta) = vfs.open_file(&vp("/file.txt")).unwrap();
        let mut up = vfs.create_upload(&vp("/file.txt")).unwrap();
        up.file.write_all(b"NEW CONTENT").unwrap();
        // Until commit, readers see the old file.
        assert_eq!(read_all(&vfs, "/file.txt").unwrap(), b"hello");
        up.commit().unwrap();
        assert_eq!(read_all(&vfs, "/file.txt").unwrap(), b"NEW CONTENT");
        let new_meta = vfs.metadata(&vp("/file.txt")).unwrap();
        assert_ne!(
            new_meta.ino, old_meta.ino,
            "replaced by rename, not rewritten in place"
        );
        // A reader that had the old file open still reads it whole.
        let mut s = Vec::new();
        old_reader.read_to_end(&mut s).unwrap();
        assert_eq!(s, b"hello");
        assert!(fx
            .real_names(".")
            .iter()
            .all(|n| !n.starts_with(".leanftpd-upload-")));
    }

    #[test]
    fn drop_without_commit_leaves_old_file_intact_and_no_temp_file() {
        let fx = Fixture::new("drop");
        let vfs = fx.vfs(true);
        let before = fx.real_names(".");
        let mut up = vfs.create_upload(&vp("/file.txt")).unwrap();
        up.file.write_all(b"half an upl").unwrap();
        drop(up);
        assert_eq!(read_all(&vfs, "/file.txt").unwrap(), b"hello");
        assert_eq!(fx.real_names("."), before);
        let up = vfs.create_upload(&vp("/brand_new")).unwrap();
        up.discard();
        assert_eq!(fx.real_names("."), before);
    }

    #[test]
    fn create_upload_validates_target() {
        let fx = Fixture::new("up-bad");
        let vfs = fx.vfs(true);
        assert_eq!(
            vfs.create_upload(&vp("/sub")).unwrap_err(),
            FsError::IsADirectory
        );
        assert_eq!(
            vfs.create_upload(&VirtualPath::root()).unwrap_err(),
            FsError::IsADirectory
        );
        assert_eq!(
            vfs.create_upload(&vp("/nodir/f")).unwrap_err(),
            FsError::NotFound
        );
        assert_eq!(
            vfs.create_upload(&vp("/file.txt/f")).unwrap_err(),
            FsError::NotADirectory
        );
        assert_eq!(
            vfs.create_upload(&vp("/.leanftpd-upload-x")).unwrap_err(),
            FsError::InvalidName
        );
        assert_eq!(
            vfs.create_upload(&vp("/a\r\nb")).unwrap_err(),
            FsError::InvalidName
        );
        assert_eq!(
            vfs.create_upload(&vp("/a\nb")).unwrap_err(),
            FsError::InvalidName
        );
        assert_eq!(
            vfs.create_upload(&vp(&"n".repeat(300))).unwrap_err(),
            FsError::NameTooLong
        );
        // Onto a symlinked directory: the link is a directory in the jail.
        let up = vfs.create_upload(&vp("/sub_link/f")).unwrap();
        up.commit().unwrap();
        assert!(fx.root.join("sub/f").exists());
        // A directory appearing at the target before commit wins.
        let up = vfs.create_upload(&vp("/late")).unwrap();
        std::fs::create_dir(fx.root.join("late")).unwrap();
        assert_eq!(up.commit(), Err(FsError::IsADirectory));
        assert!(fx
            .real_names(".")
            .iter()
            .all(|n| !n.starts_with(".leanftpd-upload-")));
    }

    #[test]
    fn mkdir_rmdir_remove_and_rename_map_errors() {
        let fx = Fixture::new("ops");
        let vfs = fx.vfs(true);
        assert_eq!(vfs.mkdir(&VirtualPath::root()), Err(FsError::AlreadyExists));
        assert_eq!(vfs.mkdir(&vp("/sub")), Err(FsError::AlreadyExists));
        assert_eq!(vfs.mkdir(&vp("/a\rb")), Err(FsError::InvalidName));
        assert_eq!(
            vfs.mkdir(&vp("/.leanftpd-upload-d")),
            Err(FsError::InvalidName)
        );
        assert_eq!(vfs.mkdir(&vp("/no/such")), Err(FsError::NotFound));
        assert_eq!(vfs.mkdir(&vp(&"d".repeat(256))), Err(FsError::NameTooLong));
        vfs.mkdir(&vp("/made")).unwrap();
        assert_eq!(vfs.metadata(&vp("/made")).unwrap().kind, Kind::Dir);

        assert_eq!(
            vfs.rmdir(&VirtualPath::root()),
            Err(FsError::PermissionDenied)
        );
        assert_eq!(vfs.rmdir(&vp("/sub")), Err(FsError::NotEmpty));
        assert_eq!(vfs.rmdir(&vp("/file.txt")), Err(FsError::NotADirectory));
        assert_eq!(vfs.rmdir(&vp("/sub_link")), Err(FsError::NotADirectory));
        vfs.rmdir(&vp("/made")).unwrap();
        assert_eq!(vfs.rmdir(&vp("/made")), Err(FsError::NotFound));

        assert_eq!(vfs.remove_file(&vp("/sub")), Err(FsError::IsADirectory));
        assert_eq!(
            vfs.remove_file(&VirtualPath::root()),
            Err(FsError::IsADirectory)
        );
        assert_eq!(vfs.remove_file(&vp("/missing")), Err(FsError::NotFound));
        vfs.remove_file(&vp("/sub_link")).unwrap();
        assert!(fx.root.join("sub/inner.txt").exists());

        assert_eq!(
            vfs.rename(&VirtualPath::root(), &vp("/x")),
            Err(FsError::PermissionDenied)
        );
        assert_eq!(
            vfs.rename(&vp("/file.txt"), &VirtualPath::root()),
            Err(FsError::PermissionDenied)
        );
        assert_eq!(
            vfs.rename(&vp("/file.txt"), &vp("/a\nb")),
            Err(FsError::InvalidName)
        );
        assert_eq!(
            vfs.rename(&vp("/file.txt"), &vp("/.leanftpd-upload-1")),
            Err(FsError::InvalidName)
        );
        assert_eq!(
            vfs.rename(&vp("/sub"), &vp("/sub/deeper")),
            Err(FsError::InvalidName)
        );
        assert_eq!(
            vfs.rename(&vp("/missing"), &vp("/x")),
            Err(FsError::NotFound)
        );
        assert_eq!(
            vfs.rename(&vp("/file.txt"), &vp("/sub")),
            Err(FsError::IsADirectory)
        );
        vfs.rename(&vp("/file.txt"), &vp("/sub/renamed.txt"))
            .unwrap();
        assert_eq!(read_all(&vfs, "/sub/renamed.txt").unwrap(), b"hello");
        vfs.rename(&vp("/sub/renamed.txt"), &vp("/sub/renamed.txt"))
            .unwrap();
        vfs.rename(&vp("/sub/renamed.txt"), &vp("/sub/inner.txt"))
            .unwrap();
        assert_eq!(read_all(&vfs, "/sub/inner.txt").unwrap(), b"hello");
        fx.canary_intact();
    }

    #[test]
    fn set_mtime_sets_the_modification_time_through_jailed_links() {
        let fx = Fixture::new("mtime");
        let vfs = fx.vfs(true);
        vfs.set_mtime(&vp("/file.txt"), 1_000_000_000).unwrap();
        assert_eq!(vfs.metadata(&vp("/file.txt")).unwrap().mtime, 1_000_000_000);
        vfs.set_mtime(&vp("/file_link"), 86_400).unwrap();
        assert_eq!(vfs.metadata(&vp("/file.txt")).unwrap().mtime, 86_400);
        vfs.set_mtime(&vp("/sub"), -86_400).unwrap();
        assert_eq!(vfs.metadata(&vp("/sub")).unwrap().mtime, -86_400);
        vfs.set_mtime(&VirtualPath::root(), 42).unwrap();
        assert_eq!(vfs.metadata(&VirtualPath::root()).unwrap().mtime, 42);
        assert_eq!(vfs.set_mtime(&vp("/missing"), 0), Err(FsError::NotFound));
    }

    #[test]
    fn vfs_open_requires_a_directory() {
        let fx = Fixture::new("open");
        assert!(Vfs::open(&fx.root.join("file.txt"), false).is_err());
        assert!(Vfs::open(&fx.root.join("missing"), false).is_err());
        let vfs = Vfs::open(&fx.root, true).unwrap();
        assert!(vfs.is_writable());
        assert!(!vfs.try_clone(false).unwrap().is_writable());
    }

    #[test]
    fn cr_lf_names_on_disk_never_break_listing_lines() {
        let fx = Fixture::new("crlf");
        std::fs::write(fx.root.join("evil\r\n550 x\r\n"), b"").unwrap();
        let vfs = fx.vfs(false);
        let es = vfs.list(&VirtualPath::root()).unwrap();
        let mut out = Vec::new();
        write_list(&es, 0, &mut out);
        write_nlst(&es, &mut out);
        let lines = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(lines, 2 * es.len());
        assert_eq!(out.iter().filter(|&&b| b == b'\r').count(), 2 * es.len());
    }

    // ---- errno → reply. ----

    #[test]
    fn errno_maps_to_errors_and_reply_codes() {
        let table = [
            (libc::ENOENT, FsError::NotFound, 550),
            (libc::EACCES, FsError::PermissionDenied, 550),
            (libc::EPERM, FsError::PermissionDenied, 550),
            (libc::EROFS, FsError::ReadOnly, 550),
            (libc::EEXIST, FsError::AlreadyExists, 550),
            (libc::ENOTDIR, FsError::NotADirectory, 550),
            (libc::EISDIR, FsError::IsADirectory, 550),
            (libc::ENOTEMPTY, FsError::NotEmpty, 550),
            (libc::ENOSPC, FsError::NoSpace, 452),
            (libc::EDQUOT, FsError::QuotaExceeded, 552),
            (libc::ENAMETOOLONG, FsError::NameTooLong, 553),
            (libc::EILSEQ, FsError::InvalidName, 553),
            (libc::EXDEV, FsError::PermissionDenied, 550),
            (libc::ELOOP, FsError::PermissionDenied, 550),
            (libc::EBUSY, FsError::Busy, 450),
            (libc::ETXTBSY, FsError::Busy, 450),
            (libc::EIO, FsError::Io(libc::EIO), 451),
            (libc::EINVAL, FsError::Io(libc::EINVAL), 451),
        ];
        for (errno, err, code) in table {
            assert_eq!(FsError::from_errno(errno), err, "errno {errno}");
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(FsError::from_io(&io::Error::from_raw_os_error(errno)), err);
        }
        assert_eq!(FsError::InvalidName.code(), 553);
        assert_eq!(
            FsError::from_io(&io::Error::new(io::ErrorKind::NotFound, "x")),
            FsError::NotFound
        );
        assert_eq!(FsError::from_io(&io::Error::other("x")), FsError::Io(0));
    }

    #[test]
    fn error_texts_are_short_single_lines() {
        let all = [
            FsError::NotFound,
            FsError::PermissionDenied,
            FsError::ReadOnly,
            FsError::AlreadyExists,
            FsError::NotADirectory,
            FsError::IsADirectory,
            FsError::NotEmpty,
            FsError::NoSpace,
            FsError::QuotaExceeded,
            FsError::InvalidName,
            FsError::NameTooLong,
            FsError::Busy,
            FsError::Io(5),
        ];
        for e in all {
            let t = e.text();
            assert!(
                !t.is_empty() && t.len() < 40 && !t.contains(['\r', '\n']),
                "{e:?}: {t:?}"
            );
            assert!((400..600).contains(&e.code()));
        }
        assert_eq!(FsError::NotFound.text(), "No such file or directory");
    }

    // ---- Listing bounds: sorted within the caps, streamed past them. ----

    /// `root/big/` with `n` empty files named `{prefix}{i:06}`.
    fn big_dir(fx: &Fixture, n: usize, prefix: &str) -> Vec<String> {
        let dir = fx.root.join("big");
        std::fs::create_dir(&dir).unwrap();
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:06}")).collect();
        for name in &names {
            File::create(dir.join(name)).unwrap();
        }
        names
    }

    /// Every name of a listing, in the order handed out, checking its
    /// memory after each entry.
    fn drain(vfs: &Vfs, l: &mut Listing, with_meta: bool, max_heap_bytes: usize) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(e) = l.next_entry(vfs, with_meta).unwrap() {
            assert!(l.heap_bytes() <= max_heap_bytes, "{} > {max_heap_bytes}", l.heap_bytes());
            got.push(String::from_utf8(e.name.to_vec()).unwrap());
        }
        assert!(l.is_done());
        assert_eq!(l.heap_bytes(), b"/big".len(), "the names are freed at the end");
        got
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn a_directory_at_the_entry_cap_is_listed_sorted_within_the_heap_cap() {
        let fx = Fixture::new("cap");
        let want = big_dir(&fx, LISTING_SORT_MAX_ENTRIES, "f");
        // Upload temp files do not count towards the cap, and stay hidden.
        File::create(fx.root.join("big/.leanftpd-upload-0123456789abcdef")).unwrap();
        let vfs = fx.vfs(false);
        let mut l = vfs.open_listing(&vp("/big")).unwrap();
        assert!(l.is_sorted());
        assert_eq!(l.remaining(), Some(LISTING_SORT_MAX_ENTRIES));
        let heap = l.heap_bytes();
        assert!(heap <= LISTING_SORTED_MAX_HEAP_BYTES + 4, "{heap}");
        // 8,192 names of 7 bytes: the buffer holds the names, not more.
        assert!(heap <= LISTING_SORT_MAX_ENTRIES * (7 + 8) + 4, "{heap}");
        assert_eq!(drain(&vfs, &mut l, true, heap), want, "in name order");
    }

    #[test]
    fn one_entry_past_the_entry_cap_streams_every_entry_exactly_once() {
        let fx = Fixture::new("cap1");
        let want = big_dir(&fx, LISTING_SORT_MAX_ENTRIES + 1, "f");
        File::create(fx.root.join("big/.leanftpd-upload-0123456789abcdef")).unwrap();
        let vfs = fx.vfs(false);
        for with_meta in [false, true] {
            let mut l = vfs.open_listing(&vp("/big")).unwrap();
            assert!(!l.is_sorted());
            assert_eq!(l.remaining(), None);
            let got = drain(&vfs, &mut l, with_meta, LISTING_READ_BUFFER_BYTES + 4);
            assert_eq!(got.len(), want.len(), "no entry twice, none missing");
            assert_eq!(sorted(got), want);
        }
    }

    #[test]
    fn names_past_the_byte_cap_stream_however_few_the_entries() {
        let fx = Fixture::new("bytes");
        // 1,100 names of 240 bytes: 264,000 bytes > 256 KiB.
        let prefix = "n".repeat(234);
        let want = big_dir(&fx, 1_100, &prefix);
        let vfs = fx.vfs(false);
        let mut l = vfs.open_listing(&vp("/big")).unwrap();
        assert!(!l.is_sorted());
        let got = drain(&vfs, &mut l, true, LISTING_READ_BUFFER_BYTES + 4);
        assert_eq!(got.len(), want.len());
        assert_eq!(sorted(got), want);
        // 1,000 of them fit the byte cap: sorted again.
        for name in &want[1_000..] {
            std::fs::remove_file(fx.root.join("big").join(name)).unwrap();
        }
        let mut l = vfs.open_listing(&vp("/big")).unwrap();
        assert!(l.is_sorted());
        let heap = l.heap_bytes();
        assert!(heap <= LISTING_SORTED_MAX_HEAP_BYTES + 4, "{heap}");
        assert_eq!(drain(&vfs, &mut l, false, heap), want[..1_000]);
    }

    #[test]
    fn a_streamed_listing_of_20000_entries_holds_under_64_kib() {
        const STREAMED_MAX_HEAP_BYTES: usize = 64 * 1024;
        let fx = Fixture::new("stream");
        let want = big_dir(&fx, 20_000, "entry-");
        std::os::unix::fs::symlink("/file.txt", fx.root.join("big/link")).unwrap();
        let vfs = fx.vfs(false);
        let mut l = vfs.open_listing(&vp("/big")).unwrap();
        assert!(!l.is_sorted());
        assert!(l.heap_bytes() <= STREAMED_MAX_HEAP_BYTES, "{}", l.heap_bytes());
        // Entries removed while the listing runs are skipped; the link is
        // resolved inside the jail as in a sorted listing.
        let mut got = Vec::new();
        let mut link = None;
        while let Some(e) = l.next_entry(&vfs, true).unwrap() {
            assert!(l.heap_bytes() <= STREAMED_MAX_HEAP_BYTES);
            if got.len() == 10 {
                for name in &want[15_000..] {
                    let _ = std::fs::remove_file(fx.root.join("big").join(name));
                }
            }
            if &*e.name == b"link" {
                link = Some(e.meta);
            } else {
                got.push(String::from_utf8(e.name.to_vec()).unwrap());
            }
        }
        let link = link.expect("the link is listed");
        assert_eq!((link.kind, link.size), (Kind::File, 5));
        let got = sorted(got);
        let mut deduped = got.clone();
        deduped.dedup();
        assert_eq!(deduped, got, "no entry twice");
        assert!(got.len() >= 15_000 && got.len() <= 15_010, "{}", got.len());
        assert!(want[..15_000].iter().all(|n| got.binary_search(n).is_ok()));
    }

    #[test]
    fn a_missing_directory_is_an_error_when_the_listing_opens() {
        let fx = Fixture::new("gone");
        let vfs = fx.vfs(false);
        assert_eq!(vfs.open_listing(&vp("/missing")).unwrap_err(), FsError::NotFound);
        let mut l = vfs.open_listing(&vp("/file.txt")).unwrap();
        assert_eq!(l.remaining(), Some(1));
        assert_eq!(&*l.next_entry(&vfs, true).unwrap().unwrap().name, b"file.txt");
        assert!(l.next_entry(&vfs, true).unwrap().is_none());
        assert!(l.is_done());
    }

    // ---- Globs and NLST names (issue 10). ----

    fn glob(p: &str) -> glob::Glob {
        glob::Glob::new(p.as_bytes()).unwrap()
    }

    #[test]
    fn a_glob_over_a_sorted_directory_is_filtered_when_it_opens() {
        let fx = Fixture::new("glob");
        for n in ["b.txt", "a.txt", "c.jpg", ".hidden.txt", "file1.txt", "file22.txt"] {
            std::fs::write(fx.root.join("sub").join(n), n).unwrap();
        }
        symlink("a.txt", fx.root.join("sub/link.txt")).unwrap();
        let vfs = fx.vfs(false);
        let mut l = vfs.open_glob(&vp("/sub"), glob("*.txt")).unwrap();
        assert!(l.is_sorted());
        assert_eq!(l.remaining(), Some(6), "filtered before the first entry is asked for");
        let got = vfs_names(&vfs, &mut l);
        assert_eq!(got, ["a.txt", "b.txt", "file1.txt", "file22.txt", "inner.txt", "link.txt"], "no .hidden.txt");
        let mut l = vfs.open_glob(&vp("/sub"), glob("file?.txt")).unwrap();
        let e = l.next_entry(&vfs, true).unwrap().unwrap();
        assert_eq!((&*e.name, e.meta.size), (&b"file1.txt"[..], 9), "entries carry their metadata");
        assert!(l.next_entry(&vfs, true).unwrap().is_none());
        // A link is reported by its target, as in any listing.
        let mut l = vfs.open_glob(&vp("/sub"), glob("l*")).unwrap();
        assert_eq!(l.next_entry(&vfs, true).unwrap().unwrap().meta.kind, Kind::File);
        // No match is known at once; the directory must be one.
        assert!(vfs.open_glob(&vp("/sub"), glob("*.png")).unwrap().is_done());
        assert_eq!(vfs.open_glob(&vp("/file.txt"), glob("*")).unwrap_err(), FsError::NotADirectory);
        assert_eq!(vfs.open_glob(&vp("/missing"), glob("*")).unwrap_err(), FsError::NotFound);
        // A glob cannot reach outside the jail through a link to a directory.
        assert_eq!(vfs.open_glob(&vp("/outdir_abs"), glob("*")).unwrap_err(), FsError::NotFound);
        let mut l = vfs.open_glob(&vp("/"), glob("*canary")).unwrap();
        let e = l.next_entry(&vfs, true).unwrap().unwrap();
        assert_eq!((&*e.name, e.meta.kind, e.meta.size), (&b"abs_canary"[..], Kind::Symlink, 0));
        fx.canary_intact();
    }

    fn vfs_names(vfs: &Vfs, l: &mut Listing) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(e) = l.next_entry(vfs, true).unwrap() {
            got.push(String::from_utf8(e.name.to_vec()).unwrap());
        }
        got
    }

    #[test]
    fn a_streamed_glob_reads_a_bounded_slice_per_call_and_finds_every_match_once() {
        let fx = Fixture::new("glob-stream");
        big_dir(&fx, LISTING_SORT_MAX_ENTRIES + 1, "f");
        let want: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
        for n in &want {
            File::create(fx.root.join("big").join(n)).unwrap();
        }
        let vfs = fx.vfs(false);
        let mut l = vfs.open_glob(&vp("/big"), glob("m*")).unwrap();
        assert!(!l.is_sorted() && !l.is_done());
        assert!(l.heap_bytes() < 64 * 1024, "a streamed glob holds its read buffer and masks: {}", l.heap_bytes());
        let (mut got, mut calls) = (Vec::new(), 0);
        loop {
            calls += 1;
            let mut scan = 100;
            match l.next_entry_within(&vfs, true, &mut scan).unwrap() {
                Next::Entry(e) => got.push(String::from_utf8(e.name.to_vec()).unwrap()),
                Next::Pending => assert_eq!(scan, 0, "pending only once the budget is spent"),
                Next::End => break,
            }
        }
        assert_eq!(sorted(got), want);
        // 8,198 names, at most 100 skipped per call.
        assert!(calls >= (LISTING_SORT_MAX_ENTRIES + 1) / 100, "{calls} calls");
        assert!(l.is_done());
    }

    #[test]
    fn a_streamed_glob_past_the_match_cap_fails_with_e2big_instead_of_ending() {
        let fx = Fixture::new("glob-cap");
        big_dir(&fx, GLOB_MAX_MATCHES + 1, "f");
        let vfs = fx.vfs(false);
        let mut l = vfs.open_glob(&vp("/big"), glob("f*")).unwrap();
        assert!(!l.is_sorted());
        let mut n = 0;
        let err = loop {
            match l.next_entry(&vfs, false) {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("the listing ended as if complete after {n} entries"),
                Err(e) => break e,
            }
        };
        assert_eq!((n, err), (GLOB_MAX_MATCHES, FsError::Io(libc::E2BIG)));
        assert_eq!(err.code(), 451);
        // A glob matching fewer is listed whole however big the directory.
        let mut l = vfs.open_glob(&vp("/big"), glob("f00999?")).unwrap();
        assert_eq!(vfs_names(&vfs, &mut l).len(), 10);
    }

    #[test]
    fn nlst_names_carry_the_directory_as_the_client_wrote_it() {
        let fx = Fixture::new("nlst-names");
        let vfs = fx.vfs(false);
        let names = |p: &str, written: &str| {
            let mut l = vfs.open_listing(&vp(p)).unwrap().named_as_written(written.as_bytes());
            vfs_names(&vfs, &mut l)
        };
        for (written, want) in [
            ("sub", "sub/inner.txt"),
            ("sub/", "sub/inner.txt"),
            ("sub//", "sub/inner.txt"),
            ("/sub", "/sub/inner.txt"),
            ("./sub", "./sub/inner.txt"),
            ("sub_link", "sub_link/inner.txt"),
        ] {
            assert!(names("/sub", written).contains(&want.to_string()), "{written}: {:?}", names("/sub", written));
        }
        // Plain NLST, `.` and `./` keep bare names; `/` gives `/name`.
        for written in ["", ".", "./", ".//"] {
            assert!(names("/", written).contains(&"file.txt".to_string()), "{written:?}");
        }
        assert!(names("/", "/").contains(&"/file.txt".to_string()));
        assert!(names("/", "//").contains(&"/file.txt".to_string()));
        // A file is named as written (trailing slashes dropped).
        assert_eq!(names("/sub/inner.txt", "sub/inner.txt"), ["sub/inner.txt"]);
        assert_eq!(names("/file.txt", "./file.txt"), ["./file.txt"]);
        // A glob's entries carry the directory part of the argument.
        let mut l = vfs.open_glob(&vp("/sub"), glob("*.txt")).unwrap().named_as_written(b"sub/");
        assert_eq!(vfs_names(&vfs, &mut l), ["sub/inner.txt"]);
        // Symlinks in a prefixed listing are still resolved by their bare
        // name: `sub/escape` is a link out of the jail, shown with size 0.
        let mut l = vfs.open_listing(&vp("/sub")).unwrap().named_as_written(b"sub");
        let mut seen = Vec::new();
        while let Some(e) = l.next_entry(&vfs, true).unwrap() {
            seen.push((String::from_utf8(e.name.to_vec()).unwrap(), e.meta.kind, e.meta.size));
        }
        assert_eq!(seen, [("sub/escape".into(), Kind::Symlink, 0), ("sub/inner.txt".into(), Kind::File, 5)]);
    }

    // ---- SITE CHMOD. ----

    fn mode_of(fx: &Fixture, rel: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(fx.root.join(rel)).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn chmod_masks_to_the_permission_bits_whatever_it_is_given() {
        let fx = Fixture::new("chmod");
        let vfs = fx.vfs(true);
        vfs.chmod(&vp("/file.txt"), 0o640).unwrap();
        assert_eq!(mode_of(&fx, "file.txt"), 0o640);
        vfs.chmod(&vp("/file.txt"), 0o6777).unwrap();
        assert_eq!(mode_of(&fx, "file.txt"), 0o777, "no set-uid or set-gid bit");
        vfs.chmod(&vp("/sub"), 0o1755).unwrap();
        assert_eq!(mode_of(&fx, "sub"), 0o755, "no sticky bit");
        vfs.chmod(&vp("/file.txt"), 0xFFFF_FFFF).unwrap();
        assert_eq!(mode_of(&fx, "file.txt"), 0o777);
        assert_eq!(fx.vfs(false).chmod(&vp("/file.txt"), 0o600), Err(FsError::ReadOnly));
        assert_eq!(vfs.chmod(&vp("/missing"), 0o600), Err(FsError::NotFound));
        assert_eq!(vfs.chmod(&vp("/abs_canary"), 0o600), Err(FsError::NotFound));
        fx.canary_intact();
    }

    #[test]
    fn chmod_never_changes_the_root_even_through_a_link() {
        let fx = Fixture::new("chmod-root");
        std::os::unix::fs::symlink("/", fx.root.join("sub/to_root")).unwrap();
        let before = mode_of(&fx, ".");
        let vfs = fx.vfs(true);
        for p in ["/", "/.", "/sub/..", "/sub/to_root", "/sub/to_root/."] {
            assert_eq!(vfs.chmod(&vp(p), 0o000), Err(FsError::PermissionDenied), "{p}");
        }
        assert_eq!(mode_of(&fx, "."), before);
        vfs.chmod(&vp("/sub/to_root/sub"), 0o700).unwrap();
        assert_eq!(mode_of(&fx, "sub"), 0o700);
    }

    #[test]
    fn an_interrupted_drop_box_upload_leaves_nothing_and_a_lost_race_is_no_replace() {
        let fx = Fixture::new("dropbox");
        let vfs = Vfs::open_with(&fx.root, Rights::UploadOnly).unwrap();
        let mut up = vfs.create_upload(&vp("/sub/new.txt")).unwrap();
        up.keep_partial_if_new();
        up.file.write_all(b"half").unwrap();
        up.interrupted();
        assert_eq!(fx.real_names("sub"), ["escape", "inner.txt"]);
        // Racing for one new name: the first commit wins.
        let mut a = vfs.create_upload(&vp("/sub/race")).unwrap();
        let mut b = vfs.create_upload(&vp("/sub/race")).unwrap();
        b.file.write_all(b"b").unwrap();
        a.file.write_all(b"a").unwrap();
        b.commit().unwrap();
        assert_eq!(a.commit(), Err(FsError::NoReplace));
        assert_eq!(std::fs::read(fx.root.join("sub/race")).unwrap(), b"b");
        assert_eq!(fx.real_names("sub"), ["escape", "inner.txt", "race"]);
        // And now the name is taken before any byte is sent.
        assert_eq!(vfs.create_upload(&vp("/sub/race")).err(), Some(FsError::NoReplace));
        fx.canary_intact();
    }

    #[test]
    fn an_upload_dir_must_be_an_existing_directory_of_a_read_only_view() {
        let fx = Fixture::new("updir");
        let ro = || Vfs::open(&fx.root, false).unwrap();
        assert_eq!(ro().with_upload_dir(&vp("/nope")).err(), Some(FsError::NotFound));
        assert_eq!(ro().with_upload_dir(&vp("/sub/inner.txt")).err(), Some(FsError::NotADirectory));
        assert_eq!(fx.vfs(true).with_upload_dir(&vp("/sub")).err(), Some(FsError::PermissionDenied));
        let vfs = ro().with_upload_dir(&vp("/sub")).unwrap();
        assert_eq!(vfs.rights_at(&vp("/sub")), Rights::UploadOnly);
        assert_eq!(vfs.rights_at(&vp("/sub/a/b")), Rights::UploadOnly);
        assert_eq!(vfs.rights_at(&vp("/subway")), Rights::ReadOnly);
        assert_eq!(vfs.rights_at(&vp("/")), Rights::ReadOnly);
        // `sub/escape` climbs out of the root; in the drop box's own jail
        // it cannot even climb out of `sub`.
        assert!(vfs.create_upload(&vp("/sub/escape/x")).is_err());
        fx.canary_intact();
        assert_eq!(fx.real_names("sub"), ["escape", "inner.txt"]);
    }
}
