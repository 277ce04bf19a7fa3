//! What the reactors of one process share (`--workers N`): the counters
//! behind the global limits, and nothing else that changes per byte.
//!
//! Every worker's `Server` holds one `Arc<Shared>`. It is touched when a
//! control connection is accepted or closed and when a passive listener
//! or data connection opens or closes: never per command, never per byte,
//! so the loops do not contend on it. With one worker it is the same code
//! with an uncontended lock at accept and close.
//!
//! It never touches a socket, the slab or a session.
//!
//! # Exactness
//! A limit is checked and charged in one step (`acquire_*`): a compare and
//! increment on an atomic, or a check and increment under the map's lock,
//! so two workers accepting at the same instant cannot both take the last
//! slot. The N+1st control connection is refused (`421`) however the
//! kernel spreads connections over the workers.
//!
//! # Why these, and what stays per worker
//! - Shared: upload hooks running (`--max-hooks`) and waiting
//!   (`crate::hooks::Queue`); control connections in all (`--max-clients`) and per address
//!   (`--max-per-ip`), connections waiting for their PROXY protocol header
//!   (bounded by `--max-clients` too), passive listeners (`--max-passive`), data
//!   connections (`--max-transfers`) and the per-address data share
//!   (`--max-data-per-ip`); the TLS configuration as loaded at start (its
//!   ticket key and session cache, so a TLS session made on one worker
//!   resumes on any other).
//! - Per worker (each with its reason in `Server`): the users and their
//!   homes (reloaded by every worker on SIGHUP), the login cache (a hit on
//!   another worker costs one hash, not a lock on every login), the
//!   helper thread (N workers hash N passwords at once), the xferlog
//!   descriptor (`O_APPEND`: one `write` per record, so lines of several
//!   workers never interleave). Failed-login accounting is per
//!   connection (`Session`: the delay doubles per failure on that
//!   connection, which closes after `--max-login-fails`), so nothing of it
//!   is global.
//!
//! # Eviction across workers
//! At `--max-clients` a worker makes room by closing its own oldest
//! session that has not logged in (slowloris defence). With several
//! workers, the one that accepts may hold none while another holds many
//! (it filled first), so the sessions that have not logged in are also
//! listed here, in connection order, with their socket: a worker with no
//! victim of its own takes the oldest of another worker's, `shutdown(2)`s
//! its socket (the owner sees end-of-file and closes it) and takes its
//! slot over at once. The list is touched at accept, login and close only,
//! and only with more than one worker.
//!
//! A socket is shut down only while its session is in the list, under the
//! list's lock, and its owner takes it out of the list under that lock
//! before it closes the descriptor (at login, at close, and when a worker
//! ends: `forget_worker`), so a descriptor number that was closed and
//! reused is never touched. At login it is taken out before its `230` is
//! written (`Server::send`), so no worker evicts a session whose client
//! already has its `230`.
//!
//! # Extending it
//! Per-process counters (metrics) go here as more atomics: every worker
//! already holds the `Arc`.
//!
//! # Invariants
//! - `clients` equals the sum of `per_ip`'s values, and changes only under
//!   `per_ip`'s lock (so the pair is consistent); it is an atomic so that
//!   readers (metrics, tests) never take the lock.
//! - An address at zero is in neither map.
//! - Every `acquire_*` that returned `true`/`Ok` is matched by exactly one
//!   `release_*` (the reactor releases where the entry becomes `Closed`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::Config;

/// Why a control connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `--max-clients` connections are open.
    Clients,
    /// `--max-per-ip` connections are open from this address.
    PerIp,
}

