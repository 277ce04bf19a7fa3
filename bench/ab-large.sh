#!/usr/bin/env bash
# A/B of two leanftpd binaries on large transfers, alternating so that both
# see the same noise: ROUNDS rounds of (old, new), each one server start and
# one `leanftpd-bench large` run; prints each run and the medians (report
# ratios new/old, not absolute figures: the machine is shared).
#
#   bench/ab-large.sh OLD NEW [ROUNDS=3] [OP=stor] [STREAMS=8] [DIR=/dev/shm] [SIZE_MIB=256]
#
# DIR is where the temporary root goes: /dev/shm (tmpfs) or a directory on
# a disk filesystem (e.g. /var/tmp), since the cheaper STOR path depends on
# it (NEW_DIR=... gives the new binary a root of its own elsewhere, to
# compare filesystems with one binary). OLD and NEW may be wrapper scripts that `exec` a binary with an
# environment variable set (the PID measured stays the server's). Extra
# leanftpd options: LEAN_ARGS="--workers 2". PIN=0 runs unpinned (default:
# server on CPU 0, load generator on CPU 1). Every server started is stopped
# by its PID.
set -euo pipefail
OLD=${1:?usage: bench/ab-large.sh OLD NEW [ROUNDS] [OP] [STREAMS] [DIR] [SIZE_MIB]}
NEW=${2:?usage: bench/ab-large.sh OLD NEW [ROUNDS] [OP] [STREAMS] [DIR] [SIZE_MIB]}
ROUNDS=${3:-3}
OP=${4:-stor}
STREAMS=${5:-8}
DIR=${6:-/dev/shm}
SIZE=$(( ${7:-256} << 20 ))
REPO=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p leanftpd-bench --manifest-path "$REPO/Cargo.toml"
BENCH="$REPO/target/release/leanftpd-bench"
ROOT=$(mktemp -d "$DIR/leanftpd-ab.XXXXXX")
ROOT_NEW=$ROOT
[ -n "${NEW_DIR:-}" ] && ROOT_NEW=$(mktemp -d "$NEW_DIR/leanftpd-ab.XXXXXX")
OUT=$(mktemp /tmp/leanftpd-ab-large.XXXXXX)
trap 'rm -rf "$ROOT" "$ROOT_NEW" "$OUT"' EXIT
chmod 777 "$ROOT" "$ROOT_NEW"
if [ "$OP" = retr ]; then
    head -c "$SIZE" /dev/urandom >"$ROOT/large.bin"
    [ "$ROOT_NEW" = "$ROOT" ] || cp "$ROOT/large.bin" "$ROOT_NEW/large.bin"
fi
PS=(taskset -c 0); PC=(taskset -c 1)
[ "${PIN:-1}" = 0 ] && { PS=(); PC=(); }
REPS=1; [ "$STREAMS" = 1 ] && REPS=4

run() { # LABEL BINARY PORT ROOT
    # shellcheck disable=SC2086
    "${PS[@]}" "$2" --root "$4" --listen "127.0.0.1:$3" --max-clients 20000 --max-per-ip 20000 \
        --log-level warn --anonymous-write ${LEAN_ARGS:-} &
    local pid=$!
    sleep 0.5
    "${PC[@]}" "$BENCH" large --addr "127.0.0.1:$3" --pid "$pid" --op "$OP" --streams "$STREAMS" --size "$SIZE" \
        --file large.bin --reps "$REPS" --label "$1" 2>/dev/null | grep '^RESULT' >>"$OUT" || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

echo "ab-large: op=$OP streams=$STREAMS dir=$DIR ($(stat -f -c %T "$ROOT")) new_dir=${NEW_DIR:-same} ($(stat -f -c %T "$ROOT_NEW")) size=$SIZE rounds=$ROUNDS lean_args=${LEAN_ARGS:-none}"
for _ in $(seq "$ROUNDS"); do
    run old "$OLD" 2503 "$ROOT"
    run new "$NEW" 2504 "$ROOT_NEW"
done
cat "$OUT"
python3 - "$OUT" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    rows.setdefault(kv["label"], []).append(kv)
def med(label, key):
    vals = [float(r[key]) for r in rows.get(label, []) if key in r]
    return statistics.median(vals) if vals else float("nan")
for k in ("mb_per_s", "server_cpu_s_per_gib"):
    o, n = med("old", k), med("new", k)
    print(f"{k}: old {o:.4g}  new {n:.4g}  new/old {n / o:.3f}")
PY
