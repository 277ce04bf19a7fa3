//! Real clients against the built binary.
//!
//! Each test starts `leanftpd` (the binary cargo built for this package) as a
//! child process on a free loopback port with a temporary root, drives it with
//! a real FTP client (curl, lftp, Python's ftplib, tnftp) and checks what
//! really happened: sha256 of downloaded files, bytes on disk after uploads,
//! listing contents, exit codes.
//!
//! A client tool that is not installed fails the test (never skips it): run
//! `.ci/setup.sh`. Every wait is bounded; the server is stopped by PID on drop
//! (SIGTERM, bounded wait, then SIGKILL) and its log is printed when the test
//! fails.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv6Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

mod common;
use common::process::*;


// ---------------------------------------------------------------------------
// Helpers: tools, hashing, data

fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(p: &Path) -> String {
    sha256(&fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
}

/// `len` pseudo-random bytes (xorshift64*, seeded from the clock and `salt`).
fn random_bytes(len: usize, salt: u64) -> Vec<u8> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut x = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((std::process::id() as u64) << 32)) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_file(p: &Path, bytes: &[u8]) {
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Every entry under `root`, by relative path: `dir` for a directory, the
/// sha256 and size for a file.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                let bytes = fs::read(&p).unwrap();
                out.insert(rel, format!("{} bytes sha256 {}", bytes.len(), sha256(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A tree with nested directories, names with spaces and UTF-8, a 0-byte
/// file and a file larger than one socket buffer.
fn make_tree(root: &Path, salt: u64) {
    write_file(&root.join("top.txt"), b"top level\r\nsecond line\n");
    write_file(&root.join("with space.txt"), b"a name with a space\n");
    write_file(&root.join("été.txt"), "un nom en UTF-8 : été\n".as_bytes());
    write_file(&root.join("empty.dat"), b"");
    write_file(&root.join("a/b/c/deep.bin"), &random_bytes(300_000, salt));
    write_file(&root.join("a/mid.txt"), b"middle\n");
    write_file(&root.join("dir with space/inner file.txt"), b"inner\n");
    write_file(&root.join("données/ñandú.bin"), &random_bytes(4096, salt + 1));
    fs::create_dir_all(root.join("a/empty dir")).unwrap();
}

/// The tree made by `make_tree` really has the hard cases in it.
fn assert_tree_is_interesting(t: &BTreeMap<String, String>) {
    for k in ["été.txt", "with space.txt", "dir with space/inner file.txt", "données/ñandú.bin", "a/empty dir"] {
        assert!(t.contains_key(k), "test tree lacks {k:?}: {t:#?}");
    }
    assert_eq!(t.get("empty.dat").map(String::as_str), Some(format!("0 bytes sha256 {}", sha256(b"")).as_str()));
    assert_eq!(t.len(), 14, "test tree: {t:#?}");
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// curl

fn curl() -> PathBuf {
    need("curl", "curl")
}

/// curl with quiet output, errors shown, bounded times.
fn curl_cmd(args: &[&str]) -> Command {
    let mut c = cmd(&curl(), &["-sS", "--connect-timeout", "5", "--max-time", "25"]);
    c.args(args);
    c
}

#[test]
fn curl_passive_and_active_download_and_list() {
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(1 << 20, 1);
    write_file(&root.path().join("big.bin"), &big);
    write_file(&root.path().join("other file.txt"), b"x\n");
    fs::create_dir(root.path().join("subdir")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let out = tempfile::tempdir().unwrap();

    // Passive (EPSV/PASV) download.
    let dest = out.path().join("passive.bin");
    curl_cmd(&["-o", dest.to_str().unwrap(), &format!("{}/big.bin", srv.url())]).pipe_ok();
    assert_eq!(sha256_file(&dest), sha256(&big), "passive download differs");

    // Active (EPRT/PORT) download.
    let dest = out.path().join("active.bin");
    curl_cmd(&["--ftp-port", "127.0.0.1", "-o", dest.to_str().unwrap(), &format!("{}/big.bin", srv.url())]).pipe_ok();
    assert_eq!(sha256_file(&dest), sha256(&big), "active download differs");

    // Plain PASV (no EPSV) too.
    let dest = out.path().join("pasv.bin");
    curl_cmd(&["--disable-epsv", "-o", dest.to_str().unwrap(), &format!("{}/big.bin", srv.url())]).pipe_ok();
    assert_eq!(sha256_file(&dest), sha256(&big), "PASV download differs");

    // Name list.
    let o = curl_cmd(&["--list-only", &format!("{}/", srv.url())]).pipe_ok();
    let mut names: Vec<&str> = o.stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
    names.sort();
    assert_eq!(names, ["big.bin", "other file.txt", "subdir"], "NLST output:\n{}", o.stdout);

    // Long list mentions every name and the size of big.bin.
    let o = curl_cmd(&[&format!("{}/", srv.url())]).pipe_ok();
    for n in ["big.bin", "other file.txt", "subdir", "1048576"] {
        assert!(o.stdout.contains(n), "LIST output lacks {n:?}:\n{}", o.stdout);
    }
}

trait PipeOk {
    fn pipe_ok(self) -> Out;
    fn pipe(self) -> Out;
}

impl PipeOk for Command {
    #[track_caller]
    fn pipe_ok(self) -> Out {
        run(self, None).ok()
    }
    fn pipe(self) -> Out {
        run(self, None)
    }
}

#[test]
fn curl_upload_create_dirs_and_quote() {
    let root = tempfile::tempdir().unwrap();
    write_file(&root.path().join("x"), b"delete me\n");
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src.bin");
    let data = random_bytes(700_001, 2);
    write_file(&src, &data);

    // Upload with -T.
    curl_cmd(&["-T", src.to_str().unwrap(), &format!("{}/up.bin", srv.url())]).pipe_ok();
    assert_eq!(sha256_file(&root.path().join("up.bin")), sha256(&data), "uploaded file differs on disk");

    // Upload over an existing file replaces it whole.
    let data2 = random_bytes(1234, 3);
    write_file(&src, &data2);
    curl_cmd(&["-T", src.to_str().unwrap(), &format!("{}/up.bin", srv.url())]).pipe_ok();
    assert_eq!(fs::read(root.path().join("up.bin")).unwrap(), data2, "overwritten file differs on disk");

    // Upload into directories that do not exist yet.
    curl_cmd(&["--ftp-create-dirs", "-T", src.to_str().unwrap(), &format!("{}/new/deeper/up2.bin", srv.url())])
        .pipe_ok();
    assert_eq!(fs::read(root.path().join("new/deeper/up2.bin")).unwrap(), data2, "upload with --ftp-create-dirs");

    // A quote command: DELE before the (listing) transfer.
    let o = curl_cmd(&["-Q", "DELE x", "--list-only", &format!("{}/", srv.url())]).pipe_ok();
    assert!(!root.path().join("x").exists(), "DELE x did not delete the file; listing:\n{}", o.stdout);
    assert!(!o.stdout.lines().any(|l| l.trim() == "x"), "listing after DELE still has x:\n{}", o.stdout);

    // No temporary upload file is left behind.
    let mut names: Vec<String> =
        fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["new", "up.bin"], "unexpected files in the root after uploads");
}

#[test]
fn curl_errors_missing_file_78_read_only_upload_25() {
    let root = tempfile::tempdir().unwrap();
    write_file(&root.path().join("present.txt"), b"here\n");
    let srv = Server::start(root.path(), &[]);
    let work = tempfile::tempdir().unwrap();

    // RETR of a missing file: 550 → curl exit 78 (CURLE_REMOTE_FILE_NOT_FOUND).
    let dest = work.path().join("missing");
    let o = curl_cmd(&["-o", dest.to_str().unwrap(), &format!("{}/no-such-file.txt", srv.url())]).pipe();
    assert_eq!(o.code(), Some(78), "download of a missing file\n{}", o.describe());

    // STOR on a read-only server: 550/553 → curl exit 25 (CURLE_UPLOAD_FAILED).
    let src = work.path().join("src.txt");
    write_file(&src, b"should not land\n");
    let o = curl_cmd(&["-T", src.to_str().unwrap(), &format!("{}/up.txt", srv.url())]).pipe();
    assert_eq!(o.code(), Some(25), "upload to a read-only server\n{}", o.describe());
    assert!(!root.path().join("up.txt").exists(), "a read-only server stored the file");
    let left: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "files appeared in a read-only root: {left:?}");
}

// ---------------------------------------------------------------------------
// lftp

fn lftp(srv: &Server, script: &str) -> Out {
    let lftp = need("lftp", "lftp");
    let full = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; set net:reconnect-interval-base 1; {script}; quit"
    );
    let url = format!("ftp://anonymous:x@{}", srv.addr);
    run(cmd(&lftp, &["-e", &full, &url]), None)
}

#[test]
fn lftp_mirror_download_tree() {
    let root = tempfile::tempdir().unwrap();
    make_tree(root.path(), 10);
    let srv = Server::start(root.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");

    let o = lftp(&srv, &format!("set ftp:passive-mode on; mirror / '{}'", dest.display())).ok();
    let (want, got) = (tree(root.path()), tree(&dest));
    assert_tree_is_interesting(&want);
    assert_eq!(got, want, "lftp mirror result differs from the served tree\n{}", o.describe());

    // ls shows the names.
    let o = lftp(&srv, "set ftp:passive-mode on; ls; ls a").ok();
    for n in ["top.txt", "with space.txt", "été.txt", "empty.dat", "dir with space", "données", "mid.txt", "empty dir"] {
        assert!(o.stdout.contains(n), "lftp ls lacks {n:?}\n{}", o.describe());
    }

    // Active mode get.
    let got = work.path().join("active deep.bin");
    lftp(&srv, &format!("set ftp:passive-mode off; get /a/b/c/deep.bin -o '{}'", got.display())).ok();
    assert_eq!(sha256_file(&got), sha256_file(&root.path().join("a/b/c/deep.bin")), "lftp active get differs");
}

#[test]
fn lftp_mirror_reverse_upload_tree() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src, 20);

    let o = lftp(&srv, &format!("set ftp:passive-mode on; mirror -R '{}' /up", src.display())).ok();
    let (want, got) = (tree(&src), tree(&root.path().join("up")));
    assert_tree_is_interesting(&want);
    assert_eq!(got, want, "tree uploaded by lftp mirror -R differs on disk\n{}", o.describe());
}

// ---------------------------------------------------------------------------
// Python ftplib

const FTPLIB_SCRIPT: &str = r#"
import ftplib, hashlib, io, os, socket, sys, time, calendar

host, port, root, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def check(cond, what):
    if not cond:
        print("CHECK FAILED: " + what, file=sys.stderr)
        sys.exit(1)

def retr(ftp, name):
    buf = io.BytesIO()
    ftp.retrbinary("RETR " + name, buf.write)
    return hashlib.sha256(buf.getvalue()).hexdigest()

ftp = ftplib.FTP()
ftp.connect(host, port, timeout=10)
ftp.login()  # anonymous
print("welcome=" + ftp.getwelcome().replace("\n", " "))

if mode == "v6":
    check(ftp.af == socket.AF_INET6, "connected over IPv6")
    names = ftp.nlst()
    check(sorted(names) == ["big.bin", "dir1", "stamp.txt"], "nlst over IPv6: %r" % names)
    print("epsv_retr=" + retr(ftp, "big.bin"))        # ftplib uses EPSV on IPv6
    ftp.set_pasv(False)                                  # and EPRT when active
    print("eprt_retr=" + retr(ftp, "big.bin"))
    ftp.set_pasv(True)
    r = ftp.sendcmd("EPSV")
    check(r.startswith("229 "), "EPSV reply: " + r)
    ftp.quit()
    print("DONE")
    sys.exit(0)

names = ftp.nlst()
check(sorted(names) == ["big.bin", "dir1", "stamp.txt"], "nlst: %r" % names)
check(ftp.pwd() == "/", "pwd at login: " + ftp.pwd())
print("pasv_retr=" + retr(ftp, "big.bin"))

# SIZE (after TYPE I, which retrbinary sent)
print("size=%d" % ftp.size("big.bin"))

# MDTM of a file whose mtime the test set
r = ftp.sendcmd("MDTM stamp.txt")
print("mdtm=" + r)

# cwd / pwd / nlst inside a directory / cdup
ftp.cwd("dir1")
check(ftp.pwd() == "/dir1", "pwd after cwd: " + ftp.pwd())
inner = ftp.nlst()
check(inner == ["inner.txt"], "nlst in dir1: %r" % inner)
ftp.cwd("..")
check(ftp.pwd() == "/", "pwd after cwd ..: " + ftp.pwd())

# mkd returns the quoted path of the new directory
made = ftp.mkd("newdir")
print("mkd=" + made)
ftp.cwd("newdir")
made2 = ftp.mkd("sub dir")
print("mkd2=" + made2)
ftp.cwd("/")

# storbinary
data = bytes((i * 7 + 3) % 256 for i in range(200000))
ftp.storbinary("STOR newdir/stored.bin", io.BytesIO(data))
print("stored=" + hashlib.sha256(data).hexdigest())

# active mode
ftp.set_pasv(False)
print("port_retr=" + retr(ftp, "big.bin"))
names = ftp.nlst()
check("newdir" in names, "active nlst: %r" % names)
ftp.storbinary("STOR active.bin", io.BytesIO(data[:5000]))
ftp.set_pasv(True)

# a missing file is a 550 error_perm
try:
    retr(ftp, "no-such-file")
    check(False, "RETR of a missing file succeeded")
except ftplib.error_perm as e:
    print("missing=" + str(e))

# the session still works after the error
check(ftp.sendcmd("NOOP").startswith("200"), "NOOP after error")
ftp.quit()
print("DONE")
"#;

fn python_ftplib(work: &Path, host: &str, srv: &Server, root: &Path, mode: &str) -> Out {
    let py = need("python3", "python3");
    let script = work.join("ftplib_test.py");
    fs::write(&script, FTPLIB_SCRIPT).unwrap();
    let port = srv.port().to_string();
    run(cmd(&py, &[script.to_str().unwrap(), host, &port, root.to_str().unwrap(), mode]), None)
}

fn value<'a>(o: &'a Out, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    o.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("python printed no {key}=\n{}", o.describe()))
}

