//! The scenarios of issue 3. Each takes its options, drives the server with
//! the `Engine`, reads the server's cost from `/proc`, and reports.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::engine::{percentile_ms, Cfg, Engine, Op, St, Stats};
use crate::procstat::{self, Sample};
use crate::report::Report;

mod hostile;
pub use hostile::hostile;

const GIB: f64 = (1u64 << 30) as f64;

/// The options every scenario shares.
struct Common {
    cfg: Cfg,
    pid: Option<u32>,
    label: String,
    /// To pass on to child processes (idle workers).
    raw: Vec<String>,
    /// What certificate the server has (`--cert-label`, for the report).
    cert_label: Option<String>,
}

fn common(a: &mut Args) -> Result<Common, String> {
    let server = a.addr()?;
    let user = a.str_or("user", "anonymous");
    let pass = a.str_or("pass", "bench@");
    let sources_raw = a.opt_str("sources");
    let sources = match &sources_raw {
        Some(s) => crate::args::parse_sources(s)?,
        None => Vec::new(),
    };
    let epsv = !a.flag("no-epsv");
    let stall: f64 = a.num_or("stall", 60.0)?;
    let pid = a.opt_str("pid").map(|p| p.parse::<u32>().map_err(|_| format!("--pid: bad {p:?}"))).transpose()?;
    if let Some(p) = pid {
        if !std::path::Path::new(&format!("/proc/{p}")).exists() {
            return Err(format!("--pid {p}: no such process"));
        }
    }
    let label = a.str_or("label", "server");
    let mut raw = vec!["--addr".into(), server.to_string(), "--user".into(), user.clone(), "--pass".into(), pass.clone()];
    if let Some(s) = sources_raw {
        raw.extend(["--sources".into(), s]);
    }
    if !epsv {
        raw.push("--no-epsv".into());
    }
    raw.extend(["--stall".into(), stall.to_string()]);
    // Explicit FTPS: the `-tls` scenarios, or `--tls` (idle workers).
    let want_tls = a.flag("tls") || a.scenario.ends_with("-tls");
    let ca = a.opt_str("ca");
    let tls_name = a.str_or("tls-name", &server.ip().to_string());
    let tls_version = a.str_or("tls-version", "any");
    let tls_suite = a.opt_str("tls-suite");
    let cert_label = a.opt_str("cert-label");
    let tls = if want_tls {
        let cas: Vec<String> = ca.as_deref().unwrap_or("").split(',').filter(|f| !f.is_empty()).map(String::from).collect();
        if cas.is_empty() {
            return Err("TLS scenarios need --ca FILE[,FILE] (the CA that signed the server's certificate)".into());
        }
        let t = crate::tls::TlsCfg::load(&cas, &tls_name, &tls_version, tls_suite.as_deref())?;
        raw.extend(["--tls".into(), "--ca".into(), cas.join(","), "--tls-name".into(), tls_name]);
        raw.extend(["--tls-version".into(), tls_version]);
        if let Some(s) = tls_suite {
            raw.extend(["--tls-suite".into(), s]);
        }
        Some(t)
    } else {
        None
    };
    Ok(Common {
        cfg: Cfg { server, user, pass, sources, epsv, stall: Duration::from_secs_f64(stall), tls },
        pid,
        label,
        raw,
        cert_label,
    })
}

impl Common {
    fn sample(&self, pss: bool) -> Option<Sample> {
        self.pid.map(|p| procstat::sample(p, pss))
    }
}

/// Server CPU seconds between two samples (None without --pid).
fn cpu_between(a: &Option<Sample>, b: &Option<Sample>) -> Option<f64> {
    Some(b.as_ref()?.cpu_secs() - a.as_ref()?.cpu_secs())
}

fn self_cpu() -> f64 {
    procstat::sample(std::process::id(), false).cpu_secs()
}

fn report_errors(r: &mut Report, s: &Stats) {
    r.kv("errors", s.errors);
    for e in &s.err_samples {
        r.note(&format!("error: {e}"));
    }
}

