"""The error types users see. Every one is an `EdgeadError`: the CLI prints its message on one
line and exits 2, so no traceback reaches a user for a user mistake. Each also subclasses the
builtin it used to be (ValueError, RuntimeError), so existing `except` clauses keep working."""
from __future__ import annotations


class EdgeadError(Exception):
    """A problem the user can fix; the message says what, where and how."""


class UsageError(EdgeadError, ValueError):
    """A command-line flag or argument that does not apply or is out of range."""


class DataError(EdgeadError, ValueError):
    """The data folder or file does not have the expected layout or content."""


class RunError(EdgeadError, ValueError):
    """A run folder is missing or malformed."""


class BundleError(EdgeadError, ValueError):
    """A bundle is missing, malformed, corrupted or cannot be written."""


class TaskMismatch(EdgeadError, ValueError):
    """A run or bundle of one task (image, signal) used where another task's is needed."""


class ExportError(EdgeadError, RuntimeError):
    """Conversion failed or the artefact does not reproduce torch."""


class DistributedError(EdgeadError, RuntimeError):
    """A training run across processes (torchrun) lost a rank, or a rank never joined."""


class EngineError(EdgeadError, RuntimeError):
    """A job on an external engine (Ray) failed as a whole, e.g. its workers could not start."""
