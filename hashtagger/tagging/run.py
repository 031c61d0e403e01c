"""`hashtagger tag`: every post of a folder or CSV tagged into a file (or stdout): the output claimed before any
work, `--resume` from the records already written, and the run's summary."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hashtagger.bundle import gpu, scope
from hashtagger.bundle.locate import find_model
from hashtagger.bundle.runtime import int8_choice, variant_label
from hashtagger.data.posts import Post, load_posts, posts_input
from hashtagger.errors import BundleError, DataError, OutputError
from hashtagger.io.claims import Claim, Reads, claim_output
from hashtagger.io.console import PostsPerSecond, count, plain, progress_bar, say
from hashtagger.io.extras import gpu_hint, require
from hashtagger.tagging.options import TagOptions
from hashtagger.tagging.pipeline import CPU
from hashtagger.tagging.provenance import check_resumable
from hashtagger.tagging.records import TagSummary, is_tagged
from hashtagger.tagging.sidecars import POLICIES, write_sidecar
from hashtagger.tagging.tagger import Tagger
from hashtagger.tagging.writers import FORMATS, done_ids, format_names, open_writer, output_format, remaining


def tag(
    input: str | Path | Sequence[Post],
    output: Path | None,
    fmt: str | None = None,
    options: TagOptions | None = None,
    resume: bool = False,
    console: Console | None = None,
    overwrite: bool = False,
    sidecars: str | None = None,
) -> TagSummary:
    """Tag every post of `input` (a folder, CSV, Parquet file or image, or Posts, e.g. posts.image_post's) into
    `output` (None: stdout). Raises a HashtaggerError (DataError, BundleError, DeviceError, OutputError) for a
    run that cannot start; bad posts are reported in their records. `sidecars` (skip / overwrite / append):
    each tagged post's hashtags are also written to `<image stem>.tags` beside its image (sidecars.py).

    An existing non-empty output is extended with `resume` or replaced with `overwrite`, never otherwise;
    a run that tags nothing leaves it as it was."""
    if sidecars is not None and sidecars not in POLICIES:
        raise DataError(f"unknown sidecar policy '{sidecars}' ({', '.join(POLICIES)})")
    options = options or TagOptions()
    console = console or Console(stderr=True)
    output = Path(output) if output is not None else None
    fmt = output_format(output, fmt)
    check_extras(input, fmt)
    if options.explain and not FORMATS[fmt].nested:
        nested = format_names(f.title for f in FORMATS.values() if f.nested)
        raise OutputError(f"--explain adds nested records: write {nested}, not {FORMATS[fmt].title}")
    cores = usable_cores()
    if options.threads and options.threads > cores:
        say(
            console,
            f"--threads {options.threads} is more than the {cores} cores this process may use; using {cores} "
            "(more threads than cores only wait on each other)",
            "warning",
        )
        options = replace(options, threads=cores)
    inputs = run_inputs(input, options)
    table = table_posts(input, options)
    if table is not None:  # the images a CSV or Parquet file names are the run's input as much as the file
        inputs += [post.image for post in table]
    with claim_output(output, resume, overwrite, inputs=inputs) as claim:  # before any work: not at the run's end
        return _tag_into(claim, input if table is None else table, fmt, options, resume, console, sidecars)


def _tag_into(
    claim: Claim,
    input: str | Path | Sequence[Post],
    fmt: str,
    options: TagOptions,
    resume: bool,
    console: Console,
    sidecars: str | None,
):
    start = time.perf_counter()
    output = claim.path
    posts = load_posts(input, options.columns) if isinstance(input, (str, Path)) else list(input)
    if not posts:
        raise DataError(NO_POSTS.format(input))
    tagger = Tagger(options)
    bundle, runner = tagger.bundle, tagger.runner
    if runner.candidates is not None:
        known = tagger.known
        say(
            console,
            f"candidates: {len(runner.candidates.tags)} new hashtags ranked beside the {len(bundle.vocab)} of the "
            f"vocabulary"
            + (f" ({len(known)} more already in it)" if known else "")
            + (
                f", their caption match weighted +{runner.candidates.new_match:g}"
                if runner.candidates.new_match
                else ""
            ),
        )
    say(console, f"tagging {len(posts)} posts with {bundle.path} ({runner.variant}) on {runner.provider}")
    if warning := fallback_warning(options.device, runner.provider, runner.fallback):
        say(console, warning, "warning")
    if collapsed := scope.bundle_collapse_warning(bundle):
        say(console, collapsed, "warning")
    summary = TagSummary(
        provider=runner.provider,
        variant=runner.variant,
        model=tagger.scope,
        prior=scope.prior(bundle),
        candidates_by=tagger.candidates_note,
    )
    todo = posts
    if resume and output is not None and claim.had_content:
        check_resumable(output, fmt, tagger.provenance())
        positions = remaining([p.id for p in posts], done_ids(output, fmt))
        todo = [posts[i] for i in positions]
        summary.resumed = len(posts) - len(todo)
        say(console, f"resuming {output}: {summary.resumed} posts already done, {len(todo)} to go")
    writer = open_writer(claim, fmt, resume, tagger.provenance())
    run_start = time.perf_counter()
    # Records shown on a terminal: a live bar on the same screen would break them up (the records show progress).
    quiet = output is None and sys.stdout.isatty()
    try:
        with progress_bar(console, PostsPerSecond(), disable=quiet) as progress:
            task = progress.add_task("tagging", total=len(todo))
            for post, record in zip(todo, tagger.tag_many(todo, on_scored=partial(count, progress, task)), strict=True):
                if summary.processed == 0:
                    summary.startup_s = time.perf_counter() - start
                if not summary.tagged and is_tagged(record):
                    writer.commit()
                writer.write(record)
                summary.count(record)
                if sidecars and is_tagged(record) and post.image is not None:
                    _sidecar(post.image, record, sidecars, summary, console)
    except BaseException:
        writer.abort()
        raise
    if claim.had_content and summary.processed and not summary.tagged:
        writer.discard()
        say(console, f"no post was tagged: {output} left as it was")
    else:
        writer.close()
    summary.seconds = time.perf_counter() - run_start
    summary.posts_per_s = summary.processed / summary.seconds if summary.seconds > 0 else 0.0
    summary.faster = faster_hint(tagger, summary.processed)
    console.print(summary_table(summary, output))
    _say_scope(console, summary)
    return summary


def _say_scope(console: Console, summary: TagSummary) -> None:
    """What the model knows, and a warning when most posts got the frequency prior's top 2."""
    console.print(summary.model, markup=False, highlight=False, soft_wrap=True)
    if summary.candidates_by:
        console.print(summary.candidates_by, markup=False, highlight=False, soft_wrap=True)
    if summary.faster:
        console.print(summary.faster, markup=False, highlight=False, soft_wrap=True)
    if summary.tagged and summary.prior_like > scope.PRIOR_LIKE * summary.tagged:
        say(
            console,
            f"{summary.prior_like} of the {summary.tagged} posts ({summary.prior_like / summary.tagged:.0%}) got the "
            f"frequency prior's top hashtags ({' '.join('#' + t for t in summary.prior)}), the model's most common "
            "ones: it knows little about these posts; train on your own posts for your own hashtags (hashtagger "
            "train DATA --preset cpu)",
            "warning",
        )


# Runs this long are worth a hint that int8 graphs would be faster; a few photos are not.
HINT_POSTS = 500


def faster_hint(tagger: Tagger, processed: int) -> str | None:
    """For a long run of fp32 graphs on the CPU when the bundle holds int8 graphs that agree with fp32 (what
    `--variant auto` runs): one line saying so; None otherwise."""
    if processed < HINT_POSTS or tagger.options.variant != "default" or tagger.runner.provider != CPU:
        return None
    choice = int8_choice(tagger.bundle)
    if choice is None:
        return None
    return (
        f"faster on a CPU: --variant auto runs this model's int8 graphs ({variant_label(*choice)}), which agree with "
        "its fp32 ones on the validation posts (docs/commands.md)"
    )


def check_extras(input: str | Path | Sequence[Post], fmt: str) -> None:
    """The extras a run's input and output formats need, before any work: a run must not tag every post and then
    fail to write them (MissingExtraError, naming the extra and the command that installs it)."""
    if fmt == "parquet":
        require("parquet", "writing Parquet (--output *.parquet or --format parquet)")
    if isinstance(input, (str, Path)) and Path(input).suffix.lower() == ".parquet":
        require("parquet", f"reading {input}")


NO_POSTS = "no posts in {} (images: jpg, jpeg, png, webp, bmp, gif; CSV: one row per post)"


def table_posts(input: str | Path | Sequence[Post], options: TagOptions) -> list[Post] | None:
    """A CSV or Parquet file's posts, read before the output is claimed, since the images they name must not be
    written either; None for any other input (run_inputs lists what a folder or given Posts read)."""
    if not isinstance(input, (str, Path)) or Path(input).suffix.lower() not in (".csv", ".parquet"):
        return None
    if not Path(input).is_file():
        return None  # load_posts says what is wrong with it, after the output's checks
    posts = load_posts(input, options.columns)
    if not posts:
        raise DataError(NO_POSTS.format(input))
    return posts


def run_inputs(input: str | Path | Sequence[Post], options: TagOptions) -> list[Path | Reads | None]:
    """What a tag run reads, never to be written: the posts (a folder's images and captions; given Posts, their
    images), the bundle, the candidates, the precomputed features."""
    features = Path(options.features_dir) if options.features_dir is not None else None
    candidates = Path(options.candidates) if options.candidates is not None else None
    try:
        model: Reads | None = Reads(find_model(options.model).path)
    except BundleError:
        model = None  # no bundle anywhere: opening it says so, after the output's checks
    if isinstance(input, (str, Path)):
        return [posts_input(input), model, candidates, features]
    return [*(post.image for post in input), model, candidates, features]


def _sidecar(image: Path, record: dict, policy: str, summary: TagSummary, console: Console) -> None:
    """The record's hashtags beside its image; one that cannot be written is counted and said once, not fatal
    (the records are the run's output)."""
    try:
        summary.sidecars[write_sidecar(image, [h["tag"] for h in record["hashtags"]], policy)] += 1
    except OutputError as e:
        if not summary.sidecars["failed"]:
            say(console, f"sidecar not written: {e}", "warning")
        summary.sidecars["failed"] += 1


def fallback_warning(device: str, provider: str, why: str) -> str:
    """What to say when --device auto ran on the CPU: nothing on a machine with no NVIDIA GPU at all (the CPU is
    what it has), else that the GPU could not be used, why, and how to fix it."""
    if device != "auto" or provider != CPU or not gpu.nvidia_present():
        return ""
    return f"--device auto fell back to the CPU: no usable GPU provider{f' ({why})' if why else ''}; " + (
        f"for a GPU, {gpu_hint()}"
    )


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def interrupted_message(output: Path | None, fmt: str | None) -> str:
    """What an interrupted run left behind, for the one-line message."""
    try:
        fmt = output_format(output, fmt)
    except OutputError:
        return "interrupted"
    if output is None:
        return "interrupted: the output on stdout is incomplete"
    if FORMATS[fmt].appends:
        return f"interrupted: the records written so far are in {output}; rerun with --resume to add the rest"
    kept = format_names(f.extensions[0] for f in FORMATS.values() if f.appends)
    title = FORMATS[fmt].title
    return f"interrupted: {output} was not written ({title} is written when complete; {kept} keeps partial results)"


def summary_table(summary: TagSummary, output: Path | None = None) -> Table:
    table = Table(title="hashtagger tag", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("tagged", str(summary.tagged))
    for note, n in summary.notes.most_common():
        table.add_row(f"  of which {note}", str(n))
    table.add_row("skipped", str(sum(summary.skipped.values())))
    for reason, n in summary.skipped.most_common():
        table.add_row(f"  {reason}", str(n))
    if summary.resumed:
        table.add_row("already in the output", str(summary.resumed))
    if summary.sidecars:
        table.add_row("sidecars (.tags)", ", ".join(f"{n} {what}" for what, n in summary.sidecars.most_common()))
    table.add_row("posts/s", f"{summary.posts_per_s:,.1f}")
    table.add_row("start-up to first record", f"{summary.startup_s:.2f} s")
    table.add_row("provider", plain(summary.provider))
    if summary.variant:
        table.add_row("graphs", plain(summary.variant))
    table.add_row("output", plain(output) if output else "stdout")
    return table
