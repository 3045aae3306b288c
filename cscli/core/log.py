"""One message path: a logger per command, ``cscli CMD: message`` on stderr.

Library code calls ``get_logger(__name__)`` (or :func:`command_logger`) and logs; it never prints to
stderr itself and never takes a ``quiet`` flag. The command sets the level once with
:func:`configure` (``-q`` → warnings and errors only).
"""

from __future__ import annotations

import logging
import sys

ROOT = "cscli"


class _CommandFormatter(logging.Formatter):
    def __init__(self, command: str):
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"{self.command}: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"{self.command}: warning: {message}"
        return f"{self.command}: {message}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (claim_stdout, pytest)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure(command: str, quiet: bool = False) -> logging.Logger:
    """Route every ``cscli.*`` logger to stderr with the ``cscli CMD:`` prefix; ``quiet`` keeps
    warnings and errors only. Returns the command's logger. Safe to call more than once."""
    root = logging.getLogger(ROOT)
    for handler in list(root.handlers):
        if getattr(handler, "_cscli", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler._cscli = True  # type: ignore[attr-defined]
    handler.setFormatter(_CommandFormatter(command if command.startswith("cscli") else f"cscli {command}"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False
    return logging.getLogger(f"{ROOT}.cmd")


def is_quiet() -> bool:
    """True when the command was started with ``-q`` (progress bars ask this)."""
    return not logging.getLogger(ROOT).isEnabledFor(logging.INFO)


def get_logger(name: str = ROOT) -> logging.Logger:
    """The logger for a library module (pass ``__name__``)."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")
