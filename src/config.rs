//! The server's configuration: parsed once from the command line, validated,
//! then read-only. Every default is named and documented here.
//!
//! It never opens sockets; it checks what can be checked before binding
//! (the root exists, the users file parses) so that `main` can print one
//! clear line and exit 2.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where the server listens by default: loopback only, an unprivileged port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2121";
/// Time to log in before the connection is closed.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle control connection timeout (vsftpd and pyftpdlib use 300 s).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time for the data connection to be made after PASV/PORT (Twisted's `dtpTimeout`).
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(30);
/// A transfer with no progress for this long is aborted (`426`).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Delay before a failed login is answered (`530`), doubled for each further
/// failure on the same connection.
pub const DEFAULT_LOGIN_FAIL_DELAY: Duration = Duration::from_secs(1);
/// How long a successful password check is remembered (see `auth::LoginCache`).
pub const DEFAULT_LOGIN_CACHE: Duration = Duration::from_secs(300);
/// Failed logins allowed on one connection before it is closed.
pub const DEFAULT_MAX_LOGIN_FAILS: u32 = 3;
/// How long SIGTERM/SIGINT waits for transfers in flight.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Control connections at once.
pub const DEFAULT_MAX_CLIENTS: usize = 5000;
/// Control connections at once from one IP address.
pub const DEFAULT_MAX_PER_IP: usize = 500;
/// Passive listeners open at once (each holds a port).
pub const DEFAULT_MAX_PASSIVE: usize = 1024;
/// Data connections (transfers) open at once.
pub const DEFAULT_MAX_TRANSFERS: usize = 1024;
/// Passive listeners and data connections at once from one client address:
/// a share, so that one address cannot take every data slot.
pub const DEFAULT_MAX_DATA_PER_IP: usize = 64;