/// Under TLS: the certificate, what the handshakes negotiated, how many
/// data connections resumed the control session, and downloads that ended
/// without close_notify.
fn report_tls(r: &mut Report, c: &Common, st: Option<&Stats>) {
    if c.cfg.tls.is_none() {
        return;
    }
    r.kv("cert", c.cert_label.as_deref().unwrap_or("unnamed"));
    let Some(st) = st else { return };
    if !st.tls.is_empty() {
        r.kv("tls", &st.tls);
    }
    if st.data_resumed + st.data_full > 0 {
        r.kv("data_tls_resumed", st.data_resumed);
        r.kv("data_tls_full", st.data_full);
        r.kv("unclean_eof", st.unclean_eof);
    }
}

fn report_client(r: &mut Report, client_cpu: f64, secs: f64) {
    let pct = 100.0 * client_cpu / secs;
    r.f("client_cpu_pct", pct);
    if pct > 90.0 {
        r.note("the load generator was near a full core: the figures may be client-bound");
    }
}

fn fail_if_dead(e: &Engine, group: usize, what: &str) -> Result<(), String> {
    let alive = e.count(group, |s| s != St::Dead);
    if alive == 0 {
        let s = e.peek_stats(group);
        return Err(format!("{what}: every client failed; first errors: {:?}", s.err_samples));
    }
    Ok(())
}

// ---------------------------------------------------------------- stat

pub fn stat(mut a: Args) -> Result<(), String> {
    let c = common(&mut a)?;
    a.finish()?;
    let Some(s) = c.sample(true) else { return Err("stat needs --pid".into()) };
    let mut r = Report::new("stat", &c.label);
    r.kv("rss_kib", s.rss_kib);
    r.kv("pss_kib", s.pss_kib);
    r.kv("procs", s.procs);
    r.kv("threads", s.threads);
    r.f("cpu_s", s.cpu_secs());
    r.kv("ctx_switches", s.ctx_switches);
    r.finish();
    Ok(())
}

// ---------------------------------------------------------------- idle