/// The counters every worker shares; see the module's doc.
pub struct Shared {
    /// The limits: atomics, so that SIGHUP (`set_limits`) changes them for
    /// every worker at once; a lowered limit refuses new connections until
    /// the count falls below it, and closes none.
    max_clients: AtomicUsize,
    max_per_ip: AtomicUsize,
    max_passive: AtomicUsize,
    max_transfers: AtomicUsize,
    max_data_per_ip: AtomicUsize,
    clients: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    passive: AtomicUsize,
    transfers: AtomicUsize,
    data_per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Connections waiting for their PROXY protocol header, over all
    /// workers (bounded by `--max-clients`, see `reactor/proxy.rs`).
    awaiting_header: AtomicUsize,
    /// More than one worker: sessions that have not logged in are listed
    /// in `unauth` (see "Eviction across workers").
    cross_worker: bool,
    unauth: Mutex<Unauth>,
    /// Upload hooks (`--on-upload`): the slots of `--max-hooks` and the
    /// jobs waiting for one, over all workers (see `crate::hooks`). A
    /// worker whose hook ends starts the next queued job itself, whichever
    /// worker queued it, so no job waits beside a free slot.
    pub hooks: crate::hooks::Queue,
    /// The TLS configuration loaded at start; each worker starts from a
    /// clone (see the module's doc).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsConfig>,
    /// The configuration last read again on SIGHUP (`reread_config`), with
    /// its number (from 1): each worker adopts it once, on its reload.
    reread: Mutex<(u64, Option<Arc<Config>>)>,
    /// Control connections per worker (worker `w` at index `w - 1`), as
    /// each worker publishes them; `usize::MAX` once a worker ended. Read
    /// only where the workers accept from one shared queue (see
    /// [`Shared::fewer_elsewhere`]).
    sessions: Box<[AtomicUsize]>,
    /// Each worker's handle (same indices), to wake a worker that a
    /// connection was left to.
    handles: Mutex<Vec<Option<super::StopHandle>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("clients", &self.clients())
            .field("passive", &self.passive())
            .field("transfers", &self.transfers())
            .finish_non_exhaustive()
    }
}

/// The sessions of all workers that have not logged in, oldest first.
///
/// # Invariants
/// - `live` holds exactly the listed sessions whose owner has not yet
///   taken them out (login, close, worker end); `order` may also hold
///   serials no longer in `live` (skipped when met, pruned when it grows).
/// - `stolen` holds the sessions another worker evicted and whose slot it
///   took; their owner releases nothing when it closes them. A `Vec`: an
///   entry lives only until its owner's next pass sees end-of-file.
#[derive(Default)]
struct Unauth {
    order: VecDeque<u64>,
    live: HashMap<u64, Listed>,
    stolen: Vec<u64>,
}

struct Listed {
    worker: usize,
    fd: RawFd,
    ip: IpAddr,
}

/// A lock over plain counts stays usable after a panic elsewhere.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Add one to `counter` if it is below `max`.
fn try_increment(counter: &AtomicUsize, max: usize) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
}

fn decrement(counter: &AtomicUsize) {
    let before = counter.fetch_sub(1, Ordering::AcqRel);
    debug_assert!(before > 0, "released more than acquired");
}

