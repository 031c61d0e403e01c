"""Training end to end on generated posts: both streams matter, resume is exact, bad input is one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from conftest import ANIMALS, COLOURS, make_posts, make_region_features
from rich.console import Console
from typer.testing import CliRunner

from hashtagger.bundle.format import read_bundle
from hashtagger.cli.main import app
from hashtagger.data.batching import Sample, split_examples
from hashtagger.data.posts import CsvColumns
from hashtagger.data.prep import PrepOptions, upgrade_train_args
from hashtagger.data.regions import FeatureCache, FeatureStore
from hashtagger.data.text import CleaningOptions, train_wordpiece
from hashtagger.errors import DataError
from hashtagger.evaluation.prediction import predict, sample_metrics, torch_scorer
from hashtagger.io.structs import from_dict
from hashtagger.models.checkpoint import load_checkpoint, load_training_state
from hashtagger.models.grid import fingerprint
from hashtagger.models.lxmert import ModelSpec, build_model
from hashtagger.training import setup, trainer
from hashtagger.training.config import RANGES, check_config
from hashtagger.training.train import TrainConfig, train
from hashtagger.training.trainer import Interrupted

QUIET = Console(stderr=True, quiet=True)


def held_out_precision(run: Path, blank: str | None) -> float:
    ckpt = load_checkpoint(run / "best")
    examples = split_examples(ckpt, "val") + split_examples(ckpt, "test")
    index = {t: i for i, t in enumerate(ckpt.vocab)}
    samples = [Sample(e.text, [index[t] for t in e.labels], d) for e, d in examples]
    store = FeatureStore(FeatureCache(run.parent / "feature-cache", fingerprint(ckpt.extractor, ckpt.extractor_spec)))
    score = torch_scorer(ckpt.model)
    probs = predict(score, samples, ckpt.tokenizer, store, len(ckpt.vocab), ckpt.max_length, blank=blank)
    return sample_metrics(probs, samples, ckpt.vocab)[1]["precision"]


def test_trained_model_needs_both_streams(tiny_run):
    """The label is colour (pixels) + animal (words): blanking either stream must cost precision."""
    full = held_out_precision(tiny_run, None)
    image_only = held_out_precision(tiny_run, "text")
    text_only = held_out_precision(tiny_run, "image")
    assert full > 0.6
    assert full > image_only + 0.05
    assert full > text_only + 0.05


def test_checkpoint_holds_what_later_commands_need(tiny_run):
    best = tiny_run / "best"
    info = json.loads((best / "hashtagger.json").read_text())
    assert sorted(info["vocab"]) == sorted(c + a for c in COLOURS for a in ANIMALS)
    assert set(json.loads((best / "split.json").read_text())) == {"train", "val", "test"}
    assert info["test_metrics"]["2"]["f1"] >= info["prior_test_metrics"]["2"]["f1"]
    assert info["history"][0]["prior_f1@2"] > 0
    for name in ("model.safetensors", "extractor.safetensors", "tokenizer.json"):
        assert (best / name).is_file()


def test_split_never_shares_an_image(tiny_run):
    ckpt = load_checkpoint(tiny_run / "best")
    parts = [set(v) for v in ckpt.split.values()]
    assert all(parts)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def small_config(data: Path, out: Path, **kw) -> TrainConfig:
    settings = dict(base_model="tiny", run_name="r", epochs=2, batch_size=8, lr=1e-3, new_lr=1e-3) | kw
    return TrainConfig(data=str(data), output=str(out), **settings)


@pytest.mark.slow
def test_interrupted_run_resumes_from_the_saved_step_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    data = make_posts(tmp_path / "posts", n=60, seed=1)
    # Modality dropout draws from (seed, step) and mean pooling has no state of its own: resume stays exact.
    options = dict(modality_dropout=0.25, pooling="mean")
    straight = train(small_config(data, tmp_path / "a", **options), QUIET)
    per_epoch = load_checkpoint(straight / "last").meta.history[0]["step"]

    calls = {"n": 0}
    real_make_batch = trainer.make_batch

    def interrupt_in_the_second_epoch(*args, **kwargs):  # after best/ exists, three steps into epoch 2
        calls["n"] += 1
        if calls["n"] == per_epoch + 3:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
        return real_make_batch(*args, **kwargs)

    monkeypatch.setattr(trainer, "make_batch", interrupt_in_the_second_epoch)
    with pytest.raises(Interrupted, match="--resume"):
        train(small_config(data, tmp_path / "b", **options), QUIET)
    monkeypatch.setattr(trainer, "make_batch", real_make_batch)
    saved = load_training_state(tmp_path / "b" / "r" / "last")
    assert int(saved["step"]) == per_epoch + 3 and int(saved["batch"]) == 3 and int(saved["epoch"]) == 1
    # The best score and loss come back exactly as compared (not rounded to float32), so the resumed run
    # keeps the same best/ as the uninterrupted one.
    first = load_checkpoint(tmp_path / "b" / "r" / "last").meta.history[0]
    assert float(saved["best_loss"]) == first["val_loss"] and float(saved["best_f1"]) == first["val_f1@2"]

    resumed = train(small_config(data, tmp_path / "b", **options), QUIET, resume=tmp_path / "b" / "r")
    final = load_training_state(resumed / "last")
    assert int(final["step"]) == int(load_training_state(straight / "last")["step"])
    for name in ("last", "best"):  # best/ is what export uses: it must be the same epoch's weights too
        a, b = load_checkpoint(straight / name), load_checkpoint(resumed / name)
        wa, wb = a.model.state_dict(), b.model.state_dict()
        assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa), name
    assert load_checkpoint(straight / "best").meta.val_metrics == load_checkpoint(resumed / "best").meta.val_metrics


@pytest.mark.slow
def test_unreadable_images_are_skipped_and_counted(tmp_path):
    data = make_posts(tmp_path / "posts", n=30, seed=2)
    (data / "broken.jpg").write_bytes(b"this is not a jpeg")
    (data / "broken.txt").write_text("a cat #redcat")
    (data / "empty.png").write_bytes(b"")
    (data / "empty.txt").write_text("a dog #bluedog")
    run = train(small_config(data, tmp_path / "out", epochs=1), QUIET)
    ckpt = load_checkpoint(run / "best")
    assert sum(len(v) for v in ckpt.split.values()) == 30


def test_language_side_can_start_from_a_bert_checkpoint(tmp_path):
    from transformers import BertConfig, BertModel

    tokenizer = train_wordpiece(["a small vocabulary of words for a tiny bert"] * 3, 120)
    bert = BertModel(
        BertConfig(
            vocab_size=tokenizer.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
        )
    )
    bert.save_pretrained(tmp_path / "bert")
    tokenizer.save(str(tmp_path / "bert" / "tokenizer.json"))

    spec = ModelSpec(base_model="tiny", num_labels=3, visual_feat_dim=32, vocab_size=tokenizer.get_vocab_size())
    model = build_model(spec, str(tmp_path / "bert"))
    assert model.config.l_layers == 2 and model.config.intermediate_size == 48
    ours, theirs = model.lxmert.encoder.layer[1].output.dense.weight, bert.encoder.layer[1].output.dense.weight
    assert torch.equal(ours, theirs)
    assert torch.equal(model.lxmert.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    new = set(model.new_parameters())
    assert "lxmert.encoder.layer.0.attention.self.query.weight" not in new
    assert "lxmert.encoder.x_layers.0.visual_attention.att.query.weight" in new and "head.bias" in new
    assert setup.pretrained_tokenizer(str(tmp_path / "bert")).get_vocab_size() == tokenizer.get_vocab_size()


def test_head_bias_starts_at_label_log_odds():
    """Without it a run learns the frequencies first (docs/design.md); check the init, not the trained value."""
    from hashtagger.models.lxmert import init_head_bias

    model = build_model(ModelSpec(num_labels=3, visual_feat_dim=32, vocab_size=50))
    init_head_bias(model, torch.tensor([0.5, 0.1, 0.01]))
    assert torch.allclose(model.head.bias, torch.log(torch.tensor([1.0, 1 / 9, 1 / 99])), atol=1e-5)


@pytest.mark.parametrize(
    "files, args, message",
    [
        ({}, ["nowhere"], "does not exist"),
        ({"p.csv": "image,text\na.jpg,hi\n"}, ["p.csv"], "no column 'caption'"),
        ({"p.csv": "image,caption\na.jpg,hello #x\n"}, ["p.csv", "--min-words", "50"], "no posts are left"),
        ({"p.csv": "image,caption\na.jpg,hello #x\n"}, ["p.csv", "--device", "cuda"], "CUDA"),
        ({"p.csv": "image,caption\na.jpg,hello #x\n"}, ["p.csv", "--name-dropout", "0.3"], "needs --head names"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, monkeypatch, files, args, message):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        Path(name).write_text(text)
    result = CliRunner().invoke(app, ["train", *args, "--epochs", "1"])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_precomputed_features_train_without_an_extractor(tmp_path):
    """Detector features from .npz files (e.g. the paper's BUTD boxes) instead of the grid extractor."""
    data = make_posts(tmp_path / "posts", n=40, seed=3)
    features = make_region_features(data, tmp_path / "npz")
    (features / "post0000.npz").unlink()  # a post without features is skipped like an unreadable image
    run = train(
        small_config(data, tmp_path / "out", epochs=1, extractor="precomputed", features_dir=str(features)), QUIET
    )
    ckpt = load_checkpoint(run / "best")
    assert ckpt.extractor is None and ckpt.extractor_spec.kind == "precomputed"
    assert ckpt.model.config.visual_feat_dim == 24
    assert sum(len(v) for v in ckpt.split.values()) == 39


@pytest.mark.slow
def test_default_model_without_the_hub_says_what_to_do(tmp_path):
    """The default is the paper's unc-nlp/lxmert-base-uncased; offline that is one clear line, not a traceback."""
    import subprocess
    import sys

    data = make_posts(tmp_path / "posts", n=12, seed=5)
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="300")  # offline: fail at once instead of waiting on the network
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashtagger.cli.main",
            "train",
            str(data),
            "--output",
            str(tmp_path / "runs"),
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1
    assert (
        "cannot load 'microsoft/resnet-50'" in result.stderr
        or "cannot load 'unc-nlp/lxmert-base-uncased'" in result.stderr
    )
    assert "offline CPU recipe: --preset cpu" in result.stderr
    assert "Traceback" not in result.stderr


