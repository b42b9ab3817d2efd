#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. Extra arguments go to pytest.
# PostgreSQL tests run when TEST_DATABASE_URL is set; Redis tests when TEST_REDIS_URL is set.
set -uo pipefail
cd "$(dirname "$0")/.."
# The browser tests (tests/browser) drive Debian's headless Chromium; Playwright never downloads a browser.
# The report rendering test (tests/integration/test_report_render.py) prints the statistics forms to PDF
# with LibreOffice and reads them with poppler (pdftotext, pdftoppm).
# The backup tests (tests/integration/test_backup.py) run pg_dump and pg_restore against PostgreSQL.
# The deployment tests run the real nginx on deploy/nginx.conf (tests/integration/test_deploy_nginx.py) and
# check docker-compose.yml with docker-compose (tests/unit/test_packaging.py).
# Install what is missing, with fonts for Chinese and emoji in the screenshots, in one apt-get run when we
# are root on a Debian-like machine, while the Python packages install. Without them those tests skip
# locally and fail in CI (CI=true).
browser_packages="chromium fonts-noto-cjk fonts-noto-color-emoji"
report_packages="libreoffice-calc-nogui poppler-utils"
deploy_packages="nginx docker-compose"
apt_pid=""
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
  missing_packages=""
  for package in $browser_packages $report_packages $deploy_packages; do
    dpkg -s "$package" >/dev/null 2>&1 || missing_packages="$missing_packages $package"
  done
  if ! command -v pg_dump >/dev/null 2>&1 || ! command -v pg_restore >/dev/null 2>&1; then
    missing_packages="$missing_packages postgresql-client"
  fi
  if [ ! -x /usr/bin/chromium ] && [[ " $missing_packages " != *" chromium "* ]]; then
    missing_packages="$missing_packages chromium"
  fi
  if [ -n "$missing_packages" ]; then
    echo "test.sh: installing$missing_packages for the browser, report, backup and deployment tests" >&2
    (
      # nginx's package would start a server on port 80: tell invoke-rc.d not to start services
      own_policy=""
      if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
      fi
      if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $missing_packages; } \
           >/tmp/qinglang-test-apt.log 2>&1; then
        echo "test.sh: could not install$missing_packages (see /tmp/qinglang-test-apt.log)" >&2
      fi
      [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
    ) &
    apt_pid=$!
  fi
fi
scripts/setup.sh --test || { [ -n "$apt_pid" ] && wait "$apt_pid"; exit 1; }
[ -n "$apt_pid" ] && wait "$apt_pid"

# On every CPU (pytest-xdist), a test file per worker (the fault tests share one cluster per file);
# QINGLANG_TEST_WORKERS=0 runs in one process, e.g. to use a debugger.
.venv/bin/python -m pytest -p no:cacheprovider -n "${QINGLANG_TEST_WORKERS:-auto}" --dist loadfile "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: no tests were collected: failing" >&2
  exit 1
fi
exit "$status"
