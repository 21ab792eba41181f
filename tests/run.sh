#!/usr/bin/env bash
# The test command of the README: installs what the tests need (DuckDB's Python package to
# read our Parquet, moto's local S3 server for object-store tests, in a private virtual
# environment) and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CHURN_TEST_VENV:-$HOME/.cache/churn-test-venv}"
if ! "$venv/bin/python" -c 'import duckdb, moto.server' 2>/dev/null; then
  echo "installing DuckDB and moto for the tests into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'duckdb==1.5.6' 'moto[server]==5.1.22'
fi
export CHURN_PYTHON="$venv/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/churn-target}"

cargo test --workspace --all-targets "$@"
