#!/usr/bin/env python
"""Posts/s of `tag --engine ray` with 1 and 2 CPU actors against the single-process `tag`, and the peak resident
memory of every process each run starts (the driver, the scoring actors, the read / decode task workers, Ray's own
services) plus the object store, on N generated posts and the bundle in --model.

    python benchmarks/ray_throughput.py --posts 500 --model tiny --processes      # smoke run (about a minute)
    python benchmarks/ray_throughput.py --posts 2000 --model tiny --workdir W --processes
    python benchmarks/ray_throughput.py --posts 100000 --model tiny --rows single,ray1 --workdir W --trace T.json

Posts: 256 distinct photo-like 640x480 JPEGs are written once into a `pool` folder beside the posts folder, and
the posts folder holds N names hard-linked to them (p0000000.jpg, ...), each with its own caption file
(p0000000.txt, tweet-length, with hashtags). Hard links rather than symlinks: the folder listing takes any
regular file, but `tag` keys images by their resolved path, so N symlinks to 256 files would be decoded 256
times per shard instead of N times; hard links are N distinct paths, so every post costs a real decode, as N
distinct files would, without writing N JPEGs. Where the file system refuses hard links, the images are copied.

`--model tiny` builds a tiny random-weight bundle (benchmarks/tag_throughput.py's `--size tiny` checkpoint,
exported fp32; kept in --workdir when given): the question here is the pipeline's memory, not the model's.

Each row runs in a fresh process (this script with --run). While it runs, this process samples every --sample-s
seconds, from /proc, every process of the row's Ray session (the --run child and its descendants: Ray started
locally is the driver's child, its workers the raylet's), classified by process title:

  driver    the --run child (for `single`, the whole single-process `tag`)
  actor     the scoring actors: Ray Data titles them `ray::MapWorker(MapBatches(TagActor))`, TagActor being the
            actor class in hashtagger/raytag.py
  workers   the tasks that read shards and decode images (`ray::FlatMap(_load_shard)`) and idle pooled workers
            (`ray::IDLE`, or not yet titled)
  helpers   Ray Data's own actors (`ray::_StatsActor`, `ray::_AutoscalingCoordinatorActor`,
            `ray::ActorLocationTracker`): any other `ray::NAME`
  services  the rest of the tree: raylet, gcs_server, the dashboard and runtime-env agents (titled
            `ray::DashboardAgent`, `ray::RuntimeEnvAgent`), log monitor, autoscaler monitor, ...

A worker keeps the highest class it was seen in (workers < helpers < actor): the actor's process is titled
`ray::IDLE` between calls.

For each class: the peak over samples of the class's summed RSS (VmRSS) and of its summed anonymous RSS
(RssAnon: RSS without file-backed pages and without the shared-memory pages of the object store, which every
process that maps an object counts again); when the peak was reached and when the class first came within 5% of
it (fractions of the row's sampled time, with the posts written by then); how much the second half of the run
added to the first half's peak; and CPU time per post (utime + stime from /proc/PID/stat, at each process's last
sample; "marginal": only while posts are being written, start-up left out). The object store's use is read in
the driver, every --sample-s seconds, by a thread: `ray.cluster_resources()` less `ray.available_resources()`
for `object_store_memory`, which the raylet lowers by what the store holds (offline; Ray's `memory_summary`
needs grpcio, which ray[data] does not install, and another process would need the session's auth token). The
driver's exact peak (its VmHWM at exit) is printed too. --trace FILE.json keeps every sample (seconds, posts
written so far, MiB and CPU seconds per class, the object store's readings), --processes lists each process
seen with its class, titles, peak RSS and CPU seconds.

posts/s is from the pipeline's start (actors starting included) to the last shard written; Ray's own start-up
is not counted. Ray runs locally with every core this machine has. Also printed: what the driver's folder
listing holds per post (tracemalloc over hashtagger.tagging.ray.partition.partition), where a
driver's growth would come from.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

ACTOR_CLASS = "TagActor"  # hashtagger.tagging.ray.engine's actor class, as it appears in its workers' process titles
CLASSES = ("driver", "actor", "workers", "helpers", "services")
ROWS = {  # --rows name: (label, engine, actors)
    "single": ("single process", "single", 1),
    "ray1": ("ray, 1 actor", "ray", 1),
    "ray2": ("ray, 2 actors", "ray", 2),
}
DISTINCT_IMAGES = 256
TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


# ----------------------------------------------------------------------------------------------- posts, model


def make_posts(work: Path, n: int, seed: int = 0) -> Path:
    """work/pool: DISTINCT_IMAGES JPEGs with captions; work/posts: n hard links to them, each with its caption.
    Reused when work/posts was made for the same n and seed."""
    import numpy as np
    import tag_throughput as tt  # beside this script

    pool, posts, marker = work / "pool", work / "posts", work / "posts.json"
    wanted = {"posts": n, "seed": seed, "distinct": DISTINCT_IMAGES}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return posts
    pool.mkdir(parents=True, exist_ok=True)
    posts.mkdir(parents=True, exist_ok=True)
    for old in posts.iterdir():
        old.unlink()
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    tags = tt.hashtag_pool()
    weights = [1 / (i + 1) for i in range(len(tags))]

    def caption() -> str:
        words = [rng.choice(tt.WORDS) for _ in range(tt.caption_words(rng, "tweets"))]
        if words:
            words.insert(rng.randrange(len(words) + 1), "#" + rng.choice(tags))
        trailing = " ".join("#" + t for t in dict.fromkeys(rng.choices(tags, weights, k=rng.randint(3, 6))))
        return (" ".join(words).capitalize() + ". " if words else "") + trailing

    for i in range(DISTINCT_IMAGES):
        tt.make_image(nprng).save(pool / f"img{i:03d}.jpg", quality=90)
        (pool / f"img{i:03d}.txt").write_text(caption())
    for i in range(n):
        name = posts / f"p{i:07d}.jpg"
        source = pool / f"img{i % DISTINCT_IMAGES:03d}.jpg"
        try:
            os.link(source, name)
        except OSError:
            name.write_bytes(source.read_bytes())
        (posts / f"p{i:07d}.txt").write_text(caption())
    marker.write_text(json.dumps(wanted))
    return posts


def tiny_bundle(work: Path) -> Path:
    """A tiny random-weight bundle (fp32), built from the pool's posts; reused when work/bundle exists."""
    bundle = work / "bundle"
    if (bundle / "bundle.json").exists():
        return bundle
    import tag_throughput as tt

    from hashtagger.export.build import ExportOptions, ParityError, export

    ckpt = tt.build_checkpoint(work / "checkpoint", "tiny", work / "pool")
    options = ExportOptions(output=str(bundle), int8=False, fp16=False, parity_posts=16)
    try:
        return Path(export(ckpt, options, tt.QUIET))
    except ParityError:  # the centred random head multiplies rounding noise (see tag_throughput.py)
        options.tolerance = 1e-3
        return Path(export(ckpt, options, tt.QUIET))


