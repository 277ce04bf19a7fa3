//! What a process tree costs, read from `/proc`.
//!
//! A "tree" is a PID and every process whose parent chain leads to it (vsftpd
//! forks two processes per client), with all their threads. Memory is RSS and
//! PSS (`smaps_rollup`, so pages shared between vsftpd's forks count once);
//! CPU is `utime+stime+cutime+cstime` of every process (the reaped children of
//! a live process are in its `cutime`, so short-lived forks still count);
//! wake-ups are approximated by the voluntary + involuntary context switches
//! of every live thread.

use std::collections::HashMap;
use std::fs;

/// One reading of a process tree.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub procs: usize,
    pub threads: usize,
    pub rss_kib: u64,
    /// Zero unless asked for (`smaps_rollup` is slow on thousands of forks).
    pub pss_kib: u64,
    /// CPU time in ns: live threads exactly (`schedstat`), dead threads and
    /// reaped children at clock-tick resolution.
    pub cpu_ns: u64,
    pub ctx_switches: u64,
    /// Times a live thread was given a CPU (`schedstat`'s third field).
    pub runs: u64,
}

impl Sample {
    pub fn cpu_secs(&self) -> f64 {
        self.cpu_ns as f64 / 1e9
    }
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub fn page_kib() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64 / 1024
    } else {
        4
    }
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime
    pub own_ticks: u64,
    /// cutime + cstime (children already reaped)
    pub child_ticks: u64,
    pub threads: u64,
}

/// Parse `/proc/PID/stat`; the command name may hold spaces and parentheses,
/// so fields are counted after the last `)`.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        ppid: n(1)? as u32,
        own_ticks: n(11)? + n(12)?,
        child_ticks: n(13)? + n(14)?,
        threads: n(17)?,
    })
}

/// `Rss:` and `Pss:` in KiB from `/proc/PID/smaps_rollup`.
pub fn parse_rollup(s: &str) -> (u64, u64) {
    let mut rss = 0;
    let mut pss = 0;
    for line in s.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("Rss:"), Some(v)) => rss = v,
            (Some("Pss:"), Some(v)) => pss = v,
            _ => {}
        }
    }
    (rss, pss)
}

/// voluntary + nonvoluntary context switches from a `status` file.
pub fn parse_ctxt(s: &str) -> u64 {
    s.lines()
        .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// `root` and all its descendants, found by one scan of `/proc`.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(st) = fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parse_stat) {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied());
        }
        i += 1;
    }
    out
}

/// Read the whole tree of `root`; `pss` also reads `smaps_rollup` of each process.
pub fn sample(root: u32, pss: bool) -> Sample {
    let mut s = Sample::default();
    let kib = page_kib();
    let tick_ns = 1e9 / clk_tck();
    for pid in tree(root) {
        let Some(st) = fs::read_to_string(format!("/proc/{pid}/stat")).ok().as_deref().and_then(parse_stat) else { continue };
        s.procs += 1;
        let mut live_ticks = 0u64;
        let mut live_ns = 0u64;
        if pss {
            let (rss, p) = parse_rollup(&fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default());
            s.rss_kib += rss;
            s.pss_kib += p;
        } else {
            s.rss_kib += statm_rss_pages(pid) * kib;
        }
        if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
            for t in rd.flatten() {
                s.threads += 1;
                let p = t.path();
                s.ctx_switches += parse_ctxt(&fs::read_to_string(p.join("status")).unwrap_or_default());
                let tst = fs::read_to_string(p.join("stat")).ok().as_deref().and_then(parse_stat);
                let sched = fs::read_to_string(p.join("schedstat")).unwrap_or_default();
                let mut f = sched.split_whitespace().map(|v| v.parse::<u64>().ok());
                let ns = f.next().flatten();
                s.runs += f.nth(1).flatten().unwrap_or(0);
                if let (Some(tst), Some(ns)) = (tst, ns) {
                    live_ticks += tst.own_ticks;
                    live_ns += ns;
                }
            }
        }
        let dead_ticks = st.own_ticks.saturating_sub(live_ticks) + st.child_ticks;
        s.cpu_ns += live_ns + (dead_ticks as f64 * tick_ns) as u64;
    }
    s
}

/// Resident pages of one process from `/proc/PID/statm` (cheap: for sampling).
pub fn statm_rss_pages(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// RSS in KiB of a set of pids (for the peak sampler).
pub fn rss_of(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| statm_rss_pages(p)).sum::<u64>() * page_kib()
}

/// RSS and PSS in KiB summed over a set of pids, from `smaps_rollup`
/// (slower than `statm`: for a sampler that reads it now and then).
pub fn rss_pss_of(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .map(|&p| parse_rollup(&fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default()))
        .fold((0, 0), |(r, p), (r1, p1)| (r + r1, p + p1))
}

/// Whether a server's memory is past `cap_kib`: its summed RSS, and, for a
/// tree of several processes (vsftpd forks per client, and the forks share
/// most pages), its PSS too when one was read — summed RSS counts shared
/// pages once per process, which alone would stop a forking server early.
pub fn over_cap(rss_kib: u64, pss_kib: Option<u64>, procs: usize, cap_kib: u64) -> bool {
    rss_kib > cap_kib && (procs <= 1 || pss_kib.is_some_and(|p| p > cap_kib))
}

/// CPU seconds of the calling thread.
pub fn thread_cpu_secs() -> f64 {
    // SAFETY: clock_gettime writes one timespec that we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Pin the calling thread to one CPU (best effort).
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in bounds
    // for cpu < CPU_SETSIZE, which we check.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_name() {
        let s = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 3 0 55 1000 200";
        assert_eq!(parse_stat(s), Some(Stat { ppid: 1, own_ticks: 10, child_ticks: 3, threads: 3 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rollup_and_ctxt() {
        let r = "55f0-7ff [rollup]\nRss:                1480 kB\nPss:                 390 kB\nPss_Anon: 100 kB\n";
        assert_eq!(parse_rollup(r), (1480, 390));
        let st = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_ctxt(st), 15);
    }

    #[test]
    fn memory_cap() {
        assert!(!over_cap(100, None, 1, 200));
        assert!(over_cap(300, None, 1, 200));
        // Forks: summed RSS alone does not trip it; PSS does.
        assert!(!over_cap(300, None, 5, 200));
        assert!(!over_cap(300, Some(150), 5, 200));
        assert!(over_cap(300, Some(250), 5, 200));
    }

    #[test]
    fn own_tree_is_readable() {
        let (rss, pss) = rss_pss_of(&[std::process::id()]);
        assert!(rss > 0 && pss > 0 && pss <= rss);
        let s = sample(std::process::id(), true);
        assert!(s.procs >= 1 && s.threads >= 1 && s.rss_kib > 0);
    }
}
