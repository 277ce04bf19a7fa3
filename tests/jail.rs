//! The jail and data-connection ownership over real loopback sockets:
//! `..` and symbolic links never reach a canary file outside the root, CWD
//! never lands outside it, and data connections only ever go to or come
//! from the control connection's own address.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// A server whose base directory holds, outside the root, `outside/` with a
/// canary file of unique content and a second entry of unique name; inside
/// the root, symbolic links pointing at them.
struct Escape {
    srv: TestServer,
    canary_name: String,
    canary: Vec<u8>,
    canary_path: PathBuf,
    secret_entry: String,
    outside: PathBuf,
}

impl Escape {
    fn new() -> Escape {
        let srv = TestServer::start();
        let outside = srv.base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        let canary_name = unique("canary");
        let canary = format!("CANARY {} must never leave the server", unique("content")).into_bytes();
        let canary_path = outside.join(&canary_name);
        std::fs::write(&canary_path, &canary).unwrap();
        let secret_entry = unique("secret-entry");
        std::fs::write(outside.join(&secret_entry), b"").unwrap();

        let root = &srv.root;
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("inside.txt"), b"inside").unwrap();
        symlink(&canary_path, root.join("abs-link")).unwrap();
        symlink(format!("../outside/{canary_name}"), root.join("rel-link")).unwrap();
        symlink(format!("../../outside/{canary_name}"), root.join("sub/deep-rel-link")).unwrap();
        symlink(format!("../../../outside/{canary_name}"), root.join("sub/deeper/deepest-rel-link")).unwrap();
        symlink(&outside, root.join("dir-link")).unwrap();
        symlink("../outside", root.join("rel-dir-link")).unwrap();
        symlink("/", root.join("slash-link")).unwrap();
        symlink("inside.txt", root.join("ok-link")).unwrap();
        Escape { srv, canary_name, canary, canary_path, secret_entry, outside }
    }

    /// Every way we know of to name the canary from inside.
    fn file_paths(&self) -> Vec<String> {
        let n = &self.canary_name;
        let abs = self.canary_path.display().to_string();
        let abs_rel = abs.trim_start_matches('/').to_string();
        vec![
            format!("../outside/{n}"),
            format!("/../../outside/{n}"),
            format!("/../outside/{n}"),
            format!("../../../../../../../../{abs_rel}"),
            format!("/../../../../../../../..{abs}"),
            abs.clone(),
            format!("sub/../../outside/{n}"),
            format!("./../outside/{n}"),
            format!("..\\outside\\{n}"),
            "abs-link".into(),
            "rel-link".into(),
            "/abs-link".into(),
            "sub/deep-rel-link".into(),
            "sub/deeper/deepest-rel-link".into(),
            format!("dir-link/{n}"),
            format!("rel-dir-link/{n}"),
            format!("dir-link/../outside/{n}"),
            format!("slash-link{abs}"),
            format!("sub/../dir-link/{n}"),
        ]
    }

    /// Every way we know of to name the outside directory from inside.
    fn dir_paths(&self) -> Vec<String> {
        let abs = self.outside.display().to_string();
        vec![
            "..".into(),
            "../..".into(),
            "/..".into(),
            "../outside".into(),
            "/../../outside".into(),
            abs.clone(),
            format!("../../../../../../..{abs}"),
            "dir-link".into(),
            "rel-dir-link".into(),
            "/dir-link/".into(),
            "sub/../../outside".into(),
            format!("slash-link{abs}"),
            "slash-link".into(),
        ]
    }

    #[track_caller]
    fn assert_no_leak(&self, what: &str, bytes: &[u8]) {
        assert!(
            !bytes.windows(self.canary.len()).any(|w| w == &self.canary[..]),
            "{what}: the canary's content came back"
        );
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(&self.secret_entry), "{what}: a listing of the outside directory came back: {text:?}");
    }

    #[track_caller]
    fn assert_canary_intact(&self) {
        assert_eq!(std::fs::read(&self.canary_path).unwrap(), self.canary, "the canary outside the root was changed");
        let mut names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want = vec![self.canary_name.clone(), self.secret_entry.clone()];
        want.sort();
        assert_eq!(names, want, "something was created or removed outside the root");
    }
}

