#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. Extra arguments go to pytest.
# PostgreSQL tests run when TEST_DATABASE_URL is set; Redis tests when TEST_REDIS_URL is set.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test || exit 1
.venv/bin/python -m pytest -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: no tests were collected: failing" >&2
  exit 1
fi
exit "$status"
