#!/usr/bin/env bash
# Idempotent set-up of the client tools the integration tests drive
# (tests/clients.rs): curl, lftp, wget, python3, openssl and tnftp, and the
# util-linux wrappers of tests/faults.rs (prlimit, unshare, setpriv),
# systemd-socket-activate and systemd-analyze (Debian's systemd package:
# tests/systemd.rs; they work without systemd as PID 1), and a
# C++ compiler (libfuzzer-sys builds libFuzzer when the fuzz targets are
# type-checked), HAProxy (tests/proxy.rs: the PROXY protocol behind a
# real load balancer) and promtool (Debian's `prometheus`: tests/metrics.rs
# validates the metrics text with `promtool check metrics`), and what the
# upload hooks of tests/hooks.rs run: flock (util-linux), ps (procps),
# sha256sum (coreutils), and mandoc (tests/manpage.rs: `mandoc -Tlint`
# checks man/leanftpd.8).
# On a fresh Debian machine it installs whatever is missing; when all are
# present it does nothing.
set -euo pipefail

# command name -> Debian package
tools=(curl lftp wget python3 openssl tnftp prlimit unshare setpriv g++ haproxy promtool systemd-socket-activate systemd-analyze flock ps sha256sum mandoc)
missing=()
for t in "${tools[@]}"; do
    if ! command -v "$t" >/dev/null 2>&1; then
        missing+=("$t")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: all client tools present (${tools[*]})"
    exit 0
fi

echo "setup: missing: ${missing[*]}"
echo "setup: installing: curl lftp wget python3 openssl tnftp util-linux g++ haproxy systemd procps coreutils mandoc prometheus"

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo)
    else
        echo "setup: not root and no sudo: install these by hand: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update
"${sudo_cmd[@]}" apt-get install -y curl lftp wget python3 openssl tnftp util-linux g++ haproxy systemd procps coreutils mandoc
# promtool only; without recommends, the server's own extras stay out.
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends prometheus

for t in "${tools[@]}"; do
    if ! command -v "$t" >/dev/null 2>&1; then
        echo "setup: $t still missing after apt-get install" >&2
        exit 1
    fi
done
echo "setup: done"