fn count_down(map: &mut HashMap<IpAddr, u32>, ip: IpAddr) {
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

impl Shared {
    /// Counters at zero, with the limits of `config` (no TLS).
    pub fn new(config: &Config) -> Shared {
        Shared {
            max_clients: AtomicUsize::new(config.max_clients),
            max_per_ip: AtomicUsize::new(config.max_per_ip),
            max_passive: AtomicUsize::new(config.max_passive),
            max_transfers: AtomicUsize::new(config.max_transfers),
            max_data_per_ip: AtomicUsize::new(config.max_data_per_ip),
            clients: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            passive: AtomicUsize::new(0),
            transfers: AtomicUsize::new(0),
            data_per_ip: Mutex::new(HashMap::new()),
            awaiting_header: AtomicUsize::new(0),
            cross_worker: config.workers > 1,
            unauth: Mutex::new(Unauth::default()),
            hooks: crate::hooks::Queue::new(config.max_hooks, crate::hooks::queue_max_jobs()),
            #[cfg(feature = "tls")]
            tls: None,
            reread: Mutex::new((0, None)),
            sessions: (0..if config.workers > 1 { config.workers } else { 0 }).map(|_| AtomicUsize::new(0)).collect(),
            handles: Mutex::new(vec![None; if config.workers > 1 { config.workers } else { 0 }]),
        }
    }

    /// The limits of `config` in force from now on, for every worker.
    pub fn set_limits(&self, config: &Config) {
        self.max_clients.store(config.max_clients, Ordering::Release);
        self.max_per_ip.store(config.max_per_ip, Ordering::Release);
        self.max_passive.store(config.max_passive, Ordering::Release);
        self.max_transfers.store(config.max_transfers, Ordering::Release);
        self.max_data_per_ip.store(config.max_data_per_ip, Ordering::Release);
    }

    /// SIGHUP with `--config`: read the file again with the command line
    /// over it (`Config::reread`). If it loads and validates, `current`
    /// becomes the new configuration (options that need a restart kept,
    /// `Config::adopt`), the limits take its values at once and every
    /// worker is offered it (`reread_since`); otherwise nothing changes.
    /// Logs what changed, what needs a restart, or the file's error (with
    /// its line). Done once per SIGHUP (by the signal thread with
    /// `--workers N`). Returns what happened, for systemd's `STATUS=`;
    /// `None` without `--config`.
    pub fn reread_config(&self, current: &mut Config) -> Option<String> {
        let file = current.origin.file.clone()?;
        let new = match current.reread()? {
            Ok(new) => new,
            Err(e) => {
                log::error!("SIGHUP: keeping the running configuration: {e}");
                return Some(format!("{} NOT reloaded (see the log)", file.display()));
            }
        };
        let adopted = current.adopt(new);
        for key in &adopted.restart {
            log::warn!("SIGHUP: {key} changed in {}; restart to apply", file.display());
        }
        if adopted.applied.is_empty() {
            log::info!("SIGHUP: read {}: no option that applies without a restart changed", file.display());
        } else {
            log::info!("SIGHUP: read {}: {} in force for new sessions", file.display(), adopted.applied.join(", "));
        }
        *current = adopted.config;
        self.set_limits(current);
        let mut reread = self.reread.lock().unwrap_or_else(|e| e.into_inner());
        reread.0 += 1;
        reread.1 = Some(Arc::new(current.clone()));
        let n = adopted.applied.len();
        Some(match adopted.restart.len() {
            0 => format!("{} reloaded ({n} options changed)", file.display()),
            r => format!("{} reloaded ({n} options changed, {r} need a restart)", file.display()),
        })
    }

    /// The configuration read again on SIGHUP after number `seen`, and
    /// its number; `None` if there is none newer.
    pub fn reread_since(&self, seen: u64) -> Option<(u64, Arc<Config>)> {
        let reread = self.reread.lock().unwrap_or_else(|e| e.into_inner());
        match &reread.1 {
            Some(c) if reread.0 > seen => Some((reread.0, c.clone())),
            _ => None,
        }
    }

    /// Counters at zero, and the TLS configuration of `--tls-cert` and
    /// `--tls-key` loaded once for every worker.
    pub fn with_tls(config: &Config) -> Result<Shared, super::StartError> {
        #[allow(unused_mut)]
        let mut shared = Shared::new(config);
        #[cfg(feature = "tls")]
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            shared.tls = Some(crate::tls::TlsConfig::load(cert, key).map_err(|e| super::StartError(e.to_string()))?);
        }
        Ok(shared)
    }

    /// Charge a control connection from `ip` to `--max-per-ip` and
    /// `--max-clients`, or say which is full. The address's share is
    /// checked first: a connection refused for its address is not worth
    /// evicting anyone for.
    pub fn acquire_client(&self, ip: IpAddr) -> Result<(), Refused> {
        let mut map = lock(&self.per_ip);
        let from_ip = map.get(&ip).copied().unwrap_or(0);
        if from_ip as usize >= self.max_per_ip.load(Ordering::Acquire) {
            return Err(Refused::PerIp);
        }
        if !try_increment(&self.clients, self.max_clients.load(Ordering::Acquire)) {
            return Err(Refused::Clients);
        }
        *map.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    /// A control connection from `ip` closed.
    pub fn release_client(&self, ip: IpAddr) {
        let mut map = lock(&self.per_ip);
        count_down(&mut map, ip);
        decrement(&self.clients);
    }

    /// Whether sessions must be listed for eviction across workers
    /// (`note_unauthenticated`): more than one worker.
    pub fn is_cross_worker(&self) -> bool {
        self.cross_worker
    }

    fn unauth(&self) -> MutexGuard<'_, Unauth> {
        self.unauth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// List a new session of `worker` (it has not logged in) whose control
    /// socket is `fd`, so another worker may evict it at the limit.
    pub fn note_unauthenticated(&self, worker: usize, serial: u64, fd: RawFd, ip: IpAddr) {
        let mut u = self.unauth();
        u.order.push_back(serial);
        u.live.insert(serial, Listed { worker, fd, ip });
        if u.order.len() > 2 * u.live.len() + 64 {
            let Unauth { order, live, .. } = &mut *u;
            order.retain(|s| live.contains_key(s));
        }
    }

    /// The listed session logged in: no one may evict it any more. False
    /// if it was no longer listed: another worker evicted it already (its
    /// socket is shut down), and its close must still see that.
    pub fn forget_unauthenticated(&self, serial: u64) -> bool {
        self.unauth().live.remove(&serial).is_some()
    }

    /// A worker ends: none of its sockets may be touched any more, and it
    /// takes no more connections from a shared queue.
    pub fn forget_worker(&self, worker: usize) {
        if self.cross_worker {
            self.unauth().live.retain(|_, l| l.worker != worker);
        }
        self.publish_sessions(worker, usize::MAX);
        self.set_handle(worker, None);
    }

    /// Worker `worker`'s handle (a no-op for worker 0, the only one).
    fn set_handle(&self, worker: usize, handle: Option<super::StopHandle>) {
        let mut handles = lock(&self.handles);
        if let Some(slot) = worker.checked_sub(1).and_then(|i| handles.get_mut(i)) {
            *slot = handle;
        }
    }

    /// Worker `worker` holds `n` control connections now (a no-op with one
    /// worker: worker 0).
    pub fn publish_sessions(&self, worker: usize, n: usize) {
        if let Some(c) = worker.checked_sub(1).and_then(|i| self.sessions.get(i)) {
            c.store(n, Ordering::Relaxed);
        }
    }

    /// Worker `worker` (≥ 1) is running: `handle` wakes it when another
    /// worker leaves it connections ([`Shared::leave_to_fewer`]).
    pub fn register_worker(&self, worker: usize, handle: super::StopHandle) {
        self.set_handle(worker, Some(handle));
    }

    /// Wake every other worker holding fewer control connections than
    /// `mine`: a connection in a shared accept queue is left to them.
    pub fn leave_to_fewer(&self, worker: usize, mine: usize) {
        for (i, handle) in lock(&self.handles).iter().enumerate() {
            if i + 1 != worker && self.sessions[i].load(Ordering::Relaxed) < mine {
                if let Some(handle) = handle {
                    handle.take_shared_accepts();
                }
            }
        }
    }

    /// Whether another worker holds fewer control connections than `mine`.
    ///
    /// Under socket activation every worker accepts from the one inherited
    /// socket, and each new connection wakes them all: the first to run
    /// would drain the queue, and under load one worker can take every
    /// connection. A worker for which this is true leaves the connection
    /// to the others, wakes them ([`Shared::leave_to_fewer`]: the
    /// connection's own wake-up may have found them past their accept) and
    /// takes it itself a moment later if it is still there
    /// (`BALANCE_RETRY`), so nothing waits long on a worker that is busy.
    /// `SO_REUSEPORT` groups need none of this: the kernel
    /// spreads their connections by a hash.
    pub fn fewer_elsewhere(&self, worker: usize, mine: usize) -> bool {
        self.sessions.iter().enumerate().any(|(i, c)| i + 1 != worker && c.load(Ordering::Relaxed) < mine)
    }

    /// A control connection from `ip` closed; `listed`: it was listed by
    /// `note_unauthenticated` and not yet forgotten. Releases its slot,
    /// unless another worker took the slot over when it evicted it.
    pub fn release_session(&self, serial: u64, ip: IpAddr, listed: bool) {
        if listed {
            let mut u = self.unauth();
            if let Some(i) = u.stolen.iter().position(|&s| s == serial) {
                u.stolen.swap_remove(i);
                return;
            }
            u.live.remove(&serial);
        }
        self.release_client(ip);
    }

    /// At `--max-clients`, with no session of its own to evict: evict
    /// the oldest listed session of another worker (its socket is shut
    /// down; its worker closes it) and charge its slot to a new client
    /// from `ip` on `worker`. `Err(Clients)` if there is none to evict.
    pub fn take_over_unauthenticated(&self, worker: usize, ip: IpAddr) -> Result<(), Refused> {
        if !self.cross_worker {
            return Err(Refused::Clients);
        }
        let mut u = self.unauth();
        let mut own = Vec::new();
        let mut victim = None;
        while let Some(serial) = u.order.pop_front() {
            match u.live.get(&serial) {
                // Ours, and our own eviction passed it over (busy): keep it.
                Some(l) if l.worker == worker => own.push(serial),
                Some(_) => {
                    victim = u.live.remove(&serial).map(|l| (serial, l));
                    break;
                }
                None => {}
            }
        }
        for serial in own.into_iter().rev() {
            u.order.push_front(serial);
        }
        let Some((serial, l)) = victim else { return Err(Refused::Clients) };
        let _ = crate::sys::shutdown_both(l.fd);
        u.stolen.push(serial);
        log::info!("evicted session {serial} of worker {} (not logged in) for a new client of worker {worker}: connection limit reached", l.worker);
        let mut map = lock(&self.per_ip);
        count_down(&mut map, l.ip);
        if map.get(&ip).copied().unwrap_or(0) as usize >= self.max_per_ip.load(Ordering::Acquire) {
            decrement(&self.clients);
            return Err(Refused::PerIp);
        }
        *map.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    /// Control connections open, over all workers.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }

    /// Control connections open from `ip`, over all workers.
    pub fn clients_from(&self, ip: IpAddr) -> u32 {
        lock(&self.per_ip).get(&ip).copied().unwrap_or(0)
    }

    /// Charge a passive listener to `--max-passive`.
    pub fn acquire_passive(&self) -> bool {
        try_increment(&self.passive, self.max_passive.load(Ordering::Acquire))
    }

    /// A passive listener closed.
    pub fn release_passive(&self) {
        decrement(&self.passive);
    }

    /// Passive listeners open, over all workers.
    pub fn passive(&self) -> usize {
        self.passive.load(Ordering::Acquire)
    }

    /// Charge a data connection to `--max-transfers`.
    pub fn acquire_transfer(&self) -> bool {
        try_increment(&self.transfers, self.max_transfers.load(Ordering::Acquire))
    }

    /// A data connection closed.
    pub fn release_transfer(&self) {
        decrement(&self.transfers);
    }

    /// Data connections open, over all workers.
    pub fn transfers(&self) -> usize {
        self.transfers.load(Ordering::Acquire)
    }

    /// Charge a passive listener or data connection to `ip`'s share
    /// (`--max-data-per-ip`).
    pub fn acquire_data_slot(&self, ip: IpAddr) -> bool {
        let mut map = lock(&self.data_per_ip);
        let held = map.entry(ip).or_insert(0);
        if *held as usize >= self.max_data_per_ip.load(Ordering::Acquire) {
            if *held == 0 {
                map.remove(&ip);
            }
            return false;
        }
        *held += 1;
        true
    }

    /// Charge `ip`'s share without the check: only for a data connection
    /// that takes over the slot of its own passive listener, charged
    /// before the listener releases it, so that no other session can take
    /// the slot in between (the count is then one too high for an
    /// instant, which can refuse, never admit, one too many).
    pub fn hand_over_data_slot(&self, ip: IpAddr) {
        *lock(&self.data_per_ip).entry(ip).or_insert(0) += 1;
    }

    /// A passive listener or data connection of `ip` closed.
    pub fn release_data_slot(&self, ip: IpAddr) {
        count_down(&mut lock(&self.data_per_ip), ip);
    }

    /// Charge a connection that waits for its PROXY protocol header: at
    /// most `--max-clients` wait at once over all workers (each worker
    /// counting its own would let N times as many in).
    pub fn acquire_awaiting_header(&self) -> bool {
        try_increment(&self.awaiting_header, self.max_clients.load(Ordering::Acquire))
    }

    /// A connection that waited for its header got it, or was closed.
    pub fn release_awaiting_header(&self) {
        decrement(&self.awaiting_header);
    }

    /// Connections waiting for their PROXY protocol header, over all workers.
    pub fn awaiting_header(&self) -> usize {
        self.awaiting_header.load(Ordering::Acquire)
    }

    /// Passive listeners and data connections held by `ip`, over all workers.
    pub fn data_slots_of(&self, ip: IpAddr) -> u32 {
        lock(&self.data_per_ip).get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    fn shared(max_clients: usize, max_per_ip: usize) -> Arc<Shared> {
        let mut c = Config::new("/".into());
        c.max_clients = max_clients;
        c.max_per_ip = max_per_ip;
        c.max_passive = 7;
        c.max_transfers = 5;
        c.max_data_per_ip = 3;
        Arc::new(Shared::new(&c))
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    /// Two threads race for the slots many times over; exactly the limit
    /// succeeds each round, and everything released brings the counts back
    /// to zero.
    #[test]
    fn two_threads_hammering_take_exactly_max_clients() {
        let s = shared(10, 1000);
        for round in 0..200 {
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let threads: Vec<_> = (0..2u8)
                .map(|t| {
                    let (s, barrier) = (s.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let mut got = Vec::new();
                        for i in 0..20u8 {
                            let a = ip(1 + (i + t) % 4);
                            if s.acquire_client(a).is_ok() {
                                got.push(a);
                            }
                        }
                        got
                    })
                })
                .collect();
            let got: Vec<Vec<IpAddr>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 10, "round {round}");
            assert_eq!(s.clients(), 10);
            assert_eq!(s.acquire_client(ip(9)), Err(Refused::Clients));
            for a in got.into_iter().flatten() {
                s.release_client(a);
            }
            assert_eq!(s.clients(), 0);
            assert!(lock(&s.per_ip).is_empty());
        }
    }

    #[test]
    fn two_threads_hammering_take_exactly_max_per_ip() {
        let s = shared(1000, 6);
        for _ in 0..200 {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || (0..10).filter(|_| s.acquire_client(ip(3)).is_ok()).count())
                })
                .collect();
            let n: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
            assert_eq!(n, 6);
            assert_eq!(s.clients_from(ip(3)), 6);
            assert_eq!(s.acquire_client(ip(3)), Err(Refused::PerIp));
            assert_eq!(s.acquire_client(ip(4)), Ok(()));
            s.release_client(ip(4));
            for _ in 0..6 {
                s.release_client(ip(3));
            }
            assert_eq!((s.clients(), s.clients_from(ip(3))), (0, 0));
        }
    }

    #[test]
    fn two_threads_hammering_passive_transfers_and_data_share() {
        let s = shared(1000, 1000);
        for _ in 0..200 {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let p = (0..10).filter(|_| s.acquire_passive()).count();
                        let t = (0..10).filter(|_| s.acquire_transfer()).count();
                        let d = (0..10).filter(|_| s.acquire_data_slot(ip(5))).count();
                        (p, t, d)
                    })
                })
                .collect();
            let r: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(r.iter().map(|x| x.0).sum::<usize>(), 7);
            assert_eq!(r.iter().map(|x| x.1).sum::<usize>(), 5);
            assert_eq!(r.iter().map(|x| x.2).sum::<usize>(), 3);
            assert_eq!((s.passive(), s.transfers(), s.data_slots_of(ip(5))), (7, 5, 3));
            for _ in 0..7 {
                s.release_passive();
            }
            for _ in 0..5 {
                s.release_transfer();
            }
            for _ in 0..3 {
                s.release_data_slot(ip(5));
            }
            assert_eq!((s.passive(), s.transfers(), s.data_slots_of(ip(5))), (0, 0, 0));
            assert!(lock(&s.data_per_ip).is_empty());
        }
    }

    /// A worker with no victim of its own takes over another worker's
    /// listed session: its socket is shut down, its slot changes hands
    /// (the count stays at the limit), and its owner's close releases
    /// nothing. A session that logged in, or of the asking worker, is never
    /// taken.
    #[test]
    fn take_over_shuts_the_victim_down_and_moves_its_slot() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        let mut c = Config::new("/".into());
        c.max_clients = 3;
        c.workers = 2;
        let s = Shared::new(&c);
        let (victim, mut peer) = UnixStream::pair().unwrap();
        let (logged, _p2) = UnixStream::pair().unwrap();
        let (own, _p3) = UnixStream::pair().unwrap();
        for (serial, worker, fd, n) in [(1, 2, victim.as_raw_fd(), 1), (2, 2, logged.as_raw_fd(), 2), (3, 1, own.as_raw_fd(), 3)] {
            s.acquire_client(ip(n)).unwrap();
            s.note_unauthenticated(worker, serial, fd, ip(n));
        }
        assert!(s.forget_unauthenticated(2));
        assert_eq!(s.acquire_client(ip(9)), Err(Refused::Clients));
        assert_eq!(s.take_over_unauthenticated(1, ip(9)), Ok(()));
        let mut buf = [0u8; 1];
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "the victim's socket is shut down");
        assert_eq!((s.clients(), s.clients_from(ip(1)), s.clients_from(ip(9))), (3, 0, 1));
        // The victim's owner closes it: nothing to release.
        s.release_session(1, ip(1), true);
        assert_eq!(s.clients(), 3);
        // Left: one logged in (2), one of worker 1 itself (3).
        assert_eq!(s.take_over_unauthenticated(1, ip(8)), Err(Refused::Clients));
        // Worker 2 may take worker 1's.
        assert_eq!(s.take_over_unauthenticated(2, ip(8)), Ok(()));
        s.release_session(3, ip(3), true);
        s.release_session(2, ip(2), false);
        s.release_client(ip(9));
        s.release_client(ip(8));
        assert_eq!(s.clients(), 0);
        assert!(lock(&s.per_ip).is_empty());
        s.forget_worker(1);
        s.forget_worker(2);
        assert!(s.unauth().live.is_empty() && s.unauth().stolen.is_empty());
    }

    /// Balancing a shared accept queue: a worker defers while another
    /// holds fewer sessions; a worker that ended holds none it could take,
    /// and one worker alone never defers.
    #[test]
    fn a_worker_defers_to_one_with_fewer_sessions_until_that_one_ends() {
        let mut c = Config::new("/".into());
        c.workers = 3;
        let s = Shared::new(&c);
        s.publish_sessions(1, 4);
        s.publish_sessions(2, 4);
        s.publish_sessions(3, 5);
        assert!(!s.fewer_elsewhere(1, 4), "equal counts: both accept");
        assert!(s.fewer_elsewhere(3, 5));
        s.publish_sessions(2, 3);
        assert!(s.fewer_elsewhere(1, 4));
        s.forget_worker(2);
        assert!(!s.fewer_elsewhere(1, 4), "a worker that ended takes nothing");
        assert!(s.fewer_elsewhere(3, 5), "worker 1 still has fewer");
        c.workers = 1;
        let one = Shared::new(&c);
        one.publish_sessions(0, 7);
        assert!(!one.fewer_elsewhere(0, 7));
    }

    #[test]
    fn one_worker_lists_nothing_and_takes_nothing_over() {
        let s = Shared::new(&Config::new("/".into()));
        assert!(!s.is_cross_worker());
        assert_eq!(s.take_over_unauthenticated(0, ip(1)), Err(Refused::Clients));
    }

    #[test]
    fn a_refused_data_slot_leaves_no_entry_and_a_hand_over_keeps_the_slot() {
        let mut c = Config::new("/".into());
        c.max_data_per_ip = 1;
        let s = Shared::new(&c);
        assert!(s.acquire_data_slot(ip(1)));
        assert!(!s.acquire_data_slot(ip(1)));
        s.hand_over_data_slot(ip(1));
        s.release_data_slot(ip(1)); // the listener goes
        assert_eq!(s.data_slots_of(ip(1)), 1); // the data connection holds it
        assert!(!s.acquire_data_slot(ip(1)));
        s.release_data_slot(ip(1));
        assert!(lock(&s.data_per_ip).is_empty());
    }
}
