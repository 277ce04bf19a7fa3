//! The sandbox: after start-up the process confines itself with Landlock
//! (Linux ≥ 5.13; `landlock(7)`, <https://docs.kernel.org/userspace-api/landlock.html>),
//! so that a bug in the protocol interpreter, the VFS or TLS cannot reach
//! what the server never needs: the rest of the filesystem, TCP ports it
//! does not serve, low ports for active mode, other processes' signals and
//! abstract unix sockets.
//!
//! # When
//! `landlock_restrict_self(2)` confines the calling thread and the threads
//! and processes it creates *afterwards*, never the threads that already
//! exist. So [`crate::workers::run`] confines the process after binding
//! every socket (control listeners of every worker, `--implicit-tls-listen`,
//! `--metrics-listen`, or the ones systemd hands in), and before the first
//! other thread: the worker threads, each worker's password helper thread
//! and any `--on-upload` child are all created by the confined thread or
//! its descendants. The signal thread is the confined main thread itself.
//! (Only `run`, the binary's path, confines: a library user that calls
//! `Server::bind` in its own process is not confined.)
//!
//! # What stays reachable ([`SandboxSpec::from_config`])
//! - beneath the anonymous root: read-only (`ReadFile`, `ReadDir`), or
//!   read-write with `--anonymous-write`; without anonymous access but
//!   with a users file, `--root` read-only all the same: it is the base of
//!   relative homes, and a SIGHUP may add an `r` user beneath it (keep
//!   private data out of `--root`);
//! - beneath every home of the users file: `r` read-only, `rw` read-write
//!   (`WriteFile`, `MakeReg`, `MakeDir`, `RemoveFile`, `RemoveDir`,
//!   `Refer` for renames between directories, `Truncate` for STOR over a
//!   file), `w` (upload-only) `ReadDir`, `WriteFile`, `MakeReg`, `MakeDir`,
//!   `Truncate` and `RemoveFile` (an atomic upload's rename may replace a
//!   file; the PI refuses DELE to such users anyway);
//! - read-only files (`ReadFile`, not `ReadDir`): the files in the
//!   directories of the users file, the TLS certificate and key (SIGHUP
//!   reloads them) and the config file, and of their targets if they are
//!   symbolic links. Directories, not the files themselves: a Landlock rule
//!   is bound to an inode, and a file replaced by `rename(2)` (`mv
//!   users.new users`, an editor's save, certbot's new `archive/certN.pem`
//!   behind its `live/` link) is a new inode that a file rule would not
//!   cover; the cost is that the other files of those directories are
//!   readable too (keep the key in a directory of its own). Also the file
//!   `/proc/sys/net/ipv4/ip_local_port_range` (read by each worker's port
//!   picker at start);
//! - the xferlog, "append-only": Landlock has no append right; the file
//!   gets `WriteFile` without `Truncate` (ABI ≥ 3), so it can be opened
//!   for writing but never truncated (`O_TRUNC`, `truncate(2)`), deleted,
//!   renamed or replaced. The server opens it with `O_APPEND` only; a
//!   process in the domain that opened it without `O_APPEND` could still
//!   overwrite bytes in place with `pwrite`. It is created (empty) before
//!   confinement if missing, since a rule names an existing file.
//! - TCP (ABI ≥ 4): `bind` only on the passive range (`--passive-ports`),
//!   or, without a range, on the ports of `ip_local_port_range` as read at
//!   start (the port picker binds a random one itself) and port 0 (its
//!   fallback). Landlock: a rule for port 0 allows `bind(…:0)`, which the
//!   kernel turns into a free port of `ip_local_port_range`; binding a
//!   chosen port, ephemeral or not, needs a rule for that port;
//!   the control, implicit FTPS and metrics listeners are bound before and
//!   need no rule. `connect` only to ports ≥ [`MIN_CONNECT_PORT`] (active
//!   mode PORT/EPRT): even with `--insecure-port-any-host` a connect to a
//!   low port fails with `EACCES` (the transfer gets `425`).
//! - scoping (ABI ≥ 6): no signal to a process outside the domain; no
//!   connection to an abstract unix socket created outside it, unless
//!   systemd's `NOTIFY_SOCKET` is an abstract one (`@…`): it is sent to
//!   after confinement (READY, RELOADING, STOPPING).
//! - with [`SandboxSpec::exec_hooks`] (the `--on-upload` hook): read and
//!   execute beneath [`HOOK_EXEC_DIRS`] (those that exist), and read and
//!   write `/dev/null` (a child's null stdio), and read and execute the
//!   files `--on-upload` names by absolute path. A hook reaches nothing else:
//!   the served trees as the server does, the same ports, no `/tmp`, no
//!   `/home`, no `/proc`.
//!
//! # Not confined by Landlock (ABI ≤ 7)
//! `stat`, `chmod`, `chown`, `utimes` on any path; UDP; connecting to a
//! pathname unix socket; `O_PATH` opens. These need no rights here, and a
//! sandbox rule cannot refuse them.
//!
//! # SIGHUP
//! A new users file is read (it stays readable); a new `r` user beneath
//! `--root`, or any user beneath a home with the same or a wider access,
//! works at once. A home that was not reachable at start (outside
//! `--root` and the old homes, or `rw` where only `r` was covered) stays
//! unreachable until a restart:
//! [`unreachable_homes`] says which, and the reload logs a warning.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::auth::{Perm, Users};
use crate::config::Config;

