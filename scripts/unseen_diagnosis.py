"""Why a name-head model ranks held-out hashtags where it does: its two terms, measured apart.

For the posts of a split (validation by default) that carry a held-out hashtag of a `--hold-out-tags` bundle,
every hashtag's logit is s * cos(P h, e) + b + w * match. This prints the spread of the learned per-hashtag terms
b against that of the name term s * cos within a post, and the held-out hashtags' MRR / recall@k as shipped, by
the name similarity alone, by the caption match alone, with other unseen terms (percentiles of the seen b), and
ranked among the held-out ones only (against random), beside the text-match baseline.

    python scripts/unseen_diagnosis.py runs-unseen/names-dropout-0.5-exported [DATA] [--split val]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.runtime import Candidates, Runner, session
from hashtagger.data.batching import Sample
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.data.tagnames import caption_match, name_pieces, tag_words
from hashtagger.data.text import encode
from hashtagger.evaluation import ranking
from hashtagger.evaluation.prediction import onnx_scorer, predict
from hashtagger.evaluation.systems import open_bundle, select_posts

KS = (1, 5, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", nargs="?", default="../shared/data/mediaeval2016/posts.csv")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    m = open_bundle(args.bundle, "cpu", 64)
    bundle = read_bundle(m.path, verify=False)
    held = json.loads((bundle.path / "hashtags.json").read_text())["held_out"]
    head, labels, seen = bundle.info.head, bundle.vocab + held, len(bundle.vocab)
    scale, unseen = head.scale, head.unseen_bias
    names = session(bundle.graph("names"), "cpu")[0]
    text = encode(bundle.tokenizer, [tag_words(t) for t in labels], head.name_tokens)
    wanted = {i.name for i in names.get_inputs()}
    embeddings = names.run(["embedding"], {k: v for k, v in text.items() if k in wanted})[0]
    runner = Runner.load(bundle, "cpu", "model")
    # Every hashtag, seen or not, offered as a candidate with no term of its own: its column is s * cos alone.
    runner.candidates = Candidates(labels, embeddings, name_pieces(bundle.tokenizer, labels), scale, 0.0, 0.0)
    posts = select_posts(replace(m, vocab=labels), args.data, args.split, None)
    rows = [(e, d, truth & set(held)) for e, d, truth in posts.rows if d is not None and truth & set(held)]
    with TemporaryDirectory() as root:
        cache = FeatureCache(Path(root), m.cache_id)
        fill_cache({d: e.image for e, d, _ in rows}, m.encoder, m.extractor_spec, cache)
        samples = [Sample(e.text, [], d) for e, d, _ in rows]
        probs = predict(onnx_scorer(runner), samples, bundle.tokenizer, FeatureStore(cache), 0, bundle.max_length)
    logits = np.log(np.clip(probs, 1e-12, 1)) - np.log(np.clip(1 - probs, 1e-12, 1))
    shipped_seen, name_term = logits[:, :seen], logits[:, seen:]
    texts = [e.text for e, _, _ in rows]
    ids = encode(bundle.tokenizer, texts, bundle.max_length)["input_ids"]
    match = float(head.get("match", 0.0)) * caption_match(ids, name_pieces(bundle.tokenizer, labels))
    b = (shipped_seen - name_term[:, :seen] - match[:, :seen]).mean(0)
    held_terms = name_term[:, seen:] + match[:, seen:]
    column = {t: i for i, t in enumerate(labels)}
    targets = [[column[t] for t in sorted(truth)] for _, _, truth in rows]

    def line(label: str, scores: np.ndarray, tg: list[list[int]] = targets) -> None:
        r = ranking.summary(ranking.hits(scores, tg, KS), KS, resamples=200)
        print(f"{label:<34}" + "".join(f" R@{k} {r['recall@k'][k][0]:.3f}" for k in KS) + f"  MRR {r['mrr'][0]:.3f}")

    print(
        f"{args.split}: {len(rows)} posts carrying a held-out hashtag; {seen} seen + {len(held)} held-out hashtags\n"
        f"seen b: percentiles 50/75/90/99/100 = {np.percentile(b, [50, 75, 90, 99, 100]).round(2).tolist()}; "
        f"unseen term {unseen:.2f}\nname term s*cos: scale {scale:.2f}, std within a post "
        f"{name_term.std(1).mean():.2f} logits; caption match weight {head.get('match', 0.0):.2f}"
    )
    line("as shipped", np.concatenate([shipped_seen, held_terms + unseen], 1))
    line("name similarity alone", name_term)
    line("caption match alone", match)
    for q in (75, 90, 99):
        g = float(np.percentile(b, q))
        line(f"unseen term = seen b p{q} ({g:.2f})", np.concatenate([shipped_seen, held_terms + g], 1))
    among = [[c - seen for c in t] for t in targets]
    line("among the held-out only", held_terms, among)
    line("  random, among the held-out only", ranking.random_scores(len(rows), len(held)), among)
    line("text match", ranking.text_match_scores(texts, [tag_words(t) for t in labels], labels))


if __name__ == "__main__":
    main()