fn ftplib_root(salt: u64) -> (tempfile::TempDir, Vec<u8>) {
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(1 << 20, salt);
    write_file(&root.path().join("big.bin"), &big);
    write_file(&root.path().join("dir1/inner.txt"), b"inner\n");
    let stamp = root.path().join("stamp.txt");
    write_file(&stamp, b"stamp\n");
    // 2001-02-03 04:05:06 UTC
    let t = std::time::UNIX_EPOCH + Duration::from_secs(981_173_106);
    fs::File::options().write(true).open(&stamp).unwrap().set_modified(t).unwrap();
    (root, big)
}

#[test]
fn python_ftplib_session() {
    let (root, big) = ftplib_root(30);
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let work = tempfile::tempdir().unwrap();
    let o = python_ftplib(work.path(), "127.0.0.1", &srv, root.path(), "v4");
    assert!(o.status.success() && o.stdout.contains("DONE"), "ftplib session failed\n{}", o.describe());

    let want = sha256(&big);
    assert_eq!(value(&o, "pasv_retr"), want, "retrbinary (passive) sha256");
    assert_eq!(value(&o, "port_retr"), want, "retrbinary (active) sha256");
    assert_eq!(value(&o, "size"), (1u32 << 20).to_string(), "SIZE");
    assert_eq!(value(&o, "mdtm"), "213 20010203040506", "MDTM");
    assert_eq!(value(&o, "mkd"), "/newdir", "MKD path (ftplib parse257)");
    assert_eq!(value(&o, "mkd2"), "/newdir/sub dir", "MKD path in a subdirectory");
    assert!(root.path().join("newdir/sub dir").is_dir(), "MKD made no directory on disk");
    assert!(value(&o, "missing").starts_with("550"), "missing file error: {}", value(&o, "missing"));

    let stored = fs::read(root.path().join("newdir/stored.bin")).expect("storbinary left no file on disk");
    assert_eq!(stored.len(), 200_000);
    assert_eq!(sha256(&stored), value(&o, "stored"), "storbinary bytes on disk");
    let active = fs::read(root.path().join("active.bin")).expect("active storbinary left no file on disk");
    assert_eq!(active, stored[..5000], "active storbinary bytes on disk");
}

