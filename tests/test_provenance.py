"""Every output says what produced it (model digest, hashtagger version, options, UTC time), JSON has one layout
in a file and on stdout, --resume reads the layouts before and after, and the progress bar neither breaks up
records on a terminal nor waits for a whole grouping window to move."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from hashtagger.cli.main import app
from hashtagger.errors import OutputError
from hashtagger.io.console import PostsPerSecond, count
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.provenance import read_provenance, sidecar
from hashtagger.tagging.ray import shards
from hashtagger.tagging.run import tag
from hashtagger.tagging.tagger import Tagger
from hashtagger.tagging.writers import read_records
from hashtagger.version import __version__

REPO = Path(__file__).resolve().parents[1]
EXPORTED, EXAMPLES = REPO / "exported", REPO / "examples" / "posts"
DIGEST = hashlib.sha256((EXPORTED / "manifest.json").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def posts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prov")
    for f in EXAMPLES.iterdir():
        if f.stem in ("marathon", "storm", "eclipse"):
            shutil.copy(f, root / f.name)
    return root


def run_cli(*args: object):
    result = CliRunner().invoke(app, ["tag", *map(str, args)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_every_output_records_model_version_options_and_time(posts, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"out.{fmt}"
    run_cli(posts, "--model", EXPORTED, "--device", "cpu", "--top-k", "2", "--exclude", "sandy", "-o", out)
    found = read_provenance(out, fmt)
    assert found is not None, "no provenance in the output"
    assert found["model_digest"] == DIGEST and found["hashtagger"] == __version__
    assert found["model"] == str(EXPORTED.resolve())
    assert found["options"]["top_k"] == 2 and found["options"]["exclude"] == ["sandy"]
    assert found["provider"] == "CPUExecutionProvider" and found["graphs"]
    assert datetime.fromisoformat(found["created"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert [r["id"] for r in read_records(out, fmt)] == ["eclipse.jpg", "marathon.jpg", "storm.jpg"]
    if fmt == "csv":  # the CSV itself stays a plain table (pandas, spreadsheets); the provenance is beside it
        assert sidecar(out).is_file()
        with open(out, newline="") as f:
            assert next(csv.reader(f)) == ["id", "status", "reason", "hashtags", "scores"]
        pandas = pytest.importorskip("pandas")
        assert list(pandas.read_csv(out)["id"]) == ["eclipse.jpg", "marathon.jpg", "storm.jpg"]


def test_json_has_one_layout_in_a_file_and_on_stdout(posts, tmp_path):
    out = tmp_path / "out.json"
    run_cli(posts, "--model", EXPORTED, "--device", "cpu", "-o", out)
    shown = run_cli(posts, "--model", EXPORTED, "--device", "cpu").stdout
    written = out.read_text()
    assert [line[:40] for line in written.splitlines()] == [line[:40] for line in shown.splitlines()]
    assert len(written.splitlines()) == 2 + 3 + 1  # provenance, "records": [, a line per record, ]}
    a, b = json.loads(written), json.loads(shown)
    assert a["records"] == b["records"] and a["provenance"]["model_digest"] == b["provenance"]["model_digest"]


def test_resume_reads_outputs_written_before_and_after_provenance(posts, tmp_path):
    first = next(Tagger.open(EXPORTED, device="cpu").tag_many(posts))
    old_json = tmp_path / "old.json"
    old_json.write_text(json.dumps([first], indent=1))  # the layout before: a bare array, one key per line
    old_jsonl = tmp_path / "old.jsonl"
    old_jsonl.write_text(json.dumps(first) + "\n")  # no provenance line
    for out, fmt in ((old_json, "json"), (old_jsonl, "jsonl")):
        summary = tag(posts, out, None, TagOptions(model=EXPORTED, device="cpu"), resume=True, console=quiet())
        assert summary.resumed == 1 and summary.tagged == 2
        assert [r["id"] for r in read_records(out, fmt)] == ["eclipse.jpg", "marathon.jpg", "storm.jpg"]
    assert read_provenance(old_json, "json")["model_digest"] == DIGEST  # rewritten whole, in the new layout
    new = tmp_path / "new.jsonl"
    options = TagOptions(model=EXPORTED, device="cpu")
    tag(posts, new, None, options, console=quiet())
    lines = new.read_text().splitlines()
    new.write_text("\n".join(lines[:2]) + "\n")  # interrupted after its first record
    tag(posts, new, None, options, resume=True, console=quiet())
    lines = new.read_text().splitlines()
    assert sum("provenance" in json.loads(line) for line in lines) == 1 and len(lines) == 4


def test_resume_refuses_an_output_of_another_model_or_other_options(posts, tmp_path):
    """--resume adds records only to an output of the same model and options (the Ray engine's shards refuse the
    same): one provenance over records of two models would misstate what made them (scripts/probe_inputs.py)."""
    out = tmp_path / "out.jsonl"
    options = TagOptions(model=EXPORTED, device="cpu")
    tag(posts, out, None, options, console=quiet())
    head, first, *_ = out.read_text().splitlines()
    other = json.loads(head)
    other["provenance"]["model_digest"] = "0" * 64
    out.write_text(f"{json.dumps(other)}\n{first}\n")
    before = out.read_bytes()
    with pytest.raises(OutputError, match="another model"):
        tag(posts, out, None, options, resume=True, console=quiet())
    assert out.read_bytes() == before
    out.write_text(f"{head}\n{first}\n")
    with pytest.raises(OutputError, match="top_k: 5 there, 2 now"):
        tag(posts, out, None, replace(options, top_k=2), resume=True, console=quiet())
    assert tag(posts, out, None, options, resume=True, console=quiet()).resumed == 1


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_breaks_up_records_shown_on_a_terminal(posts, monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    log = io.StringIO()
    tag(posts, None, None, TagOptions(model=EXPORTED, device="cpu"), console=Console(file=log, force_terminal=True))
    assert "━" not in log.getvalue() and "tagged" in log.getvalue()  # no bar; the summary still
    assert len(json.loads(screen.getvalue())["records"]) == 3
    log = io.StringIO()
    tag(
        posts,
        Path("/dev/null"),
        "jsonl",
        TagOptions(model=EXPORTED, device="cpu"),
        console=Console(file=log, force_terminal=True),
    )
    assert "━" in log.getvalue()  # records into a file: the bar is drawn


def test_the_bar_moves_per_scored_batch_not_per_window(posts):
    """Records of a grouping window come out together; the bar counts posts as each batch is scored."""
    events: list[str] = []
    tagger = Tagger.open(EXPORTED, device="cpu", batch_size=1, length_window=4)
    image = posts / "storm.jpg"
    # Windows of 1, then 4 posts, sorted by caption length within: the short third post is scored before the
    # second, whose record must come out first.
    pairs = [(image, "waves"), (image, "huge waves hitting the shore tonight, stay safe"), (image, "storm")]
    for _ in tagger.tag_many(pairs, on_scored=lambda n: events.append(f"s{n}")):
        events.append("r")
    assert events.count("s1") == 3 and events.count("r") == 3
    assert "s1,s1" in ",".join(events)  # two batches scored before their window's records came out


def test_posts_per_second_holds_steady_between_counts():
    clock = [0.0]
    progress = Progress(PostsPerSecond(), get_time=lambda: clock[0], disable=True)
    task = progress.add_task("tagging", total=100)
    clock[0] = 2.0
    count(progress, task, 10)
    column = PostsPerSecond()
    assert column.render(progress.tasks[0]).plain == "5.0 posts/s"
    clock[0] = 9.0  # a long batch in progress: the rate shown does not sink
    assert column.render(progress.tasks[0]).plain == "5.0 posts/s"


def test_a_ray_rerun_is_not_refused_for_its_start_time(tmp_path):
    old = {"model": "m", "model_digest": "d", "format": "jsonl", "hashtagger": __version__, "created": "then"}
    shards._check_same_run(tmp_path, old, {**old, "created": "now"})
    with pytest.raises(Exception, match="hashtagger"):
        shards._check_same_run(tmp_path, old, {**old, "hashtagger": "99.0"})
