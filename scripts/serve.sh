#!/usr/bin/env bash
# Set up (first run only) and start Qinglang on the embedded defaults: SQLite and files under ./data.
# Settings come from QINGLANG_* variables or .env (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/qinglang serve "$@"