#[test]
fn python_ftplib_ipv6_epsv_eprt() {
    if let Err(e) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        panic!("IPv6 loopback [::1] is not available on this machine ({e}); the IPv6 test needs it (enable IPv6 on lo)");
    }
    let (root, big) = ftplib_root(40);
    let srv = Server::start_on(IpAddr::V6(Ipv6Addr::LOCALHOST), root.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let o = python_ftplib(work.path(), "::1", &srv, root.path(), "v6");
    assert!(o.status.success() && o.stdout.contains("DONE"), "ftplib IPv6 session failed\n{}", o.describe());
    assert_eq!(value(&o, "epsv_retr"), sha256(&big), "EPSV retrbinary sha256 over IPv6");
    assert_eq!(value(&o, "eprt_retr"), sha256(&big), "EPRT retrbinary sha256 over IPv6");
}

// ---------------------------------------------------------------------------
// tnftp

#[test]
fn tnftp_scripted_session() {
    let tnftp = need("tnftp", "tnftp");
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(600_000, 50);
    write_file(&root.path().join("file.bin"), &big);
    write_file(&root.path().join("readme.txt"), b"hello\n");
    let srv = Server::start(root.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("fetched.bin");

    let script = format!("user anonymous x\nbinary\nget file.bin {}\nls\nquit\n", dest.display());
    let o = run(cmd(&tnftp, &["-n", "-v", "127.0.0.1", &srv.port().to_string()]), Some(&script));
    assert!(o.status.success(), "tnftp failed\n{}", o.describe());
    assert!(dest.exists(), "tnftp fetched nothing\n{}", o.describe());
    assert_eq!(sha256_file(&dest), sha256(&big), "tnftp get differs\n{}", o.describe());
    for n in ["file.bin", "readme.txt"] {
        assert!(o.stdout.contains(n), "tnftp ls lacks {n}\n{}", o.describe());
    }
    assert!(o.stdout.contains("230"), "tnftp did not log in\n{}", o.describe());
}

// ---------------------------------------------------------------------------
// Users file, signals

fn openssl_hash(password: &str) -> String {
    let openssl = need("openssl", "openssl");
    let o = run(cmd(&openssl, &["passwd", "-6", "-salt", "s4lt", password]), None).ok();
    let h = o.stdout.trim().to_string();
    assert!(h.starts_with("$6$s4lt$"), "openssl passwd output: {h}");
    h
}

#[test]
fn users_file_login_upload_and_wrong_password() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("alice")).unwrap();
    write_file(&root.path().join("public.txt"), b"outside alice's home\n");
    let work = tempfile::tempdir().unwrap();
    let users = work.path().join("users");
    fs::write(&users, format!("alice:{}:alice:rw\n", openssl_hash("secret"))).unwrap();
    let srv = Server::start(root.path(), &["--users", users.to_str().unwrap()]);

    let src = work.path().join("src.bin");
    let data = random_bytes(100_000, 60);
    write_file(&src, &data);
    let url = format!("ftp://alice:secret@{}/up.bin", srv.addr);
    curl_cmd(&["-T", src.to_str().unwrap(), &url]).pipe_ok();
    assert_eq!(fs::read(root.path().join("alice/up.bin")).expect("upload not in alice's home"), data);

    // Alice's root is her home: the listing shows her file only.
    let o = curl_cmd(&["--list-only", &format!("ftp://alice:secret@{}/", srv.addr)]).pipe_ok();
    assert_eq!(o.stdout.lines().map(str::trim).collect::<Vec<_>>(), ["up.bin"], "alice's listing");

    // Wrong password: 530 → curl exit 67 (CURLE_LOGIN_DENIED).
    let o = curl_cmd(&["--list-only", &format!("ftp://alice:wrong@{}/", srv.addr)]).pipe();
    assert_eq!(o.code(), Some(67), "wrong password\n{}", o.describe());

    // Anonymous is refused when a users file is given without --anonymous.
    let o = curl_cmd(&["--list-only", &format!("{}/", srv.url())]).pipe();
    assert_eq!(o.code(), Some(67), "anonymous with --users and no --anonymous\n{}", o.describe());
}

#[test]
fn sigterm_while_idle_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let mut srv = Server::start(root.path(), &[]);
    // A client came and went; the server is idle now.
    let mut c = Control::connect(srv.addr);
    assert!(c.cmd("QUIT").starts_with("221"));
    drop(c);
    srv.signal("TERM");
    let st = srv.wait_exit(Duration::from_secs(5)).expect("leanftpd did not exit within 5 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st:?}\n{}", srv.log_text());
}

#[test]
fn sighup_reloads_users_and_keeps_sessions() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("alice")).unwrap();
    fs::create_dir(root.path().join("bob")).unwrap();
    write_file(&root.path().join("bob/bob.txt"), b"bob's file\n");
    let work = tempfile::tempdir().unwrap();
    let users = work.path().join("users");
    let alice = format!("alice:{}:alice:rw\n", openssl_hash("secret"));
    fs::write(&users, &alice).unwrap();
    let srv = Server::start(root.path(), &["--users", users.to_str().unwrap(), "--login-fail-delay", "0"]);

    // Alice logs in on a raw control connection and stays.
    let mut c = Control::connect(srv.addr);
    assert!(c.cmd("USER alice").starts_with("331"));
    let r = c.cmd("PASS secret");
    assert!(r.starts_with("230"), "alice login: {r}");

    // Bob cannot log in yet.
    let bob_url = format!("ftp://bob:hunter2@{}/", srv.addr);
    let o = curl_cmd(&["--list-only", &bob_url]).pipe();
    assert_eq!(o.code(), Some(67), "bob before reload\n{}", o.describe());

    // Add bob (write a new file and rename it over, as editors do), SIGHUP.
    let tmp = work.path().join("users.new");
    fs::write(&tmp, format!("{alice}bob:{}:bob:r\n", openssl_hash("hunter2"))).unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal("HUP");

    // The reload is asynchronous: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    let o = loop {
        let o = curl_cmd(&["--list-only", &bob_url]).pipe();
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(o.status.success(), "bob after SIGHUP\n{}", o.describe());
    assert_eq!(o.stdout.trim(), "bob.txt", "bob's listing");

    // Alice's session survived the reload.
    let r = c.cmd("NOOP");
    assert!(r.starts_with("200"), "NOOP after SIGHUP: {r}");
    let r = c.cmd("PWD");
    assert!(r.starts_with("257"), "PWD after SIGHUP: {r}");
    assert!(c.cmd("QUIT").starts_with("221"));
}

// ---------------------------------------------------------------------------
// Command line

fn run_bin(args: &[&str]) -> Out {
    run(cmd(Path::new(BIN), args), None)
}

#[test]
fn bad_root_exits_2_with_one_line() {
    let o = run_bin(&["--root", "/nonexistent", "--listen", "127.0.0.1:0"]);
    assert_eq!(o.code(), Some(2), "--root /nonexistent\n{}", o.describe());
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr\n{}", o.describe());
    assert!(lines[0].contains("/nonexistent"), "the message names the path: {}", lines[0]);
}

#[test]
fn listen_on_port_in_use_exits_1() {
    let root = tempfile::tempdir().unwrap();
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let o = run_bin(&["--root", root.path().to_str().unwrap(), "--listen", &addr]);
    drop(holder);
    assert_eq!(o.code(), Some(1), "--listen on a port in use\n{}", o.describe());
    let msg = o.stderr.trim();
    assert!(msg.contains(&addr), "the message names the address: {msg}");
    assert!(msg.to_lowercase().contains("in use"), "the message says the address is in use: {msg}");
}

#[test]
fn help_exits_0_and_lists_options() {
    let o = run_bin(&["--help"]);
    assert_eq!(o.code(), Some(0), "--help\n{}", o.describe());
    for opt in ["--root", "--listen", "--users", "--anonymous", "--passive-ports"] {
        assert!(o.stdout.contains(opt), "--help lacks {opt}\n{}", o.stdout);
    }
}

