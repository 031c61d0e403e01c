"""Hashtags never seen in training: hashtag names, held-out vocabulary, candidates at tag time (torch-free, embedded
once per run), `evaluate --unseen` and its baselines, and the clear errors around them."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from conftest import ANIMALS, COLOURS, cli_without_torch
from rich.console import Console
from typer.testing import CliRunner

from hashtagger.bundle.format import write_manifest
from hashtagger.cli.main import app
from hashtagger.data.tagnames import hold_out, read_candidates, tag_words
from hashtagger.errors import DataError
from hashtagger.evaluation import ranking
from hashtagger.evaluation.options import EvaluateOptions
from hashtagger.tagging.writers import read_records


def test_tag_words_segments_hashtags():
    assert tag_words("hurricanesandy") == "hurricane sandy"
    assert tag_words("#HurricaneSandy") == "hurricane sandy"
    assert tag_words("prayforboston") == "pray for boston"
    assert tag_words("summerdrop26") == "summer drop 26"
    assert tag_words("nepal_quake") == "nepal quake"


def test_hold_out_is_seeded_and_keeps_order():
    vocab = [f"tag{i}" for i in range(50)]
    kept, held = hold_out(vocab, 0.2, seed=0)
    assert len(held) == 10 and len(kept) == 40 and set(kept) | set(held) == set(vocab)
    assert kept == [t for t in vocab if t in kept]
    assert hold_out(vocab, 0.2, seed=0) == (kept, held)
    assert hold_out(vocab, 0.2, seed=1)[1] != held
    assert hold_out(vocab, 0.0, seed=0) == (vocab, [])
    with pytest.raises(DataError, match="hold-out-tags"):
        hold_out(vocab, 1.0, seed=0)


def test_read_candidates(tmp_path):
    f = tmp_path / "tags.txt"
    f.write_text("#SummerDrop26\nsandy\n\n  #sandy  \nnew_thing\n")
    assert read_candidates(f) == ["summerdrop26", "sandy", "new_thing"]
    f.write_text("\n  \n")
    with pytest.raises(DataError, match="has no hashtags"):
        read_candidates(f)
    for bad in ("two words", "#!!!", "###", "#a-b"):
        f.write_text(f"ok\n{bad}\n")
        with pytest.raises(DataError, match=r"line 2: .* is not a hashtag"):
            read_candidates(f)
    with pytest.raises(DataError, match="does not exist"):
        read_candidates(tmp_path / "missing.txt")


def test_ranks_with_ties_are_expected_values():
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0]])
    h = ranking.hits(scores, [[1], [3]], ks=(1, 2, 3))
    # post 0: one better, tied with one -> rank 2 or 3; post 1: four-way tie -> uniform over 1..4
    assert np.allclose(h.at_k[0], [0.0, 0.5, 1.0]) and np.isclose(h.reciprocal[0], (1 / 2 + 1 / 3) / 2)
    assert np.allclose(h.at_k[1], [0.25, 0.5, 0.75]) and np.isclose(h.reciprocal[1], np.mean(1 / np.arange(1, 5)))
    out = ranking.summary(h, (1, 2, 3), resamples=50)
    assert np.isclose(out["recall@k"][2][0], 0.5) and out["mrr"][1] <= out["mrr"][0] <= out["mrr"][2]
    m = ranking.text_match_scores(["the hurricane hit", "nothing here"], ["hurricane sandy", "dog"], ["hs", "dog"])
    assert m.tolist() == [[0.5, 0.0], [0.0, 0.0]]


def test_name_dropout_scores_a_share_of_hashtags_by_name_alone_in_training_only():
    import torch

    from hashtagger.models.lxmert import NameHead

    torch.manual_seed(0)
    head = NameHead(hidden_size=8, num_labels=200, name_size=6, token_count=30)
    ids = torch.randint(0, 30, (4, 7))
    with torch.no_grad():
        head.names.copy_(torch.nn.functional.normalize(torch.randn(200, 6), dim=-1))
        head.bias.copy_(torch.randn(200) * 3)
        pooled = torch.randn(4, 8)
        by_name = head.log_scale.exp() * head.project(pooled) @ head.names.T
    full = by_name + head.bias.detach()
    with torch.no_grad():
        head.unseen.fill_(-2.0)
    head.bias_dropout = 0.5
    head.eval()
    assert torch.allclose(head(pooled, ids), full)  # inference: every seen hashtag keeps its own term
    head.train()
    out = head(pooled, ids)
    out.sum().backward()
    dropped = head.bias.grad == 0  # a dropped hashtag's term gets no gradient: its name must rank it
    assert 60 < int(dropped.sum()) < 140
    assert torch.allclose(out[:, dropped], by_name[:, dropped] + head.unseen_bias())
    assert torch.allclose(out[:, ~dropped], full[:, ~dropped])
    assert head.unseen.grad != 0  # the dropped hashtags teach the term an unseen hashtag gets
    assert not torch.equal(head(pooled, ids), out)  # drawn anew each step


def test_unseen_term_starts_at_the_mean_rate_and_old_checkpoints_keep_the_median():
    import torch

    from hashtagger.models.lxmert import HashtagModel, NameHead, init_head_bias, lxmert_config
    from hashtagger.models.lxmert import ModelSpec as Spec

    model = HashtagModel(lxmert_config(Spec(num_labels=3, visual_feat_dim=8, vocab_size=40)), 3, head="names")
    init_head_bias(model, torch.tensor([0.3, 0.02, 0.01]))
    assert model.head.unseen_bias() == pytest.approx(float(torch.logit(torch.tensor(0.11))), abs=1e-5)
    old = NameHead(4, 3, 2, token_count=9).state_dict()
    for key in ("unseen", "match", "pieces"):  # written before name dropout and the caption match
        del old[key]
    old["bias"] = torch.tensor([-1.0, -5.0, -2.0])
    head = NameHead(4, 3, 2, token_count=9)
    with torch.no_grad():
        head.pieces = torch.tensor([[[1, 2], [3, -1]]] * 3)
        head.match.fill_(4.0)
    head.load_state_dict(old)
    assert head.unseen_bias() == -2.0
    pooled, ids = torch.randn(2, 4), torch.tensor([[1, 2, 3], [0, 0, 0]])
    with torch.no_grad():  # and it scores as it did: no caption match
        assert head.match == 0 and torch.allclose(
            head(pooled, ids), head.log_scale.exp() * head.project(pooled) @ head.names.T + head.bias
        )


def _toy_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "hurricane", "sandy", "##sandy", "hit", "dog", "boston"]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def test_caption_match_finds_a_hashtag_by_its_words_or_as_itself():
    from hashtagger.data.tagnames import caption_match, name_pieces
    from hashtagger.data.text import encode

    tokenizer = _toy_tokenizer()
    tags = ["hurricanesandy", "dog", "boston"]
    pieces = name_pieces(tokenizer, tags)
    assert pieces[0].tolist() == [[5, 6], [5, 7]]  # 'hurricane sandy' and 'hurricane ##sandy'
    assert pieces[1].tolist() == [[9, -1], [9, -1]]
    captions = ["the hurricane hit", "HurricaneSandy hit", "hurricane and sandy", "nothing", ""]
    match = caption_match(encode(tokenizer, captions, 16)["input_ids"], pieces)
    assert match.tolist() == [[0.5, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    unspelt = name_pieces(tokenizer, ["zebra"])  # only [UNK]: it must not match a caption's unknown words
    assert (unspelt == -1).all()
    assert caption_match(encode(tokenizer, ["a zebra"], 16)["input_ids"], unspelt).tolist() == [[0.0]]


def test_candidates_are_scored_as_the_name_head_scores_its_own():
    """The numpy path of tag-time candidates and the head in the graph give one hashtag the same probability when
    it gets the same term (b = unseen)."""
    import torch

    from hashtagger.bundle.runtime import Candidates
    from hashtagger.data.tagnames import name_pieces
    from hashtagger.data.text import encode
    from hashtagger.models.lxmert import NameHead

    torch.manual_seed(0)
    tokenizer = _toy_tokenizer()
    tags = ["hurricanesandy", "dog", "thehit", "boston"]
    head = NameHead(hidden_size=8, num_labels=len(tags), name_size=6, token_count=tokenizer.get_vocab_size()).eval()
    ids = encode(tokenizer, ["the hurricane hit", "dog and boston", "sandy hurricane"], 16)["input_ids"]
    with torch.no_grad():
        head.names.copy_(torch.nn.functional.normalize(torch.randn(len(tags), 6), dim=-1))
        head.pieces = torch.from_numpy(name_pieces(tokenizer, tags))
        head.bias.fill_(-1.5)
        head.match.fill_(3.0)
        pooled = torch.randn(3, 8)
        expected = torch.sigmoid(head(pooled, torch.from_numpy(ids))).numpy()
        projected = head.project(pooled).numpy()
    scale = float(head.log_scale.exp())
    candidates = Candidates(tags, head.names.numpy(), name_pieces(tokenizer, tags), scale, -1.5, 3.0)
    got = candidates.probabilities(projected, ids)
    assert np.allclose(got, expected, atol=1e-6)
    assert got[0, 0] > got[1, 0] and got[1, 1] > got[0, 1]  # the caption's words raise their hashtags


def test_new_match_raises_only_new_hashtags_the_caption_names():
    """HeadInfo.new_match adds to the match weight of tag-time candidates: a candidate named in the caption moves
    up by exactly new_match * its match, one the caption does not name stays where it was."""
    from hashtagger.bundle.runtime import Candidates
    from hashtagger.data.tagnames import caption_match, name_pieces
    from hashtagger.data.text import encode

    tokenizer = _toy_tokenizer()
    tags = ["hurricanesandy", "dog"]
    ids = encode(tokenizer, ["the hurricane hit"], 16)["input_ids"]
    pieces = name_pieces(tokenizer, tags)
    embeddings = np.eye(2, 4, dtype=np.float32)
    projected = np.full((1, 4), 0.5, np.float32)
    plain = Candidates(tags, embeddings, pieces, 2.0, -3.0, 1.5)
    boosted = Candidates(tags, embeddings, pieces, 2.0, -3.0, 1.5, new_match=4.0)

    def logit(p):
        return np.log(p) - np.log1p(-p)

    match = caption_match(ids, pieces)
    assert match[0, 0] == pytest.approx(0.5) and match[0, 1] == 0.0
    moved = logit(boosted.probabilities(projected, ids).astype(np.float64)) - logit(
        plain.probabilities(projected, ids).astype(np.float64)
    )
    assert moved[0] == pytest.approx([4.0 * 0.5, 0.0], abs=1e-4)


def test_bundle_new_match_reaches_the_candidates(held_out_bundle, tmp_path):
    from hashtagger.bundle.format import read_bundle
    from hashtagger.bundle.runtime import Runner

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(held_out_bundle, bundle_dir)
    runner = Runner.load(read_bundle(bundle_dir), "cpu", "model")
    runner.add_candidates(read_bundle(bundle_dir), ["greenunicorn"])
    assert runner.candidates.new_match == 0.0  # bundles without it: as before
    info = json.loads((bundle_dir / "bundle.json").read_text())
    info["head"]["new_match"] = 3.5
    (bundle_dir / "bundle.json").write_text(json.dumps(info))
    write_manifest(bundle_dir)
    runner.add_candidates(read_bundle(bundle_dir), ["greenunicorn"])
    assert runner.candidates.new_match == 3.5


def test_match_weight_starts_at_the_log_odds_ratio_of_a_named_hashtag():
    import torch

    from hashtagger.data.text import encode
    from hashtagger.models.lxmert import HashtagModel, init_match_weight, lxmert_config, set_hashtag_names
    from hashtagger.models.lxmert import ModelSpec as Spec

    tokenizer = _toy_tokenizer()
    tags = ["hurricanesandy", "dog"]
    spec = Spec(num_labels=2, visual_feat_dim=8, vocab_size=tokenizer.get_vocab_size())
    model = HashtagModel(lxmert_config(spec), 2, head="names")
    set_hashtag_names(model, tokenizer, tags)
    captions = ["hurricane sandy"] * 10 + ["the dog"] * 10 + ["nothing"] * 20

    def batches(labels):
        return [
            (torch.from_numpy(encode(tokenizer, captions, 16)["input_ids"]), torch.tensor(labels, dtype=torch.float))
        ]

    # Each hashtag on 8 of the 10 posts that name it and on 2 of the 30 that do not.
    named = [[1, 0]] * 8 + [[0, 0]] * 2 + [[0, 1]] * 8 + [[0, 0]] * 2 + [[1, 1]] * 2 + [[0, 0]] * 18
    init_match_weight(model, batches(named))
    expected = np.log(16.5 / 4.5) - np.log(4.5 / 56.5)
    assert float(model.head.match) == pytest.approx(expected, rel=1e-5)
    init_match_weight(model, batches([[0, 0]] * 20 + [[1, 1]] * 20))  # names never on their posts: no weight
    assert float(model.head.match) == 0.0


def test_hold_out_leaves_the_held_hashtags_out_of_the_model(held_out_bundle):
    hashtags = json.loads((held_out_bundle / "hashtags.json").read_text())
    # The fixture's 9 hashtags: a seeded half is held out, the rest is the model's vocabulary.
    assert len(hashtags["vocab"]) + len(hashtags["held_out"]) == len(COLOURS) * len(ANIMALS)
    assert hashtags["vocab"] and len(hashtags["held_out"]) >= 2
    assert not set(hashtags["vocab"]) & set(hashtags["held_out"])
    info = json.loads((held_out_bundle / "bundle.json").read_text())
    assert info["head"]["kind"] == "names" and info["graphs"]["names"] == "names.onnx"


def test_evaluate_unseen_against_baselines(held_out_bundle, posts_dir, tmp_path):
    report = tmp_path / "unseen.json"
    proc = cli_without_torch(
        "evaluate",
        str(posts_dir),
        "--model",
        str(held_out_bundle),
        "--unseen",
        "--device",
        "cpu",
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch not imported" in proc.stderr
    result = json.loads(report.read_text())
    held = json.loads((held_out_bundle / "hashtags.json").read_text())["held_out"]
    assert result["posts"] > 0 and result["pairs"] >= result["posts"] and result["held_out"] == len(held)
    candidates = result["vocabulary"] + result["held_out"]
    random = result["systems"]["random"]
    for k in range(1, 5):  # a random ranking of n candidates: exactly k / n in expectation
        assert random["recall@k"][str(k)][0] == pytest.approx(min(1.0, k / candidates))
    for system in result["systems"].values():
        value, low, high = system["mrr"]
        assert 0 < value <= 1 and low <= value <= high


def test_evaluate_unseen_on_the_validation_split(held_out_bundle, posts_dir):
    """Validation is where name-head variants are compared; its posts are the model's val images only."""
    from hashtagger.evaluation.unseen import evaluate_unseen

    quiet = Console(file=io.StringIO())
    split = json.loads((held_out_bundle / "split.json").read_text())
    held = set(json.loads((held_out_bundle / "hashtags.json").read_text())["held_out"])
    val = evaluate_unseen(posts_dir, held_out_bundle, EvaluateOptions("val", (1, 2), "cpu"), quiet)
    test = evaluate_unseen(posts_dir, held_out_bundle, EvaluateOptions("test", (1, 2), "cpu"), quiet)
    assert val.split == "val" and test.split == "test" and val.posts > 0
    assert set(split["val"]).isdisjoint(split["test"]) and val.held_out == test.held_out == len(held)
    with pytest.raises(DataError, match="unknown split 'train'"):
        evaluate_unseen(posts_dir, held_out_bundle, EvaluateOptions("train", (1,), "cpu"), quiet)