def test_optimiser_decays_only_matrices_and_keeps_the_head_bias_at_its_prior():
    """nanoGPT's rule: weight decay on 2-D tensors only; biases, LayerNorm weights and the head's bias
    (initialised at the label log-odds) are never pulled towards zero. Every parameter is in one group."""
    model = build_model(ModelSpec(base_model="tiny", num_labels=5, visual_feat_dim=8, vocab_size=50))
    cfg = TrainConfig(data="-", lr=1e-4, new_lr=1e-3, weight_decay=0.1)
    new = [n for n, _ in model.named_parameters() if not n.startswith("lxmert.embeddings")]
    optimizer = setup.configure_optimizers(model, cfg, new)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters())) == len(group_of)
    for name, p in model.named_parameters():
        group = group_of[id(p)]
        assert group["weight_decay"] == (0.1 if p.dim() >= 2 else 0.0), name
        assert group["lr"] == (1e-3 if name in new else 1e-4), name
    assert group_of[id(model.head.bias)]["weight_decay"] == 0.0
    assert any("LayerNorm.weight" in n and group_of[id(p)]["weight_decay"] == 0.0 for n, p in model.named_parameters())


@pytest.mark.slow
def test_resume_with_other_epochs_says_the_schedule_is_replanned_or_refuses(tmp_path):
    data = make_posts(tmp_path / "posts", n=24, seed=3)
    out = tmp_path / "out"
    run = train(small_config(data, out, epochs=2), QUIET)
    console = Console(stderr=True, record=True, width=300)
    train(small_config(data, out, epochs=3), console, resume=run)
    said = console.export_text()
    assert "--epochs 3 replaces the run's 2" in said and "re-planned" in said
    last = load_checkpoint(run / "last")
    assert last.meta.args["epochs"] == 3 and len(last.meta.history) == 3
    with pytest.raises(DataError, match="already trained 3"):
        train(small_config(data, out, epochs=1), QUIET, resume=run)


