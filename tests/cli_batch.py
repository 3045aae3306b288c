"""Run many cscli command lines cheaply: one interpreter, one forked process per command line.

``python tests/cli_batch.py CASES.json RESULTS.json``. Each case is ``{"args": [...], "cwd": DIR,
"stdin": FILE or null}``; each result is ``{"returncode", "stdout", "stderr", "imported"}``, where
``imported`` lists the model packages (torch, chgnet, sevenn, deepmd, mattersim) the command
imported, so a test can see that a bad input failed before any model was loaded.

Why: starting Python and importing numpy/ASE costs 1-5 s per command on a shared machine, and the
input-check catalogue runs ~150 command lines. The parent imports the light packages once; every
command line then runs in a real child process (``os.fork``) through the same entry point as
``python -m cscli`` (``cscli.cli.main.cli``), with its own stdin/stdout/stderr file descriptors and
exit status, so what is checked is what a user sees. Model packages are never imported by the
parent. POSIX only (fork).
"""

from __future__ import annotations

import json
import os
import sys

MODEL_PACKAGES = ("torch", "chgnet", "sevenn", "deepmd", "mattersim")


def _child(case: dict, out_path: str, err_path: str, mods_path: str) -> None:
    import signal

    from cscli.cli.main import cli

    signal.alarm(int(case.get("timeout", 300)))  # a hung command dies (SIGALRM) instead of the batch
    os.chdir(case.get("cwd") or os.getcwd())
    stdin = case.get("stdin")
    fd_in = os.open(stdin if stdin else os.devnull, os.O_RDONLY)
    fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for fd, target in ((fd_in, 0), (fd_out, 1), (fd_err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    code = 1
    try:
        cli.main(args=case["args"], prog_name="cscli", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what the interpreter would print for an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with open(mods_path, "w") as fh:
            json.dump([m for m in MODEL_PACKAGES if m in sys.modules], fh)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        from cscli.core import frames

        if frames._DATA_STDOUT is not None:
            try:
                frames._DATA_STDOUT.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


def main(cases_path: str, results_path: str) -> None:
    import tempfile

    # the light imports every command needs, loaded once (never a model package)
    import ase.io.extxyz  # noqa: F401
    import ase.neighborlist  # noqa: F401
    import click  # noqa: F401
    import numpy  # noqa: F401
    import scipy.spatial  # noqa: F401

    import cscli.cli.main  # noqa: F401
    import cscli.cli.options  # noqa: F401
    import cscli.core.frames  # noqa: F401

    with open(cases_path) as fh:
        cases = json.load(fh)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, case in enumerate(cases):
            paths = [os.path.join(tmp, f"{k}.{ext}") for ext in ("out", "err", "mods")]
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(case, *paths)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            texts = []
            for path in paths:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    texts.append(fh.read())
            results.append(
                {"returncode": code, "stdout": texts[0], "stderr": texts[1], "imported": json.loads(texts[2] or "[]")}
            )
    with open(results_path, "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main(*sys.argv[1:3])
