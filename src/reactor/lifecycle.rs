//! The server's life outside single sessions: password verdicts from the
//! helper thread, signals (drain on SIGTERM/SIGINT, reload on SIGHUP),
//! shutdown, and giving memory back after a peak.

use super::*;

/// What `Server::on_reload` installs: told the number of the last reload
/// request a reload covered, and what it did.
pub(super) type ReloadHook = Box<dyn FnMut(u64, &str)>;

/// The server's own life: how it is told to stop, whether it is draining,
/// and when it last gave memory back.
///
/// # Invariants
/// - `shutting_down` only goes from false to true (`begin_shutdown`); once
///   true, no connection is accepted and `run` returns when the slab is empty.
/// - `shrink_scheduled` is true exactly while a `SHRINK_CHECK` timer is in
///   the wheel, so there is at most one.
pub(super) struct Lifecycle {
    /// SIGINT/SIGTERM/SIGHUP, once `handle_signals` registered them.
    pub(super) signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Request bits (`REQ_STOP`, `REQ_CUT`, `REQ_RELOAD`) set by a
    /// `StopHandle` (the signal thread of `--workers`, tests), taken and
    /// cleared on the waker's event.
    pub(super) requests: Arc<AtomicU8>,
    /// Reloads asked for through a `StopHandle` so far (`StopHandle::reload`).
    pub(super) reloads: Arc<AtomicU64>,
    /// Told after each reload a `StopHandle` asked for (`Server::on_reload`).
    pub(super) on_reload: Option<ReloadHook>,
    pub(super) shutting_down: bool,
    /// Earliest time for the next slab shrink and heap trim.
    pub(super) next_shrink: Instant,
    /// A `SHRINK_CHECK` timer is in the wheel.
    pub(super) shrink_scheduled: bool,
    /// systemd's `NOTIFY_SOCKET`, if set: readiness, reloads, stopping.
    pub(super) notify: Option<crate::systemd::Notifier>,
    /// The number of the last configuration read again on SIGHUP that
    /// this reactor adopted (`Shared::reread_since`).
    pub(super) config_seen: u64,
}

/// What logging in needs: the users, the helper thread that checks their
/// passwords, the verdicts on their way back, the cache of recent logins
/// and the `Vfs` of each home.
///
/// Defined here, not in `helper.rs`: the methods that read and change it
/// (`on_wake`, `on_verdict`, `user_vfs`, `reload_users`) are in this file,
/// while `helper.rs` is the thread's side of the queue, which never
/// touches the reactor's state; a SIGHUP reload replaces `users` and
/// empties both caches at once, which is this file's business.
///
/// # Invariants
/// - `vfs_cache` and `login_cache` hold only what came from the current
///   `users`: `reload_users` replaces `users` and clears both together
///   (jobs already queued keep the `Arc` of the old users).
/// - `verdicts` is empty outside `on_wake`; `cached_verdicts` is drained
///   once per pass of the loop, after the events.
pub(super) struct Auth {
    pub(super) users: Arc<Users>,
    /// One `Vfs` (one directory descriptor) per home and permission.
    pub(super) vfs_cache: HashMap<(PathBuf, crate::vfs::Rights), Rc<Vfs>>,
    pub(super) helper: Helper,
    /// The helper's verdicts, drained on the waker's event; kept for its capacity.
    pub(super) verdicts: Vec<Verdict>,
    /// Verdicts answered from the login cache, handled after the events.
    pub(super) cached_verdicts: Vec<Verdict>,
    pub(super) login_cache: LoginCache,
}

