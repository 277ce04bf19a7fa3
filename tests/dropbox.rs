//! Drop boxes over real sockets (issue 13): a users-file user with the
//! `w` (upload-only) permission, and `--anonymous-upload-dir` for
//! anonymous users in an otherwise read-only tree.
//!
//! Each claim is checked for both kinds of drop box (the [`Who`] table):
//! uploads land (sha256 on disk), MKD works, RETR is `550` with nothing on
//! the data connection, listings are empty and `226`, DELE/RNFR/RMD/APPE/
//! overwrite/resume are refused with the delivered file unchanged (sha256
//! before and after), two uploads racing for one new name leave the
//! winner's bytes. Then: a symbolic link in the upload dir gives no write
//! access outside it, the start-up errors (exit code 2), curl against the
//! built binary, and one upload and one refused RETR under TLS (PROT P).

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::process::{cmd, need, run, Server, BIN};
use common::tls::{Order, Version};
use common::*;

/// Someone else's delivery, already in each drop box.
const OLD: &[u8] = b"someone else's delivery";

/// A server with `cam` (`w`, home `cam/`) and anonymous with the upload
/// dir `/incoming`; `pub/readme.txt` is outside both.
fn server_with(tweak: impl FnOnce(&mut leanftpd::Config)) -> TestServer {
    let hash = openssl_passwd("-5", "salt", "secret");
    TestServer::with(move |cfg| {
        let root = cfg.root.clone();
        for d in ["cam", "incoming", "pub"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::fs::write(root.join("cam/old.bin"), OLD).unwrap();
        std::fs::write(root.join("incoming/old.bin"), OLD).unwrap();
        std::fs::create_dir(root.join("cam/olddir")).unwrap();
        std::fs::create_dir(root.join("incoming/olddir")).unwrap();
        std::fs::write(root.join("pub/readme.txt"), b"read me").unwrap();
        let users = root.parent().unwrap().join("users.txt");
        std::fs::write(&users, format!("cam:{hash}:cam:w\n")).unwrap();
        cfg.users = Some(users);
        cfg.anonymous = true;
        cfg.anonymous_write = false;
        cfg.anonymous_upload_dir = Some(leanftpd::vfs::VirtualPath::root().resolve(b"/incoming").unwrap());
        tweak(cfg);
    })
}

fn server() -> TestServer {
    server_with(|_| {})
}

/// The two kinds of drop box.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// `cam`, with `w` on its home `cam/` (its `/`).
    User,
    /// Anonymous, in `/incoming`.
    Anonymous,
}

const WHO: [Who; 2] = [Who::User, Who::Anonymous];

impl Who {
    fn login(self, srv: &TestServer) -> Ctl {
        let mut c = srv.ctl();
        match self {
            Who::User => c.login("cam", "secret"),
            Who::Anonymous => {
                c.login("anonymous", "cam@example.com");
                c.expect("CWD /incoming", 250);
            }
        }
        c
    }

    /// The drop box directory on disk, relative to the root.
    fn dir(self) -> &'static str {
        match self {
            Who::User => "cam",
            Who::Anonymous => "incoming",
        }
    }

    fn disk(self, srv: &TestServer, rel: &str) -> std::path::PathBuf {
        srv.path(&format!("{}/{rel}", self.dir()))
    }
}

/// Send `command` after PASV with the data connection made first; returns
/// the reply and every byte the data connection carried until the server
/// closed it or `quiet` passed without a byte.
fn refused_on_open_data(c: &mut Ctl, command: &str) -> (Reply, Vec<u8>) {
    let addr = c.pasv();
    let mut data = connect_data(addr);
    let r = c.cmd(command);
    data.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (r, got)
}

