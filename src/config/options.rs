//! The option table: the single source of truth for every option.
//!
//! Each row is one option: its long name (which is also its key in the
//! `--config` file), whether it takes a value and the value's name, its
//! help (unit, bound, default), whether SIGHUP can apply a new value
//! without a restart, and two functions: `set` (a string, from the command
//! line or the file, into the `Draft`) and `get` (the value back as a
//! string, to tell what a reload changed). The command line (`cli.rs`),
//! the file's keys (`file.rs`) and `--help` are all generated from it, so
//! an option cannot exist in one and not the others.
//!
//! # Adding an option
//! Add the `Config` field (with its default in `Config::new`), then one
//! row here, e.g.:
//!
//! ```text
//! Opt { name: "max-download-rate", kind: Value("RATE"), reload: Live,
//!       help: "download rate per session, bytes per second, K/M suffixes (KiB/MiB); 0: unlimited [default: 0]",
//!       set: |d, v| { d.c.max_download_rate = rate(v)?; Ok(()) },
//!       get: |c| c.max_download_rate.to_string() },
//! ```
//!
//! `reload: Live` means that new sessions read the new value after SIGHUP
//! (through `Env::config`); `Restart` means the reload only logs that it
//! changed (and `Config::keep_restart_fields` must keep the old value:
//! a unit test checks it for every `Restart` row).
//!
//! The row is the option everywhere: `--max-download-rate 2M`,
//! `--max-download-rate=2M`, `max-download-rate = "2M"` in the file, its
//! `--help` line, SIGHUP. The unit tests then ask for three more lines,
//! and fail until they are there: a sample value in `tests::SAMPLES`
//! (every key in the file must set what its flag sets), the key with its
//! default in `contrib/leanftpd.toml`, and the `--help` line in README's
//! options block (copied from `leanftpd --help`).

use std::path::PathBuf;
use std::time::Duration;

use super::{Draft, LogLevel, MAX_WORKERS};

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A switch: on the command line alone; in the file `true` or `false`.
    Flag,
    /// One value; given again, the last one counts. The name is the one
    /// `--help` shows (`SECS`, `ADDR:PORT`).
    Value(&'static str),
    /// A list: every value is added; in the file a string or an array of
    /// strings. On the command line it replaces the file's list.
    List(&'static str),
}

/// Whether SIGHUP applies a changed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// New sessions (and the shared limits) take the new value.
    Live,
    /// Needs a restart (rebinding, or resources opened once at start);
    /// SIGHUP logs that it changed and keeps the old value.
    Restart,
}

/// One option; see the module's doc.
pub struct Opt {
    /// The long option without its dashes, and the file's key.
    pub name: &'static str,
    /// Flag, value or list.
    pub kind: Kind,
    /// Whether SIGHUP applies it.
    pub reload: Reload,
    /// `--help`'s text; `\n` starts a continuation line.
    pub help: &'static str,
    /// Apply one value (`"true"` for a flag); the error says what was
    /// expected (`expected a number`), the caller adds where it came from.
    pub set: fn(&mut Draft, &str) -> Result<(), String>,
    /// The value as set, to compare two configurations.
    pub get: fn(&super::Config) -> String,
}

use Kind::{Flag, List, Value};
use Reload::{Live, Restart};

