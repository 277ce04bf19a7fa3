//! Every transfer in every order real clients use (issue 10): each transfer
//! command × TYPE A and I × PASV, EPSV, PORT, EPRT × the data connection
//! opened before the command (ftplib, curl, lftp, FileZilla do this in
//! passive mode) and after it × sizes that end in the first slice, in a
//! later one, and past the splice pipe. Bytes are checked by sha256, on the
//! wire and on disk, and the final reply by its code.
//!
//! A helper that always takes one order hides the other: a TYPE A RETR on a
//! data connection opened first once answered `226` after 0 bytes.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use common::*;

/// When the client opens the data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// Connect to the passive port, then send the command.
    ConnectFirst,
    /// Send the command, then connect (or, in active mode, accept).
    CommandFirst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Ascii,
    Image,
}

/// Sizes: empty, one byte, one that ends in the first slice, several
/// slices of the 256 KiB data budget, and more than the 1 MiB splice pipe.
const SIZES: [usize; 5] = [0, 1, 4096, 700 * 1024, 3 * MIB + 17];

/// Every mode and order that exists: active modes have no "connect first".
fn ways() -> Vec<(Mode, Order)> {
    let mut v = Vec::new();
    for mode in MODES {
        v.push((mode, Order::CommandFirst));
        if matches!(mode, Mode::Pasv | Mode::Epsv) {
            v.push((mode, Order::ConnectFirst));
        }
    }
    v
}

/// Send `command` with the data connection made in `mode` and `order`;
/// returns the preliminary reply and the data connection.
#[track_caller]
fn open(c: &mut Ctl, mode: Mode, order: Order, command: &str) -> (Reply, TcpStream) {
    let prep = c.prepare(mode);
    match (prep, order) {
        (DataPrep::Passive(addr), Order::ConnectFirst) => {
            let data = connect_data(addr);
            c.send(command);
            let r = c.reply();
            assert!(r.is_preliminary(), "{command:?} ({mode:?}, {order:?}) -> {r:?}");
            (r, data)
        }
        (prep, _) => c.start_on(prep, command),
    }
}

/// The file's bytes on disk and on the wire, for this TYPE.
fn content(ty: Type, size: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    match ty {
        Type::Image => {
            let b = pattern(size, seed);
            (b.clone(), b)
        }
        Type::Ascii => {
            let t = lf_text(size, seed);
            let wire = to_crlf(&t);
            (t, wire)
        }
    }
}

fn set_type(c: &mut Ctl, ty: Type) {
    c.expect(if ty == Type::Ascii { "TYPE A" } else { "TYPE I" }, 200);
}

#[track_caller]
fn read_all(data: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap_or_else(|e| panic!("{what}: reading data after {} bytes: {e}", got.len()));
    got
}

#[track_caller]
fn send_all(mut data: TcpStream, bytes: &[u8], what: &str) {
    data.write_all(bytes).unwrap_or_else(|e| panic!("{what}: writing data: {e}"));
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
}

#[track_caller]
fn final_226(c: &mut Ctl, what: &str) {
    let r = c.reply();
    assert_eq!(r.code, 226, "{what}: final reply {r:?}");
}

#[test]
fn retr_and_rest_retr_in_every_type_mode_order_and_size() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    for ty in [Type::Ascii, Type::Image] {
        set_type(&mut c, ty);
        for size in SIZES {
            let (disk, wire) = content(ty, size, size as u64);
            let name = format!("r-{ty:?}-{size}");
            std::fs::write(srv.path(&name), &disk).unwrap();
            for (mode, order) in ways() {
                let what = format!("RETR {name} {mode:?} {order:?}");
                let (_, mut data) = open(&mut c, mode, order, &format!("RETR {name}"));
                let got = read_all(&mut data, &what);
                assert_eq!((got.len(), sha256(&got)), (wire.len(), sha256(&wire)), "{what}");
                final_226(&mut c, &what);

                // REST n: the rest of the file from byte n of the file.
                let n = size / 3;
                c.expect(&format!("REST {n}"), 350);
                let what = format!("REST {n} + {what}");
                let (_, mut data) = open(&mut c, mode, order, &format!("RETR {name}"));
                let got = read_all(&mut data, &what);
                let want = match ty {
                    Type::Image => disk[n..].to_vec(),
                    Type::Ascii => to_crlf(&disk[n..]),
                };
                assert_eq!((got.len(), sha256(&got)), (want.len(), sha256(&want)), "{what}");
                final_226(&mut c, &what);
            }
        }
    }
}

#[test]
fn stor_appe_stou_and_rest_stor_in_every_type_mode_order_and_size() {
    // APPE and a resume write in place by default, through a temporary
    // copy with --atomic-uploads: both paths.
    for atomic in [false, true] {
        stor_family(atomic);
    }
}