pub fn idle(mut a: Args) -> Result<(), String> {
    let name = a.scenario.clone();
    let c = common(&mut a)?;
    let n: usize = a.num_or("sessions", 1000)?;
    let per_proc_max = 9000;
    let procs: usize = a.num_or("procs", n.div_ceil(per_proc_max).max(1))?;
    let window: f64 = a.num_or("window", 10.0)?;
    let settle: f64 = a.num_or("settle", 2.0)?;
    let ramp: usize = a.num_or("ramp", 200)?;
    let login_timeout: f64 = a.num_or("login-timeout", 600.0)?;
    a.finish()?;
    if n.div_ceil(procs) > 19_000 {
        return Err(format!("{n} sessions over {procs} processes exceed 19,000 per process (open-file limit)"));
    }
    let mut r = Report::new(&name, &c.label);
    r.kv("sessions", n);
    report_tls(&mut r, &c, None);
    let base = c.sample(true);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut workers: Vec<Child> = Vec::new();
    let mut left = n;
    for w in 0..procs {
        let k = left / (procs - w);
        left -= k;
        let mut cmd = Command::new(&exe);
        cmd.arg("idle-worker").args(&c.raw).args(["--count", &k.to_string(), "--ramp", &ramp.to_string()]);
        cmd.args(["--login-timeout", &login_timeout.to_string()]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn worker: {e}"))?;
        let out = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((w, line));
            }
        });
        workers.push(child);
    }
    drop(tx);
    let t_login = Instant::now();
    let mut ok = 0usize;
    let mut errs = 0usize;
    let mut ready = 0;
    let deadline = t_login + Duration::from_secs_f64(login_timeout + 10.0);
    while ready < procs {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, line)) if line.starts_with("READY") => {
                ready += 1;
                for kv in line.split_whitespace() {
                    if let Some(v) = kv.strip_prefix("ok=") {
                        ok += v.parse::<usize>().unwrap_or(0);
                    } else if let Some(v) = kv.strip_prefix("err=") {
                        errs += v.parse::<usize>().unwrap_or(0);
                    }
                }
            }
            Ok((w, line)) => r.note(&format!("worker {w}: {line}")),
            Err(_) => break,
        }
    }
    let login_secs = t_login.elapsed().as_secs_f64();
    r.kv("logged_in", ok);
    r.kv("login_errors", errs);
    r.f("login_phase_s", login_secs);
    let result = (|| {
        if ready < procs {
            return Err(format!("only {ready} of {procs} workers finished logging in"));
        }
        if ok == 0 {
            return Err("no session logged in".into());
        }
        std::thread::sleep(Duration::from_secs_f64(settle));
        let mem = c.sample(true);
        let a0 = c.sample(false);
        let s0 = self_cpu();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(window));
        let a1 = c.sample(false);
        let secs = t0.elapsed().as_secs_f64();
        let s1 = self_cpu();
        if let (Some(b), Some(m)) = (&base, &mem) {
            r.kv("base_rss_kib", b.rss_kib);
            r.kv("base_pss_kib", b.pss_kib);
            r.kv("rss_kib", m.rss_kib);
            r.kv("pss_kib", m.pss_kib);
            r.kv("server_procs", m.procs);
            r.kv("server_threads", m.threads);
            r.f("rss_per_session_kib", (m.rss_kib as f64 - b.rss_kib as f64) / ok as f64);
            r.f("pss_per_session_kib", (m.pss_kib as f64 - b.pss_kib as f64) / ok as f64);
        }
        if let (Some(x), Some(y)) = (&a0, &a1) {
            r.f("server_cpu_pct", 100.0 * (y.cpu_secs() - x.cpu_secs()) / secs);
            r.f("wakeups_per_s", (y.ctx_switches as f64 - x.ctx_switches as f64) / secs);
            // The scheduler's count of times a thread got a CPU (schedstat): the same question asked another way.
            r.f("runs_per_s", (y.runs as f64 - x.runs as f64) / secs);
        }
        r.f("window_s", secs);
        report_client(&mut r, s1 - s0, secs);
        Ok(())
    })();
    // Closing stdin tells the workers to exit; give them time, then kill.
    for w in workers.iter_mut() {
        drop(w.stdin.take());
    }
    let stop_by = Instant::now() + Duration::from_secs(30);
    for w in workers.iter_mut() {
        while w.try_wait().ok().flatten().is_none() && Instant::now() < stop_by {
            std::thread::sleep(Duration::from_millis(20));
        }
        if w.try_wait().ok().flatten().is_none() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
    result?;
    r.finish();
    Ok(())
}

/// A child of `idle`: log `--count` sessions in, say READY, hold them until
/// stdin closes (or `--hold` seconds), exit. It makes no wake-ups while holding.
pub fn idle_worker(mut a: Args) -> Result<(), String> {
    let c = common(&mut a)?;
    let count: usize = a.num_or("count", 100)?;
    let ramp: usize = a.num_or("ramp", 200)?;
    let login_timeout: f64 = a.num_or("login-timeout", 600.0)?;
    let hold: f64 = a.num_or("hold", 1800.0)?;
    a.finish()?;
    let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
    e.ramp = ramp;
    for _ in 0..count {
        e.add(Op::Idle, 0, None);
    }
    e.run(Instant::now() + Duration::from_secs_f64(login_timeout), |e| e.settled(0));
    let ok = e.count(0, |s| s == St::Ready);
    let st = e.peek_stats(0);
    let first = st.err_samples.first().cloned().unwrap_or_default().replace(' ', "_");
    println!("READY ok={ok} err={} first_err={first}", count - ok);
    let _ = std::io::stdout().flush();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs_f64(hold));
    e.close_group(0);
    Ok(())
}

// ---------------------------------------------------------------- login

