"""Run a training subprocess with its output in a log file (and echoed to stderr when asked)."""

from __future__ import annotations

import os
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from cscli.core.errors import ModelError, UsageError
from cscli.core.log import get_logger

_log = get_logger(__name__)


def device_env(device: str, env: dict | None = None) -> dict:
    """Environment for a training subprocess that runs on ``device`` (auto, cpu, cuda)."""
    env = dict(os.environ if env is None else env)
    # deepmd's data-loader worker processes cost more than they give on small data sets
    env.setdefault("NUM_WORKERS", "0")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["DEVICE"] = "cpu"  # deepmd-kit's PyTorch backend reads this
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is visible to torch here")
        env.pop("DEVICE", None)
    elif device != "auto":
        raise UsageError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return env


def run_logged(
    cmd: Sequence[str],
    cwd: str | Path,
    log: str | Path,
    env: dict,
    echo: Callable[[str], bool] | None = None,
    what: str = "training",
) -> None:
    """Run ``cmd`` in ``cwd``; all output goes to ``log``; lines accepted by ``echo`` are logged
    (INFO: shown unless the command runs with ``-q``).

    Raises ModelError with the last lines of the log when the command fails.
    """
    tail: deque[str] = deque(maxlen=15)
    with open(log, "w", encoding="utf-8") as fh:
        try:
            proc = subprocess.Popen(
                list(map(str, cmd)),
                cwd=str(cwd),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        except FileNotFoundError as exc:
            raise ModelError(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                tail.append(line.rstrip())
                if echo is not None and echo(line):
                    _log.info("%s", line.rstrip())
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        raise ModelError(f"{what} failed (exit {rc}, log {log}): {failure_reason(tail)}")


def failure_reason(lines: Sequence[str]) -> str:
    """The Python exception line of a crashed tool's output (``ValueError: ...``), else its last lines."""
    import re

    lines = [t.strip() for t in lines if t.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", line):
            return line
    return " | ".join(lines[-6:])
