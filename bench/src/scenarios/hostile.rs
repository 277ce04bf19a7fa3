//! `hostile` (issue 9): honest small-file clients first alone (baseline),
//! then while 100 non-reading flooders and 1,000 PASS floods hit the server;
//! their p50/p99 and transfers/s, and the server's peak RSS, in both phases.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{common, fail_if_dead, report_client, self_cpu, Common};
use crate::args::Args;
use crate::engine::{percentile_ms, Engine, Op, Stats};
use crate::flood::{Flood, FloodCfg, FloodStats};
use crate::procstat;
use crate::report::Report;

/// The flood poll's token in the honest engine's poll (ignored by the engine).
const FLOOD_TOKEN: Token = Token(usize::MAX);

/// Make `dir` with `entries` empty files `f000000`, ... if it does not exist
/// (built under a temporary name and renamed, so an interrupted run leaves no
/// half-made directory). Returns how many entries it holds.
pub fn make_stat_dir(dir: &Path, entries: usize) -> io::Result<usize> {
    if dir.is_dir() {
        return Ok(std::fs::read_dir(dir)?.count());
    }
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for k in 0..entries {
        std::fs::File::create(tmp.join(format!("f{k:06}")))?;
    }
    std::fs::rename(&tmp, dir)?;
    Ok(entries)
}