#[test]
fn a_drop_box_takes_uploads_and_new_directories() {
    let srv = server();
    for who in WHO {
        let mut c = who.login(&srv);
        let bytes = pattern(300_000, 7);
        for mode in MODES {
            let name = format!("up-{mode:?}.bin");
            c.stor(mode, &name, &bytes);
            assert_eq!(sha256_file(&who.disk(&srv, &name)), sha256(&bytes), "{who:?} {mode:?}");
        }
        c.expect("MKD day1", 257);
        c.expect("CWD day1", 250);
        c.stor(Mode::Pasv, "pic.jpg", b"jpeg bytes");
        assert_eq!(std::fs::read(who.disk(&srv, "day1/pic.jpg")).unwrap(), b"jpeg bytes");
        c.expect("CDUP", 250);
        c.expect("MKD olddir", 550);
        // STOU names a new file.
        let (r, mut data) = c.open_transfer(Mode::Pasv, "STOU old.bin");
        assert!(r.text().contains("old.bin.1"), "{r:?}");
        data.write_all(b"unique").unwrap();
        drop(data);
        assert_eq!(c.reply().code, 226);
        assert_eq!(std::fs::read(who.disk(&srv, "old.bin.1")).unwrap(), b"unique");
        assert_eq!(std::fs::read(who.disk(&srv, "old.bin")).unwrap(), OLD);
        assert!(srv.temp_files(who.dir()).is_empty(), "{who:?}");
    }
}

#[test]
fn a_drop_box_refuses_retr_with_550_and_sends_no_byte() {
    let srv = server();
    for who in WHO {
        let mut c = who.login(&srv);
        for name in ["old.bin", "missing.bin", "olddir"] {
            let (r, got) = refused_on_open_data(&mut c, &format!("RETR {name}"));
            assert_eq!(r.code, 550, "{who:?} RETR {name}: {r:?}");
            assert!(r.text().contains("drop box"), "{r:?}");
            assert!(got.is_empty(), "{who:?} RETR {name} sent {} bytes", got.len());
            // The session goes on.
            c.expect("NOOP", 200);
        }
        // The refusal is the same for a file and a missing name.
        let (a, _) = refused_on_open_data(&mut c, "RETR old.bin");
        let (b, _) = refused_on_open_data(&mut c, "RETR missing.bin");
        assert_eq!((a.code, a.lines), (b.code, b.lines));
    }
}

#[test]
fn a_drop_box_lists_no_names_on_any_kind_of_data_connection() {
    let srv = server();
    for who in WHO {
        let mut c = who.login(&srv);
        for mode in MODES {
            for command in ["LIST", "NLST", "MLSD", "LIST -la", "NLST olddir", "LIST ."] {
                let text = c.listing(mode, command);
                assert_eq!(text, "", "{who:?} {mode:?} {command}");
            }
        }
        // STAT of a directory: the header and the end, nothing between.
        let r = c.expect("STAT .", 213);
        assert_eq!(r.lines.len(), 2, "{r:?}");
        // A file, a missing name, a glob: the same 550.
        for command in ["LIST old.bin", "LIST missing.bin", "NLST *.bin", "MLSD old.bin"] {
            let (r, got) = refused_on_open_data(&mut c, command);
            assert_eq!(r.code, 550, "{who:?} {command}: {r:?}");
            assert!(got.is_empty());
        }
        for command in ["STAT old.bin", "MLST old.bin", "SIZE old.bin", "MDTM old.bin"] {
            let r = c.expect(command, 550);
            assert_eq!(r.lines.len(), 1, "{r:?}");
        }
    }
}

#[test]
fn a_drop_box_never_deletes_renames_appends_or_overwrites() {
    let srv = server();
    for who in WHO {
        let before = sha256_file(&who.disk(&srv, "old.bin"));
        let mut c = who.login(&srv);
        c.expect("DELE old.bin", 550);
        c.expect("RNFR old.bin", 550);
        c.expect("RNTO stolen.bin", 503);
        c.expect("RMD olddir", 550);
        c.expect("MFMT 20000101000000 old.bin", 550);
        c.expect("SITE CHMOD 600 old.bin", 550);
        let (r, got) = refused_on_open_data(&mut c, "APPE old.bin");
        assert_eq!((r.code, got.len()), (550, 0), "{r:?}");
        let (r, _) = refused_on_open_data(&mut c, "STOR old.bin");
        assert_eq!(r.code, 553, "{who:?} overwrite: {r:?}");
        assert!(r.text().contains("drop box"), "{r:?}");
        c.expect("REST 5", 350);
        let (r, _) = refused_on_open_data(&mut c, "STOR old.bin");
        assert_eq!(r.code, 550, "{who:?} resume: {r:?}");
        // Also into a new name: a resume needs the old bytes.
        c.expect("REST 5", 350);
        let (r, _) = refused_on_open_data(&mut c, "STOR fresh.bin");
        assert_eq!(r.code, 550, "{who:?} resume of a new name: {r:?}");
        assert!(!who.disk(&srv, "fresh.bin").exists());
        assert_eq!(sha256_file(&who.disk(&srv, "old.bin")), before, "{who:?}");
        assert!(who.disk(&srv, "olddir").is_dir());
        assert!(!who.disk(&srv, "stolen.bin").exists());
    }
}

