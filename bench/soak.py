#!/usr/bin/env python3
"""Bounded soak of a running leanftpd: a few minutes of mixed load, then a
check that nothing leaked and nothing was corrupted.

Workers loop over random actions until the deadline: log in and out, LIST,
MLSD, NLST, upload a file (sha256 kept), download a file and compare its
sha256, resume a download with REST, abort a download or an upload with
ABOR, vanish mid-transfer (reset both connections), and fail a login. After
the load stops the script waits for the server to settle and compares its
open descriptors and RSS with the baseline taken after a warm-up round.

With --slowloris N, N more connections (from 127.0.0.2 … 127.0.0.21) each
send one byte and then stay silent for the whole run, one byte a minute:
the honest workers must still log in and transfer.

Usage: soak.py --port PORT --pid PID --root DIR [--seconds 180] [--workers 16] [--slowloris N]
Exit status 0 when every check passed; the figures are printed either way.
"""

import argparse
import ftplib
import hashlib
import io
import os
import random
import socket
import struct
import sys
import threading
import time


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def reset(sock):
    """Close with RST (SO_LINGER 0): a client that vanishes."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []

    def add(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def fail(self, what):
        with self.lock:
            self.failures.append(what)


def connect(port):
    f = ftplib.FTP()
    f.connect("127.0.0.1", port, timeout=30)
    f.login()
    return f


def worker(n, args, files, stats, deadline):
    rnd = random.Random(n)
    while time.time() < deadline:
        action = rnd.choice(["login", "list", "mlsd", "nlst", "upload", "upload", "download", "download",
                             "rest", "abort_retr", "abort_stor", "vanish", "badlogin"])
        try:
            if action == "login":
                f = connect(args.port)
                f.sendcmd("NOOP")
                f.quit()
            elif action in ("list", "mlsd", "nlst"):
                f = connect(args.port)
                if action == "list":
                    lines = []
                    f.retrlines("LIST", lines.append)
                elif action == "mlsd":
                    list(f.mlsd())
                else:
                    f.nlst()
                f.quit()
            elif action == "upload":
                data = rnd.randbytes(rnd.choice([0, 1, 4096, 200_000, 3_000_000]))
                name = f"up-{n}-{rnd.randrange(4)}.bin"
                f = connect(args.port)
                f.storbinary(f"STOR {name}", io.BytesIO(data))
                f.quit()
                # Only this worker writes this name: check it on disk.
                with open(os.path.join(args.root, name), "rb") as g:
                    if hashlib.sha256(g.read()).hexdigest() != hashlib.sha256(data).hexdigest():
                        stats.fail(f"upload {name} differs on disk")
            elif action == "download":
                name, digest = rnd.choice(files)
                h = hashlib.sha256()
                f = connect(args.port)
                f.retrbinary(f"RETR {name}", h.update)
                f.quit()
                if h.hexdigest() != digest:
                    stats.fail(f"download {name} sha256 differs")
            elif action == "rest":
                name, _ = rnd.choice(files)
                with open(os.path.join(args.root, name), "rb") as g:
                    whole = g.read()
                off = rnd.randrange(len(whole) + 1)
                h = hashlib.sha256()
                f = connect(args.port)
                f.retrbinary(f"RETR {name}", h.update, rest=off)
                f.quit()
                if h.hexdigest() != hashlib.sha256(whole[off:]).hexdigest():
                    stats.fail(f"REST {off} of {name} differs")
            elif action == "abort_retr":
                f = connect(args.port)
                f.voidcmd("TYPE I")
                conn = f.transfercmd("RETR big.bin")
                conn.recv(65536)
                f.abort()
                conn.close()
                f.getresp()
                f.quit()
            elif action == "abort_stor":
                f = connect(args.port)
                conn = f.transfercmd(f"STOR aborted-{n}.bin")
                conn.sendall(b"x" * 100_000)
                f.abort()
                conn.close()
                f.getresp()
                f.quit()
            elif action == "vanish":
                f = connect(args.port)
                f.voidcmd("TYPE I")
                if rnd.random() < 0.5:
                    conn = f.transfercmd("RETR big.bin")
                    conn.recv(4096)
                else:
                    conn = f.transfercmd(f"STOR vanished-{n}.bin")
                    conn.sendall(b"y" * 50_000)
                reset(conn)
                reset(f.sock)
            elif action == "badlogin":
                f = ftplib.FTP()
                f.connect("127.0.0.1", args.port, timeout=30)
                try:
                    f.login("nobody-here", "wrong")
                    stats.fail("a wrong login succeeded")
                except ftplib.error_perm:
                    pass
                f.close()
            stats.add(action)
        except (OSError, EOFError, ftplib.Error) as e:
            stats.fail(f"{action}: {e!r}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--slowloris", type=int, default=0)
    args = p.parse_args()

    rnd = random.Random(7)
    files = []
    for i, size in enumerate([0, 1, 4096, 1 << 20, 5_000_000]):
        data = rnd.randbytes(size)
        name = f"fixed-{i}.bin"
        with open(os.path.join(args.root, name), "wb") as g:
            g.write(data)
        files.append((name, hashlib.sha256(data).hexdigest()))
    with open(os.path.join(args.root, "big.bin"), "wb") as g:
        g.write(rnd.randbytes(64 << 20))

    # Warm-up, then the baseline.
    stats = Stats()
    worker(999, argparse.Namespace(**{**vars(args)}), files, stats, time.time() + 3)
    time.sleep(2)
    base_fd, base_rss = fd_count(args.pid), rss_kib(args.pid)

    # The slow connections: one byte each, from 20 source addresses.
    slow = []
    for i in range(args.slowloris):
        s = socket.socket()
        try:
            s.bind((f"127.0.0.{2 + i % 20}", 0))
            s.connect(("127.0.0.1", args.port))
            s.send(b"U")
            slow.append(s)
        except OSError:
            s.close()
    stop_slow = threading.Event()

    def trickle():
        # One more byte a minute on every slow connection still open.
        while not stop_slow.wait(60):
            for s in slow:
                try:
                    s.send(b"S")
                except OSError:
                    pass

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()

    stats = Stats()
    deadline = time.time() + args.seconds
    threads = [threading.Thread(target=worker, args=(n, args, files, stats, deadline)) for n in range(args.workers)]
    start = time.time()
    for t in threads:
        t.start()
    peak_rss = base_rss
    while any(t.is_alive() for t in threads):
        peak_rss = max(peak_rss, rss_kib(args.pid))
        time.sleep(0.5)
    elapsed = time.time() - start
    stop_slow.set()
    for s in slow:
        reset(s)

    # Let vanished sessions, aborted transfers and delays play out.
    settle_deadline = time.time() + 30
    while time.time() < settle_deadline and fd_count(args.pid) > base_fd:
        time.sleep(0.5)
    # The server gives memory back within a couple of seconds of a peak
    # (slab shrink + malloc_trim, rate-limited to once a second).
    rss_deadline = time.time() + 10
    while time.time() < rss_deadline and rss_kib(args.pid) > base_rss + 1024:
        time.sleep(0.5)
    end_fd, end_rss = fd_count(args.pid), rss_kib(args.pid)
    temps = [n for n in os.listdir(args.root) if n.startswith(".leanftpd-upload-")]

    total = sum(stats.counts.values())
    print(f"soak: {elapsed:.0f} s, {args.workers} workers, {total} actions ({total / elapsed:.0f}/s), {len(slow)} slowloris connections opened")
    print("actions: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.counts.items())))
    print(f"descriptors: baseline {base_fd}, after {end_fd}")
    print(f"RSS KiB: baseline {base_rss}, peak {peak_rss}, after {end_rss}")
    print(f"temporary upload files left: {len(temps)}")
    print(f"failures: {len(stats.failures)}")
    for f in stats.failures[:20]:
        print("  " + f)
    ok = not stats.failures and end_fd <= base_fd and not temps and end_rss <= base_rss + 1024
    print("RESULT soak ok=%s actions=%d fd_base=%d fd_after=%d rss_base=%d rss_peak=%d rss_after=%d temps=%d failures=%d"
          % (ok, total, base_fd, end_fd, base_rss, peak_rss, end_rss, len(temps), len(stats.failures)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
