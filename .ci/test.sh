#!/usr/bin/env bash
# THE test command of the project: installs the client tools the integration
# tests drive, runs every unit and integration test of the workspace, and
# clippy (warnings are errors) when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ./.ci/setup.sh

cargo test --workspace --features leanftpd/fault-injection

if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --all-targets -- -D warnings
else
    echo "note: cargo clippy is not installed; skipping clippy (rustup component add clippy)"
fi