def test_evaluate_unseen_rows_per_new_match_weight(held_out_bundle, posts_dir):
    """--new-match W: a row per weight, the bundle's own (0) scoring exactly as the model row, and each model row's
    MRR against the text match's, paired over the same pairs."""
    from hashtagger.evaluation.unseen import UNSEEN_SYSTEMS, evaluate_unseen

    quiet = Console(file=io.StringIO())
    report = evaluate_unseen(posts_dir, held_out_bundle, EvaluateOptions("test", (1, 2), "cpu"), quiet, (0.0, 50.0))
    model, text = report.systems[UNSEEN_SYSTEMS[0]], report.systems[UNSEEN_SYSTEMS[1]]
    assert report.systems["model, new-match 0"] == model
    assert report.every["model, new-match 0"] == report.every[UNSEEN_SYSTEMS[0]]
    assert report.every_posts >= report.posts and report.every_pairs > report.pairs
    assert report.systems["model, new-match 50"] != model  # the captions name the animal: half of each name
    assert set(report.mrr_minus_text_match) == {UNSEEN_SYSTEMS[0], "model, new-match 0", "model, new-match 50"}
    for name, (value, low, high) in report.mrr_minus_text_match.items():
        assert value == pytest.approx(report.systems[name]["mrr"][0] - text["mrr"][0])
        assert low <= value <= high


