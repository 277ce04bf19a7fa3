//! The server's configuration: read from `--config FILE` (TOML) and the
//! command line over it, validated, then read-only until SIGHUP reads it
//! again (`Config::reread`, `Config::adopt`). Every default is named and
//! documented here; every option is one row of `options::OPTIONS`, from
//! which the command line (`cli`), the file's keys (`file`) and `--help`
//! are made.
//!
//! It never opens sockets; it checks what can be checked before binding
//! (the root exists, the users file parses) so that `main` can print one
//! clear line and exit 2.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

mod cli;
pub mod file;
pub mod options;

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

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
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
    /// `--anonymous-upload-dir`: a virtual path inside the anonymous root
    /// where anonymous users have drop-box rights (upload-only, see
    /// `crate::vfs::access`), read-only elsewhere. It must be an existing
    /// directory at start (exit code 2 otherwise); it implies `--anonymous`
    /// and excludes `--anonymous-write`.
    pub anonymous_upload_dir: Option<crate::vfs::VirtualPath>,
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
    /// `--on-upload CMD`: run `/bin/sh -c CMD` after each completed upload
    /// (STOR, STOU, APPE answered `226`), the file named in its
    /// environment; see `crate::hooks`.
    pub on_upload: Option<String>,
    /// `--max-hooks N`: hooks running at once over all workers, 1 to
    /// `hooks::MAX_HOOKS_LIMIT` (the rest wait in a bounded queue).
    pub max_hooks: usize,
    /// `--hook-timeout SECS`: a hook running longer is killed (`SIGKILL`),
    /// up to `hooks::MAX_HOOK_TIMEOUT`.
    pub hook_timeout: Duration,
    /// `--max-download-rate`: bytes per second of each RETR (every session;
    /// 0 = unlimited; otherwise `dtp::throttle::MIN_RATE..=MAX_RATE`). Read
    /// at login, so a reloaded config applies to new sessions.
    pub max_download_rate: u64,
    /// `--max-upload-rate`: bytes per second of each STOR, APPE, STOU, as
    /// `max_download_rate`.
    pub max_upload_rate: u64,
    /// `--anonymous-max-download-rate`: for anonymous sessions, replaces
    /// `max_download_rate` when set (`Some(0)`: unlimited).
    pub anonymous_max_download_rate: Option<u64>,
    /// `--anonymous-max-upload-rate`: for anonymous sessions, replaces
    /// `max_upload_rate` when set (`Some(0)`: unlimited).
    pub anonymous_max_upload_rate: Option<u64>,
    /// Where this configuration came from (`--config`, the command line),
    /// for SIGHUP to read it again.
    pub origin: Origin,
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
            anonymous_upload_dir: None,
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
            on_upload: None,
            max_hooks: crate::hooks::DEFAULT_MAX_HOOKS,
            hook_timeout: crate::hooks::DEFAULT_HOOK_TIMEOUT,
            max_download_rate: 0,
            max_upload_rate: 0,
            anonymous_max_download_rate: None,
            anonymous_max_upload_rate: None,
            origin: Origin::default(),
        }
    }

    /// Parse the command line (without the program name).
    /// Parse the command line (without the program name): the file of
    /// `--config FILE` if given, then every option of the command line
    /// over it (an option given on the command line replaces the file's
    /// value, or list), then the checks of `validate`.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, UsageError> {
        let args: Vec<String> = args.into_iter().collect();
        let given = cli::parse(args.iter().cloned())?;
        if given.help {
            return Ok(Parsed::Help);
        }
        if given.version {
            return Ok(Parsed::Version);
        }
        let mut c = Config::build(&given)?;
        c.origin = Origin { file: given.config.map(PathBuf::from), args };
        Ok(Parsed::Run(Box::new(c)))
    }

    /// The configuration `origin` gives today: its file read again and its
    /// command line applied over it, validated (SIGHUP). `None` without
    /// `--config` (nothing but the files it names can have changed).
    pub fn reread(&self) -> Option<Result<Config, UsageError>> {
        self.origin.file.as_ref()?;
        Some(cli::parse(self.origin.args.iter().cloned()).and_then(|given| {
            let mut c = Config::build(&given)?;
            c.origin = self.origin.clone();
            Ok(c)
        }))
    }

    fn build(given: &cli::Given) -> Result<Config, UsageError> {
        let (fname, file) = match &given.config {
            Some(f) => (f.as_str(), file::read(std::path::Path::new(f))?),
            None => ("", Vec::new()),
        };
        let mut d = Draft { c: Config::new(PathBuf::new()), root_given: false, anonymous: false, proxy_from_given: false };
        for (i, opt) in options::OPTIONS.iter().enumerate() {
            if let Some((_, values)) = given.values.iter().find(|(j, _)| *j == i) {
                for v in values {
                    (opt.set)(&mut d, v).map_err(|e| UsageError(format!("--{} {v}: {e}", opt.name)))?;
                }
            } else if let Some(entry) = file.iter().find(|e| e.opt == i) {
                for v in &entry.values {
                    (opt.set)(&mut d, v)
                        .map_err(|e| UsageError(format!("{fname}:{}: {} = {}: {e}", entry.line, opt.name, entry.raw)))?;
                }
            }
        }
        d.finish()
    }

    /// What SIGHUP does with `new`, read while `self` is in force: the
    /// configuration to use (`new`, with every option that needs a restart
    /// kept as in `self`), and the names of the options that changed,
    /// applied or not.
    pub fn adopt(&self, mut new: Config) -> Adopted {
        let mut applied = Vec::new();
        let mut restart = Vec::new();
        for o in options::OPTIONS {
            if (o.get)(self) != (o.get)(&new) {
                match o.reload {
                    options::Reload::Live => applied.push(o.name),
                    options::Reload::Restart => restart.push(o.name),
                }
            }
        }
        // TLS on or off changes what is offered (FEAT, AUTH) and which
        // listeners are TLS: a restart; a new path is only reloaded.
        if self.tls_cert.is_some() != new.tls_cert.is_some() {
            applied.retain(|n| *n != "tls-cert" && *n != "tls-key");
            restart.extend(["tls-cert", "tls-key"]);
            new.tls_cert = self.tls_cert.clone();
            new.tls_key = self.tls_key.clone();
        }
        // Under the sandbox, a value whose access Landlock was not given at
        // start would be refused at every use: it needs a restart too.
        for name in crate::sandbox::uncovered(self, &new) {
            applied.retain(|n| *n != name);
            restart.push(name);
            match name {
                "anonymous" | "anonymous-write" => (new.anonymous, new.anonymous_write) = (self.anonymous, self.anonymous_write),
                "anonymous-upload-dir" => new.anonymous_upload_dir = self.anonymous_upload_dir.clone(),
                "on-upload" => new.on_upload = self.on_upload.clone(),
                "users" => new.users = self.users.clone(),
                _ => {
                    new.tls_cert = self.tls_cert.clone();
                    new.tls_key = self.tls_key.clone();
                }
            }
        }
        new.keep_restart_fields(self);
        Adopted { config: new, applied, restart }
    }

    /// Copy from `old` every option whose row says `Reload::Restart`
    /// (a unit test checks that this list and the table agree).
    pub fn keep_restart_fields(&mut self, old: &Config) {
        self.root = old.root.clone();
        self.listen = old.listen;
        self.passive_ports = old.passive_ports;
        self.max_line_bytes = old.max_line_bytes;
        self.workers = old.workers;
        self.max_hooks = old.max_hooks;
        self.no_sandbox = old.no_sandbox;
        self.xferlog = old.xferlog.clone();
        self.implicit_tls_listen = old.implicit_tls_listen;
        self.proxy_protocol = old.proxy_protocol;
        #[cfg(feature = "proxy")]
        {
            self.proxy_from = old.proxy_from.clone();
        }
        self.metrics_listen = old.metrics_listen;
    }
}