/// The Landlock ABI that enforces every part of the spec: 6 (Linux 6.12;
/// 3 for `Truncate`, 4 for TCP, 6 for scoping). ABI 7 adds only audit
/// logging flags, which are not used.
pub const ABI_NEEDED: u8 = 6;
/// Lowest TCP port the process may connect to (active mode).
pub const MIN_CONNECT_PORT: u16 = 1024;
/// Read-only trees an upload hook's `/bin/sh -c CMD` needs: the shell,
/// ordinary commands and their libraries, and `/etc` (`ld.so.cache`,
/// `passwd`, `nsswitch.conf`, `localtime`).
pub const HOOK_EXEC_DIRS: &[&str] = &["/bin", "/sbin", "/usr", "/lib", "/lib64", "/lib32", "/libx32", "/etc"];
/// What each worker's passive port picker reads at start.
pub const PORT_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// What a served tree allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DirAccess {
    /// `r`: list and download.
    Read,
    /// `w` (drop box): upload and make directories, list names; no reading
    /// of file contents.
    UploadOnly,
    /// `rw`: everything the PI does.
    ReadWrite,
}

impl DirAccess {
    /// The access a users-file permission needs.
    pub fn for_perm(perm: Perm) -> DirAccess {
        match perm {
            Perm::Read => DirAccess::Read,
            Perm::Upload => DirAccess::UploadOnly,
            Perm::ReadWrite => DirAccess::ReadWrite,
        }
    }

    /// Whether this access covers everything `other` needs.
    fn covers(self, other: DirAccess) -> bool {
        self == other || self == DirAccess::ReadWrite
    }
}

/// What the confined process may reach; built from the configuration by
/// [`SandboxSpec::from_config`], applied by [`confine`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Served trees (each directory and everything beneath it).
    pub dirs: Vec<(PathBuf, DirAccess)>,
    /// Directories whose files are read at run time (users file,
    /// certificates, config file: `ReadFile` only; see the module's doc).
    pub read_file_dirs: Vec<PathBuf>,
    /// Single files read at run time.
    pub read_files: Vec<PathBuf>,
    /// Files written without truncation (the xferlog).
    pub append_files: Vec<PathBuf>,
    /// TCP ports `bind` may use, inclusive ranges; `(0, 0)` is a bind to
    /// port 0 (a kernel-chosen ephemeral port).
    pub bind_ports: Vec<(u16, u16)>,
    /// Lowest TCP port `connect` may use.
    pub connect_from: u16,
    /// Refuse abstract unix sockets made outside the domain.
    pub scope_abstract_unix: bool,
    /// Refuse signals to processes outside the domain.
    pub scope_signals: bool,
    /// Allow what an `--on-upload` hook run by `/bin/sh -c` needs (see
    /// [`HOOK_EXEC_DIRS`]).
    pub exec_hooks: bool,
    /// Files a hook runs or reads by name: every word of `--on-upload`
    /// that is the absolute path of an existing file (`/opt/hooks/new-pic`,
    /// or the script in `/bin/sh /srv/hooks/new-pic.sh`), read and
    /// executed wherever it lives.
    pub hook_files: Vec<PathBuf>,
}

