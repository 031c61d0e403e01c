"""`python -m hashtagger` (and `torchrun -m hashtagger`): the same command as `hashtagger`."""

from .cli import app

app()