def test_optimiser_decays_biases_and_norms_when_asked_but_never_the_head_bias():
    model = build_model(ModelSpec(base_model="tiny", num_labels=5, visual_feat_dim=8, vocab_size=50))
    cfg = TrainConfig(data="-", weight_decay=0.1, decay_norms=True)
    optimizer = setup.configure_optimizers(model, cfg, [])
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert group_of[id(p)]["weight_decay"] == (0.0 if name == "head.bias" else 0.1), name


def test_modality_dropout_blanks_posts_as_the_ablations_do_and_the_same_ones_at_the_same_step(tmp_path):
    from hashtagger.data.batching import make_batch

    cache = FeatureCache(tmp_path, "x")
    for d in ("a", "b"):
        cache.put(d, torch.ones(36, 8).numpy(), torch.zeros(36, 4).numpy())
    store = FeatureStore(cache)
    tokenizer = train_wordpiece(["a red cat on a mat"] * 4, 200)
    samples = [Sample("a red cat on a mat", [0], d) for d in ("a", "b", "a")]
    batch = make_batch(samples, tokenizer, store, 2, 16, ["image", "text", None])
    assert not batch["visual_feats"][0].any() and batch["visual_feats"][1].all() and batch["visual_feats"][2].all()
    assert batch["attention_mask"][1].sum() == 2 < batch["attention_mask"][0].sum() == batch["attention_mask"][2].sum()
    ablation = make_batch(samples[:1], tokenizer, store, 2, 16, "text")
    assert (ablation["input_ids"][0, :2] == batch["input_ids"][1, :2]).all()

    run = trainer.Trainer.__new__(trainer.Trainer)
    run.cfg, run.step = TrainConfig(data="-", modality_dropout=0.2, seed=3), 7
    draws = run.modality_blanks(10_000)
    assert draws == run.modality_blanks(10_000)
    assert 0.18 < draws.count("image") / 10_000 < 0.22 and 0.18 < draws.count("text") / 10_000 < 0.22
    run.step = 8
    assert draws != run.modality_blanks(10_000)
    run.cfg = TrainConfig(data="-")
    assert run.modality_blanks(3) == [None, None, None]


