"""Does `hashtagger adapt` learn an event from the hashtags a person accepts? Measured on the real tweets.

One event's posts (those whose image file name starts with EVENT, e.g. nepal: the 2015 Nepal earthquake) are
kept out of the wide part's fit. A person then "accepts" the true hashtags of N of them (drawn at random,
seed 0), the wide part is refitted on the training split (less the event) plus those N, as `adapt` refits it
(hashtags outside the vocabulary become new columns; w chosen on the validation split, less the event), and
F1@2 / F1@3 are measured on the event's other posts, never the accepted ones, before and after, with 95%
bootstrap intervals over images. The truth is every hashtag of a post, in the vocabulary or not. Also
printed: the old hashtags' F1@2 on the validation split before and after (forgetting) and the time the refit
takes on this CPU.

Caveats: the deep model (not the wide part) was trained on the event's posts of its training split, so the wide
part alone, before and after, is printed too (it never saw the event before); accepted and evaluated posts may
share an image (the wide part reads only captions; posts with the same text are dropped, as training drops
them).

    python scripts/adapt_event.py [BUNDLE] [DATA] [--event nepal] [--accepted 50 200]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from hashtagger.bundle.wide import WidePart
from hashtagger.data.batching import Sample, image_digests
from hashtagger.data.posts import load_posts
from hashtagger.data.prep import Example, PrepOptions, prepare
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.evaluation import intervals, metrics
from hashtagger.evaluation.systems import open_bundle
from hashtagger.evaluation.tfidf import fit_tfidf
from hashtagger.evaluation.wide import blend_grid, choose_weight, f1_at

KS = (2, 3)


def refit(train: list[Example], accepted: list[Example], vocab: list[str], val) -> tuple[WidePart, float, float]:
    """The wide part as `adapt` fits it: (part with its new hashtags and w chosen on validation, old hashtags'
    validation F1@2 of the blend, seconds)."""
    start = time.perf_counter()
    new = list(dict.fromkeys(t for e in accepted for t in e.post.hashtags if t not in set(vocab)))
    labels = vocab + new
    tags = [e.labels for e in train] + [list(e.post.hashtags) for e in accepted]
    part = fit_tfidf([e.text for e in train + accepted], tags, labels).wide_part()
    part.extra = new
    deep, texts, truths = val
    grid = blend_grid(part, deep, texts, labels, truths)
    part.weight = choose_weight(grid)
    return part, grid[part.weight], time.perf_counter() - start


def report(name: str, ranked: dict[str, list[list[str]]], truths: list[set[str]], digests: list[str]) -> None:
    groups = intervals.group_ids(digests)
    weights, true = intervals.resample_weights(groups), np.array([len(t) for t in truths])
    print(f"  {name}: {len(truths)} other posts of the event, {int(groups.max()) + 1} images")
    counts = {n: intervals.topk_counts(r, truths, KS) for n, r in ranked.items()}
    for n, r in ranked.items():
        m = metrics.topk_metrics(r, truths, KS)
        print(f"    {n:34s} " + "  ".join(f"F1@{k} {m[k]['f1']:.3f}" for k in KS))
    for after, before in (("after", "before"), ("wide part alone, after", "wide part alone, before")):
        rows = intervals.f1_difference(counts[after], counts[before], true, groups, weights)
        cells = (f"ΔF1@{k} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for k, (d, lo, hi) in zip(KS, rows, strict=True))
        print(f"    {after} - before  " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, default=Path("exported"))
    parser.add_argument("data", nargs="?", default="../shared/data/mediaeval2016/posts.csv")
    parser.add_argument("--event", default="nepal")
    parser.add_argument("--accepted", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args()
    m = open_bundle(args.bundle, "cpu", 64, wide=False)
    assert m.split is not None
    vocab, where = m.vocab, {d: s for s, ds in m.split.items() for d in ds}
    # Every post with a hashtag (in the vocabulary or not), cleaned and de-duplicated as training does.
    options = PrepOptions(cleaning=m.prep.cleaning, min_tags=0, min_words=0)
    examples = [e for e in prepare(load_posts(args.data), options, vocab).examples if e.post.hashtags]
    digest_of = image_digests(examples)
    rows = [(e, digest_of[e.image]) for e in examples if digest_of[e.image] is not None]
    event = [(e, d) for e, d in rows if e.image.name.startswith(args.event)]
    rest = [(e, d) for e, d in rows if not e.image.name.startswith(args.event) and e.labels]
    train = [e for e, d in rest if where.get(d) == "train"]
    val_rows = [(e, d) for e, d in rest if where.get(d) == "val"]
    splits = {s: sum(where.get(d) == s for _, d in event) for s in ("train", "val", "test")}
    print(f"{args.event}: {len(event)} posts ({splits} by the deep model's split; others: outside its prepared data)")
    index = {t: i for i, t in enumerate(vocab)}
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(args.cache_dir or Path(tmp), m.cache_id)
        fill_cache({d: e.image for e, d in val_rows + event}, m.encoder, m.extractor_spec, cache)
        store = FeatureStore(cache)

        def deep(chosen):
            samples = [Sample(e.text, [index[t] for t in e.labels if t in index], d) for e, d in chosen]
            return m.probabilities(samples, store, None)

        val = (deep(val_rows), [e.text for e, _ in val_rows], [set(e.labels) for e, _ in val_rows])
        event_deep = deep(event)
    before, before_val, seconds = refit(train, [], vocab, val)
    print(
        f"wide part without the event: w = {before.weight:.1f}, old hashtags' validation F1@2 {before_val:.3f} "
        f"(deep alone {f1_at(val[0], vocab, val[2]):.3f}); fitted in {seconds:.0f} s"
    )
    order = list(range(len(event)))
    random.Random(0).shuffle(order)
    for n in args.accepted:
        accepted, others = sorted(order[:n]), sorted(order[n:])
        after, after_val, seconds = refit(train, [event[i][0] for i in accepted], vocab, val)
        print(
            f"N = {n}: refitted in {seconds:.0f} s on {len(train) + n} posts; {len(after.extra)} new hashtags; "
            f"w = {after.weight:.1f}; old hashtags' validation F1@2 {before_val:.3f} before, {after_val:.3f} after"
        )
        texts = [event[i][0].text for i in others]
        truths = [set(event[i][0].post.hashtags) for i in others]
        probs = event_deep[others]
        ranked = {
            "deep model alone": metrics.rank(probs, vocab, max(KS)),
            "before": metrics.rank(before.blend(probs, texts), vocab, max(KS)),
            "after": metrics.rank(after.blend(probs, texts), vocab + after.extra, max(KS)),
            # The deep model was trained on most of the event's posts; the wide part alone never saw them before.
            "wide part alone, before": metrics.rank(before.probabilities(texts), vocab, max(KS)),
            "wide part alone, after": metrics.rank(after.probabilities(texts), vocab + after.extra, max(KS)),
        }
        report(f"N = {n}", ranked, truths, [event[i][1] for i in others])


if __name__ == "__main__":
    main()
