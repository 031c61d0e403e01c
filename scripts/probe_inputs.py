"""Bad and unusual inputs through the real CLI, as a new user gives them (issue 31); rerun it after any change:

    python scripts/probe_inputs.py [--model exported] [--only PATTERN] [--show]

Each case runs one `hashtagger` command (or `python -c` through the API, or a bash line) as a subprocess in a fresh
temporary folder, outside the repository, with --model an absolute path. It fails on: data loss (a file that was
there changed or gone, unless the command names it as an output), a `Traceback`, a hang (TIMEOUT), or a wrong
outcome (ok: exit 0; refused: exit != 0 and one `error: ...` line; usage: click's usage error, exit 2; or a file
written that no output names). Exit status 1 on any data loss, traceback or hang. As root, the read-only-folder
cases are skipped (root writes into them anyway)."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # seconds; a case still running then is a hang
Setup = Callable[[Path, Path], None]  # (case folder, model bundle) -> writes the case's files


@dataclass(frozen=True)
class Case:
    name: str
    setup: Setup
    command: str  # cli: hashtagger's arguments, split as a shell would (tag, explain, evaluate get --model {model});
    # api: Python code, with M the bundle's path; shell: a bash line ({hashtagger}: the command, {model}: the bundle)
    expect: str = "ok"  # ok | refused | usage
    outputs: str = ""  # paths (space-separated) under the case folder that the command may create or change
    kind: str = "cli"  # cli | api | shell
    verify: Callable[[Path], str | None] | None = None  # more checks of an ok run; a message when one fails
    root_skips: bool = False  # a read-only-folder case: meaningless as root


# Files a case starts from


def steps(*fns: Setup) -> Setup:
    def setup(d: Path, model: Path) -> None:
        for fn in fns:
            fn(d, model)

    return setup


def put(rel: str, data: bytes | str) -> Setup:
    def setup(d: Path, model: Path) -> None:
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def picture(kind: str, colour=(200, 40, 40)) -> bytes:
    """A 64x64 JPEG or PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, kind)
    return buf.getvalue()


JPEG, PNG = picture("JPEG"), picture("PNG", (40, 40, 200))
CUT_JPEG = JPEG[: len(JPEG) // 2]  # a corrupt JPEG: its second half is missing


def special(rel: str, what: str) -> Setup:
    """what: "dir" (an empty folder), "read-only" (an empty folder, mode 0555) or "-> TARGET" (a symlink)."""

    def setup(d: Path, model: Path) -> None:
        if what in ("dir", "read-only"):
            (d / rel).mkdir(parents=True, mode=0o555 if what == "read-only" else 0o777)
        else:
            (d / rel).symlink_to(what.removeprefix("-> "))

    return setup


POSTS = steps(put("posts/a.jpg", JPEG), put("posts/a.txt", "Huge waves hitting the shore tonight #sandy"))
POSTS = steps(POSTS, put("posts/b.png", PNG), put("posts/b.txt", "Rescue teams near Kathmandu"))
CSV = "id,image,caption,hashtags\n1,posts/a.jpg,waves,sandy\n2,posts/b.png,rescue teams,nepal\n"
POSTS_CSV = steps(POSTS, put("posts.csv", CSV))
MIXED = steps(POSTS, put("posts/c.jpg", CUT_JPEG), put("posts/d.jpg", "not an image\n"), put("posts/e.png", b""))
OLD_RECORD = '{"id": "a.jpg", "status": "ok", "reason": "ok", "hashtags": []}\n'


def bundle(replace: dict[str, bytes], rehash: bool = True) -> Setup:
    """model/: a copy of the bundle (its large files as symlinks), the files in `replace` written instead;
    `rehash`: into its manifest too, so that the bundle's own check passes and the file's reader meets them."""

    def setup(d: Path, model: Path) -> None:
        copy = d / "model"
        copy.mkdir()
        for entry in model.iterdir():
            if entry.name in replace:
                (copy / entry.name).write_bytes(replace[entry.name])
            elif entry.is_file() and entry.stat().st_size < 1 << 20:
                (copy / entry.name).write_bytes(entry.read_bytes())
            else:
                (copy / entry.name).symlink_to(entry)
        if rehash and "manifest.json" not in replace:
            manifest = json.loads((copy / "manifest.json").read_text())
            manifest.update({n: hashlib.sha256(b).hexdigest() for n, b in replace.items() if n in manifest})
            (copy / "manifest.json").write_text(json.dumps(manifest, indent=1))

    return setup


def parquet(rel: str) -> Setup:
    def setup(d: Path, model: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"image": [1, 2], "caption": [1.5, 2.5]}), d / rel)

    return setup


