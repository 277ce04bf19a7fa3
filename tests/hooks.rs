//! The upload hook (`--on-upload CMD`, issue 13): the built binary over
//! real loopback sockets, with hooks that are small shell scripts written
//! by each test into its own temporary directory (outside the served
//! root). What they assert:
//!
//! - the hook's environment is exactly the documented one (paths, user,
//!   size, client address, command; nothing inherited), its descriptors
//!   are only 0–2, its stdin and stdout `/dev/null`, its working directory
//!   `/`, and the file is complete when it runs (sha256 from inside);
//! - uploads that are not complete never fire it: ABOR, a reset data
//!   connection, the control connection dropped mid-transfer, a refused
//!   STOR, and under TLS an upload without `close_notify`; a plain upload
//!   whose client closes the data connection normally IS complete (RFC 959
//!   §3.4: in stream mode that close is the end of the file);
//! - `--max-hooks` bounds the hooks running at once (the bound is reached,
//!   never passed), with one worker and with two, while the server keeps
//!   answering; the bounded queue drops (logged, counted) past its size;
//!   `--hook-timeout` kills a hook and what it started.
//!
//! A hook records itself into a file named after its own PID, renamed into
//! place when complete, so a test reads only whole records. Every wait is
//! bounded (`wait_until`); the server is stopped by PID on drop.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "metrics")]
use common::metrics::scrape_url;
#[cfg(feature = "metrics")]
use common::process::free_port;
use common::process::{need, Server};
use common::{pattern, reset, sha256, wait_until, Ctl, Mode};

/// Long enough for a loaded 2-core machine to start a shell.
const HOOK_WAIT: Duration = Duration::from_secs(30);

/// A test's directory for its hook script and what the hook writes.
struct HookDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl HookDir {
    fn new() -> HookDir {
        let dir = tempfile::Builder::new().prefix("leanftpd-hooks-").tempdir().unwrap();
        let path = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(path.join("rec")).unwrap();
        HookDir { _dir: dir, path }
    }

    /// Write `body` (with `@DIR@` replaced by this directory) as a script;
    /// returns the `--on-upload` command that runs it.
    fn script(&self, name: &str, body: &str) -> String {
        let p = self.path.join(name);
        fs::write(&p, body.replace("@DIR@", &self.path.display().to_string())).unwrap();
        format!("/bin/sh {}", p.display())
    }

    /// The complete records (`rec/*.rec`), each as its `KEY=value` lines.
    fn records(&self) -> Vec<BTreeMap<String, String>> {
        let mut names: Vec<PathBuf> = fs::read_dir(self.path.join("rec"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rec"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect()
            })
            .collect()
    }

    #[track_caller]
    fn wait_records(&self, n: usize) -> Vec<BTreeMap<String, String>> {
        wait_until(&format!("{n} hook records"), HOOK_WAIT, || self.records().len() >= n);
        self.records()
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path.join(name)).unwrap_or_default()
    }
}

/// The recording hook: its environment (`env`), what it finds of the file
/// and of itself, one record per run (named by time and PID, so records
/// sort in the order the hooks ran with `--max-hooks 1`).
///
/// The descriptors are listed by the hook's first command (see
/// [`record_hook`]), before any shell of the test's own opens or saves one.
const RECORD: &str = r#"#!/bin/sh
fdfile=@DIR@/fds.$PPID
[ -e "$fdfile" ] || fdfile=@DIR@/fds.$$
fds=$(sed -n 's/.* \([0-9][0-9]*\) -> \(.*\)$/\1:\2/p' "$fdfile" | tr '\n' ' ')
stdin=$(readlink /proc/$$/fd/0)
rec=@DIR@/rec/$(date +%s%N).$$
{
  env | sed 's/^/ENV_/'
  echo "X_SHA=$(sha256sum < "$LEANFTPD_PATH" | cut -d' ' -f1)"
  echo "X_BYTES=$(wc -c < "$LEANFTPD_PATH")"
  echo "X_CWD=$(pwd)"
  echo "X_STDIN=$stdin"
  echo "X_FDS=$fds"
  echo "X_PID=$$"
  echo "X_PPID=$PPID"
  echo "X_PGID=$(ps -o pgid= -p $$ | tr -d ' ')"
} > "$rec.tmp"
mv "$rec.tmp" "$rec.rec"
"#;