/// Every option, in `--help`'s order.
pub static OPTIONS: &[Opt] = &[
    Opt { name: "root", kind: Value("DIR"), reload: Restart,
          help: "directory to serve (required); relative user homes are under it",
          set: |d, v| { d.c.root = dir(v)?; d.root_given = true; Ok(()) }, get: |c| c.root.display().to_string() },
    Opt { name: "listen", kind: Value("ADDR:PORT"), reload: Restart,
          help: "control address, IPv4 or IPv6 [default: 127.0.0.1:2121]",
          set: |d, v| { d.c.listen = v.parse().map_err(|_| "expected ADDR:PORT, e.g. 127.0.0.1:2121 or [::1]:2121")?; Ok(()) },
          get: |c| c.listen.to_string() },
    Opt { name: "users", kind: Value("FILE"), reload: Live,
          help: "users file, one `name:hash:home:perms` a line; hash as written by\n\
                 `openssl passwd -6` or `htpasswd -nbB`; perms `r`, `rw` or `w`\n\
                 (upload-only: a drop box); an optional fifth field of options,\n\
                 `download-rate=RATE,upload-rate=RATE`.\n\
                 With --users, anonymous is refused unless --anonymous is given.",
          set: |d, v| { d.c.users = Some(path(v)?); Ok(()) }, get: |c| opt_path(&c.users) },
    Opt { name: "anonymous", kind: Flag, reload: Live,
          help: "let `anonymous`/`ftp` log in read-only at --root",
          set: |d, _| { d.anonymous = true; Ok(()) }, get: |c| c.anonymous.to_string() },
    Opt { name: "anonymous-write", kind: Flag, reload: Live,
          help: "let anonymous users write too (implies --anonymous)",
          set: |d, _| { d.anonymous = true; d.c.anonymous_write = true; Ok(()) }, get: |c| c.anonymous_write.to_string() },
    Opt { name: "anonymous-upload-dir", kind: Value("PATH"), reload: Live,
          help: "a drop box for anonymous users: upload-only (STOR,\n\
                 STOU, MKD; no RETR, no names in listings, no\n\
                 overwrite, DELE or rename) at PATH, a directory\n\
                 inside --root that must exist; read-only elsewhere\n\
                 (implies --anonymous; not with --anonymous-write)",
          set: |d, v| { d.anonymous = true; d.c.anonymous_upload_dir = Some(super::parse_upload_dir(v)?); Ok(()) },
          get: |c| c.anonymous_upload_dir.as_ref().map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned()).unwrap_or_default() },
    Opt { name: "passive-ports", kind: Value("MIN-MAX"), reload: Restart,
          help: "passive data ports, 1024-65535 [default: random in the kernel's ephemeral range]",
          set: |d, v| { d.c.passive_ports = Some(range(v)?); Ok(()) },
          get: |c| c.passive_ports.map(|(a, b)| format!("{a}-{b}")).unwrap_or_default() },
    Opt { name: "passive-address", kind: Value("IP"), reload: Live,
          help: "address advertised in PASV replies (behind NAT)",
          set: |d, v| { d.c.passive_address = Some(v.parse().map_err(|_| "not an IP address")?); Ok(()) },
          get: |c| c.passive_address.map(|a| a.to_string()).unwrap_or_default() },
    Opt { name: "login-timeout", kind: Value("SECS"), reload: Live,
          help: "time to log in [default: 60]",
          set: |d, v| { d.c.login_timeout = secs(v)?; Ok(()) }, get: |c| show_secs(c.login_timeout) },
    Opt { name: "idle-timeout", kind: Value("SECS"), reload: Live,
          help: "idle control connection timeout [default: 300]",
          set: |d, v| { d.c.idle_timeout = secs(v)?; Ok(()) }, get: |c| show_secs(c.idle_timeout) },
    Opt { name: "data-timeout", kind: Value("SECS"), reload: Live,
          help: "time for a data connection to be made [default: 30]",
          set: |d, v| { d.c.data_timeout = secs(v)?; Ok(()) }, get: |c| show_secs(c.data_timeout) },
    Opt { name: "stall-timeout", kind: Value("SECS"), reload: Live,
          help: "abort a transfer without progress for this long [default: 120]",
          set: |d, v| { d.c.stall_timeout = secs(v)?; Ok(()) }, get: |c| show_secs(c.stall_timeout) },
    Opt { name: "login-fail-delay", kind: Value("SECS"), reload: Live,
          help: "delay before a failed login is answered, doubled per failure [default: 1]",
          set: |d, v| { d.c.login_fail_delay = secs_or_zero(v)?; Ok(()) }, get: |c| show_secs(c.login_fail_delay) },
    Opt { name: "max-login-fails", kind: Value("N"), reload: Live,
          help: "failed logins before the connection is closed [default: 3]",
          set: |d, v| { d.c.max_login_fails = num(v)?; Ok(()) }, get: |c| c.max_login_fails.to_string() },
    Opt { name: "login-cache", kind: Value("SECS"), reload: Live,
          help: "remember a successful password check this long, as a keyed\n\
                 digest (0: off; SIGHUP clears it) [default: 300]",
          set: |d, v| { d.c.login_cache = secs_or_zero(v)?; Ok(()) }, get: |c| show_secs(c.login_cache) },
    Opt { name: "max-clients", kind: Value("N"), reload: Live,
          help: "control connections at once, at least 1 [default: 5000]",
          set: |d, v| { d.c.max_clients = at_least_one(v)?; Ok(()) }, get: |c| c.max_clients.to_string() },
    Opt { name: "max-per-ip", kind: Value("N"), reload: Live,
          help: "control connections at once from one address, at least 1 [default: 500]",
          set: |d, v| { d.c.max_per_ip = at_least_one(v)?; Ok(()) }, get: |c| c.max_per_ip.to_string() },
    Opt { name: "max-passive", kind: Value("N"), reload: Live,
          help: "passive listeners open at once, at least 1 [default: 1024]",
          set: |d, v| { d.c.max_passive = at_least_one(v)?; Ok(()) }, get: |c| c.max_passive.to_string() },
    Opt { name: "max-transfers", kind: Value("N"), reload: Live,
          help: "data connections open at once, at least 1 [default: 1024]",
          set: |d, v| { d.c.max_transfers = at_least_one(v)?; Ok(()) }, get: |c| c.max_transfers.to_string() },
    Opt { name: "max-data-per-ip", kind: Value("N"), reload: Live,
          help: "passive listeners and data connections at once from one address [default: 64]",
          set: |d, v| { d.c.max_data_per_ip = num(v)?; Ok(()) }, get: |c| c.max_data_per_ip.to_string() },
    Opt { name: "max-line", kind: Value("BYTES"), reload: Restart,
          help: "longest command line, at least 64 [default: 8192]",
          set: |d, v| {
              d.c.max_line_bytes = num(v)?;
              if d.c.max_line_bytes < 64 {
                  return Err("must be at least 64".into());
              }
              Ok(())
          },
          get: |c| c.max_line_bytes.to_string() },
    Opt { name: "shutdown-grace", kind: Value("SECS"), reload: Live,
          help: "on SIGTERM/SIGINT, time for transfers to finish [default: 10]",
          set: |d, v| { d.c.shutdown_grace = secs_or_zero(v)?; Ok(()) }, get: |c| show_secs(c.shutdown_grace) },
    Opt { name: "workers", kind: Value("N|auto"), reload: Restart,
          help: "reactor threads, each with its own listening socket on the\n\
                 control port (SO_REUSEPORT); limits stay global; auto = the\n\
                 CPUs this process may use; 1 to 256 [default: 1]",
          set: |d, v| { d.c.workers = workers(v)?; Ok(()) }, get: |c| c.workers.to_string() },
    Opt { name: "on-upload", kind: Value("CMD"), reload: Live,
          help: "after each completed upload (STOR, STOU, APPE answered 226) run\n\
                 `/bin/sh -c CMD` with LEANFTPD_PATH, LEANFTPD_VIRTUAL_PATH,\n\
                 LEANFTPD_USER, LEANFTPD_SIZE (bytes), LEANFTPD_CLIENT_ADDR,\n\
                 LEANFTPD_COMMAND and PATH as its only environment",
          set: |d, v| {
              if v.trim().is_empty() || v.contains('\0') {
                  return Err("expected a command for /bin/sh -c (without NUL bytes)".into());
              }
              d.c.on_upload = Some(v.to_string());
              Ok(())
          },
          get: |c| c.on_upload.clone().unwrap_or_default() },
    Opt { name: "max-hooks", kind: Value("N"), reload: Restart,
          help: "hooks running at once over all workers, 1 to 64; up to 1024 more\n\
                 wait, past that they are logged and dropped [default: 4]",
          set: |d, v| {
              let n: usize = num(v)?;
              if !(1..=crate::hooks::MAX_HOOKS_LIMIT).contains(&n) {
                  return Err(format!("expected 1 to {}", crate::hooks::MAX_HOOKS_LIMIT));
              }
              d.c.max_hooks = n;
              Ok(())
          },
          get: |c| c.max_hooks.to_string() },
    Opt { name: "hook-timeout", kind: Value("SECS"), reload: Live,
          help: "kill (SIGKILL) a hook running longer, at most 86400 [default: 60]",
          set: |d, v| {
              let t = secs(v)?;
              if t > crate::hooks::MAX_HOOK_TIMEOUT {
                  return Err(format!("at most {} seconds", crate::hooks::MAX_HOOK_TIMEOUT.as_secs()));
              }
              d.c.hook_timeout = t;
              Ok(())
          },
          get: |c| show_secs(c.hook_timeout) },
    Opt { name: "log-level", kind: Value("LEVEL"), reload: Live,
          help: "error, warn, info or debug [default: info]",
          set: |d, v| {
              d.c.log_level = match v {
                  "error" => LogLevel::Error,
                  "warn" => LogLevel::Warn,
                  "info" => LogLevel::Info,
                  "debug" => LogLevel::Debug,
                  _ => return Err("expected error, warn, info or debug".into()),
              };
              Ok(())
          },
          get: |c| format!("{:?}", c.log_level).to_lowercase() },
    Opt { name: "xferlog", kind: Value("FILE"), reload: Restart,
          help: "append a line per transfer to FILE in xferlog(5) format",
          set: |d, v| { d.c.xferlog = Some(path(v)?); Ok(()) }, get: |c| opt_path(&c.xferlog) },
    Opt { name: "atomic-uploads", kind: Flag, reload: Live,
          help: "every upload all-or-nothing (temp file + rename): an interrupted\n\
                 one leaves nothing; APPE/REST copy and lock (450 if busy)",
          set: |d, _| { d.c.atomic_uploads = true; Ok(()) }, get: |c| c.atomic_uploads.to_string() },
    Opt { name: "tls-cert", kind: Value("FILE"), reload: Live,
          help: "FTPS (RFC 4217): certificate chain, PEM; offers AUTH TLS on --listen\n\
                 (SIGHUP reloads it; turning TLS on or off needs a restart)",
          set: |d, v| { d.c.tls_cert = Some(path(v)?); Ok(()) }, get: |c| opt_path(&c.tls_cert) },
    Opt { name: "tls-key", kind: Value("FILE"), reload: Live,
          help: "the certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1)",
          set: |d, v| { d.c.tls_key = Some(path(v)?); Ok(()) }, get: |c| opt_path(&c.tls_key) },
    Opt { name: "implicit-tls-listen", kind: Value("ADDR:PORT"), reload: Restart,
          help: "also listen for implicit FTPS (TLS from the first byte, port 990 style)",
          set: |d, v| { d.c.implicit_tls_listen = Some(v.parse().map_err(|_| "expected ADDR:PORT, e.g. 127.0.0.1:990")?); Ok(()) },
          get: |c| c.implicit_tls_listen.map(|a| a.to_string()).unwrap_or_default() },
    Opt { name: "tls-required", kind: Flag, reload: Live,
          help: "USER before AUTH TLS gets 530, a transfer under PROT C gets 521,\n\
                 for every user, anonymous included",
          set: |d, _| { d.c.tls_required = true; Ok(()) }, get: |c| c.tls_required.to_string() },
    Opt { name: "insecure-tls-no-reuse", kind: Flag, reload: Live,
          help: "accept PROT P data connections that do not resume the control\n\
                 connection's TLS session (Python ftplib); default: 522",
          set: |d, _| { d.c.insecure_tls_no_reuse = true; Ok(()) }, get: |c| c.insecure_tls_no_reuse.to_string() },
    Opt { name: "proxy-protocol", kind: Flag, reload: Restart,
          help: "behind a load balancer (HAProxy `send-proxy`/`send-proxy-v2`): a\n\
                 connection from --proxy-from must start with a PROXY protocol v1\n\
                 or v2 header (v1 <= 107 bytes, v2 <= 1024) within --login-timeout,\n\
                 and the client address it names is used for everything (logs,\n\
                 xferlog, --max-per-ip, data connection checks); any other\n\
                 connection to the control port is closed. Passive data\n\
                 connections from --proxy-from need a header too, naming the\n\
                 control connection's client (otherwise refused, as a foreign one)",
          set: |d, _| { d.c.proxy_protocol = true; Ok(()) }, get: |c| c.proxy_protocol.to_string() },
    Opt { name: "proxy-from", kind: List("CIDR[,CIDR...]"), reload: Restart,
          help: "the balancers' addresses or networks (required with, and only\n\
                 with, --proxy-protocol), e.g. 10.0.0.5,192.0.2.0/24",
          set: |d, v| { super::add_proxy_from(d, v) }, get: super::show_proxy_from },
    Opt { name: "metrics-listen", kind: Value("ADDR:PORT"), reload: Restart,
          help: "serve Prometheus metrics (text format 0.0.4) at GET /metrics over\n\
                 HTTP/1.1; at most 8 scrapers at once (past it, a new one takes the\n\
                 place of the oldest still sending its request; 503 if none is), a\n\
                 request head of at most 8 KiB (431), --login-timeout per scrape; no TLS,\n\
                 no authentication: bind it to loopback or a private network",
          set: |d, v| { d.c.metrics_listen = Some(v.parse().map_err(|_| "expected ADDR:PORT, e.g. 127.0.0.1:9121")?); Ok(()) },
          get: |c| c.metrics_listen.map(|a| a.to_string()).unwrap_or_default() },
    Opt { name: "max-download-rate", kind: Value("RATE"), reload: Live,
          help: "bytes per second of each download (RETR) of every session; K = 1024,\n\
                 M = 1048576 (binary units), e.g. 512K or 2M; 0: unlimited;\n\
                 otherwise 1K to 4095M [default: 0]",
          set: |d, v| { d.c.max_download_rate = rate(v)?; Ok(()) }, get: |c| c.max_download_rate.to_string() },
    Opt { name: "max-upload-rate", kind: Value("RATE"), reload: Live,
          help: "bytes per second of each upload (STOR, APPE, STOU), as above\n\
                 [default: 0]. Listings are never limited",
          set: |d, v| { d.c.max_upload_rate = rate(v)?; Ok(()) }, get: |c| c.max_upload_rate.to_string() },
    Opt { name: "anonymous-max-download-rate", kind: Value("RATE"), reload: Live,
          help: "for anonymous sessions, instead of --max-download-rate",
          set: |d, v| { d.c.anonymous_max_download_rate = Some(rate(v)?); Ok(()) },
          get: |c| c.anonymous_max_download_rate.map(|r| r.to_string()).unwrap_or_default() },
    Opt { name: "anonymous-max-upload-rate", kind: Value("RATE"), reload: Live,
          help: "for anonymous sessions, instead of --max-upload-rate\n\
                 (a users file line may set its own: download-rate=, upload-rate=)",
          set: |d, v| { d.c.anonymous_max_upload_rate = Some(rate(v)?); Ok(()) },
          get: |c| c.anonymous_max_upload_rate.map(|r| r.to_string()).unwrap_or_default() },
    Opt { name: "insecure-pasv-any-peer", kind: Flag, reload: Live,
          help: "accept passive data connections from any address",
          set: |d, _| { d.c.insecure_pasv_any_peer = true; Ok(()) }, get: |c| c.insecure_pasv_any_peer.to_string() },
    Opt { name: "insecure-port-any-host", kind: Flag, reload: Live,
          help: "allow PORT/EPRT to any host and to ports below 1024 (the\n\
                 sandbox still refuses connects below 1024: use --no-sandbox)",
          set: |d, _| { d.c.insecure_port_any_host = true; Ok(()) }, get: |c| c.insecure_port_any_host.to_string() },
    Opt { name: "no-sandbox", kind: Flag, reload: Restart,
          help: "do not confine the process with Landlock after start-up\n\
                 (see README \"Sandbox\"; on by default where the kernel has it)",
          set: |d, _| { d.c.no_sandbox = true; Ok(()) }, get: |c| c.no_sandbox.to_string() },
];