impl SandboxSpec {
    /// The spec for `config` with its users file loaded as `users`;
    /// `notify_abstract`: systemd's `NOTIFY_SOCKET` is an abstract socket
    /// (then abstract unix sockets are not scoped).
    pub fn from_config(config: &Config, users: &Users, notify_abstract: bool) -> SandboxSpec {
        let mut s = SandboxSpec { connect_from: MIN_CONNECT_PORT, scope_signals: true, ..SandboxSpec::default() };
        if config.anonymous {
            s.dirs.push((config.root.clone(), if config.anonymous_write { DirAccess::ReadWrite } else { DirAccess::Read }));
            // The anonymous drop box: Landlock's rules add up, so beneath
            // it the root's read rule and this one both hold; the VFS
            // (`vfs::access`) is what refuses reading there.
            if let Some(dir) = upload_dir(config) {
                s.dirs.push((dir, DirAccess::UploadOnly));
            }
        } else if config.users.is_some() {
            // `--root` is the base of relative homes: read-only, so that
            // an `r` user added beneath it by SIGHUP works without a
            // restart (tests/clients.rs, tests/workers.rs do just that).
            s.dirs.push((config.root.clone(), DirAccess::Read));
        }
        for (home, perm) in users.homes() {
            s.dirs.push((home.to_path_buf(), DirAccess::for_perm(perm)));
        }
        let reread = [&config.users, &config.tls_cert, &config.tls_key, &config.origin.file];
        for file in reread.into_iter().flatten() {
            let canonical = std::fs::canonicalize(file).ok();
            for f in std::iter::once(file).chain(canonical.as_ref()) {
                let dir = match f.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                if !s.read_file_dirs.contains(&dir) {
                    s.read_file_dirs.push(dir);
                }
            }
        }
        s.read_files.push(PathBuf::from(PORT_RANGE_FILE));
        s.append_files.extend(config.xferlog.iter().cloned());
        match config.passive_ports {
            Some(range) => s.bind_ports.push(range),
            None => {
                // The port picker binds random ports of the ephemeral range
                // itself (`dtp::ports`: cheaper than the kernel's search),
                // and port 0 after 16 taken ones: each needs a rule.
                s.bind_ports.push(crate::dtp::ports::ephemeral_range());
                s.bind_ports.push((0, 0));
            }
        }
        s.scope_abstract_unix = !notify_abstract;
        // Fixed at start: a hook first configured by SIGHUP cannot run
        // under the sandbox (its spawn fails, logged and counted).
        s.exec_hooks = config.on_upload.is_some();
        if let Some(cmd) = &config.on_upload {
            s.hook_files = hook_files(cmd);
        }
        s
    }

