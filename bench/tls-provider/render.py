#!/usr/bin/env python3
"""Turns bench/results/tls-provider-raw/* into bench/results/tls-provider.md.
Everything below the MARKER line of an existing report is kept as is."""
import os, sys

raw, out = sys.argv[1], sys.argv[2]
MARKER = "<!-- hand-written below: kept by render.py -->"
P = ["ring", "aws-lc-rs"]

def results(name):
    r, runs = {}, {}
    for line in open(os.path.join(raw, name)):
        f = line.split()
        if f and f[0] == "RESULT":
            r[f[1]] = f[2]
        elif f and f[0] == "RUNS":
            runs[f[1]] = f[2:]
    return r, runs

res = {p: results(p + ".txt") for p in P}
build, tree = {}, {}
for line in open(os.path.join(raw, "build.txt")):
    f = line.split()
    if f[0] == "BUILD":
        build[f[1]] = dict(zip(f[2::2], f[3::2]))
    elif f[0] == "TREE":
        tree[f[1]] = dict(zip(f[2::2], f[3::2]))
params = open(os.path.join(raw, "params.txt")).read().strip()
machine = open(os.path.join(raw, "machine.txt")).read().rstrip()

def mib(b): return f"{int(b) / 1048576:.2f} MiB"
def spread(p, k):
    v = res[p][1].get(k)
    return f" ({'/'.join(v)})" if v else ""

L = []
L.append("# rustls crypto provider for leanftpd's FTPS: ring vs aws-lc-rs\n")
L.append("Measured with `bench/tls-provider/run.sh` (" + params + ": each CPU figure is the")
L.append("minimum of RUNS runs; all runs in parentheses). rustls 0.23.46, server side =")
L.append("`UnbufferedServerConnection`, client = buffered `ClientConnection` in the same")
L.append("thread; only the server's calls are timed, with CLOCK_THREAD_CPUTIME_ID")
L.append("(user+sys of the thread). Raw output: `bench/results/tls-provider-raw/`.\n")
L.append("## Binary size and build\n")
L.append("`size-probe` (bench/tls-provider/src/bin/size_probe.rs): reads a PEM cert/key,")
L.append("builds a ServerConfig (TLS 1.2+1.3, provider's stateless Ticketer), accepts one")
L.append("TCP connection and runs an `UnbufferedServerConnection` handshake, sends")
L.append("\"hello\" (checked against `openssl s_client`). `plain` is the same program")
L.append("without rustls. Profile = leanftpd's release profile (lto, codegen-units=1,")
L.append("opt-level=3, panic=unwind, strip=true). Build time: cold `cargo build --release`")
L.append("of size-probe in a fresh target dir, dependencies included, wall clock on this")
L.append("2-core machine (shared with other jobs: rough).\n")
L.append("| | plain (no rustls) | ring | aws-lc-rs |")
L.append("|---|---:|---:|---:|")
L.append("| stripped size-probe | " + " | ".join(
    f"{mib(build[p]['size_probe_bytes'])} ({int(build[p]['size_probe_bytes']):,} B)" for p in ["plain"] + P) + " |")
base = int(build["plain"]["size_probe_bytes"])
L.append("| cost of rustls + provider | – | " + " | ".join(
    f"+{mib(int(build[p]['size_probe_bytes']) - base)}" for p in P) + " |")
