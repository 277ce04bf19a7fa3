//! Transfers over real loopback sockets: round trips by sha256 in every data
//! connection mode, with the raw client and with suppaftp; TYPE A
//! conversion; atomic STOR; the data connection closed before `226`.

mod common;

use std::io::{Cursor, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::*;
use suppaftp::types::FileType;
use suppaftp::{FtpStream, Mode as FtpMode};

/// The sizes every mode must carry intact.
const SIZES: [usize; 4] = [0, 1, MIB, 64 * MIB];

fn data_of(size: usize) -> Vec<u8> {
    if size == 64 * MIB {
        big().to_vec()
    } else {
        pattern(size, size as u64 + 7)
    }
}

fn sha_of(size: usize, data: &[u8]) -> String {
    if size == 64 * MIB {
        big_sha().to_string()
    } else {
        sha256(data)
    }
}

/// STOR then RETR of every size in `mode`, checked by sha256 on disk and on
/// the wire; RETR also of a file the server did not write itself.
#[track_caller]
fn round_trip(mode: Mode) {
    let srv = TestServer::start();
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    for size in SIZES {
        let data = data_of(size);
        let want = sha_of(size, &data);

        let up = format!("up-{size}.bin");
        c.stor(mode, &up, &data);
        assert_eq!(std::fs::metadata(srv.path(&up)).unwrap().len(), size as u64, "{mode:?} STOR {size} B: size on disk");
        assert_eq!(sha256_file(&srv.path(&up)), want, "{mode:?} STOR {size} B: sha256 on disk");

        let down = format!("down-{size}.bin");
        std::fs::write(srv.path(&down), &data).unwrap();
        drop(data);
        let got = c.retr(mode, &down);
        assert_eq!(got.len(), size, "{mode:?} RETR {size} B: length");
        assert_eq!(sha256(&got), want, "{mode:?} RETR {size} B: sha256");
        drop(got);

        let again = c.retr(mode, &up);
        assert_eq!(sha256(&again), want, "{mode:?} RETR of the uploaded {size} B: sha256");
        assert!(srv.temp_files("").is_empty(), "temp files left: {:?}", srv.temp_files(""));
    }
    c.expect("QUIT", 221);
}

#[test]
fn sha256_helper_agrees_with_sha256sum() {
    for len in [0, 1, 1000, 70_000] {
        let d = pattern(len, 3);
        assert_eq!(sha256_in_process(&d), sha256_external(&d), "len {len}");
    }
    assert_eq!(sha256_in_process(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn pasv_round_trips_0b_1b_1mib_and_64mib_intact() {
    round_trip(Mode::Pasv);
}

#[test]
fn epsv_round_trips_0b_1b_1mib_and_64mib_intact() {
    round_trip(Mode::Epsv);
}

#[test]
fn port_round_trips_0b_1b_1mib_and_64mib_intact() {
    round_trip(Mode::Port);
}

#[test]
fn eprt_round_trips_0b_1b_1mib_and_64mib_intact() {
    round_trip(Mode::Eprt);
}

/// The same round trips through suppaftp, a real client library.
#[track_caller]
fn suppaftp_round_trip(mode: FtpMode) {
    let srv = TestServer::start();
    let mut ftp = FtpStream::connect(srv.addr).expect("suppaftp connect");
    ftp.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ftp.login("anonymous", "suppaftp@example.com").expect("suppaftp login");
    let mut ftp = if mode == FtpMode::Active { ftp.active_mode(IO_TIMEOUT) } else { ftp };
    ftp.set_mode(mode);
    ftp.transfer_type(FileType::Binary).expect("TYPE I");
    for size in SIZES {
        let data = data_of(size);
        let want = sha_of(size, &data);
        let name = format!("suppa-{size}.bin");
        let sent = ftp.put_file(&name, &mut Cursor::new(&data[..])).unwrap_or_else(|e| panic!("{mode:?} put {size} B: {e}"));
        assert_eq!(sent, size as u64);
        drop(data);
        assert_eq!(sha256_file(&srv.path(&name)), want, "{mode:?} put {size} B: sha256 on disk");
        assert_eq!(ftp.size(&name).unwrap(), size, "{mode:?} SIZE");
        let got = ftp.retr_as_buffer(&name).unwrap_or_else(|e| panic!("{mode:?} get {size} B: {e}")).into_inner();
        assert_eq!(got.len(), size, "{mode:?} get {size} B: length");
        assert_eq!(sha256(&got), want, "{mode:?} get {size} B: sha256");
    }
    let names = ftp.nlst(None).expect("NLST");
    for size in SIZES {
        assert!(names.iter().any(|n| n.ends_with(&format!("suppa-{size}.bin"))), "NLST {names:?}");
    }
    ftp.quit().expect("QUIT");
}

#[test]
fn suppaftp_round_trips_in_pasv_mode() {
    suppaftp_round_trip(FtpMode::Passive);
}

#[test]
fn suppaftp_round_trips_in_epsv_mode() {
    suppaftp_round_trip(FtpMode::ExtendedPassive);
}

#[test]
fn suppaftp_round_trips_in_active_mode() {
    suppaftp_round_trip(FtpMode::Active);
}

/// Text with LF line ends only, long enough to cross every internal buffer.
fn lf_text() -> Vec<u8> {
    let mut t = Vec::new();
    let mut i = 0u64;
    while t.len() < 300 * 1024 {
        t.extend_from_slice(format!("line {i}: {}\n", "x".repeat((i % 97) as usize)).as_bytes());
        i += 1;
    }
    t
}

#[test]
fn type_a_retr_turns_lf_into_crlf_in_every_mode() {
    let srv = TestServer::start();
    let lf = lf_text();
    srv.put("text.txt", &lf);
    srv.put("short.txt", b"a\nb\n\nc");
    let mut c = srv.anon();
    c.expect("TYPE A", 200);
    for mode in MODES {
        assert_eq!(c.retr(mode, "short.txt"), b"a\r\nb\r\n\r\nc", "{mode:?}");
        let got = c.retr(mode, "text.txt");
        assert_eq!(sha256(&got), sha256(&to_crlf(&lf)), "{mode:?}: LF → CRLF over 300 KiB");
    }
    // Back to binary: the bytes as they are on disk.
    c.expect("TYPE I", 200);
    assert_eq!(c.retr(Mode::Pasv, "short.txt"), b"a\nb\n\nc");
    // The file itself is untouched.
    assert_eq!(std::fs::read(srv.path("text.txt")).unwrap(), lf);
}

#[test]
fn type_a_stor_turns_crlf_into_lf_on_disk_in_every_mode() {
    let srv = TestServer::start();
    let lf = lf_text();
    let crlf = to_crlf(&lf);
    let mut c = srv.anon();
    c.expect("TYPE A", 200);
    for mode in MODES {
        let name = format!("text-{mode:?}.txt");
        c.stor(mode, &name, &crlf);
        assert_eq!(sha256_file(&srv.path(&name)), sha256(&lf), "{mode:?}: CRLF → LF over 300 KiB");
        c.stor(mode, "short.txt", b"one\r\ntwo\r\n\r\nthree");
        assert_eq!(std::fs::read(srv.path("short.txt")).unwrap(), b"one\ntwo\n\nthree", "{mode:?}");
    }
    // In binary mode CRLF is kept.
    c.expect("TYPE I", 200);
    c.stor(Mode::Pasv, "bin.txt", b"one\r\ntwo\r\n");
    assert_eq!(std::fs::read(srv.path("bin.txt")).unwrap(), b"one\r\ntwo\r\n");
}

/// How an upload is cut short.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The control connection closes; the data connection stays open.
    ControlClosed,
    /// The data connection is reset (RST); the control connection stays.
    DataReset,
}

/// Start a STOR over `old.bin`, send half of the new content, then cut it.
#[track_caller]
fn interrupted_upload(mode: Mode, cut: Cut) {
    let srv = TestServer::start();
    let old = pattern(200_000, 11);
    srv.put("old.bin", &old);
    let new = pattern(8 * MIB, 12);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    let (_, mut data) = c.open_transfer(mode, "STOR old.bin");
    data.write_all(&new[..new.len() / 2]).unwrap();
    data.flush().unwrap();
    // The upload goes to a temporary file; the old content stays in place.
    wait_until("the upload's temporary file to exist", Duration::from_secs(5), || !srv.temp_files("").is_empty());
    assert_eq!(sha256_file(&srv.path("old.bin")), sha256(&old), "old content replaced during the upload");
    match cut {
        Cut::ControlClosed => {
            c.shutdown();
            drop(c);
            // The data connection stays open: the server must abort the
            // transfer because its session is gone.
            wait_until("the temporary file to be removed", Duration::from_secs(5), || srv.temp_files("").is_empty());
            drop(data);
        }
        Cut::DataReset => {
            reset(data);
            let r = c.reply();
            assert!((400..500).contains(&r.code), "a reset STOR must fail (426/451), got {r:?}");
            c.expect("NOOP", 200);
        }
    }
    wait_until("the temporary file to be removed", Duration::from_secs(5), || srv.temp_files("").is_empty());
    assert_eq!(sha256_file(&srv.path("old.bin")), sha256(&old), "an interrupted STOR replaced the old content");
    // The server still serves, and a complete upload does replace the file.
    let mut c = srv.anon();
    c.stor(mode, "old.bin", &new);
    assert_eq!(sha256_file(&srv.path("old.bin")), sha256(&new));
    assert!(srv.temp_files("").is_empty());
}

#[test]
fn stor_cut_by_closing_the_control_connection_keeps_the_old_file_and_no_temp_file() {
    interrupted_upload(Mode::Pasv, Cut::ControlClosed);
    interrupted_upload(Mode::Port, Cut::ControlClosed);
}

#[test]
fn stor_cut_by_a_data_connection_reset_keeps_the_old_file_and_no_temp_file() {
    interrupted_upload(Mode::Epsv, Cut::DataReset);
    interrupted_upload(Mode::Eprt, Cut::DataReset);
}

#[test]
fn stor_into_a_subdirectory_is_atomic_too() {
    let srv = TestServer::start();
    srv.put("sub/f.txt", b"old");
    let mut c = srv.anon();
    let (_, mut data) = c.open_transfer(Mode::Epsv, "STOR sub/f.txt");
    data.write_all(&[b'n'; 100_000]).unwrap();
    wait_until("the temporary file in sub/", Duration::from_secs(5), || !srv.temp_files("sub").is_empty());
    assert_eq!(std::fs::read(srv.path("sub/f.txt")).unwrap(), b"old");
    c.shutdown();
    drop(c);
    wait_until("the temporary file in sub/ to be removed", Duration::from_secs(5), || srv.temp_files("sub").is_empty());
    drop(data);
    assert_eq!(std::fs::read(srv.path("sub/f.txt")).unwrap(), b"old");
}

#[test]
fn retr_data_connection_is_at_eof_when_226_arrives() {
    let srv = TestServer::start();
    let body = pattern(64 * 1024, 5);
    srv.put("f.bin", &body);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    for mode in MODES {
        let (_, mut data) = c.open_transfer(mode, "RETR f.bin");
        // Read the control connection first, the data only afterwards.
        let r = c.reply();
        assert_eq!(r.code, 226, "{mode:?}: {r:?}");
        let got = read_to_eof_within(&mut data, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{mode:?}: data connection still open after 226: {e}"));
        assert_eq!(sha256(&got), sha256(&body), "{mode:?}");
    }
}

#[test]
fn list_data_connection_is_at_eof_when_226_arrives() {
    let srv = TestServer::start();
    srv.put("visible.txt", b"x");
    let mut c = srv.anon();
    for mode in MODES {
        let (_, mut data) = c.open_transfer(mode, "LIST");
        assert_eq!(c.reply().code, 226, "{mode:?}");
        let got = read_to_eof_within(&mut data, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{mode:?}: listing connection still open after 226: {e}"));
        assert!(String::from_utf8_lossy(&got).contains("visible.txt"), "{mode:?}");
    }
}

#[test]
fn stor_file_is_complete_on_disk_when_226_arrives() {
    let srv = TestServer::start();
    let body = pattern(3 * MIB + 17, 6);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    for mode in MODES {
        let (_, mut data) = c.open_transfer(mode, "STOR s.bin");
        data.write_all(&body).unwrap();
        data.shutdown(Shutdown::Write).unwrap();
        let r = c.reply();
        assert_eq!(r.code, 226, "{mode:?}: {r:?}");
        // Nothing more to wait for: the file is in place now.
        assert_eq!(sha256_file(&srv.path("s.bin")), sha256(&body), "{mode:?}");
        assert!(srv.temp_files("").is_empty(), "{mode:?}");
        let mut rest = Vec::new();
        let _ = data.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{mode:?}: the server sent bytes on a STOR connection");
    }
}

#[test]
fn listings_show_files_in_every_mode() {
    let srv = TestServer::start();
    srv.put("alpha.txt", b"12345");
    srv.put("dir/beta.txt", b"");
    let mut c = srv.anon();
    for mode in MODES {
        let list = c.listing(mode, "LIST");
        assert!(list.contains("alpha.txt") && list.contains("dir"), "{mode:?}: {list:?}");
        assert!(list.lines().all(|l| !l.is_empty()), "{mode:?}: empty line in {list:?}");
        let names = c.listing(mode, "NLST dir");
        assert!(names.contains("beta.txt"), "{mode:?}: {names:?}");
        assert!(names.ends_with("\r\n"), "{mode:?}: NLST lines end in CRLF: {names:?}");
    }
}

#[test]
fn a_big_directory_is_listed_whole_and_in_order_in_every_format() {
    // 3,000 entries: LIST ~200 KiB, many formatting chunks and many socket
    // writes; each format must give every name once, sorted, CRLF lines.
    let srv = TestServer::start();
    let names: Vec<String> = (0..3000).map(|i| format!("entry-{:05}-{}", (i * 7919) % 3000, "x".repeat(i % 40))).collect();
    for n in &names {
        srv.put(&format!("big/{n}"), b"abc");
    }
    let mut sorted = names.clone();
    sorted.sort();
    let mut c = srv.anon();
    for mode in MODES {
        for (cmd, take_name) in [
            ("NLST big", (|l: &str| l.strip_prefix("big/").unwrap().to_string()) as fn(&str) -> String),
            ("LIST big", |l: &str| l.rsplit(' ').next().unwrap().to_string()),
            ("MLSD big", |l: &str| l.split_once("; ").unwrap().1.to_string()),
        ] {
            let text = c.listing(mode, cmd);
            assert_eq!(text.matches("\r\n").count(), text.matches('\n').count(), "{mode:?} {cmd}: bare LF");
            let got: Vec<String> = text.lines().map(|l| take_name(l.trim_end_matches('\r'))).collect();
            assert_eq!(got.len(), sorted.len(), "{mode:?} {cmd}: {} lines", got.len());
            assert!(got == sorted, "{mode:?} {cmd}: names differ or are out of order");
            if cmd.starts_with("MLSD") {
                assert!(text.lines().all(|l| l.contains("type=file;size=3;")), "{mode:?}: MLSD facts");
            }
        }
    }
}

/// How a transfer in flight ends, for the one-record-per-transfer check.
#[derive(Clone, Copy, Debug)]
enum End {
    /// The client closes the control connection mid-transfer.
    ControlClosed,
    /// ABOR on the control connection.
    Abor,
    /// The data connection is reset.
    DataReset,
}

#[test]
fn issue_10_every_cut_transfer_leaves_exactly_one_incomplete_xferlog_record() {
    for (op, end) in [
        ("RETR", End::ControlClosed),
        ("STOR", End::ControlClosed),
        ("RETR", End::Abor),
        ("STOR", End::DataReset),
    ] {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("xferlog");
        let log2 = log.clone();
        let srv = TestServer::with(move |c| c.xferlog = Some(log2));
        srv.put("big.bin", big());
        let mut c = srv.anon();
        c.expect("TYPE I", 200);
        let (_, mut data) = c.open_transfer(Mode::Pasv, &format!("{op} big.bin"));
        // Bytes are moving: part of the file, or of an upload.
        if op == "RETR" {
            let mut some = vec![0u8; 256 * 1024];
            data.read_exact(&mut some).unwrap();
        } else {
            data.write_all(&big()[..MIB]).unwrap();
        }
        match end {
            End::ControlClosed => {
                c.shutdown();
                drop(c);
            }
            End::Abor => {
                c.send("ABOR");
                drop(data);
                let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
                assert_eq!(codes, [426, 226], "{op} {end:?}");
                data = connect_data_or_none();
            }
            End::DataReset => {
                reset(data);
                let r = c.reply();
                assert!((400..500).contains(&r.code), "{op} {end:?}: {r:?}");
                data = connect_data_or_none();
            }
        }
        let lines = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_until("an xferlog record", Duration::from_secs(10), || !lines().is_empty());
        // No second record comes later.
        std::thread::sleep(Duration::from_millis(300));
        let text = lines();
        let records: Vec<&str> = text.lines().collect();
        assert_eq!(records.len(), 1, "{op} {end:?}: {text}");
        assert!(records[0].ends_with(" i"), "{op} {end:?}: not marked incomplete: {text}");
        drop(data);
    }
}

/// A stand-in for a data socket already handed over (nothing to drop).
fn connect_data_or_none() -> std::net::TcpStream {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap()
}

#[test]
fn issue_10_a_download_cut_short_by_the_file_shrinking_is_451_not_226() {
    for (ty, cut_to) in [("I", 10 * MIB as u64), ("I", 0), ("A", 10 * MIB as u64), ("A", 0)] {
        let srv = TestServer::start();
        let body: Vec<u8> = pattern(24 * MIB, 3).iter().map(|b| if b % 50 == 0 { b'\n' } else { b'a' + b % 26 }).collect();
        srv.put("f", &body);
        let mut c = srv.anon();
        c.expect(&format!("TYPE {ty}"), 200);
        let (_, mut data) = c.open_transfer(Mode::Pasv, "RETR f");
        let mut got = vec![0u8; MIB];
        data.read_exact(&mut got).unwrap();
        std::fs::OpenOptions::new().write(true).open(srv.path("f")).unwrap().set_len(cut_to).unwrap();
        let mut rest = Vec::new();
        let _ = data.read_to_end(&mut rest);
        let r = c.reply();
        assert_eq!(r.code, 451, "TYPE {ty}, cut to {cut_to}: {} bytes then {r:?}", MIB + rest.len());
        c.expect("NOOP", 200);
    }
}

// ----- issue 10: received bytes are kept unless that destroys a file --------

/// Start a STOR of `name`, send `sent` bytes, wait until the server wrote
/// them (temp file or target), then cut the upload as `cut` says.
fn cut_upload(srv: &TestServer, c: &mut Ctl, name: &str, body: &[u8], sent: usize, cut: End) {
    let (_, mut data) = c.open_transfer(Mode::Pasv, &format!("STOR {name}"));
    data.write_all(&body[..sent]).unwrap();
    let written = || {
        let mut sizes: Vec<u64> = srv.temp_files("").iter().filter_map(|t| std::fs::metadata(srv.path(t)).ok()).map(|m| m.len()).collect();
        sizes.extend(std::fs::metadata(srv.path(name)).ok().map(|m| m.len()));
        sizes.contains(&(sent as u64))
    };
    wait_until("the server to write what was sent", Duration::from_secs(10), written);
    match cut {
        End::ControlClosed => {
            c.shutdown();
            drop(data);
        }
        End::Abor => {
            c.send("ABOR");
            let codes: Vec<u16> = (0..2).map(|_| c.reply().code).collect();
            assert_eq!(codes, [426, 226]);
            drop(data);
        }
        End::DataReset => {
            reset(data);
            let r = c.reply();
            assert!((400..500).contains(&r.code), "{r:?}");
        }
    }
}

#[test]
fn issue_10_an_interrupted_upload_to_a_new_name_keeps_its_bytes_and_resumes() {
    let body = pattern(800_000, 77);
    for cut in [End::Abor, End::DataReset, End::ControlClosed] {
        let srv = TestServer::start();
        let mut c = srv.anon();
        c.expect("TYPE I", 200);
        cut_upload(&srv, &mut c, "new.bin", &body, 300_000, cut);
        wait_until("the kept bytes at the name", Duration::from_secs(10), || {
            std::fs::metadata(srv.path("new.bin")).map(|m| m.len()).ok() == Some(300_000)
        });
        assert!(srv.temp_files("").is_empty(), "{cut:?}: temp files left: {:?}", srv.temp_files(""));
        // Resume as FileZilla, WinSCP and `lftp put -c` do: SIZE, REST, STOR.
        let mut c = srv.anon();
        c.expect("TYPE I", 200);
        assert_eq!(c.expect("SIZE new.bin", 213).lines[0], "213 300000", "{cut:?}");
        c.expect("REST 300000", 350);
        c.stor(Mode::Epsv, "new.bin", &body[300_000..]);
        assert_eq!(sha256_file(&srv.path("new.bin")), sha256(&body), "{cut:?}: resumed file");
    }
}

#[test]
fn issue_10_atomic_uploads_leave_nothing_of_an_interrupted_upload() {
    let body = pattern(800_000, 78);
    let srv = TestServer::with(|c| c.atomic_uploads = true);
    let mut c = srv.anon();
    c.expect("TYPE I", 200);
    cut_upload(&srv, &mut c, "new.bin", &body, 300_000, End::DataReset);
    wait_until("the temp file to go", Duration::from_secs(10), || srv.temp_files("").is_empty());
    assert!(!srv.path("new.bin").exists(), "an interrupted atomic upload left a file");
    c.stor(Mode::Pasv, "new.bin", &body);
    assert_eq!(sha256_file(&srv.path("new.bin")), sha256(&body));
}

#[test]
fn issue_10_appe_appends_in_place_and_concurrent_appends_both_land() {
    use std::os::unix::fs::MetadataExt;
    let srv = TestServer::start();
    srv.put("log.txt", b"first\n");
    let ino = std::fs::metadata(srv.path("log.txt")).unwrap().ino();
    let mut a = srv.anon();
    let mut b = srv.anon();
    a.expect("TYPE I", 200);
    b.expect("TYPE I", 200);
    // Both uploads open at once, each writes one line, then both end.
    let (_, mut da) = a.open_transfer(Mode::Pasv, "APPE log.txt");
    let (_, mut db) = b.open_transfer(Mode::Epsv, "APPE log.txt");
    da.write_all(b"from a\n").unwrap();
    db.write_all(b"from b\n").unwrap();
    drop(da);
    drop(db);
    assert_eq!(a.reply().code, 226);
    assert_eq!(b.reply().code, 226);
    let text = std::fs::read_to_string(srv.path("log.txt")).unwrap();
    assert!(text.starts_with("first\n") && text.contains("from a\n") && text.contains("from b\n") && text.len() == 20, "{text:?}");
    // In place: the same file, not a copy renamed over it.
    assert_eq!(std::fs::metadata(srv.path("log.txt")).unwrap().ino(), ino);
    // A resume at the end of the file is in place too.
    a.expect("REST 20", 350);
    a.stor(Mode::Pasv, "log.txt", b"more\n");
    assert_eq!(std::fs::read_to_string(srv.path("log.txt")).unwrap().len(), 25);
    assert_eq!(std::fs::metadata(srv.path("log.txt")).unwrap().ino(), ino);
}

#[test]
fn issue_10_with_atomic_uploads_a_second_appe_to_the_same_file_is_450() {
    let srv = TestServer::with(|c| c.atomic_uploads = true);
    srv.put("log.txt", b"first\n");
    let mut a = srv.anon();
    let mut b = srv.anon();
    let (_, mut da) = a.open_transfer(Mode::Pasv, "APPE log.txt");
    let prep = b.prepare(Mode::Pasv);
    drop(prep);
    let r = b.cmd("APPE log.txt");
    assert_eq!(r.code, 450, "{r:?}");
    da.write_all(b"from a\n").unwrap();
    drop(da);
    assert_eq!(a.reply().code, 226);
    assert_eq!(std::fs::read_to_string(srv.path("log.txt")).unwrap(), "first\nfrom a\n");
    // Once the first is over, the file is free again.
    b.expect("TYPE I", 200);
    let (_, mut db) = b.open_transfer(Mode::Pasv, "APPE log.txt");
    db.write_all(b"from b\n").unwrap();
    drop(db);
    assert_eq!(b.reply().code, 226);
    assert_eq!(std::fs::read_to_string(srv.path("log.txt")).unwrap(), "first\nfrom a\nfrom b\n");
}
