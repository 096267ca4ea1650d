#!/usr/bin/env bash
# buildboard's two commands on a fresh machine with only Python 3.11:
#   ./bb run    start the whole system (web, Celery worker and beat, a demo fleet) and print its URL
#   ./bb test   run the test suite (SQLite and a private Redis unless DATABASE_URL / REDIS_URL are set)
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha 2>/dev/null || true)" != "$want" ]; then
  echo "Installing requirements into .venv ..." >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > .venv/.requirements.sha
fi
exec .venv/bin/python -m buildboard.lib.stack "$@"
