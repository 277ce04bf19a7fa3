#!/usr/bin/env bash
# THE test command of the project: installs the client tools the integration
# tests drive, runs every unit and integration test of the workspace,
# type-checks the fuzz targets, and runs clippy (warnings are errors) when it
# is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ./.ci/setup.sh

cargo test --workspace --features leanftpd/fault-injection

# The plain server (no TLS, the small build) must keep compiling.
cargo check --no-default-features

# The fuzz targets are not workspace members (cargo fuzz builds them with
# nightly flags); type-check them so that they cannot drift from the code.
cargo check --manifest-path fuzz/Cargo.toml --bins

if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --all-targets -- -D warnings
else
    echo "note: cargo clippy is not installed; skipping clippy (rustup component add clippy)"
fi