/// RETR of `path` in `mode`: the reply code, and the data if it started.
fn try_retr(c: &mut Ctl, mode: Mode, path: &str) -> (Reply, Vec<u8>) {
    match c.prepare(mode) {
        DataPrep::Passive(addr) => {
            c.send(&format!("RETR {path}"));
            let mut data = connect_data(addr);
            let r = c.reply();
            let mut got = Vec::new();
            if r.is_preliminary() {
                let _ = data.read_to_end(&mut got);
                let _ = c.reply();
            }
            (r, got)
        }
        DataPrep::Active(l) => {
            c.send(&format!("RETR {path}"));
            let r = c.reply();
            let mut got = Vec::new();
            if r.is_preliminary() {
                let mut data = accept_within(&l, IO_TIMEOUT).expect("server connects");
                let _ = data.read_to_end(&mut got);
                let _ = c.reply();
            }
            (r, got)
        }
    }
}

#[test]
fn retr_never_returns_the_canary_outside_the_root() {
    let e = Escape::new();
    let mut c = e.srv.anon();
    c.expect("TYPE I", 200);
    for (i, path) in e.file_paths().iter().enumerate() {
        let mode = MODES[i % MODES.len()];
        let (r, got) = try_retr(&mut c, mode, path);
        e.assert_no_leak(&format!("RETR {path} ({mode:?})"), &got);
        assert_eq!(r.code, 550, "RETR {path:?} ({mode:?}) must be refused: {r:?}");
    }
    // In ASCII mode too (the buffered path).
    c.expect("TYPE A", 200);
    for path in e.file_paths() {
        let (r, got) = try_retr(&mut c, Mode::Pasv, &path);
        e.assert_no_leak(&format!("RETR {path} (TYPE A)"), &got);
        assert_eq!(r.code, 550, "RETR {path:?} (TYPE A): {r:?}");
    }
    c.expect("NOOP", 200);
    e.assert_canary_intact();
}

#[test]
fn size_and_mdtm_never_see_the_canary_outside_the_root() {
    let e = Escape::new();
    let mut c = e.srv.anon();
    for path in e.file_paths() {
        for verb in ["SIZE", "MDTM"] {
            let r = c.cmd(&format!("{verb} {path}"));
            assert_eq!(r.code, 550, "{verb} {path:?}: {r:?}");
            assert!(!r.text().contains(&e.canary.len().to_string()) || verb == "MDTM", "{verb} {path:?}: {r:?}");
        }
    }
}

#[test]
fn list_and_nlst_never_show_the_outside_directory() {
    let e = Escape::new();
    let mut c = e.srv.anon();
    for (i, path) in e.dir_paths().iter().chain(e.file_paths().iter()).enumerate() {
        let mode = MODES[i % MODES.len()];
        for verb in ["LIST", "NLST"] {
            let cmd = format!("{verb} {path}");
            let prep = c.prepare(mode);
            let (r, got) = match prep {
                DataPrep::Passive(addr) => {
                    c.send(&cmd);
                    let mut data = connect_data(addr);
                    let r = c.reply();
                    let mut got = Vec::new();
                    if r.is_preliminary() {
                        let _ = data.read_to_end(&mut got);
                        assert_eq!(c.reply().code, 226, "{cmd}");
                    }
                    (r, got)
                }
                DataPrep::Active(l) => {
                    c.send(&cmd);
                    let r = c.reply();
                    let mut got = Vec::new();
                    if r.is_preliminary() {
                        let mut data = accept_within(&l, IO_TIMEOUT).expect("server connects");
                        let _ = data.read_to_end(&mut got);
                        assert_eq!(c.reply().code, 226, "{cmd}");
                    }
                    (r, got)
                }
            };
            e.assert_no_leak(&format!("{cmd} ({mode:?})"), &got);
            assert!(r.code == 550 || r.is_preliminary(), "{cmd}: {r:?}");
        }
    }
    // The root's own listing shows the links but nothing of what is behind them.
    let root = c.listing(Mode::Pasv, "LIST -la");
    e.assert_no_leak("LIST of the root", root.as_bytes());
    assert!(root.contains("inside.txt"), "{root:?}");
}

