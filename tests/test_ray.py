"""`tag --engine ray` on a local Ray of 2 CPUs, started once for the module: the same records as the single-process
path (folder -> JSONL shards, CSV -> Parquet shards, the CLI), a run interrupted after some shards and rerun ends
with every post exactly once, and each bad input (another model's folder, an unreachable address, too many actors,
no [ray] extra) is one line."""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_posts
from rich.console import Console
from test_parquet import write_tables
from typer.testing import CliRunner

from hashtagger.cli.main import app
from hashtagger.errors import ClusterError, OutputError
from hashtagger.io import extras
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.ray.shards import MANIFEST, ShardFolder
from hashtagger.tagging.tagger import Tagger

ray = pytest.importorskip("ray", reason="needs Ray (the [ray] extra: pip install -c constraints.txt -e '.[ray]')")
from hashtagger.tagging.ray import engine as raytag  # noqa: E402  (after the skip: it needs nothing from Ray to import, its runs do)

pytestmark = pytest.mark.slow
CORRUPT = (3, 77, 150)  # posts whose image is broken: truncated, text, empty


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def posts(tmp_path_factory) -> Path:
    """200 generated posts, 3 of them with a corrupt image."""
    root = make_posts(tmp_path_factory.mktemp("ray-posts"), n=200, seed=3, size=32)
    images = sorted(root.glob("*.png"))
    images[CORRUPT[0]].write_bytes(images[CORRUPT[0]].read_bytes()[:60])
    images[CORRUPT[1]].write_text("not an image")
    images[CORRUPT[2]].write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def options(tiny_bundle) -> TagOptions:
    # fp32: int8 LXMERT scales its activations per batch, and shards batch the posts differently
    return TagOptions(model=tiny_bundle, device="cpu", batch_size=16, variant="model")


