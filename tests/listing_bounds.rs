//! Issue 9, finding 4: a listing's memory is bounded. Before, every LIST
//! held all the names of its directory until the client had read the whole
//! listing, so 100 stalled LISTs of a 100,000-entry directory held ~0.5 GB.
//! Now a directory past the sort caps is streamed through a fixed buffer,
//! so the same flood costs a few MiB.
//!
//! The test drives the built binary (its RSS is what counts) with a hostile
//! client that opens the stalled listings and never reads them, while an
//! honest client keeps working beside it. The flood is fixed in size and
//! stops by itself; nothing here asserts a time.

mod common;

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use common::process::Server;
use common::{Ctl, Mode};

/// Entries of the huge directory (as in the issue).
const HUGE_ENTRIES: usize = 100_000;
/// Listings opened and never read. The issue used 100; each one costs the
/// server ~4 MB of formatting before loopback's socket buffers are full
/// (~0.5 s in a debug build), and 25 already needed ~140 MiB before.
const STALLED_LISTS: usize = 25;
/// The bound on the server's peak resident memory during the flood. The
/// old code held ~5.6 MiB of names and spans per listing here (48-byte
/// names), ~140 MiB for the flood; a streamed listing holds ~32 KiB (its
/// 16 KiB read buffer and at most 16 KiB of formatted lines), so the
/// server stays near its idle RSS (~4 MiB).
const RSS_BOUND_BYTES: u64 = 64 * 1024 * 1024;

/// A name of the huge directory: 48 bytes, so that the listing (~10 MB of
/// LIST text) is far more than loopback socket buffers take from a client
/// that does not read (~4 MB), and its transfer stays stalled.
fn huge_name(i: usize) -> String {
    format!("entry-{i:06}-{}", "x".repeat(35))
}

/// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line[field.len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kib * 1024
}

/// Bytes as MiB, for messages.
fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

#[test]
fn issue_9_stalled_lists_of_a_huge_directory_hold_bounded_memory() {
    let dir = tempfile::Builder::new().prefix("leanftpd-listing-bounds-").tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("huge")).unwrap();
    fs::create_dir_all(root.join("small")).unwrap();
    for i in 0..HUGE_ENTRIES {
        fs::File::create(root.join("huge").join(huge_name(i))).unwrap();
    }
    for name in ["c", "a", "b"] {
        fs::write(root.join("small").join(name), name).unwrap();
    }
    let server = Server::start(&root, &["--anonymous", "--max-per-ip", "500", "--stall-timeout", "600"]);
    let pid = server.pid();
    let rss_before = status_bytes(pid, "VmRSS");

    // The hostile client: LIST huge on many sessions, never reading a byte
    // of the listings.
    let mut stalled: Vec<(Ctl, TcpStream)> = Vec::with_capacity(STALLED_LISTS);
    for _ in 0..STALLED_LISTS {
        let mut c = Ctl::open(server.addr);
        c.login("anonymous", "flood@example.com");
        let (r, data) = c.open_transfer(Mode::Pasv, "LIST huge");
        assert_eq!(r.code, 150, "{r:?}");
        stalled.push((c, data));
    }

    // The listings really are stalled (no 226 yet), so whatever they hold
    // is still held: look at the first and the last.
    for i in [0, STALLED_LISTS - 1] {
        let c = &mut stalled[i].0;
        c.set_read_timeout(Duration::from_millis(200));
        match c.try_reply() {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("stalled LIST {i} answered: {other:?}"),
        }
    }
    let check_peak = |when: &str| {
        let (rss, peak) = (status_bytes(pid, "VmRSS"), status_bytes(pid, "VmHWM"));
        eprintln!("server RSS {when}: {} (peak {}; {} before the flood)", mib(rss), mib(peak), mib(rss_before));
        assert!(
            peak <= RSS_BOUND_BYTES,
            "{when}: {STALLED_LISTS} stalled LISTs of {HUGE_ENTRIES} entries: peak RSS {} > {}",
            mib(peak),
            mib(RSS_BOUND_BYTES)
        );
    };
    check_peak("with the stalled LISTs");

    // The honest client, while they stay stalled.
    let mut honest = Ctl::open(server.addr);
    honest.login("anonymous", "honest@example.com");
    assert_eq!(honest.listing(Mode::Pasv, "NLST small"), "small/a\r\nsmall/b\r\nsmall/c\r\n");
    let r = honest.expect("STAT huge", 213);
    assert_eq!(r.lines.len(), 1 + 1_000 + 1 + 1, "header, 1,000 entries, the truncation line, the end");
    assert!(r.lines[1_001].contains("use LIST"), "{}", r.lines[1_001]);
    assert_eq!(honest.retr(Mode::Epsv, "small/b"), b"b");
    honest.expect("NOOP", 200);
    check_peak("after the honest client's STAT huge");

    // One stalled listing read to its end after all: every entry once.
    let (mut c, mut data) = stalled.pop().unwrap();
    let mut text = Vec::new();
    data.read_to_end(&mut text).unwrap();
    drop(data);
    c.set_read_timeout(common::IO_TIMEOUT);
    assert_eq!(c.reply().code, 226);
    let text = String::from_utf8(text).unwrap();
    let mut names: Vec<&str> = text.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(names.len(), HUGE_ENTRIES);
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), HUGE_ENTRIES, "no entry twice");
    assert_eq!(names[0], huge_name(0));
    assert_eq!(names[HUGE_ENTRIES - 1], huge_name(HUGE_ENTRIES - 1));

    // The flood goes away; the server is alive and serving.
    drop(stalled);
    honest.expect("NOOP", 200);
    assert_eq!(honest.listing(Mode::Epsv, "NLST small"), "small/a\r\nsmall/b\r\nsmall/c\r\n");
    let mut late = Ctl::open(server.addr);
    late.login("anonymous", "late@example.com");
    late.expect("NOOP", 200);
}