/// Samples the server's memory from `/proc` on a thread: summed RSS every
/// 20 ms (`statm`), RSS/PSS every 250 ms (`smaps_rollup`), the process tree
/// rescanned every 250 ms; sets `over` when the memory passes the cap.
struct MemSampler {
    stop: Arc<AtomicBool>,
    over: Arc<AtomicBool>,
    peak_rss: Arc<AtomicU64>,
    peak_pss: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl MemSampler {
    fn start(pid: Option<u32>, cap_kib: u64) -> MemSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let over = Arc::new(AtomicBool::new(false));
        let peak_rss = Arc::new(AtomicU64::new(0));
        let peak_pss = Arc::new(AtomicU64::new(0));
        let handle = pid.map(|pid| {
            let (stop, over, peak_rss, peak_pss) = (stop.clone(), over.clone(), peak_rss.clone(), peak_pss.clone());
            std::thread::spawn(move || {
                let mut pids = procstat::tree(pid);
                let mut last_slow = Instant::now() - Duration::from_secs(1);
                let mut pss: Option<u64> = None;
                while !stop.load(Ordering::Relaxed) {
                    if last_slow.elapsed() >= Duration::from_millis(250) {
                        pids = procstat::tree(pid);
                        let (r, p) = procstat::rss_pss_of(&pids);
                        peak_rss.fetch_max(r, Ordering::Relaxed);
                        peak_pss.fetch_max(p, Ordering::Relaxed);
                        pss = Some(p);
                        last_slow = Instant::now();
                    }
                    let rss = procstat::rss_of(&pids);
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                    if procstat::over_cap(rss, pss, pids.len(), cap_kib) {
                        over.store(true, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        });
        MemSampler { stop, over, peak_rss, peak_pss, handle }
    }

    fn over(&self) -> Arc<AtomicBool> {
        self.over.clone()
    }

    /// Stop; (peak summed RSS, peak summed PSS) in KiB, if sampled.
    fn finish(mut self) -> Option<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let h = self.handle.take()?;
        let _ = h.join();
        Some((self.peak_rss.load(Ordering::Relaxed), self.peak_pss.load(Ordering::Relaxed)))
    }
}

/// The honest clients' figures over one phase.
struct Phase {
    stats: Stats,
    /// Ages of the transfers still in flight at the end of the window.
    unfinished: Vec<u32>,
    secs: f64,
    server_cpu: Option<f64>,
    client_cpu: f64,
    mem: Option<(u64, u64)>,
}

impl Phase {
    /// p-th percentile over finished transfers and, at their age at the end
    /// of the window (a lower bound), the unfinished ones.
    fn pct(&self, p: f64) -> f64 {
        let mut all: Vec<u32> = self.stats.lat_us.iter().chain(&self.unfinished).copied().collect();
        percentile_ms(&mut all, p)
    }

    fn report(&self, r: &mut Report, prefix: &str) {
        r.kv(&format!("{prefix}transfers"), self.stats.xfers);
        r.f(&format!("{prefix}transfers_per_s"), self.stats.xfers as f64 / self.secs);
        r.f(&format!("{prefix}p50_ms"), self.pct(50.0));
        r.f(&format!("{prefix}p99_ms"), self.pct(99.0));
        // Every client has one transfer in flight at the end; those older
        // than a second were held up.
        r.kv(&format!("{prefix}stuck_1s"), self.unfinished.iter().filter(|&&a| a >= 1_000_000).count());
        if let Some((rss, pss)) = self.mem {
            r.kv(&format!("{prefix}peak_rss_kib"), rss);
            r.kv(&format!("{prefix}peak_pss_kib"), pss);
        }
        if let Some(cpu) = self.server_cpu {
            r.f(&format!("{prefix}server_cpu_pct"), 100.0 * cpu / self.secs);
        }
        r.kv(&format!("{prefix}errors"), self.stats.errors);
        for e in &self.stats.err_samples {
            r.note(&format!("{prefix}error: {e}"));
        }
        r.f(&format!("{prefix}window_s"), self.secs);
    }
}

pub fn hostile(mut a: Args) -> Result<(), String> {
    let c = common(&mut a)?;
    let clients: usize = a.num_or("clients", 32)?;
    let secs: f64 = a.num_or("seconds", 10.0)?;
    let warm: f64 = a.num_or("warmup", 1.0)?;
    let file = a.str_or("file", "small.bin");
    let flooders: usize = a.num_or("flooders", 100)?;
    let pass_floods: usize = a.num_or("pass-floods", 1000)?;
    let pass_len: usize = a.num_or("pass-len", 8100)?;
    let pass_user = a.str_or("pass-user", &c.cfg.user);
    let stat_path = a.str_or("stat-path", "hostile-dir");
    let entries: usize = a.num_or("stat-dir-entries", 20_000)?;
    let root = a.opt_str("root");
    let flood_ramp: usize = a.num_or("flood-ramp", 16)?;
    let flood_bytes: u64 = a.num_or("flood-bytes", 16u64 << 20)?;
    let flood_stall: f64 = a.num_or("flood-stall", 5.0)?;
    let login_timeout: f64 = a.num_or("flood-login-timeout", 30.0)?;
    let after: f64 = a.num_or("after", 3.0)?;
    let cap_kib: u64 = a.num_or::<u64>("rss-cap", 1 << 30)? / 1024;
    let flood_sources = match a.opt_str("flood-sources") {
        Some(s) => crate::args::parse_sources(&s)?,
        None if !c.cfg.sources.is_empty() => c.cfg.sources.clone(),
        None => crate::args::parse_sources("127.0.0.2-127.0.0.9")?,
    };
    a.finish()?;
    if !c.cfg.server.ip().is_loopback() || flood_sources.iter().any(|s| !s.is_loopback()) {
        return Err("hostile floods loopback servers only (--addr and --flood-sources in 127.0.0.0/8 or ::1)".into());
    }
    let mut r = Report::new("hostile", &c.label);
    if let Some(root) = &root {
        let dir = Path::new(root).join(&stat_path);
        let n = make_stat_dir(&dir, entries).map_err(|e| format!("making {}: {e}", dir.display()))?;
        r.kv("stat_dir_entries", n);
    }
    r.kv("clients", clients);
    r.kv("flooders", flooders);
    r.kv("pass_floods", pass_floods);
    r.kv("pass_len", pass_len);

    // Honest clients: the `small` scenario's engine.
    let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
    e.ramp = clients;
    e.gate = true;
    for _ in 0..clients {
        e.add(Op::Retr(file.clone()), 0, None);
    }
    e.run(Instant::now() + Duration::from_secs(60), |e| e.settled(0));
    fail_if_dead(&e, 0, "hostile: honest login")?;
    e.go();
    e.run(Instant::now() + Duration::from_secs_f64(warm), |_| false);
    fail_if_dead(&e, 0, "hostile: honest warm-up")?;

    // Phase 1: the honest clients alone.
    let mem = MemSampler::start(c.pid, cap_kib);
    let base = measure(&mut e, &c, secs, |_| false);
    let base = Phase { mem: mem.finish(), ..base };

    // Phase 2: the same, with the flooders logged in and writing, and the
    // PASS floods spread over the window.
    let lines = vec![format!("STAT {stat_path}"), "HELP".to_string(), "PASV".to_string()];
    let mut flood = Flood::new(FloodCfg {
        server: c.cfg.server,
        user: c.cfg.user.clone(),
        pass: c.cfg.pass.clone(),
        sources: flood_sources,
        lines,
        flooders,
        ramp: flood_ramp,
        flood_cap: flood_bytes,
        pass_total: pass_floods,
        pass_user,
        pass_len,
        stall: Duration::from_secs_f64(flood_stall),
    })
    .map_err(|e| e.to_string())?;
    let ffd = flood.fd();
    e.registry().register(&mut SourceFd(&ffd), FLOOD_TOKEN, Interest::READABLE).map_err(|e| e.to_string())?;
    let mem = MemSampler::start(c.pid, cap_kib);
    let over = mem.over();
    let t_hostile = Instant::now();
    // Come back to the flood every millisecond even when no event wakes the
    // loop: re-armed flooders are ready at once, and the nested poll's fd
    // (edge-triggered) signals only new readiness.
    e.poll_max = Duration::from_millis(1);
    flood.connect();
    e.run(Instant::now() + Duration::from_secs_f64(login_timeout), |_| {
        flood.step();
        flood.settled() || over.load(Ordering::Relaxed)
    });
    flood.drop_unsettled();
    let flood_login_s = t_hostile.elapsed().as_secs_f64();
    let window = Duration::from_secs_f64(secs);
    flood.start(window);
    let hos = measure(&mut e, &c, secs, |_| {
        flood.step();
        over.load(Ordering::Relaxed)
    });
    let capped_in_window = over.load(Ordering::Relaxed);
    let fs = flood.close_all();
    e.poll_max = Duration::from_millis(50);
    let _ = e.registry().deregister(&mut SourceFd(&ffd));
    let still_open = flood.open_sockets();
    drop(flood);

    // After: the flood is gone; do the honest clients get through again?
    let aft = if over.load(Ordering::Relaxed) {
        None
    } else {
        let a = measure(&mut e, &c, after, |_| over.load(Ordering::Relaxed));
        Some(a)
    };
    let hos = Phase { mem: mem.finish(), ..hos };
    e.stop_new = true;
    e.run(Instant::now() + Duration::from_secs(5), |e| e.quiet(0));
    e.close_group(0);
    drop(e);

    base.report(&mut r, "baseline_");
    hos.report(&mut r, "hostile_");
    let ratio = hos.pct(99.0) / base.pct(99.0);
    r.f("p99_ratio", ratio);
    let stopped = if capped_in_window { "rss_cap" } else if over.load(Ordering::Relaxed) { "rss_cap_after" } else { "no" };
    r.kv("stopped_early", stopped);
    if let Some(a) = &aft {
        r.kv("after_transfers", a.stats.xfers);
        r.f("after_transfers_per_s", a.stats.xfers as f64 / a.secs);
        r.f("after_p99_ms", a.pct(99.0));
    }
    report_flood(&mut r, &fs, flood_login_s);
    r.kv("open_sockets_after", still_open);
    report_client(&mut r, hos.client_cpu, hos.secs);
    // The targets, said in words.
    r.note(&format!(
        "honest p99 {:.2} ms alone, {:.2} ms under the flood: {ratio:.2}x (target <= 2x: {})",
        base.pct(99.0),
        hos.pct(99.0),
        if ratio <= 2.0 { "met" } else { "NOT met" }
    ));
    if let Some((rss, _)) = hos.mem {
        r.note(&format!(
            "server peak RSS {:.1} MiB under the flood (target < 64 MiB: {})",
            rss as f64 / 1024.0,
            if rss < 64 * 1024 { "met" } else { "NOT met" }
        ));
    }
    if stopped != "no" {
        r.note(&format!("stopped early: the server's memory passed --rss-cap {} MiB", cap_kib / 1024));
    }
    r.note("transfers still in flight at a window's end count in its percentiles at their age then (lower bounds)");
    r.finish();
    Ok(())
}

/// Run the honest clients for `secs` (or until `stop`), measured.
fn measure(e: &mut Engine, c: &Common, secs: f64, mut stop: impl FnMut(&Engine) -> bool) -> Phase {
    e.take_stats(0);
    let (s0, c0, t0) = (c.sample(false), self_cpu(), Instant::now());
    e.run(t0 + Duration::from_secs_f64(secs), &mut stop);
    let unfinished = e.inflight_ages_us(0);
    let (s1, c1, el) = (c.sample(false), self_cpu(), t0.elapsed().as_secs_f64());
    Phase {
        stats: e.take_stats(0),
        unfinished,
        secs: el,
        server_cpu: super::cpu_between(&s0, &s1),
        client_cpu: c1 - c0,
        mem: None,
    }
}

fn report_flood(r: &mut Report, fs: &FloodStats, login_s: f64) {
    r.kv("flooders_started", fs.flooders);
    r.kv("flooders_logged_in", fs.logged_in);
    r.kv("flooders_login_failed", fs.login_failed);
    r.f("flooders_login_s", login_s);
    for (k, b) in ["stat", "help", "pasv"].iter().zip(&fs.bytes) {
        r.kv(&format!("flood_{k}_bytes"), b);
    }
    r.kv("flooders_blocked_at_end", fs.blocked_at_end);
    r.kv("flooders_capped", fs.capped);
    r.kv("pass_started", fs.pass_started);
    r.kv("pass_sent", fs.pass_sent);
    r.kv("pass_stalled", fs.pass_stalled);
    r.kv("pass_refused", fs.pass_refused);
    if let Some(e) = &fs.first_error {
        r.note(&format!("first flood error: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_dir_is_made_once() {
        let d = std::env::temp_dir().join(format!("leanftpd-bench-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let dir = d.join("hostile-dir");
        assert_eq!(make_stat_dir(&dir, 25).unwrap(), 25);
        assert!(dir.join("f000024").is_file());
        // Already there: kept as is.
        assert_eq!(make_stat_dir(&dir, 1000).unwrap(), 25);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no temporary left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unfinished_transfers_count_in_the_percentiles() {
        let stats = Stats { lat_us: vec![1000; 99], ..Default::default() };
        let p = Phase { stats, unfinished: vec![5_000_000], secs: 1.0, server_cpu: None, client_cpu: 0.0, mem: None };
        assert_eq!(p.pct(50.0), 1.0);
        assert_eq!(p.pct(100.0), 5000.0);
    }
}
