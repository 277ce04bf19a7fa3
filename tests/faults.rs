//! Hardening (issue 5): faults, abuse and shutdown, each test built so that
//! it fails when the protection it checks is removed.
//!
//! Most tests run the built binary as a child process, because what they
//! check belongs to the process: its descriptor limit (`prlimit`), its
//! mount namespace (a full disk: `unshare` + a 1 MiB tmpfs), its user
//! (`setpriv` to `nobody`), signals and `kill -9`, and its open descriptors
//! (`/proc/PID/fd`). These wrappers come with util-linux, on every Debian.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::process::{need, Server};
use common::{wait_until, Ctl, Mode};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".leanftpd-upload-"))
        .collect()
}

fn anon(srv: &Server) -> Ctl {
    let mut c = Ctl::open(srv.addr);
    c.login("anonymous", "x");
    c
}

/// The server's root made readable by every user (tempdirs are 0700).
fn open_root() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    root
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_panic_in_one_session_closes_that_session_only() {
    let srv = common::TestServer::start();
    let mut bystander = srv.anon();
    let mut victim = srv.anon();
    let r = victim.cmd("SITE PANIC");
    assert_eq!(r.code, 421, "{}", r.text());
    victim.expect_closed();
    bystander.expect("NOOP", 200);
    let mut newcomer = srv.anon();
    newcomer.expect("PWD", 257);
}

#[test]
fn accept_failing_with_emfile_backs_off_without_spinning_and_recovers() {
    need("prlimit", "util-linux");
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start_wrapped(&["prlimit", "--nofile=40:40"], LOCALHOST, root.path(), &[]);
    let pid = srv.pid();
    // Fill the descriptor table, and keep some connections waiting in the
    // listen backlog.
    let mut held = Vec::new();
    for _ in 0..60 {
        let s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        held.push(s);
    }
    wait_until("the server to run out of descriptors", Duration::from_secs(5), || fd_count(pid) >= 39);
    // Out of descriptors, with connections pending: it must not spin.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let spent = cpu_ticks(pid) - before;
    assert!(spent < 40, "server burned {spent} ticks of CPU in 1.5 s while out of descriptors");
    // Free the descriptors: the connections still waiting in the backlog
    // are accepted and greeted, without any new connection arriving.
    let waiting = held.split_off(20);
    drop(held);
    for mut s in waiting {
        let mut greeting = [0u8; 4];
        s.read_exact(&mut greeting).expect("a connection that waited in the backlog was never greeted");
        assert_eq!(&greeting[..3], b"220");
    }
    let mut c = anon(&srv);
    c.expect("NOOP", 200);
}

