#!/usr/bin/env bash
# `hashtagger tag FOLDER --engine ray` with its default options, inside a memory limit: a cgroup (v1 with
# memory.memsw, or v2 with swap off) that holds the whole run, the driver, Ray's services and every worker.
# Prints posts/s and, sampled every 5 s, the cgroup's anonymous + shared memory (page cache left out: the kernel
# reclaims it under the limit) with its peak, and the OOM kills. Needs root (it makes the cgroup).
#   bash benchmarks/ray_memory_limit.sh [POSTS=100000] [LIMIT_GIB=4] [WORK=/tmp/ray-memory-limit] [MODEL=exported]
# The posts are benchmarks/ray_throughput.py's: 256 distinct 640x480 JPEGs under POSTS hard-linked names, each
# with its own caption; made once in WORK and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
POSTS="${1:-100000}"
LIMIT_GIB="${2:-4}"
WORK="${3:-/tmp/ray-memory-limit}"
MODEL="$(realpath "${4:-exported}")"
PYTHON="$(command -v python)"
mkdir -p "$WORK"
"$PYTHON" -c "import sys; sys.path[:0] = ['benchmarks']; from pathlib import Path; import ray_throughput as r; \
r.make_posts(Path(sys.argv[1]), int(sys.argv[2]))" "$WORK" "$POSTS"
LIMIT=$((LIMIT_GIB << 30))
if [ -d /sys/fs/cgroup/memory ]; then  # v1
  CG=/sys/fs/cgroup/memory/hashtagger-limit-$$
  mkdir "$CG"
  echo "$LIMIT" > "$CG/memory.limit_in_bytes"
  echo "$LIMIT" > "$CG/memory.memsw.limit_in_bytes"
else  # v2
  CG=/sys/fs/cgroup/hashtagger-limit-$$
  mkdir "$CG"
  echo "$LIMIT" > "$CG/memory.max"
  echo 0 > "$CG/memory.swap.max"
fi
trap 'kill "${SAMPLER:-}" 2>/dev/null; rmdir "$CG" 2>/dev/null || true' EXIT  # also when interrupted
OUT="$WORK/out-$$"
# The sampler stays outside the cgroup: its memory is not the run's.
"$PYTHON" - "$CG" "$WORK/memory-$$.jsonl" <<'EOF' &
import json, os, sys, time
cg, out = sys.argv[1], open(sys.argv[2], "w")
v1 = os.path.exists(f"{cg}/memory.stat") and os.path.exists(f"{cg}/memory.oom_control")
t0, peak = time.time(), 0
while os.path.isdir(cg):
    try:
        stat = dict(line.split() for line in open(f"{cg}/memory.stat"))
        events = dict(line.split() for line in open(f"{cg}/memory.oom_control" if v1 else f"{cg}/memory.events"))
    except OSError:
        break
    used = int(stat["rss"]) + int(stat["shmem"]) if v1 else int(stat["anon"]) + int(stat["shmem"])
    peak = max(peak, used)
    out.write(json.dumps({"s": round(time.time() - t0), "mib": used >> 20, "peak_mib": peak >> 20,
                          "oom_kills": int(events.get("oom_kill", 0))}) + "\n")
    out.flush()
    time.sleep(5)
EOF
SAMPLER=$!
START=$(date +%s)
set +e
bash -c "echo \$\$ > $CG/cgroup.procs; exec '$PYTHON' -m hashtagger tag '$WORK/posts' --engine ray --model '$MODEL' -o '$OUT'" \
  2> "$WORK/tag-$$.log"
STATUS=$?
set -e
SECONDS_TAKEN=$(($(date +%s) - START))
sleep 6
RECORDS=$(cat "$OUT"/shard-*.jsonl 2>/dev/null | wc -l)
LAST=$(tail -n 1 "$WORK/memory-$$.jsonl")
RATE=$(awk -v n="$RECORDS" -v s="$SECONDS_TAKEN" 'BEGIN { printf "%.1f", n / (s > 0 ? s : 1) }')
echo "exit status $STATUS; $RECORDS of $POSTS posts tagged in $SECONDS_TAKEN s ($RATE posts/s, Ray's start-up included)"
echo "limit ${LIMIT_GIB} GiB; anonymous + shared memory, last sample: $LAST"
echo "samples: $WORK/memory-$$.jsonl; the run's messages: $WORK/tag-$$.log; output: $OUT"