pub fn login(mut a: Args) -> Result<(), String> {
    let name = a.scenario.clone();
    let c = common(&mut a)?;
    let conc: usize = a.num_or("concurrency", 16)?;
    let secs: f64 = a.num_or("seconds", 10.0)?;
    let warm: f64 = a.num_or("warmup", 1.0)?;
    a.finish()?;
    let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
    e.ramp = conc;
    for _ in 0..conc {
        e.add(Op::LoginLoop, 0, None);
    }
    let warm_end = Instant::now() + Duration::from_secs_f64(warm);
    e.run(warm_end, |_| false);
    fail_if_dead(&e, 0, "login warm-up")?;
    e.take_stats(0);
    let (s0, c0, t0) = (c.sample(false), self_cpu(), Instant::now());
    e.run(t0 + Duration::from_secs_f64(secs), |_| false);
    let (s1, c1, el) = (c.sample(false), self_cpu(), t0.elapsed().as_secs_f64());
    let mut st = e.take_stats(0);
    e.stop_new = true;
    e.run(Instant::now() + Duration::from_secs(3), |e| e.quiet(0));
    let mut r = Report::new(&name, &c.label);
    r.kv("concurrency", conc);
    report_tls(&mut r, &c, Some(&st));
    r.kv("logins", st.logins);
    r.f("logins_per_s", st.logins as f64 / el);
    r.f("login_p50_ms", percentile_ms(&mut st.login_lat_us, 50.0));
    r.f("login_p99_ms", percentile_ms(&mut st.login_lat_us, 99.0));
    if let Some(cpu) = cpu_between(&s0, &s1) {
        r.f("server_cpu_pct", 100.0 * cpu / el);
        if st.logins > 0 {
            r.f("server_cpu_us_per_login", 1e6 * cpu / st.logins as f64);
            r.f("logins_per_server_cpu_s", if cpu > 0.0 { st.logins as f64 / cpu } else { f64::INFINITY });
        }
    }
    report_errors(&mut r, &st);
    report_client(&mut r, c1 - c0, el);
    r.finish();
    Ok(())
}

// ---------------------------------------------------------------- small

/// Measure `clients` small-file downloaders for `secs` after `warm` seconds.
fn small_run(e: &mut Engine, c: &Common, group: usize, warm: f64, secs: f64) -> SmallFigures {
    e.run(Instant::now() + Duration::from_secs_f64(warm), |_| false);
    e.take_stats(group);
    let (s0, c0, t0) = (c.sample(false), self_cpu(), Instant::now());
    e.run(t0 + Duration::from_secs_f64(secs), |_| false);
    let (s1, c1, el) = (c.sample(false), self_cpu(), t0.elapsed().as_secs_f64());
    SmallFigures { stats: e.take_stats(group), server_cpu: cpu_between(&s0, &s1), client_cpu: c1 - c0, secs: el }
}

struct SmallFigures {
    stats: Stats,
    server_cpu: Option<f64>,
    client_cpu: f64,
    secs: f64,
}

impl SmallFigures {
    fn report(&mut self, r: &mut Report, prefix: &str) {
        let st = &mut self.stats;
        r.kv(&format!("{prefix}transfers"), st.xfers);
        r.f(&format!("{prefix}transfers_per_s"), st.xfers as f64 / self.secs);
        r.f(&format!("{prefix}p50_ms"), percentile_ms(&mut st.lat_us, 50.0));
        r.f(&format!("{prefix}p99_ms"), percentile_ms(&mut st.lat_us, 99.0));
        if let Some(cpu) = self.server_cpu {
            r.f(&format!("{prefix}server_cpu_pct"), 100.0 * cpu / self.secs);
            if st.xfers > 0 {
                r.f(&format!("{prefix}server_cpu_s_per_10k"), 1e4 * cpu / st.xfers as f64);
                r.f(&format!("{prefix}server_cpu_us_per_transfer"), 1e6 * cpu / st.xfers as f64);
                r.f(&format!("{prefix}transfers_per_server_cpu_s"), if cpu > 0.0 { st.xfers as f64 / cpu } else { f64::INFINITY });
            }
        }
    }
}