/// What `Config::adopt` decided.
#[derive(Debug)]
pub struct Adopted {
    /// The configuration to use from now on.
    pub config: Config,
    /// Options whose new value is in force for new sessions.
    pub applied: Vec<&'static str>,
    /// Options that changed but need a restart (their old value is kept).
    pub restart: Vec<&'static str>,
}

/// Where a configuration came from, to read it again on SIGHUP.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// The command line, without the program name.
    pub args: Vec<String>,
}

/// A configuration being built from the table's `set` functions, with
/// what must be known about how it was given.
pub struct Draft {
    /// The options set so far, over the defaults.
    pub c: Config,
    /// `--root` was given (it has no default).
    pub root_given: bool,
    /// `--anonymous` (or `--anonymous-write`) was given.
    pub anonymous: bool,
    /// `--proxy-from` was given (it goes with `--proxy-protocol`).
    pub proxy_from_given: bool,
}

impl Draft {
    fn finish(self) -> Result<Config, UsageError> {
        let Draft { mut c, root_given, anonymous, proxy_from_given } = self;
        if !root_given {
            return Err(UsageError("--root DIR is required (the directory to serve)".into()));
        }
        // Anonymous is on by default only when there is no users file.
        c.anonymous = c.users.is_none() || anonymous;
        if (c.proxy_protocol || proxy_from_given) && !crate::PROXY_BUILT_IN {
            return Err(UsageError(
                "--proxy-protocol: this leanftpd was built without the PROXY protocol (cargo feature `proxy`)".into(),
            ));
        }
        if c.proxy_protocol != proxy_from_given {
            return Err(UsageError("--proxy-protocol and --proxy-from CIDR[,CIDR...] go together".into()));
        }
        c.validate()?;
        Ok(c)
    }
}