/// The `--on-upload` command of the recording hook: `ls` lists the
/// descriptors `/bin/sh -c` got from the server (and its own: 1, the file
/// it writes; 3, the directory it lists), then the script records.
fn record_hook(hooks: &HookDir) -> String {
    let script = hooks.script("record.sh", RECORD);
    format!("ls -l /proc/self/fd > {}/fds.$$; {script}", hooks.path.display())
}

/// The variables the server sets (the shell itself may add `PWD`).
fn env_of(rec: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    rec.iter()
        .filter_map(|(k, v)| k.strip_prefix("ENV_").map(|k| (k.to_string(), v.clone())))
        .filter(|(k, _)| k != "PWD")
        .collect()
}

fn expected_env(root: &Path, vpath: &str, size: usize, command: &str) -> BTreeMap<String, String> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("LEANFTPD_PATH", format!("{}{vpath}", root.display())),
        ("LEANFTPD_VIRTUAL_PATH", vpath.to_string()),
        ("LEANFTPD_USER", "anonymous".to_string()),
        ("LEANFTPD_SIZE", size.to_string()),
        ("LEANFTPD_CLIENT_ADDR", "127.0.0.1".to_string()),
        ("LEANFTPD_COMMAND", command.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn root_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new().prefix("leanftpd-hooks-root-").tempdir().unwrap();
    let p = fs::canonicalize(d.path()).unwrap();
    (d, p)
}

/// An upload of `bytes` with `command` (STOR x, APPE x, STOU): 1xx, the
/// bytes, a normal close, 226. Returns the 150 reply's text.
#[track_caller]
fn upload(c: &mut Ctl, command: &str, bytes: &[u8]) -> String {
    let (first, mut data) = c.open_transfer(Mode::Epsv, command);
    data.write_all(bytes).unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
    let r = c.reply();
    assert_eq!(r.code, 226, "{command}: {r:?}");
    first.text()
}

fn anon(srv: &Server) -> Ctl {
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "test@example.com");
    c.expect("TYPE I", 200);
    c
}