// ---------------------------------------------------------------------------
// The client matrix of issue 4: resume, recursive download, MLSD, ABOR.

/// No upload temporary file is left anywhere under `root`.
#[track_caller]
fn assert_no_temp_files(root: &Path) {
    let t = tree(root);
    let temps: Vec<&String> = t.keys().filter(|k| k.contains(".leanftpd-upload-")).collect();
    assert!(temps.is_empty(), "temporary upload files left behind: {temps:?}");
}

#[test]
fn curl_resumes_a_download_and_an_upload_with_c_dash() {
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(3 << 20, 40);
    write_file(&root.path().join("big.bin"), &big);
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let work = tempfile::tempdir().unwrap();

    // Download: a local file holding the first 1 MiB + 17 bytes, then `-C -`
    // (curl sends REST <size> before RETR).
    let dest = work.path().join("big.bin");
    write_file(&dest, &big[..(1 << 20) + 17]);
    curl_cmd(&["-C", "-", "-o", dest.to_str().unwrap(), &format!("{}/big.bin", srv.url())]).pipe_ok();
    assert_eq!(sha256_file(&dest), sha256(&big), "resumed download differs");

    // Upload: the server holds a prefix; `-C - -T` asks SIZE and appends
    // the rest (APPE), which is atomic here: the whole file or the old one.
    write_file(&root.path().join("up.bin"), &big[..1_000_003]);
    let local = work.path().join("local.bin");
    write_file(&local, &big);
    curl_cmd(&["-C", "-", "-T", local.to_str().unwrap(), &format!("{}/up.bin", srv.url())]).pipe_ok();
    assert_eq!(sha256_file(&root.path().join("up.bin")), sha256(&big), "resumed upload differs on disk");
    assert_no_temp_files(root.path());
}

#[test]
fn wget_mirrors_a_tree_recursively() {
    let wget = need("wget", "wget");
    let root = tempfile::tempdir().unwrap();
    make_tree(root.path(), 50);
    let srv = Server::start(root.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let o = run(
        cmd(&wget, &["-m", "-nH", "-q", "--tries=1", "--timeout=10", "-P", dest.to_str().unwrap(), &format!("{}/", srv.url())]),
        None,
    );
    // wget keeps its `.listing` files only with --no-remove-listing; remove
    // any it left so that the trees compare.
    let mut got = tree(&dest);
    got.retain(|k, _| !k.ends_with(".listing"));
    let want = tree(root.path());
    assert_tree_is_interesting(&want);
    assert_eq!(got, want, "wget -m result differs from the served tree\n{}", o.describe());
}

const FTPLIB_MATRIX: &str = r#"
import ftplib, hashlib, io, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=10)
ftp.login()
def check(cond, what):
    if not cond:
        print("FAIL " + what); sys.exit(1)
if mode == "mlsd":
    entries = dict(ftp.mlsd("/", facts=["type", "size", "modify", "perm", "unique", "UNIX.mode"]))
    for name, facts in sorted(entries.items()):
        print("entry=%s|%s|%s" % (name, facts.get("type"), facts.get("size", "-")))
    r = ftp.sendcmd("MLST big.bin")
    print("mlst=" + r.splitlines()[1].strip())
    feat = ftp.sendcmd("FEAT")
    check("MLST type*;size*;modify*;perm*;unique*;" in feat, "FEAT MLST: " + feat)
    check("REST STREAM" in feat, "FEAT REST STREAM: " + feat)
    # Names that are hard for a listing round trip.
    for name in entries:
        if entries[name].get("type") == "file":
            h = hashlib.sha256()
            ftp.retrbinary("RETR " + name, h.update)
            print("sha=%s|%s" % (name, h.hexdigest()))
elif mode == "rest":
    h = hashlib.sha256()
    ftp.retrbinary("RETR big.bin", h.update, rest=1000)
    print("tail=" + h.hexdigest())
    data = bytes(range(256)) * 400
    ftp.storbinary("STOR resumed.bin", io.BytesIO(data[:30000]))
    ftp.storbinary("STOR resumed.bin", io.BytesIO(data[30000:]), rest=30000)
    print("resumed=" + hashlib.sha256(data).hexdigest())
    try:
        ftp.retrbinary("RETR big.bin", lambda b: None, rest=10**12)
        check(False, "REST beyond the end accepted")
    except ftplib.error_perm as e:
        print("beyond=" + str(e)[:3])
    r = ftp.sendcmd("ALLO 1000")
    print("allo=" + r[:3])
    u = io.BytesIO(b"unique bytes")
    r = ftp.storbinary("STOU", u)
    print("stou=" + r[:3])
elif mode == "abor":
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    got = conn.recv(65536)
    check(len(got) > 0, "no data before ABOR")
    r = ftp.abort()
    print("abort1=" + r[:3])
    conn.close()
    r = ftp.getresp()
    print("abort2=" + r[:3])
    check(ftp.sendcmd("NOOP").startswith("200"), "NOOP after ABOR")
    conn = ftp.transfercmd("STOR old.bin")
    conn.sendall(b"x" * 100000)
    r = ftp.abort()
    print("abort3=" + r[:3])
    conn.close()
    r = ftp.getresp()
    print("abort4=" + r[:3])
    r = ftp.sendcmd("ABOR")
    print("idle=" + r[:3])
    check(ftp.sendcmd("PWD").startswith("257"), "PWD after ABOR")
ftp.quit()
print("DONE")
"#;

fn ftplib_matrix(srv: &Server, mode: &str) -> Out {
    let py = need("python3", "python3");
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("matrix.py");
    fs::write(&script, FTPLIB_MATRIX).unwrap();
    let port = srv.port().to_string();
    let o = run(cmd(&py, &[script.to_str().unwrap(), "127.0.0.1", &port, mode]), None);
    assert!(o.status.success() && o.stdout.contains("DONE"), "ftplib {mode} failed\n{}", o.describe());
    o
}

#[test]
fn ftplib_mlsd_round_trips_hard_names() {
    let root = tempfile::tempdir().unwrap();
    let names = ["with space.txt", "quote\"d.txt", "été ñandú.txt", "-leading-dash.txt", "big.bin"];
    for (i, n) in names.iter().enumerate() {
        write_file(&root.path().join(n), &random_bytes(1000 + i * 10, 60 + i as u64));
    }
    fs::create_dir(root.path().join("a dir")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let o = ftplib_matrix(&srv, "mlsd");
    for (i, n) in names.iter().enumerate() {
        let size = 1000 + i * 10;
        assert!(o.stdout.contains(&format!("entry={n}|file|{size}")), "MLSD lacks {n:?}\n{}", o.describe());
        let want = sha256_file(&root.path().join(n));
        assert!(o.stdout.contains(&format!("sha={n}|{want}")), "RETR of MLSD name {n:?} differs\n{}", o.describe());
    }
    assert!(o.stdout.contains("entry=a dir|dir|-"), "MLSD lacks the directory\n{}", o.describe());
    let mlst = value(&o, "mlst");
    assert!(mlst.starts_with("type=file;size=1040;modify=") && mlst.ends_with("; /big.bin"), "MLST line: {mlst}");
}

#[test]
fn ftplib_rest_resume_allo_and_stou() {
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(500_000, 70);
    write_file(&root.path().join("big.bin"), &big);
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let o = ftplib_matrix(&srv, "rest");
    assert_eq!(value(&o, "tail"), sha256(&big[1000..]), "RETR after REST 1000");
    assert_eq!(sha256_file(&root.path().join("resumed.bin")), value(&o, "resumed"), "STOR after REST on disk");
    assert_eq!(value(&o, "beyond"), "554", "REST beyond the end of the file");
    assert_eq!(value(&o, "allo"), "202");
    assert_eq!(value(&o, "stou"), "226");
    let stou: Vec<_> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| fs::read(p).map(|b| b == b"unique bytes").unwrap_or(false))
        .collect();
    assert_eq!(stou.len(), 1, "STOU made no unique file: {:?}", tree(root.path()));
    assert_no_temp_files(root.path());
}

