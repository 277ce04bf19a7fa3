#!/usr/bin/env bash
# bench/compare.sh — leanftpd side by side with thinFTP, pyftpdlib (threaded
# and async), Twisted and vsftpd (and unftp, optionally), on loopback, in one
# run; writes the table to bench/results/latest.md (issue 3). The FTPS
# scenarios (issue 11) run against the servers that have it: leanftpd,
# vsftpd (ssl_enable=YES) and pyftpdlib (TLS_FTPHandler), all with the same
# certificate, each started again in TLS mode after its plain scenarios.
#
#   bench/compare.sh [--quick] [--servers a,b,...] [--scenarios a,b,...] [--with-unftp] [--no-pin] [--keep]
#                    [--roots disk,tmpfs] [--no-workers]
#
#   --quick        a few minutes: fewer idle sessions for the peers, short windows,
#                  256 MiB large files (the full run: 1 GiB files, 1k/5k/19k idle for all)
#   --servers      subset of: leanftpd,thinftp,pyftpdlib-threaded,pyftpdlib-async,twisted,vsftpd,unftp
#   --scenarios    subset of: stat,idle,small,large,list,login,mixed,hostile,idle-tls,login-tls,large-tls
#                  [all]; e.g. `--scenarios hostile --servers leanftpd,vsftpd,pyftpdlib-async` runs only
#                  the flood scenario of issue 9 (~1 min per server; no large file is made), and
#                  `--scenarios idle-tls,login-tls,large-tls --servers leanftpd,vsftpd,pyftpdlib-async
#                  --out bench/results/tls.md` only FTPS (servers without it are skipped)
#   --with-unftp   include unftp (built with `cargo install` if it is not on PATH: takes minutes)
#   --no-pin       do not pin (by default every server runs on CPU 0 with `taskset -c 0`,
#                  as on a single-core device, and the load generator on CPU 1)
#   --keep         keep the temporary directory (data, logs) for inspection
#   --roots LIST   where the large transfers' root lives, subset of disk,tmpfs [disk,tmpfs]:
#                  every scenario runs on the disk root (a directory under /tmp; its filesystem
#                  is in the table's header), and `large` runs again with the root on /dev/shm
#                  (tmpfs) as NAME@tmpfs: STOR's cost depends on the filesystem
#   --no-workers   no `leanftpd-w2` runs (by default, with leanftpd and `large`: leanftpd
#                  --workers 2, large ×8 only, on each root, on both cores: taskset -c 0,1)
#   --lean-args "ARGS"  extra options for leanftpd (e.g. "--passive-ports 10000-19999")
#   --out FILE     where the table goes [bench/results/latest.md]; raw RESULT lines
#                  go to FILE without .md, plus -raw/ (bench/results/raw/ for the default)
#
# It installs what is missing (pip: thinftp pyftpdlib twisted pyopenssl; apt: vsftpd),
# makes a temporary root (4 KiB file, large file, 10,000-entry directory), a
# SHA-512-crypt users file for leanftpd and a local user `ftpbench` (SHA-512
# in /etc/shadow, removed afterwards if this script created it) for vsftpd;
# for FTPS, two certificates made once by `openssl` (RSA-2048 and ECDSA
# P-256, each signed by a CA of its kind that the load generator trusts;
# subjectAltName localhost and 127.0.0.1). Every process it starts is stopped on exit, by PID. Traffic stays on 127.0.0.0/8.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
COMMAND="bench/compare.sh $*"

MODE=full
SERVERS="leanftpd,thinftp,pyftpdlib-threaded,pyftpdlib-async,twisted,vsftpd"
SCENARIOS="stat,idle,small,large,list,login,mixed,hostile,idle-tls,login-tls,large-tls"
WITH_UNFTP=0
PIN=1
KEEP=0
LEAN_ARGS=""
OUT=bench/results/latest.md
ROOTS=disk,tmpfs
WORKERS2=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --servers) SERVERS="$2"; shift ;;
        --servers=*) SERVERS="${1#*=}" ;;
        --with-unftp) WITH_UNFTP=1 ;;
        --no-pin) PIN=0 ;;
        --keep) KEEP=1 ;;
        --lean-args) LEAN_ARGS="$2"; shift ;;
        --lean-args=*) LEAN_ARGS="${1#*=}" ;;
        --out) OUT="$2"; shift ;;
        --out=*) OUT="${1#*=}" ;;
        --scenarios) SCENARIOS="$2"; shift ;;
        --scenarios=*) SCENARIOS="${1#*=}" ;;
        --roots) ROOTS="$2"; shift ;;
        --roots=*) ROOTS="${1#*=}" ;;
        --no-workers) WORKERS2=0 ;;
        -h|--help) sed -n '2,44p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