/// The same with the implicit FTPS port: connections that reached it while
/// accepts were paused (their wake-up came and went) are accepted when
/// the descriptors are back, without a new connection to either port.
/// Before, only the control port was looked at again, and these waited
/// until the next connection to the implicit port.
#[test]
fn after_emfile_connections_waiting_on_the_implicit_ftps_port_are_accepted_too() {
    use common::tls::{binary_args, TlsClient, TlsCtl, Version};
    need("prlimit", "util-linux");
    let root = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (_files, mut args) = binary_args(certs.path());
    let implicit = SocketAddr::new(LOCALHOST, common::process::free_port(LOCALHOST));
    args.extend(["--implicit-tls-listen".to_string(), implicit.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Server::start_wrapped(&["prlimit", "--nofile=40:40"], LOCALHOST, root.path(), &args);
    let pid = srv.pid();
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(TcpStream::connect(srv.addr).unwrap());
    }
    wait_until("the server to run out of descriptors", Duration::from_secs(5), || fd_count(pid) >= 39);
    // Let the paused state settle, then queue connections on the implicit
    // port: their wake-up finds accepts paused.
    std::thread::sleep(Duration::from_millis(300));
    let waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(implicit).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    for tcp in waiting {
        let mut c = TlsCtl::from_stream(tcp, TlsClient::new(Version::Tls13));
        c.upgrade().expect("a connection that waited on the implicit port was never served");
        let r = c.reply();
        assert_eq!(r.code, 220, "greeting inside TLS: {r:?}");
    }
}

#[test]
fn disk_full_during_stor_is_452_keeps_the_old_file_and_no_temp_file() {
    need("unshare", "util-linux");
    let root = tempfile::tempdir().unwrap();
    let root_str = root.path().to_str().unwrap().to_string();
    // A private mount namespace with a 1 MiB tmpfs over the root.
    let script = "mount -t tmpfs -o size=1m tmpfs \"$0\" && exec \"$@\"";
    let wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, &root_str];
    let srv = Server::start_wrapped(&wrapper, LOCALHOST, root.path(), &["--anonymous-write"]);
    let mut c = anon(&srv);
    let old = vec![b'o'; 10_000];
    c.stor(Mode::Pasv, "keep.bin", &old);
    // 3 MiB into a 1 MiB filesystem.
    let (r, mut data) = c.open_transfer(Mode::Pasv, "STOR keep.bin");
    assert!(r.is_preliminary(), "{}", r.text());
    let chunk = vec![b'n'; 64 * 1024];
    for _ in 0..48 {
        if data.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(data);
    let r = c.reply();
    assert!(r.code == 452 || r.code == 552, "disk full gave {}", r.text());
    assert_eq!(c.retr(Mode::Pasv, "keep.bin"), old, "the old file changed");
    let names = c.listing(Mode::Pasv, "NLST -a");
    assert_eq!(names.lines().collect::<Vec<_>>(), ["keep.bin"], "listing after the failed upload");
    // The space is back: a small upload works.
    c.stor(Mode::Pasv, "small.bin", b"fits");
    assert_eq!(c.retr(Mode::Pasv, "small.bin"), b"fits");
}

#[test]
fn permission_denied_by_the_os_is_550_and_the_session_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    need("setpriv", "util-linux");
    let root = open_root();
    fs::write(root.path().join("secret.txt"), b"root only").unwrap();
    fs::set_permissions(root.path().join("secret.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.path().join("public.txt"), b"for all").unwrap();
    fs::set_permissions(root.path().join("public.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    let wrapper = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let srv = Server::start_wrapped(&wrapper, LOCALHOST, root.path(), &["--anonymous-write"]);
    let mut c = anon(&srv);
    c.pasv();
    let r = c.cmd("RETR secret.txt");
    assert_eq!(r.code, 550, "{}", r.text());
    // The root directory belongs to root: nobody may not create files in it.
    c.pasv();
    let r = c.cmd("STOR new.txt");
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(!root.path().join("new.txt").exists());
    assert_eq!(c.retr(Mode::Pasv, "public.txt"), b"for all");
}

#[test]
fn a_client_vanishing_mid_transfer_leaves_no_descriptor_port_or_temp_file() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("big.bin"), vec![7u8; 32 << 20]).unwrap();
    let srv = Server::start(root.path(), &["--anonymous-write"]);
    let pid = srv.pid();
    let baseline = fd_count(pid);
    for _ in 0..3 {
        // An upload cut by a reset of both connections.
        let mut c = anon(&srv);
        let (_, mut data) = c.open_transfer(Mode::Pasv, "STOR gone.bin");
        data.write_all(&[1u8; 100_000]).unwrap();
        common::reset(data);
        common::reset(c.into_stream());
        // A download whose client disappears.
        let mut c = anon(&srv);
        let (_, mut data) = c.open_transfer(Mode::Epsv, "RETR big.bin");
        let mut buf = [0u8; 4096];
        data.read_exact(&mut buf).unwrap();
        common::reset(data);
        common::reset(c.into_stream());
        // A passive listener that nobody connects to.
        let mut c = anon(&srv);
        c.pasv();
        common::reset(c.into_stream());
    }
    wait_until("descriptors back to the baseline", Duration::from_secs(5), || fd_count(pid) <= baseline);
    assert!(temp_files(root.path()).is_empty(), "temp files left: {:?}", temp_files(root.path()));
    // A cut upload to a new name keeps what arrived (issue 10: resumable),
    // and nothing but what was sent.
    if let Ok(kept) = fs::read(root.path().join("gone.bin")) {
        assert!(kept.len() <= 100_000 && kept.iter().all(|&b| b == 1), "a cut upload kept {} bytes not sent", kept.len());
    }
}

#[test]
fn passive_port_range_exhausted_is_425_and_others_are_unaffected() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.txt"), b"data").unwrap();
    let port = common::process::free_port(LOCALHOST);
    let range = format!("{port}-{port}");
    let srv = Server::start(root.path(), &["--passive-ports", &range]);
    let mut a = anon(&srv);
    let mut b = anon(&srv);
    assert_eq!(a.pasv().port(), port);
    let r = b.cmd("PASV");
    assert_eq!(r.code, 425, "{}", r.text());
    b.expect("NOOP", 200);
    // A's transfer uses and frees the port; then B gets it.
    assert_eq!(a.retr(Mode::Pasv, "f.txt"), b"data");
    wait_until("the port to be free again", Duration::from_secs(5), || {
        let r = b.cmd("PASV");
        r.code == 227
    });
}

#[test]
fn slowloris_connections_do_not_lock_out_an_honest_client() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f.txt"), b"honest data").unwrap();
    // Many connections from one address are the per-address limit's job;
    // this test is about the global limit, so that one is lifted.
    let srv = Server::start(root.path(), &["--max-clients", "300", "--max-per-ip", "20000"]);
    let addr = srv.addr;
    let flood = std::thread::spawn(move || {
        let mut conns = Vec::with_capacity(3_000);
        for _ in 0..3_000 {
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    // One byte, then silence: a line that never ends.
                    let _ = s.write_all(b"U");
                    conns.push(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        conns
    });
    wait_until("the flood to fill the server", Duration::from_secs(90), || flood.is_finished());
    let conns = flood.join().unwrap();
    assert!(conns.len() > 1_000, "the flood opened only {} connections", conns.len());
    // Ten times the limit of silent connections are open: an honest client
    // still gets in (the oldest silent one makes room) and transfers.
    let mut c = anon(&srv);
    assert_eq!(c.retr(Mode::Pasv, "f.txt"), b"honest data");
    c.expect("QUIT", 221);
    drop(conns);
}

#[test]
fn sigterm_cuts_a_stalled_upload_at_the_grace_deadline_and_exits_0() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("doc.txt"), b"old").unwrap();
    let mut srv = Server::start(root.path(), &["--anonymous-write", "--shutdown-grace", "1"]);
    let mut idle = anon(&srv);
    let mut c = anon(&srv);
    let (r, mut data) = c.open_transfer(Mode::Pasv, "STOR doc.txt");
    assert!(r.is_preliminary());
    data.write_all(b"half of the new").unwrap();
    wait_until("the temp file", Duration::from_secs(5), || !temp_files(root.path()).is_empty());
    srv.signal("TERM");
    // The idle session is told at once.
    assert_eq!(idle.reply().code, 421);
    // The upload is cut at the deadline: 426 (then 421), nothing committed.
    assert_eq!(c.reply().code, 426);
    let status = srv.wait_exit(Duration::from_secs(5)).expect("no exit after the grace period");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(fs::read(root.path().join("doc.txt")).unwrap(), b"old");
    assert!(temp_files(root.path()).is_empty(), "temp files left: {:?}", temp_files(root.path()));
    drop(data);
}

