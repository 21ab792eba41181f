#!/usr/bin/env bash
# The test command of the README: installs what the tests need (DuckDB's Python package to
# read our Parquet, moto's local S3 server for object-store tests, lifetimes to fit the same
# buy-till-you-die models beside ours, in a private virtual environment; headless Chromium and
# a CJK font for the report, from Debian's packages) and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CHURN_TEST_VENV:-$HOME/.cache/churn-test-venv}"
if ! "$venv/bin/python" -c 'import duckdb, moto.server, lifetimes' 2>/dev/null; then
  echo "installing DuckDB, moto and lifetimes for the tests into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'duckdb==1.5.6' 'moto[server]==5.1.22' \
    'lifetimes==0.11.3' 'numpy==2.4.6' 'pandas==3.1.1' 'scipy==1.17.1' 'autograd==1.9.1' 'dill==0.4.1'
fi
export CHURN_PYTHON="$venv/bin/python"

# The report tests open the HTML report in real headless Chromium (through ChromeDriver) and
# need a CJK font for the Chinese report: Debian's packages.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
  || ! { command -v fc-list >/dev/null && fc-list :lang=zh | grep -q .; }; then
  echo "installing Chromium, ChromeDriver and a CJK font (Debian packages) for the report tests" >&2
  if [ "$(id -u)" = 0 ]; then
    apt=(apt-get)
  elif command -v sudo >/dev/null; then
    apt=(sudo apt-get)
  else
    echo "tests/run.sh: install Debian's chromium, chromium-driver and fonts-wqy-zenhei (needs root)" >&2
    exit 1
  fi
  "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-wqy-zenhei fontconfig >/dev/null
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/churn-target}"

cargo test --workspace --all-targets "$@"