def test_new_match_option_errors_are_one_line(held_out_bundle, tiny_run, posts_dir, tmp_path):
    runner = CliRunner()
    wrong = runner.invoke(app, ["evaluate", str(posts_dir), "--model", str(held_out_bundle), "--new-match", "2"])
    assert wrong.exit_code == 1 and "--new-match goes with --unseen" in wrong.output
    bad = ["evaluate", str(posts_dir), "--model", str(held_out_bundle), "--unseen", "--new-match", "2,x"]
    garbled = runner.invoke(app, bad)
    assert garbled.exit_code == 1 and "not '2,x'" in garbled.output
    endless = runner.invoke(app, [*bad[:-1], "0,inf"])
    assert endless.exit_code == 1 and "not '0,inf'" in endless.output
    linear = runner.invoke(app, ["export", str(tiny_run), "--output", str(tmp_path / "b"), "--new-match", "2"])
    assert linear.exit_code == 1 and "this model has none" in linear.output
    assert not (tmp_path / "b").exists()


def test_tag_with_candidates_marks_seen_and_embeds_once(held_out_bundle, posts_dir, tmp_path, monkeypatch):
    from hashtagger.bundle import runtime
    from hashtagger.tagging.options import TagOptions
    from hashtagger.tagging.run import tag

    hashtags = json.loads((held_out_bundle / "hashtags.json").read_text())
    seen, new = hashtags["vocab"][0], hashtags["held_out"][0]
    candidates = tmp_path / "tags.txt"
    candidates.write_text(f"#{new}\n{seen}\n#summerdrop26\n")
    posts = tmp_path / "posts"
    posts.mkdir()
    for image in sorted(posts_dir.glob("*.png"))[:40]:
        shutil.copy(image, posts / image.name)
        shutil.copy(image.with_suffix(".txt"), posts / image.with_suffix(".txt").name)
    embedded = []
    real_session = runtime.session

    def counting(path, *args, **kwargs):
        if path.name == "names.onnx":
            embedded.append(path)
        return real_session(path, *args, **kwargs)

    monkeypatch.setattr(runtime, "session", counting)
    out = tmp_path / "tags.jsonl"
    every = len(hashtags["vocab"]) + 2  # the vocabulary (one also a candidate) and the 2 new candidates
    options = TagOptions(
        model=held_out_bundle, device="cpu", top_k=every, batch_size=8, candidates=candidates, keep_own=True
    )
    summary = tag(posts, out, options=options, console=Console(file=io.StringIO()))
    assert summary.tagged == 40 and len(embedded) == 1  # 5 batches, one embedding of the candidates
    records = read_records(out, "jsonl")
    for r in records:
        tags = {t["tag"]: t["seen"] for t in r["hashtags"]}
        assert len(tags) == every
        assert tags[new] is False and tags["summerdrop26"] is False and tags[seen] is True
        assert all(tags[t] for t in hashtags["vocab"])
    # Without --candidates, entries carry no "seen" and only the vocabulary.
    plain = tag(
        posts,
        tmp_path / "plain.jsonl",
        options=TagOptions(model=held_out_bundle, device="cpu", keep_own=True),
        console=Console(file=io.StringIO()),
    )
    assert plain.tagged == 40
    first = read_records(tmp_path / "plain.jsonl", "jsonl")[0]
    assert {t["tag"] for t in first["hashtags"]} == set(hashtags["vocab"]) and "seen" not in first["hashtags"][0]


