//! Text formats for directory listings and timestamps: `LIST` lines in the
//! `ls -l` shape that clients parse, `NLST` lines, and the RFC 3659
//! `YYYYMMDDHHMMSS` time values of `MDTM`/`MFMT`, with a hand-written UTC
//! calendar (no time zone database, no chrono).
//!
//! It owns only byte formatting; it never touches the filesystem (entries
//! come from [`super::Listing`]) and never writes to a socket.
//!
//! # Invariants
//! - Every line written ends with CRLF and contains no other CR or LF: CR
//!   and LF bytes inside a name are written as `?`, so a file name can never
//!   break a line or inject a reply.
//! - All dates are UTC; owner and group are always printed as `ftp ftp`
//!   (local uids/gids are not disclosed).
//! - [`format_mdtm`] and [`parse_mdtm`] are inverse on every whole second
//!   from 0000-01-01 to 9999-12-31.

use super::{Entry, Kind};
use std::io::Write;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Six months, as `ls` counts "recent".
const RECENT_PAST_SECS: i64 = 180 * 86_400;
/// Timestamps up to this far in the future still show the time of day.
const RECENT_FUTURE_SECS: i64 = 3_600;

/// Seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const MIN_MDTM: i64 = -62_167_219_200;
const MAX_MDTM: i64 = 253_402_300_799;

/// Append `name` with CR and LF replaced by `?`.
fn push_name(out: &mut Vec<u8>, name: &[u8]) {
    out.extend(
        name.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b'?' } else { b }),
    );
}

/// The 10-character `ls -l` mode string, e.g. `drwxr-xr-x`.
fn mode_string(kind: Kind, mode: u32) -> [u8; 10] {
    let t = match kind {
        Kind::Dir => b'd',
        Kind::File => b'-',
        Kind::Symlink => b'l',
        Kind::Other => match mode & libc::S_IFMT {
            libc::S_IFIFO => b'p',
            libc::S_IFSOCK => b's',
            libc::S_IFCHR => b'c',
            libc::S_IFBLK => b'b',
            libc::S_IFDIR => b'd',
            libc::S_IFLNK => b'l',
            _ => b'-',
        },
    };
    let bit = |m: u32, c: u8| if mode & m != 0 { c } else { b'-' };
    let exec = |x: u32, special: u32, set: u8| match (mode & x != 0, mode & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => b'x',
        (false, false) => b'-',
    };
    [
        t,
        bit(0o400, b'r'),
        bit(0o200, b'w'),
        exec(0o100, 0o4000, b's'),
        bit(0o040, b'r'),
        bit(0o020, b'w'),
        exec(0o010, 0o2000, b's'),
        bit(0o004, b'r'),
        bit(0o002, b'w'),
        exec(0o001, 0o1000, b't'),
    ]
}

/// How a listing writes each entry: LIST, NLST or MLSD lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// LIST: `ls -l` lines (see [`write_list`]); `now_unix` decides which
    /// dates show the time of day.
    Long {
        /// The time the listing was asked for.
        now_unix: i64,
    },
    /// NLST: names only.
    Names,
    /// MLSD: RFC 3659 facts lines.
    Mlsd {
        /// The facts selected with OPTS MLST.
        facts: u8,
        /// Whether the session may write (the `perm` fact).
        writable: bool,
    },
}

impl ListFormat {
    /// Whether the lines need each entry's metadata (NLST does not).
    pub fn needs_meta(self) -> bool {
        self != ListFormat::Names
    }
}