/// Two clients upload one new name at once: the first to complete wins,
/// the other's transfer ends `553`, the winner's bytes stay.
#[test]
fn of_two_uploads_racing_for_one_new_name_the_first_to_complete_wins() {
    let srv = server();
    for who in WHO {
        let mut slow = who.login(&srv);
        let mut fast = who.login(&srv);
        let (slow_bytes, fast_bytes) = (pattern(200_000, 1), pattern(150_000, 2));
        let (_, mut slow_data) = slow.open_transfer(Mode::Pasv, "STOR race.bin");
        slow_data.write_all(&slow_bytes[..100_000]).unwrap();
        let (_, mut fast_data) = fast.open_transfer(Mode::Epsv, "STOR race.bin");
        fast_data.write_all(&fast_bytes).unwrap();
        fast_data.shutdown(Shutdown::Write).unwrap();
        drop(fast_data);
        assert_eq!(fast.reply().code, 226, "{who:?}");
        slow_data.write_all(&slow_bytes[100_000..]).unwrap();
        slow_data.shutdown(Shutdown::Write).unwrap();
        drop(slow_data);
        let r = slow.reply();
        assert_eq!(r.code, 553, "{who:?}: {r:?}");
        assert_eq!(sha256_file(&who.disk(&srv, "race.bin")), sha256(&fast_bytes), "{who:?}");
        assert!(srv.temp_files(who.dir()).is_empty(), "{who:?}");
        // Once delivered, the name is taken before any byte is sent.
        let (r, _) = refused_on_open_data(&mut slow, "STOR race.bin");
        assert_eq!(r.code, 553);
    }
}

/// An interrupted upload in a drop box leaves nothing: its uploader could
/// neither resume nor remove it.
#[test]
fn an_interrupted_drop_box_upload_leaves_no_file() {
    let srv = server();
    for who in WHO {
        let mut c = who.login(&srv);
        let (_, mut data) = c.open_transfer(Mode::Pasv, "STOR cut.bin");
        data.write_all(&pattern(50_000, 3)).unwrap();
        reset(data);
        let r = c.reply();
        assert_eq!(r.code, 426, "{who:?}: {r:?}");
        assert!(!who.disk(&srv, "cut.bin").exists(), "{who:?}");
        assert!(srv.temp_files(who.dir()).is_empty());
        // And the name is free for the next attempt.
        c.stor(Mode::Pasv, "cut.bin", b"whole");
        assert_eq!(std::fs::read(who.disk(&srv, "cut.bin")).unwrap(), b"whole");
    }
}

#[test]
fn anonymous_stays_read_only_outside_the_upload_dir() {
    let srv = server();
    let mut c = srv.anon();
    assert_eq!(c.retr(Mode::Pasv, "/pub/readme.txt"), b"read me");
    let names = c.listing(Mode::Pasv, "NLST /");
    assert!(names.contains("incoming") && names.contains("pub"), "{names}");
    let (r, _) = refused_on_open_data(&mut c, "STOR /pub/x.bin");
    assert_eq!(r.code, 550);
    let (r, _) = refused_on_open_data(&mut c, "STOR /x.bin");
    assert_eq!(r.code, 550);
    c.expect("MKD /pub/d", 550);
    c.expect("DELE /pub/readme.txt", 550);
    // `..` out of the drop box is the read-only tree again.
    c.expect("CWD /incoming", 250);
    let (r, _) = refused_on_open_data(&mut c, "STOR ../pub/x.bin");
    assert_eq!(r.code, 550);
    assert_eq!(std::fs::read_dir(srv.path("pub")).unwrap().count(), 1);
    assert_eq!(std::fs::read(srv.path("pub/readme.txt")).unwrap(), b"read me");
}

