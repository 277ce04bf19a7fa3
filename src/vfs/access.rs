//! Who may do what: the one answer to "may a user with these rights do
//! this operation here", for every command that touches the filesystem.
//!
//! This module owns the permission policy and nothing else: [`check`] is a
//! pure function of a user's [`Rights`] at a path and the [`Op`] a command
//! asks for. [`super::Vfs::allow`] finds the rights at a path (the user's
//! own, or the anonymous upload directory's) and asks [`check`]; every
//! `Vfs` operation asks before it touches the filesystem, so a handler
//! cannot forget. It never touches the filesystem itself.
//!
//! # Drop boxes (`w`, `--anonymous-upload-dir`)
//! An upload-only area, for anonymous uploads and for devices that must
//! deliver but never read back (vsftpd's `anon_upload_enable` without
//! `anon_world_readable_only` reads, ProFTPD's `<Limit READ DIRS>` drop
//! box). Allowed: entering directories, uploading a *new* file (STOR,
//! STOU), making directories (MKD). Refused with `550` and a text naming
//! the drop box ([`FsError::UploadOnly`]): reading (RETR), the size, time
//! or facts of a file (SIZE, MDTM, MLST: they reveal others' deliveries),
//! appending (APPE) and resuming (REST + STOR: both need the old bytes),
//! deleting, renaming, removing directories, MFMT, SITE CHMOD. Replacing
//! an existing file is `553` ([`FsError::NoReplace`]; RFC 959 §5.4 lists
//! 553 "file name not allowed" among STOR's replies, not 550): one
//! uploader never overwrites or truncates another's delivery.
//!
//! Listings (LIST, NLST, MLSD, STAT with a path) of a directory are
//! *empty*, and end `226` as any listing does ([`Verdict::HideNames`]),
//! rather than `550`: FileZilla lists every directory it enters, and
//! camera firmwares list before they upload; a `550` stops both, an empty
//! listing reveals nothing. vsftpd answers the same way for a directory it
//! may not read. A listing of anything else (a file, a missing name) is
//! the same `550` drop-box refusal, whichever it is.
//!
//! What a drop box cannot hide: whether one given name is taken (STOR of
//! it is `553`, CWD into it works or not). It hides every name from
//! listings and every byte from reading.
//!
//! # Invariants
//! - A refusal comes before any filesystem access, so its reply is the same
//!   whether the file exists or not.
//! - `ReadWrite` allows everything; `ReadOnly` allows exactly what does
//!   not change the filesystem.

use super::FsError;

/// What a user may do in (part of) a tree: the users file's `r`, `rw` and
/// `w` (see [`crate::auth::Perm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rights {
    /// `r`: read and list; no change.
    ReadOnly,
    /// `rw`: everything.
    ReadWrite,
    /// `w`: a drop box (see the module documentation).
    UploadOnly,
}

/// What a command asks of the filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// CWD, CDUP: enter a directory.
    Enter,
    /// LIST, NLST, MLSD, STAT with a path: names in a directory.
    List,
    /// RETR: the bytes of a file.
    Read,
    /// SIZE, MDTM, MLST: the facts of one path.
    Stat,
    /// STOR of a new name, STOU.
    Create,
    /// STOR over an existing file.
    Replace,
    /// APPE.
    Append,
    /// STOR after `REST n`, n > 0.
    Resume,
    /// MKD.
    MakeDir,
    /// RMD.
    RemoveDir,
    /// DELE.
    Delete,
    /// RNFR, RNTO.
    Rename,
    /// MFMT.
    SetTime,
    /// SITE CHMOD.
    Chmod,
}

impl Op {
    /// Every operation, for tables of tests.
    pub const ALL: [Op; 14] = [
        Op::Enter,
        Op::List,
        Op::Read,
        Op::Stat,
        Op::Create,
        Op::Replace,
        Op::Append,
        Op::Resume,
        Op::MakeDir,
        Op::RemoveDir,
        Op::Delete,
        Op::Rename,
        Op::SetTime,
        Op::Chmod,
    ];

    /// True if the operation changes nothing on disk.
    pub fn is_read_only(self) -> bool {
        matches!(self, Op::Enter | Op::List | Op::Read | Op::Stat)
    }
}

/// The answer of [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// A listing: go ahead, but it shows no names (an empty listing, `226`).
    HideNames,
    /// Refused, with the error (and so the reply) to give.
    Refuse(FsError),
}

/// May a user with `rights` at a path do `op` there?
pub fn check(rights: Rights, op: Op) -> Verdict {
    match rights {
        Rights::ReadWrite => Verdict::Allow,
        Rights::ReadOnly if op.is_read_only() => Verdict::Allow,
        Rights::ReadOnly => Verdict::Refuse(FsError::ReadOnly),
        Rights::UploadOnly => match op {
            Op::Enter | Op::Create | Op::MakeDir => Verdict::Allow,
            Op::List => Verdict::HideNames,
            Op::Replace => Verdict::Refuse(FsError::NoReplace),
            Op::Read
            | Op::Stat
            | Op::Append
            | Op::Resume
            | Op::RemoveDir
            | Op::Delete
            | Op::Rename
            | Op::SetTime
            | Op::Chmod => Verdict::Refuse(FsError::UploadOnly),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole policy as a table: operation, then the verdict for `r`,
    /// `rw` and `w`. A change of policy is a change of this table.
    #[test]
    fn the_policy_table() {
        use Verdict::{Allow as A, HideNames as H};
        const RO: Verdict = Verdict::Refuse(FsError::ReadOnly);
        const UO: Verdict = Verdict::Refuse(FsError::UploadOnly);
        const NR: Verdict = Verdict::Refuse(FsError::NoReplace);
        let table: [(Op, Verdict, Verdict, Verdict); 14] = [
            (Op::Enter, A, A, A),
            (Op::List, A, A, H),
            (Op::Read, A, A, UO),
            (Op::Stat, A, A, UO),
            (Op::Create, RO, A, A),
            (Op::Replace, RO, A, NR),
            (Op::Append, RO, A, UO),
            (Op::Resume, RO, A, UO),
            (Op::MakeDir, RO, A, A),
            (Op::RemoveDir, RO, A, UO),
            (Op::Delete, RO, A, UO),
            (Op::Rename, RO, A, UO),
            (Op::SetTime, RO, A, UO),
            (Op::Chmod, RO, A, UO),
        ];
        assert_eq!(table.map(|row| row.0), Op::ALL, "every operation, once");
        for (op, r, rw, w) in table {
            assert_eq!(check(Rights::ReadOnly, op), r, "r {op:?}");
            assert_eq!(check(Rights::ReadWrite, op), rw, "rw {op:?}");
            assert_eq!(check(Rights::UploadOnly, op), w, "w {op:?}");
        }
    }

    #[test]
    fn drop_box_refusals_are_550_and_name_the_drop_box_and_overwrite_is_553() {
        assert_eq!(FsError::UploadOnly.code(), 550);
        assert!(FsError::UploadOnly.text().contains("drop box"), "{}", FsError::UploadOnly.text());
        assert_eq!(FsError::NoReplace.code(), 553);
        assert!(FsError::NoReplace.text().contains("drop box"), "{}", FsError::NoReplace.text());
    }
}
