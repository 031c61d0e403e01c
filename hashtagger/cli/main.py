"""The `hashtagger` entry point: each command registered on the app, in the order of the data flow. Heavy
imports happen inside the commands, so that `tag` never loads torch."""

from hashtagger.cli import adapt, evaluate, explain, export, review, tag, train
from hashtagger.cli.app import HelpAsWritten, app

for command in (
    train.train,
    export.export,
    tag.tag,
    review.review,
    adapt.adapt,
    explain.explain,
    evaluate.evaluate,
):
    app.command(cls=HelpAsWritten)(command)

__all__ = ["app"]

if __name__ == "__main__":  # python -m hashtagger.cli.main (the tests' subprocesses)
    app()
