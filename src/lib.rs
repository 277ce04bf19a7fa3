//! leanftpd: an FTP server built as a single-threaded, event-driven reactor
//! in the style of Twisted, for small machines that must hold many idle
//! clients cheaply.
//!
//! # The life of a session
//! 1. The control listener (an entry of the reactor's slab) is readable: the
//!    reactor accepts, checks the connection limits, creates a `Control`
//!    entry holding a `Session` (the protocol interpreter), sends `220`, and
//!    schedules the login timeout in the timing wheel.
//! 2. Bytes arrive: the reactor reads them into its own scratch buffer,
//!    frames lines (`line`), and hands each to `Session::handle`, which
//!    parses (`ftp::command`), checks the gate (`ftp::table`: login,
//!    arity), runs the handler and appends replies to a buffer the reactor
//!    writes straight to the socket. Only a partial line or an unsent reply
//!    tail is kept in the session; an idle session holds no buffer.
//! 3. PASS for a real user becomes an action: the helper thread checks the
//!    hash and wakes the reactor; a failure is answered after a delay from
//!    the wheel.
//! 4. PASV opens a passive listener entry (one connection, from the client's
//!    address only); RETR/STOR/LIST become a `TransferRequest` that the
//!    reactor attaches to the data connection. RETR in binary mode is
//!    `sendfile(2)` on writable readiness, a bounded slice per event.
//! 5. The transfer ends: the data connection is closed, the session replies
//!    `226`, and any command lines that arrived meanwhile are handled, in
//!    order.
//! 6. QUIT, a timeout or an error closes the control entry and everything
//!    it owns.
//!
//! # Layers
//! - [`reactor`]: poll, slab, dispatch, signals, helper thread.
//! - [`workers`]: `--workers N`, a reactor per core; the binary's entry, [`run`].
//! - [`timer`]: the hashed timing wheel.
//! - [`line`]: CRLF framing, Telnet IAC removal, line length limit.
//! - [`ftp`]: the protocol interpreter (sans-IO).
//! - [`dtp`]: passive ports and transfers.
//! - [`vfs`]: virtual paths, the jail, listings.
//! - [`auth`]: anonymous login and the users file.
//! - [`config`]: the command line.
//! - [`xferlog`]: the transfer log in `xferlog(5)` format.
//! - [`hooks`]: the upload hook (`--on-upload`): its environment, spawn and queue.
//! - `proxy` (cargo feature `proxy`): the PROXY protocol header a load
//!   balancer sends first (`--proxy-protocol`).
//! - [`metrics`]: counters and gauges shared by the reactors, and their
//!   Prometheus text rendering.
//! - [`systemd`]: socket activation and readiness notification.
//! - [`sandbox`]: Landlock self-confinement after start-up (cargo feature
//!   `sandbox`; `--no-sandbox`).
//! - [`sys`]: the system calls (the only `unsafe`).

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod auth;
pub mod config;
pub mod dtp;
pub mod ftp;
pub mod hooks;
pub mod line;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod metrics;
pub mod reactor;
pub mod sandbox;
pub mod sys;
pub mod systemd;
pub mod timer;
#[cfg(feature = "tls")]
pub mod tls;
pub mod vfs;
pub mod workers;
pub mod xferlog;

/// Whether this build has FTPS (the default cargo feature `tls`).
pub const TLS_BUILT_IN: bool = cfg!(feature = "tls");
/// Whether this build serves Prometheus metrics (the default cargo feature
/// `metrics`).
pub const METRICS_BUILT_IN: bool = cfg!(feature = "metrics");

/// Whether this build takes PROXY protocol headers (cargo feature `proxy`).
pub const PROXY_BUILT_IN: bool = cfg!(feature = "proxy");

/// Whether this build confines itself with Landlock (cargo feature `sandbox`).
pub const SANDBOX_BUILT_IN: bool = cfg!(feature = "sandbox");

pub use config::Config;
pub use reactor::{Listeners, Server, Shared, StopHandle};
pub use workers::{run, RunError, Workers};