L.append("| crates in `cargo tree -e normal` (besides the probe; libc counted) | 1 (libc) | " + " | ".join(tree[p]["normal_deps"] for p in P) + " |")
L.append("| crates incl. build deps (`-e normal,build`) | – | " + " | ".join(tree[p]["normal_and_build_deps"] for p in P) + " |")
L.append("| cold release build, wall | " + " | ".join(f"{float(build[p]['cold_build_s']):.0f} s" for p in ["plain"] + P) + " |")
L.append("")
L.append("## Server CPU seconds per GiB of application data (16 KiB records)\n")
L.append("send = server encrypts (`WriteTraffic::encrypt`, as in RETR); receive = server")
L.append("decrypts what the client sent (`process_tls_records` + `ReadTraffic`, as in")
L.append("STOR; includes rustls copying each record's plaintext into its own Vec).")
L.append("TLS 1.3 suites with an ECDSA P-256 cert, TLS 1.2 with RSA-2048.\n")
L.append("| suite | direction | ring | aws-lc-rs |")
L.append("|---|---|---:|---:|")
names = [("tls13_aes128gcm", "TLS13_AES_128_GCM_SHA256"), ("tls13_aes256gcm", "TLS13_AES_256_GCM_SHA384"),
         ("tls13_chacha20", "TLS13_CHACHA20_POLY1305_SHA256"), ("tls12_ecdhe_rsa_aes128gcm", "TLS12 ECDHE_RSA_AES_128_GCM_SHA256")]
for k, label in names:
    for d, dl in [("send", "send (RETR)"), ("recv", "receive (STOR)")]:
        key = f"{d}_{k}_cpu_s_per_gib"
        L.append(f"| {label} | {dl} | " + " | ".join(f"**{res[p][0][key]}**{spread(p, key)}" for p in P) + " |")
L.append("")
L.append("## Server CPU per TLS 1.3 handshake (µs)\n")
L.append("X25519 key exchange (first in both providers' defaults with rustls'")
L.append("`prefer-post-quantum` off, as leanftpd builds it); the server has a stateless")
L.append("ticketer and sends rustls' default 2 tickets per handshake (included). Full:")
L.append("client resumption disabled (500 RSA / 2000 ECDSA handshakes per run); resumed:")
L.append("ticket resumption, asserted `HandshakeKind::Resumed` on both sides.")
L.append("Creating and dropping the server connection are included.\n")
L.append("| handshake | ring | aws-lc-rs |")
L.append("|---|---:|---:|")
for key, label in [("hs_full_rsa2048_us", "full, RSA-2048 cert"), ("hs_full_ecdsa_p256_us", "full, ECDSA P-256 cert"),
                   ("hs_resumed_us", "resumed (ticket, PSK-DHE), ECDSA P-256 config")]:
    L.append(f"| {label} | **{res[P[0]][0][key]}**{spread(P[0], key)} | **{res[P[1]][0][key]}**{spread(P[1], key)} |")
L.append("")
L.append("## Memory of one idle established server connection (TLS 1.3, AES-128-GCM)\n")
L.append("1,000 server connections handshaken, clients dropped; heap = what dropping the")
L.append("1,000 servers gives back, per connection. \"Rust heap\" counts the")
L.append("`#[global_allocator]`; \"malloc\" is glibc `mallinfo2()` (in-use chunks, so it")
L.append("also sees aws-lc's C allocations, and malloc's per-chunk overhead).\n")
L.append("| | ring | aws-lc-rs |")
L.append("|---|---:|---:|")
for key, label in [("mem_size_of", "`size_of::<UnbufferedServerConnection>()`"),
                   ("mem_rust_heap_freed_per_conn", "Rust heap per connection"),
                   ("mem_malloc_heap_freed_per_conn", "all malloc heap per connection (Rust + C)")]:
    L.append(f"| {label} | {int(res[P[0]][0][key]):,} B | {int(res[P[1]][0][key]):,} B |")
tot = {p: int(res[p][0]["mem_size_of"]) + int(res[p][0]["mem_malloc_heap_freed_per_conn"]) for p in P}
L.append("| **total (size_of + malloc heap)** | **" + "** | **".join(f"{tot[p]:,} B" for p in P) + "** |")
L.append("")
L.append("## Machine\n")
L.append("```")
L.append(machine)
L.append("```\n")
L.append(MARKER)
keep = ""
if os.path.exists(out):
    txt = open(out).read()
    if MARKER in txt:
        keep = txt.split(MARKER, 1)[1]
open(out, "w").write("\n".join(L) + keep)
