//! The guard of rule 3 ("an idle client costs almost nothing") and of
//! STYLE.md's "keeping the hot path allocation-free": a counting global
//! allocator asserts that `NOOP` and `PWD` round trips through a logged-in
//! `Session` allocate nothing, and `size_of::<Session>()` is pinned so that
//! an idle session stays small (sozu's `size_test`, kept live).
//!
//! Only allocations made on the test's own thread are counted (a const
//! thread-local counter, which itself never allocates), so the test
//! harness's other threads cannot disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;

use leanftpd::config::Config;
use leanftpd::ftp::session::{Action, Ctx, Env, Session};
use leanftpd::vfs::Vfs;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local `Cell` with no destructor, so
// touching it neither allocates nor re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `size_of::<Session>()` when this guard was last reviewed, rounded up to a
/// multiple of 16. Raise it only with a reason: every idle client holds one.
const SESSION_MAX_BYTES: usize = 192;

/// Rule 3's target for an idle, logged-in session, all user-space memory.
const IDLE_SESSION_TARGET_BYTES: usize = 512;

fn env(root: &std::path::Path) -> Env {
    let config = Config::new(root.to_path_buf());
    let vfs = Vfs::open(root, false).expect("open the served directory");
    Env { config, anonymous: Some(Rc::new(vfs)), has_users: false, metrics: Default::default() }
}

fn logged_in(env: &Env, out: &mut Vec<u8>) -> Session {
    let mut s = Session::new("127.0.0.1:5000".parse().unwrap(), "127.0.0.1:2121".parse().unwrap());
    for (line, code) in [(&b"USER anonymous"[..], &b"331 "[..]), (b"PASS guest@", b"230 ")] {
        out.clear();
        let mut ctx = Ctx { out, env, now_unix: 0 };
        let a = s.handle(line, &mut ctx);
        assert!(matches!(a, Action::None));
        assert!(out.starts_with(code), "{:?}", String::from_utf8_lossy(out));
    }
    s
}

#[test]
fn noop_and_pwd_round_trips_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut out = Vec::with_capacity(256);
    let mut s = logged_in(&env, &mut out);
    // Warm up: the output buffer reaches its working size.
    for line in [&b"NOOP"[..], b"PWD"] {
        out.clear();
        let mut ctx = Ctx { out: &mut out, env: &env, now_unix: 0 };
        s.handle(line, &mut ctx);
    }

    let before = allocations();
    let mut bytes = 0usize;
    for _ in 0..10_000 {
        for line in [&b"NOOP"[..], b"PWD"] {
            out.clear();
            let mut ctx = Ctx { out: &mut out, env: &env, now_unix: 0 };
            let a = s.handle(line, &mut ctx);
            assert!(matches!(a, Action::None));
            bytes += out.len();
        }
    }
    let made = allocations() - before;

    assert!(out.starts_with(b"257 \"/\""), "{:?}", String::from_utf8_lossy(&out));
    assert!(bytes > 0);
    assert_eq!(made, 0, "10 000 NOOP + 10 000 PWD round trips made {made} allocations");
}

#[test]
fn an_idle_session_is_small() {
    let size = std::mem::size_of::<Session>();
    println!("size_of::<Session>() = {size} bytes (guard {SESSION_MAX_BYTES})");
    assert!(
        size <= SESSION_MAX_BYTES,
        "Session grew to {size} bytes (guard {SESSION_MAX_BYTES}): every idle client pays for it"
    );
    const { assert!(SESSION_MAX_BYTES <= IDLE_SESSION_TARGET_BYTES) };

    // A logged-in anonymous session at `/` owns only its user name on the
    // heap ("anonymous"); the filesystem is shared.
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let mut out = Vec::new();
    let before = allocations();
    let s = logged_in(&env, &mut out);
    drop(out);
    let heap_allocs = allocations() - before;
    println!("allocations to create and log in a session (with its reply buffer): {heap_allocs}");
    let name = s.user().len();
    assert!(size + name <= IDLE_SESSION_TARGET_BYTES, "{size} + {name} bytes");
}
