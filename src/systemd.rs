//! systemd integration without libsystemd: socket activation
//! (`sd_listen_fds(3)`: the listening sockets a `.socket` unit hands in) and
//! readiness notification (`sd_notify(3)`: `READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=` on the datagram socket `NOTIFY_SOCKET` names).
//!
//! It owns the reading of the environment (`LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`, `NOTIFY_SOCKET`) and turns it into ready
//! `std::net::TcpListener`s ([`Listeners`]) and a [`Notifier`]. It never
//! touches the reactor: `Server::bind` takes the listeners in place of
//! binding, and the lifecycle sends the notifications.
//!
//! # Which inherited socket is which listener
//! Each inherited descriptor (from 3 on, `LISTEN_FDS` of them) must be a
//! listening TCP socket (IPv4 or IPv6). It is matched, in this order:
//! 1. by its name in `LISTEN_FDNAMES` (`FileDescriptorName=` in the socket
//!    unit, `--fdname` of `systemd-socket-activate`): `control` is the
//!    control listener (`--listen`), `implicit-tls` the implicit FTPS
//!    listener (`--implicit-tls-listen`, which must then be given: its
//!    address is not used);
//! 2. otherwise (no name, or systemd's default name, the socket unit's)
//!    by its local address: equal to `--listen` or to
//!    `--implicit-tls-listen` (`ListenStream=21` binds `[::]:21`, so the
//!    option is then `--listen [::]:21`).
//!
//! An inherited socket that matches nothing, two for one listener, or one
//! that is not a listening TCP socket is a start-up error (exit 2). A
//! listener that no inherited socket matches is bound as usual.
//!
//! # Several workers
//! [`Listeners::from_env`] runs once per process (it takes the descriptors
//! and unsets the variables); each reactor gets [`Listeners::try_clone`],
//! a `dup` of the same listening socket, so one inherited socket is shared
//! by every worker (the kernel hands each connection to one `accept`).
//!
//! # Invariants
//! - The `LISTEN_*` variables are unset once read, whoever they were for
//!   (`sd_listen_fds(1)`), and `NOTIFY_SOCKET` once read, so nothing the
//!   process might start inherits them; inherited descriptors get
//!   `FD_CLOEXEC`.
//! - A notification never blocks: the datagram socket is non-blocking, and
//!   a message the manager's queue has no room for is dropped and logged.

use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};

use log::{info, warn};

use crate::config::Config;
use crate::sys::{self, InheritedKind};

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;
/// Most inherited descriptors accepted: the server has two listeners; a
/// `LISTEN_FDS` past this is a misconfiguration, not a reason to walk a
/// huge range of descriptors.
pub const MAX_LISTEN_FDS: usize = 64;
/// `LISTEN_FDNAMES` name of the control listener.
pub const NAME_CONTROL: &str = "control";
/// `LISTEN_FDNAMES` name of the implicit FTPS listener.
pub const NAME_IMPLICIT_TLS: &str = "implicit-tls";

/// Which listener an inherited socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `--listen`.
    Control,
    /// `--implicit-tls-listen`.
    ImplicitTls,
}

impl Role {
    fn option(self) -> &'static str {
        match self {
            Role::Control => "--listen",
            Role::ImplicitTls => "--implicit-tls-listen",
        }
    }
}

/// What `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` say, when they are for
/// this process and hand in at least one descriptor.
#[derive(Debug, PartialEq, Eq)]
pub struct ListenEnv {
    /// Descriptors from [`LISTEN_FDS_START`] on.
    pub count: usize,
    /// One name per descriptor, if `LISTEN_FDNAMES` is set.
    pub names: Option<Vec<String>>,
}