def test_candidates_errors_are_one_line(held_out_bundle, tiny_bundle, posts_dir, tmp_path):
    def run(bundle, text):
        candidates = tmp_path / "c.txt"
        candidates.write_text(text)
        result = CliRunner().invoke(
            app,
            [
                "tag",
                str(posts_dir),
                "--model",
                str(bundle),
                "--candidates",
                str(candidates),
                "-o",
                str(tmp_path / "o.json"),
            ],
            env={"COLUMNS": "300"},
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "o.json").exists()
        return lines[0]

    assert "no hashtags" in run(held_out_bundle, "\n")
    assert "is not a hashtag" in run(held_out_bundle, "fine\nnot fine\n")
    assert "--head names" in run(tiny_bundle, "sandy\n")  # a linear head cannot score names
    older = tmp_path / "older"
    shutil.copytree(held_out_bundle, older)
    info = json.loads((older / "bundle.json").read_text())
    del info["graphs"]["names"]
    (older / "bundle.json").write_text(json.dumps(info))
    (older / "names.onnx").unlink()
    write_manifest(older)
    assert "no name-embedding graph" in run(older, "sandy\n")


def test_unseen_needs_a_held_out_model(tiny_bundle, posts_dir):
    result = CliRunner().invoke(app, ["evaluate", str(posts_dir), "--model", str(tiny_bundle), "--unseen"])
    assert result.exit_code == 1 and "without --hold-out-tags" in result.stderr
