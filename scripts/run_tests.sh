#!/usr/bin/env bash
# Run the tests: set up the environment if needed, lint with ruff, then pytest on tests/ (slow ones included) and
# nbval on every notebook,
# all on the tiny profile (a random-init Qwen2: seconds per notebook, no GPU, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export COURSE_PROFILE=tiny
.venv/bin/ruff check helpers tests scripts
exec .venv/bin/python -m pytest tests/ notebooks/ -m "slow or not slow" --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --durations=25 "$@"
