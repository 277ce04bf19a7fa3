#!/usr/bin/env bash
# Build the cargo-fuzz targets and run each for a while; print, per target,
# the exec count, the coverage and the result.
#
#   fuzz/run.sh                        # every target, 180 s each, one at a time
#   SECONDS_PER_TARGET=60 fuzz/run.sh session line_framer
#   JOBS=2 fuzz/run.sh                 # two targets at once (one per core)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the
# nightly flags cargo-fuzz passes are allowed with RUSTC_BOOTSTRAP=1, which
# this script sets. Targets are built in release mode with debug assertions,
# overflow checks and AddressSanitizer (cargo-fuzz's defaults).
#
# The committed seeds are in fuzz/corpus/seed/<target>/ (made by
# make_seeds.py) and are only read; session.dict (FTP verbs, the names in
# the session target's tree) is the dictionary of the session and parser
# targets; new inputs go to the working corpus
# fuzz/corpus/<target>/ (not committed), so a second run starts where the
# first stopped. A crash is written to fuzz/artifacts/<target>/ and the
# run's log is in fuzz/target/logs/<target>.log.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "$0")" && pwd)
cd "$FUZZ_DIR"

SECS=${SECONDS_PER_TARGET:-180}
JOBS=${JOBS:-1}
ALL=(line_framer command_parser path_normaliser session tls_session proxy_header)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

export RUSTC_BOOTSTRAP=1
# The session target makes its file tree under $TMPDIR (one per process);
# a tmpfs makes its rebuild between inputs cheap.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm/leanftpd-fuzz-run.$$
else
    export TMPDIR="$FUZZ_DIR/target/tmp"
fi
mkdir -p "$TMPDIR" target/logs

echo "building: ${TARGETS[*]}"
for t in "${TARGETS[@]}"; do
    cargo fuzz build "$t" >target/logs/build-"$t".log 2>&1 || { cat target/logs/build-"$t".log; exit 1; }
done

run_one() {
    local t=$1 log="target/logs/$1.log" start end rc
    mkdir -p "corpus/$t" "artifacts/$t"
    start=$(date +%s)
    set +e
    local dict=()
    case $t in session | command_parser) dict=(-dict=session.dict) ;; esac
    cargo fuzz run "$t" "corpus/$t" "corpus/seed/$t" -- \
        -max_total_time="$SECS" -timeout=20 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
    rc=$?
    set -e
    end=$(date +%s)
    echo "$rc $((end - start))" >"target/logs/$t.rc"
}

pids=()
for t in "${TARGETS[@]}"; do
    echo "running $t for ${SECS}s"
    run_one "$t" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then
        wait "${pids[0]}"
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p"; done
rm -rf "$TMPDIR"

status=0
printf '\n| target | execs | exec/s | seconds | cov | ft | corpus | result |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n'
for t in "${TARGETS[@]}"; do
    log="target/logs/$t.log"
    read -r rc took <"target/logs/$t.rc"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    if [ "$rc" = 0 ]; then
        result="no crash"
    else
        status=1
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        why=$(grep -m1 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" || echo "exit $rc")
        result="CRASH ($why) -> ${art:-see $log}"
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$t" "${execs:-?}" "${rate:-?}" "$took" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit $status
