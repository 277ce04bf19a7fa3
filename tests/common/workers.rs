//! Helpers of the `--workers` tests (`tests/workers.rs`, `tests/scale.rs`):
//! which worker holds a session, read from the server's log (with N > 1
//! every line carries its thread's name, `(worker 2) [c5 127.0.0.1:40000
//! -] connected`, and the client knows its own address).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::process::Server;
use super::{wait_until, Ctl};

/// An anonymous session on `srv`, logged in.
pub fn anon(srv: &Server) -> Ctl {
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x");
    c
}

/// The worker that logged `connected` for the client at `local`, if any.
pub fn worker_of(log: &str, local: SocketAddr) -> Option<u32> {
    let needle = format!(" {local} ");
    log.lines().filter(|l| l.contains(&needle) && l.ends_with("] connected")).find_map(|l| {
        let start = l.find("(worker ")? + "(worker ".len();
        let end = start + l[start..].find(')')?;
        l[start..end].parse().ok()
    })
}

/// The worker of each client, waiting (bounded) for the log lines.
#[track_caller]
pub fn workers_of(srv: &Server, locals: &[SocketAddr]) -> Vec<u32> {
    let mut found = Vec::new();
    wait_until("a `connected` log line per client", Duration::from_secs(10), || {
        let log = srv.log_text();
        found = locals.iter().filter_map(|&a| worker_of(&log, a)).collect();
        found.len() == locals.len()
    });
    found
}

pub fn tally(workers: &[u32]) -> BTreeMap<u32, usize> {
    let mut t = BTreeMap::new();
    for &w in workers {
        *t.entry(w).or_insert(0) += 1;
    }
    t
}

/// Open a session, retrying while a connection the test helper itself
/// made at start-up (its readiness probe) still holds a slot.
#[track_caller]
pub fn open_when_free(srv: &Server) -> Ctl {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Ctl::connect(srv.addr);
        let r = c.reply();
        if r.code == 220 {
            return c;
        }
        assert_eq!(r.code, 421, "greeting {r:?}");
        assert!(Instant::now() < deadline, "no free slot within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The worker that logged the last line containing `needle`, waiting
/// (bounded) for it: e.g. a refusal at debug level, `refused ADDR: …`.
#[track_caller]
pub fn worker_of_line(srv: &Server, needle: &str) -> u32 {
    let mut w = 0;
    wait_until(&format!("a log line with {needle:?}"), Duration::from_secs(10), || {
        let log = srv.log_text();
        w = log.lines().rev().find(|l| l.contains(needle)).and_then(|l| l.split("(worker ").nth(1)?.split(')').next()?.parse().ok()).unwrap_or(0);
        w != 0
    });
    w
}
