#!/usr/bin/env bash
# Create (or reuse) an isolated virtual environment with alignzoo and its test extras.
#
#   ZOO_VENV    where the environment lives          (default: .venv in the repository)
#   ZOO_TORCH   the torch requirement installed FIRST (default: torch==2.13.0, a CPU build on CPU-only machines)
#               e.g. ZOO_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" on a GPU box.
#
# torch goes in first and is then held by a constraints file, so no later requirement can pull a CUDA build
# (and several GB of nvidia-* packages) over it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ZOO_VENV:-$repo/.venv}"
torch_spec="${ZOO_TORCH:-torch==2.13.0}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[env] creating $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }  # drop noise about absent local index mirrors
version_of() { "$venv/bin/python" -c "from importlib.metadata import version; print(version('$1').split('+')[0])" 2>/dev/null; }
if ! version_of torch >/dev/null; then
  echo "[env] installing $torch_spec"
  # shellcheck disable=SC2086  # ZOO_TORCH may carry pip options such as --index-url
  quiet "${pip[@]}" install $torch_spec
fi
torch_version="$(version_of torch)"
constraints="$(mktemp)"
echo "torch==$torch_version" >"$constraints"
echo "[env] installing alignzoo[test] (torch held at $torch_version)"
quiet "${pip[@]}" install -c "$constraints" -e "$repo[test]"
rm -f "$constraints"
"$venv/bin/python" -c "import zoo, torch; print(f'[env] alignzoo {zoo.__version__}, torch {torch.__version__}')"
