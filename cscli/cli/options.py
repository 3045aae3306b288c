"""Option types and decorators shared by every command (ASE/janus style: one definition each)."""

from __future__ import annotations

import functools

import click

INPUT_FORMATS = ["extxyz", "jsonl", "cif", "poscar"]
OUTPUT_FORMATS = ["extxyz", "jsonl"]


class ShardType(click.ParamType):
    """``i/n`` (0-based) or ``auto`` (SLURM array variables)."""

    name = "i/n"

    def convert(self, value, param, ctx):
        if value is None or not isinstance(value, str):
            return value
        from cscli.core.errors import UsageError
        from cscli.core.stream import parse_shard

        try:
            return parse_shard(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


class RangeFloat(click.ParamType):
    """``lo,hi`` or a single number (lo = hi)."""

    name = "lo,hi"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            parts = [float(x) for x in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a number or lo,hi pair", param, ctx)
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or parts[0] > parts[1] or parts[0] < 0:
            self.fail(f"{value!r}: need 0 <= lo <= hi", param, ctx)
        return tuple(parts)


def inputs_argument(func):
    return click.argument("inputs", nargs=-1, metavar="[INPUT]...")(func)


def output_option(help_text: str = "Output file (- for stdout). A file is appended to and resumed."):
    return click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help=help_text)


def io_options(func):
    """INPUT... (default stdin), -o/--output, formats."""
    func = output_format_option(func)
    func = input_format_option(func)
    func = output_option()(func)
    return inputs_argument(func)


def shard_option(func):
    return click.option(
        "--shard",
        type=ShardType(),
        default=None,
        help="Process only shard i of n (0-based, split by id hash), or 'auto' from SLURM_ARRAY_TASK_ID.",
    )(func)


def no_resume_option(func):
    return click.option(
        "--no-resume", is_flag=True, help="Overwrite the output file instead of skipping ids already in it."
    )(func)


def stream_options(func):
    """Resume/shard/failure/progress options of every long command."""
    func = quiet_option(func)
    func = no_resume_option(func)
    func = failed_option(func)
    func = shard_option(func)
    return io_options(func)


def model_option(
    default: str | None = None, help_text: str = "Force field: a name (see `cscli models`) or a model file."
):
    return click.option("-m", "--model", default=default, show_default=True, metavar="NAME_OR_PATH", help=help_text)


def model_options(default: str | None = None):
    """-m/--model and --device."""

    def deco(func):
        return model_option(default)(device_option(func))

    return deco


def seed_option(func):
    return click.option(
        "--seed",
        type=int,
        default=None,
        help="Random seed: the same seed gives the same output; without it a seed is drawn and recorded in the output.",
    )(func)


def stream_settings(command: str, output, output_format, shard, failed, no_resume, quiet, check=True):
    """Build StreamOptions from the shared options' values (and set the command's message level)."""
    from cscli.core.frames import claim_stdout
    from cscli.core.log import configure
    from cscli.core.stream import StreamOptions

    configure(command, quiet)
    claim_stdout()
    return StreamOptions(
        output=output,
        output_format=output_format,
        shard=shard,
        failed=failed,
        resume=not no_resume,
        command=f"cscli {command}",
        check=check,
    )


def input_frames(inputs, input_format, check=True):
    """Frames of all inputs (stdin when none), streamed, with unique ids enforced.

    Inputs are vetted before the command loads a model: a missing file, a directory, text that is
    not a structure file (the first frame of every file is parsed now) and an input with no frames
    at all fail at once. With ``check`` every frame passes :func:`cscli.core.frames.check_frame` as
    it is read and a bad one fails the input; stream commands pass ``check=False`` because
    ``run_stream`` checks each frame and fails a bad one alone.
    """
    import itertools

    from cscli.core.errors import DataError
    from cscli.core.frames import claim_stdout, first_frame, iter_many
    from cscli.core.stream import iter_unique_ids

    claim_stdout()
    paths = list(inputs) or ["-"]
    for path in paths:
        if path != "-":
            first_frame(path, input_format)
    frames = iter_many(paths, input_format, check)
    head = next(frames, None)  # stdin too: its first frame is parsed (and checked) now
    if head is None:
        names = ", ".join("stdin" if p == "-" else p for p in paths)
        raise DataError(f"no frames in input ({names}: empty)")
    return iter_unique_ids(itertools.chain([head], frames))


def read_input(inputs, input_format) -> list:
    """The whole input (commands that need every frame at once); DataError when it holds no frame."""
    from cscli.core.errors import DataError

    frames = list(input_frames(inputs, input_format))
    if not frames:
        raise DataError("no frames in input")
    return frames


def pass_stream(command: str, check: bool = True, no_input_with: str | None = None):
    """Decorator: turn the shared stream options into ``frames`` and ``settings`` arguments
    (and add ``--config``). ``no_input_with`` names an option that replaces the frame input
    (md-screen's ``--from-trajectory``): when it is given, ``frames`` is None and stdin is not read."""

    def deco(func):
        @functools.wraps(func)
        def wrapper(inputs, output, input_format, output_format, shard, failed, no_resume, quiet, **kwargs):
            settings = stream_settings(command, output, output_format, shard, failed, no_resume, quiet, check=check)
            if no_input_with and kwargs.get(no_input_with):
                if inputs:
                    from cscli.core.errors import UsageError

                    raise UsageError(f"give either INPUT frames or --{no_input_with.replace('_', '-')}, not both")
                return func(frames=None, settings=settings, **kwargs)
            # run_stream checks each frame (check_frame) and fails a bad one alone
            return func(frames=input_frames(inputs, input_format, check=False), settings=settings, **kwargs)

        return stream_options(config_option(wrapper))

    return deco


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options in sections: ``sections`` maps a heading to the
    parameter names under it; options in no section go under "Options"."""

    def __init__(self, *args, sections: dict[str, list[str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sections = sections or {}

    def format_options(self, ctx, formatter):
        placed = {name for names in self.sections.values() for name in names}
        by_name = {p.name: p for p in self.get_params(ctx)}
        general = [p for p in self.get_params(ctx) if p.name not in placed]
        groups = [("Options", general)] + [
            (title, [by_name[n] for n in names if n in by_name]) for title, names in self.sections.items()
        ]
        for title, params in groups:
            rows = [r for r in (p.get_help_record(ctx) for p in params) if r is not None]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


# ---------------------------------------------------------------------------------------------
# The option vocabulary: one definition per concept, the same word in every command
# (docs/DEVELOPING.md has the table). New commands use these; no command defines its own.
# ---------------------------------------------------------------------------------------------


class KeyValue(click.ParamType):
    """``KEY=VALUE`` → ``(key, value)``; the value is JSON when it parses as JSON, else the text.

    Used by every option that passes settings through to a program (``--incar``, ``--gpaw-opt``…).
    """

    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        import json

        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return key.strip(), parsed


def quiet_option(func):
    return click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only on stderr (no progress).")(func)


def device_option(func):
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help="Where the model runs.",
    )(func)


def optimizer_option(help_text: str = "ASE optimizer of the relaxations.", default: str = "FIRE"):
    from cscli.explore.relax import OPTIMIZERS  # light module: ASE is imported inside its functions

    return click.option(
        "--optimizer",
        type=click.Choice(OPTIMIZERS, case_sensitive=False),
        metavar="[" + "|".join(OPTIMIZERS) + "]",  # click lists case-insensitive choices in lower case
        default=default,
        show_default=True,
        help=help_text,
    )


def work_dir_option(help_text: str = "Folder for intermediate files (kept; a re-run resumes from them)."):
    return click.option("--work-dir", default=None, metavar="DIR", help=help_text)


def report_option(func):
    return click.option(
        "--report", "report_path", default=None, metavar="FILE.json", help="Write a JSON report of the run here."
    )(func)


def write_report(report: dict, path: str) -> None:
    """Write the ``--report`` JSON (``-``: stdout, the data channel)."""
    import json

    from cscli.core.frames import data_stdout, to_builtin

    text = json.dumps(to_builtin(report), indent=1) + "\n"
    if path == "-":
        out = data_stdout()
        out.write(text)
        out.flush()
        return
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def plot_option(what: str = "a plot"):
    return click.option("--plot", "plot_path", default=None, metavar="FILE.png", help=f"Write {what} here.")


def plot_dir_option(what: str = "plots"):
    return click.option("--plot-dir", "plot_dir", default=None, metavar="DIR", help=f"Write {what} (PNG) into DIR.")


def failed_option(func):
    return click.option(
        "--failed",
        default=None,
        metavar="FILE",
        help="Write frames that fail (with info['error']) here; the run exits 0.",
    )(func)


def refs_format_option(func):
    return click.option(
        "--refs-format",
        type=click.Choice(INPUT_FORMATS),
        default=None,
        help="Format of the --refs files (default: from the extension).",
    )(func)


def refs_option(required: bool = False, help_text: str = "Reference frames (repeatable)."):
    return click.option("--refs", "refs", multiple=True, required=required, metavar="FILE", help=help_text)


def input_format_option(func):
    return click.option(
        "--input-format",
        type=click.Choice(INPUT_FORMATS),
        default=None,
        help="Input format (default: from the extension, else sniffed).",
    )(func)


def output_format_option(func):
    return click.option(
        "--output-format",
        type=click.Choice(OUTPUT_FORMATS),
        default=None,
        help="Output format (default: from the extension, extxyz on stdout).",
    )(func)


def command_option(program: str, envvar: str | None = None, help_text: str | None = None, default: str | None = None):
    """``--<program>-command CMD``: how to start an external program (one spelling everywhere)."""
    return click.option(
        f"--{program}-command",
        f"{program.replace('-', '_')}_command",
        default=default,
        metavar="CMD",
        envvar=envvar,
        show_envvar=bool(envvar),
        show_default=default is not None,
        help=help_text or f"Command that runs {program}.",
    )


def resolve_seed(seed: int | None) -> int:
    """The one seed rule: a given seed is used as is; without one a seed is drawn from the OS,
    used, and must be recorded in the output's provenance (``info['seed']``) so the run can be
    repeated."""
    if seed is not None:
        return int(seed)
    import secrets

    from cscli.core.log import get_logger

    drawn = secrets.randbelow(2**31 - 1)
    get_logger("cscli.cmd").info(f"--seed {drawn} drawn (pass it to reproduce this run)")
    return drawn


def config_option(func):
    """``--config FILE.yaml``: defaults for the command's options, keys named like the options
    (``--num-workers`` → ``num_workers`` or ``num-workers``); flags on the command line win.
    Works like click's ``default_map`` (janus-core's habit)."""

    def load(ctx, param, value):
        if value is None:
            return value
        from pathlib import Path

        import yaml

        path = Path(value)
        if not path.is_file():
            raise click.BadParameter(f"{value}: no such file", ctx=ctx, param=param)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{value}: not YAML ({str(exc).splitlines()[0]})", ctx=ctx, param=param) from None
        if not isinstance(data, dict):
            raise click.BadParameter(f"{value}: expected a mapping of option names to values", ctx=ctx, param=param)
        known = {p.name for p in ctx.command.params}
        mapped = {}
        for key, val in data.items():
            name = str(key).lstrip("-").replace("-", "_")
            if name not in known:
                raise click.BadParameter(f"{value}: unknown option {key!r} for this command", ctx=ctx, param=param)
            mapped[name] = val
        ctx.default_map = {**(ctx.default_map or {}), **mapped}
        return value

    return click.option(
        "--config",
        "config_file",
        default=None,
        metavar="FILE.yaml",
        is_eager=True,
        expose_value=False,
        callback=load,
        help="YAML file of option values (keys: option names); command-line flags win.",
    )(func)