#[test]
fn ftplib_abor_during_retr_and_stor_then_the_session_goes_on() {
    let root = tempfile::tempdir().unwrap();
    write_file(&root.path().join("big.bin"), &random_bytes(64 << 20, 80));
    write_file(&root.path().join("old.bin"), b"old contents");
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let o = ftplib_matrix(&srv, "abor");
    // RFC 959 §4.1.3: 426 for the aborted transfer, then 226 for ABOR.
    assert_eq!((value(&o, "abort1"), value(&o, "abort2")), ("426", "226"), "{}", o.describe());
    assert_eq!((value(&o, "abort3"), value(&o, "abort4")), ("426", "226"), "{}", o.describe());
    assert_eq!(value(&o, "idle"), "226", "ABOR with nothing to abort");
    assert_eq!(fs::read(root.path().join("old.bin")).unwrap(), b"old contents", "aborted STOR replaced the file");
    assert_no_temp_files(root.path());
}

// ---------------------------------------------------------------------------
// NLST names and globs with real clients (issue 10)

/// A root for multiple-get tests: `a.txt`, `b.txt`, `c.jpg`, `.hidden.txt`,
/// `test/file1.txt`, `test/file2.txt`, `test/other.bin`, each with its own
/// random bytes.
fn mget_root(salt: u64) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (i, n) in ["a.txt", "b.txt", "c.jpg", ".hidden.txt", "test/file1.txt", "test/file2.txt", "test/other.bin"].iter().enumerate() {
        write_file(&root.path().join(n), &random_bytes(1000 + 333 * i, salt + i as u64));
    }
    root
}

/// tnftp with prompting off (`-i`), run in `dir` (where `mget` saves each
/// file under the name NLST gave).
fn tnftp_in(dir: &Path, srv: &Server, script: &str) -> Out {
    let tnftp = need("tnftp", "tnftp");
    let mut c = cmd(&tnftp, &["-n", "-i", "-v", "127.0.0.1", &srv.port().to_string()]);
    c.current_dir(dir);
    let o = run(c, Some(&format!("user anonymous x\nbinary\n{script}\nquit\n")));
    assert!(o.status.success(), "tnftp failed\n{}", o.describe());
    o
}

/// Every file under `dir`, by relative path, with its sha256.
fn fetched(dir: &Path) -> BTreeMap<String, String> {
    tree(dir).into_iter().filter(|(_, v)| v != "dir").collect()
}

/// What `root` holds at `names`, as `fetched` shows it.
fn expected(root: &Path, names: &[&str]) -> BTreeMap<String, String> {
    let all = tree(root);
    names.iter().map(|n| (n.to_string(), all[*n].clone())).collect()
}

#[test]
fn issue_10_tnftp_mget_with_a_glob_and_with_a_path_fetches_the_right_files() {
    let root = mget_root(90);
    let srv = Server::start(root.path(), &[]);
    // `mget *.txt`: NLST *.txt, then a RETR per name; hidden files and
    // other suffixes are not fetched.
    let work = tempfile::tempdir().unwrap();
    let o = tnftp_in(work.path(), &srv, "mget *.txt");
    assert_eq!(fetched(work.path()), expected(root.path(), &["a.txt", "b.txt"]), "mget *.txt\n{}", o.describe());
    // `mget test/file1.txt`: NLST answers test/file1.txt, which RETR finds
    // (it used to answer file1.txt, and RETR file1.txt was 550).
    let work = tempfile::tempdir().unwrap();
    fs::create_dir(work.path().join("test")).unwrap();
    let o = tnftp_in(work.path(), &srv, "mget test/file1.txt");
    assert_eq!(fetched(work.path()), expected(root.path(), &["test/file1.txt"]), "mget test/file1.txt\n{}", o.describe());
    // `mget test/*.txt`: a glob below a directory.
    let work = tempfile::tempdir().unwrap();
    fs::create_dir(work.path().join("test")).unwrap();
    let o = tnftp_in(work.path(), &srv, "mget test/*.txt");
    assert_eq!(
        fetched(work.path()),
        expected(root.path(), &["test/file1.txt", "test/file2.txt"]),
        "mget test/*.txt\n{}",
        o.describe()
    );
    // `mget *.png` matches nothing: `550 No files found.` (tnftp prints
    // the text), nothing fetched, the session goes on.
    let work = tempfile::tempdir().unwrap();
    let o = tnftp_in(work.path(), &srv, "mget *.png\nmget c.jpg");
    assert!(o.stdout.contains("No files found."), "no 550 for a glob matching nothing\n{}", o.describe());
    assert_eq!(fetched(work.path()), expected(root.path(), &["c.jpg"]), "{}", o.describe());
}

const FTPLIB_NLST: &str = r#"
import ftplib, hashlib, sys
host, port = sys.argv[1], int(sys.argv[2])
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=20)
ftp.login()
for arg in ["test", "test/", "*.txt", "test/file?.txt"]:
    names = ftp.nlst(arg)
    print("nlst[%s]=%s" % (arg, ",".join(names)))
    for n in names:
        h = hashlib.sha256()
        ftp.retrbinary("RETR " + n, h.update)
        print("sha=%s|%s" % (n, h.hexdigest()))
print("bare=" + ",".join(ftp.nlst()))
try:
    ftp.nlst("*.png")
    print("nomatch=none")
except ftplib.error_perm as e:
    print("nomatch=" + str(e)[:3])
ftp.quit()
print("DONE")
"#;

#[test]
fn issue_10_ftplib_nlst_of_a_path_or_a_glob_gives_names_retr_can_fetch() {
    let root = mget_root(95);
    let srv = Server::start(root.path(), &[]);
    let py = need("python3", "python3");
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("nlst.py");
    fs::write(&script, FTPLIB_NLST).unwrap();
    let o = run(cmd(&py, &[script.to_str().unwrap(), "127.0.0.1", &srv.port().to_string()]), None);
    assert!(o.status.success() && o.stdout.contains("DONE"), "ftplib failed\n{}", o.describe());
    assert_eq!(value(&o, "nlst[test]"), "test/file1.txt,test/file2.txt,test/other.bin");
    assert_eq!(value(&o, "nlst[test/]"), "test/file1.txt,test/file2.txt,test/other.bin");
    assert_eq!(value(&o, "nlst[*.txt]"), "a.txt,b.txt");
    assert_eq!(value(&o, "nlst[test/file?.txt]"), "test/file1.txt,test/file2.txt");
    // Plain NLST is unchanged: bare names, every entry (a glob's `*` skips
    // hidden names, a plain listing does not).
    assert_eq!(value(&o, "bare"), ".hidden.txt,a.txt,b.txt,c.jpg,test");
    assert_eq!(value(&o, "nomatch"), "550");
    // Every name NLST gave was fetched, with the bytes on disk.
    let shas: Vec<&str> = o.stdout.lines().filter_map(|l| l.strip_prefix("sha=")).collect();
    assert_eq!(shas.len(), 3 + 3 + 2 + 2, "{}", o.describe());
    for line in shas {
        let (name, sha) = line.split_once('|').unwrap();
        assert_eq!(sha, sha256_file(&root.path().join(name)), "RETR {name}");
    }
}

// ----- issue 10: the orders and modes real clients use ---------------------

/// Text with LF line ends, and its CRLF form (what TYPE A sends).
fn lf_and_crlf(lines: usize) -> (Vec<u8>, Vec<u8>) {
    let mut lf = Vec::new();
    for i in 0..lines {
        lf.extend_from_slice(format!("line {i}: {}\n", "abc".repeat(i % 40)).as_bytes());
    }
    let crlf = lf.iter().flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] }).collect();
    (lf, crlf)
}

