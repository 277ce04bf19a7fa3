//! The physical reference for large RETR: a bare `sendfile(2)` loop from a
//! file in the page cache to a loopback socket, sender thread in this process,
//! reader the same way the load generator reads (discarding `recv`s).

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::args::Args;
use crate::procstat::{pin_to_cpu, thread_cpu_secs};
use crate::report::Report;

pub fn run(mut a: Args) -> Result<(), String> {
    let size: u64 = a.num_or("size", 1u64 << 30)?;
    let reps: usize = a.num_or("reps", 3)?;
    let chunk: usize = a.num_or("chunk", 1usize << 20)?;
    let file = a.opt_str("file");
    let sender_cpu: Option<usize> = a.opt_str("sender-cpu").map(|v| v.parse().map_err(|_| "--sender-cpu: a CPU number")).transpose()?;
    let reader_cpu: Option<usize> = a.opt_str("reader-cpu").map(|v| v.parse().map_err(|_| "--reader-cpu: a CPU number")).transpose()?;
    let label = a.str_or("label", "sendfile");
    a.finish()?;
    // The file: given, or made here (and removed at the end).
    let (path, temp) = match file {
        Some(p) => (std::path::PathBuf::from(p), false),
        None => {
            let p = std::env::temp_dir().join(format!("leanftpd-bench-sendfile-{}.bin", std::process::id()));
            let mut f = File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i * 131 % 251) as u8).collect();
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
                left -= n as u64;
            }
            (p, true)
        }
    };
    let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let p2 = path.clone();
    let sender = std::thread::spawn(move || -> Result<Vec<f64>, String> {
        if let Some(c) = sender_cpu {
            pin_to_cpu(c);
        }
        let mut cpu = Vec::new();
        for _ in 0..reps {
            let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
            let _ = sock.set_nodelay(true);
            let f = File::open(&p2).map_err(|e| e.to_string())?;
            let c0 = thread_cpu_secs();
            let mut off: libc::off_t = 0;
            while (off as u64) < size {
                // Bounded slices, as a server loop does: one call for the whole
                // file would set MSG_MORE on every page but the last and cork TCP.
                let want = (size - off as u64).min(chunk as u64) as usize;
                // SAFETY: both fds are open for the duration of the call; off is ours.
                let n = unsafe { libc::sendfile(sock.as_raw_fd(), f.as_raw_fd(), &mut off, want) };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(format!("sendfile: {e}"));
                }
                if n == 0 {
                    break;
                }
            }
            cpu.push(thread_cpu_secs() - c0);
        }
        Ok(cpu)
    });
    if let Some(c) = reader_cpu {
        pin_to_cpu(c);
    }
    // The reader is the load generator's: non-blocking, edge-triggered epoll,
    // discarding reads, so the reference and the FTP runs differ only in the server.
    let mut rates = Vec::new();
    let mut poll = mio::Poll::new().map_err(|e| e.to_string())?;
    let mut events = mio::Events::with_capacity(8);
    for _ in 0..reps {
        let t0 = Instant::now();
        let mut s = crate::engine::connect_from(None, addr).map_err(|e| e.to_string())?;
        poll.registry().register(&mut s, mio::Token(0), mio::Interest::READABLE).map_err(|e| e.to_string())?;
        let mut got = 0u64;
        'outer: loop {
            poll.poll(&mut events, Some(std::time::Duration::from_secs(30))).map_err(|e| e.to_string())?;
            if events.is_empty() {
                return Err("reader stalled for 30 s".into());
            }
            loop {
                match crate::engine::discard(&s, 1 << 20) {
                    Ok(0) => break 'outer,
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
        let el = t0.elapsed().as_secs_f64();
        let _ = poll.registry().deregister(&mut s);
        if got != size {
            return Err(format!("got {got} of {size} bytes"));
        }
        rates.push(got as f64 / el / 1e6);
    }
    let cpu = sender.join().map_err(|_| "sender thread panicked".to_string())??;
    if temp {
        let _ = std::fs::remove_file(&path);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let mut r = Report::new("sendfile-ref", &label);
    r.kv("size", size);
    r.kv("reps", reps);
    r.kv("chunk", chunk);
    r.f("mb_per_s", rates[rates.len() / 2]);
    r.f("mb_per_s_best", rates[rates.len() - 1]);
    let mut cpu_sorted = cpu.clone();
    cpu_sorted.sort_by(|a, b| a.total_cmp(b));
    r.f("sender_cpu_s_per_gib", cpu_sorted[cpu_sorted.len() / 2] / (size as f64 / (1u64 << 30) as f64));
    r.finish();
    Ok(())
}