def listing_cost(posts: Path, shard_size: int) -> dict:
    """Bytes per post the driver holds for a folder's shards (and at most while listing it), and the shard
    specs as pickled into the pipeline's items."""
    from hashtagger.data.posts import CsvColumns
    from hashtagger.tagging.ray.partition import partition

    tracemalloc.start()
    _, shards = partition(posts, CsvColumns(), shard_size)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = max(1, sum(s.count for s in shards))
    pickled = sum(len(pickle.dumps(s)) for s in shards)
    return {"held_b_per_post": held / n, "peak_b_per_post": peak / n, "pickled_b_per_post": pickled / n}


# ----------------------------------------------------------------------------------------------- one row


def run_one(kind: str, actors: int, posts: Path, out: Path, args) -> dict:
    """One row, in this process: tag `posts` into `out`; posts/s, this driver's peak RSS and CPU time, and (Ray)
    the object store's use over time."""
    from rich.console import Console

    from hashtagger.tagging.options import TagOptions
    from hashtagger.tagging.ray.engine import RayOptions, connect, tag_on_ray
    from hashtagger.tagging.run import tag

    options = TagOptions(model=args.model, device="cpu", batch_size=args.batch_size)
    quiet = Console(file=io.StringIO())
    if kind == "single":
        summary = tag(posts, out / "tags.jsonl", None, options, console=quiet)
    else:
        import ray

        connect(None)  # started here, so that the watcher below sees the session tag_on_ray uses
        stop, store = threading.Event(), []
        watcher = threading.Thread(target=watch_object_store, args=(stop, store, args.sample_s), daemon=True)
        watcher.start()
        ray_options = RayOptions(actors=actors, shard_size=args.shard_size)
        try:
            summary = tag_on_ray(posts, out / "shards", None, options, ray_options, quiet)
        finally:
            stop.set()
            watcher.join()
            ray.shutdown()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would be the parent's if that was larger.
    status = Path("/proc/self/status").read_text().splitlines()
    hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return {
        "object_store": store if kind != "single" else [],
        "posts_per_s": summary.posts_per_s,
        "seconds": summary.seconds,
        "rss_mib": hwm_kib / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "ran": summary.provider,
    }