pub fn small(mut a: Args) -> Result<(), String> {
    let c = common(&mut a)?;
    let clients: usize = a.num_or("clients", 32)?;
    let secs: f64 = a.num_or("seconds", 10.0)?;
    let warm: f64 = a.num_or("warmup", 1.0)?;
    let file = a.str_or("file", "small.bin");
    a.finish()?;
    let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
    e.ramp = clients;
    e.gate = true;
    for _ in 0..clients {
        e.add(Op::Retr(file.clone()), 0, None);
    }
    e.run(Instant::now() + Duration::from_secs(60), |e| e.settled(0));
    fail_if_dead(&e, 0, "small login")?;
    e.go();
    let mut f = small_run(&mut e, &c, 0, warm, secs);
    fail_if_dead(&e, 0, "small")?;
    e.stop_new = true;
    e.run(Instant::now() + Duration::from_secs(5), |e| e.quiet(0));
    let mut r = Report::new("small", &c.label);
    r.kv("clients", clients);
    f.report(&mut r, "");
    if f.stats.xfers > 0 {
        r.f("bytes_per_transfer", f.stats.bytes as f64 / f.stats.xfers as f64);
    }
    report_errors(&mut r, &f.stats);
    report_client(&mut r, f.client_cpu, f.secs);
    r.finish();
    Ok(())
}

// ---------------------------------------------------------------- large

pub fn large(mut a: Args) -> Result<(), String> {
    let name = a.scenario.clone();
    let c = common(&mut a)?;
    let op = a.str_or("op", "retr");
    let streams: usize = a.num_or("streams", 1)?;
    let size: u64 = a.num_or("size", 1u64 << 30)?;
    let file = a.str_or("file", "large.bin");
    let secs: f64 = a.num_or("seconds", 0.0)?;
    let reps: u64 = a.num_or("reps", 1)?;
    let timeout: f64 = a.num_or("timeout", 900.0)?;
    let warmup: u64 = a.num_or("warmup", 1)?;
    a.finish()?;
    let op = match op.as_str() {
        "retr" => Op::Retr(file),
        "stor" => Op::Stor { name: "bench-upload".into(), size },
        o => return Err(format!("--op {o:?}: retr or stor")),
    };
    // Unmeasured transfers first, the same for every server: a RETR then
    // reads the file from the page cache (a file nobody touched for a while
    // may have been paged out: this VM's DAMON evicts page cache idle for
    // 6 s), and a STOR writes into page-cache pages freed a moment ago
    // rather than into pages the hypervisor must back afresh (free page
    // reporting) — costs of the machine, not of the server.
    if warmup > 0 {
        let mut w = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
        w.ramp = streams;
        for _ in 0..streams {
            w.add(op.clone(), 0, Some(warmup));
        }
        w.run(Instant::now() + Duration::from_secs_f64(timeout), |e| e.peek_xfers(0) >= streams as u64 * warmup || e.quiet(0));
        w.stop_new = true;
        w.run(Instant::now() + Duration::from_secs_f64(timeout), |e| e.quiet(0));
        fail_if_dead(&w, 0, "large warm-up")?;
    }
    let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
    e.ramp = streams;
    e.gate = true;
    let left = if secs > 0.0 { None } else { Some(reps) };
    for _ in 0..streams {
        e.add(op.clone(), 0, left);
    }
    e.run(Instant::now() + Duration::from_secs(60), |e| e.settled(0));
    fail_if_dead(&e, 0, "large login")?;
    let (s0, c0, t0) = (c.sample(false), self_cpu(), Instant::now());
    e.go();
    let want_xfers = streams as u64 * reps;
    if secs > 0.0 {
        e.run(t0 + Duration::from_secs_f64(secs), |_| false);
    } else {
        // Until the last 226 (the last DELE comes after the measurement).
        e.run(t0 + Duration::from_secs_f64(timeout), |e| e.peek_xfers(0) >= want_xfers || e.quiet(0));
    }
    let (s1, c1, el) = (c.sample(false), self_cpu(), t0.elapsed().as_secs_f64());
    let st = e.take_stats(0);
    // Let transfers in flight finish and uploads be deleted.
    e.stop_new = true;
    e.run(Instant::now() + Duration::from_secs_f64(timeout), |e| e.quiet(0));
    let mut r = Report::new(&name, &c.label);
    r.kv("op", if matches!(op, Op::Retr(_)) { "retr" } else { "stor" });
    r.kv("streams", streams);
    report_tls(&mut r, &c, Some(&st));
    r.kv("size", size);
    r.kv("warmup_per_stream", warmup);
    r.kv("transfers", st.xfers);
    r.kv("bytes", st.bytes);
    r.f("seconds", el);
    r.f("mb_per_s", st.bytes as f64 / el / 1e6);
    if let Some(cpu) = cpu_between(&s0, &s1) {
        r.f("server_cpu_pct", 100.0 * cpu / el);
        if st.bytes > 0 {
            r.f("server_cpu_s_per_gib", cpu / (st.bytes as f64 / GIB));
        }
    }
    let want = size * streams as u64 * reps;
    if secs == 0.0 && matches!(op, Op::Retr(_)) && st.bytes != want {
        r.note(&format!("expected {want} bytes in total, got {} (is --size the file's size?)", st.bytes));
    }
    report_errors(&mut r, &st);
    report_client(&mut r, c1 - c0, el);
    r.finish();
    Ok(())
}