    /// One line for the log: what stays reachable.
    pub fn describe(&self) -> String {
        let count = |a: DirAccess| self.dirs.iter().filter(|d| d.1 == a).count();
        let ports = self
            .bind_ports
            .iter()
            .map(|&(lo, hi)| match (lo, hi) {
                (0, 0) => "0 (ephemeral)".to_string(),
                (lo, hi) if lo == hi => lo.to_string(),
                (lo, hi) => format!("{lo}-{hi}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut scoped = Vec::new();
        if self.scope_signals {
            scoped.push("signals");
        }
        if self.scope_abstract_unix {
            scoped.push("abstract unix sockets");
        }
        format!(
            "files beneath {} read-only, {} read-write, {} upload-only tree(s), files in {} read-only director(y/ies), {} read-only file(s), {} append-only file(s){}; \
             TCP bind on {ports}; TCP connect to ports {}-65535; scoped: {}",
            count(DirAccess::Read),
            count(DirAccess::ReadWrite),
            count(DirAccess::UploadOnly),
            self.read_file_dirs.len(),
            self.read_files.len(),
            self.append_files.len(),
            if self.exec_hooks { ", hooks: read+execute of /bin /sbin /usr /lib* /etc" } else { "" },
            self.connect_from,
            if scoped.is_empty() { "none".to_string() } else { scoped.join(", ") },
        )
    }
}

/// `--anonymous-upload-dir` as a real directory beneath `--root`.
fn upload_dir(config: &Config) -> Option<PathBuf> {
    let dir = config.anonymous_upload_dir.as_ref()?.as_bytes();
    Some(config.root.join(std::ffi::OsStr::from_bytes(dir.strip_prefix(b"/").unwrap_or(dir))))
}

/// The files an `--on-upload` command names by absolute path (the words
/// that are existing files), which a hook may read and execute.
fn hook_files(cmd: &str) -> Vec<PathBuf> {
    cmd.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).filter(|p| p.is_file()).collect()
}

/// What confinement allowed, for [`unreachable_homes`] and [`uncovered`].
static CONFINED: OnceLock<SandboxSpec> = OnceLock::new();

/// After a SIGHUP: the users of `users` whose home the sandbox does not
/// cover with the access their permission needs (a home added or widened
/// after start; a restart applies it). Empty when the process is not
/// confined.
pub fn unreachable_homes(users: &Users) -> Vec<String> {
    let Some(spec) = CONFINED.get() else { return Vec::new() };
    let dirs = &spec.dirs;
    users
        .named_homes()
        .filter(|(_, home, perm)| {
            let need = DirAccess::for_perm(*perm);
            !dirs.iter().any(|(d, a)| a.covers(need) && home.starts_with(d))
        })
        .map(|(name, home, _)| format!("{name} ({})", home.display()))
        .collect()
}

/// After a SIGHUP: the options whose new value needs an access the
/// sandbox, fixed at start, does not give (Landlock rules cannot be
/// widened): anonymous write access (or anonymous reading) of a root
/// covered for less, a new anonymous upload dir outside what is writable,
/// an upload hook where none was configured at start (or one naming a new
/// file), a users file or TLS file in a directory not read at start. The
/// reload keeps their running values and says they need a restart, rather
/// than taking values the kernel would refuse at every use. Empty when the
/// process is not confined.
pub fn uncovered(old: &Config, new: &Config) -> Vec<&'static str> {
    let Some(spec) = CONFINED.get() else { return Vec::new() };
    let tree = |p: &std::path::Path, need: DirAccess| spec.dirs.iter().any(|(d, a)| a.covers(need) && p.starts_with(d));
    let mut out = Vec::new();
    if new.anonymous && (new.anonymous, new.anonymous_write) != (old.anonymous, old.anonymous_write) {
        let need = if new.anonymous_write { DirAccess::ReadWrite } else { DirAccess::Read };
        if !tree(&new.root, need) {
            out.push(if new.anonymous_write != old.anonymous_write { "anonymous-write" } else { "anonymous" });
        }
    }
    if new.anonymous_upload_dir != old.anonymous_upload_dir && upload_dir(new).is_some_and(|dir| !tree(&dir, DirAccess::UploadOnly)) {
        out.push("anonymous-upload-dir");
    }
    if new.on_upload != old.on_upload {
        if let Some(cmd) = &new.on_upload {
            let files_covered =
                hook_files(cmd).iter().all(|p| spec.hook_files.contains(p) || HOOK_EXEC_DIRS.iter().any(|d| p.starts_with(d)));
            if !spec.exec_hooks || !files_covered {
                out.push("on-upload");
            }
        }
    }
    let readable = |f: &std::path::Path| {
        let canonical = std::fs::canonicalize(f).ok();
        std::iter::once(f).chain(canonical.as_deref()).all(|f| {
            let dir = f.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            spec.read_file_dirs.iter().any(|d| d == dir)
        })
    };
    for (name, new_file, old_file) in
        [("users", &new.users, &old.users), ("tls-cert", &new.tls_cert, &old.tls_cert), ("tls-key", &new.tls_key, &old.tls_key)]
    {
        if new_file != old_file && new_file.as_deref().is_some_and(|f| !readable(f)) {
            out.push(name);
        }
    }
    out
}

/// How [`confine`] went, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Confined {
    /// Every part of the spec is enforced.
    Fully,
    /// Enforced in part (an older kernel ABI): what is missing.
    Partially(String),
    /// Not at all: the kernel has no Landlock (why).
    Not(String),
    /// Not at all: a build without the `sandbox` feature.
    NotBuilt,
}

