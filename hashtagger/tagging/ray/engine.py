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
import warnings
from collections import Counter
from collections.abc import Iterator
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
from hashtagger.io.console import PostsPerSecond, count, progress_bar, quiet_logger, say
from hashtagger.io.extras import require
from hashtagger.io.memory import memory_limit
from hashtagger.tagging.options import TagOptions, resolve_threshold
from hashtagger.tagging.pipeline import Loaded, image_key, image_settings, loader
from hashtagger.tagging.provenance import provenance
from hashtagger.tagging.ray.partition import Shard, Source, partition, read_shard
from hashtagger.tagging.ray.shards import ShardFolder, shard_folder
from hashtagger.tagging.records import TagSummary
from hashtagger.tagging.run import run_inputs, summary_table
from hashtagger.tagging.tagger import Tagger
from hashtagger.tagging.writers import format_names, shard_formats

PROBE_SECONDS = 3.0  # an address that does not answer in this long is reported, not waited on for minutes
STORE_SHARE, STORE_MIN, STORE_MAX = 0.2, 128 << 20, 8 << 30  # a local Ray's object store (store_bytes)
# Ray Data restarts a dead actor forever by default: a run whose Tagger is OOM-killed each time it loads would loop
# without a message. A few restarts survive a lost node; more end the run (shards written are kept, to resume).
ACTOR_RESTARTS = 3


@dataclass
class RayOptions:
    address: str | None = None  # None: start Ray on this machine; "auto": the cluster this machine is part of
    actors: int | None = None  # Tagger actors; None: one per GPU share, else one
    workers_per_gpu: int = 1  # actors sharing each GPU
    shard_size: int = 1000  # posts per output file: a rerun redoes at most the shards in flight
    # Bytes of loaded posts (decoded pixels, pickled) a load task holds before handing a block on: its memory is
    # this budget plus one image, whatever the shard size and the model's input (Ray Data's target block size).
    task_bytes: int = 64 << 20
    startup_s: float = 60.0  # a started Ray whose workers do not answer in this long is reported, not waited on


