#!/usr/bin/env python3
"""Turn the RESULT lines that compare.sh collected into one Markdown table.

usage: report.py RESULTS_DIR   (one SERVER.txt per server, plus meta.txt)

Each row is a figure; columns are leanftpd, each peer, the best peer and
leanftpd's ratio to it (leanftpd / best: below 1 is better where lower is
better, above 1 where higher is better). Then every issue-3 target, met or
not, and the FTPS targets of issue 11 when the TLS scenarios ran.
"""
import os
import sys

LEAN = "leanftpd"


def load(d):
    res, meta, order = {}, {}, []
    for name in sorted(os.listdir(d)):
        if not name.endswith(".txt"):
            continue
        for line in open(os.path.join(d, name), encoding="utf-8", errors="replace"):
            words = line.split()
            if not words:
                continue
            kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            if words[0] == "META":
                meta.update(kv)
            elif words[0] == "RESULT":
                server = kv.get("label", name[:-4])
                if server not in order:
                    order.append(server)
                sc = kv["scenario"]
                variant = {
                    "idle": kv.get("sessions", ""),
                    "login": kv.get("concurrency", ""),
                    "large": kv.get("op", "") + str(kv.get("streams", "")),
                    "idle-tls": kv.get("sessions", ""),
                    "login-tls": kv.get("concurrency", "") + "/" + kv.get("cert", ""),
                    "large-tls": kv.get("op", "") + str(kv.get("streams", "")),
                }.get(sc, "")
                res.setdefault(server, {}).setdefault((sc, variant), []).append(kv)
    # A scenario run several times (large transfers, the sendfile reference):
    # each figure is the median of its runs.
    for server in res:
        for key, runs in res[server].items():
            merged = dict(runs[-1])
            for k in merged:
                xs = sorted(x for x in (num(r.get(k)) for r in runs) if x is not None)
                if len(runs) > 1 and xs and len({r.get(k) for r in runs}) > 1:
                    n = len(xs)
                    merged[k] = str(xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2)
            merged["runs"] = str(len(runs))
            res[server][key] = merged
    return res, meta, order


def num(v):
    try:
        x = float(v)
        return x if x == x else None
    except (TypeError, ValueError):
        return None


