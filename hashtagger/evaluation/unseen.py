"""`evaluate --unseen`: the held-out hashtags of a `--hold-out-tags` model ranked beside its vocabulary, against a
text match and random ranking, with bootstrap intervals over posts."""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.locate import find_model
from hashtagger.bundle.runtime import Runner
from hashtagger.data.batching import Sample
from hashtagger.data.regions import FeatureCache, FeatureStore, fill_cache
from hashtagger.data.tagnames import tag_words
from hashtagger.errors import DataError
from hashtagger.evaluation import ranking
from hashtagger.evaluation.options import EvaluateOptions
from hashtagger.evaluation.prediction import onnx_scorer, predict
from hashtagger.evaluation.report import report_json
from hashtagger.evaluation.systems import open_bundle, select_posts
from hashtagger.io.files import atomic_write


@dataclass
class UnseenReport:
    """`evaluate --unseen`: the held-out hashtags of a `--hold-out-tags` model, offered as candidates beside its
    vocabulary, on the posts of a split (test by default) that carry one."""

    data: str
    model: str
    split: str
    ks: list[int]
    posts: int  # posts of the split with at least one held-out hashtag
    pairs: int  # (post, held-out hashtag) pairs: recall's denominator
    vocabulary: int  # hashtags seen in training
    held_out: int  # hashtags offered as new candidates
    systems: dict[str, dict]  # system -> {"recall@k": {k: [value, low, high]}, "mrr": [value, low, high]}
    # model row -> recall@k of every hashtag (seen or held out) of every post of the split, all candidates offered:
    # what a user of tag --candidates gets, posts without a new hashtag included; --new-match is chosen by it
    every: dict[str, dict] = field(default_factory=dict)
    every_posts: int = 0
    every_pairs: int = 0
    # model row -> its MRR minus the text match's on the same pairs, [value, low, high] (paired bootstrap)
    mrr_minus_text_match: dict[str, list[float]] = field(default_factory=dict)
    definitions: dict[str, str] = field(
        default_factory=lambda: {
            "recall@k": "share of (post, held-out hashtag) pairs whose hashtag ranks in the top k of all candidates "
            "(vocabulary + held-out), ties broken at random in expectation",
            "mrr": "mean over those pairs of 1 / the hashtag's rank",
            "interval": "95% bootstrap interval, resampling posts",
            "new-match W": "the model with W added to its caption-match weight for the held-out hashtags only "
            "(export --new-match W)",
            "every": "recall@k of all (post, hashtag) pairs, seen or held out, of every post of the split with a "
            "hashtag, all candidates offered: what ranking new hashtags costs or gains overall; --new-match is chosen "
            "by recall@2 of it on validation",
        }
    )


UNSEEN_SYSTEMS = ("model (name head)", "text match", "random")


