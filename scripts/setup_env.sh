#!/usr/bin/env bash
# Create .venv (if missing, or if pyproject.toml or constraints.txt changed since the last install) and install
# the course: pyproject.toml's dependencies at the exact tested versions of constraints.txt, then the
# [tool.course] no-deps packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
stamp="$VENV/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
  echo "The course needs Python 3.11 or 3.12; $PYTHON is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
start=$(date +%s)
echo "Setting up $VENV (first run only) ..."
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# Some pip mirrors print a warning per package for missing index folders; keep only real messages.
quiet() { { "$@" 2>&1 || return 1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
quiet "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
nodeps=$("$VENV/bin/python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["course"]["no-deps"]))')
quiet "$VENV/bin/python" -m pip install -q --no-deps $nodeps
# The notebooks' kernel. The course has no ipywidgets (its progress bars are text), so tqdm warns "IProgress not
# found" when a library first imports it in a kernel: a note about Jupyter, not the course, kept out of the outputs.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --env PYTHONWARNINGS "ignore:IProgress not found" >/dev/null
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "Environment ready in $(( $(date +%s) - start )) s."
