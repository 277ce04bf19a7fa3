#!/usr/bin/env bash
# Reproduces bench/results/tls-provider.md: ring vs aws-lc-rs as rustls 0.23
# crypto provider for leanftpd's FTPS. Run from anywhere:
#   bench/tls-provider/run.sh            # full run: 2 GiB per figure, min of 5 runs (~25 min on 2 cores)
#   GIB=0.25 RUNS=1 bench/tls-provider/run.sh   # quick look
# Needs: cargo, a C compiler (both ring and aws-lc-sys compile C/asm),
# openssl (certificates). aws-lc-sys 0.47 on x86_64-linux-gnu built here
# with gcc alone (its cc builder; no cmake, clang or nasm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
raw="$root/bench/results/tls-provider-raw"
GIB=${GIB:-2}
RUNS=${RUNS:-5}
mkdir -p "$raw"
cd "$here"

# 1. certificates: self-signed end-entity certs for DNS:localhost
certs="$here/target/certs"
mkdir -p "$certs"
if [ ! -s "$certs/ecdsa.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/rsa.key" -out "$certs/rsa.crt" \
    -days 3650 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -addext basicConstraints=critical,CA:FALSE 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$certs/ecdsa.key" -out "$certs/ecdsa.crt" -days 3650 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE 2>/dev/null
fi

# 2. builds: cold (fresh target dir, dependencies included), timed
: > "$raw/build.txt"
for p in plain ring aws-lc-rs; do
  feat=(); [ "$p" != plain ] && feat=(--features "$p")
  rm -rf "target/$p"
  start=$(date +%s.%N)
  CARGO_TARGET_DIR="target/$p" cargo build -q --release "${feat[@]}" --bin size-probe
  end=$(date +%s.%N)
  size=$(stat -c %s "target/$p/release/size-probe")
  echo "BUILD $p cold_build_s $(echo "$end - $start" | bc) size_probe_bytes $size" >> "$raw/build.txt"
  if [ "$p" != plain ]; then
    n=$(cargo tree -q "${feat[@]}" -e normal --prefix none | sed 's/ (\*)$//' | sort -u | grep -vc '^tls-provider-bench ')
    nb=$(cargo tree -q "${feat[@]}" -e normal,build --prefix none | sed 's/ (\*)$//' | sort -u | grep -vc '^tls-provider-bench ')
    echo "TREE $p normal_deps $n normal_and_build_deps $nb" >> "$raw/build.txt"
    cargo tree -q "${feat[@]}" -e normal,build > "$raw/tree-$p.txt"
    CARGO_TARGET_DIR="target/$p" cargo build -q --release "${feat[@]}" --bin tlsbench
  fi
done
cat "$raw/build.txt"

# 3. smoke test of the size probe against openssl s_client
for p in ring aws-lc-rs; do
  "target/$p/release/size-probe" "$certs/ecdsa.crt" "$certs/ecdsa.key" 47711 &
  pid=$!
  sleep 0.5
  got=$(timeout 10 openssl s_client -connect 127.0.0.1:47711 -servername localhost -quiet </dev/null 2>/dev/null || true)
  wait "$pid" || true
  [ "$got" = hello ] || { echo "size-probe ($p) did not serve hello over TLS: '$got'" >&2; exit 1; }
done

# 4. measurements (one process per provider, one after the other)
for p in ring aws-lc-rs; do
  echo "== $p" >&2
  "target/$p/release/tlsbench" "$certs" all --gib "$GIB" --runs "$RUNS" | tee "$raw/$p.txt"
done
{ lscpu | head -20; echo; uname -srm; rustc --version; cargo --version; gcc --version | head -1; } > "$raw/machine.txt"
echo "GIB=$GIB RUNS=$RUNS" > "$raw/params.txt"

# 5. the report (keeps the hand-written part below its marker)
python3 "$here/render.py" "$raw" "$root/bench/results/tls-provider.md"
echo "wrote bench/results/tls-provider.md" >&2
