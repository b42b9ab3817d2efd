#!/usr/bin/env bash
# The Rasa 3.6 NLU server beside Qinglang, in its own Python 3.10 virtualenv (nlu/rasa/.venv),
# never in the app's .venv.
#
#   scripts/rasa.sh setup              create nlu/rasa/.venv and install Rasa (once)
#   scripts/rasa.sh train              train the NLU model unless one for the current data exists
#   scripts/rasa.sh serve [--port N]   serve the current model on 127.0.0.1:N (default $PORT or 5005)
#   scripts/rasa.sh all [--port N]     setup, train, serve
#
# The model is named after a hash of config.yml, data/** and userdict/** (and the Rasa requirement),
# so `train` is a no-op when nothing changed and `serve` refuses a model that is out of date.
# Serving needs no network; telemetry is off.
set -euo pipefail

RASA_REQUIREMENT='rasa[jieba]==3.6.21'

cd "$(dirname "$0")/../nlu/rasa"
RASA_DIR=$(pwd)
# The venv (2.7 GB) and trained models live outside the checkout, so every clone on a machine
# (a developer's, CI's) shares one install and reuses a model trained from the same data.
RASA_HOME="${QINGLANG_RASA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/qinglang/rasa}"
VENV="$RASA_HOME/venv"
MODELS="$RASA_HOME/models"
STAMP="$VENV/.rasa-requirement"

export RASA_TELEMETRY_ENABLED=false
# No TensorFlow/absl chatter about CPU features and no oneDNN notice on every start.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Rasa's training cache: kept beside the project (ignored by git), not in the caller's directory, and
# off by default (size 0): `train` already skips unchanged data, and the cache grows by ~150 MB a run.
export RASA_CACHE_DIRECTORY="${RASA_CACHE_DIRECTORY:-$RASA_DIR/.rasa/cache}"
export RASA_MAX_CACHE_SIZE="${RASA_MAX_CACHE_SIZE:-0}"
# Matplotlib (imported by Rasa) wants a writable config directory.
export MPLCONFIGDIR="${MPLCONFIGDIR:-$RASA_DIR/.rasa/matplotlib}"
# jieba writes its dictionary cache to the temporary directory: make sure that one is writable.
if [ -z "${TMPDIR:-}" ] || [ ! -w "${TMPDIR}" ]; then
  if [ -w /tmp ]; then
    export TMPDIR=/tmp
  else
    mkdir -p "$RASA_DIR/.rasa/tmp"
    export TMPDIR="$RASA_DIR/.rasa/tmp"
  fi
fi

die() {
  echo "rasa.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: scripts/rasa.sh setup|train|serve [--port N]|all [--port N]" >&2
  exit 2
}

# The first Python 3.10 found: $RASA_PYTHON, python3.10 on PATH, or pyenv's 3.10.x.
find_python() {
  local candidate
  local candidates=()
  [ -n "${RASA_PYTHON:-}" ] && candidates+=("$RASA_PYTHON")
  candidates+=(python3.10)
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      [ -x "$candidate" ] && candidates+=("$candidate")
    done
  fi
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

setup() {
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RASA_REQUIREMENT" ] && [ -x "$VENV/bin/rasa" ] \
    && "$VENV/bin/python" -c 'import rasa' >/dev/null 2>&1; then
    echo "rasa.sh: $RASA_REQUIREMENT already installed in $VENV"
    return 0
  fi
  local python
  python=$(find_python) || die "Python 3.10 not found (Rasa 3.6 needs 3.8-3.10): install it with 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv', or set RASA_PYTHON=/path/to/python3.10"
  if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
    rm -rf "$VENV"
    echo "rasa.sh: creating nlu/rasa/.venv with $("$python" --version 2>&1)"
    "$python" -m venv "$VENV" || die "cannot create a virtual environment with $python (on Debian: apt-get install python3.10-venv)"
  fi
  echo "rasa.sh: installing $RASA_REQUIREMENT into nlu/rasa/.venv (a few minutes, ~2.7 GB)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
    || die "pip upgrade failed (is the package index reachable?)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$RASA_REQUIREMENT" \
    || die "installing $RASA_REQUIREMENT failed (see pip's output above)"
  "$VENV/bin/python" -c 'import rasa, jieba' || die "Rasa was installed but does not import"
  echo "$RASA_REQUIREMENT" > "$STAMP"
}

require_venv() {
  [ -x "$VENV/bin/rasa" ] || die "nlu/rasa/.venv has no Rasa: run scripts/rasa.sh setup first"
}

# A short hash of everything the model is trained from.
model_hash() {
  {
    echo "$RASA_REQUIREMENT"
    find config.yml data userdict -type f ! -name '.*' ! -name '*~' -print0 2>/dev/null \
      | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-12
}

model_name() {
  echo "qinglang-$(model_hash)"
}

train() {
  require_venv
  [ -f config.yml ] || die "nlu/rasa/config.yml is missing"
  [ -d data ] || die "nlu/rasa/data is missing"
  local name
  name=$(model_name)
  if [ -f "$MODELS/$name.tar.gz" ]; then
    echo "rasa.sh: model up to date ($MODELS/$name.tar.gz)"
    return 0
  fi
  mkdir -p "$MODELS" "$RASA_CACHE_DIRECTORY" "$MPLCONFIGDIR"
  echo "rasa.sh: training $MODELS/$name.tar.gz"
  "$VENV/bin/rasa" train nlu --config config.yml --nlu data --out "$MODELS" --fixed-model-name "$name" \
    || die "training failed (see Rasa's output above)"
  [ -f "$MODELS/$name.tar.gz" ] || die "training ended without writing $MODELS/$name.tar.gz"
  # The data must not have changed while training ran, or the model's name would lie.
  if [ "$(model_name)" != "$name" ]; then
    rm -f "$MODELS/$name.tar.gz"
    die "config.yml, data/ or userdict/ changed during training: run scripts/rasa.sh train again"
  fi
  # Keep only the current model.
  find "$MODELS" -maxdepth 1 -name 'qinglang-*.tar.gz' ! -name "$name.tar.gz" -delete
}

serve() {
  require_venv
  local port="${PORT:-5005}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) [ $# -ge 2 ] || usage; port=$2; shift 2 ;;
      --port=*) port=${1#--port=}; shift ;;
      *) usage ;;
    esac
  done
  case "$port" in ''|*[!0-9]*) die "--port wants a number, not '$port'" ;; esac
  local name
  name=$(model_name)
  [ -f "$MODELS/$name.tar.gz" ] || die "no model for the current data ($MODELS/$name.tar.gz): run scripts/rasa.sh train first"
  mkdir -p "$RASA_CACHE_DIRECTORY" "$MPLCONFIGDIR"
  echo "rasa.sh: serving $MODELS/$name.tar.gz on http://127.0.0.1:$port"
  exec "$VENV/bin/rasa" run --enable-api --port "$port" -i 127.0.0.1 --model "$MODELS/$name.tar.gz"
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  setup) [ $# -eq 0 ] || usage; setup ;;
  train) [ $# -eq 0 ] || usage; train ;;
  serve) serve "$@" ;;
  all) setup; train; serve "$@" ;;
  *) usage ;;
esac