impl Config {
    /// Checks that need the filesystem.
    pub fn validate(&mut self) -> Result<(), UsageError> {
        let meta = std::fs::metadata(&self.root)
            .map_err(|e| UsageError(format!("--root {}: {e}", self.root.display())))?;
        if !meta.is_dir() {
            return Err(UsageError(format!("--root {}: not a directory", self.root.display())));
        }
        self.root = std::fs::canonicalize(&self.root)
            .map_err(|e| UsageError(format!("--root {}: {e}", self.root.display())))?;
        if self.anonymous_write && self.anonymous_upload_dir.is_some() {
            return Err(UsageError(
                "--anonymous-upload-dir and --anonymous-write exclude each other: the upload dir is a drop box in a read-only anonymous area".into(),
            ));
        }
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

/// `--proxy-from 10.0.0.0/8,192.0.2.7,2001:db8::/32`: networks, or single
/// addresses (a /32 or /128).
/// `--anonymous-upload-dir PATH`: a virtual path inside the anonymous
/// root (`incoming` and `/incoming` alike), normalised (`..` never climbs
/// above `/`). `/` makes the whole anonymous area a drop box.
pub fn parse_upload_dir(v: &str) -> Result<crate::vfs::VirtualPath, String> {
    let bad = || "expected a path inside --root, e.g. /incoming".to_string();
    if v.is_empty() || v.contains('\0') {
        return Err(bad());
    }
    crate::vfs::VirtualPath::root().resolve(v.as_bytes()).map_err(|_| bad())
}

fn add_proxy_from(d: &mut Draft, v: &str) -> Result<(), String> {
    d.proxy_from_given = true;
    for item in v.split(',').map(str::trim) {
        #[cfg(feature = "proxy")]
        d.c.proxy_from.push(match item.parse::<ipnet::IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => item
                .parse::<IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| format!("{item}: expected an address or CIDR, e.g. 10.0.0.0/8 or 192.0.2.7"))?,
        });
        #[cfg(not(feature = "proxy"))]
        let _ = item;
    }
    Ok(())
}

