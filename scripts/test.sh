#!/usr/bin/env bash
# The README's test command: install hashtagger with its test extras (which bring the train extra) into .venv,
# torch pinned by constraints.txt, and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install --quiet --upgrade pip
pip install --quiet -c constraints.txt -e ".[test]"
python -m pytest -q "$@"