def fmt(x):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def main():
    d = sys.argv[1]
    res, meta, order = load(d)
    # NAME@tmpfs (the large scenario on a tmpfs root) and leanftpd-w2
    # (--workers 2) have a table of their own (`roots_section`).
    variants_of = [s for s in order if "@" in s or s.startswith(LEAN + "-")]
    servers = [LEAN] + [s for s in order if s not in (LEAN, "sendfile", "floor") and s not in variants_of]
    peers = [s for s in servers if s != LEAN]

    def get(server, sc, variant, key):
        return num(res.get(server, {}).get((sc, variant), {}).get(key))

    idle_ns = sorted({v for s in res.values() for (sc, v) in s if sc == "idle"}, key=lambda v: int(v or 0))
    logins = sorted({v for s in res.values() for (sc, v) in s if sc == "login"}, key=lambda v: int(v or 0))
    rows = [("footprint: RSS after start, KiB", "stat", "", "rss_kib", "low"),
            ("footprint: PSS after start, KiB", "stat", "", "pss_kib", "low")]
    for n in idle_ns:
        rows += [(f"idle {int(n):,}: logged in", "idle", n, "logged_in", "high"),
                 (f"idle {int(n):,}: PSS per session, KiB", "idle", n, "pss_per_session_kib", "low"),
                 (f"idle {int(n):,}: RSS per session, KiB", "idle", n, "rss_per_session_kib", "low"),
                 (f"idle {int(n):,}: wake-ups/s", "idle", n, "wakeups_per_s", "low"),
                 (f"idle {int(n):,}: server CPU %", "idle", n, "server_cpu_pct", "low")]
    for c in logins:
        rows += [(f"login ×{c}: logins/s", "login", c, "logins_per_s", "high"),
                 (f"login ×{c}: server CPU µs per login", "login", c, "server_cpu_us_per_login", "low")]
    rows += [("small 4 KiB ×32: transfers/s", "small", "", "transfers_per_s", "high"),
             ("small: p50 ms", "small", "", "p50_ms", "low"),
             ("small: p99 ms", "small", "", "p99_ms", "low"),
             ("small: server CPU-s per 10,000", "small", "", "server_cpu_s_per_10k", "low")]
    for op in ("retr", "stor"):
        for st in ("1", "8"):
            rows += [(f"large {op.upper()} ×{st}: MB/s", "large", op + st, "mb_per_s", "high"),
                     (f"large {op.upper()} ×{st}: server CPU-s per GiB", "large", op + st, "server_cpu_s_per_gib", "low")]
    rows += [("mixed: large RETR MB/s alone", "mixed", "", "large_mb_per_s_unloaded", "high"),
             ("mixed: large RETR loss with 2,000 idle, %", "mixed", "", "large_loss_pct", "low"),
             ("mixed: small p99 alone, ms", "mixed", "", "small_alone_p99_ms", "low"),
             ("mixed: small p99 under 8 large, ms", "mixed", "", "small_loaded_p99_ms", "low"),
             ("mixed: small p99 ratio loaded/alone", "mixed", "", "small_p99_ratio", "low"),
             ("list 10,000: LIST ms", "list", "", "list_median_ms", "low"),
             ("list: LIST peak RSS growth, KiB", "list", "", "list_peak_rss_delta_kib", "low"),
             ("list: MLSD ms", "list", "", "mlsd_median_ms", "low"),
             ("list: MLSD peak RSS growth, KiB", "list", "", "mlsd_peak_rss_delta_kib", "low"),
             ("hostile: honest 4 KiB transfers/s alone", "hostile", "", "baseline_transfers_per_s", "high"),
             ("hostile: honest transfers/s under the flood", "hostile", "", "hostile_transfers_per_s", "high"),
             ("hostile: honest p50 alone, ms", "hostile", "", "baseline_p50_ms", "low"),
             ("hostile: honest p50 under the flood, ms", "hostile", "", "hostile_p50_ms", "low"),
             ("hostile: honest p99 alone, ms", "hostile", "", "baseline_p99_ms", "low"),
             ("hostile: honest p99 under the flood, ms", "hostile", "", "hostile_p99_ms", "low"),
             ("hostile: p99 ratio flood/alone", "hostile", "", "p99_ratio", "low"),
             ("hostile: server peak RSS alone, KiB", "hostile", "", "baseline_peak_rss_kib", "low"),
             ("hostile: server peak RSS under the flood, KiB", "hostile", "", "hostile_peak_rss_kib", "low"),
             ("hostile: server peak PSS under the flood, KiB", "hostile", "", "hostile_peak_pss_kib", "low"),
             ("hostile: PASS floods that got to send PASS", "hostile", "", "pass_sent", "high"),
             ("hostile: honest transfers/s in the 3 s after the flood", "hostile", "", "after_transfers_per_s", "high")]
    variants = lambda sc: {v for s in res.values() for (x, v) in s if x == sc}
    for n in sorted(variants("idle-tls"), key=lambda v: int(v or 0)):
        rows += [(f"FTPS idle {int(n):,}: logged in", "idle-tls", n, "logged_in", "high"),
                 (f"FTPS idle {int(n):,}: PSS per session, KiB", "idle-tls", n, "pss_per_session_kib", "low"),
                 (f"FTPS idle {int(n):,}: RSS per session, KiB", "idle-tls", n, "rss_per_session_kib", "low"),
                 (f"FTPS idle {int(n):,}: server processes", "idle-tls", n, "server_procs", "low"),
                 (f"FTPS idle {int(n):,}: wake-ups/s (context switches)", "idle-tls", n, "wakeups_per_s", "low"),
                 (f"FTPS idle {int(n):,}: times on a CPU/s (schedstat)", "idle-tls", n, "runs_per_s", "low"),
                 (f"FTPS idle {int(n):,}: server CPU %", "idle-tls", n, "server_cpu_pct", "low")]
    tls_logins = sorted(variants("login-tls"), key=lambda v: (v.split("/")[1], int(v.split("/")[0] or 0)))
    for v in tls_logins:
        c, cert = v.split("/")
        rows += [(f"FTPS login ×{c} ({cert}): logins/s", "login-tls", v, "logins_per_s", "high"),
                 (f"FTPS login ×{c} ({cert}): p50 ms", "login-tls", v, "login_p50_ms", "low"),
                 (f"FTPS login ×{c} ({cert}): server CPU µs per login", "login-tls", v, "server_cpu_us_per_login", "low")]
    tls_large = sorted(variants("large-tls"), key=lambda v: (v[:4] != "retr", int(v[4:] or 0)))
    for v in tls_large:
        rows += [(f"FTPS {v[:4].upper()} ×{v[4:]} (PROT P): MB/s", "large-tls", v, "mb_per_s", "high"),
                 (f"FTPS {v[:4].upper()} ×{v[4:]} (PROT P): server CPU-s per GiB", "large-tls", v, "server_cpu_s_per_gib", "low"),
                 (f"FTPS {v[:4].upper()} ×{v[4:]} (PROT P): load generator CPU %", "large-tls", v, "client_cpu_pct", "low")]

    out = []
    w = out.append
    scs = {sc for s in res.values() for (sc, _v) in s}
    plain = scs & {"stat", "idle", "small", "large", "list", "login", "mixed", "hostile"}
    tls = scs & {"idle-tls", "login-tls", "large-tls"}
    if tls and not plain:
        w("# leanftpd vs its peers — FTPS (issue 11) benchmark\n")
    else:
        w("# leanftpd vs its peers — issue 3 benchmark\n")
    w(f"- date: {meta.get('date', '?')}")
    w(f"- machine: {meta.get('cores', '?')} cores ({meta.get('cpu', '?').replace('_', ' ')}), "
      f"kernel {meta.get('kernel', '?')}, {meta.get('mem', '?').replace('_', ' ')}")
    w(f"- command: `{meta.get('command', '?').replace('~', ' ')}` (mode: {meta.get('mode', '?')})")
    w(f"- pinning: {meta.get('pinning', '?').replace('_', ' ')}; load average (1/5/15 min) at "
      f"{meta.get('loadavg', '?').replace('_', ' ')} (above ~0.5 means something else ran on the machine)")
    if meta.get("lean_args", "none") != "none":
        w(f"- leanftpd extra options: `{meta['lean_args'].replace('~', ' ')}`")
    w(f"- peers: {', '.join(peers) or 'none'}; versions: {meta.get('versions', '?').replace('_', ' ')}")
    w("- ratio = leanftpd ÷ best peer (↓ lower is better, ↑ higher is better); "
      "— = not measured or failed (see the run's log)\n")
    w("| figure | " + " | ".join(servers) + " | best peer | ratio |")
    w("|---" * (len(servers) + 3) + "|")
    for label, sc, v, key, better in rows:
        vals = [get(s, sc, v, key) for s in servers]
        if all(x is None for x in vals):
            continue
        pv = [(get(p, sc, v, key), p) for p in peers]
        pv = [(x, p) for x, p in pv if x is not None]
        best = (min(pv) if better == "low" else max(pv)) if pv else None
        lean = vals[0]
        ratio = "—"
        if best is not None and lean is not None and best[0] not in (0, None):
            ratio = f"{lean / best[0]:.2f}×"
        elif best is not None and lean is not None and best[0] == 0:
            ratio = "=" if lean == 0 else "∞"
        arrow = "↓" if better == "low" else "↑"
        bestcell = f"{fmt(best[0])} ({best[1]})" if best else "—"
        w(f"| {label} {arrow} | " + " | ".join(fmt(x) for x in vals) + f" | {bestcell} | {ratio} |")

    sref = num(res.get("sendfile", {}).get(("sendfile-ref", ""), {}).get("mb_per_s"))
    sref_cpu = num(res.get("sendfile", {}).get(("sendfile-ref", ""), {}).get("sender_cpu_s_per_gib"))
    w("")
    if sref is not None:
        w(f"Bare sendfile(2) loop over loopback (the physical reference): {fmt(sref)} MB/s, "
          f"sender {fmt(sref_cpu)} CPU-s per GiB.")
    floor = num(res.get("floor", {}).get(("login", "1"), {}).get("server_cpu_us_per_login"))
    if floor is not None:
        w(f"Bare blocking login responder (`leanftpd-bench login-floor`: accept, 4 replies, 3 reads, close; "
          f"no event loop, no password check — the kernel's cost of one login at a time, the physical "
          f"reference for login ×1): {fmt(floor)} µs server CPU per login.")
    binsize = num(meta.get("binary_bytes"))
    w(f"leanftpd stripped release binary: {fmt(binsize / 2**20 if binsize else None)} MiB "
      f"({meta.get('binary_bytes', '?')} bytes). "
      "The Python peers need a CPython interpreter and their packages (tens of MiB on disk); "
      "vsftpd is a ~150 KiB C binary plus libc, PAM and its modules, and forks two processes per client.")
    w("")

    if variants_of:
        roots_section(w, res, servers, variants_of, meta)

    stopped = [s for s in servers if res.get(s, {}).get(("hostile", ""), {}).get("stopped_early", "no") != "no"]
    if stopped:
        w("hostile: stopped early because the server's memory passed the cap (--rss-cap; its figures are "
          "up to that moment): " + ", ".join(stopped) + ".")
        w("")
    if any(("hostile", "") in res.get(s, {}) for s in servers):
        w("## Issue 9 targets (hostile)\n")
        w("| server | honest p99 flood/alone | ≤ 2× | peak RSS (PSS) under the flood | < 64 MiB |")
        w("|---|---|---|---|---|")
        for s in servers:
            h = res.get(s, {}).get(("hostile", ""))
            if not h:
                continue
            ratio, rss = num(h.get("p99_ratio")), num(h.get("hostile_peak_rss_kib"))
            pss = num(h.get("hostile_peak_pss_kib"))
            ok = lambda c: "—" if c is None else ("**met**" if c else "**not met**")
            w(f"| {s} | {fmt(ratio)}× | {ok(None if ratio is None else ratio <= 2)} | "
              f"{fmt(rss / 1024 if rss is not None else None)} ({fmt(pss / 1024 if pss is not None else None)}) MiB | {ok(None if rss is None else rss < 64 * 1024)} |")
        w("")
    if tls:
        tls_section(w, res, servers, peers, get, tls_logins, tls_large, variants("idle-tls"), meta)
    if not any(sc in plain - {"hostile"} for (sc, _v) in res.get(LEAN, {})):
        print("\n".join(out))
        return

    # Targets.
    w("## Issue 3 targets\n")
    w("| target | leanftpd | threshold | met? |")
    w("|---|---|---|---|")

    def target(name, value, threshold_text, ok):
        status = "n/a" if ok is None else ("**met**" if ok else "**not met**")
        w(f"| {name} | {value} | {threshold_text} | {status} |")

    def best_peer(sc, v, key, better):
        pv = [(get(p, sc, v, key), p) for p in peers if get(p, sc, v, key) is not None]
        if not pv:
            return None
        return min(pv) if better == "low" else max(pv)

    for n in ("5000", "19000"):
        x = get(LEAN, "idle", n, "pss_per_session_kib")
        target(f"idle PSS per session at {int(n):,} sessions", f"{fmt(x)} KiB", "≤ 0.5 KiB",
               None if x is None else x <= 0.5)
    wk = [get(LEAN, "idle", n, "wakeups_per_s") for n in idle_ns]
    wk = [x for x in wk if x is not None]
    target("no wake-ups while idle (all idle runs)", f"{fmt(max(wk)) if wk else '—'} /s", "0 /s",
           None if not wk else max(wk) == 0)
    for c in logins:
        x = get(LEAN, "login", c, "server_cpu_us_per_login")
        b = best_peer("login", c, "server_cpu_us_per_login", "low")
        ok = None if x is None or b is None else (x > 0 and b[0] / x >= 3)
        factor = f"{b[0] / x:.2f}× better than {b[1]}" if x and b else "—"
        fl = num(res.get("floor", {}).get(("login", c), {}).get("server_cpu_us_per_login"))
        floor_note = f"; the bare responder's floor: {fmt(fl)} µs" if fl else ""
        target(f"login ×{c}: logins per server CPU-s ≥ 3× best peer",
               f"{fmt(x)} µs/login ({factor}{floor_note})", f"≤ {fmt(b[0] / 3) if b else '—'} µs", ok)
    x = get(LEAN, "small", "", "server_cpu_s_per_10k")
    b = best_peer("small", "", "server_cpu_s_per_10k", "low")
    ok = None if x is None or b is None else (x > 0 and b[0] / x >= 3)
    target("small: transfers per server CPU-s ≥ 3× best peer",
           f"{fmt(x)} CPU-s/10k ({f'{b[0] / x:.2f}× better than {b[1]}' if x and b else '—'})",
           f"≤ {fmt(b[0] / 3) if b else '—'} CPU-s/10k", ok)
    for st in ("1", "8"):
        x = get(LEAN, "large", "stor" + st, "server_cpu_s_per_gib")
        b = best_peer("large", "stor" + st, "server_cpu_s_per_gib", "low")
        target(f"large STOR ×{st}: CPU-s/GiB ≤ 0.6× best peer", fmt(x),
               f"≤ {fmt(0.6 * b[0]) if b else '—'} ({b[1] if b else '—'})",
               None if x is None or b is None else x <= 0.6 * b[0])
    for st in ("1", "8"):
        x = get(LEAN, "large", "retr" + st, "server_cpu_s_per_gib")
        vs = get("vsftpd", "large", "retr" + st, "server_cpu_s_per_gib")
        target(f"large RETR ×{st}: CPU-s/GiB ≤ vsftpd's", fmt(x), f"≤ {fmt(vs)}",
               None if x is None or vs is None else x <= vs)
    x = get(LEAN, "large", "retr1", "mb_per_s")
    target("large RETR ×1 within 10% of bare sendfile", f"{fmt(x)} MB/s ({fmt(100 * x / sref) if x and sref else '—'}%)",
           f"≥ {fmt(0.9 * sref) if sref else '—'} MB/s", None if x is None or sref is None else x >= 0.9 * sref)
    target("stripped binary ≤ 2 MiB", f"{fmt(binsize / 2**20) if binsize else '—'} MiB", "≤ 2 MiB",
           None if binsize is None else binsize <= 2 * 2**20)
    x = get(LEAN, "stat", "", "rss_kib")
    target("RSS after start ≤ 2 MiB", f"{fmt(x)} KiB", "≤ 2,048 KiB", None if x is None else x <= 2048)
    x = get(LEAN, "mixed", "", "large_loss_pct")
    target("mixed: large RETR loses < 5% to 2,000 idle sessions", f"{fmt(x)} %", "< 5 %", None if x is None else x < 5)
    x = get(LEAN, "mixed", "", "small_p99_ratio")
    target("mixed: small p99 under 8 large ≤ 3× unloaded", f"{fmt(x)}×", "≤ 3×", None if x is None else x <= 3)
    w("")
    w("Notes: server CPU is read from /proc (utime+stime of every process and thread of the server's tree, "
      "reaped children included); wake-ups are voluntary + involuntary context switches. "
      "Peers log in against plain in-memory passwords (pyftpdlib, Twisted, thinFTP) or PAM with a "
      "SHA-512-crypt /etc/shadow entry (vsftpd); leanftpd against a `--users` file with a SHA-512-crypt hash. "
      "vsftpd runs with isolate_network=NO (its per-session network namespace makes logins far slower here). "
      "Large transfers and the sendfile reference: each figure is the median of "
      f"{res.get(LEAN, {}).get(('large', 'retr1'), {}).get('runs', '1')} runs (after one unmeasured warm-up "
      "transfer per stream); large downloads are read with recv(MSG_TRUNC), so the load generator is not the bottleneck.")
    print("\n".join(out))