def watch_object_store(stop: threading.Event, store: list, every: float) -> None:
    """[wall time, MiB] of the object store in use, every `every` s: the total less the available
    `object_store_memory` resource, which the raylet lowers by what the store holds (ray.available_resources:
    a GCS call, offline; Ray's own `memory_summary` needs grpcio, which ray[data] does not install)."""
    import ray

    total = ray.cluster_resources().get("object_store_memory", 0.0)
    while not stop.is_set():
        try:
            available = ray.available_resources().get("object_store_memory", total)
        except Exception:  # the session is shutting down
            return
        store.append([round(time.time(), 3), round((total - available) / MIB, 1)])
        stop.wait(every)


# ----------------------------------------------------------------------------------------------- sampling


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """root and its descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


SERVICE_TITLES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")  # Ray's agents, titled like workers


def classify(pid: int, root: int, title: str) -> str:
    """A process's class from its title (what setproctitle left in /proc/PID/cmdline)."""
    if pid == root:
        return "driver"
    if ACTOR_CLASS in title:
        return "actor"
    if title.startswith(SERVICE_TITLES):
        return "services"
    if title.startswith("ray::"):
        name = title[5:].split()[0] if title[5:].strip() else ""
        # tasks are titled by their operator (`ray::FlatMap(_load_shard)`), pooled workers `ray::IDLE`;
        # any other name is an actor of Ray Data's own (`ray::_StatsActor`, `ray::ActorLocationTracker`, ...)
        return "workers" if "(" in name or name.startswith("IDLE") else "helpers"
    if title.split()[1:2] and title.split()[1].endswith("default_worker.py"):  # a worker not yet titled
        return "workers"
    return "services"


RANK = {"workers": 0, "helpers": 1, "actor": 2}  # a worker keeps the highest class it was seen in


@dataclass
class Proc:
    cls: str
    titles: set[str] = field(default_factory=set)
    peak_rss: float = 0.0
    hwm: float = 0.0
    cpu_s: float = 0.0