#[test]
fn issue_10_ftplib_retrlines_and_storlines_in_passive_and_active_mode() {
    // ftplib connects the data socket before it sends RETR/STOR in passive
    // mode: the order that once gave 0 bytes and 226 in TYPE A.
    let root = tempfile::tempdir().unwrap();
    let (lf, _) = lf_and_crlf(5000);
    write_file(&root.path().join("t.txt"), &lf);
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let py = need("python3", "python3");
    let script = format!(
        r#"
import ftplib, io, sys
for passive in (True, False):
    f = ftplib.FTP()
    f.connect("127.0.0.1", {port}, timeout=20)
    f.login()
    f.set_pasv(passive)
    got = []
    r = f.retrlines("RETR t.txt", got.append)
    print("retr", passive, r[:3], len(got))
    data = open(sys.argv[1], "rb").read()
    r = f.storlines("STOR up-%d.txt" % passive, io.BytesIO(data))
    print("stor", passive, r[:3])
    f.quit()
print("DONE")
"#,
        port = srv.port()
    );
    let o = run(cmd(&py, &["-c", &script, root.path().join("t.txt").to_str().unwrap()]), None);
    assert!(o.status.success() && o.stdout.contains("DONE"), "{}", o.describe());
    for passive in ["True", "False"] {
        assert!(o.stdout.contains(&format!("retr {passive} 226 5000")), "retrlines ({passive}): {}", o.describe());
        assert!(o.stdout.contains(&format!("stor {passive} 226")), "storlines ({passive}): {}", o.describe());
        let up = fs::read(root.path().join(format!("up-{}.txt", u8::from(passive == "True")))).unwrap();
        assert_eq!(sha256(&up), sha256(&lf), "storlines ({passive}): the file on disk has LF line ends");
    }
}

#[test]
fn issue_10_curl_type_a_download_and_upload_in_passive_mode() {
    let root = tempfile::tempdir().unwrap();
    let (lf, crlf) = lf_and_crlf(3000);
    write_file(&root.path().join("t.txt"), &lf);
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let work = tempfile::tempdir().unwrap();
    // Download: curl -B (and ;type=a) in passive mode connect first; the
    // server sends CRLF lines and curl, on Unix, turns them back into LF:
    // the whole file arrives (not the 0 bytes of the bug).
    let out = work.path().join("down.txt");
    curl_cmd_run(&["-B", "-o", out.to_str().unwrap(), &format!("{}/t.txt", srv.url())]);
    assert_eq!(sha256_file(&out), sha256(&lf), "curl -B download");
    let out2 = work.path().join("down2.txt");
    curl_cmd_run(&["-o", out2.to_str().unwrap(), &format!("{}/t.txt;type=a", srv.url())]);
    assert_eq!(sha256_file(&out2), sha256(&lf), "curl ;type=a download");
    // The bytes on the wire are CRLF (what curl turns back into LF): the
    // same file fetched in TYPE I by curl is the LF text, so check the
    // TYPE A size the server announces.
    let head = run(curl_cmd(&["-B", "-I", &format!("{}/t.txt", srv.url())]), None).ok();
    assert!(head.stdout.contains(&format!("Content-Length: {}", crlf.len())), "SIZE in TYPE A\n{}", head.describe());
    // Upload: curl -B -T turns the local LF lines into CRLF on the wire
    // (TYPE A); the server stores LF again.
    let src = work.path().join("src.txt");
    write_file(&src, &lf);
    curl_cmd_run(&["-B", "-T", src.to_str().unwrap(), &format!("{}/up.txt", srv.url())]);
    assert_eq!(sha256_file(&root.path().join("up.txt")), sha256(&lf), "curl -B upload");
}

fn curl_cmd_run(args: &[&str]) {
    run(curl_cmd(args), None).ok();
}