/// Confine this thread and every thread and process it creates from now
/// on to `spec`, with the best Landlock ABI the kernel offers (the crate's
/// best-effort compatibility). A kernel without Landlock or with an older
/// ABI is not an error ([`Confined`] says what is missing); an error is a
/// spec that cannot be applied (a path that cannot be opened).
#[cfg(feature = "sandbox")]
pub fn confine(spec: &SandboxSpec) -> Result<Confined, String> {
    use std::path::Path;
    use landlock::{
        Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };
    let abi = ABI::V6;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let write = AccessFs::WriteFile | AccessFs::MakeReg | AccessFs::MakeDir | AccessFs::Truncate;
    let rights = |a: DirAccess| match a {
        DirAccess::Read => read,
        DirAccess::UploadOnly => write | AccessFs::ReadDir | AccessFs::RemoveFile,
        DirAccess::ReadWrite => read | write | AccessFs::RemoveFile | AccessFs::RemoveDir | AccessFs::Refer,
    };
    let err = |what: &str, e: &dyn std::fmt::Display| format!("sandbox: {what}: {e}");
    // A rule names an existing file: create the xferlog now (as
    // `XferLog::open` would) so that its rule can be made.
    for f in &spec.append_files {
        std::fs::OpenOptions::new().create(true).append(true).open(f).map_err(|e| err(&f.display().to_string(), &e))?;
    }
    let mut scopes = landlock::BitFlags::<Scope>::empty();
    if spec.scope_signals {
        scopes |= Scope::Signal;
    }
    if spec.scope_abstract_unix {
        scopes |= Scope::AbstractUnixSocket;
    }
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .map_err(|e| err("ruleset", &e))?;
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes).map_err(|e| err("ruleset", &e))?;
    }
    let mut created = ruleset.create().map_err(|e| err("ruleset", &e))?;
    let mut files: Vec<(&Path, landlock::BitFlags<AccessFs>)> = Vec::new();
    files.extend(spec.dirs.iter().map(|(d, a)| (d.as_path(), rights(*a))));
    files.extend(spec.read_file_dirs.iter().chain(&spec.read_files).map(|f| (f.as_path(), AccessFs::ReadFile.into())));
    files.extend(spec.append_files.iter().map(|f| (f.as_path(), AccessFs::WriteFile.into())));
    if spec.exec_hooks {
        files.extend(HOOK_EXEC_DIRS.iter().map(Path::new).filter(|d| d.exists()).map(|d| (d, read | AccessFs::Execute)));
        files.push((Path::new("/dev/null"), AccessFs::ReadFile | AccessFs::WriteFile));
        files.extend(spec.hook_files.iter().map(|f| (f.as_path(), AccessFs::ReadFile | AccessFs::Execute)));
    }
    for (path, access) in files {
        let fd = PathFd::new(path).map_err(|e| err(&path.display().to_string(), &e))?;
        (&mut created).add_rule(PathBeneath::new(fd, access)).map_err(|e| err(&path.display().to_string(), &e))?;
    }
    for &(lo, hi) in &spec.bind_ports {
        for port in lo..=hi {
            (&mut created).add_rule(NetPort::new(port, AccessNet::BindTcp)).map_err(|e| err("TCP bind rule", &e))?;
        }
    }
    // One rule per port: Landlock has no port ranges (64 512 rules, a few
    // milliseconds at start).
    for port in spec.connect_from..=u16::MAX {
        (&mut created).add_rule(NetPort::new(port, AccessNet::ConnectTcp)).map_err(|e| err("TCP connect rule", &e))?;
    }
    let status = created.restrict_self().map_err(|e| err("landlock_restrict_self", &e))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confined::Fully,
        RulesetStatus::PartiallyEnforced => Confined::Partially(format!(
            "the kernel's Landlock ({:?}) is older than ABI {ABI_NEEDED}: {}",
            status.landlock,
            missing_below(&status.landlock)
        )),
        RulesetStatus::NotEnforced => Confined::Not(format!("the kernel offers no Landlock ({:?})", status.landlock)),
    })
}

