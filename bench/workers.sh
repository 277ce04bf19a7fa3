#!/usr/bin/env bash
# --workers 1 against --workers 2 on this machine, same binary, alternating
# rounds, server NOT pinned (both cores are the point), load generator not
# pinned either: logins x128 (a SHA-512-crypt password each) and 4 KiB RETRs
# by 32 clients. Prints each run and the ratio of the medians (w2 / w1).
#
#   bench/workers.sh [BINARY=target/release/leanftpd] [ROUNDS=3] [SECONDS=8]
#
# LEAN_ARGS="..." adds server flags to both runs, e.g. LEAN_ARGS="--login-cache 0"
# so that every login pays its SHA-512-crypt hash (the part a second worker's
# password helper thread doubles) instead of hitting the login cache.
#
# Ports 2511/2512 on loopback, a temporary root (removed at the end); every
# server started is stopped by its PID.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$REPO/target/release/leanftpd}
ROUNDS=${2:-3}
SECS=${3:-8}
cargo build --release -q -p leanftpd-bench --manifest-path "$REPO/Cargo.toml"
BENCH="$REPO/target/release/leanftpd-bench"
ROOT=$(mktemp -d /tmp/leanftpd-workers.XXXXXX)
OUT="$ROOT.results"
trap 'rm -rf "$ROOT" "$OUT"' EXIT
mkdir -p "$ROOT/data"
head -c 4096 /dev/urandom >"$ROOT/data/small.bin"
printf 'bench:%s:%s:r\n' "$(openssl passwd -6 benchpw)" "$ROOT/data" >"$ROOT/users"
chmod 600 "$ROOT/users"

run() { # WORKERS PORT
    "$BIN" --root "$ROOT/data" --users "$ROOT/users" --listen "127.0.0.1:$2" --workers "$1" \
        --max-clients 20000 --max-per-ip 20000 --log-level error ${LEAN_ARGS:-} &
    local pid=$!
    sleep 0.5
    "$BENCH" login --addr "127.0.0.1:$2" --pid "$pid" --user bench --pass benchpw --concurrency 128 \
        --seconds "$SECS" --sources 127.0.3.1-127.0.3.64 --label "w$1" 2>/dev/null | grep '^RESULT' >>"$OUT" || true
    "$BENCH" small --addr "127.0.0.1:$2" --pid "$pid" --user bench --pass benchpw --clients 32 \
        --seconds "$SECS" --file small.bin --label "w$1" 2>/dev/null | grep '^RESULT' >>"$OUT" || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

: >"$OUT"
for _ in $(seq "$ROUNDS"); do
    run 1 2511
    run 2 2512
done
python3 - "$OUT" <<'PY'
import sys, statistics
rows = [dict(kv.split("=", 1) for kv in l.split()[1:] if "=" in kv) for l in open(sys.argv[1])]
def med(sc, label, key):
    v = [float(r[key]) for r in rows if r.get("scenario") == sc and r.get("label") == label and key in r]
    return statistics.median(v) if v else float("nan")
for sc, keys in (("login", ("logins_per_s", "server_cpu_us_per_login")), ("small", ("transfers_per_s", "server_cpu_s_per_10k"))):
    for k in keys:
        a, b = med(sc, "w1", k), med(sc, "w2", k)
        print(f"{sc:6} {k:28} w1 {a:10.1f}  w2 {b:10.1f}  w2/w1 {b / a:5.2f}x")
PY