/// The row of `name` (a long option without its dashes, or a file key).
pub fn find(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name)
}

fn path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("expected a path".into());
    }
    Ok(PathBuf::from(v))
}

/// A directory that exists (checked again, and made canonical, by
/// `Config::validate`; here so that a file's error names its line).
fn dir(v: &str) -> Result<PathBuf, String> {
    let p = path(v)?;
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err("not a directory".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A rate in bytes per second: see `dtp::throttle::parse_rate`.
fn rate(v: &str) -> Result<u64, String> {
    crate::dtp::throttle::parse_rate(v).map_err(|e| e.strip_prefix(&format!("{v}: ")).unwrap_or(&e).to_string())
}

fn opt_path(p: &Option<PathBuf>) -> String {
    p.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

fn range(v: &str) -> Result<(u16, u16), String> {
    let bad = || "expected MIN-MAX with 1024 <= MIN <= MAX <= 65535".to_string();
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a < 1024 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `--workers N` or `auto`: the CPUs this process may run on
/// (`sched_getaffinity(2)`, through `std::thread::available_parallelism`,
/// which also honours a cgroup CPU quota), at most `MAX_WORKERS`.
fn workers(v: &str) -> Result<usize, String> {
    let bad = || format!("expected a number from 1 to {MAX_WORKERS}, or auto");
    let n = if v == "auto" {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_WORKERS)
    } else {
        v.parse().map_err(|_| bad())?
    };
    if !(1..=MAX_WORKERS).contains(&n) {
        return Err(bad());
    }
    Ok(n)
}

/// A whole number (`usize`, `u32`, ...).
pub fn num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse().map_err(|_| "expected a number".to_string())
}

fn at_least_one(v: &str) -> Result<usize, String> {
    match num(v)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Seconds, more than zero (fractions allowed: `0.5`).
pub fn secs(v: &str) -> Result<Duration, String> {
    let d = secs_or_zero(v)?;
    if d.is_zero() {
        return Err("must be more than 0 seconds".into());
    }
    Ok(d)
}

/// Seconds, zero allowed, at most a year.
pub fn secs_or_zero(v: &str) -> Result<Duration, String> {
    let secs: f64 = v.parse().map_err(|_| "expected seconds".to_string())?;
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err("out of range (0 to 31536000 seconds)".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn show_secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// The `OPTIONS:` part of `--help`, generated from the table.
pub fn options_help() -> String {
    const COL: usize = 31;
    let mut s = String::new();
    let mut line = |left: String, help: &str| {
        s.push_str(&left);
        let mut lines = help.split('\n');
        if left.len() + 1 > COL {
            s.push('\n');
            s.push_str(&" ".repeat(COL));
        } else {
            s.push_str(&" ".repeat(COL - left.len()));
        }
        s.push_str(lines.next().unwrap_or(""));
        s.push('\n');
        for l in lines {
            s.push_str(&" ".repeat(COL));
            s.push_str(l);
            s.push('\n');
        }
    };
    for o in OPTIONS {
        let left = match o.kind {
            Flag => format!("    --{}", o.name),
            Value(v) | List(v) => format!("    --{} {v}", o.name),
        };
        line(left, o.help);
    }
    line("    --config FILE".into(), "read options from FILE (TOML: `key = value`, a key per option\n\
                                      above, without its dashes); options given here override it;\n\
                                      SIGHUP reads it again (see SIGNALS)");
    line("    -h, --help".into(), "print this help");
    line("    -V, --version".into(), "print the version");
    s
}
