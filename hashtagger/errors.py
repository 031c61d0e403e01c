"""The errors a user can cause and fix, one base class for all: the CLI prints a HashtaggerError as one
line and lets anything else (a bug) show its traceback. No imports: every module may raise these."""

from __future__ import annotations


class HashtaggerError(Exception):
    """A run that cannot go on for a reason the user can fix; str(error) says what and how."""


class DataError(HashtaggerError):
    """Input posts, options or paths that cannot be used at all."""


class ImageError(DataError):
    """An image that cannot be used; str(error) is the reason, `code` its machine-readable kind (a record's
    `reason`). Per post: tagging records it and goes on."""

    def __init__(self, message: str, code: str = "image_unusable"):
        super().__init__(message)
        self.code = code


class BundleError(HashtaggerError):
    """A model bundle that cannot be used; the message names the file and the cause."""


class DeviceError(HashtaggerError):
    """The requested device cannot be used; the message says why."""


class OutputError(HashtaggerError):
    """An output that cannot be written or resumed; the message says why."""


class ParityError(HashtaggerError):
    """ONNX and PyTorch disagree beyond tolerance; nothing was written."""


class MissingExtraError(HashtaggerError):
    """A command needs an optional extra that is not installed; the message names it and the pip command."""


class ClusterError(HashtaggerError):
    """A Ray cluster that cannot be reached or used; the message says which address and why."""