// ---------------------------------------------------------------- mixed

/// Bytes per second of group `g` over `secs`, after `warm`.
fn rate(e: &mut Engine, c: &Common, g: usize, warm: f64, secs: f64) -> (f64, Option<f64>) {
    e.run(Instant::now() + Duration::from_secs_f64(warm), |_| false);
    e.take_stats(g);
    let (s0, t0) = (c.sample(false), Instant::now());
    e.run(t0 + Duration::from_secs_f64(secs), |_| false);
    let (s1, el) = (c.sample(false), t0.elapsed().as_secs_f64());
    let bytes = e.take_stats(g).bytes as f64;
    (bytes / el, cpu_between(&s0, &s1).map(|cpu| if bytes > 0.0 { cpu / (bytes / GIB) } else { f64::NAN }))
}

pub fn mixed(mut a: Args) -> Result<(), String> {
    let c = common(&mut a)?;
    let idle: usize = a.num_or("idle", 2000)?;
    let file = a.str_or("file", "large.bin");
    let small_file = a.str_or("small-file", "small.bin");
    let small_clients: usize = a.num_or("small-clients", 32)?;
    let large_streams: usize = a.num_or("large-streams", 8)?;
    let secs: f64 = a.num_or("seconds", 5.0)?;
    let rounds: usize = a.num_or("rounds", 2)?;
    a.finish()?;
    let mut r = Report::new("mixed", &c.label);

    // A: one large RETR stream; windows alternate without and with `idle`
    // sessions logged in (U L U L U), so drift and noise show up as spread.
    const LARGE: usize = 0;
    const IDLE: usize = 1;
    let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
    e.ramp = 64;
    e.add(Op::Retr(file.clone()), LARGE, None);
    e.run(Instant::now() + Duration::from_secs(30), |e| e.settled(LARGE));
    fail_if_dead(&e, LARGE, "mixed large")?;
    let mut unl = vec![rate(&mut e, &c, LARGE, 0.5, secs).0];
    let mut lod = Vec::new();
    let mut cpu_l = Vec::new();
    let (mut logged, mut idle_left) = (usize::MAX, usize::MAX);
    for _ in 0..rounds {
        for _ in 0..idle {
            e.add(Op::Idle, IDLE, None);
        }
        e.run(Instant::now() + Duration::from_secs(300), |e| e.settled(IDLE));
        logged = logged.min(e.count(IDLE, |s| s == St::Ready));
        let (l, cl) = rate(&mut e, &c, LARGE, 0.5, secs);
        lod.push(l);
        cpu_l.extend(cl);
        idle_left = idle_left.min(e.count(IDLE, |s| s == St::Ready));
        e.close_group(IDLE);
        unl.push(rate(&mut e, &c, LARGE, 1.0, secs).0);
    }
    fail_if_dead(&e, LARGE, "mixed large")?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    // Medians: a window right after 2,000 sessions close can be slowed by the
    // server tearing them down (thread-per-client peers), not by idleness.
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    let (unloaded, loaded) = (median(&unl), median(&lod));
    let spread = unl.iter().chain(&lod).fold(0.0f64, |m, x| m.max((x - unloaded).abs()));
    r.kv("idle_sessions", logged);
    r.kv("idle_sessions_alive_after", idle_left);
    r.kv("rounds", rounds);
    r.f("large_mb_per_s_unloaded", unloaded / 1e6);
    r.f("large_mb_per_s_with_idle", loaded / 1e6);
    if !cpu_l.is_empty() {
        r.f("large_cpu_s_per_gib_with_idle", mean(&cpu_l));
    }
    r.f("large_loss_pct", 100.0 * (1.0 - loaded / unloaded));
    r.f("large_spread_pct", 100.0 * spread / unloaded);
    let st = e.take_stats(IDLE);
    if st.errors > 0 {
        r.note(&format!("idle errors: {} {:?}", st.errors, st.err_samples));
    }
    drop(e);

    // B: small-file latency alone, then while `large_streams` large RETRs run.
    const SMALL: usize = 0;
    const BIG: usize = 1;
    let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
    e.ramp = 64;
    e.gate = true;
    for _ in 0..small_clients {
        e.add(Op::Retr(small_file.clone()), SMALL, None);
    }
    for _ in 0..large_streams {
        e.add(Op::Retr(file.clone()), BIG, None);
    }
    e.run(Instant::now() + Duration::from_secs(60), |e| e.settled(SMALL) && e.settled(BIG));
    fail_if_dead(&e, SMALL, "mixed small")?;
    e.go_group(SMALL);
    let mut alone = small_run(&mut e, &c, SMALL, 1.0, secs);
    e.go_group(BIG);
    let mut loaded = small_run(&mut e, &c, SMALL, 1.0, secs);
    let big = e.take_stats(BIG);
    alone.report(&mut r, "small_alone_");
    loaded.report(&mut r, "small_loaded_");
    let p99a = percentile_ms(&mut alone.stats.lat_us, 99.0);
    let p99l = percentile_ms(&mut loaded.stats.lat_us, 99.0);
    r.f("small_p99_ratio", p99l / p99a);
    r.f("large_mb_per_s_during_small", big.bytes as f64 / loaded.secs / 1e6);
    let errs = alone.stats.errors + loaded.stats.errors + big.errors;
    r.kv("errors", errs);
    for s in alone.stats.err_samples.iter().chain(&loaded.stats.err_samples).chain(&big.err_samples) {
        r.note(&format!("error: {s}"));
    }
    report_client(&mut r, loaded.client_cpu, loaded.secs);
    drop(e);
    r.finish();
    Ok(())
}