want() { case ",$SCENARIOS," in *,"$1",*) return 0 ;; esac; return 1; }
for sc in ${SCENARIOS//,/ }; do
    case "$sc" in stat|idle|small|large|list|login|mixed|hostile|idle-tls|login-tls|large-tls) ;;
        *) echo "compare.sh: unknown scenario $sc" >&2; exit 2 ;; esac
done
want_root() { case ",$ROOTS," in *,"$1",*) return 0 ;; esac; return 1; }
for r in ${ROOTS//,/ }; do
    case "$r" in disk|tmpfs) ;; *) echo "compare.sh: unknown root $r" >&2; exit 2 ;; esac
done
want_plain() { local sc; for sc in stat idle small large list login mixed hostile; do want "$sc" && return 0; done; return 1; }
want_tls() { want idle-tls || want login-tls || want large-tls; }
has_tls() { case "$1" in leanftpd|vsftpd|pyftpdlib-async|pyftpdlib-threaded) return 0 ;; esac; return 1; }
if [ "$WITH_UNFTP" = 1 ] || command -v unftp >/dev/null 2>&1; then
    case ",$SERVERS," in *,unftp,*) ;; *) SERVERS="$SERVERS,unftp" ;; esac
fi

if [ "$MODE" = quick ]; then
    IDLE_LEAN="1000 5000 19000"; IDLE_PEER="1000"; WINDOW=5; LOGIN_SECS=3; SMALL_SECS=5
    LARGE_SIZE=$((256 << 20)); RETR1_REPS=16; LARGE_ROUNDS=5; MIXED_SECS=3; MIXED_ROUNDS=1; LIST_REPS=3; LOGIN_TIMEOUT=150
else
    IDLE_LEAN="1000 5000 19000"; IDLE_PEER="1000 5000 19000"; WINDOW=10; LOGIN_SECS=10; SMALL_SECS=15
    LARGE_SIZE=$((1 << 30)); RETR1_REPS=2; LARGE_ROUNDS=3; MIXED_SECS=8; MIXED_ROUNDS=2; LIST_REPS=5; LOGIN_TIMEOUT=600
fi
LOGIN_CONC="1 16 128"
# FTPS (issue 11). idle-tls: leanftpd's target is at 5,000 sessions (the
# full mode adds 19,000, as the plain idle does); the peers get 1,000 in the
# quick mode, 1,000 and 5,000 in the full one (vsftpd: 3 processes and
# ~0.9 MiB a session). login-tls: full handshakes, with each certificate. large-tls:
# RETR and STOR under PROT P, 1 and TLS_STREAMS streams, TLS_LARGE_ROUNDS
# rounds (the table takes medians); at most 2 transfers per control
# connection (a rustls client uses each TLS 1.3 ticket once, and leanftpd
# sends a few on the control connection — 4 since 880b296 — and none on
# data connections).
if [ "$MODE" = quick ]; then
    IDLE_TLS_LEAN="1000 5000"; IDLE_TLS_PEER="1000"; TLS_LARGE_SIZE=$((256 << 20)); TLS_LARGE_ROUNDS=3
else
    IDLE_TLS_LEAN="1000 5000 19000"; IDLE_TLS_PEER="1000 5000"; TLS_LARGE_SIZE=$((1 << 30)); TLS_LARGE_ROUNDS=3
fi
TLS_LOGIN_CONC="1 16"; TLS_STREAMS=4; TLS_CERTS="rsa2048 ecdsa-p256"
# hostile (issue 9): a fixed window per phase, the same in both modes; the
# server's memory may not pass 1 GiB (the run stops there and says so).
HOSTILE_SECS=10; HOSTILE_ENTRIES=20000; HOSTILE_RSS_CAP=1G
SOURCES="127.0.0.1-127.0.0.20"
USER_NAME=ftpbench
USER_PASS="bench-$RANDOM$RANDOM"

