//! SIGHUP reloads the TLS certificate and key (issue 11): new TLS sessions
//! get the new certificate; a file that does not load keeps the old one
//! and says so in the log. Driven against the built binary, with
//! `openssl s_client -starttls ftp` reading the certificate served.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_leanftpd");

fn openssl() -> &'static str {
    if Path::new("/usr/bin/openssl").exists() {
        "/usr/bin/openssl"
    } else {
        panic!("openssl is required (apt-get install openssl)")
    }
}

/// A self-signed certificate and key for `cn`, as PEM text.
fn make_cert(dir: &Path, cn: &str) -> (Vec<u8>, Vec<u8>) {
    let (c, k) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let ok = Command::new(openssl())
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    (std::fs::read(c).unwrap(), std::fs::read(k).unwrap())
}

/// The subject line of the certificate the server presents after AUTH TLS.
fn served_subject(port: u16) -> String {
    let out = Command::new(openssl())
        .args(["s_client", "-starttls", "ftp", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines().find(|l| l.starts_with("subject=")).unwrap_or("").to_string()
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

/// Wait until the server presents a certificate whose subject contains `cn`.
fn wait_for_subject(port: u16, cn: &str) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = served_subject(port);
        if s.contains(cn) || Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_reloads_the_certificate_and_a_broken_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (cert_a, key_a) = make_cert(dir.path(), "leanftpd-first");
    let (cert_b, key_b) = make_cert(dir.path(), "leanftpd-second");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_a).unwrap();
    std::fs::write(&key, &key_a).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.path().join("log");
    let mut child = Command::new(BIN)
        .args(["--root", root.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let first = wait_for_subject(port, "leanftpd-first");
    assert!(first.contains("leanftpd-first"), "served at start: {first:?}");

    std::fs::write(&cert, &cert_b).unwrap();
    std::fs::write(&key, &key_b).unwrap();
    signal(&child, "-HUP");
    let second = wait_for_subject(port, "leanftpd-second");
    assert!(second.contains("leanftpd-second"), "served after SIGHUP: {second:?}");

    std::fs::write(&cert, b"not a certificate\n").unwrap();
    signal(&child, "-HUP");
    let end = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while !text.contains("keeping the old TLS certificate") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        text.clear();
        std::fs::File::open(&log).unwrap().read_to_string(&mut text).unwrap();
    }
    assert!(text.contains("keeping the old TLS certificate"), "log:\n{text}");
    let still = served_subject(port);
    assert!(still.contains("leanftpd-second"), "served after a broken reload: {still:?}");

    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}
