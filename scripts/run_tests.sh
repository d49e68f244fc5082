#!/usr/bin/env bash
# Run the tests: set up the environment if needed, then pytest on tests/ and nbval on every notebook,
# all on the tiny profile (a random-init Qwen2: seconds per notebook, no GPU, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export COURSE_PROFILE=tiny
exec .venv/bin/python -m pytest tests/ notebooks/ --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg "$@"