#[test]
fn sigterm_lets_a_running_download_finish_then_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let big = vec![9u8; 8 << 20];
    fs::write(root.path().join("big.bin"), &big).unwrap();
    let mut srv = Server::start(root.path(), &["--shutdown-grace", "10"]);
    let mut c = anon(&srv);
    let (r, mut data) = c.open_transfer(Mode::Pasv, "RETR big.bin");
    assert!(r.is_preliminary());
    let mut first = vec![0u8; 1 << 20];
    data.read_exact(&mut first).unwrap();
    srv.signal("TERM");
    // New connections are refused once the listener is closed.
    wait_until("the listener to close", Duration::from_secs(5), || TcpStream::connect(srv.addr).is_err());
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() + rest.len(), big.len(), "the download was cut");
    assert_eq!(c.reply().code, 226);
    assert_eq!(c.reply().code, 421);
    let status = srv.wait_exit(Duration::from_secs(5)).expect("no exit after the transfer");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn kill_9_during_an_upload_leaves_the_old_file_intact() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("doc.txt"), b"the old, complete contents").unwrap();
    let mut srv = Server::start(root.path(), &["--anonymous-write"]);
    let mut c = anon(&srv);
    let (_, mut data) = c.open_transfer(Mode::Pasv, "STOR doc.txt");
    data.write_all(&[b'x'; 200_000]).unwrap();
    wait_until("the upload to reach the disk", Duration::from_secs(5), || {
        temp_files(root.path()).iter().any(|t| fs::metadata(root.path().join(t)).map(|m| m.len() > 0).unwrap_or(false))
    });
    srv.signal("KILL");
    srv.wait_exit(Duration::from_secs(5)).expect("kill -9 did not end the server");
    assert_eq!(fs::read(root.path().join("doc.txt")).unwrap(), b"the old, complete contents");
}

