//! The physical reference for `login ×1`: the least any server can do for
//! one login at a time over loopback. A blocking loop, one connection after
//! the other: `accept`, the greeting, then per command one `read` and one
//! reply (331, 230, 221 and close) — 9 system calls per login, no event
//! loop, no state, no password check. Run as its own process (pinned like
//! the servers) and measured by the `login` scenario through its PID, its
//! CPU per login is the kernel's cost of the four round trips, the floor
//! under every server's figure at concurrency 1.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::args::Args;

pub fn run(mut a: Args) -> Result<(), String> {
    let listen = a.str_or("listen", "127.0.0.1:0");
    a.finish()?;
    let listener = TcpListener::bind(&listen).map_err(|e| format!("bind {listen}: {e}"))?;
    // The address on stdout, so a runner can use port 0.
    println!("listening {}", listener.local_addr().map_err(|e| e.to_string())?);
    let _ = std::io::stdout().flush();
    serve(&listener)
}

/// Answer logins on `listener`, one connection at a time, forever.
fn serve(listener: &TcpListener) -> ! {
    let mut buf = [0u8; 512];
    loop {
        let Ok((mut s, _)) = listener.accept() else { continue };
        let _ = s.set_nodelay(true);
        if s.write_all(b"220 floor\r\n").is_err() {
            continue;
        }
        // One command per read: the client sends the next only after the reply.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            let reply: &[u8] = match buf[..n.min(4)].to_ascii_uppercase().as_slice() {
                b"USER" => b"331 password\r\n",
                b"PASS" => b"230 in\r\n",
                b"QUIT" => b"221 bye\r\n",
                _ => b"502 not here\r\n",
            };
            if s.write_all(reply).is_err() || reply.starts_with(b"221") {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;

    #[test]
    fn answers_a_login_and_closes_after_quit() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || serve(&l));
        for _ in 0..2 {
            let s = TcpStream::connect(addr).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut codes = Vec::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            codes.push(line[..3].to_string());
            for cmd in ["USER u\r\n", "PASS p\r\n", "NOOP\r\n", "QUIT\r\n"] {
                w.write_all(cmd.as_bytes()).unwrap();
                line.clear();
                r.read_line(&mut line).unwrap();
                codes.push(line[..3].to_string());
            }
            assert_eq!(codes, ["220", "331", "230", "502", "221"]);
            line.clear();
            assert_eq!(r.read_line(&mut line).unwrap(), 0, "closed after 221");
        }
    }
}
