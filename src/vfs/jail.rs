//! The jail: a handle on a user's root directory and the only way to turn
//! a [`VirtualPath`] into an open file descriptor.
//!
//! It owns the root directory handle (`O_PATH | O_DIRECTORY`) and the two
//! lookups built on it: [`Jail::open`] (a whole path) and
//! [`Jail::open_parent`] (the directory that holds a path's final name,
//! plus that name). Both go through [`sys::openat2_in_root`], i.e.
//! `openat2(root, rel, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so the
//! kernel — not string checks — keeps `..`, absolute and relative symbolic
//! links, and concurrent renames from leaving the root.
//!
//! It never decides policy (read-only, hidden names, reply codes) and never
//! looks anything up by a path string outside `openat2`: no `chroot`, no
//! `AT_FDCWD`, no `/proc/self/fd`, no root privileges.
//!
//! # Invariants
//! - Every descriptor handed out was obtained by `openat2` with
//!   `RESOLVE_IN_ROOT` from the root handle, so it refers to an object in
//!   the root's tree (bind mounts and hard links placed there by the admin
//!   excepted).
//! - A name returned by [`Jail::open_parent`] is a single component (no `/`,
//!   not `.` or `..`, no NUL); operations on it use `*at` calls on the
//!   parent handle, with `O_NOFOLLOW` where a file is opened, so the final
//!   component is never resolved outside the parent.

use super::path::VirtualPath;
use super::FsError;
use crate::sys;
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A user's root directory, opened once; all lookups are resolved beneath it.
#[derive(Debug)]
pub struct Jail {
    /// `O_PATH | O_DIRECTORY` handle on the root.
    root: OwnedFd,
}

/// Turn bytes into a C string; an interior NUL is an invalid name.
pub fn c_name(bytes: &[u8]) -> Result<CString, FsError> {
    CString::new(bytes).map_err(|_| FsError::InvalidName)
}

impl Jail {
    /// Open `root` (which must be a directory) and check once that the
    /// kernel supports `openat2`; `ENOSYS` becomes a clear error
    /// ("kernel lacks openat2 (Linux >= 5.6 required)").
    pub fn new(root: &Path) -> io::Result<Jail> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("root directory {}: {e}", root.display()))
            })?;
        let root_fd = OwnedFd::from(file);
        match sys::openat2_in_root(root_fd.as_fd(), c".", libc::O_PATH | libc::O_DIRECTORY, 0) {
            Ok(_) => Ok(Jail { root: root_fd }),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel lacks openat2 (Linux >= 5.6 required)",
            )),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "root directory {}: openat2 probe failed: {e}",
                    root.display()
                ),
            )),
        }
    }

    /// A jail rooted at a directory already opened (`O_PATH |
    /// O_DIRECTORY`) through another jail: the drop box of
    /// `--anonymous-upload-dir`. `openat2` was probed by that jail.
    pub fn from_dir(root: OwnedFd) -> Jail {
        Jail { root }
    }

    /// Another handle on the same root (`dup`).
    pub fn try_clone(&self) -> io::Result<Jail> {
        Ok(Jail {
            root: self.root.try_clone()?,
        })
    }

    /// The root handle (`O_PATH | O_DIRECTORY`).
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Open `p` beneath the root with `flags` (`O_CLOEXEC` is added).
    /// Symbolic links, including a final one, are followed inside the jail
    /// unless `flags` has `O_NOFOLLOW`.
    pub fn open(&self, p: &VirtualPath, flags: libc::c_int) -> Result<OwnedFd, FsError> {
        let rel = c_name(p.relative())?;
        sys::openat2_in_root(self.root.as_fd(), &rel, flags, 0).map_err(|e| FsError::from_io(&e))
    }

    /// Open the directory containing `p` (`O_PATH | O_DIRECTORY`, resolved in
    /// the jail) and return it with `p`'s final name. For the root, which has
    /// no name in any directory, this is `Err(PermissionDenied)`; callers
    /// that give the root another meaning check it first.
    pub fn open_parent(&self, p: &VirtualPath) -> Result<(OwnedFd, CString), FsError> {
        let name = p.file_name().ok_or(FsError::PermissionDenied)?;
        let name = c_name(name)?;
        let dir = self.open(&p.parent(), libc::O_PATH | libc::O_DIRECTORY)?;
        Ok((dir, name))
    }
}