def single_process(options: TagOptions, source: Path) -> list[dict]:
    return list(Tagger(options).tag_many(source))


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def assert_same(got: list[dict], expected: list[dict]) -> None:
    assert [(r["id"], r["status"], r["reason"]) for r in got] == [(r["id"], r["status"], r["reason"]) for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert [h["tag"] for h in a["hashtags"]] == [h["tag"] for h in b["hashtags"]], a["id"]
        for x, y in zip(a["hashtags"], b["hashtags"], strict=True):
            assert abs(x["score"] - y["score"]) <= 1e-5, a["id"]


def test_a_folder_gives_the_single_process_records(posts, options, tmp_path):
    expected = single_process(options, posts)
    assert sum(r["reason"] not in ("ok",) for r in expected) >= 3
    summary = raytag.tag_on_ray(posts, tmp_path / "out", None, options, raytag.RayOptions(shard_size=64), quiet())
    folder = ShardFolder(tmp_path / "out", "jsonl")
    assert sorted(p.name for p in (tmp_path / "out").glob("shard-*")) == [f"shard-0000{i}.jsonl" for i in range(4)]
    assert_same(list(folder.records()), expected)
    assert summary.processed == 200 and sum(summary.skipped.values()) == 3


def test_csv_to_parquet_shards_and_an_interrupted_run_resumes(posts, options, tmp_path, monkeypatch):
    posts_csv, _ = write_tables(posts, tmp_path / "tables")
    expected = single_process(options, posts_csv)
    out = tmp_path / "out"
    real_write, written = ShardFolder.write, []

    def write_then_stop(self, index, records):
        if len(written) == 2:
            raise KeyboardInterrupt  # preempted with two shards complete
        real_write(self, index, records)
        written.append(index)

    monkeypatch.setattr(ShardFolder, "write", write_then_stop)
    plan = raytag.RayOptions(shard_size=50)
    with pytest.raises(KeyboardInterrupt):
        raytag.tag_on_ray(posts_csv, out, "parquet", options, plan, quiet())
    monkeypatch.setattr(ShardFolder, "write", real_write)
    assert len(list(out.glob("shard-*.parquet"))) == 2
    (out / ".shard-00003.parquet.abc.tmp").write_bytes(b"half")  # what a kill during a write leaves
    console = quiet()
    summary = raytag.tag_on_ray(posts_csv, out, "parquet", options, plan, console)
    assert summary.resumed == 100 and summary.processed == 100
    assert "2 of 4 shards complete, 1 unfinished shard files removed" in console.file.getvalue()
    assert not list(out.glob(".shard-*"))
    assert_same(list(ShardFolder(out, "parquet").records()), expected)  # every post exactly once, in order


def test_the_cli_and_a_folder_of_another_model(posts, options, tiny_bundle, tmp_path):
    expected = single_process(options, posts)
    out = tmp_path / "out"
    args = ["tag", str(posts), "--model", str(tiny_bundle), "--device", "cpu", "--variant", "model"]
    args += ["--engine", "ray", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--shard-size", "120"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.stderr
    assert_same(list(ShardFolder(out, "jsonl").records()), expected)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest.update(model="/models/other", model_digest="0123456789abcdef")
    (out / MANIFEST).write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, [*args, "--shard-size", "120"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {out} holds shards of another model (/models/other, bundle digest 0123456789ab); "
        "tag into another --output, or remove the folder to start again"
    )


def test_an_unreachable_address_is_one_line_within_seconds():
    start = time.perf_counter()
    with pytest.raises(ClusterError, match=re.escape("no Ray cluster answers at ray://127.0.0.1:9 ")):
        raytag.probe("ray://127.0.0.1:9")
    with pytest.raises(ClusterError, match="expected auto, host:port or ray://host:port"):
        raytag.probe("somewhere")
    assert time.perf_counter() - start < raytag.PROBE_SECONDS


def test_actors_that_would_take_every_cpu_are_capped(options):
    console = quiet()
    plan = raytag.actor_plan(options, raytag.RayOptions(actors=2), console)
    assert (plan.actors, plan.gpu_share, plan.actor_cpus, plan.load_cpus) == (1, 0.0, 1, 1)  # one CPU each
    assert "would leave no CPU" in console.file.getvalue()


@pytest.mark.parametrize("threads", [2, 3, 64])
def test_threads_at_or_above_the_cluster_cpus_are_clamped_not_hung(posts, options, tmp_path, threads):
    """Issue 31: --threads N >= the cluster's CPUs asked for more than exists (or left none to load) and waited
    forever at 0 posts."""
    console = quiet()
    plan = raytag.actor_plan(replace(options, threads=threads), raytag.RayOptions(), console)
    assert plan.threads == 1 and plan.actor_cpus + plan.load_cpus <= 2
    assert f"--threads {threads} would leave none of the cluster's 2 CPUs" in console.file.getvalue()
    out = tmp_path / "out"
    summary = raytag.tag_on_ray(posts, out, None, replace(options, threads=threads), raytag.RayOptions(), quiet())
    assert summary.processed == 200


def test_overwrite_is_refused_and_a_run_that_never_started_leaves_nothing(posts, options, tmp_path, monkeypatch):
    with pytest.raises(OutputError, match="replaces none: drop --overwrite"):
        raytag.tag_on_ray(posts, tmp_path / "out", None, options, raytag.RayOptions(), quiet(), overwrite=True)

    def no_cluster(address):
        raise ClusterError("cannot start Ray on this machine: timed out")

    monkeypatch.setattr(raytag, "connect", no_cluster)
    with pytest.raises(ClusterError):
        raytag.tag_on_ray(posts, tmp_path / "out", None, options, raytag.RayOptions(shard_size=50), quiet())
    assert not (tmp_path / "out").exists()  # no manifest: the corrected rerun is not refused
    monkeypatch.undo()
    summary = raytag.tag_on_ray(posts, tmp_path / "out", None, options, raytag.RayOptions(shard_size=100), quiet())
    assert summary.processed == 200


def test_a_load_task_yields_its_posts_one_at_a_time(posts, options):
    """A shard's pixels are never held together: the task is a generator, and Ray Data hands on a block at
    RayOptions.task_bytes."""
    from hashtagger.tagging.pipeline import image_settings
    from hashtagger.tagging.ray.partition import partition

    source, shards = partition(posts, options.columns, 1000)
    bundle = Tagger(options).bundle
    rows = raytag._load_shard({"spec": pickle.dumps(shards[0])}, source, options, image_settings(bundle, options))
    first = next(rows)
    assert first["pos"] == 0 and isinstance(rows, types.GeneratorType)
    assert len(list(rows)) == 199


def test_a_worker_that_never_answers_is_one_line(monkeypatch):
    def never(*args, **kwargs):
        raise ray.exceptions.GetTimeoutError("Get timed out: some object(s) not ready.")

    monkeypatch.setattr(ray, "get", never)
    monkeypatch.setattr(raytag, "_limit_hint", lambda: "; this process has an address-space limit (ulimit -v 1 KB)")
    with pytest.raises(ClusterError, match=r"no worker ran a task within 5 s .*ulimit -v 1 KB"):
        raytag.check_workers(5)


def test_a_file_as_the_shard_folder_is_refused(posts, options, tmp_path):
    (tmp_path / "out.jsonl").write_text("")
    with pytest.raises(OutputError, match="writes a folder of shards"):
        raytag.tag_on_ray(posts, tmp_path / "out.jsonl", None, options, raytag.RayOptions(), quiet())


def test_without_the_ray_extra_it_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(app, ["tag", str(tmp_path), "--engine", "ray", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: tag --engine ray needs the [ray] extra (ray not installed): " + extras.install_command("ray")
    )


def test_a_ray_started_here_sizes_its_store_from_the_memory_limit(monkeypatch):
    """Issue 31: a Ray started inside a 4 GB job took 30% of the machine's memory for its object store."""
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(raytag, "memory_limit", lambda: 4 << 30)
    assert raytag.connect(None) and raytag.connect("auto")
    assert [c["object_store_memory"] for c in calls] == [raytag.store_bytes(4 << 30), None]


def test_a_worker_that_keeps_dying_ends_the_run_in_one_line(posts, options, tmp_path, monkeypatch):
    """Ray Data restarts a dead actor forever by default: in a 2 GiB limit the default model's Tagger was OOM-killed
    174 times in 10 minutes, 0 posts tagged, no message. Restarts are bounded, and the error Ray then gives up
    with is one line that keeps the shards written."""
    seen: dict = {}
    real = ray.data.Dataset.map_batches

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return real(self, *args, **kwargs)

    def dies(self):
        raise ray.exceptions.ActorDiedError()
        yield  # a generator, as iter_rows is

    monkeypatch.setattr(ray.data.Dataset, "map_batches", spy)
    monkeypatch.setattr(ray.data.Dataset, "iter_rows", dies)
    monkeypatch.setattr(raytag, "memory_limit", lambda: 2 << 30)
    expected = r"after 3 restarts \(ActorDiedError: .*more than its 2048 MB; the 0 posts written are kept"
    with pytest.raises(ClusterError, match=expected):
        raytag.tag_on_ray(posts, tmp_path / "out", None, options, raytag.RayOptions(shard_size=64), quiet())
    assert seen["max_restarts"] == seen["max_task_retries"] == raytag.ACTOR_RESTARTS == 3