/// Reactor threads (`--workers`): one, as on a single-core device.
pub const DEFAULT_WORKERS: usize = 1;
/// The most reactor threads `--workers` takes: each holds a poll, a slab,
/// a wheel, a helper thread and its listening sockets.
pub const MAX_WORKERS: usize = 256;

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Sessions and transfers (the default).
    Info,
    /// Every command.
    Debug,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The directory served to anonymous users; relative homes in the users
    /// file are relative to it.
    pub root: PathBuf,
    /// Control listen address (IPv4 or IPv6).
    pub listen: SocketAddr,
    /// Users file (`name:hash:home:perms`), if any.
    pub users: Option<PathBuf>,
    /// Whether `anonymous`/`ftp` may log in (read-only at `root`).
    pub anonymous: bool,
    /// Whether anonymous users may write.
    pub anonymous_write: bool,
    /// Passive port range; `None` lets the kernel choose.
    pub passive_ports: Option<(u16, u16)>,
    /// Address advertised in PASV replies (behind NAT); default: the control
    /// connection's local address.
    pub passive_address: Option<IpAddr>,
    /// See `DEFAULT_LOGIN_TIMEOUT`.
    pub login_timeout: Duration,
    /// See `DEFAULT_IDLE_TIMEOUT`.
    pub idle_timeout: Duration,
    /// See `DEFAULT_DATA_TIMEOUT`.
    pub data_timeout: Duration,
    /// See `DEFAULT_STALL_TIMEOUT`.
    pub stall_timeout: Duration,
    /// See `DEFAULT_LOGIN_FAIL_DELAY`.
    pub login_fail_delay: Duration,
    /// See `DEFAULT_MAX_LOGIN_FAILS`.
    pub max_login_fails: u32,
    /// See `DEFAULT_LOGIN_CACHE`; zero disables the cache.
    pub login_cache: Duration,
    /// See `DEFAULT_SHUTDOWN_GRACE`.
    pub shutdown_grace: Duration,
    /// See `DEFAULT_MAX_CLIENTS`.
    pub max_clients: usize,
    /// See `DEFAULT_MAX_PER_IP`.
    pub max_per_ip: usize,
    /// See `DEFAULT_MAX_PASSIVE`.
    pub max_passive: usize,
    /// See `DEFAULT_MAX_TRANSFERS`.
    pub max_transfers: usize,
    /// Longest command line accepted (`crate::line::MAX_LINE_BYTES`).
    pub max_line_bytes: usize,
    /// Accept passive data connections from any address (FTP bounce/theft risk).
    pub insecure_pasv_any_peer: bool,
    /// Allow PORT/EPRT to any host and to ports below 1024 (FTP bounce risk).
    pub insecure_port_any_host: bool,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Transfer log in `xferlog(5)` format, if wanted.
    pub xferlog: Option<PathBuf>,
    /// See `DEFAULT_MAX_DATA_PER_IP`.
    pub max_data_per_ip: usize,
    /// Every upload all-or-nothing: written to a temporary file and renamed
    /// into place only when complete, so a directory watcher never sees a
    /// partial file; an interrupted upload leaves nothing. Off by default:
    /// an interrupted upload to a new name keeps its bytes (resumable), and
    /// APPE and a resume at the end of a file write in place.
    pub atomic_uploads: bool,
    /// FTPS (RFC 4217): the certificate chain and private key, PEM. With
    /// them, AUTH TLS is offered on the control port. Reloaded on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// See `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// An implicit FTPS listener (TLS from the first byte, port 990 style).
    pub implicit_tls_listen: Option<SocketAddr>,
    /// Refuse USER before AUTH TLS (`530`) and transfers under PROT C
    /// (`521`), for every user, anonymous included.
    pub tls_required: bool,
    /// Accept PROT P data connections that do not resume the control
    /// connection's TLS session (Python's ftplib cannot); off by default:
    /// such a connection is refused with `522`.
    pub insecure_tls_no_reuse: bool,
    /// Behind a load balancer (`--proxy-protocol`): a connection from a
    /// `proxy_from` source starts with a PROXY protocol v1/v2 header naming
    /// the real client, which every per-client check then uses; any other
    /// connection to the control (or implicit FTPS) listener is closed.
    pub proxy_protocol: bool,
    /// `--proxy-from`: the balancers' networks, the only sources trusted to
    /// name another client.
    #[cfg(feature = "proxy")]
    pub proxy_from: Vec<ipnet::IpNet>,
    /// Serve `GET /metrics` (Prometheus text format 0.0.4) on this address;
    /// see `reactor::scrape` for its bounds.
    pub metrics_listen: Option<SocketAddr>,
    /// Reactor threads (`--workers`, 1 to `MAX_WORKERS`): each with its own
    /// poll, slab, wheel and listening socket (`SO_REUSEPORT`); see
    /// `crate::workers`.
    pub workers: usize,
    /// `--no-sandbox`: do not confine the process with Landlock after
    /// start-up (see `crate::sandbox`); off by default.
    pub no_sandbox: bool,
}

impl Config {
    /// The defaults for serving `root`.
    pub fn new(root: PathBuf) -> Config {
        Config {
            root,
            listen: DEFAULT_LISTEN.parse().expect("default listen address is valid"),
            users: None,
            anonymous: true,
            anonymous_write: false,
            passive_ports: None,
            passive_address: None,
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            data_timeout: DEFAULT_DATA_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            login_fail_delay: DEFAULT_LOGIN_FAIL_DELAY,
            max_login_fails: DEFAULT_MAX_LOGIN_FAILS,
            login_cache: DEFAULT_LOGIN_CACHE,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            max_passive: DEFAULT_MAX_PASSIVE,
            max_transfers: DEFAULT_MAX_TRANSFERS,
            max_line_bytes: crate::line::MAX_LINE_BYTES,
            insecure_pasv_any_peer: false,
            insecure_port_any_host: false,
            log_level: LogLevel::Info,
            xferlog: None,
            atomic_uploads: false,
            max_data_per_ip: DEFAULT_MAX_DATA_PER_IP,
            tls_cert: None,
            tls_key: None,
            implicit_tls_listen: None,
            tls_required: false,
            insecure_tls_no_reuse: false,
            proxy_protocol: false,
            #[cfg(feature = "proxy")]
            proxy_from: Vec::new(),
            metrics_listen: None,
            workers: DEFAULT_WORKERS,
            no_sandbox: false,
        }
    }

