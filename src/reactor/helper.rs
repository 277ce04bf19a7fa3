//! The helper thread: the one place where slow CPU work (password hashing,
//! by design tens of milliseconds) runs, so that the loop never stalls.
//! Jobs wait in a bounded queue shared with the thread; verdicts come back
//! in a shared list and the reactor is woken through `mio::Waker`.
//!
//! It never touches a socket or the slab.
//!
//! # The queue is a per-session resource
//! Every PASS of a real user costs the thread one hash, and any client can
//! send PASS without an account (unknown users cost the same, so that no
//! one can tell them apart). So:
//! - the queue holds at most [`MAX_JOBS`] jobs, and jobs from one client
//!   address at most [`MAX_JOBS_PER_ADDRESS`]: a PASS past the address's
//!   share is refused at once ([`Full`]; the reactor answers `421` and
//!   closes). When the whole queue is full, a newcomer whose address has
//!   fewer jobs waiting than the busiest address takes the place of that
//!   address's newest job (which is refused instead), so a few flooding
//!   addresses cannot keep everyone else out;
//! - a session that closes takes its waiting job out ([`Helper::cancel`]),
//!   so a flood of PASS-and-reset costs no hashing at all;
//! - the thread takes next the job of the address it served least among
//!   its last [`FAIRNESS_WINDOW`] jobs (oldest first among equals), so an
//!   honest login from another address waits for at most the job in hand
//!   and its own, whatever one address floods.
//!
//! Passwords longer than `auth::MAX_PASSWORD_LEN` never get here (PASS
//! refuses them before any hashing).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use mio::Waker;

use crate::auth::{Grant, LoginDigest, Password, Users};

/// Password checks waiting at most, from all sessions.
pub const MAX_JOBS: usize = 64;
/// Password checks waiting at most from one client address.
pub const MAX_JOBS_PER_ADDRESS: usize = 8;
/// How many served jobs the thread remembers to choose the next fairly.
pub const FAIRNESS_WINDOW: usize = 32;

/// A password to check for the session at slab key `key`.
pub struct Job {
    /// The session's slab key.
    pub key: usize,
    /// The session's serial number (guards against a reused key).
    pub serial: u64,
    /// The client's address (the per-address share and the fair order).
    pub ip: IpAddr,
    /// The user name.
    pub user: Box<[u8]>,
    /// The password.
    pub password: Password,
    /// The users database as it was when the job was made.
    pub users: Arc<Users>,
    /// The keyed digest of the attempt, for the login cache.
    pub digest: LoginDigest,
}

/// A checked password.
pub struct Verdict {
    /// The session's slab key.
    pub key: usize,
    /// The session's serial number.
    pub serial: u64,
    /// What the login grants, if it succeeded.
    pub grant: Option<Grant>,
    /// The attempt's digest (a success is cached under it).
    pub digest: Option<LoginDigest>,
}

/// Why a job was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// [`MAX_JOBS`] jobs wait already.
    Total,
    /// [`MAX_JOBS_PER_ADDRESS`] jobs of this address wait already.
    Address,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    done: Vec<Verdict>,
    /// Addresses of the last jobs served, newest last.
    served: VecDeque<IpAddr>,
    stop: bool,
}

impl Queue {
    /// Whether one more job from `ip` may wait: `Ok(None)` if there is
    /// room, `Ok(Some(i))` if the job at `i` (the newest of the address
    /// with most jobs, which has more than `ip`) must make room for it.
    fn admit(&self, ip: IpAddr) -> Result<Option<usize>, Full> {
        let mine = self.jobs.iter().filter(|j| j.ip == ip).count();
        if mine >= MAX_JOBS_PER_ADDRESS {
            return Err(Full::Address);
        }
        if self.jobs.len() < MAX_JOBS {
            return Ok(None);
        }
        // At most 64 × 64 comparisons, only when the queue is full.
        let busiest = self
            .jobs
            .iter()
            .map(|j| (self.jobs.iter().filter(|k| k.ip == j.ip).count(), j.ip))
            .max_by_key(|&(n, _)| n);
        match busiest {
            Some((n, busy_ip)) if n > mine + 1 => Ok(self.jobs.iter().rposition(|j| j.ip == busy_ip)),
            _ => Err(Full::Total),
        }
    }

    fn cancel(&mut self, key: usize, serial: u64) {
        self.jobs.retain(|j| j.key != key || j.serial != serial);
    }

