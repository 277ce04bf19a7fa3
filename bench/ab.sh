#!/usr/bin/env bash
# A/B of two leanftpd binaries on this machine, alternating, so that both
# see the same noise: small 4 KiB RETRs by 32 clients, then large RETRs of
# one 256 MiB file, ROUNDS times each; prints each run and the medians.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS=3]
#
# ONLY=small or ONLY=large runs one of the two.
#
# Servers run pinned to CPU 0, the load generator to CPU 1, on loopback
# ports 2501/2502 with a temporary root (removed at the end). Every server
# started is stopped by its PID.
set -euo pipefail
OLD=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
NEW=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
ROUNDS=${3:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p leanftpd-bench --manifest-path "$REPO/Cargo.toml"
BENCH="$REPO/target/release/leanftpd-bench"
ROOT=$(mktemp -d /tmp/leanftpd-ab.XXXXXX)
OUT="$ROOT.results"
trap 'rm -rf "$ROOT" "$OUT"' EXIT
head -c 4096 /dev/urandom >"$ROOT/small.bin"
[ "${ONLY:-large}" = large ] && head -c 268435456 /dev/urandom >"$ROOT/large.bin"

run() { # LABEL BINARY PORT
    taskset -c 0 "$2" --root "$ROOT" --listen "127.0.0.1:$3" --max-clients 20000 --max-per-ip 20000 \
        --log-level warn &
    local pid=$!
    sleep 0.5
    [ "${ONLY:-small}" = small ] && taskset -c 1 "$BENCH" small --addr "127.0.0.1:$3" --pid "$pid" --clients 32 --seconds 6 --label "$1" \
        2>/dev/null | grep '^RESULT' >>"$OUT" || true
    [ "${ONLY:-large}" = large ] && taskset -c 1 "$BENCH" large --addr "127.0.0.1:$3" --pid "$pid" --op retr --streams 1 --size 268435456 \
        --file large.bin --reps 6 --label "$1" 2>/dev/null | grep '^RESULT' >>"$OUT" || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

: >"$OUT"
for _ in $(seq "$ROUNDS"); do
    run old "$OLD" 2501
    run new "$NEW" 2502
done
cat "$OUT"
python3 - "$OUT" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    rows.setdefault((kv["scenario"], kv["label"]), []).append(kv)
def med(sc, label, key):
    vals = [float(r[key]) for r in rows.get((sc, label), []) if key in r]
    return statistics.median(vals) if vals else float("nan")
for sc, keys in (("small", ("transfers_per_s", "p99_ms", "server_cpu_s_per_10k")),
                 ("large", ("mb_per_s", "server_cpu_s_per_gib"))):
    for k in keys:
        o, n = med(sc, "old", k), med(sc, "new", k)
        print(f"{sc} {k}: old {o:.4g}  new {n:.4g}  new/old {n / o:.3f}")
PY