    /// Parse the command line (without the program name).
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, UsageError> {
        let mut root: Option<PathBuf> = None;
        let mut anonymous_flag = false;
        let mut proxy_from_given = false;
        let mut c = Config::new(PathBuf::new());
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, UsageError> {
                inline.clone().or_else(|| args.next()).ok_or_else(|| UsageError(format!("{name} needs a value")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help),
                "-V" | "--version" => return Ok(Parsed::Version),
                "--root" => root = Some(PathBuf::from(value("--root")?)),
                "--listen" => {
                    let v = value("--listen")?;
                    c.listen = v.parse().map_err(|_| {
                        UsageError(format!("--listen {v}: expected ADDR:PORT, e.g. 127.0.0.1:2121 or [::1]:2121"))
                    })?;
                }
                "--users" => c.users = Some(PathBuf::from(value("--users")?)),
                "--anonymous" => anonymous_flag = true,
                "--anonymous-write" => {
                    anonymous_flag = true;
                    c.anonymous_write = true;
                }
                "--passive-ports" => c.passive_ports = Some(parse_range(&value("--passive-ports")?)?),
                "--passive-address" => {
                    let v = value("--passive-address")?;
                    c.passive_address =
                        Some(v.parse().map_err(|_| UsageError(format!("--passive-address {v}: not an IP address")))?);
                }
                "--login-timeout" => c.login_timeout = parse_secs("--login-timeout", &value("--login-timeout")?)?,
                "--idle-timeout" => c.idle_timeout = parse_secs("--idle-timeout", &value("--idle-timeout")?)?,
                "--data-timeout" => c.data_timeout = parse_secs("--data-timeout", &value("--data-timeout")?)?,
                "--stall-timeout" => c.stall_timeout = parse_secs("--stall-timeout", &value("--stall-timeout")?)?,
                "--login-fail-delay" => {
                    c.login_fail_delay = parse_secs_allow_zero("--login-fail-delay", &value("--login-fail-delay")?)?
                }
                "--login-cache" => c.login_cache = parse_secs_allow_zero("--login-cache", &value("--login-cache")?)?,
                "--max-login-fails" => c.max_login_fails = parse_num("--max-login-fails", &value("--max-login-fails")?)?,
                "--shutdown-grace" => {
                    c.shutdown_grace = parse_secs_allow_zero("--shutdown-grace", &value("--shutdown-grace")?)?
                }
                "--max-clients" => c.max_clients = parse_num("--max-clients", &value("--max-clients")?)?,
                "--max-per-ip" => c.max_per_ip = parse_num("--max-per-ip", &value("--max-per-ip")?)?,
                "--max-passive" => c.max_passive = parse_num("--max-passive", &value("--max-passive")?)?,
                "--max-transfers" => c.max_transfers = parse_num("--max-transfers", &value("--max-transfers")?)?,
                "--max-data-per-ip" => c.max_data_per_ip = parse_num("--max-data-per-ip", &value("--max-data-per-ip")?)?,
                "--max-line" => {
                    c.max_line_bytes = parse_num("--max-line", &value("--max-line")?)?;
                    if c.max_line_bytes < 64 {
                        return Err(UsageError("--max-line must be at least 64".into()));
                    }
                }
                "--log-level" => {
                    c.log_level = match value("--log-level")?.as_str() {
                        "error" => LogLevel::Error,
                        "warn" => LogLevel::Warn,
                        "info" => LogLevel::Info,
                        "debug" => LogLevel::Debug,
                        v => return Err(UsageError(format!("--log-level {v}: expected error, warn, info or debug"))),
                    }
                }
                "--xferlog" => c.xferlog = Some(PathBuf::from(value("--xferlog")?)),
                "--atomic-uploads" => c.atomic_uploads = true,
                "--tls-cert" => c.tls_cert = Some(PathBuf::from(value("--tls-cert")?)),
                "--tls-key" => c.tls_key = Some(PathBuf::from(value("--tls-key")?)),
                "--implicit-tls-listen" => {
                    let v = value("--implicit-tls-listen")?;
                    c.implicit_tls_listen = Some(v.parse().map_err(|_| {
                        UsageError(format!("--implicit-tls-listen {v}: expected ADDR:PORT, e.g. 127.0.0.1:990"))
                    })?);
                }
                "--metrics-listen" => {
                    let v = value("--metrics-listen")?;
                    c.metrics_listen = Some(v.parse().map_err(|_| {
                        UsageError(format!("--metrics-listen {v}: expected ADDR:PORT, e.g. 127.0.0.1:9121"))
                    })?);
                }
                "--workers" => c.workers = parse_workers(&value("--workers")?)?,
                "--tls-required" => c.tls_required = true,
                "--insecure-tls-no-reuse" => c.insecure_tls_no_reuse = true,
                "--proxy-protocol" => c.proxy_protocol = true,
                "--proxy-from" => {
                    let v = value("--proxy-from")?;
                    #[cfg(feature = "proxy")]
                    c.proxy_from.extend(parse_cidrs(&v)?);
                    #[cfg(not(feature = "proxy"))]
                    let _ = v;
                    proxy_from_given = true;
                }
                "--insecure-pasv-any-peer" => c.insecure_pasv_any_peer = true,
                "--insecure-port-any-host" => c.insecure_port_any_host = true,
                "--no-sandbox" => c.no_sandbox = true,
                other => return Err(UsageError(format!("unknown option {other} (see --help)"))),
            }
        }
        c.root = root.ok_or_else(|| UsageError("--root DIR is required (the directory to serve)".into()))?;
        // Anonymous is on by default only when there is no users file.
        c.anonymous = c.users.is_none() || anonymous_flag;
        if (c.proxy_protocol || proxy_from_given) && !crate::PROXY_BUILT_IN {
            return Err(UsageError(
                "--proxy-protocol: this leanftpd was built without the PROXY protocol (cargo feature `proxy`)".into(),
            ));
        }
        if c.proxy_protocol != proxy_from_given {
            return Err(UsageError("--proxy-protocol and --proxy-from CIDR[,CIDR...] go together".into()));
        }
        c.validate()?;
        Ok(Parsed::Run(Box::new(c)))
    }

