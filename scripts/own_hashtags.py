"""How many posts that already carry hashtags get one of their own back in their top k: with --keep-own (the old
behaviour) and without (the default since issue 28), through the Tagger API on a random sample of real posts.

    python scripts/own_hashtags.py DATA/posts.csv --sample 200 --seed 0 --top-k 3 --model exported

DATA: the MediaEval 2016 tweets (posts.csv + images/).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from hashtagger.data.posts import load_posts
from hashtagger.tagging.picking import own_hashtags
from hashtagger.tagging.records import is_tagged
from hashtagger.tagging.tagger import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("posts", type=Path, help="a folder or CSV of posts")
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--model", default="exported")
    args = parser.parse_args()
    posts = load_posts(args.posts)
    sample = random.Random(args.seed).sample(posts, min(args.sample, len(posts)))
    own = {p.id: own_hashtags(p) for p in sample}
    print(f"{len(sample)} posts sampled (seed {args.seed}), {sum(bool(o) for o in own.values())} carry hashtags")
    for keep_own in (True, False):
        tagger = Tagger.open(args.model, device="cpu", top_k=args.top_k, keep_own=keep_own)
        carrying = back = 0
        for record in tagger.tag_many(sample):
            mine = own[record["id"]]
            if mine and is_tagged(record):
                carrying += 1
                back += bool(mine & {h["tag"] for h in record["hashtags"]})
        label = "--keep-own (before)" if keep_own else "default (after)"
        print(f"{label}: {back} of {carrying} tagged posts carrying hashtags get one back in their top {args.top_k}")


if __name__ == "__main__":
    main()