fn show_proxy_from(c: &Config) -> String {
    #[cfg(feature = "proxy")]
    return c.proxy_from.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    #[cfg(not(feature = "proxy"))]
    {
        let _ = c;
        String::new()
    }
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

/// The `--help` text: the options from the table (`options::OPTIONS`).
pub fn help() -> String {
    format!("{HELP_HEAD}{}{HELP_TAIL}", options::options_help())
}

const HELP_HEAD: &str = "\
leanftpd — a small, single-threaded FTP server

USAGE:
    leanftpd --root DIR [OPTIONS]
    leanftpd --config FILE [OPTIONS]

Serves DIR read-only to anonymous clients on 127.0.0.1:2121 unless told otherwise.

OPTIONS:
";

const HELP_TAIL: &str = "
SIGNALS:
    SIGTERM, SIGINT            stop accepting, let transfers finish (grace period), exit 0
    SIGHUP                     reload the users file, and the TLS certificate and key
                               (with --workers N: on every worker); with --config, read
                               the file again (the command line still over it) and apply
                               to new sessions what needs no restart: users, anonymous,
                               limits, timeouts, log level, TLS files; log each other
                               option that changed (restart to apply); a file that does
                               not load keeps the running configuration

ENVIRONMENT (systemd, see README \"Running under systemd\"):
    LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES
                               socket activation: the listening sockets handed in replace
                               --listen (name `control` or same address) and
                               --implicit-tls-listen (name `implicit-tls` or same address)
    NOTIFY_SOCKET              Type=notify: READY=1, RELOADING=1 (SIGHUP), STOPPING=1

EXIT CODES:
    0 clean shutdown, 1 runtime error (e.g. address in use), 2 bad usage or configuration

The manual, leanftpd(8) (man/leanftpd.8), has the file formats and the rest.
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

    /// A value for every option (and what it needs beside it), for the
    /// table-driven tests: adding a row to `OPTIONS` without one here
    /// fails `every_option_has_a_sample`.
    const SAMPLES: &[(&str, &str, &[&str])] = &[
        ("root", "/", &[]),
        ("listen", "[::1]:2100", &[]),
        ("users", "/etc/leanftpd.users", &[]),
        ("anonymous", "", &["--users", "/x"]),
        ("anonymous-write", "", &[]),
        ("passive-ports", "40000-40100", &[]),
        ("passive-address", "192.0.2.1", &[]),
        ("login-timeout", "30", &[]),
        ("idle-timeout", "0.5", &[]),
        ("data-timeout", "7", &[]),
        ("stall-timeout", "9", &[]),
        ("login-fail-delay", "0", &[]),
        ("max-login-fails", "5", &[]),
        ("login-cache", "0", &[]),
        ("max-clients", "100", &[]),
        ("max-per-ip", "2", &[]),
        ("max-passive", "3", &[]),
        ("max-transfers", "4", &[]),
        ("max-data-per-ip", "0", &[]),
        ("max-line", "64", &[]),
        ("shutdown-grace", "2", &[]),
        ("workers", "3", &[]),
        ("log-level", "debug", &[]),
        ("xferlog", "/var/log/xferlog", &[]),
        ("atomic-uploads", "", &[]),
        ("tls-cert", "/c.pem", &["--tls-key", "/k.pem"]),
        ("tls-key", "/k.pem", &["--tls-cert", "/c.pem"]),
        ("implicit-tls-listen", "127.0.0.1:990", &["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]),
        ("tls-required", "", &["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]),
        ("insecure-tls-no-reuse", "", &["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]),
        ("proxy-protocol", "", &["--proxy-from", "10.0.0.0/8"]),
        ("proxy-from", "10.0.0.0/8,192.0.2.7", &["--proxy-protocol"]),
        ("metrics-listen", "127.0.0.1:9121", &[]),
        ("insecure-pasv-any-peer", "", &[]),
        ("insecure-port-any-host", "", &[]),
        ("anonymous-upload-dir", "/incoming", &[]),
        ("no-sandbox", "", &[]),
        ("on-upload", "logger \"$LEANFTPD_PATH\"", &[]),
        ("max-hooks", "2", &[]),
        ("hook-timeout", "5", &[]),
        ("max-download-rate", "2M", &[]),
        ("max-upload-rate", "512K", &[]),
        ("anonymous-max-download-rate", "0", &[]),
        ("anonymous-max-upload-rate", "128K", &[]),
    ];

    fn sample(o: &options::Opt) -> &'static (&'static str, &'static str, &'static [&'static str]) {
        SAMPLES.iter().find(|s| s.0 == o.name).unwrap_or_else(|| panic!("no sample for --{}", o.name))
    }

    /// The command line that sets `o` to its sample value (with what the
    /// sample needs beside it).
    fn sample_cli(o: &options::Opt) -> Vec<String> {
        let (_, value, extra) = sample(o);
        let mut cli = vec!["--root".to_string(), "/tmp".to_string(), format!("--{}", o.name)];
        if !matches!(o.kind, options::Kind::Flag) {
            cli.push(value.to_string());
        }
        cli.extend(extra.iter().map(|e| e.to_string()));
        cli
    }

    /// Every option's value, to compare two configurations whole.
    fn shown(c: &Config) -> Vec<(&'static str, String)> {
        options::OPTIONS.iter().map(|o| (o.name, (o.get)(c))).collect()
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn with_file(text: &str, a: &[&str]) -> (Result<Config, UsageError>, tempfile::NamedTempFile) {
        let f = file_with(text);
        let mut v = vec!["--config", f.path().to_str().unwrap()];
        v.extend_from_slice(a);
        (run(&v), f)
    }

    /// The defaults with what a sample needs beside it (or without, if
    /// that alone is not a valid command line).
    fn baseline(extra: &[&str]) -> Config {
        let mut v = vec!["--root", "/tmp"];
        v.extend_from_slice(extra);
        run(&v).or_else(|_| run(&["--root", "/tmp"])).unwrap()
    }

    #[test]
    fn every_option_has_a_sample() {
        for o in options::OPTIONS {
            sample(o);
        }
        assert_eq!(SAMPLES.len(), options::OPTIONS.len());
    }

    #[test]
    fn every_option_key_in_the_file_sets_what_its_flag_sets() {
        for o in options::OPTIONS {
            let (_, value, extra) = sample(o);
            let cli = sample_cli(o);
            let cli: Vec<&str> = cli.iter().map(String::as_str).collect();
            let toml_value = match o.kind {
                options::Kind::Flag => "true".to_string(),
                _ => format!("{value:?}"),
            };
            let root = if o.name == "root" { "" } else { "root = \"/tmp\"\n" };
            let (from_file, _f) = with_file(&format!("{root}{} = {toml_value}\n", o.name), extra);
            match (run(&cli), from_file) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(shown(&a), shown(&b), "--{}", o.name);
                    assert_ne!((o.get)(&a), (o.get)(&baseline(extra)), "--{}: sample is the default", o.name);
                }
                // Not built in (e.g. --tls-cert without the `tls` feature):
                // refused both ways.
                (Err(a), Err(b)) => assert_eq!(a.0, b.0, "--{}", o.name),
                (a, b) => panic!("--{}: command line {:?}, file {:?}", o.name, a.map(|_| ()), b.map(|_| ())),
            }
        }
    }

    #[test]
    fn numbers_may_be_toml_integers_or_strings_and_false_leaves_a_flag_off() {
        let (a, _f) = with_file("root = \"/tmp\"\nmax-clients = 100\nlogin-timeout = 1.5\nmax-per-ip = 0x10\n", &[]);
        let (b, _g) = with_file("root = \"/tmp\"\nmax-clients = \"100\"\nlogin-timeout = \"1.5\"\nmax-per-ip = \"16\"\n", &[]);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.max_clients, a.login_timeout, a.max_per_ip), (100, Duration::from_millis(1500), 16));
        assert_eq!(shown(&a), shown(&b));
        let (c, _h) = with_file("root = \"/tmp\"\natomic-uploads = false\ninsecure-pasv-any-peer = true\n", &[]);
        let c = c.unwrap();
        assert!(!c.atomic_uploads && c.insecure_pasv_any_peer);
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let text = "root = \"/\"\nmax-per-ip = 1\nlisten = \"127.0.0.1:2200\"\n";
        let (c, _f) = with_file(text, &[]);
        let c = c.unwrap();
        assert_eq!((c.root.clone(), c.max_per_ip, c.listen.port()), (PathBuf::from("/"), 1, 2200));
        let (c, _f) = with_file(text, &["--max-per-ip", "2", "--root=/tmp"]);
        let c = c.unwrap();
        assert_eq!((c.max_per_ip, c.listen.port()), (2, 2200));
        assert_eq!(c.root, std::fs::canonicalize("/tmp").unwrap());
        // A list given on the command line replaces the file's.
        #[cfg(feature = "proxy")]
        {
            let text = "root = \"/tmp\"\nproxy-protocol = true\nproxy-from = [\"10.0.0.0/8\", \"192.0.2.7\"]\n";
            let (c, _f) = with_file(text, &[]);
            assert_eq!(show_proxy_from(&c.unwrap()), "10.0.0.0/8,192.0.2.7/32");
            let (c, _f) = with_file(text, &["--proxy-from", "172.16.0.0/12"]);
            assert_eq!(show_proxy_from(&c.unwrap()), "172.16.0.0/12");
        }
    }

    #[test]
    fn file_errors_name_the_file_the_line_and_the_key() {
        let cases: &[(&str, &str)] = &[
            ("root = \"/tmp\"\n\n# a comment\nbogus = 1\n", ":4: unknown key bogus (see --help)"),
            ("root = \"/tmp\"\nmax-clients = \"lots\"\n", ":2: max-clients = \"lots\": expected a number"),
            ("root = \"/tmp\"\nmax-clients = 0\n", ":2: max-clients = 0: must be at least 1"),
            ("root = \"/tmp\"\nanonymous = \"yes\"\n", ":2: anonymous = \"yes\": expected true or false"),
            ("root = \"/tmp\"\nlisten = 2121\n", ":2: listen = 2121: expected a string"),
            ("root = \"/tmp\"\nlisten = [\"a\"]\n", ":2: listen = [\"a\"]: expected a string"),
            ("root = \"/tmp\"\nproxy-protocol = true\nproxy-from = [1.5, {}]\n", ":3: proxy-from = [1.5, {}]: expected a string or an array of strings"),
            ("root = \"/tmp\"\n[server]\nlisten = \"127.0.0.1:21\"\n", ":2: server: the file has no tables"),
            ("root = \"/tmp\"\nserver.listen = \"127.0.0.1:21\"\n", ":2: server: the file has no tables"),
            ("root = \"/tmp\"\nlisten = 127.0.0.1:21\n", ":2: not valid TOML"),
            ("root = \"/tmp\"\nconfig = \"/etc/x\"\n", ":2: config: not a key of the file"),
            ("root = \"/nonexistent-leanftpd\"\n", ":1: root = \"/nonexistent-leanftpd\": No such file"),
            ("root = \"/tmp\"\nidle-timeout = 0\n", ":2: idle-timeout = 0: must be more than 0 seconds"),
        ];
        for (text, want) in cases {
            let (r, f) = with_file(text, &[]);
            let e = r.expect_err(text).0;
            let path = f.path().display().to_string();
            assert!(e.starts_with(&path), "{e}");
            assert!(e[path.len()..].starts_with(want), "{text:?}: got {e}, want {want}");
        }
        assert!(run(&["--config", "/nonexistent-leanftpd.toml"]).unwrap_err().0.starts_with("--config /nonexistent-leanftpd.toml: "));
    }

    #[test]
    fn a_file_over_its_bound_is_refused_unread() {
        let f = file_with(&"#".repeat(file::MAX_FILE_BYTES as usize + 1));
        let e = run(&["--root", "/tmp", "--config", f.path().to_str().unwrap()]).unwrap_err().0;
        assert!(e.ends_with(": larger than 1048576 bytes"), "{e}");
        // Deep nesting is refused by the parser's own bound, not a crash.
        let f = file_with(&format!("root = \"/tmp\"\nproxy-from = {}{}\n", "[".repeat(10_000), "]".repeat(10_000)));
        assert!(run(&["--config", f.path().to_str().unwrap()]).unwrap_err().0.contains(":2: "));
    }

    #[test]
    fn command_line_errors_are_one_line() {
        assert_eq!(run(&["--root", "/tmp", "--bogus"]).unwrap_err().0, "unknown option --bogus (see --help)");
        assert_eq!(run(&["--root", "/tmp", "--listen"]).unwrap_err().0, "--listen needs a value");
        assert_eq!(run(&["--root", "/tmp", "--max-clients", "lots"]).unwrap_err().0, "--max-clients lots: expected a number");
        assert_eq!(run(&["--root", "/tmp", "--anonymous=yes"]).unwrap_err().0, "--anonymous: a flag takes no value (see --help)");
        assert_eq!(run(&[]).unwrap_err().0, "--root DIR is required (the directory to serve)");
        // Given twice, the last value counts.
        assert_eq!(run(&["--root", "/tmp", "--max-clients", "3", "--max-clients=4"]).unwrap().max_clients, 4);
    }

    #[test]
    fn help_lists_every_option_of_the_table() {
        let h = help();
        for o in options::OPTIONS {
            let line = match o.kind {
                options::Kind::Flag => format!("\n    --{} ", o.name),
                options::Kind::Value(v) | options::Kind::List(v) => format!("\n    --{} {v}", o.name),
            };
            assert!(h.contains(&line), "--{} missing from --help", o.name);
        }
        assert!(h.contains("\n    --config FILE "));
        assert!(matches!(Config::from_args(args(&["-h"])), Ok(Parsed::Help)));
        assert!(matches!(Config::from_args(args(&["--root", "/tmp", "-V"])), Ok(Parsed::Version)));
    }

    #[test]
    fn sighup_applies_live_options_and_keeps_the_ones_that_need_a_restart() {
        for o in options::OPTIONS {
            let (_, _, extra) = sample(o);
            let cli = sample_cli(o);
            let cli: Vec<&str> = cli.iter().map(String::as_str).collect();
            let Ok(new) = run(&cli) else { continue }; // not built in
            let old = baseline(extra);
            let adopted = old.adopt(new.clone());
            // Turning TLS on or off needs a restart.
            let tls_toggle = old.tls_cert.is_some() != new.tls_cert.is_some();
            match o.reload {
                options::Reload::Live if !tls_toggle => {
                    assert_eq!((o.get)(&adopted.config), (o.get)(&new), "--{}", o.name);
                    assert!(adopted.applied.contains(&o.name), "--{}", o.name);
                }
                _ => {
                    assert_eq!((o.get)(&adopted.config), (o.get)(&old), "--{} must be kept", o.name);
                    assert!(adopted.restart.contains(&o.name) || tls_toggle, "--{}", o.name);
                }
            }
        }
        // With TLS on before and after, new paths are applied.
        let tls = run(&["--root", "/tmp", "--tls-cert", "/a", "--tls-key", "/b"]);
        if let Ok(tls) = tls {
            let new = run(&["--root", "/tmp", "--tls-cert", "/c", "--tls-key", "/d", "--tls-required"]).unwrap();
            let adopted = tls.adopt(new);
            assert_eq!(adopted.config.tls_cert, Some(PathBuf::from("/c")));
            assert_eq!(adopted.applied, ["tls-cert", "tls-key", "tls-required"]);
        }
    }

    #[test]
    fn reread_uses_the_file_again_with_the_command_line_over_it() {
        let f = file_with("root = \"/tmp\"\nmax-per-ip = 1\nmax-clients = 9\n");
        let c = run(&["--config", f.path().to_str().unwrap(), "--max-clients", "7"]).unwrap();
        assert_eq!((c.max_per_ip, c.max_clients), (1, 7));
        std::fs::write(f.path(), "root = \"/tmp\"\nmax-per-ip = 2\nmax-clients = 8\n").unwrap();
        let n = c.reread().unwrap().unwrap();
        assert_eq!((n.max_per_ip, n.max_clients), (2, 7));
        std::fs::write(f.path(), "root = \"/tmp\"\n\nmax-per-ip = \"two\"\n").unwrap();
        assert!(c.reread().unwrap().unwrap_err().0.ends_with(":3: max-per-ip = \"two\": expected a number"));
        assert!(run(&["--root", "/tmp"]).unwrap().reread().is_none());
    }

    /// contrib/leanftpd.toml documents every key, and its lines, once
    /// uncommented, are a valid file.
    #[test]
    fn the_example_file_has_every_key_and_parses_uncommented() {
        let text = include_str!("../../contrib/leanftpd.toml");
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| options::find(k).is_some()))
            .map(|l| format!("{l}\n"))
            .collect();
        let entries = file::parse("contrib/leanftpd.toml", &uncommented).unwrap();
        for o in options::OPTIONS {
            assert!(uncommented.contains(&format!("\n{} = ", o.name)) || uncommented.starts_with(&format!("{} = ", o.name)),
                "contrib/leanftpd.toml does not show {}", o.name);
        }
        // Flags are shown off (`false`): no entry.
        let flags = options::OPTIONS.iter().filter(|o| o.kind == options::Kind::Flag).count();
        assert_eq!(entries.len(), options::OPTIONS.len() - flags);
    }

    #[test]
    fn the_readme_shows_every_option_as_help_does() {
        let readme = include_str!("../../README.md");
        let block = readme.split("leanftpd --config FILE [OPTIONS]\n\n").nth(1).unwrap().split("```").next().unwrap();
        let h = help();
        let options = h.split("OPTIONS:\n").nth(1).unwrap().split("\nSIGNALS:").next().unwrap();
        let unindented: String = options.lines().map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l))).collect();
        assert_eq!(block, unindented, "README's options block differs from --help");
    }

    #[test]
    fn ipv6_listen_and_inline_values_parse() {
        let c = run(&["--root=/tmp", "--listen=[::1]:0", "--passive-ports", "40000-40100"]).unwrap();
        assert!(c.listen.is_ipv6());
        assert_eq!(c.passive_ports, Some((40000, 40100)));
    }

    #[test]
    fn rates_take_k_and_m_suffixes_and_anonymous_ones_are_separate() {
        let c = run(&["--root", "/tmp"]).unwrap();
        assert_eq!((c.max_download_rate, c.max_upload_rate), (0, 0));
        assert_eq!((c.anonymous_max_download_rate, c.anonymous_max_upload_rate), (None, None));
        let c = run(&["--root", "/tmp", "--max-download-rate", "2M", "--max-upload-rate=512K",
            "--anonymous-max-download-rate", "0", "--anonymous-max-upload-rate", "131072"]).unwrap();
        assert_eq!((c.max_download_rate, c.max_upload_rate), (2 * 1024 * 1024, 512 * 1024));
        assert_eq!((c.anonymous_max_download_rate, c.anonymous_max_upload_rate), (Some(0), Some(131072)));
        for bad in ["2G", "-1", "", "1.5M", "100", "2000000M"] {
            let e = run(&["--root", "/tmp", "--max-upload-rate", bad]).unwrap_err();
            assert!(e.to_string().starts_with("--max-upload-rate "), "{e}");
        }
        assert!(run(&["--root", "/tmp", "--anonymous-max-download-rate", "1x"]).is_err());
    }

    #[test]
    fn anonymous_upload_dir_is_a_normalised_virtual_path_implying_anonymous() {
        let c = run(&["--root", "/tmp", "--users", "/x", "--anonymous-upload-dir", "incoming/../in//"]).unwrap();
        assert!(c.anonymous && !c.anonymous_write);
        assert_eq!(c.anonymous_upload_dir.unwrap().as_bytes(), b"/in");
        let c = run(&["--root", "/tmp", "--anonymous-upload-dir=/"]).unwrap();
        assert!(c.anonymous_upload_dir.unwrap().is_root());
        assert!(run(&["--root", "/tmp"]).unwrap().anonymous_upload_dir.is_none());
        let e = run(&["--root", "/tmp", "--anonymous-upload-dir", ""]).unwrap_err();
        assert!(e.0.contains("--anonymous-upload-dir"), "{e}");
        let e = run(&["--root", "/tmp", "--anonymous-write", "--anonymous-upload-dir", "/in"]).unwrap_err();
        assert!(e.0.contains("exclude each other"), "{e}");
    }

    #[test]
    fn upload_hook_options_parse_within_their_bounds() {
        let c = run(&["--root", "/tmp"]).unwrap();
        assert_eq!((c.on_upload, c.max_hooks, c.hook_timeout), (None, 4, Duration::from_secs(60)));
        let c = run(&["--root", "/tmp", "--on-upload", "logger \"$LEANFTPD_PATH\"", "--max-hooks", "64", "--hook-timeout", "2.5"]).unwrap();
        assert_eq!(c.on_upload.as_deref(), Some("logger \"$LEANFTPD_PATH\""));
        assert_eq!((c.max_hooks, c.hook_timeout), (64, Duration::from_millis(2500)));
        assert_eq!(run(&["--root", "/tmp", "--hook-timeout", "86400"]).unwrap().hook_timeout, Duration::from_secs(86_400));
        for bad in [
            &["--on-upload", ""][..],
            &["--on-upload", "  "],
            &["--on-upload"],
            &["--max-hooks", "0"],
            &["--max-hooks", "65"],
            &["--max-hooks", "many"],
            &["--hook-timeout", "0"],
            &["--hook-timeout", "86401"],
            &["--hook-timeout", "-1"],
        ] {
            let mut a = vec!["--root", "/tmp"];
            a.extend_from_slice(bad);
            assert!(run(&a).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_sandbox_is_off_by_default() {
        assert!(!run(&["--root", "/tmp"]).unwrap().no_sandbox);
        assert!(run(&["--root", "/tmp", "--no-sandbox"]).unwrap().no_sandbox);
    }
}