# Checks of an ok run's output


def records(expected: dict[str, str]) -> Callable[[Path], str | None]:
    """out.jsonl holds a record for each id of `expected`, and no other, whose status starts as expected."""

    def verify(d: Path) -> str | None:
        try:
            lines = [json.loads(line) for line in (d / "out.jsonl").read_text(encoding="utf-8").splitlines()]
        except (OSError, ValueError) as e:
            return f"cannot read out.jsonl: {e}"
        got = {r["id"]: r["status"] for r in lines if "id" in r}
        wrong = sorted(got) != sorted(expected) or any(not got[i].startswith(s) for i, s in expected.items())
        return f"records: {got}" if wrong else None

    return verify


# The cases. A command names "model" (a folder the setup wrote) or gets --model {model}: the bundle probed.

C = Case
TAG, TAG_CSV, BROKEN = "tag posts -o out.jsonl", "tag posts.csv", "tag posts --model model"
OTHER_MODEL = '{"provenance": {"model": "/elsewhere", "model_digest": "' + "0" * 64 + '"}}\n' + OLD_RECORD
BOTH = {"a.jpg": "ok", "b.png": "ok"}  # the records of POSTS
WORDS = ("storm waves " * 1_750_000).encode()  # a 21 MB caption


def tag_output_cases() -> list[Case]:
    old, ro = steps(POSTS, put("out.jsonl", OLD_RECORD)), steps(POSTS, special("ro", "read-only"))
    ids = steps(POSTS, put("out.jsonl", '{"id": ["a", "b"], "status": "ok"}\n'))
    notes, garbage = steps(POSTS, put("notes.csv", "name,phone\nann,123\n")), steps(POSTS, put("out.json", "{not"))
    into_bundle = "tag posts --model model -o model/bundle.json --format json --overwrite"
    return [
        C("tag-folder-jsonl", POSTS, TAG, outputs="out.jsonl"),
        C("tag-csv-to-csv", POSTS_CSV, f"{TAG_CSV} -o out.csv", outputs="out.csv"),
        C("tag-one-image-caption", POSTS, "tag posts/a.jpg --caption 'Huge waves'"),
        C("tag-csv-o-itself-resume", POSTS_CSV, f"{TAG_CSV} -o posts.csv --resume", "refused"),
        C("tag-csv-o-itself-overwrite", POSTS_CSV, f"{TAG_CSV} -o posts.csv --overwrite", "refused"),
        C("tag-csv-o-itself-relative", POSTS_CSV, f"{TAG_CSV} -o ./posts/../posts.csv --resume", "refused"),
        C("tag-o-input-image", POSTS, "tag posts -o posts/a.jpg --format json --overwrite", "refused"),
        C("tag-o-caption-file", POSTS, "tag posts -o posts/a.txt --format json --overwrite", "refused"),
        C("tag-o-image-of-csv", POSTS_CSV, f"{TAG_CSV} -o posts/b.png --format csv --overwrite", "refused"),
        C("tag-o-unknown-extension", POSTS, "tag posts -o out.xyz", "refused"),
        C("tag-o-existing-no-flag", steps(POSTS, put("out.jsonl", "precious\n")), TAG, "refused"),
        C("tag-o-existing-overwrite", steps(POSTS, put("out.jsonl", "old\n")), f"{TAG} --overwrite", "ok", "out.jsonl"),
        C("tag-o-a-folder", steps(POSTS, special("outdir", "dir")), "tag posts -o outdir", "refused"),
        C("tag-o-into-bundle", steps(POSTS, bundle({})), into_bundle, "refused"),
        C("tag-o-read-only-folder", ro, "tag posts -o ro/out.json", "refused", root_skips=True),
        C("tag-resume-partial", old, f"{TAG} --resume", outputs="out.jsonl", verify=records(BOTH)),
        C("tag-resume-id-list", ids, f"{TAG} --resume", "refused"),
        C("tag-resume-other-model", steps(POSTS, put("out.jsonl", OTHER_MODEL)), f"{TAG} --resume", "refused",
          "out.jsonl"),
        C("tag-resume-other-top-k", old, f"{TAG} --resume --top-k 2", outputs="out.jsonl"),  # no provenance: fine
        C("tag-resume-non-record-csv", notes, "tag posts -o notes.csv --resume", "refused"),
        C("tag-resume-garbage-json", garbage, "tag posts -o out.json --resume", "refused"),
        C("tag-sidecars-append", POSTS, f"{TAG} --sidecars append", outputs="out.jsonl posts/a.tags posts/b.tags"),
    ]  # fmt: skip