#[test]
fn issue_10_lftp_put_c_resumes_an_interrupted_upload() {
    let root = tempfile::tempdir().unwrap();
    let body = random_bytes(3 << 20, 10);
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    // An upload cut after 1 MiB: the data connection reset mid-way.
    {
        let mut c = common::process::Control::connect(([127, 0, 0, 1], srv.port()).into());
        c.cmd("USER anonymous");
        c.cmd("PASS x@y");
        c.cmd("TYPE I");
        let r = c.cmd("EPSV");
        let port: u16 = r.split("|||").nth(1).and_then(|p| p.trim_end_matches([')', '|', '.']).parse().ok()).unwrap_or_else(|| panic!("{r}"));
        let mut data = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let r = c.cmd("STOR big.bin");
        assert!(r.starts_with("150") || r.starts_with("125"), "{r}");
        std::io::Write::write_all(&mut data, &body[..1 << 20]).unwrap();
        let kept = root.path().join("big.bin");
        let t0 = std::time::Instant::now();
        while fs::metadata(&kept).map(|m| m.len()).unwrap_or(0) < (1 << 20) && t0.elapsed() < std::time::Duration::from_secs(10) {
            // Written to the temp file until the cut; kept at the name after.
            if fs::read_dir(root.path()).unwrap().any(|e| fs::metadata(e.unwrap().path()).map(|m| m.len()).unwrap_or(0) >= 1 << 20) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        common::reset(data);
        let r = c.reply();
        assert!(r.starts_with('4'), "the cut upload fails: {r}");
    }
    assert_eq!(fs::metadata(root.path().join("big.bin")).unwrap().len(), 1 << 20, "the received MiB is kept at the name");
    // lftp put -c: SIZE, then REST + STOR of the rest.
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("big.bin");
    write_file(&local, &body);
    let o = lftp(&srv, &format!("set ftp:passive-mode on; put -c '{}' -o big.bin", local.display())).ok();
    assert_eq!(sha256_file(&root.path().join("big.bin")), sha256(&body), "lftp put -c result\n{}", o.describe());
}

// ---------------------------------------------------------------------------
// FTPS (issue 11): curl, lftp, Python ftplib against the built binary with
// --tls-cert/--tls-key. Clients trust the test CA (tests/common/tls.rs) and
// verify the server's name (127.0.0.1 is in the certificate).

/// The built binary with FTPS on.
struct Ftps {
    srv: Server,
    /// The CA file clients trust.
    ca: PathBuf,
    /// The implicit FTPS address, if asked for.
    implicit: Option<std::net::SocketAddr>,
    _certs: tempfile::TempDir,
}

impl Ftps {
    /// `root` served with FTPS and `extra` flags; an implicit FTPS listener
    /// too if `implicit`.
    fn start(root: &Path, extra: &[&str], implicit: bool) -> Ftps {
        let certs = tempfile::tempdir().unwrap();
        let (files, mut args) = common::tls::binary_args(certs.path());
        let implicit = implicit.then(|| std::net::SocketAddr::from(([127, 0, 0, 1], free_port(IpAddr::from([127, 0, 0, 1])))));
        if let Some(a) = implicit {
            args.push("--implicit-tls-listen".into());
            args.push(a.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let srv = Server::start(root, &args);
        if let Some(a) = implicit {
            let t = Instant::now();
            while std::net::TcpStream::connect(a).is_err() {
                assert!(t.elapsed() < START_TIMEOUT, "nothing listens on the implicit FTPS address {a}\n{}", srv.log_text());
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        Ftps { srv, ca: files.ca, implicit, _certs: certs }
    }

    fn url(&self) -> String {
        self.srv.url()
    }
}

/// curl for explicit FTPS: `--ssl-reqd` (AUTH TLS, PROT P, or fail), the
/// test CA, bounded times, and `args`.
fn curl_ftps(f: &Ftps, args: &[&str]) -> Command {
    let mut c = curl_cmd(&["--ssl-reqd", "--cacert", f.ca.to_str().unwrap()]);
    c.args(args);
    c
}

// curl 7.88.1 cannot do active-mode FTPS at all ("(18) sa_addr inet_ntop()
// failed with errno 97", also against vsftpd 3.0.3): active mode under TLS
// is checked with lftp, Python ftplib and tests/tls.rs instead.

#[test]
fn curl_ftps_ssl_reqd_download_and_list_in_epsv_and_pasv() {
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(3 << 20, 100);
    write_file(&root.path().join("big.bin"), &big);
    write_file(&root.path().join("other file.txt"), b"x\n");
    fs::create_dir(root.path().join("subdir")).unwrap();
    let f = Ftps::start(root.path(), &[], false);
    let out = tempfile::tempdir().unwrap();
    for (how, extra) in [("EPSV", &[][..]), ("PASV", &["--disable-epsv"][..])] {
        for tls in [&["--tlsv1.2", "--tls-max", "1.2"][..], &["--tlsv1.3"][..]] {
            let dest = out.path().join(format!("{how}-{}.bin", tls[0]));
            let url = format!("{}/big.bin", f.url());
            let mut args = extra.to_vec();
            args.extend_from_slice(tls);
            args.extend_from_slice(&["-o", dest.to_str().unwrap(), &url]);
            curl_ftps(&f, &args).pipe_ok();
            assert_eq!(sha256_file(&dest), sha256(&big), "curl FTPS download ({how}, {tls:?}) differs");
        }
    }
    let o = curl_ftps(&f, &["--list-only", &format!("{}/", f.url())]).pipe_ok();
    let mut names: Vec<&str> = o.stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
    names.sort();
    assert_eq!(names, ["big.bin", "other file.txt", "subdir"], "NLST over FTPS:\n{}", o.stdout);
    let o = curl_ftps(&f, &[&format!("{}/", f.url())]).pipe_ok();
    for n in ["big.bin", "other file.txt", "subdir", &(3u32 << 20).to_string()] {
        assert!(o.stdout.contains(n), "LIST over FTPS lacks {n:?}:\n{}", o.stdout);
    }
}

#[test]
fn curl_ftps_downloads_an_empty_file_and_lists_an_empty_directory() {
    // curl starts the data connection's TLS handshake as soon as it
    // connects: zero bytes to send still take a handshake and a close_notify.
    let root = tempfile::tempdir().unwrap();
    write_file(&root.path().join("empty.bin"), b"");
    fs::create_dir(root.path().join("empty dir")).unwrap();
    let f = Ftps::start(root.path(), &[], false);
    let out = tempfile::tempdir().unwrap();
    for tls in ["--tlsv1.2", "--tlsv1.3"] {
        let dest = out.path().join(format!("empty{tls}.bin"));
        let o = curl_ftps(&f, &[tls, "-o", dest.to_str().unwrap(), &format!("{}/empty.bin", f.url())]).pipe();
        assert!(o.status.success() && fs::metadata(&dest).map(|m| m.len()).ok() == Some(0), "curl FTPS download of an empty file ({tls})\n{}", o.describe());
        let o = curl_ftps(&f, &[tls, &format!("{}/empty%20dir/", f.url())]).pipe();
        assert!(o.status.success() && o.stdout.is_empty(), "curl FTPS LIST of an empty directory ({tls})\n{}", o.describe());
    }
}

#[test]
fn curl_ftps_ssl_reqd_upload_with_tls_1_2_and_1_3() {
    // curl 7.88 loses the tail of an upload when the server sends TLS 1.3
    // session tickets on the data connection (issue 11).
    let root = tempfile::tempdir().unwrap();
    let f = Ftps::start(root.path(), &["--anonymous-write"], false);
    let work = tempfile::tempdir().unwrap();
    for (i, (name, tls)) in [("tls12", &["--tlsv1.2", "--tls-max", "1.2"][..]), ("tls13", &["--tlsv1.3"][..]), ("default", &[][..])].into_iter().enumerate() {
        for size in [0usize, 1, 100, 3 << 20] {
            let data = random_bytes(size, 110 + i as u64 + size as u64);
            let src = work.path().join(format!("src-{name}-{size}"));
            write_file(&src, &data);
            let mut args = tls.to_vec();
            let url = format!("{}/up-{name}-{size}.bin", f.url());
            args.extend_from_slice(&["-T", src.to_str().unwrap(), &url]);
            let o = curl_ftps(&f, &args).pipe_ok();
            let disk = fs::read(root.path().join(format!("up-{name}-{size}.bin"))).unwrap_or_else(|e| panic!("{name} {size}: nothing on disk ({e})\n{}", o.describe()));
            assert_eq!((disk.len(), sha256(&disk)), (size, sha256(&data)), "curl FTPS upload {name} of {size} bytes differs on disk");
        }
    }
    // PASV too.
    let data = random_bytes(1 << 20, 120);
    let src = work.path().join("src-pasv");
    write_file(&src, &data);
    curl_ftps(&f, &["--disable-epsv", "-T", src.to_str().unwrap(), &format!("{}/pasv.bin", f.url())]).pipe_ok();
    assert_eq!(sha256_file(&root.path().join("pasv.bin")), sha256(&data), "curl FTPS upload with PASV");
    assert_no_temp_files(root.path());
}

#[test]
fn curl_tls_required_server_serves_ssl_reqd_and_refuses_plain_login() {
    let root = tempfile::tempdir().unwrap();
    let body = random_bytes(200_000, 130);
    write_file(&root.path().join("f.bin"), &body);
    let f = Ftps::start(root.path(), &["--tls-required"], false);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("f.bin");
    curl_ftps(&f, &["-o", dest.to_str().unwrap(), &format!("{}/f.bin", f.url())]).pipe_ok();
    assert_eq!(sha256_file(&dest), sha256(&body));
    // Plain FTP: USER gets 530 → curl exit 67 (CURLE_LOGIN_DENIED).
    let o = curl_cmd(&["--list-only", &format!("{}/", f.url())]).pipe();
    assert_eq!(o.code(), Some(67), "plain FTP against --tls-required\n{}", o.describe());
    // --ssl (TLS if offered) but PROT C data: curl's --ftp-ssl-control.
    let o = curl_cmd(&["--ftp-ssl-control", "--cacert", f.ca.to_str().unwrap(), "-o", dest.to_str().unwrap(), &format!("{}/f.bin", f.url())]).pipe();
    assert!(!o.status.success(), "a PROT C transfer succeeded against --tls-required\n{}", o.describe());
}

#[test]
fn curl_implicit_ftps_download_list_and_upload() {
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(2 << 20, 140);
    write_file(&root.path().join("big.bin"), &big);
    let f = Ftps::start(root.path(), &["--anonymous-write"], true);
    let base = format!("ftps://{}", f.implicit.unwrap());
    let work = tempfile::tempdir().unwrap();
    let ca = f.ca.to_str().unwrap().to_string();
    for tls in [&["--tlsv1.2", "--tls-max", "1.2"][..], &["--tlsv1.3"][..]] {
        let dest = work.path().join("down.bin");
        let mut args = vec!["--cacert", &ca];
        args.extend_from_slice(tls);
        args.extend_from_slice(&["-o", dest.to_str().unwrap()]);
        let url = format!("{base}/big.bin");
        args.push(&url);
        curl_cmd(&args).pipe_ok();
        assert_eq!(sha256_file(&dest), sha256(&big), "curl ftps:// download ({tls:?})");
        let src = work.path().join("src.bin");
        let data = random_bytes(1 << 20, 141);
        write_file(&src, &data);
        let url = format!("{base}/up{}.bin", tls.len());
        let mut args = vec!["--cacert", &ca];
        args.extend_from_slice(tls);
        args.extend_from_slice(&["-T", src.to_str().unwrap(), &url]);
        curl_cmd(&args).pipe_ok();
        assert_eq!(sha256_file(&root.path().join(format!("up{}.bin", tls.len()))), sha256(&data), "curl ftps:// upload ({tls:?})");
    }
    let o = curl_cmd(&["--cacert", &ca, "--list-only", &format!("{base}/")]).pipe_ok();
    assert!(o.stdout.lines().any(|l| l.trim() == "big.bin"), "ftps:// NLST\n{}", o.describe());
}

#[test]
fn curl_ftps_ccc_in_active_and_passive_mode_then_download() {
    // After login curl sends CCC; "passive" (the default) waits for the
    // server's close_notify and sends none, "active" sends its own first.
    // In passive mode OpenSSL then marks the session not resumable (it
    // never sent its close_notify), so the PROT P data connection makes a
    // full handshake: refused with 522 when reuse is required (as vsftpd's
    // require_ssl_reuse does), served with --insecure-tls-no-reuse.
    let root = tempfile::tempdir().unwrap();
    let body = random_bytes(500_000, 150);
    write_file(&root.path().join("f.bin"), &body);
    let work = tempfile::tempdir().unwrap();
    for (mode, no_reuse, ok) in [("active", false, true), ("passive", false, false), ("passive", true, true)] {
        let f = Ftps::start(root.path(), if no_reuse { &["--insecure-tls-no-reuse"][..] } else { &[][..] }, false);
        let dest = work.path().join(format!("{mode}-{no_reuse}.bin"));
        let args = ["--ftp-ssl-ccc", "--ftp-ssl-ccc-mode", mode, "-v", "-o", dest.to_str().unwrap(), &format!("{}/f.bin", f.url())];
        if ok {
            let o = curl_ftps(&f, &args).pipe_ok();
            assert!(o.stderr.contains("CCC"), "curl sent no CCC ({mode})\n{}", o.describe());
            assert_eq!(sha256_file(&dest), sha256(&body), "download after CCC ({mode}, no reuse {no_reuse})");
        } else {
            let o = curl_ftps(&f, &args).pipe();
            assert!(!o.status.success(), "a data connection without resumption was served ({mode})\n{}", o.describe());
            // curl stops at the data connection the server refused (its
            // 522 comes after), having received none of the file.
            assert!(o.stderr.contains("500000 bytes remaining"), "expected the refused data connection ({mode})\n{}", o.describe());
        }
    }
}

/// lftp with FTPS forced on the control and the data connections.
fn lftp_ftps(f: &Ftps, script: &str) -> Out {
    lftp(
        &f.srv,
        &format!(
            "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; \
             set ssl:ca-file '{}'; set ssl:verify-certificate true; set ssl:check-hostname true; {script}",
            f.ca.display()
        ),
    )
}

#[test]
fn lftp_ftps_mirror_download_tree() {
    // Many data connections on one control connection: each must resume
    // the control connection's session (GnuTLS reuses it for every one).
    let root = tempfile::tempdir().unwrap();
    make_tree(root.path(), 160);
    let f = Ftps::start(root.path(), &[], false);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let o = lftp_ftps(&f, &format!("set ftp:passive-mode on; mirror / '{}'", dest.display())).ok();
    let (want, got) = (tree(root.path()), tree(&dest));
    assert_tree_is_interesting(&want);
    assert_eq!(got, want, "lftp FTPS mirror result differs from the served tree\n{}", o.describe());
    // lftp sends the IP address as SNI; rustls's warning about it (once
    // per handshake, no session named) stays out of the log.
    let log = f.srv.log_text();
    assert!(!log.contains("Illegal SNI"), "{log}");
}

#[test]
fn lftp_ftps_mirror_reverse_upload_tree() {
    let root = tempfile::tempdir().unwrap();
    let f = Ftps::start(root.path(), &["--anonymous-write"], false);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src, 170);
    let o = lftp_ftps(&f, &format!("set ftp:passive-mode on; mirror -R '{}' /up", src.display())).ok();
    let (want, got) = (tree(&src), tree(&root.path().join("up")));
    assert_tree_is_interesting(&want);
    assert_eq!(got, want, "tree uploaded by lftp FTPS mirror -R differs on disk\n{}", o.describe());
    assert_no_temp_files(root.path());
}

#[test]
fn lftp_ftps_active_mode_tls_1_2_mirror_both_ways() {
    // Files only (no empty file or directory): the zero-byte cases have
    // their own tests; this one is about active mode and TLS 1.2.
    let root = tempfile::tempdir().unwrap();
    let f = Ftps::start(root.path(), &["--anonymous-write"], false);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_file(&src.join("one.bin"), &random_bytes(300_000, 181));
    write_file(&src.join("sub dir/two.txt"), b"two\n");
    write_file(&src.join("sub dir/été.bin"), &random_bytes(5000, 182));
    let tls12 = "set ssl:priority 'NORMAL:-VERS-ALL:+VERS-TLS1.2'; set ftp:passive-mode off";
    let o = lftp_ftps(&f, &format!("{tls12}; mirror -R '{}' /up", src.display())).ok();
    assert_eq!(tree(&root.path().join("up")), tree(&src), "lftp FTPS active TLS 1.2 mirror -R\n{}", o.describe());
    let dest = work.path().join("dest");
    let o = lftp_ftps(&f, &format!("{tls12}; mirror /up '{}'", dest.display())).ok();
    assert_eq!(tree(&dest), tree(&src), "lftp FTPS active TLS 1.2 mirror\n{}", o.describe());
    assert_no_temp_files(root.path());
}

const FTPLIB_TLS: &str = r#"
import ftplib, hashlib, io, ssl, sys
host, port, ca, expect = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ftp = ftplib.FTP_TLS(context=ctx)
ftp.connect(host, port, timeout=15)
ftp.login()              # AUTH TLS first, then USER/PASS inside TLS
print("auth=" + ftp.sock.version())
ftp.prot_p()             # PBSZ 0, PROT P
if expect == "522":
    try:
        ftp.retrbinary("RETR big.bin", lambda b: None)
        print("retr=226")
    except ftplib.error_perm as e:
        print("retr=" + str(e)[:3])
    except (ssl.SSLError, OSError) as e:
        # The refused data connection ended badly; the final reply is next.
        try:
            print("retr=" + ftp.voidresp()[:3])
        except ftplib.error_perm as e2:
            print("retr=" + str(e2)[:3])
    try:
        print("noop=" + ftp.voidcmd("NOOP")[:3])
    except EOFError:
        print("noop=closed")
        print("DONE")
        sys.exit(0)
    ftp.quit()
    print("DONE")
    sys.exit(0)
h = hashlib.sha256()
ftp.retrbinary("RETR big.bin", h.update)
print("retr=" + h.hexdigest())
print("nlst=" + ",".join(sorted(ftp.nlst())))
data = bytes((i * 13 + 5) % 256 for i in range(300000))
ftp.storbinary("STOR up.bin", io.BytesIO(data))
print("stor=" + hashlib.sha256(data).hexdigest())
lines = []
ftp.retrlines("LIST", lines.append)
print("list=%d" % len(lines))
ftp.set_pasv(False)
h = hashlib.sha256()
ftp.retrbinary("RETR big.bin", h.update)
print("active_retr=" + h.hexdigest())
ftp.set_pasv(True)
ftp.ccc()                # back to a plaintext control connection
print("ccc_pwd=" + ftp.pwd())
ftp.quit()
print("DONE")
"#;

fn ftplib_tls(f: &Ftps, expect: &str) -> Out {
    let py = need("python3", "python3");
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("ftp_tls.py");
    fs::write(&script, FTPLIB_TLS).unwrap();
    run(cmd(&py, &[script.to_str().unwrap(), "127.0.0.1", &f.srv.port().to_string(), f.ca.to_str().unwrap(), expect]), None)
}

#[test]
fn python_ftp_tls_prot_p_works_with_insecure_tls_no_reuse() {
    // ftplib does not resume the control connection's session on its data
    // connections: it needs --insecure-tls-no-reuse.
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(1 << 20, 190);
    write_file(&root.path().join("big.bin"), &big);
    let f = Ftps::start(root.path(), &["--anonymous-write", "--insecure-tls-no-reuse"], false);
    let o = ftplib_tls(&f, "ok");
    assert!(o.status.success() && o.stdout.contains("DONE"), "ftplib FTP_TLS session failed\n{}", o.describe());
    assert!(value(&o, "auth").starts_with("TLSv1."), "{}", o.describe());
    assert_eq!(value(&o, "retr"), sha256(&big), "retrbinary under PROT P");
    assert_eq!(value(&o, "active_retr"), sha256(&big), "active retrbinary under PROT P");
    assert_eq!(value(&o, "nlst"), "big.bin");
    assert_eq!(value(&o, "list"), "2", "LIST under PROT P (after the upload)");
    let stored = fs::read(root.path().join("up.bin")).expect("storbinary left no file");
    assert_eq!(sha256(&stored), value(&o, "stor"), "storbinary bytes on disk");
    assert_eq!(value(&o, "ccc_pwd"), "/", "PWD in plaintext after CCC");
}

#[test]
fn python_ftp_tls_prot_p_without_insecure_tls_no_reuse_is_522() {
    let root = tempfile::tempdir().unwrap();
    write_file(&root.path().join("big.bin"), &random_bytes(1 << 20, 200));
    let f = Ftps::start(root.path(), &[], false);
    let o = ftplib_tls(&f, "522");
    assert!(o.status.success() && o.stdout.contains("DONE"), "ftplib FTP_TLS session failed\n{}", o.describe());
    assert_eq!(value(&o, "retr"), "522", "a data connection that does not resume\n{}", o.describe());
    assert_eq!(value(&o, "noop"), "200", "the session goes on after 522");
}