#[test]
fn xferlog_has_one_line_per_transfer_in_wu_ftpd_format() {
    let root = tempfile::tempdir().unwrap();
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("xferlog");
    fs::write(root.path().join("a file.txt"), b"12345").unwrap();
    let srv = Server::start(root.path(), &["--anonymous-write", "--xferlog", log.to_str().unwrap()]);
    let mut c = anon(&srv);
    assert_eq!(c.retr(Mode::Pasv, "a file.txt"), b"12345");
    c.stor(Mode::Epsv, "up.bin", b"abc");
    c.listing(Mode::Pasv, "LIST");
    c.expect("QUIT", 221);
    wait_until("two xferlog lines", Duration::from_secs(5), || {
        fs::read_to_string(&log).map(|t| t.lines().count() == 2).unwrap_or(false)
    });
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').filter(|f| !f.is_empty()).collect()).collect();
    // current-time (5 fields) transfer-time remote-host file-size filename
    // transfer-type special-action direction access-mode username service
    // authentication-method authenticated-user-id completion-status
    assert_eq!(lines[0].len(), 18, "{text}");
    assert_eq!(&lines[0][6..], ["127.0.0.1", "5", "/a_file.txt", "b", "_", "o", "a", "anonymous", "ftp", "0", "*", "c"], "{text}");
    assert_eq!(&lines[1][6..], ["127.0.0.1", "3", "/up.bin", "b", "_", "i", "a", "anonymous", "ftp", "0", "*", "c"], "{text}");
}

/// A client that connects and sends HTTP is closed at once, before login.
#[test]
fn http_verbs_close_the_connection_at_once() {
    let root = tempfile::tempdir().unwrap();
    let srv = Server::start(root.path(), &[]);
    for req in ["GET / HTTP/1.1", "POST /x HTTP/1.1", "PUT /x HTTP/1.1", "HEAD / HTTP/1.0", "CONNECT a:443 HTTP/1.1", "OPTIONS * HTTP/1.1"] {
        let mut c = Ctl::open(srv.addr);
        let r = c.cmd(req);
        assert_eq!(r.code, 500, "{req}: {}", r.text());
        c.expect_closed();
    }
    // A few unknown commands before login close the connection too.
    let mut c = Ctl::open(srv.addr);
    for _ in 0..2 {
        assert_eq!(c.cmd("XYZZ").code, 500);
    }
    assert_eq!(c.cmd("XYZZ").code, 500);
    c.expect_closed();
    let _: SocketAddr = srv.addr;
}