/// One line of a listing, CRLF-terminated, in `format`; CR/LF in names
/// are written as `?`.
///
/// LIST is the `ls -l` line that curl, lftp, wget and FileZilla parse:
/// `"drwxr-xr-x 1 ftp ftp          4096 Jan 05 12:34 name\r\n"`; date
/// `"Mmm dd HH:MM"` if within ~6 months of now (past 180 days or up to 1
/// hour in future), else `"Mmm dd  yyyy"`; owner/group printed as
/// `"ftp ftp"`; permission string from `st_mode` (d, -, l, plus rwx bits and
/// setuid/sticky letters). NLST is the name alone; MLSD a `write_mlsx` line.
pub fn write_entry(format: ListFormat, e: &Entry, out: &mut Vec<u8>) {
    let m = &e.meta;
    match format {
        ListFormat::Long { now_unix } => {
            out.extend_from_slice(&mode_string(m.kind, m.mode));
            // Writing to a Vec<u8> cannot fail.
            let _ = write!(out, " {} ftp ftp {:>13} ", m.nlink, m.size);
            let (y, mo, d, h, mi, _) = civil_from_unix(m.mtime);
            out.extend_from_slice(MONTHS[(mo - 1) as usize]);
            let recent = m.mtime > now_unix.saturating_sub(RECENT_PAST_SECS)
                && m.mtime <= now_unix.saturating_add(RECENT_FUTURE_SECS);
            if recent {
                let _ = write!(out, " {d:02} {h:02}:{mi:02} ");
            } else {
                let _ = write!(out, " {d:02}  {y:04} ");
            }
            push_name(out, &e.name);
        }
        ListFormat::Names => push_name(out, &e.name),
        ListFormat::Mlsd { facts, writable } => write_mlsx(m, &e.name, facts, writable, out),
    }
    out.extend_from_slice(b"\r\n");
}

/// LIST lines (see [`write_entry`]) of every entry.
pub fn write_list(entries: &[Entry], now_unix: i64, out: &mut Vec<u8>) {
    for e in entries {
        write_entry(ListFormat::Long { now_unix }, e, out);
    }
}

/// NLST lines: one name per line.
pub fn write_nlst(entries: &[Entry], out: &mut Vec<u8>) {
    for e in entries {
        write_entry(ListFormat::Names, e, out);
    }
}

/// `YYYYMMDDHHMMSS` in UTC (RFC 3659 `time-val`, as `MDTM` replies).
/// Times before year 0 or after year 9999 are clamped to those years.
pub fn format_mdtm(unix_secs: i64) -> [u8; 14] {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix_secs.clamp(MIN_MDTM, MAX_MDTM));
    let mut out = [b'0'; 14];
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u64);
    put(4, 2, mo.into());
    put(6, 2, d.into());
    put(8, 2, h.into());
    put(10, 2, mi.into());
    put(12, 2, s.into());
    out
}