/// Parse the socket-activation variables (`sd_listen_fds(3)`): `None` when
/// they are absent, for another process (`LISTEN_PID` ≠ `our_pid`) or hand
/// in nothing; an error when they are malformed or name more than
/// [`MAX_LISTEN_FDS`].
pub fn parse_listen_env(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Option<ListenEnv>, String> {
    let Some(pid) = pid else { return Ok(None) };
    let pid: u32 = pid.trim().parse().map_err(|_| format!("socket activation: LISTEN_PID={pid:?} is not a process id"))?;
    if pid != our_pid {
        return Ok(None);
    }
    let Some(fds) = fds else { return Ok(None) };
    let count: usize = fds.trim().parse().map_err(|_| format!("socket activation: LISTEN_FDS={fds:?} is not a count"))?;
    if count == 0 {
        return Ok(None);
    }
    if count > MAX_LISTEN_FDS {
        return Err(format!("socket activation: LISTEN_FDS={count}: at most {MAX_LISTEN_FDS} sockets are accepted"));
    }
    let names = match names {
        None => None,
        Some(n) => {
            let v: Vec<String> = n.split(':').map(str::to_owned).collect();
            if v.len() != count {
                return Err(format!(
                    "socket activation: LISTEN_FDNAMES={n:?} has {} names for LISTEN_FDS={count}",
                    v.len()
                ));
            }
            Some(v)
        }
    };
    Ok(Some(ListenEnv { count, names }))
}

/// The listener an inherited socket is for (see the module's rules): by
/// name first, then by local address. `fd` is only for the error text.
pub fn assign(
    sockets: &[(RawFd, Option<&str>, SocketAddr)],
    listen: SocketAddr,
    implicit_tls: Option<SocketAddr>,
) -> Result<Vec<Role>, String> {
    let mut roles: Vec<Role> = Vec::with_capacity(sockets.len());
    for &(fd, name, addr) in sockets {
        let role = match name {
            Some(NAME_CONTROL) => Role::Control,
            Some(NAME_IMPLICIT_TLS) if implicit_tls.is_some() => Role::ImplicitTls,
            Some(NAME_IMPLICIT_TLS) => {
                return Err(format!(
                    "socket activation: fd {fd} ({addr}) is named {NAME_IMPLICIT_TLS} but --implicit-tls-listen \
                     (with --tls-cert/--tls-key) is not given"
                ))
            }
            _ if addr == listen => Role::Control,
            _ if Some(addr) == implicit_tls => Role::ImplicitTls,
            _ => {
                let implicit = implicit_tls.map_or("none".to_string(), |a| a.to_string());
                return Err(format!(
                    "socket activation: inherited fd {fd} ({addr}{}) matches neither --listen {listen} nor \
                     --implicit-tls-listen ({implicit}); give the matching address or name the socket \
                     (FileDescriptorName={NAME_CONTROL} or {NAME_IMPLICIT_TLS})",
                    name.map(|n| format!(", name {n:?}")).unwrap_or_default()
                ));
            }
        };
        if roles.contains(&role) {
            return Err(format!("socket activation: fd {fd} ({addr}) is a second socket for {}", role.option()));
        }
        roles.push(role);
    }
    Ok(roles)
}

/// The listening sockets handed in by the service manager, ready for the
/// reactor (non-blocking). Empty when the process was not socket-activated.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The control listener (replaces binding `--listen`).
    pub control: Option<TcpListener>,
    /// The implicit FTPS listener (replaces binding `--implicit-tls-listen`).
    pub implicit_tls: Option<TcpListener>,
}

impl Listeners {
    /// No inherited socket: every listener is bound by the server.
    pub fn none() -> Listeners {
        Listeners::default()
    }