def tag_input_cases() -> list[Case]:
    bad_only = steps(put("posts/c.jpg", CUT_JPEG), put("posts/e.png", b""))
    skipped = records({**BOTH, "c.jpg": "skipped", "d.jpg": "skipped", "e.png": "skipped"})
    latin1 = put("posts/a.txt", b"caf\xe9 \xff\xfe waves")
    lost = put("p.csv", "image,caption\nposts/a.jpg,x\nno/z.jpg,y\n")
    return [
        C("tag-self-symlink-file", steps(POSTS, special("posts/loop.jpg", "-> loop.jpg")), TAG, outputs="out.jsonl"),
        C("tag-symlink-to-parent", steps(POSTS, special("posts/up", "-> .")), TAG, outputs="out.jsonl"),
        C("tag-bad-images-beside-good", MIXED, TAG, outputs="out.jsonl", verify=skipped),
        C("tag-20mb-caption", steps(POSTS, put("posts/a.txt", WORDS)), TAG, outputs="out.jsonl"),
        C("tag-caption-not-utf8", steps(POSTS, latin1), TAG, outputs="out.jsonl"),
        C("tag-only-bad-images", bad_only, TAG, "refused", outputs="out.jsonl"),
        C("tag-empty-folder", special("posts", "dir"), "tag posts", "refused"),
        C("tag-missing-input", POSTS, "tag nothere", "refused"),
        C("tag-csv-no-caption-column", steps(POSTS, put("p.csv", "image\nposts/a.jpg\n")), "tag p.csv", "refused"),
        C("tag-csv-bad-image-path", steps(POSTS, lost), "tag p.csv"),
        C("tag-csv-empty-file", put("p.csv", ""), "tag p.csv", "refused"),
        C("tag-csv-binary-garbage", put("p.csv", bytes(range(256)) * 16), "tag p.csv", "refused"),
        C("tag-parquet-wrong-types", steps(POSTS, parquet("p.parquet")), "tag p.parquet", "refused"),
        C("tag-parquet-garbage", put("p.parquet", b"PAR1 not really"), "tag p.parquet", "refused"),
        C("tag-top-k-0", POSTS, "tag posts --top-k 0", "usage"),
        C("tag-top-k-negative", POSTS, "tag posts --top-k -3", "usage"),
        C("tag-threshold-2", POSTS, "tag posts --threshold 2", "refused"),
        C("tag-batch-size-0", POSTS, "tag posts --batch-size 0", "usage"),
        C("tag-workers-0", POSTS, "tag posts --workers 0", "usage"),
        C("stdout-closed", POSTS, "{hashtagger} tag posts --model {model} >&-", "refused", kind="shell"),
        C("stdout-closed-dash", POSTS, "{hashtagger} tag posts --model {model} -o - >&-", "refused", kind="shell"),
        C("bundle-missing", POSTS, "tag posts --model nope", "refused"),
        C("bundle-json-list", steps(POSTS, bundle({"bundle.json": b"[]"}, rehash=False)), BROKEN, "refused"),
        C("bundle-json-list-rehashed", steps(POSTS, bundle({"bundle.json": b"[1, 2]"})), BROKEN, "refused"),
        C("bundle-manifest-list", steps(POSTS, bundle({"manifest.json": b"[]"})), BROKEN, "refused"),
        C("bundle-garbage-onnx", steps(POSTS, bundle({"model.onnx": b"garbage"})), BROKEN, "refused"),
        C("bundle-hashtags-list", steps(POSTS, bundle({"hashtags.json": b"[]"})), BROKEN, "refused"),
    ]  # fmt: skip


