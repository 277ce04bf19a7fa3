//! The helper thread: the one place where slow CPU work (password hashing,
//! by design tens of milliseconds) runs, so that the loop never stalls.
//! Jobs go in over a channel; verdicts come back in a shared list and the
//! reactor is woken through `mio::Waker`.
//!
//! It never touches a socket or the slab.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::Waker;

use crate::auth::{Grant, LoginDigest, Password, Users};

/// A password to check for the session at slab key `key`.
pub struct Job {
    /// The session's slab key.
    pub key: usize,
    /// The session's serial number (guards against a reused key).
    pub serial: u64,
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

/// The helper thread and its queues.
pub struct Helper {
    jobs: Option<Sender<Job>>,
    done: Arc<Mutex<Vec<Verdict>>>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Start the thread; it wakes the reactor through `waker`.
    pub fn spawn(waker: Arc<Waker>) -> std::io::Result<Helper> {
        let (tx, rx) = channel::<Job>();
        let done = Arc::new(Mutex::new(Vec::new()));
        let out = done.clone();
        let thread = std::thread::Builder::new().name("leanftpd-helper".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                let grant = job.users.verify(&job.user, &job.password);
                drop(job.password);
                if let Ok(mut list) = out.lock() {
                    list.push(Verdict { key: job.key, serial: job.serial, grant, digest: Some(job.digest) });
                }
                let _ = waker.wake();
            }
        })?;
        Ok(Helper { jobs: Some(tx), done, thread: Some(thread) })
    }

    /// Queue a job.
    pub fn submit(&self, job: Job) {
        if let Some(tx) = &self.jobs {
            let _ = tx.send(job);
        }
    }

    /// Move the finished verdicts into `into`.
    pub fn drain(&self, into: &mut Vec<Verdict>) {
        if let Ok(mut list) = self.done.lock() {
            into.append(&mut list);
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
