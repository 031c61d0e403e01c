#!/usr/bin/env bash
# Issue 11's validation ablations: each row is the reference recipe plus one change, trained on the real tweets
# and scored on the VALIDATION split (never test) with `hashtagger evaluate --split val` (model, text-only and
# image-only ablations, frequency prior, TF-IDF + LR, bootstrap intervals over images).
#
#   OUT=runs/ablations JOBS=2 bash scripts/ablations.sh [ROW ...]      # default: every row
#   python scripts/ablation_table.py runs/ablations                    # the Markdown table
#
# A row already scored (OUT/ROW/val.json) is skipped and one stopped part-way is resumed, so a stopped run
# continues where it was. Rows share one feature cache (OUT/feature-cache). JOBS rows run at once, THREADS
# torch threads each. On a 2-core CPU one row takes ~11 min alone; on a GPU (--device auto picks it) about a
# minute.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA="${DATA:-../shared/data/mediaeval2016/posts.csv}"
export OUT="${OUT:-runs/ablations}"
export HASHTAGGER="${HASHTAGGER:-hashtagger}"
JOBS="${JOBS:-1}"
export OMP_NUM_THREADS="${THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}"

export REFERENCE="${REFERENCE:---base-model mini --text-init minilm --backbone efficientnet-lite2 --modality-dropout 0.2 \
--pooling mean --lr 5e-5 --epochs 4}"
declare -A CHANGE=(
    [reference]=""
    [train-repeats]="--train-repeats"
    [epochs-2]="--epochs 2"
    [epochs-8]="--epochs 8"
    [lr-2e-5]="--lr 2e-5"
    [lr-1e-4]="--lr 1e-4"
    [new-lr-1e-4]="--new-lr 1e-4"
    [decay-norms]="--decay-norms"
    [no-weight-decay]="--weight-decay 0"
    [dropout-0.3]="--dropout 0.3"
    [cls-pooling]="--pooling cls"
    [no-minilm]="--text-init none"
    [vocabulary-250]="--vocab-size 250"
    [no-modality-dropout]="--modality-dropout 0"
    [modality-dropout-0.35]="--modality-dropout 0.35"
    [random-cnn]="--backbone mini"
    [efficientnet-lite0]="--backbone efficientnet-lite0"
)
ORDER=(reference train-repeats epochs-2 epochs-8 lr-2e-5 lr-1e-4 new-lr-1e-4 decay-norms no-weight-decay dropout-0.3
    cls-pooling no-minilm vocabulary-250 no-modality-dropout modality-dropout-0.35 random-cnn efficientnet-lite0)

row() {
    local name="$1" change="$2"
    [ -f "$OUT/$name/val.json" ] && { echo "$name: done already"; return 0; }
    mkdir -p "$OUT"
    local options="$REFERENCE $change --cache-dir $OUT/feature-cache"
    # A row stopped part-way continues from its last/ checkpoint with its own settings (nothing is deleted).
    [ -d "$OUT/$name/last" ] && options="--resume"
    # shellcheck disable=SC2086  # the options are words on purpose
    $HASHTAGGER train "$DATA" $options --output "$OUT" --run-name "$name" >>"$OUT/$name.log" 2>&1 &&
        printf '%s\n' "$change" >"$OUT/$name/change.txt" &&
        $HASHTAGGER evaluate "$DATA" --checkpoint "$OUT/$name/best" --split val \
            --report "$OUT/$name/val.json" >>"$OUT/$name.log" 2>&1 &&
        echo "$name: done" || echo "$name: FAILED (see $OUT/$name.log)"
}

rows=("$@")
[ ${#rows[@]} -eq 0 ] && rows=("${ORDER[@]}")
for name in "${rows[@]}"; do
    [ -n "${CHANGE[$name]+x}" ] || { echo "unknown row '$name' (rows: ${ORDER[*]})" >&2; exit 2; }
done
running=0
for name in "${rows[@]}"; do
    row "$name" "${CHANGE[$name]}" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