def tag_on_ray(
    input: str | Path,
    output: Path,
    fmt: str | None = None,
    options: TagOptions | None = None,
    ray_options: RayOptions | None = None,
    console: Console | None = None,
    overwrite: bool = False,
) -> TagSummary:
    """Tag every post of `input` into the folder `output`, one file per shard; a rerun resumes. Raises a
    HashtaggerError for a run that cannot start (missing extra, unreachable cluster, another model's folder,
    `overwrite`: a shard folder is resumed, never replaced)."""
    require("ray", "tag --engine ray")
    if overwrite:
        raise OutputError(
            f"--engine ray resumes the shards in {output} and replaces none: drop --overwrite, and to start again "
            "remove the folder or choose another --output"
        )
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
        **provenance(bundle, options),  # model, its digest, version, options, time
        "format": fmt,
        "input": str(Path(input).resolve()),
        "posts": sum(s.count for s in shards),
        "shards": len(shards),
        "shard_size": ray_options.shard_size,
    }
    with shard_folder(output, manifest, run_inputs(input, options)) as folder:
        done = folder.done(len(shards))
        leftovers = folder.remove_leftovers()
        todo = [s for s in shards if s.index not in done]
        summary = TagSummary(resumed=sum(s.count for s in shards if s.index in done))
        if done or leftovers:
            say(
                console,
                f"resuming {output}: {len(done)} of {len(shards)} shards complete"
                + (f", {leftovers} unfinished shard files removed" if leftovers else ""),
            )
        if not todo:
            say(console, f"{output}: every shard is already complete")
            return summary
        started = connect(ray_options.address)
        try:
            check_workers(ray_options.startup_s)
            # Ray Data logs a failed run's tracebacks itself, and notes on its progress: this run's own messages say
            # what happened, in one line. (It sets its loggers' levels when first imported: imported before.)
            import ray.data

            with quiet_logger("ray.data", logging.CRITICAL):
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
    where = f"a Ray cluster at {address}" if address else "Ray on this machine"
    # A cluster sizes its own store; one started here gets a share of what this process may use (Ray alone
    # would take 30% of the machine's memory, ignoring a job's cgroup limit).
    store = None if address else store_bytes(memory_limit())
    try:
        ray.init(
            address=address,
            object_store_memory=store,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except Exception as e:  # Ray raises a bare Exception when its node times out during start-up
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
        raise ClusterError(f"cannot start {where}: {first}{_limit_hint()}") from None
    return True


def store_bytes(limit: int) -> int:
    """The object store of a Ray started on this machine: STORE_SHARE of the `limit` bytes this process may use,
    within Ray's own floor and STORE_MAX. Decoded posts wait there for the actors; a small store only makes load
    tasks wait (Ray Data's backpressure), a large one is memory the actors and decoders cannot have."""
    return int(min(max(STORE_SHARE * limit, STORE_MIN), STORE_MAX))


def check_workers(seconds: float) -> None:
    """ClusterError unless a Ray worker runs a task within `seconds`: a cluster that cannot start workers (an
    address-space limit, no CPU left) would otherwise leave the run at 0 posts forever."""
    import ray

    @ray.remote(num_cpus=0)
    def ping() -> int:
        return 1

    try:
        ray.get(ping.remote(), timeout=seconds)
    except Exception as e:  # GetTimeoutError, a worker that died at start-up
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
        why = f"Ray started, but no worker ran a task within {seconds:g} s ({first})"
        raise ClusterError(why + _limit_hint()) from None


def _limit_hint() -> str:
    """Why Ray may not start here: an address-space limit (`ulimit -v`, common on shared login nodes), which
    Ray's object store cannot map its memory under."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return ""
    if soft == resource.RLIM_INFINITY:
        return ""
    return (
        f"; this process has an address-space limit (ulimit -v {soft // 1024} KB) under which Ray's object store "
        "cannot start: raise it (ulimit -v unlimited) or tag without --engine ray"
    )


@dataclass(frozen=True)
class Plan:
    """What the run asks of the cluster: its actors, each one's GPU share, CPUs and ONNX Runtime threads, and the
    CPUs each load task holds."""

    actors: int
    gpu_share: float
    actor_cpus: float
    threads: int
    load_cpus: float


def actor_plan(options: TagOptions, ray_options: RayOptions, console: Console) -> Plan:
    """The plan for the cluster Ray sees. Actors and their threads are capped so that a CPU stays free for the
    tasks that read and decode: with every CPU held by an actor (or asked for beyond what exists) nothing feeds
    them, and the run would wait forever at 0 posts."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    load_cpus = 1.0 if cpus > 1 else 0.5  # one CPU: the actor and the loading share it
    if gpus and options.device != "cpu":
        per_gpu = max(1, ray_options.workers_per_gpu)
        actors = ray_options.actors or gpus * per_gpu
        return Plan(actors, 1.0 / per_gpu, min(1.0, cpus - load_cpus), options.threads or 1, load_cpus)
    threads = options.threads or 1
    spare = cpus - load_cpus
    if threads > spare:
        usable = max(1, int(spare))
        say(
            console,
            f"--threads {threads} would leave none of the cluster's {cpus} CPUs for reading and decoding; "
            f"using {usable}",
            "warning",
        )
        threads = usable
    actor_cpus = min(float(threads), spare)
    most = max(1, int(spare // actor_cpus))
    actors = ray_options.actors or 1
    if actors > most:
        say(
            console,
            f"{actors} actors of {threads} CPU each would leave no CPU of the {cpus} for reading and decoding; "
            f"using {most}",
            "warning",
        )
        actors = most
    return Plan(actors, 0.0, actor_cpus, threads, load_cpus)


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
    import ray
    import ray.data

    plan = actor_plan(options, ray_options, console)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours below counts posts; Ray's would interleave with it
    context.print_on_execution_start = False
    context.target_max_block_size = ray_options.task_bytes  # a load task hands on a block at this size
    batch = gpu.batch_size(options.batch_size, on_gpu=bool(plan.gpu_share))
    device = options.device if plan.gpu_share else "cpu"
    actor_options = replace(options, threads=plan.threads, device=device, batch_size=batch)
    counts = {s.index: s.count for s in todo}
    items = [{"shard": s.index, "spec": pickle.dumps(s)} for s in todo]
    with warnings.catch_warnings():
        # Ray 2.60 marks **ray_remote_args deprecated (removal announced for 2.64) and names no replacement for the
        # restart limits; the [ray] extra stays below 2.64.
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = (
            ray.data.from_items(items, override_num_blocks=len(items))  # a block per shard: a read task per shard
            .flat_map(partial(_load_shard, source=source, options=options, settings=settings), num_cpus=plan.load_cpus)
            .map_batches(
                TagActor,
                fn_constructor_kwargs={"options": actor_options},
                batch_size=batch * max(1, options.length_window),
                compute=ray.data.ActorPoolStrategy(size=plan.actors),
                num_cpus=plan.actor_cpus,
                num_gpus=plan.gpu_share,
                max_restarts=ACTOR_RESTARTS,
                max_task_retries=ACTOR_RESTARTS,
            )
        )
    share = f"{plan.gpu_share:g} GPU each" if plan.gpu_share else f"{plan.threads} thread(s) each"
    say(
        console,
        f"tagging {sum(counts.values())} posts in {len(todo)} shards on Ray: {plan.actors} actor(s), {share}; "
        f"load tasks hold up to {ray_options.task_bytes >> 20} MB of decoded images each, "
        f"the object store {int(ray.cluster_resources().get('object_store_memory', 0)) >> 20} MB",
    )
    pending: dict[int, dict[int, dict]] = {}  # shard -> position -> record, for shards not yet complete
    start = time.perf_counter()
    with progress_bar(console, PostsPerSecond()) as progress:
        task = progress.add_task("tagging", total=sum(counts.values()))
        try:
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
                    count(progress, task, counts[shard])
        except ray.exceptions.RayError as e:
            raise ClusterError(died_message(e, summary.processed, memory_limit())) from None
    summary.seconds = time.perf_counter() - start
    summary.posts_per_s = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    summary.provider = f"Ray ({plan.actors} actor{'s' if plan.actors > 1 else ''})"


def died_message(error: Exception, written: int, limit: int) -> str:
    """One line for a run Ray gave up on (a worker that kept dying, a task that kept failing), with the likely cause
    when this process is under a memory limit: the OOM killer, which kills without a message of its own."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
    cause = (
        f"; if a worker was killed for memory (the OOM killer leaves no message; the Tagger actor needs about 1.7 GB "
        f"with the default model), give the run more than its {limit >> 20} MB"
        if limit
        else ""
    )
    return (
        f"Ray stopped the run after {ACTOR_RESTARTS} restarts ({type(error).__name__}: {first}){cause}; the "
        f"{written} posts written are kept: the same command resumes"
    )


def _load_shard(
    row: dict[str, Any], source: Source, options: TagOptions, settings: ImageSettings
) -> Iterator[dict[str, Any]]:
    """A Ray task: the shard's posts, each with its image loaded, one at a time. A post and what loading its image
    gave (pixels, regions or the ImageError) travel pickled, as one binary cell: Arrow has no column type for that
    union. Yielded, not returned: Ray Data hands on a block whenever the rows reach its target size, so a task
    holds about that much, not a whole shard's pixels."""
    shard: Shard = pickle.loads(row["spec"])
    posts = read_shard(source, shard)
    load = loader(options, settings)
    keys = [image_key(post) for post in posts]
    left = Counter(k for k in keys if k is not None)  # each image loaded once, kept only while posts still need it
    kept: dict[Path, Loaded] = {}
    for pos, (post, key) in enumerate(zip(posts, keys, strict=True)):
        loaded = None
        if key is not None:
            loaded = kept.pop(key) if key in kept else load(key)
            left[key] -= 1
            if left[key]:
                kept[key] = loaded
        yield {"shard": shard.index, "pos": pos, "item": pickle.dumps((post, loaded))}


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