def test_mean_pooling_reads_only_the_caption_tokens():
    torch.manual_seed(0)
    model = build_model(ModelSpec(base_model="tiny", num_labels=3, visual_feat_dim=8, vocab_size=50, pooling="mean"))
    model.eval()
    ids = torch.tensor([[2, 7, 9, 3]])
    visual = (torch.randn(1, 36, 8), torch.rand(1, 36, 4))
    short = model(ids, torch.ones_like(ids), torch.zeros_like(ids), *visual)
    padded_ids = torch.tensor([[2, 7, 9, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    padded = model(padded_ids, mask, torch.zeros_like(padded_ids), *visual)
    assert torch.allclose(short, padded, atol=1e-5)
    cls = build_model(ModelSpec(base_model="tiny", num_labels=3, visual_feat_dim=8, vocab_size=50))
    cls.load_state_dict(model.state_dict())
    assert not torch.allclose(cls.eval()(ids, torch.ones_like(ids), torch.zeros_like(ids), *visual), short)


@pytest.mark.slow
def test_train_repeats_adds_repeated_posts_to_training_only(tmp_path):
    data = make_posts(tmp_path / "posts", n=40, seed=4)
    for i in range(0, 40, 2):  # a re-post of every other post, on the same image
        (data / f"rt{i:04d}.png").write_bytes((data / f"post{i:04d}.png").read_bytes())
        (data / f"rt{i:04d}.txt").write_text("RT " + (data / f"post{i:04d}.txt").read_text())
    cfg = small_config(data, tmp_path / "out", epochs=1)
    start = setup.begin(cfg, None, QUIET)
    plain = setup.prepare_samples(start, "cpu", QUIET)
    start = setup.begin(replace(cfg, train_repeats=True, run_name="r2"), None, QUIET)
    repeats = setup.prepare_samples(start, "cpu", QUIET)
    assert plain.split == repeats.split
    assert len(repeats.by_split["train"]) > len(plain.by_split["train"])
    for name in ("val", "test"):
        assert [s.text for s in repeats.by_split[name]] == [s.text for s in plain.by_split[name]]


def test_the_cli_and_the_library_read_one_table_of_ranges():
    """typer's min / max of every ranged `train` option are RANGES', and the library refuses the same values."""
    from typer.main import get_command

    params = {p.name: p for p in get_command(app).commands["train"].params}  # type: ignore[attr-defined]
    assert set(RANGES) <= set(params)
    for name, allowed in RANGES.items():
        assert (params[name].min, params[name].max) == (allowed.min, allowed.max), name
    with pytest.raises(DataError, match=r"--dropout must be between 0 and 0.95, not 0.97"):
        check_config(TrainConfig(data="posts", dropout=0.97))
    with pytest.raises(DataError, match=r"--vocab-size must be at least 1, not 0"):
        check_config(TrainConfig(data="posts", vocab_size=0))
    with pytest.raises(DataError, match="--name-dropout needs --head names"):
        check_config(TrainConfig(data="posts", name_dropout=0.5))
    check_config(TrainConfig(data="posts", dropout=0.95, head="names", name_dropout=0.5))


def test_train_flags_become_the_options_of_the_same_name(monkeypatch, tmp_path):
    import hashtagger.training.train as training

    seen: list[TrainConfig] = []
    monkeypatch.setattr(training, "train", lambda cfg, console, resume=None: seen.append(cfg))
    keep = ["--keep-mentions", "--keep-urls", "--keep-non-alpha", "--keep-trailing-hashtags", "--keep-reposts"]
    columns = ["--image-column", "img", "--caption-column", "text", "--hashtags-column", "tags"]
    args = ["train", str(tmp_path), *keep, "--drop-inline-hashtags", "--stop-tags", "nyc, boston", *columns]
    result = CliRunner().invoke(app, [*args, "--vocab-size", "7"])
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert cfg.data == str(tmp_path) and cfg.keep_mentions and cfg.drop_inline_hashtags and cfg.vocab_size == 7
    cleaning = CleaningOptions(False, False, False, False, keep_inline_hashtag_words=False)
    assert cfg.prep == PrepOptions(cleaning, 7, ("nyc", "boston"), drop_reposts=False, drop_duplicate_texts=False)
    assert cfg.columns == CsvColumns("img", "text", "tags")
    # Left at their defaults, the flags give the paper's preparation.
    assert TrainConfig(data="-").prep == PrepOptions() and TrainConfig(data="-").columns == CsvColumns()


def test_an_old_style_saved_config_reads_as_the_same_preparation(tiny_run, tmp_path):
    """Runs saved before TrainConfig took its flags' names nest `prep` (drop_* rules) and `columns`; exported
    bundles record them so. Both read back as the same cleaning, and such a run's checkpoint still loads."""
    shipped = json.loads((Path(__file__).parents[1] / "exported" / "bundle.json").read_text())["training"]
    cfg = TrainConfig(**upgrade_train_args(shipped))
    assert cfg.prep == from_dict(PrepOptions, shipped["prep"]) and cfg.columns == CsvColumns(**shipped["columns"])
    assert cfg.prep.cleaning == read_bundle(Path(__file__).parents[1] / "exported").cleaning

    old_prep = PrepOptions(
        CleaningOptions(drop_mentions=False, keep_inline_hashtag_words=False), 9, ("nyc",), 2, 3, False, False
    )
    old = tmp_path / "run"
    shutil.copytree(tiny_run, old)
    flat = upgrade_train_args({"prep": {}, "columns": {}})  # the keys that were nested

    def save_old_style(prep: PrepOptions) -> None:
        info = json.loads((old / "last" / "hashtagger.json").read_text())
        info["args"] = {k: v for k, v in info["args"].items() if k not in flat}
        info["args"] |= {"prep": asdict(prep), "columns": asdict(CsvColumns(caption="text"))}
        (old / "last" / "hashtagger.json").write_text(json.dumps(info | {"prep": asdict(prep)}))

    save_old_style(old_prep)
    resumed = setup.begin(TrainConfig(data="-"), old, QUIET).cfg
    assert resumed.prep == old_prep and resumed.columns == CsvColumns(caption="text")
    assert (resumed.keep_mentions, resumed.drop_inline_hashtags, resumed.keep_urls) == (True, True, False)
    save_old_style(replace(old_prep, cleaning=replace(old_prep.cleaning, lowercase=True)))  # no flag gives it
    with pytest.raises(DataError, match="cannot give; start a new run"):
        setup.begin(TrainConfig(data="-"), old, QUIET)