    /// Checks that need the filesystem.
    pub fn validate(&mut self) -> Result<(), UsageError> {
        let meta = std::fs::metadata(&self.root)
            .map_err(|e| UsageError(format!("--root {}: {e}", self.root.display())))?;
        if !meta.is_dir() {
            return Err(UsageError(format!("--root {}: not a directory", self.root.display())));
        }
        self.root = std::fs::canonicalize(&self.root)
            .map_err(|e| UsageError(format!("--root {}: {e}", self.root.display())))?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(UsageError("--tls-cert and --tls-key go together".into()));
        }
        let tls = self.tls_cert.is_some();
        if !tls && (self.implicit_tls_listen.is_some() || self.tls_required || self.insecure_tls_no_reuse) {
            return Err(UsageError(
                "--implicit-tls-listen, --tls-required and --insecure-tls-no-reuse need --tls-cert and --tls-key".into(),
            ));
        }
        if tls && !crate::TLS_BUILT_IN {
            return Err(UsageError("--tls-cert: this leanftpd was built without TLS (cargo feature `tls`)".into()));
        }
        if self.metrics_listen.is_some() && !crate::METRICS_BUILT_IN {
            return Err(UsageError("--metrics-listen: this leanftpd was built without metrics (cargo feature `metrics`)".into()));
        }
        if self.max_clients == 0 || self.max_per_ip == 0 || self.max_passive == 0 || self.max_transfers == 0 {
            return Err(UsageError("--max-clients, --max-per-ip, --max-passive and --max-transfers must be at least 1".into()));
        }
        Ok(())
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the server.
    Run(Box<Config>),
    /// Print help and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A bad command line or configuration: printed as one line, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn parse_range(v: &str) -> Result<(u16, u16), UsageError> {
    let bad = || UsageError(format!("--passive-ports {v}: expected MIN-MAX with 1024 <= MIN <= MAX <= 65535"));
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a < 1024 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `--proxy-from 10.0.0.0/8,192.0.2.7,2001:db8::/32`: networks, or single
/// addresses (a /32 or /128).
#[cfg(feature = "proxy")]
fn parse_cidrs(v: &str) -> Result<Vec<ipnet::IpNet>, UsageError> {
    let bad = |item: &str| UsageError(format!("--proxy-from {item}: expected an address or CIDR, e.g. 10.0.0.0/8 or 192.0.2.7"));
    v.split(',')
        .map(str::trim)
        .map(|item| match item.parse::<ipnet::IpNet>() {
            Ok(net) => Ok(net.trunc()),
            Err(_) => item.parse::<IpAddr>().map(ipnet::IpNet::from).map_err(|_| bad(item)),
        })
        .collect()
}

impl Config {
    /// Whether a connection from `ip` must start with a PROXY protocol
    /// header: `--proxy-protocol` is on and `ip` is in `--proxy-from`
    /// (IPv4-mapped IPv6 taken as IPv4).
    pub fn is_proxy_source(&self, ip: IpAddr) -> bool {
        #[cfg(feature = "proxy")]
        {
            let ip = crate::ftp::session::canonical(std::net::SocketAddr::new(ip, 0)).ip();
            self.proxy_protocol && self.proxy_from.iter().any(|net| net.contains(&ip))
        }
        #[cfg(not(feature = "proxy"))]
        {
            let _ = ip;
            false
        }
    }
}

/// `--workers N` or `auto`: the CPUs this process may run on
/// (`sched_getaffinity(2)`, through `std::thread::available_parallelism`,
/// which also honours a cgroup CPU quota), at most `MAX_WORKERS`.
fn parse_workers(v: &str) -> Result<usize, UsageError> {
    let bad = || UsageError(format!("--workers {v}: expected a number from 1 to {MAX_WORKERS}, or auto"));
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

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, UsageError> {
    v.parse().map_err(|_| UsageError(format!("{name} {v}: expected a number")))
}

fn parse_secs(name: &str, v: &str) -> Result<Duration, UsageError> {
    let d = parse_secs_allow_zero(name, v)?;
    if d.is_zero() {
        return Err(UsageError(format!("{name}: must be more than 0 seconds")));
    }
    Ok(d)
}

fn parse_secs_allow_zero(name: &str, v: &str) -> Result<Duration, UsageError> {
    let secs: f64 = v.parse().map_err(|_| UsageError(format!("{name} {v}: expected seconds")))?;
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(UsageError(format!("{name} {v}: out of range")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The `--help` text.
pub const HELP: &str = "\
leanftpd — a small, single-threaded FTP server

USAGE:
    leanftpd --root DIR [OPTIONS]

Serves DIR read-only to anonymous clients on 127.0.0.1:2121 unless told otherwise.

OPTIONS:
    --root DIR                 directory to serve (required); relative user homes are under it
    --listen ADDR:PORT         control address, IPv4 or IPv6 [default: 127.0.0.1:2121]
    --users FILE               users file, one `name:hash:home:perms` a line; hash as written by
                               `openssl passwd -6` or `htpasswd -nbB`; perms `r` or `rw`.
                               With --users, anonymous is refused unless --anonymous is given.
    --anonymous                let `anonymous`/`ftp` log in read-only at --root
    --anonymous-write          let anonymous users write too (implies --anonymous)
    --passive-ports MIN-MAX    passive data ports, 1024-65535 [default: random in the kernel's ephemeral range]
    --passive-address IP       address advertised in PASV replies (behind NAT)
    --login-timeout SECS       time to log in [default: 60]
    --idle-timeout SECS        idle control connection timeout [default: 300]
    --data-timeout SECS        time for a data connection to be made [default: 30]
    --stall-timeout SECS       abort a transfer without progress for this long [default: 120]
    --login-fail-delay SECS    delay before a failed login is answered, doubled per failure [default: 1]
    --max-login-fails N        failed logins before the connection is closed [default: 3]
    --login-cache SECS         remember a successful password check this long, as a keyed
                               digest (0: off; SIGHUP clears it) [default: 300]
    --max-clients N            control connections at once [default: 5000]
    --max-per-ip N             control connections at once from one address [default: 500]
    --max-passive N            passive listeners open at once [default: 1024]
    --max-transfers N          data connections open at once [default: 1024]
    --max-data-per-ip N        passive listeners and data connections at once from one address [default: 64]
    --max-line BYTES           longest command line [default: 8192]
    --shutdown-grace SECS      on SIGTERM/SIGINT, time for transfers to finish [default: 10]
    --workers N|auto           reactor threads, each with its own listening socket on the
                               control port (SO_REUSEPORT); limits stay global; auto = the
                               CPUs this process may use; 1 to 256 [default: 1]
    --log-level LEVEL          error, warn, info or debug [default: info]
    --xferlog FILE             append a line per transfer to FILE in xferlog(5) format
    --atomic-uploads           every upload all-or-nothing (temp file + rename): an interrupted
                               one leaves nothing; APPE/REST copy and lock (450 if busy)
    --tls-cert FILE            FTPS (RFC 4217): certificate chain, PEM; offers AUTH TLS on --listen
    --tls-key FILE             the certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1)
    --implicit-tls-listen ADDR:PORT
                               also listen for implicit FTPS (TLS from the first byte, port 990 style)
    --tls-required             USER before AUTH TLS gets 530, a transfer under PROT C gets 521,
                               for every user, anonymous included
    --insecure-tls-no-reuse    accept PROT P data connections that do not resume the control
                               connection's TLS session (Python ftplib); default: 522
    --proxy-protocol           behind a load balancer (HAProxy `send-proxy`/`send-proxy-v2`): a
                               connection from --proxy-from must start with a PROXY protocol v1
                               or v2 header (v1 <= 107 bytes, v2 <= 1024) within --login-timeout,
                               and the client address it names is used for everything (logs,
                               xferlog, --max-per-ip, data connection checks); any other
                               connection to the control port is closed. Passive data
                               connections from --proxy-from need a header too, naming the
                               control connection's client (otherwise refused, as a foreign one)
    --proxy-from CIDR[,CIDR...]
                               the balancers' addresses or networks (required with, and only
                               with, --proxy-protocol), e.g. 10.0.0.5,192.0.2.0/24
    --metrics-listen ADDR:PORT serve Prometheus metrics (text format 0.0.4) at GET /metrics over
                               HTTP/1.1; at most 8 scrapers at once (past it, a new one takes the
                               place of the oldest still sending its request; 503 if none is), a
                               request head of at most 8 KiB (431), --login-timeout per scrape; no TLS,
                               no authentication: bind it to loopback or a private network
    --insecure-pasv-any-peer   accept passive data connections from any address
    --insecure-port-any-host   allow PORT/EPRT to any host and to ports below 1024 (the
                               sandbox still refuses connects below 1024: use --no-sandbox)
    --no-sandbox               do not confine the process with Landlock after start-up
                               (see README \"Sandbox\"; on by default where the kernel has it)
    -h, --help                 print this help
    -V, --version              print the version

SIGNALS:
    SIGTERM, SIGINT            stop accepting, let transfers finish (grace period), exit 0
    SIGHUP                     reload the users file, and the TLS certificate and key
                               (with --workers N: on every worker)

ENVIRONMENT (systemd, see README \"Running under systemd\"):
    LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES
                               socket activation: the listening sockets handed in replace
                               --listen (name `control` or same address) and
                               --implicit-tls-listen (name `implicit-tls` or same address)
    NOTIFY_SOCKET              Type=notify: READY=1, RELOADING=1 (SIGHUP), STOPPING=1

EXIT CODES:
    0 clean shutdown, 1 runtime error (e.g. address in use), 2 bad usage or configuration
";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(a: &[&str]) -> Result<Config, UsageError> {
        match Config::from_args(args(a))? {
            Parsed::Run(c) => Ok(*c),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn root_alone_serves_anonymous_read_only_on_localhost_2121() {
        let c = run(&["--root", "/tmp"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2121".parse().unwrap());
        assert!(c.anonymous && !c.anonymous_write);
    }

    #[test]
    fn users_file_turns_anonymous_off_unless_asked() {
        assert!(!run(&["--root", "/tmp", "--users", "/x"]).unwrap().anonymous);
        assert!(run(&["--root", "/tmp", "--users", "/x", "--anonymous"]).unwrap().anonymous);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(run(&[]).is_err());
        assert!(run(&["--root", "/nonexistent-leanftpd"]).is_err());
        assert!(run(&["--root", "/tmp", "--listen", "nope"]).is_err());
        assert!(run(&["--root", "/tmp", "--passive-ports", "5000-4000"]).is_err());
        assert!(run(&["--root", "/tmp", "--passive-ports", "80-90"]).is_err());
        assert!(run(&["--root", "/tmp", "--bogus"]).is_err());
        assert!(run(&["--root", "/tmp", "--idle-timeout", "0"]).is_err());
        assert!(run(&["--root", "/tmp", "--workers", "0"]).is_err());
        assert!(run(&["--root", "/tmp", "--workers", "257"]).is_err());
        assert!(run(&["--root", "/tmp", "--workers", "many"]).is_err());
    }

    #[test]
    fn workers_default_to_one_and_auto_is_the_usable_cpus() {
        assert_eq!(run(&["--root", "/tmp"]).unwrap().workers, 1);
        assert_eq!(run(&["--root", "/tmp", "--workers", "3"]).unwrap().workers, 3);
        let cpus = std::thread::available_parallelism().unwrap().get().min(MAX_WORKERS);
        assert_eq!(run(&["--root", "/tmp", "--workers=auto"]).unwrap().workers, cpus);
    }

    #[cfg(feature = "proxy")]
    #[test]
    fn proxy_from_takes_networks_and_addresses_and_needs_proxy_protocol() {
        let c = run(&["--root", "/tmp", "--proxy-protocol", "--proxy-from", "10.1.2.3/8, 192.0.2.7,2001:db8::/32"]).unwrap();
        assert!(c.is_proxy_source("10.200.0.1".parse().unwrap()));
        assert!(c.is_proxy_source("192.0.2.7".parse().unwrap()));
        assert!(c.is_proxy_source("::ffff:192.0.2.7".parse().unwrap()));
        assert!(!c.is_proxy_source("192.0.2.8".parse().unwrap()));
        assert!(c.is_proxy_source("2001:db8::5".parse().unwrap()));
        assert!(!run(&["--root", "/tmp"]).unwrap().is_proxy_source("127.0.0.1".parse().unwrap()));
        assert!(run(&["--root", "/tmp", "--proxy-protocol"]).is_err());
        assert!(run(&["--root", "/tmp", "--proxy-from", "10.0.0.0/8"]).is_err());
        assert!(run(&["--root", "/tmp", "--proxy-protocol", "--proxy-from", "10.0.0.0/33"]).is_err());
        assert!(run(&["--root", "/tmp", "--proxy-protocol", "--proxy-from", "nope"]).is_err());
        assert!(run(&["--root", "/tmp", "--proxy-protocol", "--proxy-from", ""]).is_err());
    }

    #[test]
    fn metrics_listen_takes_an_address() {
        let c = run(&["--root", "/tmp", "--metrics-listen", "127.0.0.1:9121"]);
        if crate::METRICS_BUILT_IN {
            assert_eq!(c.unwrap().metrics_listen, Some("127.0.0.1:9121".parse().unwrap()));
        } else {
            assert!(c.unwrap_err().0.contains("built without metrics"));
        }
        assert!(run(&["--root", "/tmp", "--metrics-listen", "9121"]).is_err());
        assert_eq!(run(&["--root", "/tmp"]).unwrap().metrics_listen, None);
    }

    #[test]
    fn ipv6_listen_and_inline_values_parse() {
        let c = run(&["--root=/tmp", "--listen=[::1]:0", "--passive-ports", "40000-40100"]).unwrap();
        assert!(c.listen.is_ipv6());
        assert_eq!(c.passive_ports, Some((40000, 40100)));
    }

    #[test]
    fn no_sandbox_is_off_by_default() {
        assert!(!run(&["--root", "/tmp"]).unwrap().no_sandbox);
        assert!(run(&["--root", "/tmp", "--no-sandbox"]).unwrap().no_sandbox);
    }
}