    /// Read the socket-activation variables, unset them, and take the
    /// sockets they name. Call once per process, before any other thread
    /// reads the environment.
    pub fn from_env(config: &Config) -> Result<Listeners, String> {
        let var = |k: &str| std::env::var_os(k);
        let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
        if pid.is_none() && fds.is_none() && names.is_none() {
            return Ok(Listeners::none());
        }
        for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(k);
        }
        let text = |v: &Option<OsString>, k: &str| -> Result<Option<String>, String> {
            v.as_ref()
                .map(|s| s.to_str().map(str::to_owned).ok_or_else(|| format!("socket activation: {k} is not UTF-8")))
                .transpose()
        };
        let (pid, fds, names) = (text(&pid, "LISTEN_PID")?, text(&fds, "LISTEN_FDS")?, text(&names, "LISTEN_FDNAMES")?);
        let Some(env) = parse_listen_env(pid.as_deref(), fds.as_deref(), names.as_deref(), std::process::id())? else {
            return Ok(Listeners::none());
        };
        Listeners::take(&env, config.listen, config.implicit_tls_listen)
    }

    /// Take descriptors 3 … 3 + `env.count` − 1 and assign them.
    fn take(env: &ListenEnv, listen: SocketAddr, implicit_tls: Option<SocketAddr>) -> Result<Listeners, String> {
        // Every descriptor is taken (and so closed on an error) before
        // any is judged.
        let mut owned = Vec::with_capacity(env.count);
        for i in 0..env.count {
            let fd = LISTEN_FDS_START + i as RawFd;
            owned.push((fd, sys::take_inherited_fd(fd)));
        }
        let mut sockets = Vec::with_capacity(env.count);
        for (i, (fd, taken)) in owned.into_iter().enumerate() {
            let name = env.names.as_ref().and_then(|n| n.get(i)).map(String::as_str);
            let owned = taken.map_err(|e| format!("socket activation: fd {fd} (LISTEN_FDS={}): {e}", env.count))?;
            let what = match sys::inherited_kind(owned.as_fd()) {
                Ok(InheritedKind::TcpListener) => None,
                Ok(InheritedKind::TcpNotListening) => Some("a TCP socket that is not listening (Accept=yes is not supported)".into()),
                Ok(InheritedKind::OtherSocket { domain, kind }) => Some(describe_socket(domain, kind)),
                Ok(InheritedKind::NotSocket) => Some("not a socket".into()),
                Err(e) => Some(format!("unreadable: {e}")),
            };
            if let Some(what) = what {
                return Err(format!("socket activation: inherited fd {fd} is {what}; only listening TCP sockets are accepted"));
            }
            let listener = TcpListener::from(owned);
            let addr = listener.local_addr().map_err(|e| format!("socket activation: fd {fd}: {e}"))?;
            listener.set_nonblocking(true).map_err(|e| format!("socket activation: fd {fd}: {e}"))?;
            sockets.push((fd, name, addr, listener));
        }
        let keys: Vec<(RawFd, Option<&str>, SocketAddr)> = sockets.iter().map(|(f, n, a, _)| (*f, *n, *a)).collect();
        let roles = assign(&keys, listen, implicit_tls)?;
        let mut out = Listeners::none();
        for ((fd, name, addr, listener), role) in sockets.into_iter().zip(roles) {
            info!("socket activation: {} {addr} from fd {fd}{}", role.option(), name.map(|n| format!(" ({n})")).unwrap_or_default());
            match role {
                Role::Control => out.control = Some(listener),
                Role::ImplicitTls => out.implicit_tls = Some(listener),
            }
        }
        Ok(out)
    }

    /// The same sockets again (`dup`): one per worker, all accepting from
    /// the one inherited socket.
    pub fn try_clone(&self) -> io::Result<Listeners> {
        Ok(Listeners {
            control: self.control.as_ref().map(TcpListener::try_clone).transpose()?,
            implicit_tls: self.implicit_tls.as_ref().map(TcpListener::try_clone).transpose()?,
        })
    }
}

fn describe_socket(domain: i32, kind: i32) -> String {
    let family = match domain {
        libc::AF_UNIX => "a unix",
        libc::AF_INET => "an IPv4",
        libc::AF_INET6 => "an IPv6",
        libc::AF_NETLINK => "a netlink",
        _ => "a",
    };
    let kind = match kind {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "other",
    };
    format!("{family} {kind} socket (family {domain})")
}

/// Where `NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyTarget {
    /// A socket in the filesystem (`/run/systemd/notify`).
    Path(std::path::PathBuf),
    /// A Linux abstract socket (`@name`: a leading NUL byte on the wire).
    Abstract(Vec<u8>),
}

