#!/usr/bin/env bash
# Runs every test of spillway, from a fresh machine or a warm one.
#
# Installs what the tests need from the repository's own files (kinesalite
# from tests/peers/package-lock.json, moto and the Python tools from
# tests/peers/requirements.txt, into .peers/), starts the peers on loopback,
# runs the whole workspace's tests, and stops the peers. Arguments are
# passed to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "scripts/test.sh: cargo is not installed" >&2; exit 1; }

# shellcheck source=scripts/peers.sh
source scripts/peers.sh
peers_start --trap

cargo test --workspace --locked --no-fail-fast "$@"