def evaluate_unseen(
    data: str | Path | None,
    model: str | Path | None = None,
    options: EvaluateOptions | None = None,
    console: Console | None = None,
    new_match: tuple[float, ...] = (),
) -> UnseenReport:
    """Rank the vocabulary and the held-out hashtags together for each post of `split` carrying a held-out one
    (validation, to choose between models; test, to report). `new_match`: also the model with each of these
    weights in place of its bundle's new-hashtag match weight (HeadInfo.new_match), a row each."""
    console = console or Console(stderr=True)
    options = (options or EvaluateOptions()).checked()
    split, ks, device, batch_size = options.split, options.ks, options.device, options.batch_size
    m = open_bundle(find_model(model).path, device, batch_size)
    bundle = read_bundle(m.path, verify=False)
    held = json.loads((bundle.path / "hashtags.json").read_text()).get("held_out", [])
    if not held:
        raise DataError(f"{m.path}: the model was trained without --hold-out-tags: no hashtag was kept from it")
    runner = Runner.load(bundle, device, "model")  # fp32 on a GPU too: the reference
    runner.add_candidates(bundle, held)
    assert runner.candidates is not None  # a bundle that cannot rank candidates raised above
    # Prepared with the held-out hashtags back in the vocabulary, so that posts keep them as labels.
    posts = select_posts(replace(m, vocab=m.vocab + held), data, split, options.columns)
    candidates = runner.labels(bundle.vocab)
    column = {t: i for i, t in enumerate(candidates)}
    held_set = set(held)
    rows = [(e, d, truth) for e, d, truth in posts.rows if d is not None and truth]
    with ExitStack() as stack:
        root = options.cache_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="hashtagger-eval-"))
        cache = FeatureCache(Path(root), m.cache_id)
        errors = fill_cache({d: e.image for e, d, _ in rows}, m.encoder, m.extractor_spec, cache)
        rows = [r for r in rows if r[1] not in errors]
        if not any(truth & held_set for _, _, truth in rows):
            raise DataError(f"no {split} post carries a held-out hashtag (and a readable image)")
        samples = [Sample(e.text, [], d) for e, d, _ in rows]
        models = {UNSEEN_SYSTEMS[0]: runner.candidates} | {
            f"model, new-match {w:g}": replace(runner.candidates, new_match=w) for w in new_match
        }
        scores = {}
        with console.status(f"scoring {len(samples)} posts against {len(candidates)} candidates"):
            for name, scored in models.items():
                runner.candidates = scored
                features = FeatureStore(cache)
                scores[name] = predict(
                    onnx_scorer(runner), samples, bundle.tokenizer, features, 0, bundle.max_length, batch_size
                )
    targets = [[column[t] for t in sorted(truth & held_set)] for _, _, truth in rows]
    every = [[column[t] for t in sorted(truth)] for _, _, truth in rows]
    texts = [e.text for e, _, _ in rows]
    systems = scores | {
        UNSEEN_SYSTEMS[1]: ranking.text_match_scores(texts, [tag_words(t) for t in candidates], candidates),
        UNSEEN_SYSTEMS[2]: ranking.random_scores(len(rows), len(candidates)),
    }
    found = {name: ranking.hits(s, targets, ks) for name, s in systems.items()}
    return UnseenReport(
        data=str(data if data is not None else m.args.get("data")),
        model=str(m.path),
        split=split,
        ks=list(ks),
        posts=sum(1 for t in targets if t),
        pairs=sum(len(t) for t in targets),
        every_posts=len(rows),
        every_pairs=sum(len(t) for t in every),
        vocabulary=len(bundle.vocab),
        held_out=len(held),
        systems={name: ranking.summary(h, ks) for name, h in found.items()},
        every={name: ranking.summary(ranking.hits(s, every, ks), ks)["recall@k"] for name, s in scores.items()},
        mrr_minus_text_match={name: ranking.mrr_difference(found[name], found[UNSEEN_SYSTEMS[1]]) for name in scores},
    )


def unseen_table(report: UnseenReport) -> Table:
    table = Table(
        title=f"held-out hashtags on {report.posts} {report.split} posts ({report.pairs} pairs): {report.held_out} new "
        f"candidates beside {report.vocabulary} seen",
        title_justify="left",
    )
    table.add_column("system")
    for k in report.ks:
        table.add_column(f"recall@{k}", justify="right")
    table.add_column("MRR", justify="right")
    for name, result in report.systems.items():
        cells = [result["recall@k"][k] for k in report.ks] + [result["mrr"]]
        table.add_row(name, *(f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in cells))
    for name, recall in report.every.items():
        every = (f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in recall.values())
        table.add_row(f"{name}: every hashtag of the {report.every_posts} posts", *every, "")
    for name, (v, lo, hi) in report.mrr_minus_text_match.items():
        table.add_row(f"{name} - text match", *([""] * len(report.ks)), f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    table.caption = "in brackets: 95% bootstrap interval over posts (paired for the differences)"
    return table


def write_unseen_report(report: UnseenReport, path: str | Path) -> Path:
    return atomic_write(path, report_json(report))
