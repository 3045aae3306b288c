"""Error types with the exit codes the CLI maps them to.

* ``UsageError`` (exit 2): the command line itself is wrong (bad option value, unknown model name).
* ``DataError`` (exit 1): the input data are wrong (malformed file, unknown element, empty input,
  missing keys, unreadable model file).
* ``FrameError``: one frame cannot be processed (overlapping atoms, NaN energies). Stream commands
  report it, write the frame to ``--failed`` and go on with the next frame.
"""


class CscliError(Exception):
    exit_code = 1


class DataError(CscliError):
    exit_code = 1


class UsageError(CscliError):
    exit_code = 2


class ModelError(CscliError):
    """A model cannot be found or loaded (missing weights, unknown backend)."""

    exit_code = 1


class FrameError(CscliError):
    """One frame failed; the run goes on."""

    exit_code = 1