def other_command_cases() -> list[Case]:
    explain = "explain posts/a.jpg --caption waves --device cpu"
    evaluate = "evaluate posts.csv --split all --device cpu"
    noise = steps(POSTS, bundle({"background.npz": b"\x93NUMPY garbage" + bytes(64)}))
    ro = steps(POSTS_CSV, special("ro", "read-only"))
    listed = steps(POSTS_CSV, bundle({"bundle.json": b"[]"}))
    # train: refused before any training (a tiny model and one epoch in case it is not)
    train = "train posts.csv --base-model tiny --epochs 1 --output runs --run-name"
    photos, keep = put("runs/holiday/best/beach.jpg", "a photo"), put("runs/best/keep.txt", "mine")
    review = "review out.jsonl --posts posts"
    return [
        C("explain-ok", POSTS, f"{explain} -o why.png", outputs="why.png"),
        C("explain-o-input-image", POSTS, f"{explain} -o posts/a.jpg --overwrite", "refused"),
        C("explain-default-output-is-input", put("why.png", PNG), "explain why.png --caption x", "refused"),
        C("explain-default-output-exists", steps(POSTS, put("why.png", "older picture")), explain, "refused"),
        C("explain-garbage-background", noise, f"{explain} --model model -o w.png", "refused"),
        C("explain-corrupt-image", put("c.jpg", CUT_JPEG), "explain c.jpg --caption x -o w.png", "refused"),
        C("evaluate-ok", POSTS_CSV, f"{evaluate} --report r.json --plot p.png", outputs="r.json p.png"),
        C("evaluate-report-is-data", POSTS_CSV, f"{evaluate} --report posts.csv --overwrite", "refused"),
        C("evaluate-plot-csv", POSTS_CSV, f"{evaluate} --plot x.csv", "refused"),
        C("evaluate-plot-image-of-data", POSTS_CSV, f"{evaluate} --plot posts/b.png --overwrite", "refused"),
        C("evaluate-report-exists", steps(POSTS_CSV, put("r.json", "{}")), f"{evaluate} --report r.json", "refused"),
        C("evaluate-report-read-only", ro, f"{evaluate} --report ro/r.json", "refused", root_skips=True),
        C("evaluate-bundle-json-list", listed, f"{evaluate} --model model", "refused"),
        C("train-into-existing-best", steps(POSTS_CSV, photos), f"{train} holiday", "refused"),
        C("train-run-name-escapes", POSTS_CSV, f"{train} ../../x", "refused"),
        C("train-run-name-dot", steps(POSTS_CSV, keep), f"{train} .", "refused"),
        C("train-run-name-empty", POSTS_CSV, f"{train} ''", "refused"),
        C("review-o-its-input", put("out.jsonl", OLD_RECORD), "review out.jsonl -o out.jsonl --overwrite", "refused"),
        C("review-o-an-image", steps(POSTS, put("out.jsonl", OLD_RECORD)), f"{review} -o posts/a.jpg --overwrite",
          "refused"),
        C("adapt-o-its-posts", steps(POSTS_CSV, bundle({})), "adapt model posts.csv -o posts --force", "refused"),
    ]  # fmt: skip