/// A symbolic link inside the upload dir that points elsewhere in the
/// root (absolute or relative) is resolved inside the upload dir, so it
/// gives no write access outside it.
#[test]
fn a_symlink_in_the_upload_dir_gives_no_write_access_outside_it() {
    let srv = server_with(|cfg| {
        let inc = cfg.root.join("incoming");
        std::os::unix::fs::symlink("/pub", inc.join("abs")).unwrap();
        std::os::unix::fs::symlink("../pub", inc.join("rel")).unwrap();
        std::os::unix::fs::symlink("../../", inc.join("up")).unwrap();
        std::os::unix::fs::symlink("/pub/readme.txt", inc.join("file")).unwrap();
    });
    let before = sha256_file(&srv.path("pub/readme.txt"));
    let mut c = srv.anon();
    for link in ["abs", "rel", "up/pub"] {
        let (r, _) = refused_on_open_data(&mut c, &format!("STOR /incoming/{link}/x.bin"));
        assert_eq!(r.code, 550, "{link}: {r:?}");
        c.expect(&format!("MKD /incoming/{link}/d"), 550);
        c.expect(&format!("CWD /incoming/{link}"), 550);
    }
    let (r, _) = refused_on_open_data(&mut c, "STOR /incoming/file");
    assert_eq!(r.code, 553, "{r:?}");
    assert_eq!(sha256_file(&srv.path("pub/readme.txt")), before);
    assert_eq!(std::fs::read_dir(srv.path("pub")).unwrap().count(), 1, "nothing new in pub/");
    assert!(!srv.base.join("x.bin").exists() && !srv.path("x.bin").exists());
}

/// The upload dir must be an existing directory inside the root, and it
/// excludes `--anonymous-write`: exit code 2 with a clear message.
#[test]
fn bad_upload_dir_options_are_usage_errors_with_exit_code_2() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("file"), b"x").unwrap();
    std::fs::create_dir(root.path().join("incoming")).unwrap();
    let r = root.path().to_str().unwrap();
    for (args, says) in [
        (vec!["--anonymous-upload-dir", "/missing"], "/missing"),
        (vec!["--anonymous-upload-dir", "/file"], "Not a directory"),
        (vec!["--anonymous-upload-dir", "/incoming", "--anonymous-write"], "exclude each other"),
        (vec!["--anonymous-upload-dir", ""], "--anonymous-upload-dir"),
    ] {
        let mut all = vec!["--root", r, "--listen", "127.0.0.1:0"];
        all.extend(&args);
        let o = run(cmd(std::path::Path::new(BIN), &all), None);
        assert_eq!(o.code(), Some(2), "{args:?}\n{}", o.describe());
        assert!(o.stderr.contains(says), "{args:?}\n{}", o.describe());
    }
}

/// curl against the built binary: `-T` into the anonymous drop box works,
/// a second `-T` of the same name fails (553), a download fails (550).
#[test]
fn curl_uploads_into_the_anonymous_drop_box_and_cannot_download() {
    let curl = need("curl", "curl");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("incoming")).unwrap();
    std::fs::write(root.path().join("incoming/old.bin"), OLD).unwrap();
    let srv = Server::start(root.path(), &["--anonymous-upload-dir", "/incoming"]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("pic.jpg");
    let bytes = pattern(123_456, 9);
    std::fs::write(&src, &bytes).unwrap();
    let curl_cmd = |args: &[&str]| {
        let mut c = cmd(&curl, &["-sS", "--connect-timeout", "5", "--max-time", "25"]);
        c.args(args);
        run(c, None)
    };
    let url = format!("{}/incoming/pic.jpg", srv.url());
    curl_cmd(&["-T", src.to_str().unwrap(), &url]).ok();
    assert_eq!(sha256_file(&root.path().join("incoming/pic.jpg")), sha256(&bytes));
    // Into a new directory (curl's CWD fails, MKD, CWD, STOR).
    let o = curl_cmd(&["--ftp-create-dirs", "-T", src.to_str().unwrap(), &format!("{}/incoming/cam1/day2/", srv.url())]);
    o.ok();
    assert_eq!(sha256_file(&root.path().join("incoming/cam1/day2/pic.jpg")), sha256(&bytes));
    // Again: the name is taken (553) → CURLE_UPLOAD_FAILED (25).
    std::fs::write(&src, b"other bytes").unwrap();
    let o = curl_cmd(&["-T", src.to_str().unwrap(), &url]);
    assert_eq!(o.code(), Some(25), "{}", o.describe());
    assert_eq!(sha256_file(&root.path().join("incoming/pic.jpg")), sha256(&bytes));
    // Download: 550 → CURLE_REMOTE_FILE_NOT_FOUND (78), nothing written.
    let dest = work.path().join("got");
    let o = curl_cmd(&["-o", dest.to_str().unwrap(), &format!("{}/incoming/old.bin", srv.url())]);
    assert_eq!(o.code(), Some(78), "{}", o.describe());
    assert!(std::fs::read(&dest).map(|b| b.is_empty()).unwrap_or(true));
    // A listing: empty, and curl is content with it.
    let o = curl_cmd(&["-l", &format!("{}/incoming/", srv.url())]).ok();
    assert_eq!(o.stdout, "");
    // Outside the drop box anonymous is read-only (553/550 → 25).
    let o = curl_cmd(&["-T", src.to_str().unwrap(), &format!("{}/pic.jpg", srv.url())]);
    assert_eq!(o.code(), Some(25), "{}", o.describe());
    assert!(!root.path().join("pic.jpg").exists());
}