    /// The index of the job to serve next: fewest recent services of its
    /// address, oldest first among equals. At most 64 × 32 comparisons,
    /// next to a hash that takes milliseconds.
    fn pick(&self) -> Option<usize> {
        (0..self.jobs.len()).min_by_key(|&i| {
            let ip = self.jobs[i].ip;
            (self.served.iter().filter(|&&s| s == ip).count(), i)
        })
    }
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic on the thread while holding the lock leaves the queue
        // usable: it holds only plain data.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The helper thread and its queues.
pub struct Helper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Start the thread; it wakes the reactor through `waker`.
    pub fn spawn(waker: Arc<Waker>) -> std::io::Result<Helper> {
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), ready: Condvar::new() });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new().name("leanftpd-helper".into()).spawn(move || loop {
            let job = {
                let mut q = theirs.lock();
                loop {
                    if q.stop {
                        return;
                    }
                    if let Some(i) = q.pick() {
                        let job = q.jobs.remove(i).expect("picked index is in range");
                        if q.served.len() == FAIRNESS_WINDOW {
                            q.served.pop_front();
                        }
                        q.served.push_back(job.ip);
                        break job;
                    }
                    q = theirs.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let grant = job.users.verify(&job.user, &job.password);
            let verdict = Verdict { key: job.key, serial: job.serial, grant, digest: Some(job.digest) };
            drop(job);
            theirs.lock().done.push(verdict);
            let _ = waker.wake();
        })?;
        Ok(Helper { shared, thread: Some(thread) })
    }

    /// Queue a job, or refuse it when the queue or this address's share of
    /// it is full. `Ok(Some((key, serial)))`: that session's job was taken
    /// out to make room (see the module's doc); the reactor refuses it.
    pub fn submit(&self, job: Job) -> Result<Option<(usize, u64)>, Full> {
        let mut q = self.shared.lock();
        let evicted = match q.admit(job.ip)? {
            Some(i) => q.jobs.remove(i).map(|j| (j.key, j.serial)),
            None => None,
        };
        q.jobs.push_back(job);
        drop(q);
        self.shared.ready.notify_one();
        Ok(evicted)
    }

    /// Forget the waiting job of a session that closed (no hash is spent
    /// on it). A job already being checked finishes; its verdict is
    /// ignored by serial.
    pub fn cancel(&self, key: usize, serial: u64) {
        self.shared.lock().cancel(key, serial);
    }

    /// Jobs waiting (not counting the one being checked).
    pub fn waiting(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Move the finished verdicts into `into`.
    pub fn drain(&self, into: &mut Vec<Verdict>) {
        into.append(&mut self.shared.lock().done);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.ready.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::LoginCache;
    use std::net::Ipv4Addr;

    fn job(key: usize, ip: u8) -> Job {
        let users = Arc::new(Users::empty());
        Job {
            key,
            serial: key as u64,
            ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip)),
            user: b"u".as_slice().into(),
            password: Password::new(b"p"),
            users,
            digest: LoginCache::new(std::time::Duration::ZERO, 1).digest(b"u", &Password::new(b"p")),
        }
    }

    #[test]
    fn fair_pick_serves_a_quiet_address_before_a_flooding_one() {
        let mut q = Queue::default();
        for k in 0..8 {
            q.jobs.push_back(job(k, 2));
        }
        q.jobs.push_back(job(100, 3));
        // Nothing served yet: oldest first.
        assert_eq!(q.pick(), Some(0));
        q.served.push_back(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        // .2 was just served; .3 has not been: its job jumps the queue.
        assert_eq!(q.jobs[q.pick().unwrap()].key, 100);
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn the_queue_and_each_address_have_a_bound() {
        let mut q = Queue::default();
        for k in 0..MAX_JOBS_PER_ADDRESS {
            assert_eq!(q.admit(ip(2)), Ok(None));
            q.jobs.push_back(job(k, 2));
        }
        assert_eq!(q.admit(ip(2)), Err(Full::Address));
        // Fill the rest from addresses with one job each.
        let mut k = 100;
        while q.jobs.len() < MAX_JOBS {
            let n = 10 + (k % 100) as u8;
            assert_eq!(q.admit(ip(n)), Ok(None), "job {k}");
            q.jobs.push_back(job(k, n));
            k += 1;
        }
        // Full: a newcomer takes the place of the busiest address's newest
        // job (127.0.0.2 has 8, the newcomer none).
        let i = q.admit(ip(250)).unwrap().expect("room made");
        assert_eq!((q.jobs[i].key, q.jobs[i].ip), (MAX_JOBS_PER_ADDRESS - 1, ip(2)));
        // An address that already has as many as the busiest but one is refused.
        let mut even = Queue::default();
        for k in 0..MAX_JOBS {
            even.jobs.push_back(job(k, (k / 2) as u8));
        }
        // Every address has 2: one with 2 would gain nothing by evicting.
        assert_eq!(even.admit(ip(0)), Err(Full::Total));
        // One with none may take a job from an address with 2 (both end at 1).
        assert!(matches!(even.admit(ip(200)), Ok(Some(_))));
        // One with 1 may not (it would only swap who has 2).
        even.jobs.pop_back();
        even.jobs.push_back(job(999, 201));
        assert_eq!(even.admit(ip(201)), Err(Full::Total));
    }

    #[test]
    fn a_cancelled_job_leaves_the_queue_and_only_it() {
        let mut q = Queue::default();
        q.jobs.push_back(job(1, 2));
        q.jobs.push_back(job(2, 2));
        q.cancel(2, 2);
        q.cancel(1, 999); // same key, another session: kept
        assert_eq!(q.jobs.iter().map(|j| j.key).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn the_thread_checks_jobs_and_stops_on_drop() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let helper = Helper::spawn(waker).unwrap();
        helper.submit(job(7, 2)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut verdicts = Vec::new();
        while verdicts.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            helper.drain(&mut verdicts);
        }
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].key, 7);
        assert!(verdicts[0].grant.is_none(), "an unknown user never logs in");
    }
}