API = """\
import sys
from hashtagger import HashtaggerError, Tagger
M = sys.argv[1]
try:
{body}
except HashtaggerError as e:
    print(f"error: {{type(e).__name__}}: {{e}}", file=sys.stderr)
    sys.exit(1)
"""
OPEN = "t = Tagger.open(M, device='cpu')\n"


def api(name: str, body: str, expect: str = "ok", setup: Setup = POSTS) -> Case:
    return Case(name, setup, API.format(body=textwrap.indent(body, "    ")), expect, kind="api")


def api_cases() -> list[Case]:
    with_block = "with Tagger.open(M, device='cpu') as t:\n    print(t.tag('posts/a.jpg', 'x').tags)"
    return [
        api("api-top-k-negative", "Tagger.open(M, device='cpu', top_k=-3)", "refused"),
        api("api-batch-size-0", "Tagger.open(M, device='cpu', batch_size=0)", "refused"),
        api("api-workers-0", "Tagger.open(M, device='cpu', workers=0)", "refused"),
        api("api-threshold-2", "Tagger.open(M, device='cpu', threshold=2)", "refused"),
        api("api-missing-model", "Tagger.open('nope', device='cpu')", "refused"),
        api("api-caption-not-a-string", OPEN + "t.tag('posts/a.jpg', 123)", "refused"),
        api("api-garbage-image-bytes", OPEN + "t.tag(b'garbage', 'waves')", "refused"),
        api("api-context-manager", with_block),
        api("api-close-twice", OPEN + "print(t.tag('posts/a.jpg', 'x').tags)\nt.close()\nt.close()"),
        api("api-tag-after-close", OPEN + "t.close()\nt.tag('posts/a.jpg', 'x')", "refused"),
        api("api-tag-many-mixed", OPEN + "print([r.status for r in t.tag_many('posts')])", setup=MIXED),
        api("api-tag-many-bad-pair", OPEN + "list(t.tag_many([('posts/a.jpg', 'x', 'extra')]))", "refused"),
    ]


def all_cases() -> list[Case]:
    return tag_output_cases() + tag_input_cases() + other_command_cases() + api_cases()


# Running a case


def digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        return f"unreadable ({e.strerror})"


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root (symlinks not followed) -> its content's SHA-256, "-> target", "dir" or "other"."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = digest(path) if path.is_file() else "other"
    return state


def named(rel: str, outputs: list[str]) -> bool:
    """An output, inside one, beside one under its name (out.csv.provenance.json), or a folder holding one."""
    return any(rel == o or rel.startswith((o + "/", o + ".")) or o.startswith(rel + "/") for o in outputs)


def command(case: Case, model: Path) -> list[str]:
    hashtagger = [sys.executable, "-m", "hashtagger.cli.main"]
    if case.kind == "api":
        return [sys.executable, "-c", case.command, str(model)]
    if case.kind == "shell":
        line = case.command.replace("{hashtagger}", shlex.join(hashtagger))
        return ["bash", "-c", line.replace("{model}", shlex.quote(str(model)))]
    argv = shlex.split(case.command)
    if argv[0] in ("tag", "explain", "evaluate") and "--model" not in argv:
        argv += ["--model", str(model)]
    return hashtagger + argv


