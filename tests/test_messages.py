"""What the console shows is what was meant: paths, captions and bracketed words ("[gpu]", `out[v1].json`) are
never taken for rich markup, in messages, summaries and --help; the CPU-fallback warning only where a GPU is."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from hashtagger.bundle import gpu
from hashtagger.cli.main import app
from hashtagger.io.console import say
from hashtagger.io.extras import gpu_hint
from hashtagger.tagging import run
from hashtagger.tagging.records import TagSummary

REPO = Path(__file__).resolve().parents[1]
EXPORTED, EXAMPLES = REPO / "exported", REPO / "examples" / "posts"
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}


def shown(*renderables) -> str:
    console = Console(file=io.StringIO(), width=400)
    for r in renderables:
        console.print(r)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_say_keeps_bracketed_words_and_paths():
    console = Console(file=io.StringIO(), width=400)
    say(console, "install the [gpu] extra: pip install 'lxmert-hashtagger[gpu]'", "warning")
    say(console, "written to out[v1].json and [bold]x[/bold]")
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "warning: install the [gpu] extra: pip install 'lxmert-hashtagger[gpu]'" in text
    assert "written to out[v1].json and [bold]x[/bold]" in text


def test_tag_summary_shows_an_output_path_with_brackets():
    summary = TagSummary(tagged=1, provider="CPUExecutionProvider", variant="model fp32")
    assert "out[v1].json" in shown(run.summary_table(summary, Path("out[v1].json")))


def test_help_keeps_bracketed_defaults_and_extras():
    """typer renders help strings as rich markup: '[default: 32 on the CPU ...]' and '[ray]' were dropped."""
    runner = CliRunner()
    result = runner.invoke(app, ["tag", "--help"], env=WIDE)
    text = " ".join(result.output.split())
    assert "[default: 32 on the CPU, 256 on a GPU]" in text
    assert "[default: 2 on the CPU, one per core up to 16 on a GPU]" in text
    assert "(the [ray] extra)" in text


def test_every_bracketed_help_word_is_shown():
    command = get_command(app)
    runner = CliRunner()
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        text = " ".join(runner.invoke(app, [name, "--help"], env=WIDE).output.replace("│", " ").split())
        for param in sub.params:
            for bracketed in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
                assert " ".join(bracketed.split()) in text, (name, param.name, bracketed)


def test_cpu_fallback_is_silent_without_an_nvidia_gpu(monkeypatch):
    monkeypatch.setattr(gpu, "nvidia_present", lambda: False)
    assert run.fallback_warning("auto", run.CPU, "this onnxruntime build has no CUDAExecutionProvider") == ""


def test_cpu_fallback_warns_where_a_gpu_cannot_be_used(monkeypatch):
    monkeypatch.setattr(gpu, "nvidia_present", lambda: True)
    warning = run.fallback_warning("auto", run.CPU, "libcublasLt.so.13: cannot open shared object file")
    assert "libcublasLt.so.13" in warning and gpu_hint() in warning
    console = Console(file=io.StringIO(), width=400)
    say(console, warning, "warning")
    assert gpu_hint() in console.file.getvalue()  # type: ignore[attr-defined]  # "[gpu]" kept
    assert run.fallback_warning("cpu", run.CPU, "") == ""  # asked for the CPU: nothing to warn about


def test_nvidia_probe_sees_the_driver_tool(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert gpu.nvidia_present()


@pytest.mark.slow
def test_bracketed_paths_survive_every_command_summary(tmp_path, monkeypatch):
    """-o "out[v1].json" showed out.json (another file); the same for --model, explain -o and export."""
    posts = tmp_path / "posts"
    posts.mkdir()
    for f in EXAMPLES.glob("marathon.*"):
        shutil.copy(f, posts / f.name)
    model = tmp_path / "model[v1]"
    model.symlink_to(EXPORTED, target_is_directory=True)
    out = tmp_path / "out[v1].json"
    runner = CliRunner()
    tagged = runner.invoke(app, ["tag", str(posts), "--model", str(model), "-o", str(out), "--device", "cpu"], env=WIDE)
    assert tagged.exit_code == 0, tagged.output
    assert f"with {model} (" in tagged.stderr and str(out) in tagged.stderr
    picture = tmp_path / "why[v1].png"
    explained = runner.invoke(
        app,
        [
            "explain",
            str(posts / "marathon.jpg"),
            str(posts / "marathon.txt"),
            "--model",
            str(model),
            "-o",
            str(picture),
        ],
        env=WIDE,
    )
    assert explained.exit_code == 0, explained.output
    assert picture.is_file() and f"written to {picture}" in explained.stderr
    import hashtagger.export.build as build

    monkeypatch.setattr(build, "export", lambda checkpoint, options, console: Path(options.output))
    exported = runner.invoke(app, ["export", str(tmp_path), "--output", str(tmp_path / "bundle[v2]")], env=WIDE)
    assert exported.exit_code == 0, exported.output
    assert f"bundle written to {tmp_path / 'bundle[v2]'}" in exported.stderr
