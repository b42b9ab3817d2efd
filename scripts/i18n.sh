#!/usr/bin/env bash
# Translations. Message ids in the source are the Simplified Chinese texts; English lives in the
# gettext catalog qinglang/locales/en/LC_MESSAGES/qinglang.po, compiled to qinglang.mo next to it (the
# .mo is committed: qinglang.i18n and aiogram's I18n read it at run time).
#
#   scripts/i18n.sh extract [OUT]  messages in the source (see babel.cfg) -> qinglang/locales/qinglang.pot
#   scripts/i18n.sh update         merge the template into the English catalog: new messages arrive
#                                  untranslated, changed ones as fuzzy suggestions; removed ones are dropped
#   scripts/i18n.sh compile        the English .po -> .mo
#   scripts/i18n.sh check          fail if a message in the source has no usable English translation
#                                  (missing, empty or fuzzy), if a translation's {placeholders} or line
#                                  breaks differ from its message id's, or if the .mo is not byte for byte
#                                  what compiling the .po gives (modification times mean nothing after a
#                                  git checkout, so the bytes are compared)
#   scripts/i18n.sh all            extract, update and compile
#
# Usual round: write _("中文") in the code, `scripts/i18n.sh all`, translate the new entries in the .po
# (and clear any "#, fuzzy" after checking it), `scripts/i18n.sh compile`, `scripts/i18n.sh check`.
#
# Keywords: _ and gettext (also as attributes: turn._("…")), N_ (marked here, translated where shown)
# and ngettext:1,2. Locations are written as file names without line numbers (--add-location=file):
# translators still see where a message is used, and moving code does not rewrite the catalog. The
# template's creation date is the only other churn, so extract leaves the file alone when nothing else
# changed. Python 3.11 does not look inside f-strings: keep _("…") out of them.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
LOCALES=qinglang/locales
DOMAIN=qinglang
POT=$LOCALES/$DOMAIN.pot
LANGS=(en)
KEYWORDS=(--no-default-keywords -k _ -k gettext -k N_ -k ngettext:1,2)

pybabel() {
  "$PYTHON" -m babel.messages.frontend "$@"
}

# extract OUT: write the template to OUT (without touching OUT if only its date would change)
extract() {
  local out=$1 tmp
  tmp=$(mktemp)
  pybabel --quiet extract -F babel.cfg "${KEYWORDS[@]}" --add-comments=Translators: --add-location=file \
    --project=Qinglang --copyright-holder="Qinglang contributors" --width=100 -o "$tmp" .
  if [ -f "$out" ] && diff -q <(grep -v '^"POT-Creation-Date:' "$out") <(grep -v '^"POT-Creation-Date:' "$tmp") >/dev/null; then
    rm -f "$tmp"
  else
    mkdir -p "$(dirname "$out")"
    mv "$tmp" "$out"
    chmod 644 "$out"
  fi
}

update() {
  local lang
  for lang in "${LANGS[@]}"; do
    if [ -f "$LOCALES/$lang/LC_MESSAGES/$DOMAIN.po" ]; then
      pybabel --quiet update -i "$POT" -d "$LOCALES" -D "$DOMAIN" -l "$lang" --ignore-obsolete --width=100
    else
      pybabel --quiet init -i "$POT" -d "$LOCALES" -D "$DOMAIN" -l "$lang" --width=100
    fi
  done
}

compile() {
  local lang
  for lang in "${LANGS[@]}"; do
    pybabel compile -d "$LOCALES" -D "$DOMAIN" -l "$lang" --statistics
  done
}

check() {
  local tmp status=0
  tmp=$(mktemp)
  extract "$tmp"
  "$PYTHON" - "$tmp" "$LOCALES" "$DOMAIN" "${LANGS[@]}" <<'PY' || status=$?
import io
import re
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

pot_path, locales, domain, *languages = sys.argv[1:]
FIELD = re.compile(r"\{[^{}]*\}")
with open(pot_path, "rb") as f:
    template = read_po(f)
problems = []
for language in languages:
    po_path = Path(locales, language, "LC_MESSAGES", f"{domain}.po")
    mo_path = po_path.with_suffix(".mo")
    if not po_path.exists():
        problems.append(f"{po_path}: missing (run scripts/i18n.sh update)")
        continue
    with po_path.open("rb") as f:
        catalog = read_po(f, locale=language)
    for message in template:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        where = f"{po_path}: {ids[0]!r}"
        found = catalog.get(ids[0], message.context)
        if found is None:
            problems.append(f"{where}: not in the catalog (run scripts/i18n.sh update, then translate)")
            continue
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        if isinstance(found.id, tuple) != isinstance(message.id, tuple):
            problems.append(f"{where}: singular/plural differs from the source (run scripts/i18n.sh update)")
        elif found.fuzzy:
            problems.append(f"{where}: fuzzy (check the translation, then remove the fuzzy flag)")
        elif not all(strings):
            problems.append(f"{where}: not translated")
        else:
            for string in strings:
                if sorted(FIELD.findall(string)) != sorted(FIELD.findall(ids[0])):
                    problems.append(f"{where}: placeholders {sorted(FIELD.findall(string))} in the translation, "
                                    f"{sorted(FIELD.findall(ids[0]))} in the message id")
                if string.count("\n") != ids[0].count("\n"):
                    problems.append(f"{where}: the translation has {string.count(chr(10))} line breaks, "
                                    f"the message id {ids[0].count(chr(10))}")
    for m in catalog:
        msgid = m.id[0] if isinstance(m.id, tuple) else m.id
        if msgid and template.get(msgid, m.context) is None:
            print(f"i18n check: note: {po_path}: {msgid!r} is no longer in the source (update drops it)",
                  file=sys.stderr)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # as `pybabel compile` does (fuzzy entries left out)
    if not mo_path.exists():
        problems.append(f"{mo_path}: missing (run scripts/i18n.sh compile)")
    elif mo_path.read_bytes() != compiled.getvalue():
        problems.append(f"{mo_path}: not what the .po compiles to (run scripts/i18n.sh compile)")
    print(f"i18n check: {po_path}: {sum(1 for m in template if m.id)} messages in the source", file=sys.stderr)
for problem in problems:
    print(f"i18n check: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
  rm -f "$tmp"
  return "$status"
}

case "${1:-}" in
  extract) extract "${2:-$POT}" ;;
  update) update ;;
  compile) compile ;;
  check) check ;;
  all) extract "$POT" && update && compile ;;
  *)
    echo "usage: scripts/i18n.sh extract [OUT] | update | compile | check | all" >&2
    exit 2
    ;;
esac