// ---------------------------------------------------------------- list

/// FEAT's whole reply text, by a plain blocking session.
fn feat(cfg: &Cfg) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&cfg.server, Duration::from_secs(10)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let mut rd = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut read_reply = || -> Result<(u16, String), String> {
        let mut all = String::new();
        let mut first: Option<String> = None;
        loop {
            let mut line = String::new();
            if rd.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("closed".into());
            }
            all.push_str(&line);
            let code = line.get(..3).unwrap_or("").to_string();
            match &first {
                None if line.as_bytes().get(3) == Some(&b'-') => first = Some(code),
                None => return Ok((code.parse().unwrap_or(0), all)),
                Some(f) if *f == code && line.as_bytes().get(3) == Some(&b' ') => return Ok((code.parse().unwrap_or(0), all)),
                _ => {}
            }
        }
    };
    read_reply()?;
    write!(s, "USER {}\r\n", cfg.user).map_err(|e| e.to_string())?;
    if read_reply()?.0 == 331 {
        write!(s, "PASS {}\r\n", cfg.pass).map_err(|e| e.to_string())?;
        read_reply()?;
    }
    write!(s, "FEAT\r\n").map_err(|e| e.to_string())?;
    let (_, text) = read_reply()?;
    let _ = write!(s, "QUIT\r\n");
    let _ = read_reply();
    Ok(text)
}

