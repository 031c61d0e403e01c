"""`python -m hashtagger` (and `torchrun -m hashtagger`): the same command as `hashtagger`."""

from hashtagger.cli.main import app

app()