def roots_section(w, res, servers, variants_of, meta):
    """Large transfers by root filesystem, and leanftpd with --workers 2."""
    def get(server, v, key):
        return num(res.get(server, {}).get(("large", v), {}).get(key))
    roots = meta.get("roots", "?").replace(":", ": ").replace(",", ", ")
    w(f"## Large transfers by root filesystem, and `--workers 2`\n")
    w(f"Roots: {roots}. `NAME@tmpfs`: the same server and scenario with its root on /dev/shm; "
      "`leanftpd-w2`: leanftpd `--workers 2` on both cores (`taskset -c 0,1` when the others are pinned "
      "to CPU 0: compare it with a `--no-pin` run's peers). Ratio: leanftpd ÷ best peer on the same root.\n")
    for root, suffix in (("disk", ""), ("tmpfs", "@tmpfs")):
        lean = LEAN + suffix
        cols = [s + suffix for s in servers] + [LEAN + "-w2" + suffix]
        cols = [c for c in cols if c in res]
        if not cols:
            continue
        peers = [c for c in cols if not c.startswith(LEAN)]
        w(f"| {root} root | " + " | ".join(cols) + " | best peer | ratio |")
        w("|---" * (len(cols) + 3) + "|")
        for op in ("retr", "stor"):
            for st in ("1", "8"):
                for key, what, better in (("mb_per_s", "MB/s", "high"), ("server_cpu_s_per_gib", "server CPU-s per GiB", "low")):
                    vals = [get(c, op + st, key) for c in cols]
                    if all(x is None for x in vals):
                        continue
                    pv = [(get(p, op + st, key), p) for p in peers if get(p, op + st, key) is not None]
                    best = (min(pv) if better == "low" else max(pv)) if pv else None
                    x = get(lean, op + st, key)
                    ratio = f"{x / best[0]:.2f}×" if best and x is not None and best[0] else "—"
                    arrow = "↓" if better == "low" else "↑"
                    bestcell = f"{fmt(best[0])} ({best[1]})" if best else "—"
                    w(f"| {op.upper()} ×{st}: {what} {arrow} | " + " | ".join(fmt(v) for v in vals) + f" | {bestcell} | {ratio} |")
        w("")