pub fn list(mut a: Args) -> Result<(), String> {
    let c = common(&mut a)?;
    let entries: u64 = a.num_or("entries", 10_000)?;
    let path = a.str_or("path", "list10k");
    let reps: u64 = a.num_or("reps", 3)?;
    a.finish()?;
    let features = feat(&c.cfg).unwrap_or_default();
    let has_mlsd = features.lines().any(|l| l.trim_start().to_ascii_uppercase().starts_with("MLST"));
    let mut r = Report::new("list", &c.label);
    r.kv("entries", entries);
    r.kv("mlsd_in_feat", has_mlsd);
    let mut verbs = vec!["LIST"];
    if has_mlsd {
        verbs.push("MLSD");
    }
    for verb in verbs {
        let key = verb.to_ascii_lowercase();
        let mut e = Engine::new(c.cfg.clone()).map_err(|e| e.to_string())?;
        e.gate = true;
        e.add(Op::List { verb, path: path.clone() }, 0, Some(reps));
        e.run(Instant::now() + Duration::from_secs(30), |e| e.settled(0));
        fail_if_dead(&e, 0, "list login")?;
        // Session processes (vsftpd) exist now: sample the tree's RSS fast.
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let base = c.sample(false).map(|s| s.rss_kib);
        let sampler = c.pid.map(|pid| {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                let mut pids = procstat::tree(pid);
                let mut last_scan = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if last_scan.elapsed() > Duration::from_millis(100) {
                        pids = procstat::tree(pid);
                        last_scan = Instant::now();
                    }
                    peak.fetch_max(procstat::rss_of(&pids), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        });
        let (s0, t0) = (c.sample(false), Instant::now());
        e.go();
        e.run(t0 + Duration::from_secs(300), |e| e.quiet(0));
        let s1 = c.sample(false);
        stop.store(true, Ordering::Relaxed);
        if let Some(h) = sampler {
            let _ = h.join();
        }
        let mut st = e.take_stats(0);
        r.kv(&format!("{key}_reps"), st.xfers);
        r.f(&format!("{key}_median_ms"), percentile_ms(&mut st.lat_us, 50.0));
        r.f(&format!("{key}_min_ms"), percentile_ms(&mut st.lat_us, 0.0));
        if let (Some(l), Some(b)) = (st.lines.checked_div(st.xfers), st.bytes.checked_div(st.xfers)) {
            r.kv(&format!("{key}_lines"), l);
            r.kv(&format!("{key}_bytes"), b);
        }
        if let (Some(b), Some(cpu)) = (base, cpu_between(&s0, &s1)) {
            let pk = peak.load(Ordering::Relaxed).max(b);
            r.kv(&format!("{key}_base_rss_kib"), b);
            r.kv(&format!("{key}_peak_rss_kib"), pk);
            r.kv(&format!("{key}_peak_rss_delta_kib"), pk - b);
            if st.xfers > 0 {
                r.f(&format!("{key}_server_cpu_ms"), 1e3 * cpu / st.xfers as f64);
            }
        }
        if st.errors > 0 {
            r.kv(&format!("{key}_errors"), st.errors);
            for s in &st.err_samples {
                r.note(&format!("{verb} error: {s}"));
            }
        }
    }
    r.finish();
    Ok(())
}