/// What an older ABI leaves out (see the README's Sandbox table).
#[cfg(feature = "sandbox")]
fn missing_below(status: &landlock::LandlockStatus) -> &'static str {
    use landlock::{LandlockStatus, ABI};
    match status {
        LandlockStatus::Available { effective_abi, .. } => match *effective_abi {
            ABI::V1 => "no Refer (renames between directories refused), no Truncate, no TCP rules, no scoping",
            ABI::V2 => "no Truncate (the xferlog can be truncated), no TCP rules, no scoping",
            ABI::V3 => "no TCP rules, no scoping",
            ABI::V4 | ABI::V5 => "no scoping (signals, abstract unix sockets)",
            _ => "some rights",
        },
        _ => "nothing enforced",
    }
}

/// Without the `sandbox` feature nothing is confined.
#[cfg(not(feature = "sandbox"))]
pub fn confine(_spec: &SandboxSpec) -> Result<Confined, String> {
    Ok(Confined::NotBuilt)
}

/// Whether systemd's `NOTIFY_SOCKET` names an abstract socket (`@…`);
/// read before `Notifier::from_env` takes the variable away.
pub fn notify_socket_is_abstract() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| v.as_encoded_bytes().first() == Some(&b'@'))
}

/// Confine the process for `config` (loading its users file for the
/// homes; `notify_abstract`: see [`notify_socket_is_abstract`]), logging what is covered: one info line when fully confined or
/// when `--no-sandbox` turned it off, one warning when the kernel or the
/// build offers less. An error (a path that cannot be opened) stops the
/// start.
pub fn confine_for(config: &Config, notify_abstract: bool) -> Result<(), String> {
    if config.no_sandbox {
        log::info!("sandbox: off (--no-sandbox)");
        return Ok(());
    }
    let users = match &config.users {
        Some(path) => Users::load(path, &config.root).map_err(|e| e.to_string())?,
        None => Users::empty(),
    };
    let spec = SandboxSpec::from_config(config, &users, notify_abstract);
    let started = std::time::Instant::now();
    let confined = confine(&spec)?;
    if matches!(confined, Confined::Fully | Confined::Partially(_)) {
        let _ = CONFINED.set(spec.clone());
    }
    log::debug!("sandbox: rules made and applied in {} µs", started.elapsed().as_micros());
    match confined {
        Confined::Fully => log::info!(
            "sandbox: Landlock ABI {ABI_NEEDED}+ enforced: {}; SIGHUP cannot widen it (a home it does not cover needs a restart)",
            spec.describe()
        ),
        Confined::Partially(why) => log::warn!("sandbox: partially enforced ({why}): {}", spec.describe()),
        Confined::Not(why) => log::warn!("sandbox: NOT enforced: {why}; the server runs unconfined"),
        Confined::NotBuilt => log::info!("sandbox: not built in (cargo feature `sandbox`); the server runs unconfined"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(root: &Path) -> Config {
        let mut c = Config::new(root.to_path_buf());
        c.anonymous = true;
        c
    }

    #[test]
    fn spec_from_config_lists_roots_files_and_ports() {
        let root = std::env::temp_dir();
        let mut c = config(&root);
        c.xferlog = Some(PathBuf::from("/var/log/xferlog"));
        c.tls_cert = Some(PathBuf::from("/etc/ssl/c.pem"));
        c.tls_key = Some(PathBuf::from("/etc/ssl/private/k.pem"));
        c.passive_ports = Some((40000, 40100));
        let s = SandboxSpec::from_config(&c, &Users::empty(), false);
        assert_eq!(s.dirs, vec![(root.clone(), DirAccess::Read)]);
        assert_eq!(s.read_file_dirs, vec![PathBuf::from("/etc/ssl"), PathBuf::from("/etc/ssl/private")]);
        assert_eq!(s.read_files, vec![PathBuf::from(PORT_RANGE_FILE)]);
        assert_eq!(s.append_files, vec![PathBuf::from("/var/log/xferlog")]);
        assert_eq!(s.bind_ports, vec![(40000, 40100)]);
        assert_eq!(s.connect_from, 1024);
        assert!(s.scope_signals && s.scope_abstract_unix && !s.exec_hooks);
        // No passive range: a bind to port 0; an abstract NOTIFY_SOCKET
        // leaves abstract sockets unscoped; --anonymous-write: read-write.
        c.passive_ports = None;
        c.anonymous_write = true;
        let s = SandboxSpec::from_config(&c, &Users::empty(), true);
        assert_eq!(s.bind_ports, vec![crate::dtp::ports::ephemeral_range(), (0, 0)]);
        assert_eq!(s.dirs, vec![(root, DirAccess::ReadWrite)]);
        assert!(!s.scope_abstract_unix);
        assert!(s.describe().contains(", 0 (ephemeral); TCP connect to ports 1024-65535"), "{}", s.describe());
    }

    #[test]
    fn homes_get_the_access_of_their_permission() {
        let base = std::env::temp_dir().join(format!("leanftpd-sandbox-{}", std::process::id()));
        std::fs::create_dir_all(base.join("a")).unwrap();
        std::fs::create_dir_all(base.join("b")).unwrap();
        let hash = "$6$rounds=1000$salt$Q8/B1MmJ6Yq0dpWMS4tB0hMsH1pYg.Tz4wF5P6QQk5C4ZzPM0Wx0GDh7QJyTKJ0q4DH7TfBZYFXsMJDWhx9Fh1";
        let users = Users::parse(&format!("alice:{hash}:a:r\nbob:{hash}:b:rw\n"), &base);
        let _ = std::fs::remove_dir_all(&base);
        let users = users.expect("the users file parses");
        let mut c = config(&base);
        c.anonymous = false;
        c.users = Some(base.join("users"));
        let s = SandboxSpec::from_config(&c, &users, false);
        assert_eq!(s.dirs, vec![(base.clone(), DirAccess::Read), (base.join("a"), DirAccess::Read), (base.join("b"), DirAccess::ReadWrite)]);
    }

    #[test]
    fn upload_only_and_read_are_covered_by_read_write_only() {
        assert!(DirAccess::ReadWrite.covers(DirAccess::Read));
        assert!(DirAccess::ReadWrite.covers(DirAccess::UploadOnly));
        assert!(!DirAccess::Read.covers(DirAccess::ReadWrite));
        assert!(!DirAccess::UploadOnly.covers(DirAccess::Read));
    }

    /// `exec_hooks`: what `/bin/sh -c CMD` needs runs, and the rest stays
    /// out of reach. Confines a thread of its own (Landlock confines the
    /// calling thread and what it creates: the test's other threads are
    /// not touched), which runs the shell as a hook would.
    #[cfg(feature = "sandbox")]
    #[test]
    fn exec_hooks_run_the_shell_and_reach_nothing_else() {
        let dir = std::env::temp_dir().join(format!("leanftpd-sandbox-exec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::fs::write(dir.join("root/in.txt"), b"in").unwrap();
        std::fs::write(dir.join("outside/secret.txt"), b"secret").unwrap();
        let spec = SandboxSpec {
            dirs: vec![(dir.join("root"), DirAccess::ReadWrite)],
            connect_from: MIN_CONNECT_PORT,
            scope_signals: true,
            scope_abstract_unix: true,
            exec_hooks: true,
            hook_files: Vec::new(),
            ..SandboxSpec::default()
        };
        let d = dir.clone();
        let out = std::thread::spawn(move || {
            assert_eq!(confine(&spec).unwrap(), Confined::Fully);
            let sh = |cmd: &str| {
                std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned()))
                    .unwrap()
            };
            (
                sh(&format!("cat {}/root/in.txt && echo made > {}/root/new.txt", d.display(), d.display())),
                sh(&format!("cat {}/outside/secret.txt", d.display())),
                sh("ls /etc/passwd"),
                sh("ls /tmp"),
            )
        })
        .join()
        .unwrap();
        assert_eq!(out.0, (true, "in".to_string()), "a hook reads and writes the served tree");
        assert_eq!(std::fs::read(dir.join("root/new.txt")).unwrap(), b"made\n");
        assert!(!out.1 .0 && out.1 .1.is_empty(), "a hook reads outside: {:?}", out.1);
        assert!(out.2 .0, "/etc is readable to hooks: {:?}", out.2);
        assert!(!out.3 .0, "/tmp is not: {:?}", out.3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