/// Parse an RFC 3659 `time-val`, `YYYYMMDDHHMMSS[.sss]` (UTC), into unix
/// seconds; a fraction is accepted and truncated. Fields are range-checked
/// (day against the month, leap years included); a leap second `60` is
/// accepted and lands on the next minute. `None` for anything else.
pub fn parse_mdtm(s: &[u8]) -> Option<i64> {
    if s.len() < 14 || !s[..14].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if s.len() > 14 && (s[14] != b'.' || s.len() == 15 || !s[15..].iter().all(u8::is_ascii_digit)) {
        return None;
    }
    let num = |a: usize, b: usize| {
        s[a..b]
            .iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    };
    let (y, mo, d, h, mi, sec) = (
        num(0, 4),
        num(4, 6),
        num(6, 8),
        num(8, 10),
        num(10, 12),
        num(12, 14),
    );
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(i64::from(y), mo)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + sec))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 }); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Unix seconds → UTC `(year, month 1-12, day 1-31, hour, minute, second)`
/// in the proleptic Gregorian calendar (H. Hinnant's `civil_from_days`).
/// Hand-written, no chrono; correct for negative times too.
pub fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod / 60 % 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::Meta;

    fn entry(name: &[u8], kind: Kind, mode: u32, size: u64, mtime: i64) -> Entry {
        Entry {
            name: name.into(),
            meta: Meta {
                kind,
                size,
                mtime,
                mode,
                nlink: 1,
                uid: 1000,
                gid: 1000,
                ino: 1,
                dev: 1,
            },
        }
    }

    /// 2024-01-05T12:34:56Z
    const T: i64 = 1_704_458_096;

    fn list_line(e: Entry, now: i64) -> String {
        let mut out = Vec::new();
        write_list(&[e], now, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fixed_time_is_2024_01_05() {
        assert_eq!(civil_from_unix(T), (2024, 1, 5, 12, 34, 56));
    }

    #[test]
    fn recent_directory_line_has_exact_format() {
        let e = entry(b"name", Kind::Dir, libc::S_IFDIR | 0o755, 4096, T);
        assert_eq!(
            list_line(e, T + 86_400),
            "drwxr-xr-x 1 ftp ftp          4096 Jan 05 12:34 name\r\n"
        );
    }

    #[test]
    fn old_file_line_shows_the_year() {
        let e = entry(b"report.txt", Kind::File, libc::S_IFREG | 0o644, 123, T);
        assert_eq!(
            list_line(e, T + 200 * 86_400),
            "-rw-r--r-- 1 ftp ftp           123 Jan 05  2024 report.txt\r\n"
        );
    }

    #[test]
    fn future_beyond_an_hour_shows_the_year_within_an_hour_the_time() {
        let e = |t| entry(b"f", Kind::File, libc::S_IFREG | 0o600, 0, t);
        assert!(list_line(e(T), T - 3_600).contains("Jan 05 12:34 f"));
        assert!(list_line(e(T), T - 3_601).contains("Jan 05  2024 f"));
        assert!(list_line(e(T), T + 180 * 86_400 - 1).contains("Jan 05 12:34 f"));
        assert!(list_line(e(T), T + 180 * 86_400).contains("Jan 05  2024 f"));
    }

    #[test]
    fn mode_letters_cover_types_and_special_bits() {
        assert_eq!(
            &mode_string(Kind::Symlink, libc::S_IFLNK | 0o777),
            b"lrwxrwxrwx"
        );
        assert_eq!(
            &mode_string(Kind::File, libc::S_IFREG | 0o4755),
            b"-rwsr-xr-x"
        );
        assert_eq!(
            &mode_string(Kind::File, libc::S_IFREG | 0o4644),
            b"-rwSr--r--"
        );
        assert_eq!(
            &mode_string(Kind::File, libc::S_IFREG | 0o2755),
            b"-rwxr-sr-x"
        );
        assert_eq!(
            &mode_string(Kind::Dir, libc::S_IFDIR | 0o1777),
            b"drwxrwxrwt"
        );
        assert_eq!(
            &mode_string(Kind::Dir, libc::S_IFDIR | 0o1770),
            b"drwxrwx--T"
        );
        assert_eq!(
            &mode_string(Kind::Other, libc::S_IFIFO | 0o644),
            b"prw-r--r--"
        );
        assert_eq!(
            &mode_string(Kind::Other, libc::S_IFSOCK | 0o755),
            b"srwxr-xr-x"
        );
        assert_eq!(
            &mode_string(Kind::Other, libc::S_IFCHR | 0o666),
            b"crw-rw-rw-"
        );
        assert_eq!(
            &mode_string(Kind::Other, libc::S_IFBLK | 0o660),
            b"brw-rw----"
        );
    }

    #[test]
    fn cr_lf_in_names_never_appear_in_a_listing_line() {
        let name = b"evil\r\n226 Transfer complete\r\nx\n";
        let e = || entry(name, Kind::File, libc::S_IFREG | 0o644, 1, T);
        let line = list_line(e(), T);
        assert!(
            line.ends_with("evil??226 Transfer complete??x?\r\n"),
            "{line:?}"
        );
        assert_eq!(line.matches('\r').count(), 1);
        assert_eq!(line.matches('\n').count(), 1);
        let mut nl = Vec::new();
        write_nlst(&[e()], &mut nl);
        assert_eq!(nl, b"evil??226 Transfer complete??x?\r\n");
    }

    #[test]
    fn nlst_is_one_name_per_crlf_line() {
        let es = [
            entry(b"a", Kind::File, 0o644, 0, 0),
            entry(b"b c", Kind::Dir, 0o755, 0, 0),
        ];
        let mut out = Vec::new();
        write_nlst(&es, &mut out);
        assert_eq!(out, b"a\r\nb c\r\n");
    }

    #[test]
    fn mdtm_formats_epoch_and_known_times() {
        assert_eq!(&format_mdtm(0), b"19700101000000");
        assert_eq!(&format_mdtm(T), b"20240105123456");
        assert_eq!(&format_mdtm(-1), b"19691231235959");
        assert_eq!(&format_mdtm(951_782_400), b"20000229000000"); // leap day of a /400 year
        assert_eq!(&format_mdtm(i64::MAX), b"99991231235959");
        assert_eq!(&format_mdtm(i64::MIN), b"00000101000000");
    }

    #[test]
    fn mdtm_round_trips_including_leap_years_and_1970() {
        for s in [
            &b"19700101000000"[..],
            b"19700101000001",
            b"19691231235959",
            b"20000229235959",
            b"20240229120000",
            b"20240301000000",
            b"19000228235959",
            b"21000301000000",
            b"16000229000000",
            b"00000101000000",
            b"99991231235959",
        ] {
            let t = parse_mdtm(s).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(s)));
            assert_eq!(&format_mdtm(t), s);
        }
        // Every day for 600 years around the epoch, at a varying time of day.
        let mut t = -300 * 365 * 86_400;
        while t < 300 * 365 * 86_400 {
            assert_eq!(parse_mdtm(&format_mdtm(t)), Some(t));
            t += 86_400 + 3_607;
        }
    }

    #[test]
    fn mdtm_rejects_impossible_dates_and_bad_syntax() {
        for s in [
            &b"19000229000000"[..], // 1900 is not a leap year
            b"20230229000000",
            b"20240230000000",
            b"20241301000000",
            b"20240001000000",
            b"20240100000000",
            b"20240101240000",
            b"20240101236000",
            b"20240101235961",
            b"2024010112000",
            b"2024010112000x",
            b"20240101120000.",
            b"20240101120000x",
            b"20240101120000.5a",
            b"",
        ] {
            assert_eq!(parse_mdtm(s), None, "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn mdtm_accepts_fraction_and_leap_second() {
        assert_eq!(parse_mdtm(b"19700101000001.999"), Some(1));
        assert_eq!(parse_mdtm(b"19700101000059.5"), Some(59));
        assert_eq!(parse_mdtm(b"19700101000060"), Some(60));
    }
}

/// RFC 3659 §7 facts, as bits of a selection (`OPTS MLST`).
pub mod fact {
    /// `type=file|dir|…`
    pub const TYPE: u8 = 1;
    /// `size=` in octets.
    pub const SIZE: u8 = 2;
    /// `modify=YYYYMMDDHHMMSS`.
    pub const MODIFY: u8 = 4;
    /// `perm=` (RFC 3659 §7.5.5).
    pub const PERM: u8 = 8;
    /// `unique=` device and inode.
    pub const UNIQUE: u8 = 16;
    /// `UNIX.mode=0644`.
    pub const UNIX_MODE: u8 = 32;
    /// Name and bit of every fact, in FEAT order.
    pub const ALL: [(&str, u8); 6] =
        [("type", TYPE), ("size", SIZE), ("modify", MODIFY), ("perm", PERM), ("unique", UNIQUE), ("UNIX.mode", UNIX_MODE)];
}

/// The facts on before any `OPTS MLST`: all of them.
pub const DEFAULT_FACTS: u8 = fact::TYPE | fact::SIZE | fact::MODIFY | fact::PERM | fact::UNIQUE | fact::UNIX_MODE;

/// `OPTS MLST type;size;` → the selection; unknown names are ignored
/// (RFC 3659 §7.9: "the server … ignore[s] any fact names it does not
/// support").
pub fn parse_facts(arg: &[u8]) -> u8 {
    let mut bits = 0;
    for name in arg.split(|&b| b == b';').map(<[u8]>::trim_ascii) {
        for (n, b) in fact::ALL {
            if name.eq_ignore_ascii_case(n.as_bytes()) {
                bits |= b;
            }
        }
    }
    bits
}

/// The facts part of FEAT: `type*;size*;…` (a `*` marks the selected ones).
pub fn write_fact_list(selected: u8, out: &mut Vec<u8>) {
    for (n, b) in fact::ALL {
        out.extend_from_slice(n.as_bytes());
        if selected & b != 0 {
            out.push(b'*');
        }
        out.push(b';');
    }
}

/// One MLSx entry, `fact=value;…; name` without line ending: MLSD writes
/// it as a line of the listing, MLST as a continuation line of its reply.
/// `writable` drives the `perm` fact; CR/LF in the name become `?`.
pub fn write_mlsx(meta: &super::Meta, name: &[u8], facts: u8, writable: bool, out: &mut Vec<u8>) {
    if facts & fact::TYPE != 0 {
        let t: &[u8] = match meta.kind {
            Kind::Dir => b"dir",
            Kind::File => b"file",
            Kind::Symlink => b"OS.unix=symlink",
            Kind::Other => b"OS.unix=special",
        };
        out.extend_from_slice(b"type=");
        out.extend_from_slice(t);
        out.push(b';');
    }
    if facts & fact::SIZE != 0 && meta.kind == Kind::File {
        let _ = write!(out, "size={};", meta.size);
    }
    if facts & fact::MODIFY != 0 {
        out.extend_from_slice(b"modify=");
        out.extend_from_slice(&format_mdtm(meta.mtime));
        out.push(b';');
    }
    if facts & fact::PERM != 0 {
        out.extend_from_slice(b"perm=");
        let p: &[u8] = match (meta.kind, writable) {
            (Kind::Dir, true) => b"elcmdfp",
            (Kind::Dir, false) => b"el",
            (Kind::File, true) => b"rwadf",
            (Kind::File, false) => b"r",
            (_, true) => b"df",
            (_, false) => b"",
        };
        out.extend_from_slice(p);
        out.push(b';');
    }
    if facts & fact::UNIQUE != 0 {
        let _ = write!(out, "unique={:x}g{:x};", meta.dev, meta.ino);
    }
    if facts & fact::UNIX_MODE != 0 {
        let _ = write!(out, "UNIX.mode=0{:o};", meta.mode & 0o7777);
    }
    out.push(b' ');
    push_name(out, name);
}

/// MLSD: one `write_mlsx` line per entry, CRLF.
pub fn write_mlsd(entries: &[Entry], facts: u8, writable: bool, out: &mut Vec<u8>) {
    for e in entries {
        write_entry(ListFormat::Mlsd { facts, writable }, e, out);
    }
}

#[cfg(test)]
mod mlsx_tests {
    use super::*;
    use crate::vfs::Meta;

    fn meta(kind: Kind) -> Meta {
        Meta { kind, size: 42, mtime: 0, mode: 0o100644, nlink: 1, uid: 0, gid: 0, ino: 255, dev: 1 }
    }

    #[test]
    fn mlsx_line_has_every_selected_fact_then_space_and_name() {
        let mut out = Vec::new();
        write_mlsx(&meta(Kind::File), b"a b", DEFAULT_FACTS, false, &mut out);
        assert_eq!(out, b"type=file;size=42;modify=19700101000000;perm=r;unique=1gff;UNIX.mode=0644; a b");
    }

    #[test]
    fn opts_mlst_selects_known_facts_and_ignores_others() {
        assert_eq!(parse_facts(b"type;SIZE;bogus;"), fact::TYPE | fact::SIZE);
        assert_eq!(parse_facts(b""), 0);
        let mut out = Vec::new();
        write_fact_list(fact::TYPE, &mut out);
        assert_eq!(out, b"type*;size;modify;perm;unique;UNIX.mode;");
    }

    #[test]
    fn mlsd_name_with_newline_cannot_break_the_line() {
        let mut out = Vec::new();
        let e = Entry { name: b"x\r\ny".to_vec().into_boxed_slice(), meta: meta(Kind::File) };
        write_mlsd(&[e], fact::TYPE, true, &mut out);
        assert_eq!(out, b"type=file; x??y\r\n");
    }
}
