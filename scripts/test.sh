#!/usr/bin/env bash
# The test command: set up the environment, then run the default (fast, offline) suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the slow tests.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/env.sh"
venv="${ZOO_VENV:-$repo/.venv}"
cd "$repo"
set +e
"$venv/bin/pytest" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then  # pytest: no tests were collected (e.g. a -m selection that matches nothing)
  echo "no tests were collected"
  exit 0
fi
exit "$rc"
