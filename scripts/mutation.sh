#!/usr/bin/env bash
# Mutation testing of the pure modules (mutmut 3) on a temporary copy of the repository; see docs/validation/mutation.md.
# Usage: scripts/mutation.sh [module ...] [--jobs N] [--show] [--keep] [--fail-under PCT]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if ! "$python" -c "import mutmut" 2>/dev/null; then
    echo "mutmut is not installed in $python; run: $python -m pip install -e '.[dev]'" >&2
    exit 2
fi
exec "$python" "$root/scripts/mutation.py" "$@"