#[test]
fn cwd_never_lands_outside_the_root() {
    let e = Escape::new();
    let mut c = e.srv.anon();
    for path in e.dir_paths() {
        let r = c.cmd(&format!("CWD {path}"));
        assert!(r.code == 250 || r.code == 550, "CWD {path:?}: {r:?}");
        let pwd = c.expect("PWD", 257);
        let here = c.listing(Mode::Pasv, "LIST");
        e.assert_no_leak(&format!("LIST after CWD {path}"), here.as_bytes());
        if r.code == 250 {
            // Only names that clamp at the root (`..`, a link to `/`, which
            // resolves to the root itself) may succeed: we are at the root.
            assert!(here.contains("inside.txt") && here.contains("dir-link"), "CWD {path:?} landed at {pwd:?}: {here:?}");
        }
        // CDUP from wherever we are stays inside too.
        c.expect("CDUP", 250);
        c.expect("CWD /", 250);
    }
    // Symlinked directories that point outside are refused outright.
    for path in ["dir-link", "rel-dir-link", "/dir-link", "sub/../rel-dir-link"] {
        c.expect(&format!("CWD {path}"), 550);
    }
    // From a subdirectory, `..` climbs only to the root.
    c.expect("CWD sub/deeper", 250);
    c.expect("CWD ../../../../..", 250);
    let pwd = c.expect("PWD", 257);
    assert!(pwd.lines[0].contains("\"/\""), "{pwd:?}");
}

#[test]
fn writes_through_links_or_dots_never_touch_the_outside() {
    let e = Escape::new();
    let mut c = e.srv.anon();
    let n = &e.canary_name;
    let targets = [
        format!("../outside/{n}"),
        format!("/../../outside/{n}"),
        "abs-link".to_string(),
        "rel-link".to_string(),
        "sub/deep-rel-link".to_string(),
        format!("dir-link/{n}"),
        format!("rel-dir-link/{n}"),
        "dir-link/new-file".to_string(),
        "rel-dir-link/new-file".to_string(),
        "../outside/new-file".to_string(),
    ];
    for (i, target) in targets.iter().enumerate() {
        let mode = MODES[i % MODES.len()];
        match c.prepare(mode) {
            DataPrep::Passive(addr) => {
                c.send(&format!("STOR {target}"));
                let mut data = connect_data(addr);
                let r = c.reply();
                if r.is_preliminary() {
                    use std::io::Write;
                    let _ = data.write_all(b"OVERWRITTEN");
                    drop(data);
                    let _ = c.reply();
                }
            }
            DataPrep::Active(l) => {
                c.send(&format!("STOR {target}"));
                let r = c.reply();
                if r.is_preliminary() {
                    use std::io::Write;
                    let mut data = accept_within(&l, IO_TIMEOUT).expect("server connects");
                    let _ = data.write_all(b"OVERWRITTEN");
                    drop(data);
                    let _ = c.reply();
                }
            }
        }
        e.assert_canary_intact();
    }
    for cmd in [
        format!("DELE ../outside/{n}"),
        "DELE abs-link".to_string(),
        format!("DELE dir-link/{n}"),
        format!("RNFR dir-link/{n}"),
        "MKD ../outside/made".to_string(),
        "MKD dir-link/made".to_string(),
        "RMD ../outside".to_string(),
    ] {
        let r = c.cmd(&cmd);
        if r.code == 350 {
            let _ = c.cmd("RNTO stolen");
        }
        e.assert_canary_intact();
    }
    // Renaming a file out of the root is impossible too.
    c.expect("RNFR inside.txt", 350);
    let _ = c.cmd(&format!("RNTO ../outside/{}", unique("moved")));
    let _ = c.cmd("RNFR ok-link");
    let _ = c.cmd("RNTO dir-link/moved");
    e.assert_canary_intact();
}

#[test]
fn symlinks_that_stay_inside_the_root_still_work() {
    let e = Escape::new();
    let mut c = e.srv.anon();
    assert_eq!(c.retr(Mode::Pasv, "ok-link"), b"inside");
    assert_eq!(c.retr(Mode::Epsv, "/sub/../ok-link"), b"inside");
}

// ----- data connections belong to their client ------------------------------

