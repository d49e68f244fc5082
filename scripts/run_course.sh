#!/usr/bin/env bash
# Run the course: set up the environment if needed, then execute every notebook in order, in place,
# on the default profile ($COURSE_PROFILE, else gpu with CUDA, else cpu), writing figures and checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m helpers.course_runner "$@"
