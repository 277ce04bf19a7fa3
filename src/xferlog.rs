//! The transfer log in the `xferlog(5)` format that wu-ftpd introduced and
//! vsftpd, ProFTPD and Pure-FTPd write, so that existing log analysers read
//! ours. One line per transfer, appended with a single `write` to a file
//! opened with `O_APPEND` (so concurrent writers and `logrotate`'s
//! copytruncate keep lines whole).
//!
//! Fields, space-separated:
//! `current-time transfer-time remote-host file-size filename transfer-type
//! special-action-flag direction access-mode username service-name
//! authentication-method authenticated-user-id completion-status`,
//! e.g. `Sat Nov 21 07:38:21 2026 1 127.0.0.1 5000 /pub/a.txt b _ o a
//! anonymous ftp 0 * c`. Times are UTC. Spaces in names are written as `_`
//! (as vsftpd does), and control bytes as `?`, so one transfer is always one
//! line of 14 fields.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

use crate::vfs::listing::civil_from_unix;

/// Which way the bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To the client (RETR): `o`.
    Outgoing,
    /// From the client (STOR, APPE, STOU): `i`.
    Incoming,
}

/// One finished transfer.
pub struct Record<'a> {
    /// Wall-clock end time, Unix seconds.
    pub end_unix: i64,
    /// Whole seconds the transfer took (at least 1, as wu-ftpd rounds).
    pub seconds: u64,
    /// The client.
    pub remote: IpAddr,
    /// Bytes moved.
    pub bytes: u64,
    /// The virtual path.
    pub path: &'a [u8],
    /// ASCII (`a`) or binary (`b`).
    pub ascii: bool,
    /// `o` or `i`.
    pub direction: Direction,
    /// Anonymous (`a`) or a real user (`r`).
    pub anonymous: bool,
    /// The user name.
    pub user: &'a str,
    /// Complete (`c`) or incomplete (`i`).
    pub complete: bool,
}

/// An open transfer log.
pub struct XferLog {
    file: File,
    line: Vec<u8>,
}

impl XferLog {
    /// Open (create) `path` for appending.
    pub fn open(path: &Path) -> io::Result<XferLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(XferLog { file, line: Vec::with_capacity(256) })
    }

    /// Append one record; errors are returned for the caller to log.
    pub fn write(&mut self, r: &Record<'_>) -> io::Result<()> {
        self.line.clear();
        format_record(r, &mut self.line);
        self.file.write_all(&self.line)
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Format one record as a line (with `\n`).
pub fn format_record(r: &Record<'_>, out: &mut Vec<u8>) {
    let (y, mo, d, h, mi, s) = civil_from_unix(r.end_unix);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[r.end_unix.div_euclid(86_400).rem_euclid(7) as usize];
    let _ = write!(
        out,
        "{weekday} {} {d:2} {h:02}:{mi:02}:{s:02} {y} {} {} {} ",
        MONTHS[(mo as usize).saturating_sub(1).min(11)],
        r.seconds.max(1),
        r.remote,
        r.bytes
    );
    for &b in r.path {
        out.push(match b {
            b' ' => b'_',
            0..=0x1f | 0x7f => b'?',
            _ => b,
        });
    }
    let _ = writeln!(
        out,
        " {} _ {} {} {} ftp 0 * {}",
        if r.ascii { 'a' } else { 'b' },
        if r.direction == Direction::Outgoing { 'o' } else { 'i' },
        if r.anonymous { 'a' } else { 'r' },
        if r.user.is_empty() { "-" } else { r.user },
        if r.complete { 'c' } else { 'i' }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_has_the_fourteen_xferlog_fields() {
        let mut out = Vec::new();
        format_record(
            &Record {
                end_unix: 1_795_246_701, // 2026-11-21 07:38:21 UTC, a Saturday
                seconds: 0,
                remote: "127.0.0.1".parse().unwrap(),
                bytes: 5000,
                path: b"/pub/my file.txt",
                ascii: false,
                direction: Direction::Outgoing,
                anonymous: true,
                user: "anonymous",
                complete: true,
            },
            &mut out,
        );
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line, "Sat Nov 21 07:38:21 2026 1 127.0.0.1 5000 /pub/my_file.txt b _ o a anonymous ftp 0 * c\n");
        // 5 date fields + 13 others.
        assert_eq!(line.split_whitespace().count(), 18);
    }

    #[test]
    fn a_name_with_a_newline_stays_on_one_line() {
        let mut out = Vec::new();
        format_record(
            &Record {
                end_unix: 0,
                seconds: 3,
                remote: "::1".parse().unwrap(),
                bytes: 1,
                path: b"/a\nb\rc",
                ascii: true,
                direction: Direction::Incoming,
                anonymous: false,
                user: "alice",
                complete: false,
            },
            &mut out,
        );
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(String::from_utf8(out).unwrap().starts_with("Thu Jan  1 00:00:00 1970 3 ::1 1 /a?b?c a _ i r alice ftp 0 * i"));
    }
}