impl Server {
    /// After a peak (a flood of connections, a burst of clients) give the
    /// memory back: the slab keeps its capacity otherwise, and the heap its
    /// freed pages. Only when the slab is mostly empty, at most once a
    /// second; a check that is too early is retried from the wheel, since
    /// the last close of a peak may come within that second.
    pub(super) fn maybe_shrink(&mut self) {
        let cap = self.slab.capacity();
        if cap <= SHRINK_MIN_ENTRIES || self.slab.len() * 4 >= cap {
            return;
        }
        if self.now < self.life.next_shrink {
            if !self.life.shrink_scheduled {
                self.life.shrink_scheduled = true;
                self.wheel.schedule(self.life.next_shrink, SHRINK_CHECK);
            }
            return;
        }
        self.life.next_shrink = self.now + Duration::from_secs(1);
        self.slab.shrink_to_fit();
        crate::sys::trim_heap();
        if self.slab.capacity() > SHRINK_MIN_ENTRIES && self.slab.len() * 4 < self.slab.capacity() && !self.life.shrink_scheduled {
            // Live entries high in the slab keep it long: look again later.
            self.life.shrink_scheduled = true;
            self.wheel.schedule(self.life.next_shrink + Duration::from_secs(9), SHRINK_CHECK);
        }
    }

    pub(super) fn on_wake(&mut self) {
        let requests = self.life.requests.swap(0, Ordering::SeqCst);
        if requests & REQ_RELOAD != 0 {
            // Read after the bit was taken: every request counted here set
            // its bit before, so this reload covers them all (a later one
            // sets the bit again and wakes the loop again).
            let upto = self.life.reloads.load(Ordering::SeqCst);
            let status = self.reload();
            if let Some(hook) = &mut self.life.on_reload {
                hook(upto, &status);
            }
        }
        if requests & REQ_STOP != 0 && !self.life.shutting_down {
            info!("shutting down (grace {:?})", self.env.config.shutdown_grace);
            self.begin_shutdown();
        }
        if requests & REQ_CUT != 0 {
            info!("stop requested again: cutting transfers now");
            self.timeout(SHUTDOWN_DEADLINE);
        }
        if requests & REQ_ACCEPT != 0 {
            self.accept_shared_queues(true);
        }
        let mut verdicts = std::mem::take(&mut self.auth.verdicts);
        self.auth.helper.drain(&mut verdicts);
        for v in verdicts.drain(..) {
            self.on_verdict(v);
        }
        self.auth.verdicts = verdicts;
    }