/// Parse `NOTIFY_SOCKET` (`sd_notify(3)`): an absolute path, or `@` and an
/// abstract name. Anything else (`vsock:…` of newer systemd, a relative
/// path) is refused with a reason.
pub fn parse_notify_socket(value: &[u8]) -> Result<NotifyTarget, String> {
    match value.first() {
        Some(b'/') => Ok(NotifyTarget::Path(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(value)))),
        Some(b'@') if value.len() > 1 => Ok(NotifyTarget::Abstract(value[1..].to_vec())),
        _ => Err(format!(
            "NOTIFY_SOCKET={:?}: only an absolute path or an @abstract name is supported",
            String::from_utf8_lossy(value)
        )),
    }
}

/// The service manager's notification socket (`sd_notify(3)`): one
/// non-blocking unbound datagram socket, kept for the life of the process.
pub struct Notifier {
    sock: UnixDatagram,
    addr: UnixAddr,
    /// Messages dropped (queue full, no listener); each is logged.
    dropped: u64,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, which is then unset; `None` when it is absent
    /// or unusable (logged: a wrong `NOTIFY_SOCKET` does not stop the server).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        std::env::remove_var("NOTIFY_SOCKET");
        match parse_notify_socket(value.as_bytes()).and_then(|t| Notifier::new(&t).map_err(|e| format!("NOTIFY_SOCKET: {e}"))) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!("{e}; no readiness notifications");
                None
            }
        }
    }

    /// A notifier sending to `target`.
    pub fn new(target: &NotifyTarget) -> io::Result<Notifier> {
        let addr = match target {
            NotifyTarget::Path(p) => UnixAddr::from_pathname(p)?,
            NotifyTarget::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                UnixAddr::from_abstract_name(name)?
            }
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Notifier { sock, addr, dropped: 0 })
    }

    /// Send one notification (`KEY=VALUE` lines). Never blocks: a message
    /// the manager cannot take now is dropped and logged.
    pub fn send(&mut self, message: &str) {
        if let Err(e) = self.sock.send_to_addr(message.as_bytes(), &self.addr) {
            self.dropped += 1;
            let first = message.lines().next().unwrap_or("");
            warn!("NOTIFY_SOCKET: dropped {first} ({e}; {} dropped so far)", self.dropped);
        }
    }

    /// `READY=1` with our `MAINPID`, and a status line.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nMAINPID={}\nSTATUS={status}\n", std::process::id()));
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (what `Type=notify-reload`
    /// requires), before a reload; [`Notifier::ready`] follows it.
    pub fn reloading(&mut self, status: &str) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={status}\n", sys::monotonic_usec()));
    }

    /// `STOPPING=1`: the drain has begun.
    pub fn stopping(&mut self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}\n"));
    }

    /// A `STATUS=` line alone.
    pub fn status(&mut self, status: &str) {
        self.send(&format!("STATUS={status}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 4242;

    #[test]
    fn no_listen_pid_is_not_activated() {
        assert_eq!(parse_listen_env(None, Some("2"), None, ME), Ok(None));
    }

    #[test]
    fn listen_pid_of_another_process_is_ignored() {
        assert_eq!(parse_listen_env(Some("4243"), Some("1"), None, ME), Ok(None));
    }

    #[test]
    fn our_pid_and_fds_is_activated() {
        assert_eq!(parse_listen_env(Some("4242"), Some("2"), None, ME), Ok(Some(ListenEnv { count: 2, names: None })));
    }

    #[test]
    fn zero_or_missing_fds_is_not_activated() {
        assert_eq!(parse_listen_env(Some("4242"), Some("0"), None, ME), Ok(None));
        assert_eq!(parse_listen_env(Some("4242"), None, None, ME), Ok(None));
    }

    #[test]
    fn names_are_split_on_colons_one_per_fd() {
        let env = parse_listen_env(Some("4242"), Some("2"), Some("control:implicit-tls"), ME).unwrap().unwrap();
        assert_eq!(env.names, Some(vec!["control".to_string(), "implicit-tls".to_string()]));
    }

    #[test]
    fn malformed_values_are_errors() {
        assert!(parse_listen_env(Some("x"), Some("1"), None, ME).is_err());
        assert!(parse_listen_env(Some("4242"), Some("-1"), None, ME).is_err());
        assert!(parse_listen_env(Some("4242"), Some("one"), None, ME).is_err());
        assert!(parse_listen_env(Some("4242"), Some("2"), Some("control"), ME).is_err());
        assert!(parse_listen_env(Some("4242"), Some("1"), Some("a:b"), ME).is_err());
    }

    #[test]
    fn more_fds_than_the_bound_is_an_error() {
        assert!(parse_listen_env(Some("4242"), Some("64"), None, ME).unwrap().is_some());
        let e = parse_listen_env(Some("4242"), Some("65"), None, ME).unwrap_err();
        assert!(e.contains("at most 64"), "{e}");
        assert!(parse_listen_env(Some("4242"), Some("99999999999999999999"), None, ME).is_err());
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sockets_match_by_address() {
        let s = [(3, None, a("127.0.0.1:990")), (4, None, a("127.0.0.1:21"))];
        assert_eq!(assign(&s, a("127.0.0.1:21"), Some(a("127.0.0.1:990"))), Ok(vec![Role::ImplicitTls, Role::Control]));
    }

    #[test]
    fn names_win_over_addresses() {
        let s = [(3, Some("control"), a("[::]:21")), (4, Some("implicit-tls"), a("[::]:990"))];
        assert_eq!(assign(&s, a("127.0.0.1:2121"), Some(a("127.0.0.1:9990"))), Ok(vec![Role::Control, Role::ImplicitTls]));
    }

    #[test]
    fn a_default_unit_name_falls_back_to_the_address() {
        let s = [(3, Some("leanftpd.socket"), a("[::]:21"))];
        assert_eq!(assign(&s, a("[::]:21"), None), Ok(vec![Role::Control]));
    }

    #[test]
    fn a_socket_matching_nothing_is_an_error() {
        let e = assign(&[(3, None, a("127.0.0.1:2122"))], a("127.0.0.1:2121"), None).unwrap_err();
        assert!(e.contains("fd 3") && e.contains("127.0.0.1:2122") && e.contains("--listen 127.0.0.1:2121"), "{e}");
    }

    #[test]
    fn two_sockets_for_one_listener_is_an_error() {
        let s = [(3, Some("control"), a("127.0.0.1:21")), (4, None, a("127.0.0.1:21"))];
        assert!(assign(&s, a("127.0.0.1:21"), None).unwrap_err().contains("second socket for --listen"));
    }

    #[test]
    fn implicit_tls_name_needs_the_option() {
        let e = assign(&[(3, Some("implicit-tls"), a("127.0.0.1:990"))], a("127.0.0.1:21"), None).unwrap_err();
        assert!(e.contains("--implicit-tls-listen"), "{e}");
    }

    #[test]
    fn notify_socket_forms() {
        assert_eq!(parse_notify_socket(b"/run/systemd/notify"), Ok(NotifyTarget::Path("/run/systemd/notify".into())));
        assert_eq!(parse_notify_socket(b"@/org/freedesktop/systemd1/notify/1"), Ok(NotifyTarget::Abstract(b"/org/freedesktop/systemd1/notify/1".to_vec())));
        assert!(parse_notify_socket(b"").is_err());
        assert!(parse_notify_socket(b"@").is_err());
        assert!(parse_notify_socket(b"relative/sock").is_err());
        assert!(parse_notify_socket(b"vsock:2:1234").is_err());
    }

    #[test]
    fn notifications_reach_an_abstract_socket_and_never_block_when_it_is_full() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("leanftpd-unit-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let mut n = Notifier::new(&NotifyTarget::Abstract(name.into_bytes())).unwrap();
        n.ready("serving");
        let mut buf = [0u8; 512];
        let len = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(msg.starts_with("READY=1\nMAINPID=") && msg.ends_with("STATUS=serving\n"), "{msg}");
        // Nobody reads: the queue (net.unix.max_dgram_qlen) fills, and
        // sending goes on returning at once, counting what it dropped.
        for _ in 0..2000 {
            n.status("x");
        }
        assert!(n.dropped > 0);
    }
}