#[test]
fn passive_connection_from_another_address_is_refused() {
    let srv = TestServer::start();
    let body = pattern(300_000, 31);
    srv.put("f.bin", &body);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    for mode in [Mode::Pasv, Mode::Epsv] {
        let DataPrep::Passive(addr) = c.prepare(mode) else { unreachable!() };
        c.send("RETR f.bin");
        // A thief on 127.0.0.2 connects first: closed, and no byte for it.
        let thief = connect_from("127.0.0.2", addr, Duration::from_secs(3));
        assert_eq!(thief, Foreign::Closed(0), "{mode:?}: a connection from 127.0.0.2 to {addr}");
        // The listener keeps waiting for the real client.
        assert!(is_listening(addr), "{mode:?}: the passive listener closed after the foreign connection");
        let mut data = connect_data(addr);
        let first = c.reply();
        assert!(first.is_preliminary(), "{mode:?}: {first:?}");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(sha256(&got), sha256(&body), "{mode:?}");
        assert_eq!(c.reply().code, 226, "{mode:?}");
    }
}

#[test]
fn passive_connection_from_another_address_before_the_command_is_refused_too() {
    let srv = TestServer::start();
    srv.put("f.txt", b"mine");
    let mut c = srv.anon();
    let addr = c.pasv();
    let thief = connect_from("127.0.0.2", addr, Duration::from_secs(3));
    assert_eq!(thief, Foreign::Closed(0));
    assert!(is_listening(addr), "the passive listener closed after the foreign connection");
    c.send("RETR f.txt");
    let mut data = connect_data(addr);
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"mine");
    assert_eq!(c.reply().code, 226);
}

/// A listener on `127.0.0.2:0`: where a bounced data connection would go.
fn decoy() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2:0 (Linux routes all of 127/8 to lo)");
    let a = l.local_addr().unwrap();
    (l, a)
}

#[test]
fn port_to_another_address_is_refused_and_nothing_connects_there() {
    let srv = TestServer::start();
    srv.put("f.txt", b"data");
    let mut c = srv.anon();
    let (l, a) = decoy();
    let r = c.cmd(&port_arg(a));
    assert!((500..600).contains(&r.code), "PORT to {a}: {r:?}");
    let r = c.cmd("RETR f.txt");
    assert_eq!(r.code, 425, "RETR after a refused PORT: {r:?}");
    assert!(accept_within(&l, Duration::from_millis(500)).is_none(), "the server connected to {a}");
    c.expect("NOOP", 200);
}

#[test]
fn eprt_to_another_address_is_refused_and_nothing_connects_there() {
    let srv = TestServer::start();
    srv.put("f.txt", b"data");
    let mut c = srv.anon();
    let (l, a) = decoy();
    let r = c.cmd(&eprt_arg(a));
    assert!((500..600).contains(&r.code), "EPRT to {a}: {r:?}");
    let r = c.cmd("LIST");
    assert_eq!(r.code, 425, "LIST after a refused EPRT: {r:?}");
    assert!(accept_within(&l, Duration::from_millis(500)).is_none(), "the server connected to {a}");
}

#[test]
fn a_refused_port_does_not_keep_an_earlier_good_one() {
    // PORT to ourselves, then PORT elsewhere (refused): RETR must not
    // silently use either a bounced address or go through unannounced.
    let srv = TestServer::start();
    srv.put("f.txt", b"data");
    let mut c = srv.anon();
    let (l, a) = decoy();
    let good = c.port();
    let r = c.cmd(&port_arg(a));
    assert!((500..600).contains(&r.code), "{r:?}");
    c.send("RETR f.txt");
    let r = c.reply();
    if r.is_preliminary() {
        // The earlier, legitimate PORT is still in effect: fine, it is ours.
        let mut data = accept_within(&good, IO_TIMEOUT).expect("server connects to the good PORT");
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"data");
        assert_eq!(c.reply().code, 226);
    } else {
        assert_eq!(r.code, 425, "{r:?}");
    }
    assert!(accept_within(&l, Duration::from_millis(300)).is_none(), "the server connected to {a}");
}

#[test]
fn port_to_a_privileged_port_is_refused() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    for port in [21u16, 22, 25, 80, 1023] {
        let r = c.cmd(&port_arg(SocketAddr::from(([127, 0, 0, 1], port))));
        assert!((500..600).contains(&r.code), "PORT to port {port}: {r:?}");
        let r = c.cmd(&eprt_arg(SocketAddr::from(([127, 0, 0, 1], port))));
        assert!((500..600).contains(&r.code), "EPRT to port {port}: {r:?}");
    }
    c.expect("NLST", 425);
}