#[test]
fn the_environment_is_exact_and_the_file_complete_for_stor_appe_stou() {
    need("sha256sum", "coreutils");
    need("ps", "procps");
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    let cmd = record_hook(&hooks);
    let srv = Server::start(&root, &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--max-hooks", "1"]);
    let mut c = anon(&srv);

    // STOR, with a name that would be shell syntax if it were ever
    // interpolated into a command line.
    let name = "/a b;$(touch INJECTED) 'q'\"`x`.jpg";
    let one = pattern(100_000, 1);
    upload(&mut c, &format!("STOR {name}"), &one);
    let recs = hooks.wait_records(1);
    assert_eq!(env_of(&recs[0]), expected_env(&root, name, one.len(), "STOR"), "{:?}", recs[0]);
    assert_eq!(recs[0]["X_SHA"], sha256(&one), "the hook saw the file incomplete");
    assert_eq!(recs[0]["X_BYTES"], one.len().to_string());
    assert_eq!(recs[0]["X_CWD"], "/");
    assert_eq!(recs[0]["X_STDIN"], "/dev/null");
    // The hook leads its own process group: `/bin/sh -c` (this script's
    // parent, or itself if the shell exec'd it) is the leader.
    let pgid = &recs[0]["X_PGID"];
    assert!(pgid == &recs[0]["X_PPID"] || pgid == &recs[0]["X_PID"], "process group {pgid}: {:?}", recs[0]);
    assert_ne!(pgid, &srv.pid().to_string());
    // 0: /dev/null; 1: ls's output file; 2: the server's stderr; 3: the
    // directory ls lists. Anything else (a socket, the epoll, a pidfd, a
    // pipe, a file of the root) leaked from the server.
    let fds: Vec<&str> = recs[0]["X_FDS"].split_whitespace().collect();
    let log = srv.log.display().to_string();
    assert_eq!(fds.len(), 4, "descriptors in the hook: {fds:?}");
    for fd in &fds {
        let (n, target) = fd.split_once(':').unwrap();
        let ok = match n {
            "0" => target == "/dev/null",
            "1" => target.starts_with(&hooks.path.display().to_string()),
            "2" => target == log,
            "3" => target.starts_with("/proc/") && target.ends_with("/fd"),
            _ => false,
        };
        assert!(ok, "descriptor leaked into the hook: {fd} (all: {fds:?})");
    }
    assert!(!root.join("INJECTED").exists() && !Path::new("/INJECTED").exists());

    // APPE: the size and hash are of the whole file.
    let two = pattern(50_000, 2);
    upload(&mut c, &format!("APPE {name}"), &two);
    let recs = hooks.wait_records(2);
    let whole: Vec<u8> = one.iter().chain(&two).copied().collect();
    assert_eq!(env_of(&recs[1]), expected_env(&root, name, whole.len(), "APPE"), "{:?}", recs[1]);
    assert_eq!(recs[1]["X_SHA"], sha256(&whole));

    // STOU in a subdirectory: the name the server chose.
    c.expect("MKD /sub", 257);
    let three = pattern(70_000, 3);
    upload(&mut c, "STOU /sub/cam.jpg", &three);
    let recs = hooks.wait_records(3);
    let vpath = recs[2]["ENV_LEANFTPD_VIRTUAL_PATH"].clone();
    assert!(vpath.starts_with("/sub/"), "{vpath}");
    assert_eq!(env_of(&recs[2]), expected_env(&root, &vpath, three.len(), "STOU"));
    assert_eq!(recs[2]["X_SHA"], sha256(&three));
    assert_eq!(fs::read(root.join(&vpath[1..])).unwrap(), three);

    // Nothing more ran, and each run was logged with its exit status (once
    // reaped, after its record was written).
    wait_until("3 hooks reaped", Duration::from_secs(10), || srv.log_text().matches("upload hook for anonymous ").count() >= 3);
    assert_eq!(hooks.records().len(), 3);
    let log = srv.log_text();
    assert_eq!(log.matches("upload hook for anonymous ").count(), 3, "{log}");
    assert_eq!(log.lines().filter(|l| l.contains("upload hook for anonymous ") && l.contains("exit status: 0")).count(), 3, "{log}");
}

/// Upload `name` completely and wait for its record: everything that
/// happened before it has had its chance to fire a hook (`--max-hooks 1`
/// runs them in order).
#[track_caller]
fn marker(c: &mut Ctl, hooks: &HookDir, name: &str, n: usize) {
    upload(c, &format!("STOR {name}"), b"marker");
    let recs = hooks.wait_records(n);
    assert_eq!(recs[n - 1]["ENV_LEANFTPD_VIRTUAL_PATH"], format!("/{name}"));
}

#[test]
fn interrupted_and_refused_uploads_do_not_fire_it_but_a_normal_close_does() {
    need("sha256sum", "coreutils");
    need("ps", "procps");
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    let cmd = record_hook(&hooks);
    let srv = Server::start(&root, &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--max-hooks", "1"]);
    let mut c = anon(&srv);
    let body = pattern(1 << 20, 7);
    let mut n = 0;

    // ABOR during a STOR: 426 then 226, no hook.
    let (_, mut data) = c.open_transfer(Mode::Epsv, "STOR aborted.bin");
    data.write_all(&body[..256 * 1024]).unwrap();
    c.send("ABOR");
    let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
    assert_eq!(codes, [426, 226]);
    drop(data);
    n += 1;
    marker(&mut c, &hooks, "m1", n);

    // The data connection reset: 426, no hook.
    let (_, mut data) = c.open_transfer(Mode::Epsv, "STOR reset.bin");
    data.write_all(&body[..256 * 1024]).unwrap();
    reset(data);
    let r = c.reply();
    assert!((400..500).contains(&r.code), "{r:?}");
    n += 1;
    marker(&mut c, &hooks, "m2", n);

    // Refused: no such directory (553/550).
    let r = c.cmd("EPSV");
    assert_eq!(r.code, 229);
    let r = c.cmd("STOR /no/such/dir/x.bin");
    assert!(r.code == 550 || r.code == 553, "{r:?}");
    n += 1;
    marker(&mut c, &hooks, "m3", n);

    // The control connection dropped mid-transfer.
    let mut other = anon(&srv);
    let (_, mut data) = other.open_transfer(Mode::Epsv, "STOR dropped.bin");
    data.write_all(&body[..256 * 1024]).unwrap();
    other.shutdown();
    drop(other);
    // The server closes the data connection when the session goes.
    let mut sink = [0u8; 1];
    data.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = std::io::Read::read(&mut data, &mut sink);
    drop(data);
    n += 1;
    marker(&mut c, &hooks, "m4", n);

    // A plain upload whose client closes the data connection normally
    // after half the bytes: in stream mode that IS the end of the file
    // (226), so the hook runs, with the half.
    let half = &body[..body.len() / 2];
    upload(&mut c, "STOR half.bin", half);
    n += 1;
    let recs = hooks.wait_records(n);
    assert_eq!(recs[n - 1]["ENV_LEANFTPD_VIRTUAL_PATH"], "/half.bin");
    assert_eq!(recs[n - 1]["ENV_LEANFTPD_SIZE"], half.len().to_string());
    assert_eq!(recs[n - 1]["X_SHA"], sha256(half));

    let fired: Vec<String> = hooks.records().iter().map(|r| r["ENV_LEANFTPD_VIRTUAL_PATH"].clone()).collect();
    assert_eq!(fired, ["/m1", "/m2", "/m3", "/m4", "/half.bin"]);
    wait_until("5 hooks reaped", Duration::from_secs(10), || srv.log_text().matches("upload hook for anonymous").count() >= 5);
    assert_eq!(srv.log_text().matches("upload hook for anonymous").count(), 5);
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_upload_without_close_notify_does_not_fire_it() {
    use common::tls::{binary_args, Order, TlsClient, TlsCtl, Version};
    need("sha256sum", "coreutils");
    need("ps", "procps");
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    let cmd = record_hook(&hooks);
    let certs = tempfile::tempdir().unwrap();
    let (_files, tls_args) = binary_args(certs.path());
    let mut args: Vec<&str> = vec!["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--max-hooks", "1"];
    args.extend(tls_args.iter().map(String::as_str));
    let srv = Server::start(&root, &args);
    let body = pattern(300_000, 9);
    for v in [Version::Tls12, Version::Tls13] {
        let mut c = TlsCtl::open(srv.addr, TlsClient::new(v));
        c.login("anonymous", "test@example.com");
        c.protect();
        c.expect("TYPE I", 200);
        let cut = format!("cut-{v:?}.bin");
        let (_, mut data) = c.open_transfer(Mode::Epsv, Order::CommandFirst, &format!("STOR {cut}"));
        data.write_all(&body).unwrap();
        data.cut();
        let r = c.reply();
        assert!(r.code == 426 || r.code == 451, "{v:?}: {r:?}");
        // The same upload with close_notify fires it (on a control
        // connection of its own: under TLS 1.3 each data connection
        // resumes with a ticket of its own, see `common::tls`).
        let whole = format!("whole-{v:?}.bin");
        let mut c = TlsCtl::open(srv.addr, TlsClient::new(v));
        c.login("anonymous", "test@example.com");
        c.protect();
        c.expect("TYPE I", 200);
        c.stor(Mode::Epsv, Order::CommandFirst, &whole, &body);
        let n = if v == Version::Tls12 { 1 } else { 2 };
        let recs = hooks.wait_records(n);
        assert_eq!(recs[n - 1]["ENV_LEANFTPD_VIRTUAL_PATH"], format!("/{whole}"));
        assert_eq!(recs[n - 1]["X_SHA"], sha256(&body));
    }
    std::thread::sleep(Duration::from_millis(300));
    let fired: BTreeSet<String> = hooks.records().iter().map(|r| r["ENV_LEANFTPD_VIRTUAL_PATH"].clone()).collect();
    assert_eq!(fired, BTreeSet::from(["/whole-Tls12.bin".to_string(), "/whole-Tls13.bin".to_string()]));
}

/// Counts the hooks running at once under a lock (`flock`): `count` now,
/// `max` the most seen; each finished hook appends its path to `done`.
const CONCURRENCY: &str = r#"#!/bin/sh
d=@DIR@
(
  flock 9
  n=$(( $(cat $d/count) + 1 )); echo $n > $d/count
  if [ "$n" -gt "$(cat $d/max)" ]; then echo $n > $d/max; fi
) 9>>$d/lock
sleep 0.2
(
  flock 9
  echo $(( $(cat $d/count) - 1 )) > $d/count
  echo "$LEANFTPD_VIRTUAL_PATH" >> $d/done
) 9>>$d/lock
"#;

fn concurrency_hook(hooks: &HookDir) -> String {
    need("flock", "util-linux");
    fs::write(hooks.path.join("count"), "0\n").unwrap();
    fs::write(hooks.path.join("max"), "0\n").unwrap();
    fs::write(hooks.path.join("done"), "").unwrap();
    hooks.script("concurrency.sh", CONCURRENCY)
}

fn done(hooks: &HookDir) -> Vec<String> {
    hooks.read("done").lines().map(str::to_string).collect()
}

#[cfg(feature = "metrics")]
#[test]
fn a_hundred_uploads_with_a_slow_hook_run_exactly_max_hooks_at_once_while_the_server_serves() {
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    let cmd = concurrency_hook(&hooks);
    let metrics = format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()));
    let srv = Server::start(&root, &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--max-hooks", "2", "--metrics-listen", &metrics]);
    let mut c = anon(&srv);
    for i in 0..100 {
        upload(&mut c, &format!("STOR f{i:03}"), b"x");
    }
    // A hundred hooks of 0.2 s, two at a time, take 10 s: the uploads were
    // answered long before, and another session is answered now.
    let mut other = anon(&srv);
    other.expect("NOOP", 200);
    let listing = other.listing(Mode::Epsv, "NLST");
    assert_eq!(listing.lines().count(), 100, "{listing}");
    let finished = done(&hooks).len();
    assert!(finished < 100, "the hooks were all done ({finished}) before the other session was answered");
    let m = scrape_url(&format!("http://{metrics}/metrics"));
    assert!(m.get("leanftpd_upload_hooks_queued") > 0, "{}", m.text);
    assert_eq!(m.get("leanftpd_upload_hooks_running"), 2);

    wait_until("100 hooks done", Duration::from_secs(120), || done(&hooks).len() >= 100);
    let all: BTreeSet<String> = done(&hooks).into_iter().collect();
    assert_eq!(all.len(), 100);
    assert_eq!(hooks.read("max").trim(), "2", "the most hooks running at once");
    let m = scrape_url(&format!("http://{metrics}/metrics"));
    wait_until("the last hooks reaped", Duration::from_secs(10), || {
        scrape_url(&format!("http://{metrics}/metrics")).get("leanftpd_upload_hooks_finished_total{result=\"ok\"}") == 100
    });
    drop(m);
    let m = scrape_url(&format!("http://{metrics}/metrics"));
    assert_eq!(m.get("leanftpd_upload_hooks_started_total"), 100);
    m.family_is("leanftpd_upload_hooks_finished_total", &[("result=\"ok\"", 100)]);
    m.family_is("leanftpd_upload_hooks_dropped_total", &[]);
    assert_eq!(m.get("leanftpd_upload_hooks_running"), 0);
    assert_eq!(m.get("leanftpd_upload_hooks_queued"), 0);
}

#[test]
fn max_hooks_holds_across_two_workers() {
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    let cmd = concurrency_hook(&hooks);
    let srv = Server::start(&root, &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--max-hooks", "2", "--workers", "2"]);
    // Sessions on both workers (the kernel spreads them by the source
    // port's hash: 16 all on one worker is a chance of 1 in 32,768).
    let mut clients: Vec<Ctl> = (0..16).map(|_| anon(&srv)).collect();
    let locals: Vec<std::net::SocketAddr> = clients.iter().map(|c| c.local).collect();
    let workers = common::workers::workers_of(&srv, &locals);
    assert_eq!(common::workers::tally(&workers).len(), 2, "sessions on one worker only: {workers:?}");
    std::thread::scope(|s| {
        for (i, c) in clients.iter_mut().enumerate() {
            s.spawn(move || {
                for j in 0..3 {
                    upload(c, &format!("STOR w{i}-{j}"), b"y");
                }
            });
        }
    });
    wait_until("48 hooks done", Duration::from_secs(120), || done(&hooks).len() >= 48);
    assert_eq!(done(&hooks).into_iter().collect::<BTreeSet<_>>().len(), 48);
    assert_eq!(hooks.read("max").trim(), "2", "the most hooks running at once over both workers");
    // Uploads completed on both workers (each logs its transfers with its
    // name). Which worker runs a hook is whichever frees a slot: a queued
    // job is started by the worker whose hook ended.
    let log = srv.log_text();
    for w in ["(worker 1)", "(worker 2)"] {
        assert!(log.lines().any(|l| l.contains(w) && l.contains("Stor /w") && l.ends_with(": ok")), "no upload completed on {w}:\n{log}");
    }
    // A hook writes `done` before it exits: its line comes once reaped.
    let reaped = || srv.log_text().lines().filter(|l| l.contains("upload hook for anonymous /w") && l.contains("exit status: 0")).count();
    wait_until("48 hooks reaped", Duration::from_secs(10), || reaped() >= 48);
    assert_eq!(reaped(), 48);
}

/// Waits for `@DIR@/go` (bounded), then records its path.
const GATED: &str = r#"#!/bin/sh
i=0
while [ ! -e @DIR@/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
echo "$LEANFTPD_VIRTUAL_PATH" >> @DIR@/done
"#;

#[cfg(feature = "metrics")]
#[test]
fn past_the_queue_jobs_are_dropped_logged_and_counted_and_the_server_serves() {
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    fs::write(hooks.path.join("done"), "").unwrap();
    let cmd = hooks.script("gated.sh", GATED);
    let metrics = format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()));
    // A queue of 2 (test builds only, `fault-injection`).
    let srv = Server::start_wrapped(
        &["env", "LEANFTPD_TEST_HOOK_QUEUE_JOBS=2"],
        "127.0.0.1".parse().unwrap(),
        &root,
        &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--max-hooks", "1", "--metrics-listen", &metrics],
    );
    let mut c = anon(&srv);
    // One runs (waiting for `go`), two wait, three are dropped.
    for i in 0..6 {
        upload(&mut c, &format!("STOR q{i}"), b"z");
    }
    c.expect("NOOP", 200);
    let m = scrape_url(&format!("http://{metrics}/metrics"));
    m.family_is("leanftpd_upload_hooks_dropped_total", &[("reason=\"queue_full\"", 3)]);
    assert_eq!(m.get("leanftpd_upload_hooks_running"), 1);
    assert_eq!(m.get("leanftpd_upload_hooks_queued"), 2);
    let log = srv.log_text();
    for i in 3..6 {
        assert!(log.lines().any(|l| l.contains("upload hook dropped for anonymous") && l.contains(&format!("/q{i} "))), "q{i} not logged as dropped:\n{log}");
    }
    assert_eq!(log.matches("upload hook dropped").count(), 3, "{log}");
    // The server serves meanwhile: another session, a listing.
    let mut other = anon(&srv);
    assert_eq!(other.listing(Mode::Epsv, "NLST").lines().count(), 6);

    fs::write(hooks.path.join("go"), "").unwrap();
    wait_until("three hooks done", HOOK_WAIT, || done(&hooks).len() >= 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(done(&hooks), ["/q0", "/q1", "/q2"]);
    wait_until("three hooks reaped", Duration::from_secs(10), || {
        scrape_url(&format!("http://{metrics}/metrics")).get("leanftpd_upload_hooks_finished_total{result=\"ok\"}") == 3
    });
    // The queue has room again.
    upload(&mut c, "STOR q6", b"z");
    wait_until("the next hook", HOOK_WAIT, || done(&hooks).len() >= 4);
    assert_eq!(done(&hooks)[3], "/q6");
}

/// Never ends by itself: a child `sleep` whose PID it records, and waits.
#[cfg(feature = "metrics")]
const FOREVER: &str = r#"#!/bin/sh
sleep 1000 &
echo $! > @DIR@/sleep.pid
wait
"#;

#[cfg(feature = "metrics")]
#[test]
fn a_hook_past_its_timeout_is_killed_with_what_it_started_and_logged() {
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    let cmd = hooks.script("forever.sh", FOREVER);
    let metrics = format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()));
    let srv = Server::start(&root, &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--hook-timeout", "1", "--metrics-listen", &metrics]);
    let mut c = anon(&srv);
    upload(&mut c, "STOR forever.bin", b"f");
    wait_until("the hook's sleep", HOOK_WAIT, || !hooks.read("sleep.pid").trim().is_empty());
    let sleep_pid: u32 = hooks.read("sleep.pid").trim().parse().unwrap();
    wait_until("the hook killed and reaped", Duration::from_secs(15), || {
        scrape_url(&format!("http://{metrics}/metrics")).get("leanftpd_upload_hooks_finished_total{result=\"killed\"}") == 1
    });
    let log = srv.log_text();
    assert!(log.lines().any(|l| l.contains("upload hook for anonymous /forever.bin killed after") && l.contains("--hook-timeout")), "{log}");
    assert!(log.lines().any(|l| l.contains("upload hook for anonymous /forever.bin: signal: 9")), "{log}");
    // Its child went with it (same process group); reaped by init.
    wait_until("the hook's sleep gone", Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{sleep_pid}/cmdline")).map_or(true, |s| !s.starts_with("sleep"))
    });
    let m = scrape_url(&format!("http://{metrics}/metrics"));
    assert_eq!(m.get("leanftpd_upload_hooks_started_total"), 1);
    m.family_is("leanftpd_upload_hooks_finished_total", &[("result=\"killed\"", 1)]);
    assert_eq!(m.get("leanftpd_upload_hooks_running"), 0);
    c.expect("NOOP", 200);
}

#[test]
fn sigterm_waits_for_running_hooks_and_drops_queued_ones() {
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    fs::write(hooks.path.join("done"), "").unwrap();
    let cmd = hooks.script("gated.sh", GATED);
    let mut srv = Server::start(&root, &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--max-hooks", "1", "--shutdown-grace", "20"]);
    let mut c = anon(&srv);
    for i in 0..3 {
        upload(&mut c, &format!("STOR s{i}"), b"s");
    }
    c.expect("QUIT", 221);
    srv.signal("TERM");
    wait_until("the queued jobs dropped", HOOK_WAIT, || srv.log_text().matches("upload hook dropped").count() == 2);
    // The running hook holds the exit until it ends.
    std::thread::sleep(Duration::from_millis(500));
    assert!(srv.wait_exit(Duration::from_millis(10)).is_none(), "exited with a hook running");
    fs::write(hooks.path.join("go"), "").unwrap();
    let st = srv.wait_exit(Duration::from_secs(15)).expect("the server exits once its hook ended");
    assert!(st.success(), "{st:?}");
    assert_eq!(done(&hooks), ["/s0"]);
    let log = srv.log_text();
    for name in ["/s1", "/s2"] {
        assert!(log.lines().any(|l| l.contains("upload hook dropped for anonymous") && l.contains(name) && l.contains("shutting down")), "{log}");
    }
}

/// Behind a load balancer (`--proxy-protocol`), the hook is told the real
/// client's address, the one the PROXY header named, not the balancer's.
#[cfg(feature = "proxy")]
#[test]
fn behind_the_proxy_protocol_the_client_address_is_the_real_one() {
    use common::balancer::{connect_bound, v1};
    need("sha256sum", "coreutils");
    need("ps", "procps");
    let (_r, root) = root_dir();
    let hooks = HookDir::new();
    let cmd = record_hook(&hooks);
    let srv = Server::start_unprobed(&root, &["--no-sandbox", "--anonymous-write", "--on-upload", &cmd, "--proxy-protocol", "--proxy-from", "127.0.0.2/32"]);
    let mut s = connect_bound("127.0.0.2", srv.addr);
    s.write_all(&v1("127.0.0.3", 40011, srv.addr)).unwrap();
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
    c.login("anonymous", "x@y");
    c.expect("TYPE I", 200);
    let addr = c.pasv();
    c.send("STOR cam.jpg");
    // The data connection straight from the real client.
    let mut data = connect_bound("127.0.0.3", addr);
    assert!(c.reply().is_preliminary());
    data.write_all(b"picture").unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
    assert_eq!(c.reply().code, 226);
    let recs = hooks.wait_records(1);
    assert_eq!(recs[0]["ENV_LEANFTPD_CLIENT_ADDR"], "127.0.0.3");
    assert_eq!(recs[0]["ENV_LEANFTPD_VIRTUAL_PATH"], "/cam.jpg");
}

/// The hook of `under_the_sandbox_…`: what it could and could not reach,
/// written next to the uploaded file (inside the served tree).
const CONFINED: &str = r#"#!/bin/sh
out="$(dirname "$LEANFTPD_PATH")/hook-result.txt"
if (echo x > @DIR@/outside) 2>/dev/null; then o=yes; else o=no; fi
if (cat @DIR@/secret > /dev/null) 2>/dev/null; then s=yes; else s=no; fi
{
  echo "outside_write=$o"
  echo "secret_read=$s"
  echo "size=$(wc -c < "$LEANFTPD_PATH")"
} > "$out.tmp" && mv "$out.tmp" "$out"
"#;

/// Under the sandbox (the default), the hook is confined as the server
/// is (Landlock's domain is inherited): it runs the script `--on-upload`
/// names by absolute path and works in the served tree, but it can write
/// nothing outside it and read no other file beside its script. Without
/// the sandbox the same hook reaches both (so the test can fail).
#[test]
fn under_the_sandbox_the_hook_reaches_the_served_tree_and_nothing_else() {
    need("wc", "coreutils");
    for (sandbox, expect) in [(true, "no"), (false, "yes")] {
        let (_r, root) = root_dir();
        let hooks = HookDir::new();
        fs::write(hooks.path.join("secret"), b"not for hooks").unwrap();
        let cmd = hooks.script("confined.sh", CONFINED);
        let mut args = vec!["--anonymous-write", "--on-upload", &cmd];
        if !sandbox {
            args.insert(0, "--no-sandbox");
        }
        let srv = Server::start(&root, &args);
        let mut c = anon(&srv);
        let body = pattern(50_000, 3);
        upload(&mut c, "STOR pic.jpg", &body);
        let result = root.join("hook-result.txt");
        wait_until("the hook's result in the served tree", HOOK_WAIT, || result.exists());
        let text = fs::read_to_string(&result).unwrap();
        assert!(text.contains(&format!("outside_write={expect}\n")), "sandbox {sandbox}: {text}");
        assert!(text.contains(&format!("secret_read={expect}\n")), "sandbox {sandbox}: {text}");
        assert!(text.contains("size=50000\n"), "{text}");
        assert_eq!(hooks.path.join("outside").exists(), !sandbox);
        drop(srv);
    }
}

/// A hook that cannot be started (test builds make every spawn fail, as a
/// missing `/bin/sh` or a full process table would) gives its slot back at
/// once: with `--max-hooks 1`, ten uploads give ten logged, counted spawn
/// errors, nothing stays running or queued, and uploads go on.
#[cfg(all(feature = "metrics", feature = "fault-injection"))]
#[test]
fn hooks_that_cannot_start_give_their_slot_back_and_are_counted() {
    let (_r, root) = root_dir();
    let metrics = format!("127.0.0.1:{}", free_port("127.0.0.1".parse().unwrap()));
    let srv = Server::start_wrapped(
        &["env", "LEANFTPD_TEST_HOOK_SPAWN_FAIL=1"],
        "127.0.0.1".parse().unwrap(),
        &root,
        &["--anonymous-write", "--on-upload", "true", "--max-hooks", "1", "--metrics-listen", &metrics],
    );
    let mut c = anon(&srv);
    for i in 0..10 {
        upload(&mut c, &format!("STOR f{i}"), b"x");
    }
    c.expect("NOOP", 200);
    let url = format!("http://{metrics}/metrics");
    wait_until("10 spawn errors", Duration::from_secs(10), || {
        scrape_url(&url).get("leanftpd_upload_hooks_dropped_total{reason=\"spawn_error\"}") == 10
    });
    let m = scrape_url(&url);
    assert_eq!(m.get("leanftpd_upload_hooks_running"), 0, "{}", m.text);
    assert_eq!(m.get("leanftpd_upload_hooks_queued"), 0, "{}", m.text);
    assert_eq!(m.get("leanftpd_upload_hooks_started_total"), 0, "{}", m.text);
    assert_eq!(srv.log_text().matches("spawn refused (fault injection)").count(), 10, "{}", srv.log_text());
    for i in 0..10 {
        assert_eq!(fs::read(root.join(format!("f{i}"))).unwrap(), b"x");
    }
}
