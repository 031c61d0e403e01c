"""`train --joint-wide`: a wide part over the caption's tokens trained with the model, inside its ONNX graph."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import make_posts
from rich.console import Console
from typer.testing import CliRunner

from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.token_wide import TokenWideTables
from hashtagger.cli.main import app
from hashtagger.data.batching import Sample
from hashtagger.data.regions import ExtractorSpec
from hashtagger.data.text import encode, train_wordpiece
from hashtagger.errors import DataError
from hashtagger.export.build import ExportOptions, export
from hashtagger.models.checkpoint import load_checkpoint, save_checkpoint
from hashtagger.models.lxmert import HashtagModel, ModelSpec
from hashtagger.models.wide import PRIME, TokenWide, build_wide
from hashtagger.training import setup
from hashtagger.training.config import TrainConfig, check_config
from hashtagger.training.train import train

QUIET = Console(stderr=True, quiet=True)


def test_wide_rows_come_from_the_training_captions_only(tmp_path):
    """A token gets a row when two training captions hold it; validation and test captions never count."""
    train_texts = ["tiger in the park", "a tiger again", "one zebra here", "the park"]
    held_out = ["zebra zebra", "a zebra", "zebra in the park"]
    samples = {
        "train": [Sample(t, [0], "a") for t in train_texts],
        "val": [Sample(t, [0], "b") for t in held_out],
        "test": [Sample(t, [0], "c") for t in held_out],
    }
    data = setup.Samples(["x"], {}, samples, None, None, ExtractorSpec(feature_dim=8))  # type: ignore[arg-type]
    cfg = TrainConfig(data="-", base_model="tiny", joint_wide=True)
    tokenizer, spec, model, new = setup.build_tokenizer_and_model(setup.Start(cfg, tmp_path), data)
    assert spec.joint_wide and model.wide is not None
    with_row = {tokenizer.id_to_token(i) for i in model.wide.rows.nonzero().flatten().tolist()}
    assert with_row == {"tiger", "park", "the"}  # "zebra": once in training, however often held out
    assert {"wide.unigrams.weight", "wide.pairs.weight"} <= set(new)


def test_caption_tokens_move_the_wide_logits_and_a_caption_without_them_gives_zero():
    texts = ["red cat in the park", "red dog in the park", "a cat"]
    tokenizer = train_wordpiece(texts, 200)
    wide = build_wide(texts, tokenizer, num_labels=3).eval()
    torch.nn.init.normal_(wide.unigrams.weight)
    torch.nn.init.normal_(wide.pairs.weight)
    captions = ["red cat", "red cat xyz red cat", "red", "", "unknown words only"]
    batch = {k: torch.from_numpy(v) for k, v in encode(tokenizer, captions, 16).items()}
    logits = wide(batch["input_ids"], batch["attention_mask"])
    assert not torch.allclose(logits[0], logits[2])  # "cat", and the pair "red cat", change the logits
    assert torch.equal(logits[0], logits[1])  # binary features: a repeated token or pair counts once
    assert torch.equal(logits[3], torch.zeros(3)) and torch.equal(logits[4], torch.zeros(3))
    padding = torch.zeros_like(batch["input_ids"][:1])
    assert torch.equal(wide(padding, padding), torch.zeros(1, 3))
    # Masked tokens are not the caption's, whatever their ids.
    assert torch.equal(wide(batch["input_ids"][:1], torch.zeros_like(batch["input_ids"][:1])), torch.zeros(1, 3))


def test_the_bundle_tables_score_every_caption_as_the_graph_wide_part_does():
    """bundle/token_wide.py (NumPy, for explain) against TokenWide: repeated tokens and pairs, tokens without a
    row, and, with 3 buckets, pairs whose bucket came up before, at a position where the pair was absent."""
    texts = ["red cat in the park", "red dog in the park", "a cat", "the red red cat cat"]
    tokenizer = train_wordpiece(texts, 200)
    rows = torch.zeros(tokenizer.get_vocab_size(), dtype=torch.long)
    rows[5:25] = torch.arange(1, 21)  # ids 5..24 have rows; others (specials, 0..4, 25..) none
    wide = TokenWide(len(rows), 20, num_labels=4, buckets=3).eval()
    wide.rows.copy_(rows)
    torch.manual_seed(0)
    for table in (wide.unigrams, wide.pairs):  # half-precision values: the tables are stored as float16
        table.weight.data = torch.randn_like(table.weight).half().float()
    wide.unigrams.weight.data[0] = 0
    tables = TokenWideTables(
        rows.numpy(), wide.unigrams.weight.detach().numpy(), wide.pairs.weight.detach().numpy(), PRIME
    )
    generator = torch.Generator().manual_seed(1)
    for length in (0, 1, 2, 5, 12, 30):
        for _ in range(20):
            ids = torch.randint(0, 30, (1, length), generator=generator)
            expected = wide(ids, torch.ones_like(ids))[0].detach().numpy()
            assert abs(tables.logits(ids[0].numpy()) - expected).max() < 1e-5, ids


def test_the_joint_wide_part_has_its_own_learning_rate_and_decays_as_other_matrices():
    texts = ["red cat", "red cat"]
    tokenizer = train_wordpiece(texts, 100)
    spec = ModelSpec(base_model="tiny", num_labels=2, visual_feat_dim=8, vocab_size=tokenizer.get_vocab_size())
    model = HashtagModel.create(replace(spec, joint_wide=True), None, None, texts, tokenizer, 0)
    cfg = TrainConfig(data="-", lr=1e-4, new_lr=1e-3, wide_lr=5e-2, weight_decay=0.1)
    optimizer = setup.configure_optimizers(model, cfg, model.new_parameters())
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert model.wide is not None
    for p in model.wide.parameters():
        assert (group_of[id(p)]["lr"], group_of[id(p)]["weight_decay"]) == (5e-2, 0.1)
    assert group_of[id(model.head.weight)]["lr"] == 1e-3


def test_joint_wide_with_a_names_head_is_refused_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="--joint-wide needs --head linear"):
        check_config(TrainConfig(data="posts", joint_wide=True, head="names"))
    with pytest.raises(DataError, match="--arch lxmert"):
        check_config(TrainConfig(data="posts", joint_wide=True, arch="coa"))
    monkeypatch.chdir(tmp_path)
    Path("p.csv").write_text("image,caption\na.jpg,hello #x\n")
    result = CliRunner().invoke(app, ["train", "p.csv", "--joint-wide", "--head", "names", "--epochs", "1"])
    assert result.exit_code != 0 and "--joint-wide needs --head linear" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_joint_wide_run_round_trips_its_checkpoint_and_exports_with_parity(tmp_path):
    data = make_posts(tmp_path / "posts", n=40, seed=6)
    cfg = TrainConfig(
        data=str(data), output=str(tmp_path / "runs"), base_model="tiny", run_name="w", epochs=2, batch_size=8
    )
    run = train(replace(cfg, joint_wide=True, wide_lr=0.05), QUIET)
    ckpt = load_checkpoint(run / "best")
    wide = ckpt.model.wide
    assert isinstance(wide, TokenWide) and wide.unigrams.weight.abs().sum() > 0  # trained from zero
    info = json.loads((run / "best" / "hashtagger.json").read_text())
    assert info["wide"] == {"n_rows": wide.n_rows, "buckets": wide.buckets} and int(wide.rows.max()) == wide.n_rows

    save_checkpoint(replace(ckpt, path=tmp_path / "copy"))
    again = load_checkpoint(tmp_path / "copy")
    ours, theirs = ckpt.model.state_dict(), again.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    options = ExportOptions(output=str(tmp_path / "bundle"), int8=True)
    export(run / "best", options, QUIET)  # raises ParityError unless ONNX Runtime agrees with PyTorch
    assert options.report["parity"]["max_abs_diff"] <= 1e-4
    bundle = read_bundle(tmp_path / "bundle")
    model = bundle.info.raw["model"]
    assert model["joint_wide"]["token_rows"] == wide.n_rows
    assert model["joint_wide"]["tables_parity"]["max_abs_diff"] <= 2e-2  # float16 tables against PyTorch
    assert bundle.token_wide is not None and bundle.token_wide.unigrams.shape == (wide.n_rows + 1, len(bundle.vocab))

    # explain names the caption terms the wide part weighs most for each hashtag, as the tables score them.
    image, caption = data / "post0000.png", (data / "post0000.txt").read_text().split(" #")[0]
    result = CliRunner().invoke(
        app,
        [
            "explain",
            str(image),
            "--caption",
            caption,
            "--model",
            str(tmp_path / "bundle"),
            "-o",
            str(tmp_path / "w.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("#")]
    assert lines and all("; wide part: " in line for line in lines), result.output
    pieces = {t.lstrip("#") for t in bundle.tokenizer.encode(caption).tokens}
    for line in lines:
        for term in line.split("; wide part: ")[1].split(", "):
            assert set(term.replace(" ", "").replace("##", "")) and any(p in term for p in pieces), term