def tls_section(w, res, servers, peers, get, tls_logins, tls_large, idle_ns, meta):
    """What each FTPS handshake negotiated, and the targets of issue 11."""
    w("## FTPS: what was negotiated\n")
    w("| server | TLS (version/suite/group) | large-tls data connections resumed / full handshake "
      "(sum of the runs' medians) | downloads without close_notify |")
    w("|---|---|---|---|")
    for s in servers:
        runs = [kv for (sc, _v), kv in res.get(s, {}).items() if sc in ("login-tls", "large-tls")]
        if not runs:
            continue
        kinds = sorted({kv.get("tls", "?") for kv in runs})
        large = [kv for (sc, _v), kv in res.get(s, {}).items() if sc == "large-tls"]
        total = lambda k: fmt(sum(num(kv.get(k)) or 0 for kv in large))
        w(f"| {s} | {', '.join(kinds)} | {total('data_tls_resumed')} / {total('data_tls_full')} | {total('unclean_eof')} |")
    w("")
    w("## Issue 11 targets (FTPS)\n")
    w("| target | leanftpd | threshold | met? |")
    w("|---|---|---|---|")

    def target(name, value, threshold_text, ok):
        status = "n/a" if ok is None else ("**met**" if ok else "**not met**")
        w(f"| {name} | {value} | {threshold_text} | {status} |")

    def best_peer(sc, v, key, better):
        pv = [(get(p, sc, v, key), p) for p in peers if get(p, sc, v, key) is not None]
        if not pv:
            return None
        return min(pv) if better == "low" else max(pv)

    x = get(LEAN, "idle-tls", "5000", "pss_per_session_kib")
    target("FTPS idle: PSS per session at 5,000 sessions", f"{fmt(x)} KiB", "≤ 4 KiB", None if x is None else x <= 4)
    wk = [get(LEAN, "idle-tls", n, "wakeups_per_s") for n in idle_ns]
    wk = [x for x in wk if x is not None]
    target("FTPS idle: no wake-ups while idle (all idle-tls runs)", f"{fmt(max(wk)) if wk else '—'} /s", "0 /s",
           None if not wk else max(wk) == 0)
    for v in tls_logins:
        c, cert = v.split("/")
        x = get(LEAN, "login-tls", v, "server_cpu_us_per_login")
        b = best_peer("login-tls", v, "server_cpu_us_per_login", "low")
        target(f"FTPS login ×{c} ({cert}): server CPU ≤ best peer's, same certificate",
               f"{fmt(x)} µs" + (f" ({x / b[0]:.2f}× {b[1]})" if x and b else ""),
               f"≤ {fmt(b[0]) if b else '—'} µs", None if x is None or b is None else x <= b[0])
    concs = sorted({v.split("/")[0] for v in tls_logins}, key=int)
    for c in concs:
        r, e = get(LEAN, "login-tls", f"{c}/rsa2048", "server_cpu_us_per_login"), get(LEAN, "login-tls", f"{c}/ecdsa-p256", "server_cpu_us_per_login")
        if r and e:
            w(f"| what ECDSA P-256 saves leanftpd per login ×{c} | {fmt(r - e)} µs ({fmt(r)} → {fmt(e)}, {100 * (r - e) / r:.0f}%) | — | — |")
    for v in tls_large:
        label = f"FTPS {v[:4].upper()} ×{v[4:]}"
        x = get(LEAN, "large-tls", v, "server_cpu_s_per_gib")
        b = best_peer("large-tls", v, "server_cpu_s_per_gib", "low")
        target(f"{label}: CPU-s/GiB ≤ half the best peer's", fmt(x), f"≤ {fmt(b[0] / 2) if b else '—'} ({b[1] if b else '—'})",
               None if x is None or b is None else x <= b[0] / 2)
        x = get(LEAN, "large-tls", v, "mb_per_s")
        b = best_peer("large-tls", v, "mb_per_s", "high")
        target(f"{label}: MB/s ahead of every peer", fmt(x), f"> {fmt(b[0]) if b else '—'} ({b[1] if b else '—'})",
               None if x is None or b is None else x > b[0])
    w("")
    rounds = max((int(kv.get("runs", "1")) for s in servers for (sc, _v), kv in res.get(s, {}).items()
                  if sc == "large-tls"), default=1)
    w("FTPS notes: explicit FTPS (AUTH TLS, PBSZ 0, PROT P) with a rustls 0.23 client (ring), TLS 1.3 preferred; "
      "every server has the same certificate (a leaf signed by a CA of its kind) and requires TLS for the login and "
      "the data (leanftpd `--tls-required`; vsftpd `force_local_logins_ssl`, `force_local_data_ssl`, `require_ssl_reuse`; "
      "pyftpdlib `tls_control_required`, `tls_data_required`). A login is connect + AUTH TLS + a full handshake "
      "(no resumption) + USER/PASS + QUIT. A data connection resumes its own control connection's session "
      "(each client has its own session store). The client offers an X25519 key share first (as OpenSSL 3 "
      "clients do); a server that takes only P-256 (vsftpd 3.0.3) asks again (HelloRetryRequest) on a login. TLS downloads are decrypted by the load generator (no MSG_TRUNC), "
      "so its core can limit MB/s: see its CPU %. "
      f"Large transfers: each figure is the median of {rounds} runs, after one unmeasured warm-up transfer per stream.")
    w("")


if __name__ == "__main__":
    main()
