#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. Extra arguments go to pytest.
# PostgreSQL tests run when TEST_DATABASE_URL is set; Redis tests when TEST_REDIS_URL is set.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test || exit 1

# The browser tests (tests/browser) drive Debian's headless Chromium; Playwright never downloads a browser.
# Install it, with fonts for Chinese and emoji in the screenshots, when we are root on a Debian-like machine.
# Without it the browser tests skip locally and fail in CI (CI=true).
browser_packages="chromium fonts-noto-cjk fonts-noto-color-emoji"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 \
   && { [ ! -x /usr/bin/chromium ] || ! dpkg -s $browser_packages >/dev/null 2>&1; }; then
  echo "test.sh: installing $browser_packages for the browser tests" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $browser_packages; } \
       >/tmp/qinglang-test-apt.log 2>&1; then
    echo "test.sh: could not install $browser_packages (see /tmp/qinglang-test-apt.log)" >&2
  fi
fi

# On every CPU (pytest-xdist); QINGLANG_TEST_WORKERS=0 runs in one process, e.g. to use a debugger.
.venv/bin/python -m pytest -p no:cacheprovider -n "${QINGLANG_TEST_WORKERS:-auto}" "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: no tests were collected: failing" >&2
  exit 1
fi
exit "$status"
