"""Data-parallel training (torchrun, gloo on the CPU): 2 processes take the steps 1 process takes with the same
global batch, a stopped 2-process run resumes exactly, and a data error stops every rank with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_posts
from ddp_run import NO_DROPOUT
from rich.console import Console

from hashtagger.models.checkpoint import load_checkpoint, load_training_state
from hashtagger.models.lxmert import PRESETS
from hashtagger.training.train import TrainConfig, train

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
# No dropout (--dropout 0 and none inside LXMERT, tests/ddp_run.py): the ranks' dropout masks cannot match one
# process's. Modality dropout must match: its blanks are drawn per global batch.
# Batches of 7 split 4 + 3 between the ranks, and the epoch's last batch (38 = 5 x 7 + 3) 2 + 1.
SETTINGS = dict(base_model="tiny", epochs=2, batch_size=7, lr=1e-3, new_lr=1e-3, dropout=0.0, modality_dropout=0.2)


def options() -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()] + ["--device=cpu", "--run-name=r"]


def torchrun(*args: str, stop_at: int | None = None) -> subprocess.CompletedProcess:
    """`hashtagger` on two ranks of this machine, with tests/ddp_run.py's hooks; `stop_at`: rank 0 gets SIGINT
    during that step."""
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="300", STOP_AT_STEP=str(stop_at))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*launcher, str(HERE / "ddp_run.py"), *args], capture_output=True, text=True, env=env, timeout=240
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_posts(tmp_path_factory.mktemp("posts"), n=48, seed=1)


@pytest.fixture(scope="module")
def two_ranks(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two")
    proc = torchrun("train", str(data), "--output", str(out), *options())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("epoch 1: val F1@2") == 1  # rank 0 alone prints
    return out / "r"


def weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return load_checkpoint(run / name).model.state_dict()


def test_two_ranks_take_the_steps_of_one_process_with_the_same_global_batch(data, two_ranks, tmp_path, monkeypatch):
    for key, value in NO_DROPOUT.items():  # as in the ranks (tests/ddp_run.py)
        monkeypatch.setitem(PRESETS["tiny"].lxmert, key, value)
    one = train(TrainConfig(data=str(data), output=str(tmp_path), run_name="r", **SETTINGS), Console(quiet=True))
    a, b = load_checkpoint(one / "last").meta.history, load_checkpoint(two_ranks / "last").meta.history
    assert [h["step"] for h in a] == [h["step"] for h in b] == [6, 12]
    for x, y in zip(a, b, strict=True):
        assert abs(x["val_loss"] - y["val_loss"]) < 1e-5 and abs(x["train_loss"] - y["train_loss"]) < 1e-5
    wa, wb = weights(one), weights(two_ranks)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
    assert len(load_training_state(two_ranks / "last")["rank_rngs"]) == 2


def test_a_stopped_two_rank_run_resumes_to_the_uninterrupted_weights(data, two_ranks, tmp_path):
    stopped = torchrun("train", str(data), "--output", str(tmp_path), *options(), stop_at=9)
    assert stopped.returncode != 0
    assert "interrupted at epoch 2, step 9; continue with --resume" in stopped.stderr
    # Rank 0 ended itself after saving (130, not a signal). The rank that exits second may be sent SIGTERM by
    # torchrun's agent while it tears down, when the machine is loaded (seen in 2 of 5 runs beside other work): it
    # writes nothing then, so what matters is below: the step both stopped at and the resumed weights.
    assert "exitcode  : 130" in stopped.stderr
    assert int(load_training_state(tmp_path / "r" / "last")["step"]) == 9  # both ranks stopped at the same step
    resumed = torchrun("train", str(data), "--output", str(tmp_path), *options(), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("last", "best"):
        wa, wb = weights(two_ranks, name), weights(tmp_path / "r", name)
        assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-6, name


def test_a_data_error_on_rank_zero_stops_every_rank_with_one_line(data, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="300")
    args = ["train", str(data), "--output", str(tmp_path), "--base-model", "tiny", "--min-words", "50", "--nproc", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "hashtagger", *args], capture_output=True, text=True, env=env, timeout=240
    )
    assert proc.returncode == 1
    assert proc.stderr.count("error:") == 1, proc.stderr  # rank 0's; rank 1 stops without a word
    assert "error: no posts are left after data preparation" in proc.stderr
    assert "Traceback" not in proc.stderr
