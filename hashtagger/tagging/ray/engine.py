"""`tag --engine ray`: tagging on Ray Data, for inputs that outgrow one machine. No torch.

    shards of the input (partition.py; the driver holds their edges, not the posts)
      -> CPU tasks: read a shard's posts, decode its images (tagging.loader: the single-process code)
      -> an actor pool of Taggers (ONNX Runtime sessions opened once per actor; a GPU share each where the
         cluster has GPUs): map_batches with a class, records as the single-process `tag` makes them
      -> the driver gathers each shard's records and writes the shard whole into the output folder (shards.py)

The driver writes (not the actors), so the output folder only has to exist where the command runs, and it
holds only the records of shards in flight. A rerun into the same folder skips complete shards.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from rich.console import Console

from hashtagger.bundle import gpu
from hashtagger.bundle.format import read_bundle
from hashtagger.bundle.locate import find_model
from hashtagger.data.images import ImageSettings
from hashtagger.errors import ClusterError, DataError, OutputError
from hashtagger.io.console import PostsPerSecond, progress_bar
from hashtagger.io.extras import require
from hashtagger.tagging.options import TagOptions, resolve_threshold
from hashtagger.tagging.pipeline import Loaded, image_key, image_settings, loader
from hashtagger.tagging.ray.partition import Shard, Source, partition, read_shard
from hashtagger.tagging.ray.shards import ShardFolder, bundle_digest, shard_folder
from hashtagger.tagging.records import TagSummary
from hashtagger.tagging.run import summary_table
from hashtagger.tagging.tagger import Tagger
from hashtagger.tagging.writers import format_names, shard_formats

PROBE_SECONDS = 3.0  # an address that does not answer in this long is reported, not waited on for minutes


@dataclass
class RayOptions:
    address: str | None = None  # None: start Ray on this machine; "auto": the cluster this machine is part of
    actors: int | None = None  # Tagger actors; None: one per GPU share, else one
    workers_per_gpu: int = 1  # actors sharing each GPU
    shard_size: int = 1000  # posts per output file: a rerun redoes at most the shards in flight


def tag_on_ray(
    input: str | Path,
    output: Path,
    fmt: str | None = None,
    options: TagOptions | None = None,
    ray_options: RayOptions | None = None,
    console: Console | None = None,
) -> TagSummary:
    """Tag every post of `input` into the folder `output`, one file per shard; a rerun resumes. Raises a
    HashtaggerError for a run that cannot start (missing extra, unreachable cluster, another model's folder)."""
    require("ray", "tag --engine ray")
    options, ray_options = options or TagOptions(), ray_options or RayOptions()
    console = console or Console(stderr=True)
    fmt = (fmt or shard_formats()[0]).lower()
    if fmt not in shard_formats():
        raise OutputError(f"--engine ray writes shards as {format_names(shard_formats())}, not {fmt}")
    if options.candidates is not None or options.explain:
        raise DataError("--engine ray does not take --candidates or --explain; tag without --engine ray")
    model = find_model(options.model).path
    options = replace(options, model=model)  # the actors open the same bundle
    bundle = read_bundle(model)
    resolve_threshold(options.threshold, bundle)  # a bad value fails here, before Ray starts
    source, shards = partition(input, options.columns, ray_options.shard_size)
    if not shards:
        raise DataError(f"no posts in {input} (images: jpg, jpeg, png, webp, bmp, gif; CSV / Parquet: a row a post)")
    manifest = {
        "model": str(bundle.path),
        "model_digest": bundle_digest(bundle.path),
        "format": fmt,
        "input": str(Path(input).resolve()),
        "posts": sum(s.count for s in shards),
        "shards": len(shards),
        "shard_size": ray_options.shard_size,
        "options": {"top_k": options.top_k, "threshold": options.threshold, "variant": options.variant},
    }
    with shard_folder(output, manifest) as folder:
        done = folder.done(len(shards))
        leftovers = folder.remove_leftovers()
        todo = [s for s in shards if s.index not in done]
        summary = TagSummary(resumed=sum(s.count for s in shards if s.index in done))
        if done or leftovers:
            console.print(
                f"resuming {output}: {len(done)} of {len(shards)} shards complete"
                + (f", {leftovers} unfinished shard files removed" if leftovers else ""),
                highlight=False,
                soft_wrap=True,
            )
        if not todo:
            console.print(f"{output}: every shard is already complete", highlight=False, soft_wrap=True)
            return summary
        started = connect(ray_options.address)
        try:
            _run(source, todo, folder, image_settings(bundle, options), options, ray_options, summary, console)
        finally:
            if started:
                import ray

                ray.shutdown()
    console.print(summary_table(summary, output))
    return summary


def probe(address: str) -> None:
    """ClusterError unless something listens at a host:port or ray://host:port address (seconds, not minutes)."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ClusterError(f"--address {address}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as e:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({e.strerror or e}); start one with `ray start --head` "
            "or check --address"
        ) from None


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start Ray on this machine (None); whether this call started Ray (and
    must shut it down). A Ray already initialised in this process (a test, a notebook) is used as it is."""
    import ray

    if ray.is_initialized():
        return False
    if address and address != "auto":
        probe(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ClusterError(f"cannot connect to a Ray cluster at {address or 'this machine'}: {first}") from None
    return True


def actor_plan(options: TagOptions, ray_options: RayOptions, console: Console) -> tuple[int, float, int]:
    """(actors, GPUs per actor, CPUs per actor) for the cluster Ray sees. CPU actors are capped so that one CPU
    stays free for the tasks that read and decode: with every CPU held by an actor nothing feeds them, and the
    run would wait forever."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus and options.device != "cpu":
        per_gpu = max(1, ray_options.workers_per_gpu)
        return ray_options.actors or gpus * per_gpu, 1.0 / per_gpu, 1
    threads = options.threads or 1
    most = max(1, (cpus - 1) // threads)
    actors = ray_options.actors or 1
    if actors > most:
        console.print(
            f"[yellow]warning:[/yellow] {actors} actors of {threads} CPU each would leave no CPU of the {cpus} for "
            f"reading and decoding; using {most}",
            highlight=False,
            soft_wrap=True,
        )
        actors = most
    return actors, 0.0, threads


def _run(
    source: Source,
    todo: list[Shard],
    folder: ShardFolder,
    settings: ImageSettings,
    options: TagOptions,
    ray_options: RayOptions,
    summary: TagSummary,
    console: Console,
) -> None:
    import ray.data

    actors, gpu_share, threads = actor_plan(options, ray_options, console)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours below counts posts; Ray's would interleave with it
    context.print_on_execution_start = False
    batch = gpu.batch_size(options.batch_size, on_gpu=bool(gpu_share))
    actor_options = replace(options, threads=threads, device=options.device if gpu_share else "cpu", batch_size=batch)
    counts = {s.index: s.count for s in todo}
    items = [{"shard": s.index, "spec": pickle.dumps(s)} for s in todo]
    ds = (
        ray.data.from_items(items, override_num_blocks=len(items))  # a block per shard: each read task is one shard
        .flat_map(partial(_load_shard, source=source, options=options, settings=settings), num_cpus=1)
        .map_batches(
            TagActor,
            fn_constructor_kwargs={"options": actor_options},
            batch_size=batch * max(1, options.length_window),
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=threads,
            num_gpus=gpu_share,
        )
    )
    console.print(
        f"tagging {sum(counts.values())} posts in {len(todo)} shards on Ray: {actors} actor(s)"
        + (f", {gpu_share:g} GPU each" if gpu_share else f", {threads} CPU each"),
        highlight=False,
        soft_wrap=True,
    )
    pending: dict[int, dict[int, dict]] = {}  # shard -> position -> record, for shards not yet complete
    start = time.perf_counter()
    with progress_bar(console, PostsPerSecond()) as progress:
        task = progress.add_task("tagging", total=sum(counts.values()))
        for row in ds.iter_rows():
            if not summary.startup_s:
                summary.startup_s = time.perf_counter() - start
            shard = int(row["shard"])
            records = pending.setdefault(shard, {})
            records[int(row["pos"])] = json.loads(row["record"])
            if len(records) == counts[shard]:
                ordered = [records[i] for i in range(counts[shard])]
                folder.write(shard, ordered)
                del pending[shard]
                for record in ordered:
                    summary.count(record)
                progress.advance(task, counts[shard])
    summary.seconds = time.perf_counter() - start
    summary.posts_per_s = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    summary.provider = f"Ray ({actors} actor{'s' if actors > 1 else ''})"


def _load_shard(
    row: dict[str, Any], source: Source, options: TagOptions, settings: ImageSettings
) -> list[dict[str, Any]]:
    """A Ray task: the shard's posts, each with its image loaded. A post and what loading its image gave (pixels,
    regions or the ImageError) travel pickled, as one binary cell: Arrow has no column type for that union."""
    shard: Shard = pickle.loads(row["spec"])
    posts = read_shard(source, shard)
    load = loader(options, settings)
    # Each image once, however many of the shard's posts share it.
    loaded: dict[Path, Loaded] = {key: load(key) for key in dict.fromkeys(map(image_key, posts)) if key is not None}
    out = []
    for pos, post in enumerate(posts):
        key = image_key(post)
        item = (post, loaded[key] if key is not None else None)
        out.append({"shard": shard.index, "pos": pos, "item": pickle.dumps(item)})
    return out


class TagActor:
    """One Tagger per actor: the bundle's ONNX Runtime sessions are opened once and score every batch sent."""

    def __init__(self, options: TagOptions):
        self.tagger = Tagger(options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(cell) for cell in batch["item"]]
        posts = [post for post, _ in items]
        loaded = {image_key(post): value for post, value in items if value is not None}
        records = self.tagger.tag_loaded(posts, loaded)  # type: ignore[arg-type]  # keys of loaded images exist
        return {
            "shard": batch["shard"],
            "pos": batch["pos"],
            "record": np.array([json.dumps(r, ensure_ascii=False) for r in records], dtype=object),
        }