/// Under TLS (PROT P): one upload lands, one RETR is refused with nothing
/// on the (protected) data connection.
#[test]
fn under_tls_a_drop_box_takes_an_upload_and_refuses_retr() {
    let srv = server_with(common::tls::enable);
    for who in WHO {
        let mut c = srv.tls_ctl(Version::Tls13);
        match who {
            Who::User => c.login("cam", "secret"),
            Who::Anonymous => {
                c.login("anonymous", "x@y");
                c.expect("CWD /incoming", 250);
            }
        }
        c.protect();
        let bytes = pattern(70_000, 5);
        c.stor(Mode::Pasv, Order::CommandFirst, "tls.bin", &bytes);
        assert_eq!(sha256_file(&who.disk(&srv, "tls.bin")), sha256(&bytes), "{who:?}");
        let prep = c.prepare(Mode::Pasv);
        match c.try_start(prep, Order::ConnectFirst, "RETR old.bin") {
            Err(r) => assert_eq!(r.code, 550, "{who:?}: {r:?}"),
            Ok((r, _)) => panic!("{who:?}: RETR in a drop box started: {r:?}"),
        }
        let text = c.listing(Mode::Pasv, Order::CommandFirst, "NLST");
        assert_eq!(text, "", "{who:?}");
        assert_eq!(std::fs::read(who.disk(&srv, "old.bin")).unwrap(), OLD);
    }
}

/// With `--workers 2`, two sessions on different workers (different
/// reactors, different `Vfs` handles) race for one new name in the
/// anonymous drop box: still one winner, the other `553`.
#[test]
fn with_two_workers_a_race_across_reactors_still_has_one_winner() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("incoming")).unwrap();
    let srv = Server::start(root.path(), &["--workers", "2", "--anonymous-upload-dir", "/incoming"]);
    let mut on: std::collections::BTreeMap<u32, Ctl> = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let c = common::workers::anon(&srv);
        let local = c.writer_clone().local_addr().unwrap();
        let w = common::workers::workers_of(&srv, &[local])[0];
        on.entry(w).or_insert(c);
        if on.len() == 2 {
            break;
        }
    }
    assert_eq!(on.len(), 2, "40 sessions, all on worker(s) {:?}", on.keys().collect::<Vec<_>>());
    let mut cs = on.into_values();
    let (mut slow, mut fast) = (cs.next().unwrap(), cs.next().unwrap());
    let (slow_bytes, fast_bytes) = (pattern(200_000, 11), pattern(90_000, 12));
    let (_, mut slow_data) = slow.open_transfer(Mode::Pasv, "STOR /incoming/race.bin");
    slow_data.write_all(&slow_bytes[..50_000]).unwrap();
    let (_, mut fast_data) = fast.open_transfer(Mode::Pasv, "STOR /incoming/race.bin");
    fast_data.write_all(&fast_bytes).unwrap();
    fast_data.shutdown(Shutdown::Write).unwrap();
    drop(fast_data);
    assert_eq!(fast.reply().code, 226);
    slow_data.write_all(&slow_bytes[50_000..]).unwrap();
    slow_data.shutdown(Shutdown::Write).unwrap();
    drop(slow_data);
    assert_eq!(slow.reply().code, 553);
    assert_eq!(sha256_file(&root.path().join("incoming/race.bin")), sha256(&fast_bytes));
    let left: Vec<_> = std::fs::read_dir(root.path().join("incoming")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
