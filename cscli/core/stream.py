"""Run a per-frame function over a frame stream: resume, shards, failures, progress.

Every long command (relax, perturb, label, motifs, …) is a function ``Atoms -> Atoms | list[Atoms]``
handed to :func:`run_stream`, which

* streams input frames and writes each result as soon as it is ready (flushed);
* resumes: with an output *file*, ids already there are skipped, so a re-run after a kill yields
  each id exactly once;
* shards: ``--shard i/n`` keeps the frames whose id hashes to ``i`` (0-based), a deterministic
  split a SLURM array can use (``--shard auto`` reads ``SLURM_ARRAY_TASK_ID``/``_COUNT``);
* isolates failures: a frame whose processing raises is reported on stderr in one line and written
  (with ``info['error']``) to ``--failed``; the run goes on.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cscli.core.errors import CscliError, DataError, FrameError, UsageError
from cscli.core.frames import FrameWriter, check_frame, remove_if_empty, scan_output
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

_log = get_logger(__name__)


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def keeps(self, frame_id: str) -> bool:
        return shard_of(frame_id, self.count) == self.index


def shard_of(frame_id: str, count: int) -> int:
    """Deterministic shard of an id (independent of input order and of PYTHONHASHSEED)."""
    digest = hashlib.sha1(frame_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str | None) -> Shard | None:
    """``"i/n"`` (0 ≤ i < n) or ``"auto"`` (from SLURM array variables) → Shard."""
    if text is None or text == "":
        return None
    if text == "auto":
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        count = os.environ.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            raise UsageError(
                "--shard auto needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (run inside an sbatch --array job)"
            )
        task_min = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(os.environ.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
        offset, n = int(task) - task_min, int(count)
        # --array=0-6:2 numbers tasks 0,2,4,6: shard = (id - min) / step. Gapped lists (--array=0,2)
        # cannot be mapped onto 0..count-1 and would silently drop frames, so they are refused.
        if step < 1 or offset % step or not 0 <= offset // step < n:
            raise UsageError(
                f"--shard auto: array task {task} (min {task_min}, step {step}, count {n}) is not "
                f"task i of 0..{n - 1}; use a range --array=A-B[:S], or give --shard i/n"
            )
        return Shard(offset // step, n)
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= i < n")
    return Shard(i, n)


@dataclass
class StreamOptions:
    output: str = "-"
    output_format: str | None = None
    shard: Shard | None = None
    failed: str | None = None
    resume: bool = True
    command: str = "cscli"
    check: bool = True  # run check_frame on each input


@dataclass
class StreamSummary:
    read: int = 0
    written: int = 0
    skipped_done: int = 0
    skipped_shard: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def progress(iterable=None, desc: str = "cscli", total: int | None = None, unit: str = "frame"):
    """A tqdm bar on stderr, or the bare iterable (a no-op bar) when the command runs with ``-q``."""
    from cscli.core.log import is_quiet

    if is_quiet():
        return iterable if iterable is not None else _NoBar()
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def add_history(atoms: Atoms, entry: str) -> None:
    prev = atoms.info.get("history")
    atoms.info["history"] = f"{prev};{entry}" if prev else entry


class FrameSink:
    """The resumable output of a run: ids already in an output *file* are ``done`` (resume), each
    new frame is written and flushed at once, failures go to ``--failed`` with ``info['error']``.
    Counts land in ``summary``. Use it as a context manager; a closed reader (``| head``) ends the
    writing quietly, keeping what was written."""

    def __init__(self, options: StreamOptions):
        self.options = options
        self.summary = StreamSummary()
        to_file = options.output != "-"
        self.done: set[str] = (
            scan_output(options.output, options.output_format) if to_file and options.resume else set()
        )
        self.writer = FrameWriter(options.output, options.output_format, append=to_file and options.resume)
        self._failed_writer = None

    def is_done(self, ids: Iterable[str]) -> bool:
        """True when every id is in the output already."""
        return bool(self.done) and all(i in self.done for i in ids)

    def write(self, atoms: Atoms) -> bool:
        """Write one frame unless its id is done; True when written."""
        fid = atoms.info["id"]
        if fid in self.done:
            return False
        self.writer.write(atoms)
        self.done.add(fid)
        self.summary.written += 1
        return True

    def fail(self, frame_id: str, message: str, atoms: Atoms | None = None) -> None:
        """Report one failed frame (one line) and keep it in ``--failed`` when there is a frame."""
        self.summary.failed += 1
        self.summary.failures.append((frame_id, message))
        where = f"{atoms.info['source']}: " if atoms is not None and atoms.info.get("source") else ""
        _log.warning(f"{where}frame {frame_id} failed: {message}")
        if atoms is not None and self.options.failed:
            if self._failed_writer is None:
                self._failed_writer = FrameWriter(self.options.failed, append=True)
            bad = atoms.copy()
            bad.info["error"] = message
            self._failed_writer.write(bad)

    def close(self) -> None:
        self.writer.close()
        if self._failed_writer is not None:
            self._failed_writer.close()

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        if exc_type is BrokenPipeError:
            # the reader went away (e.g. `| head`); what was written stays written
            _silence_stdout()
            return True
        return False


def run_stream(
    frames: Iterable[Atoms],
    process: Callable[[Atoms], Atoms | list[Atoms]],
    options: StreamOptions,
    output_ids: Callable[[Atoms], list[str]] | None = None,
) -> StreamSummary:
    """Apply ``process`` to each frame and stream the results to ``options.output``.

    ``output_ids(atoms)`` names the ids a frame will produce (default: its own id); a frame is
    skipped on resume only when all of them are already in the output.
    """
    sink = FrameSink(options)
    summary = sink.summary
    with sink:
        for atoms in progress(frames, options.command):
            summary.read += 1
            fid = atoms.info["id"]
            if options.shard is not None and not options.shard.keeps(fid):
                summary.skipped_shard += 1
                continue
            if sink.is_done(output_ids(atoms) if output_ids else [fid]):
                summary.skipped_done += 1
                continue
            try:
                if options.check:
                    check_frame(atoms)
                result = process(atoms)
            except (UsageError, KeyboardInterrupt):
                raise
            except Exception as exc:  # one bad frame must not end the run
                sink.fail(fid, _one_line(exc), atoms)
                continue
            for out in result if isinstance(result, list) else [result]:
                sink.write(out)
    return summary


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, CscliError):
        text = str(exc)
        # FrameError messages already name the frame
        return text.split(": ", 1)[1] if text.startswith("frame ") and ": " in text else text
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def finish(summary: StreamSummary, options: StreamOptions, what: str = "frames") -> None:
    """Report the run on stderr; raise DataError when frames failed and were not captured.

    Failures written to ``--failed`` are accounted for, so the run exits 0; without ``--failed``
    they would be lost silently, so the exit status is 1.
    """
    if summary.read == 0:
        raise DataError("no frames in input")
    _log.info(summary_line(summary, options, what))
    if summary.failed and not options.failed:
        raise DataError(
            f"{summary.failed} of {summary.read} frames failed (pass --failed FILE to keep them and exit 0)"
        )


def summary_line(summary: StreamSummary, options: StreamOptions, what: str = "frames") -> str:
    """``N frames written, K already done, S in other shards, F failed (see FILE)``."""
    parts = [f"{summary.written} {what} written"]
    if summary.skipped_done:
        parts.append(f"{summary.skipped_done} already done")
    if summary.skipped_shard:
        parts.append(f"{summary.skipped_shard} in other shards")
    if summary.failed:
        parts.append(f"{summary.failed} failed" + (f" (see {options.failed})" if options.failed else ""))
    return ", ".join(parts)


def iter_unique_ids(frames: Iterable[Atoms]) -> Iterator[Atoms]:
    """Refuse duplicate ids in one stream: resume and shards rely on ids being unique."""
    seen: set[str] = set()
    for atoms in frames:
        fid = atoms.info["id"]
        if fid in seen:
            raise DataError(f"duplicate frame id {fid!r} in input; ids must be unique")
        seen.add(fid)
        yield atoms


def nan_check(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FrameError(f"{what} is not finite ({value})")
    return value


__all__ = [
    "FrameSink",
    "Shard",
    "StreamOptions",
    "StreamSummary",
    "add_history",
    "finish",
    "iter_unique_ids",
    "nan_check",
    "parse_shard",
    "progress",
    "remove_if_empty",
    "run_stream",
    "shard_of",
    "summary_line",
]