class Sampler:
    """Samples one row's process tree; keeps per-class sums per sample and per-process figures."""

    def __init__(self, root: int, out: Path, total: int, shard_size: int):
        self.root, self.out, self.total, self.shard_size = root, out, total, shard_size
        self.samples: list[dict] = []
        self.procs: dict[int, Proc] = {}
        self.started = time.perf_counter()
        self.wall = time.time()
        self.lines, self.offset = 0, 0

    def posts_written(self) -> int | None:
        shards = self.out / "shards"
        if shards.is_dir():
            return min(self.total, self.shard_size * sum(1 for _ in shards.glob("shard-*.jsonl")))
        single = self.out / "tags.jsonl"
        if single.exists():
            with open(single, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
            self.offset += len(chunk)
            self.lines += chunk.count(b"\n")
            return self.lines
        return None

    def sample(self) -> None:
        t = time.perf_counter() - self.started
        rss, anon, count = dict.fromkeys(CLASSES, 0.0), dict.fromkeys(CLASSES, 0.0), dict.fromkeys(CLASSES, 0)
        for pid in process_tree(self.root):
            status, stat = _read(f"/proc/{pid}/status"), _read(f"/proc/{pid}/stat")
            cmdline = _read(f"/proc/{pid}/cmdline")
            if not status or not stat or cmdline is None:
                continue  # gone
            fields = {k: v for k, _, v in (line.partition(":") for line in status.splitlines())}
            if "VmRSS" not in fields:
                continue  # a zombie
            kib = {k: int(fields.get(k, "0 kB").split()[0]) for k in ("VmRSS", "RssAnon", "VmHWM")}
            title = cmdline.replace("\0", " ").strip() or fields.get("Name", "").strip()
            cls = classify(pid, self.root, title)
            if pid in self.procs and RANK.get(self.procs[pid].cls, -1) > RANK.get(cls, -1):
                cls = self.procs[pid].cls  # an actor seen between calls titled ray::IDLE stays an actor
            rest = stat.rsplit(")", 1)[1].split()
            cpu = (int(rest[11]) + int(rest[12])) / TICKS  # utime, stime
            proc = self.procs.setdefault(pid, Proc(cls))
            proc.cls = cls
            proc.titles.add(title[:90])
            proc.peak_rss = max(proc.peak_rss, kib["VmRSS"] / 1024)
            proc.hwm = max(proc.hwm, kib["VmHWM"] / 1024)
            proc.cpu_s = cpu
            rss[cls] += kib["VmRSS"] / 1024
            anon[cls] += kib["RssAnon"] / 1024
            count[cls] += 1
        self.samples.append(
            {
                "t": round(t, 2),
                "posts": self.posts_written(),
                "rss_mib": {k: round(v, 1) for k, v in rss.items() if count[k]},
                "anon_mib": {k: round(v, 1) for k, v in anon.items() if count[k]},
                "processes": {k: v for k, v in count.items() if v},
                "cpu_s": {  # cumulative, processes gone included
                    k: round(sum(p.cpu_s for p in self.procs.values() if p.cls == k), 2) for k in CLASSES if count[k]
                },
            }
        )

    def marginal_cpu(self, cls: str) -> float | None:
        """CPU ms per post while posts are being written: from the first sample with posts written to the first
        with all of them, so that start-up (imports, sessions, Ray) is left out. None when too few samples."""
        known = [s for s in self.samples if s["posts"] and cls in s["cpu_s"]]
        if not known:
            return None
        first = known[0]
        last = next(s for s in known if s["posts"] == known[-1]["posts"])
        if last["posts"] <= first["posts"]:
            return None
        return 1000 * (last["cpu_s"][cls] - first["cpu_s"][cls]) / (last["posts"] - first["posts"])

    def posts_at(self, t: float) -> int | None:
        """Posts written by the last sample at or before `t`."""
        return next((s["posts"] for s in reversed(self.samples) if s["t"] <= t), None)

    def summary(self, posts: int, store: list) -> dict:
        """Per class: peak RSS / anon MiB, where in the run it was reached, second-half growth, CPU ms/post;
        the object store likewise from the driver's readings `store` ([wall time, MiB])."""
        samples = [s for s in self.samples if s["rss_mib"]]
        if not samples:
            return {}
        end = samples[-1]["t"] or 1.0
        out: dict = {}
        for cls in CLASSES:
            points = [(s["t"], s["rss_mib"][cls]) for s in samples if cls in s["rss_mib"]]
            if points:
                procs = [p for p in self.procs.values() if p.cls == cls]
                out[cls] = series_stats(points, end, self.posts_at) | {
                    "anon_peak_mib": max(s["anon_mib"].get(cls, 0.0) for s in samples),
                    "processes": len(procs),
                    "cpu_ms_per_post": 1000 * sum(p.cpu_s for p in procs) / max(1, posts),
                    "marginal_cpu_ms_per_post": self.marginal_cpu(cls),
                }
        points = [(round(wall - self.wall, 2), mib) for wall, mib in store]
        if points:
            out["object_store"] = series_stats(points, end, self.posts_at)
        return out


def series_stats(points: list[tuple[float, float]], end: float, posts_at) -> dict:
    """Peak of a [(t, MiB)] series; when it was reached and when the series first came within 5% of it (fractions
    of the row's sampled time `end`, and posts written by then); what the second half added to the first's peak."""
    peak_t, peak = max(points, key=lambda p: p[1])
    reached = next(t for t, v in points if v >= 0.95 * peak)
    first = max((v for t, v in points if t < end / 2), default=0.0)
    second = max((v for t, v in points if t >= end / 2), default=0.0)
    return {
        "peak_mib": peak,
        "peak_at": min(1.0, peak_t / end),
        "reached_at": min(1.0, reached / end),
        "reached_posts": posts_at(reached),  # written by then (None: none known yet)
        "second_half_mib": second - first,
    }


def run_row(row: str, posts_dir: Path, model: str, total: int, args) -> dict:
    _, kind, actors = ROWS[row]
    with tempfile.TemporaryDirectory(prefix="hashtagger-ray-bench-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        command = [sys.executable, __file__, "--run", kind, "--actors", str(actors), "--posts-dir", str(posts_dir)]
        command += ["--out-dir", str(out), "--model", model, "--sample-s", str(args.sample_s)]
        command += ["--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size)]
        with open(Path(tmp) / "stderr", "w+") as err:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
            sampler = Sampler(child.pid, out, total, args.shard_size)
            while child.poll() is None:
                tick = time.perf_counter()
                sampler.sample()
                time.sleep(max(0.0, args.sample_s - (time.perf_counter() - tick)))
            stdout = child.stdout.read() if child.stdout else ""
            err.seek(0)
            errors = err.read()
        if child.returncode:
            return {"failed": (errors.strip().splitlines() or [f"exit {child.returncode}"])[-1]}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["classes"] = sampler.summary(total, result["object_store"])
    result["samples"] = sampler.samples
    result["processes"] = {
        str(pid): {"class": p.cls, "titles": sorted(p.titles), "peak_rss_mib": round(p.peak_rss, 1),
                   "vm_hwm_mib": round(p.hwm, 1), "cpu_s": round(p.cpu_s, 2)}
        for pid, p in sampler.procs.items()
    }  # fmt: skip
    return result


# ----------------------------------------------------------------------------------------------- main


def print_row(name: str, result: dict, show_processes: bool) -> None:
    if "failed" in result:
        print(f"{name}: failed: {result['failed']}")
        return
    print(
        f"\n{name}: {result['posts_per_s']:.1f} posts/s ({result['seconds']:.1f} s; {result['ran']}), "
        f"driver peak (VmHWM) {result['rss_mib']:.0f} MiB, {len(result['samples'])} samples"
    )
    print(f"  {'class':<13}{'procs':>6}{'peak RSS':>10}{'anon':>8}{'peak at':>9}{'95% at (posts)':>18}"
          f"{'2nd half':>10}{'CPU ms/post':>13}{'marginal':>10}")  # fmt: skip
    for cls, c in result["classes"].items():
        procs = f"{c['processes']:>6}" if "processes" in c else f"{'':>6}"
        anon = f"{c['anon_peak_mib']:>8.0f}" if "anon_peak_mib" in c else f"{'':>8}"
        cpu = f"{c['cpu_ms_per_post']:>13.2f}" if "cpu_ms_per_post" in c else ""
        if c.get("marginal_cpu_ms_per_post") is not None:
            cpu += f"{c['marginal_cpu_ms_per_post']:>10.2f}"
        reached = f"{c['reached_at']:>9.0%} ({c['reached_posts'] or 0:>6})"
        print(
            f"  {cls:<13}{procs}{c['peak_mib']:>10.0f}{anon}{c['peak_at']:>9.0%}{reached}"
            f"{c['second_half_mib']:>+10.0f}{cpu}"
        )
    if show_processes:
        for pid, p in sorted(result["processes"].items(), key=lambda kv: (CLASSES.index(kv[1]["class"]), kv[0])):
            print(
                f"    {pid:>8} {p['class']:<9}{p['peak_rss_mib']:>7.0f} MiB (VmHWM {p['vm_hwm_mib']:.0f})"
                f"{p['cpu_s']:>8.1f} s CPU  {' | '.join(p['titles'])}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--model", default="exported", help="a bundle, or `tiny`: a tiny random-weight bundle")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--rows", default="single,ray1,ray2", help="comma-separated: single, ray1, ray2")
    parser.add_argument("--sample-s", type=float, default=1.0, help="seconds between memory samples")
    parser.add_argument("--trace", help="write every sample (and the summaries) to this JSON file")
    parser.add_argument("--processes", action="store_true", help="list each process seen, its class and titles")
    parser.add_argument("--workdir", help="keep the posts (and the tiny bundle) here, reused by later runs")
    parser.add_argument("--run", choices=["single", "ray"], help=argparse.SUPPRESS)  # one row, in a child process
    parser.add_argument("--actors", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--posts-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        row = run_one(args.run, args.actors, Path(args.posts_dir), Path(args.out_dir), args)
        print(json.dumps(row))
        return
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := [r for r in rows if r not in ROWS]:
        parser.error(f"--rows: unknown {', '.join(unknown)} (choose from {', '.join(ROWS)})")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hashtagger-ray-bench-"))
    try:
        started = time.perf_counter()
        posts_dir = make_posts(work, args.posts)
        print(f"{args.posts} posts ({DISTINCT_IMAGES} distinct images) ready in {time.perf_counter() - started:.1f} s")
        model = args.model
        if model == "tiny":
            started = time.perf_counter()
            model = str(tiny_bundle(work))
            print(f"tiny random-weight bundle {model} ready in {time.perf_counter() - started:.1f} s")
        listing = listing_cost(posts_dir, args.shard_size)
        print(
            f"folder listing in the driver: {listing['held_b_per_post']:.0f} B/post held "
            f"({listing['peak_b_per_post']:.0f} B/post at most while listing), shard specs pickled "
            f"{listing['pickled_b_per_post']:.0f} B/post; load average {os.getloadavg()[0]:.2f}"
        )
        results = {}
        for row in rows:
            results[row] = run_row(row, posts_dir, model, args.posts, args)
            print_row(ROWS[row][0], results[row], args.processes)
        print(f"\nload average {os.getloadavg()[0]:.2f}")
        if args.trace:
            trace = {"posts": args.posts, "model": args.model, "sample_s": args.sample_s, "listing": listing,
                     "rows": results}  # fmt: skip
            Path(args.trace).write_text(json.dumps(trace, indent=1))
    finally:
        if not args.workdir:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
