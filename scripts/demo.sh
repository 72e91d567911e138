#!/usr/bin/env bash
# The main command: set up the environment, then run the embedded offline demo end to end on the CPU.
# Outputs land in ./demo-outputs (override with ZOO_DEMO_DIR).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/env.sh"
venv="${ZOO_VENV:-$repo/.venv}"
out="${ZOO_DEMO_DIR:-$PWD/demo-outputs}"
mkdir -p "$out"
"$venv/bin/zoo" fit --config "${ZOO_DEMO_PRESET:-toy-nabla-r2d3}" --trainer.default_root_dir="$out" "$@"
echo "demo outputs: $out"