log() { printf '[compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ------------------------------------------------------------ cleanup
STARTED=()
CREATED_USER=0
WORK=""
TWORK=""
descendants() { # PID → PID and every descendant, parents first
    local all; all=$(ps -e -o pid=,ppid=)
    local queue=("$1") out=() p
    while [ ${#queue[@]} -gt 0 ]; do
        p=${queue[0]}; queue=("${queue[@]:1}"); out+=("$p")
        # shellcheck disable=SC2207
        queue+=($(awk -v pp="$p" '$2 == pp { print $1 }' <<<"$all"))
    done
    echo "${out[@]}"
}
kill_tree() { # PID: TERM the tree, then KILL what is left after 5 s
    local pids; pids=$(descendants "$1")
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for _ in $(seq 50); do
        local alive=0 p
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill_tree "$p"; done
    if [ "$CREATED_USER" = 1 ]; then userdel "$USER_NAME" 2>/dev/null; fi
    if [ -n "$WORK" ] && [ "$KEEP" = 0 ]; then rm -rf "$WORK"; fi
    if [ -n "$TWORK" ]; then rm -rf "$TWORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ build and install
log "building leanftpd and leanftpd-bench (release)"
for _ in 1 2 3; do
    if cargo build --release -p leanftpd -p leanftpd-bench 2>&1 | tail -2 >&2; then
        [ -x target/release/leanftpd ] && [ -x target/release/leanftpd-bench ] && break
    fi
    log "build failed; retrying in 60 s"; sleep 60
done
# leanftpd is measured as a small device would run it: statically linked
# (glibc's crt-static), so it maps no libc.so and its RSS is its own. The
# README gives the same command.
HOST=$(rustc -vV | sed -n 's/^host: //p')
log "building the static leanftpd for $HOST"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p leanftpd --target "$HOST" 2>&1 | tail -2 >&2
LEAN_BIN=$REPO/target/$HOST/release/leanftpd
[ -x "$LEAN_BIN" ] || { log "static build failed; measuring the dynamic one"; LEAN_BIN=$REPO/target/release/leanftpd; }
BENCH=$REPO/target/release/leanftpd-bench
[ -x "$LEAN_BIN" ] && [ -x "$BENCH" ] || { echo "compare.sh: build failed" >&2; exit 1; }

PY=$(python3 -c 'import sys; print(sys.executable)')
has() { case ",$SERVERS," in *,"$1",*) return 0 ;; esac; return 1; }
need_pip=()
if has thinftp && ! "$PY" -c 'import thinftp' 2>/dev/null; then need_pip+=(thinftp); fi
if { has pyftpdlib-threaded || has pyftpdlib-async; } && ! "$PY" -c 'import pyftpdlib' 2>/dev/null; then need_pip+=(pyftpdlib); fi
if has twisted && ! "$PY" -c 'import twisted.protocols.ftp' 2>/dev/null; then need_pip+=(twisted); fi
if want_tls && { has pyftpdlib-threaded || has pyftpdlib-async; } && ! "$PY" -c 'import OpenSSL' 2>/dev/null; then need_pip+=(pyopenssl); fi
if [ ${#need_pip[@]} -gt 0 ]; then
    log "pip install ${need_pip[*]}"
    "$PY" -m pip install -q "${need_pip[@]}" >&2 || log "pip install failed"
fi
if has vsftpd && ! [ -x /usr/sbin/vsftpd ]; then
    log "apt-get install vsftpd"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq vsftpd; } >&2 || log "apt-get failed"
fi
if has unftp && ! command -v unftp >/dev/null 2>&1; then
    log "cargo install unftp (minutes)"
    cargo install unftp --no-default-features --features auth_jsonfile >&2 || log "cargo install unftp failed"
fi

# ------------------------------------------------------------ data
WORK=$(mktemp -d /tmp/leanftpd-compare.XXXXXX)
chmod 755 "$WORK"
DATA=$WORK/root
RES=$WORK/results
LOGS=$WORK/logs
mkdir -p "$DATA/list10k" "$RES" "$LOGS"
chmod 777 "$DATA"
log "making the data in $DATA"
head -c 4096 /dev/urandom > "$DATA/small.bin"
if want large || want mixed; then head -c "$LARGE_SIZE" /dev/urandom > "$DATA/large.bin"; chmod 644 "$DATA/large.bin"; fi
if want large-tls; then
    if [ -f "$DATA/large.bin" ] && [ "$(stat -c %s "$DATA/large.bin")" = "$TLS_LARGE_SIZE" ]; then ln "$DATA/large.bin" "$DATA/large-tls.bin"
    else head -c "$TLS_LARGE_SIZE" /dev/urandom > "$DATA/large-tls.bin"; fi
    chmod 644 "$DATA/large-tls.bin"
fi
want list && (cd "$DATA/list10k" && seq -f 'f%05g' 10000 | xargs touch)
chmod 644 "$DATA/small.bin"
printf '%s:%s:%s:rw\n' "$USER_NAME" "$(openssl passwd -6 "$USER_PASS")" "$DATA" > "$WORK/users"
chmod 600 "$WORK/users"
# The tmpfs root (large transfers only): the same files under /dev/shm.
TDATA=""
if want_root tmpfs && want large; then
    TWORK=$(mktemp -d /dev/shm/leanftpd-compare.XXXXXX)
    chmod 755 "$TWORK"
    TDATA=$TWORK/root
    mkdir -p "$TDATA"
    chmod 777 "$TDATA"
    cp "$DATA/small.bin" "$DATA/large.bin" "$TDATA/"
    printf '%s:%s:%s:rw\n' "$USER_NAME" "$(openssl passwd -6 "$USER_PASS")" "$TDATA" > "$WORK/users-tmpfs"
    chmod 600 "$WORK/users-tmpfs"
    [ "$(stat -f -c %T "$TDATA")" = tmpfs ] || log "warning: /dev/shm is not tmpfs here"
fi
# The root a server is started on, and leanftpd's users file for it.
SROOT=$DATA
SUSERS=$WORK/users

# FTPS certificates, the same for every server: per kind, a CA and a leaf it
# signs (the leaf alone is served; the load generator trusts both CAs).
TLSDIR=$WORK/tls
make_certs() {
    mkdir -p "$TLSDIR"
    local kind alg
    for kind in $TLS_CERTS; do
        case $kind in
            rsa2048) alg=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048) ;;
            ecdsa-p256) alg=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256) ;;
        esac
        openssl genpkey "${alg[@]}" -out "$TLSDIR/$kind-ca.key" 2>/dev/null &&
        openssl req -x509 -new -key "$TLSDIR/$kind-ca.key" -out "$TLSDIR/$kind-ca.pem" -days 30 \
            -subj "/CN=leanftpd bench CA $kind" -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign &&
        openssl genpkey "${alg[@]}" -out "$TLSDIR/$kind.key" 2>/dev/null &&
        openssl req -new -key "$TLSDIR/$kind.key" -out "$TLSDIR/$kind.csr" -subj "/CN=localhost" &&
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$TLSDIR/leaf.ext" &&
        openssl x509 -req -in "$TLSDIR/$kind.csr" -CA "$TLSDIR/$kind-ca.pem" -CAkey "$TLSDIR/$kind-ca.key" \
            -CAcreateserial -out "$TLSDIR/$kind.pem" -days 30 -extfile "$TLSDIR/leaf.ext" 2>/dev/null ||
            { log "openssl could not make the $kind certificate"; return 1; }
    done
    cat "$TLSDIR"/*-ca.pem >"$TLSDIR/ca.pem"
    chmod 644 "$TLSDIR"/*.pem "$TLSDIR"/*.key
}
if want_tls; then
    log "making the certificates ($TLS_CERTS) in $TLSDIR"
    make_certs || exit 1
fi

if has vsftpd; then
    if ! id "$USER_NAME" >/dev/null 2>&1; then
        useradd --no-create-home --home-dir "$DATA" --shell /bin/bash "$USER_NAME" && CREATED_USER=1
    fi
    echo "$USER_NAME:$USER_PASS" | chpasswd -c SHA512
fi

# ------------------------------------------------------------ servers
if [ "$PIN" = 1 ]; then PS=(taskset -c 0); PC=(taskset -c 1); PINNING="servers_on_CPU_0_(taskset_-c_0),_load_generator_on_CPU_1"
else PS=(); PC=(); PINNING="none"; fi

free_port() {
    "$PY" - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(21000, 29999)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        s.close()
EOF
}
wait_port() { # PORT PID
    for _ in $(seq 200); do
        kill -0 "$2" 2>/dev/null || return 1
        if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1).close()" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

SPID=""
start_server() { # NAME PORT [CERT]: with CERT (rsa2048, ecdsa-p256), explicit FTPS, TLS required
    local name=$1 port=$2 cert=${3:-} slog=$LOGS/$1.server.log
    local lean_tls=() py_tls=()
    if [ -n "$cert" ]; then
        slog=$LOGS/$1.tls-$cert.server.log
        lean_tls=(--tls-cert "$TLSDIR/$cert.pem" --tls-key "$TLSDIR/$cert.key" --tls-required)
        py_tls=(--tls-cert "$TLSDIR/$cert.pem" --tls-key "$TLSDIR/$cert.key")
        has_tls "$name" || { log "$name has no FTPS: skipped"; return 1; }
    fi
    case "$name" in
        leanftpd|leanftpd-w2)
            local lean_ps=("${PS[@]}") workers=()
            if [ "$name" = leanftpd-w2 ]; then
                workers=(--workers 2)
                [ "$PIN" = 1 ] && lean_ps=(taskset -c 0,1)
            fi
            "${lean_ps[@]}" "$LEAN_BIN" "${workers[@]}" --root "$SROOT" --users "$SUSERS" --listen "127.0.0.1:$port" \
                --max-clients 20000 --max-per-ip 20000 --log-level warn "${lean_tls[@]}" $LEAN_ARGS >"$slog" 2>&1 & ;;
        thinftp)
            "${PS[@]}" "$PY" "$REPO/bench/peers/thinftp_peer.py" --port "$port" --user "$USER_NAME" \
                --password "$USER_PASS" --root "$SROOT" >"$slog" 2>&1 & ;;
        pyftpdlib-threaded|pyftpdlib-async)
            "${PS[@]}" "$PY" "$REPO/bench/peers/pyftpd_peer.py" --mode "${name#pyftpdlib-}" --port "$port" \
                --user "$USER_NAME" --password "$USER_PASS" --root "$SROOT" "${py_tls[@]}" >"$slog" 2>&1 & ;;
        twisted)
            "${PS[@]}" "$PY" "$REPO/bench/peers/twisted_peer.py" --port "$port" --user "$USER_NAME" \
                --password "$USER_PASS" --root "$SROOT" >"$slog" 2>&1 & ;;
        vsftpd)
            cat >"$WORK/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root=$SROOT
pam_service_name=vsftpd
seccomp_sandbox=NO
isolate_network=NO
max_clients=0
max_per_ip=0
pasv_enable=YES
pasv_address=127.0.0.1
xferlog_enable=NO
dirmessage_enable=NO
session_support=NO
secure_chroot_dir=/var/run/vsftpd/empty
idle_session_timeout=1800
data_connection_timeout=300
vsftpd_log_file=$LOGS/vsftpd.log
EOF
            # FTPS: Debian's vsftpd 3.0.3 has no ssl_tlsv1_1/_2/_3 options
            # (an unknown option stops it at start-up); with OpenSSL 3 it
            # negotiates TLS 1.2 and 1.3. ssl_ciphers=HIGH instead of its
            # default DES-CBC3-SHA (TLS 1.2 only; rustls has no 3DES);
            # ssl_request_cert=NO: no client certificates here.
            [ -n "$cert" ] && cat >>"$WORK/vsftpd.conf" <<EOF
ssl_enable=YES
rsa_cert_file=$TLSDIR/$cert.pem
rsa_private_key_file=$TLSDIR/$cert.key
require_ssl_reuse=YES
ssl_ciphers=HIGH
ssl_request_cert=NO
force_local_logins_ssl=YES
force_local_data_ssl=YES
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
EOF
            mkdir -p /var/run/vsftpd/empty
            "${PS[@]}" /usr/sbin/vsftpd "$WORK/vsftpd.conf" >"$slog" 2>&1 & ;;
        unftp)
            printf '[{"username": "%s", "password": "%s"}]\n' "$USER_NAME" "$USER_PASS" >"$WORK/unftp.json"
            "${PS[@]}" unftp --bind-address "127.0.0.1:$port" --root-dir "$SROOT" --auth-type json \
                --auth-json-path "$WORK/unftp.json" >"$slog" 2>&1 & ;;
        *) echo "compare.sh: unknown server $name" >&2; return 1 ;;
    esac
    SPID=$!
    STARTED+=("$SPID")
    if ! wait_port "$port" "$SPID"; then
        log "$name did not start (see its log below)"; tail -5 "$slog" >&2
        return 1
    fi
}
stop_server() {
    kill_tree "$SPID"
    local keep=() p
    for p in "${STARTED[@]}"; do [ "$p" != "$SPID" ] && keep+=("$p"); done
    STARTED=("${keep[@]}")
}

bench() { # NAME TIMEOUT SCENARIO ARGS... : run, log, keep the RESULT line
    local name=$1 t=$2; shift 2
    local logf=$LOGS/$name.bench.log
    echo "+ ${PC[*]} $BENCH $*" >>"$logf"
    timeout --kill-after=10 "$t" "${PC[@]}" "$BENCH" "$@" >>"$logf" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        log "  $name: $1 failed (rc $rc): $(tail -1 "$logf")"
    fi
    return 0
}

wait_time_wait() { # let the previous server's TIME_WAIT sockets expire (at most 65 s):
    # a bind() to port 0 (how most servers open a passive listener) scans past them
    local n
    for _ in $(seq 65); do
        n=$(ss -Htan state time-wait 2>/dev/null | wc -l)
        [ "$n" -lt 3000 ] && return 0
        sleep 1
    done
    log "  still $n sockets in TIME_WAIT"
}

run_login_floor() { # a blocking login responder on CPU 0: the kernel's cost of one login at a time
    local port fpid
    port=$(free_port)
    log "  login floor"
    "${PS[@]}" "$BENCH" login-floor --listen "127.0.0.1:$port" >"$LOGS/floor.server.log" 2>&1 &
    fpid=$!
    STARTED+=("$fpid")
    if wait_port "$port" "$fpid"; then
        bench floor $((LOGIN_SECS + 90)) login --addr "127.0.0.1:$port" --user "$USER_NAME" --pass "$USER_PASS" \
            --pid "$fpid" --label floor --sources "$SOURCES" --concurrency 1 --seconds "$LOGIN_SECS"
    fi
    kill_tree "$fpid"
    grep -h '^RESULT' "$LOGS/floor.bench.log" >"$RES/floor.txt" 2>/dev/null
}

run_plain() { # NAME: the plain scenarios
    local name=$1 port pid
    wait_time_wait
    port=$(free_port)
    log "== $name on 127.0.0.1:$port"
    start_server "$name" "$port" || return 0
    pid=$SPID
    sleep 1
    local C=(--addr "127.0.0.1:$port" --user "$USER_NAME" --pass "$USER_PASS" --pid "$pid" --label "$name")
    local S=(--sources "$SOURCES")
    want stat && bench "$name" 60 stat "${C[@]}"
    # Idle first: later scenarios grow the heap, and freed memory that a new
    # session can reuse would hide its real cost.
    local idle_ns=$IDLE_PEER
    [ "$name" = leanftpd ] && idle_ns=$IDLE_LEAN
    want idle || idle_ns=""
    for n in $idle_ns; do
        if [ "$name" = vsftpd ] && [ $((2 * n + 2000)) -gt "$(cat /proc/sys/kernel/pid_max)" ]; then
            log "  vsftpd: $n sessions need $((2 * n)) processes, above kernel.pid_max; skipped"
            continue
        fi
        log "  idle $n"
        bench "$name" $((LOGIN_TIMEOUT + 120)) idle "${C[@]}" "${S[@]}" --sessions "$n" --window "$WINDOW" \
            --ramp 32 --login-timeout "$LOGIN_TIMEOUT"
    done
    want small && log "  small" &&
    bench "$name" $((SMALL_SECS + 120)) small "${C[@]}" "${S[@]}" --clients 32 --seconds "$SMALL_SECS"
    # Large transfers: LARGE_ROUNDS rounds of the four runs (the table takes
    # each figure's median), and for leanftpd the physical reference right
    # before each of its RETR ×1 runs, so both see the machine in the same state.
    local round rounds=$LARGE_ROUNDS
    want large || rounds=0
    for round in $(seq "$rounds"); do
        for op in retr stor; do
            for st in 1 8; do
                local reps=1
                [ "$st" = 1 ] && reps=$RETR1_REPS
                if [ "$name" = leanftpd ] && [ "$op" = retr ] && [ "$st" = 1 ]; then
                    log "  sendfile reference ($round/$LARGE_ROUNDS)"
                    timeout 600 "$BENCH" sendfile-ref --size "$LARGE_SIZE" --reps 17 --file "$DATA/large.bin" "${SREF_PIN[@]}" \
                        >>"$LOGS/sendfile.bench.log" 2>&1 || log "sendfile-ref failed: $(tail -1 "$LOGS/sendfile.bench.log")"
                fi
                log "  large $op x$st ($round/$LARGE_ROUNDS)"
                bench "$name" 900 large "${C[@]}" --op "$op" --streams "$st" --size "$LARGE_SIZE" --reps "$reps"
            done
        done
    done
    want list && log "  list" &&
    bench "$name" 600 list "${C[@]}" --entries 10000 --path list10k --reps "$LIST_REPS"
    local concs=$LOGIN_CONC
    want login || concs=""
    for c in $concs; do
        log "  login x$c"
        bench "$name" $((LOGIN_SECS + 90)) login "${C[@]}" "${S[@]}" --concurrency "$c" --seconds "$LOGIN_SECS"
    done
    # The physical reference for login ×1, measured next to leanftpd's.
    [ "$name" = leanftpd ] && want login && run_login_floor
    want mixed && log "  mixed" &&
    bench "$name" $((MIXED_SECS * 12 + 2 * LOGIN_TIMEOUT)) mixed "${C[@]}" "${S[@]}" --idle 2000 --seconds "$MIXED_SECS" --rounds "$MIXED_ROUNDS"
    # Last: the floods may leave a server that has no bound in a bad state.
    want hostile && log "  hostile" &&
    bench "$name" $((3 * HOSTILE_SECS + 150)) hostile "${C[@]}" "${S[@]}" --clients 32 --seconds "$HOSTILE_SECS" \
        --root "$DATA" --stat-path hostile-dir --stat-dir-entries "$HOSTILE_ENTRIES" --rss-cap "$HOSTILE_RSS_CAP"
    stop_server
}

TC=()
tls_start() { # NAME CERT: start NAME in TLS mode with CERT; sets SPID and TC (the bench's options)
    local name=$1 cert=$2 port
    wait_time_wait
    port=$(free_port)
    log "== $name, FTPS with $cert, on 127.0.0.1:$port"
    start_server "$name" "$port" "$cert" || return 1
    sleep 1
    TC=(--addr "127.0.0.1:$port" --user "$USER_NAME" --pass "$USER_PASS" --pid "$SPID" --label "$name"
        --ca "$TLSDIR/ca.pem" --tls-name 127.0.0.1 --cert-label "$cert")
}

run_tls() { # NAME: the FTPS scenarios; the server started again for each idle size and each certificate
    local name=$1 cert n round op st reps c
    local S=(--sources "$SOURCES")
    # Idle: each size on a freshly started server, so that memory freed by
    # a smaller run and reused by a larger one does not hide its cost.
    local idle_ns=$IDLE_TLS_PEER
    [ "$name" = leanftpd ] && idle_ns=$IDLE_TLS_LEAN
    want idle-tls || idle_ns=""
    for n in $idle_ns; do
        if [ "$name" = vsftpd ] && [ $((3 * n + 2000)) -gt "$(cat /proc/sys/kernel/pid_max)" ]; then
            log "  vsftpd: $n TLS sessions need $((3 * n)) processes, above kernel.pid_max; skipped"
            continue
        fi
        tls_start "$name" rsa2048 || continue
        log "  idle-tls $n"
        bench "$name" $((LOGIN_TIMEOUT + 120)) idle-tls "${TC[@]}" "${S[@]}" --sessions "$n" --window "$WINDOW" \
            --ramp 32 --login-timeout "$LOGIN_TIMEOUT"
        stop_server
    done
    for cert in $TLS_CERTS; do
        # The RSA certificate for the transfers; every certificate for the
        # logins (the certificate changes only the handshake).
        if [ "$cert" = rsa2048 ]; then want large-tls || want login-tls || continue
        else want login-tls || continue; fi
        tls_start "$name" "$cert" || continue
        local rounds=$TLS_LARGE_ROUNDS
        { [ "$cert" = rsa2048 ] && want large-tls; } || rounds=0
        for round in $(seq "$rounds"); do
            for op in retr stor; do
                for st in 1 "$TLS_STREAMS"; do
                    reps=1
                    [ "$st" = 1 ] && reps=2
                    log "  large-tls $op x$st ($round/$TLS_LARGE_ROUNDS)"
                    bench "$name" 900 large-tls "${TC[@]}" --op "$op" --streams "$st" --size "$TLS_LARGE_SIZE" \
                        --reps "$reps" --file large-tls.bin
                done
            done
        done
        local concs=$TLS_LOGIN_CONC
        want login-tls || concs=""
        for c in $concs; do
            log "  login-tls x$c ($cert)"
            bench "$name" $((LOGIN_SECS + 90)) login-tls "${TC[@]}" "${S[@]}" --concurrency "$c" --seconds "$LOGIN_SECS"
        done
        stop_server
    done
}

run_large() { # NAME LABEL "STREAMS": the large scenario alone on the current SROOT, as LABEL
    local name=$1 label=$2 streams=$3 port pid round op st reps
    wait_time_wait
    port=$(free_port)
    log "== $label (large, root $SROOT: $(stat -f -c %T "$SROOT")) on 127.0.0.1:$port"
    start_server "$name" "$port" || return 0
    pid=$SPID
    sleep 1
    local C=(--addr "127.0.0.1:$port" --user "$USER_NAME" --pass "$USER_PASS" --pid "$pid" --label "$label")
    for round in $(seq "$LARGE_ROUNDS"); do
        for op in retr stor; do
            for st in $streams; do
                reps=1
                [ "$st" = 1 ] && reps=$RETR1_REPS
                log "  large $op x$st ($round/$LARGE_ROUNDS)"
                bench "$label" 900 large "${C[@]}" --op "$op" --streams "$st" --size "$LARGE_SIZE" --reps "$reps"
            done
        done
    done
    stop_server
    grep -hs '^RESULT' "$LOGS/$label.bench.log" >"$RES/$label.txt"
    [ -s "$RES/$label.txt" ] || rm -f "$RES/$label.txt"
}

run_server() { # NAME
    local name=$1
    want_plain && run_plain "$name"
    if want_tls; then
        if has_tls "$name"; then run_tls "$name"; else log "$name has no FTPS: its TLS scenarios are skipped"; fi
    fi
    grep -hs '^RESULT' "$LOGS/$name.bench.log" >"$RES/$name.txt"
    [ -s "$RES/$name.txt" ] || rm -f "$RES/$name.txt"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')
SREF_PIN=()
[ "$PIN" = 1 ] && SREF_PIN=(--sender-cpu 0 --reader-cpu 1)
IFS=, read -r -a LIST <<<"$SERVERS"
for s in "${LIST[@]}"; do
    want_root disk && run_server "$s"
done
# leanftpd with two workers (both cores), and every server again on tmpfs.
W2=0
[ "$WORKERS2" = 1 ] && has leanftpd && want large && W2=1
if want large; then
    if want_root disk && [ "$W2" = 1 ]; then run_large leanftpd-w2 leanftpd-w2 8; fi
    if [ -n "$TDATA" ]; then
        SROOT=$TDATA; SUSERS=$WORK/users-tmpfs
        for s in "${LIST[@]}"; do run_large "$s" "$s@tmpfs" "1 8"; done
        [ "$W2" = 1 ] && run_large leanftpd-w2 leanftpd-w2@tmpfs 8
        SROOT=$DATA; SUSERS=$WORK/users
    fi
fi
if want large && ! grep -qs '^RESULT' "$LOGS/sendfile.bench.log"; then
    log "sendfile reference"
    timeout 600 "$BENCH" sendfile-ref --size "$LARGE_SIZE" --reps 17 --file "$DATA/large.bin" "${SREF_PIN[@]}" \
        >>"$LOGS/sendfile.bench.log" 2>&1 || log "sendfile-ref failed: $(tail -1 "$LOGS/sendfile.bench.log")"
fi
grep -hs '^RESULT' "$LOGS/sendfile.bench.log" >"$RES/sendfile.txt"

# ------------------------------------------------------------ report
versions="leanftpd_$("$LEAN_BIN" --version | awk '{print $2}')"
versions+=",_$("$PY" - 2>/dev/null <<'EOF'
import importlib.metadata as m
out = []
for p in ("thinftp", "pyftpdlib", "twisted"):
    try:
        out.append(f"{p}_{m.version(p)}")
    except Exception:
        pass
print(",_".join(out))
EOF
)"
[ -x /usr/sbin/vsftpd ] && versions+=",_$(/usr/sbin/vsftpd -v 0>&1 2>/dev/null | awk '{print "vsftpd_" $3}')"
versions+=",_python_$("$PY" -c 'import platform; print(platform.python_version())')"
if want_tls; then # the TLS libraries: vsftpd's (the system's OpenSSL), pyOpenSSL's, and rustls (leanftpd, the load generator)
    versions+=",_system_$(openssl version | awk '{print $1 "_" $2}')"
    versions+=",_$("$PY" -c 'import OpenSSL; from OpenSSL import SSL; print("pyopenssl_" + OpenSSL.__version__ + "_with_" + SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode().split()[1])' 2>/dev/null)"
    versions+=",_rustls_$(awk '/^name = "rustls"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
fi
{
    echo "META date=$(date -u +%Y-%m-%dT%H:%MZ) cores=$(nproc) kernel=$(uname -r) mode=$MODE"
    echo "META cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo | tr ' ' '_')"
    echo "META mem=$(awk '/MemTotal/ {printf "%.0f_GiB_RAM", $2/1048576}' /proc/meminfo)"
    echo "META command=$(tr ' ' '~' <<<"$COMMAND") pinning=$PINNING versions=$versions"
    echo "META loadavg=start_${LOAD_START}_end_$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"
    echo "META scenarios=$SCENARIOS"
    echo "META lean_args=$(tr ' ' '~' <<<"${LEAN_ARGS:-none}")"
    echo "META roots=disk:$(stat -f -c %T "$DATA")${TDATA:+,tmpfs:$(stat -f -c %T "$TDATA")}"
    strip -o "$WORK/leanftpd.stripped" "$LEAN_BIN" 2>/dev/null || cp "$LEAN_BIN" "$WORK/leanftpd.stripped"
    echo "META binary_bytes=$(stat -c %s "$WORK/leanftpd.stripped")"
} >"$RES/meta.txt"
case "$OUT" in /*) ;; *) OUT=$REPO/$OUT ;; esac
RAW=${OUT%.md}-raw
[ "$OUT" = "$REPO/bench/results/latest.md" ] && RAW=$REPO/bench/results/raw
mkdir -p "$RAW" "$(dirname "$OUT")"
rm -f "$RAW"/*.txt
cp "$RES"/*.txt "$RAW/"
"$PY" "$REPO/bench/report.py" "$RES" | tee "$OUT"
log "table written to $OUT (raw RESULT lines in $RAW/)"
[ "$KEEP" = 1 ] && log "kept $WORK"
exit 0