    pub(super) fn on_verdict(&mut self, v: Verdict) {
        self.new_turn();
        match self.slab.get(v.key) {
            Some(Entry::Ctrl(c)) if c.serial == v.serial && c.session.pending() == Pending::Login => {}
            _ => return,
        }
        if let (Some(grant), Some(digest)) = (&v.grant, v.digest) {
            self.auth.login_cache.insert(digest, grant.clone(), self.now);
        }
        let result = match v.grant {
            Some(grant) => match self.user_vfs(&grant.home, grant.perm.rights()) {
                Ok(vfs) => Ok((grant, vfs)),
                Err(e) => {
                    error!("[c{}] home {} of {} unavailable: {e}", v.key, grant.home.display(), grant.name);
                    Err(())
                }
            },
            None => Err(()),
        };
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(v.key) else { return };
        let ok = result.is_ok();
        let mut out = std::mem::take(&mut self.ctl.out);
        out.clear();
        let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: 0 };
        let action = c.session.login_checked(result, &mut ctx);
        if ok {
            ctx_log!(info, v.key, c.session, "logged in");
        } else {
            ctx_log!(info, v.key, c.session, "failed login");
        }
        self.ctl.out = out;
        // `after_step` sends what `login_checked` wrote, then the action's own.
        let mut out = std::mem::take(&mut self.ctl.out);
        self.perform(v.key, action, &mut out);
        self.send(v.key, &out);
        out.clear();
        self.ctl.out = out;
        self.refresh_deadline(v.key);
        self.drain_lines(v.key);
    }

    /// One `Vfs` (one directory descriptor) per home and permission, shared
    /// by all sessions of that user.
    pub(super) fn user_vfs(&mut self, home: &std::path::Path, rights: crate::vfs::Rights) -> io::Result<Rc<Vfs>> {
        let key = (home.to_path_buf(), rights);
        if let Some(v) = self.auth.vfs_cache.get(&key) {
            return Ok(v.clone());
        }
        let vfs = Rc::new(Vfs::open_with(home, rights)?);
        self.auth.vfs_cache.insert(key, vfs.clone());
        Ok(vfs)
    }

    pub(super) fn on_signals(&mut self) {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let pending: Vec<i32> = match &mut self.life.signals {
            Some(s) => s.pending().collect(),
            None => return,
        };
        for sig in pending {
            match sig {
                SIGINT | SIGTERM if self.life.shutting_down => {
                    info!("signal {sig} again: cutting transfers now");
                    self.timeout(SHUTDOWN_DEADLINE);
                }
                SIGINT | SIGTERM => {
                    info!("signal {sig}: shutting down (grace {:?})", self.env.config.shutdown_grace);
                    self.begin_shutdown();
                }
                SIGHUP => {
                    self.reload();
                }
                _ => {}
            }
        }
    }

    /// SIGHUP: with `--config`, the file read again (by this reactor when
    /// it is the only one, by the signal thread with `--workers N`) and
    /// adopted; then the users file, then the TLS certificate and key.
    /// Returns what happened (`2 users reloaded; TLS certificate reloaded`).
    pub(super) fn reload(&mut self) -> String {
        if let Some(n) = &mut self.life.notify {
            n.reloading("Reloading (SIGHUP)");
        }
        let mut status = String::new();
        if self.worker == 0 {
            let mut current = self.env.config.clone();
            if let Some(s) = self.shared.reread_config(&mut current) {
                status = s + "; ";
            }
        }
        if let Some((seen, new)) = self.shared.reread_since(self.life.config_seen) {
            self.life.config_seen = seen;
            self.adopt_config((*new).clone());
        }
        status.push_str(&self.reload_users());
        #[cfg(feature = "tls")]
        if let Some(tls) = self.reload_tls() {
            status.push_str("; ");
            status.push_str(&tls);
        }
        if self.life.notify.is_some() {
            let serving = self.serving_status();
            if let Some(n) = &mut self.life.notify {
                n.ready(&format!("{serving}; SIGHUP: {status}"));
            }
        }
        status
    }

    /// SIGHUP: the certificate and key are read again; new TLS sessions
    /// get the new ones, live ones keep theirs. The ticket key and session
    /// cache stay, so data connections of sessions made before still
    /// resume them. A file that does not load keeps the old ones.
    /// Returns what happened, for systemd's `STATUS=`; `None` without TLS.
    #[cfg(feature = "tls")]
    pub(super) fn reload_tls(&mut self) -> Option<String> {
        let (Some(tls), Some(cert), Some(key)) = (&self.tls, &self.env.config.tls_cert, &self.env.config.tls_key) else { return None };
        match tls.reload(cert, key) {
            Ok(new) => {
                info!("SIGHUP: reloaded the TLS certificate {} and key {}", cert.display(), key.display());
                self.tls = Some(new);
                Some("TLS certificate reloaded".into())
            }
            Err(e) => {
                error!("SIGHUP: keeping the old TLS certificate and key: {e}");
                Some("TLS certificate NOT reloaded (see the log)".into())
            }
        }
    }

    /// A configuration read again on SIGHUP (`Shared::reread_config`):
    /// what needs no restart is in force for new sessions from now on.
    /// Sessions already logged in keep their user, home, permissions and
    /// TLS session; limits and timeouts are read where they are checked,
    /// so a changed timeout reaches a live session at its next deadline.
    /// The shared limits were set once, by `reread_config`.
    pub(super) fn adopt_config(&mut self, new: Config) {
        let mut new = self.env.config.adopt(new).config;
        let old = &self.env.config;
        if new.log_level != old.log_level {
            log::set_max_level(new.log_level.filter());
        }
        if new.login_cache != old.login_cache {
            self.auth.login_cache = LoginCache::new(new.login_cache, LOGIN_CACHE_ENTRIES);
        }
        if (new.anonymous, new.anonymous_write, &new.anonymous_upload_dir) != (old.anonymous, old.anonymous_write, &old.anonymous_upload_dir) {
            match super::anonymous_vfs(&new) {
                Ok(vfs) => self.env.anonymous = vfs,
                Err(e) => {
                    // As for a users file that does not load: what ran
                    // before goes on (anonymous logins too).
                    error!("SIGHUP: keeping the running anonymous settings: {e}");
                    (new.anonymous, new.anonymous_write) = (old.anonymous, old.anonymous_write);
                    new.anonymous_upload_dir = old.anonymous_upload_dir.clone();
                }
            }
        }
        self.env.config = new;
    }

    /// Returns what happened, for systemd's `STATUS=`.
    pub(super) fn reload_users(&mut self) -> String {
        let Some(path) = self.env.config.users.clone() else {
            if self.env.has_users {
                info!("SIGHUP: no users file any more: only anonymous may log in");
                self.env.has_users = false;
                self.auth.users = Arc::new(Users::empty());
                self.auth.vfs_cache.clear();
                self.auth.login_cache.clear();
                return "users file removed".into();
            }
            info!("SIGHUP: no users file to reload");
            return "no users file".into();
        };
        match Users::load(&path, &self.env.config.root) {
            Ok(users) => {
                info!("SIGHUP: reloaded {} users from {}", users.len(), path.display());
                let mut status = format!("{} users reloaded", users.len());
                // Landlock rules cannot be widened: a home the sandbox did
                // not cover at start stays unreachable until a restart.
                let unreachable = crate::sandbox::unreachable_homes(&users);
                if !unreachable.is_empty() {
                    warn!(
                        "SIGHUP: the sandbox does not cover the home of {} (added or widened after start): \
                         their logins fail to list or transfer until leanftpd is restarted",
                        unreachable.join(", ")
                    );
                    status.push_str(&format!(" ({} homes need a restart: sandbox)", unreachable.len()));
                }
                self.env.has_users = !users.is_empty();
                self.auth.users = Arc::new(users);
                // New logins open homes afresh; live sessions keep theirs.
                self.auth.vfs_cache.clear();
                self.auth.login_cache.clear();
                status
            }
            Err(e) => {
                error!("SIGHUP: keeping the old users: {e}");
                "users NOT reloaded (see the log)".into()
            }
        }
    }

    /// systemd's `STATUS=` while serving: where, and how many sessions.
    pub(super) fn serving_status(&self) -> String {
        let mut s = format!("Serving FTP on {}", self.accept.local_addr);
        if let Some(a) = self.accept.implicit_addr {
            s.push_str(&format!(", implicit FTPS on {a}"));
        }
        s.push_str(&format!(" ({} sessions)", self.accept.ctrl_count));
        s
    }

    pub(super) fn begin_shutdown(&mut self) {
        if self.life.shutting_down {
            return;
        }
        self.life.shutting_down = true;
        if self.life.notify.is_some() {
            let status = format!(
                "Draining {} sessions, {} transfers (grace {} s)",
                self.accept.ctrl_count,
                self.shared.transfers(),
                self.env.config.shutdown_grace.as_secs()
            );
            if let Some(n) = &mut self.life.notify {
                n.stopping(&status);
            }
        }
        if let Some(l) = self.accept.listener_key.take() {
            self.close_entry(l);
        }
        if let Some(l) = self.accept.implicit_key.take() {
            self.close_entry(l);
        }
        #[cfg(feature = "proxy")]
        self.close_awaiting(false);
        #[cfg(feature = "metrics")]
        self.close_metrics();
        self.drop_queued_hooks();
        let keys: Vec<usize> = self.slab.iter().filter(|(_, e)| matches!(e, Entry::Ctrl(_))).map(|(k, _)| k).collect();
        for key in keys {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { continue };
            if matches!(c.session.pending(), Pending::Transfer(_)) {
                continue; // finishes, or is cut at the deadline
            }
            let mut out = std::mem::take(&mut self.ctl.out);
            out.clear();
            c.session.shutting_down(&mut out);
            c.close_after_flush = true;
            self.send(key, &out);
            self.ctl.out = out;
        }
        let grace = self.env.config.shutdown_grace;
        self.wheel.schedule(self.now + grace, SHUTDOWN_DEADLINE);
        // Everything may already be gone.
        self.reap();
    }
}