def environment(root: Path) -> dict[str, str]:
    """This repository's hashtagger, offline, no config file or $HASHTAGGER_MODEL of the user's, wide lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHTAGGER_")}
    paths = [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    env.update(PYTHONPATH=os.pathsep.join(paths), HF_HUB_OFFLINE="1", COLUMNS="300", NO_COLOR="1")
    env["XDG_CONFIG_HOME"] = str(root.parent / "config")  # no ~/.config/hashtagger/config.toml of the user's
    return env


def execute(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int | None, str, str]:
    """(exit status, None after TIMEOUT: the process group is killed; stdout; stderr)."""
    pipe = subprocess.PIPE
    with subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe,
                          start_new_session=True) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            code = None
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(nothing on stderr)"


def outcome(case: Case, code: int, stderr: str) -> list[str]:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if case.expect == "ok" and code != 0:
        return [f"exit {code}, expected 0: {last_line(stderr)}"]
    if case.expect == "refused" and code == 0:
        return ["exit 0, expected a refusal"]
    if case.expect == "refused" and len(errors) != 1:
        return [f"exit {code} with {len(errors)} 'error:' lines, expected one: {last_line(stderr)}"]
    if case.expect == "usage" and (code != 2 or "Usage:" not in stderr):
        return [f"exit {code}, expected a usage error (exit 2): {last_line(stderr)}"]
    return []


def run_case(case: Case, model: Path, scratch: Path) -> tuple[list[tuple[str, str]], str]:
    """What went wrong, as (count, message) pairs, and the command's stderr."""
    root = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=scratch))
    (work := root / "work").mkdir()  # the command's folder; root around it catches writes that escape it
    case.setup(work, model)
    outputs = [f"work/{o}" for o in case.outputs.split()]
    before = snapshot(root)
    code, stdout, stderr = execute(command(case, model), work, environment(root))
    after = snapshot(root)
    found = [
        ("data loss", f"{rel} {'changed' if rel in after else 'gone'}")
        for rel, state in before.items()
        if not named(rel, outputs) and after.get(rel) != state
    ]
    if code is None:
        return [*found, ("hangs", f"still running after {TIMEOUT} s, killed")], stderr
    if "Traceback" in stdout + stderr:
        found.append(("tracebacks", last_line(stderr if "Traceback" in stderr else stdout)))
    found += [("wrong outcome", message) for message in outcome(case, code, stderr)]
    found += [("wrong outcome", f"wrote {rel}") for rel in after if rel not in before and not named(rel, outputs)]
    if case.verify is not None and code == 0 and (message := case.verify(work)):
        found.append(("wrong outcome", message))
    return found, stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bad and unusual inputs through the real CLI (issue 31).")
    parser.add_argument("--model", type=Path, default=REPO / "exported", help="the bundle (default: exported/)")
    parser.add_argument("--only", metavar="PATTERN", help="the cases whose name matches this glob or holds it")
    parser.add_argument("--show", action="store_true", help="every case's result, a failing one's stderr")
    args = parser.parse_args(argv)
    model = args.model.resolve()
    if not (model / "bundle.json").is_file():
        parser.error(f"{model} is not a bundle (no bundle.json)")
    pattern = args.only or "*"
    cases = [c for c in all_cases() if fnmatch(c.name, pattern) or pattern in c.name]
    skipped = [c.name for c in cases if c.root_skips and os.geteuid() == 0]
    cases = [c for c in cases if c.name not in skipped]
    counts = dict.fromkeys(("data loss", "tracebacks", "hangs", "wrong outcome"), 0)
    start, bundle_before = time.monotonic(), snapshot(model)
    with tempfile.TemporaryDirectory(prefix="probe-inputs-", ignore_cleanup_errors=True) as scratch:
        for case in cases:
            found, stderr = run_case(case, model, Path(scratch))
            for kind in {kind for kind, _ in found}:
                counts[kind] += 1
            if found:
                print(f"FAIL {case.name}: " + "; ".join(f"{kind}: {m}" for kind, m in found), flush=True)
            if args.show:
                print(textwrap.indent(stderr.strip(), "    | ") if found else f"ok   {case.name}: {last_line(stderr)}")
    if snapshot(model) != bundle_before:
        counts["data loss"] += 1
        print(f"FAIL the bundle probed ({model}) changed")
    if skipped:
        print(f"skipped, running as root (root writes into read-only folders anyway): {', '.join(skipped)}")
    (d, t, h, w), took = counts.values(), time.monotonic() - start
    print(f"{len(cases)} cases: data loss {d}, tracebacks {t}, hangs {h}, wrong outcome {w} ({took:.0f} s)")
    return 1 if d or t or h else 0


if __name__ == "__main__":
    sys.exit(main())