fn stor_family(atomic: bool) {
    let srv = TestServer::with(|c| c.atomic_uploads = atomic);
    let mut c = srv.anon();
    for ty in [Type::Ascii, Type::Image] {
        set_type(&mut c, ty);
        for size in SIZES {
            let (disk, wire) = content(ty, size, size as u64 + 1000);
            for (mode, order) in ways() {
                let tag = format!("{ty:?}-{size}-{mode:?}-{order:?}-atomic-{atomic}");

                let name = format!("s-{tag}");
                let what = format!("STOR {name}");
                let (_, data) = open(&mut c, mode, order, &what);
                send_all(data, &wire, &what);
                final_226(&mut c, &what);
                let on_disk = std::fs::read(srv.path(&name)).unwrap();
                assert_eq!((on_disk.len(), sha256(&on_disk)), (disk.len(), sha256(&disk)), "{what}: on disk");

                // APPE adds to what is there.
                let what = format!("APPE {name}");
                let (_, data) = open(&mut c, mode, order, &what);
                send_all(data, &wire, &what);
                final_226(&mut c, &what);
                let on_disk = std::fs::read(srv.path(&name)).unwrap();
                let want = [disk.as_slice(), disk.as_slice()].concat();
                assert_eq!((on_disk.len(), sha256(&on_disk)), (want.len(), sha256(&want)), "{what}: on disk");

                // REST n + STOR keeps the first n bytes and writes after
                // them: n inside the file (a copy), then n at its end (in
                // place unless atomic).
                let n = size / 2;
                c.expect(&format!("REST {n}"), 350);
                let what = format!("REST {n} + STOR {name}");
                let (_, data) = open(&mut c, mode, order, &format!("STOR {name}"));
                send_all(data, &wire, &what);
                final_226(&mut c, &what);
                let on_disk = std::fs::read(srv.path(&name)).unwrap();
                let want = [&disk[..n], disk.as_slice()].concat();
                assert_eq!((on_disk.len(), sha256(&on_disk)), (want.len(), sha256(&want)), "{what}: on disk");
                let end = want.len();
                c.expect(&format!("REST {end}"), 350);
                let what = format!("REST {end} (the end) + STOR {name}");
                let (_, data) = open(&mut c, mode, order, &format!("STOR {name}"));
                send_all(data, &wire, &what);
                final_226(&mut c, &what);
                let on_disk = std::fs::read(srv.path(&name)).unwrap();
                let want = [want.as_slice(), disk.as_slice()].concat();
                assert_eq!((on_disk.len(), sha256(&on_disk)), (want.len(), sha256(&want)), "{what}: on disk");

                // STOU names a new file in its 150.
                let what = format!("STOU ({tag})");
                let (first, data) = open(&mut c, mode, order, "STOU");
                let line = &first.lines[0];
                let unique = line.split_once("FILE: ").map(|(_, n)| n.trim().to_string()).unwrap_or_else(|| panic!("{what}: {first:?}"));
                send_all(data, &wire, &what);
                final_226(&mut c, &what);
                let on_disk = std::fs::read(srv.path(&unique)).unwrap();
                assert_eq!((on_disk.len(), sha256(&on_disk)), (disk.len(), sha256(&disk)), "{what}: on disk");
                std::fs::remove_file(srv.path(&unique)).unwrap();
                std::fs::remove_file(srv.path(&name)).unwrap();
            }
        }
    }
    assert!(srv.temp_files("").is_empty(), "temp files left: {:?}", srv.temp_files(""));
}

#[test]
fn listings_in_every_type_mode_order_and_size() {
    let srv = TestServer::start();
    let mut c = srv.anon();
    // Entries: none, one, a first slice's worth, several 16 KiB slices.
    for entries in [0usize, 1, 50, 3000] {
        let dir = format!("d{entries}");
        std::fs::create_dir(srv.path(&dir)).unwrap();
        let mut names: Vec<String> = (0..entries).map(|i| format!("entry-{i:05}.dat")).collect();
        for n in &names {
            std::fs::write(srv.path(&format!("{dir}/{n}")), b"x").unwrap();
        }
        names.sort();
        for ty in [Type::Ascii, Type::Image] {
            set_type(&mut c, ty);
            for (mode, order) in ways() {
                for verb in ["LIST", "NLST", "MLSD"] {
                    let what = format!("{verb} {dir} {ty:?} {mode:?} {order:?}");
                    let (_, mut data) = open(&mut c, mode, order, &format!("{verb} {dir}"));
                    let got = String::from_utf8(read_all(&mut data, &what)).expect("UTF-8 listing");
                    final_226(&mut c, &what);
                    assert!(got.is_empty() || got.ends_with("\r\n"), "{what}: CRLF lines");
                    let mut listed: Vec<String> = got
                        .split("\r\n")
                        .filter(|l| !l.is_empty())
                        .map(|l| match verb {
                            "LIST" => l.rsplit(' ').next().unwrap().to_string(),
                            "MLSD" => l.split_once("; ").map(|(_, n)| n.to_string()).unwrap_or_default(),
                            _ => l.rsplit('/').next().unwrap().to_string(),
                        })
                        .collect();
                    if verb == "MLSD" {
                        listed.retain(|n| n != "." && n != "..");
                    }
                    listed.sort();
                    assert_eq!(listed, names, "{what}");
                }
            }
        }
    }
}
