#!/usr/bin/env bash
# Bounded soak (issue 5): a few minutes of mixed load against a release
# leanftpd on loopback — logins, listings, uploads, downloads, resumes,
# aborts, vanishing clients, failed logins — then a check that open
# descriptors and RSS returned to their baseline, that no temporary upload
# file is left, and that every transferred file's sha256 matched.
#
# Usage: bench/soak.sh [SECONDS] [WORKERS] [SLOWLORIS]
#        (default 180 s, 16 workers, 10,000 slowloris connections that send a
#        byte a minute from 20 addresses while the honest workers run)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL="${1:-180}"
WORKERS="${2:-16}"
SLOWLORIS="${3:-10000}"

cargo build --release --quiet
root="$(mktemp -d /tmp/leanftpd-soak.XXXXXX)"
log="$root.log"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

./target/release/leanftpd --root "$root" --listen "127.0.0.1:$port" --anonymous-write \
    --login-fail-delay 0.2 --log-level warn >"$log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT

for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.05
done

echo "soak: leanftpd pid $pid on 127.0.0.1:$port, root $root, $SECONDS_TOTAL s, $WORKERS workers"
echo "reproduce: bench/soak.sh $SECONDS_TOTAL $WORKERS $SLOWLORIS"
status=0
python3 bench/soak.py --port "$port" --pid "$pid" --root "$root" --seconds "$SECONDS_TOTAL" --workers "$WORKERS" --slowloris "$SLOWLORIS" || status=$?
if grep -qE "BUG|panicked" "$log"; then
    echo "soak: the server log holds a bug report:"
    grep -E "BUG|panicked" "$log" | head
    status=1
fi
exit $status
