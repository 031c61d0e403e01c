"""`hashtagger` under torchrun with test_distributed's hooks: the tiny preset without LXMERT's inner dropout
(whose masks differ between one process and two), and Ctrl-C sent to rank 0 alone during step STOP_AT_STEP
(counted from 1; the other rank must stop at the same step)."""

import os
import signal

from hashtagger.cli.main import app
from hashtagger.models.lxmert import PRESETS
from hashtagger.training import trainer

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
PRESETS["tiny"].lxmert.update(NO_DROPOUT)
real_make_batch, steps = trainer.make_batch, 0


def make_batch_then_stop(*args, **kwargs):
    global steps
    steps += 1
    if str(steps) == os.environ.get("STOP_AT_STEP") and os.environ["RANK"] == "0":
        os.kill(os.getpid(), signal.SIGINT)
    return real_make_batch(*args, **kwargs)


if __name__ == "__main__":
    trainer.make_batch = make_batch_then_stop
    app()
