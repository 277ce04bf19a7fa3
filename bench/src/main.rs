//! `leanftpd-bench`: an event-driven FTP load generator (issue 3).
//!
//! It drives any FTP server on loopback by address and credentials, and reads
//! the server's cost from `/proc` by PID (the PID's whole process tree, every
//! thread). See `HELP` for the scenarios; `bench/compare.sh` runs them all
//! against leanftpd and its peers.

mod args;
mod engine;
mod flood;
mod ftp;
mod procstat;
mod report;
mod scenarios;
mod login_floor;
mod sendfile_ref;
mod tls;

use args::Args;

const HELP: &str = "\
leanftpd-bench — event-driven FTP load generator

USAGE: leanftpd-bench SCENARIO [OPTIONS]

COMMON OPTIONS
  --addr IP:PORT          server [127.0.0.1:2121]
  --user NAME --pass PW   credentials [anonymous / bench@]
  --pid PID               server PID: its process tree is measured (RSS, PSS, CPU, context switches)
  --sources A,B|A-B       client source addresses in 127.0.0.0/8, round-robin [kernel's choice]
  --no-epsv               use PASV only (EPSV is tried first and dropped on a 5xx otherwise)
  --stall SECS            fail a client that waits longer than this [60]
  --label NAME            tag for the RESULT line [server]

SCENARIOS
  idle --sessions N [--procs P] [--window 10] [--settle 2] [--ramp 200]
        N logged-in idle sessions spread over P child processes; server RSS/PSS delta per
        session, CPU and context switches (wake-ups) per second over the window
  login --concurrency C --seconds S
        connect + USER/PASS + QUIT in a loop by C clients; logins/s, server CPU µs per login
  small --clients 32 --seconds S [--file small.bin]
        RETR of a small file, a new EPSV/PASV data connection each; transfers/s, p50/p99,
        server CPU-seconds per 10,000 transfers
  large --op retr|stor --streams 1|8 --size BYTES [--file large.bin] [--reps 1]
        [--seconds 0] [--warmup 1]  MB/s and server CPU-seconds per GiB (--seconds 0: --reps transfers per stream,
        after --warmup unmeasured ones)
  mixed [--idle 2000] [--file large.bin] [--small-file small.bin] [--small-clients 32]
        [--large-streams 8] [--seconds 5] [--rounds 2]
        large RETR throughput loss with idle sessions logged in (windows alternate without/with,
        --rounds times); small p99 alone and under large transfers
  list --entries 10000 [--path list10k] [--reps 3]
        LIST and MLSD (when FEAT has MLST): time and peak server RSS
  hostile [--clients 32] [--seconds 10] [--file small.bin] [--flooders 100] [--pass-floods 1000]
        [--stat-path hostile-dir] [--root DIR [--stat-dir-entries 20000]] [--pass-len 8100]
        [--pass-user NAME] [--flood-bytes 16M] [--flood-ramp 16] [--flood-sources A-B] [--rss-cap 1G] [--after 3]
        honest small-file clients alone, then while flooders that never read (a third each:
        `STAT <stat-path>`, `HELP`, `PASV`, written over and over) and PASS floods (USER, then a
        wrong --pass-len-byte PASS, reset at once, spread over the window) hit the server:
        honest p50/p99, transfers/s and the server's peak RSS in both phases, p99 ratio;
        --root makes ROOT/STAT_PATH with the entries if missing; stops early past --rss-cap
  sendfile-ref --size BYTES [--reps 3] [--chunk 1M] [--file PATH] [--sender-cpu N] [--reader-cpu N]
        bare sendfile(2) over loopback, sender thread in this process: the physical reference
  login-floor [--listen 127.0.0.1:0]
        a blocking login responder (9 system calls per login, no event loop): run it as a server
        and measure it with `login --concurrency 1`: the physical reference for login ×1
  stat --pid PID
        the server's RSS, PSS, CPU, threads and processes now

FTPS (explicit, RFC 4217: AUTH TLS, then USER/PASS, PBSZ 0, PROT P; rustls with ring)
  idle-tls, login-tls, large-tls
        idle, login and large over TLS, with the same options. login-tls is
        AUTH TLS + a full handshake + USER/PASS + QUIT (no resumption); a large-tls data
        connection resumes its own control connection's session (each client has its own
        session store). The RESULT line adds what was negotiated (tls=VERSION/SUITE/GROUP),
        data connections resumed / not (data_tls_resumed, data_tls_full) and downloads that
        ended without close_notify (unclean_eof).
  TLS OPTIONS
  --ca FILE[,FILE]        PEM CA certificates to trust (required)
  --tls-name NAME         the name or IP the server's certificate carries [--addr's IP]
  --tls-version 1.2|1.3|any   [any: 1.3 preferred]
  --tls-suite NAME        one cipher suite, e.g. TLS13_AES_128_GCM_SHA256 [rustls's order]
  --cert-label NAME       what certificate the server has, for the RESULT line (cert=NAME)

Every scenario prints its figures, the command that reproduces them, and one
`RESULT scenario=... key=value ...` line.
";

fn main() {
    let mut a = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("leanftpd-bench: {e}");
            std::process::exit(2);
        }
    };
    if a.flag("help") || a.scenario.is_empty() {
        print!("{HELP}");
        return;
    }
    let res = match a.scenario.clone().as_str() {
        "idle" | "idle-tls" => scenarios::idle(a),
        "idle-worker" => scenarios::idle_worker(a),
        "login" | "login-tls" => scenarios::login(a),
        "small" => scenarios::small(a),
        "large" | "large-tls" => scenarios::large(a),
        "mixed" => scenarios::mixed(a),
        "list" => scenarios::list(a),
        "hostile" => scenarios::hostile(a),
        "sendfile-ref" => sendfile_ref::run(a),
        "login-floor" => login_floor::run(a),
        "stat" => scenarios::stat(a),
        s => Err(format!("unknown scenario {s:?} (try --help)")),
    };
    if let Err(e) = res {
        eprintln!("leanftpd-bench: {e}");
        std::process::exit(1);
    }
}
