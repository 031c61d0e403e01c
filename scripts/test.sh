#!/usr/bin/env bash
# Install hashtagger with its test extras into .venv and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install --quiet --upgrade pip
pip install --quiet -e ".[test]"
python -m pytest -q "$@"
