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


def io_options(func):
    """INPUT... (default stdin), -o/--output, formats."""
    func = click.option("--output-format", type=click.Choice(OUTPUT_FORMATS), default=None,
                        help="Output format (default: from the extension, extxyz on stdout).")(func)
    func = click.option("--input-format", type=click.Choice(INPUT_FORMATS), default=None,
                        help="Input format (default: from the extension, else sniffed).")(func)
    func = click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
                        help="Output file (- for stdout). A file is appended to and resumed.")(func)
    return inputs_argument(func)


def stream_options(func):
    """Resume/shard/failure/progress options of every long command."""
    func = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")(func)
    func = click.option("--no-resume", is_flag=True,
                        help="Overwrite the output file instead of skipping ids already in it.")(func)
    func = click.option("--failed", default=None, metavar="FILE",
                        help="Write frames that fail (with info['error']) here; the run exits 0.")(func)
    func = click.option("--shard", type=ShardType(), default=None,
                        help="Process only shard i of n (0-based, split by id hash), or 'auto' from SLURM_ARRAY_TASK_ID.")(func)
    return io_options(func)


def model_options(default: str | None = None):
    def deco(func):
        func = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                            help="Where the model runs.")(func)
        func = click.option("-m", "--model", default=default, show_default=True, metavar="NAME_OR_PATH",
                            help="Force field: a name (see `cscli models`) or a model file.")(func)
        return func

    return deco


def seed_option(func):
    return click.option("--seed", type=int, default=None, help="Random seed (reproducible output).")(func)


def stream_settings(command: str, output, output_format, shard, failed, no_resume, quiet, check=True, min_distance=0.5):
    """Build StreamOptions from the shared options' values."""
    from cscli.core.frames import claim_stdout
    from cscli.core.stream import StreamOptions

    claim_stdout()
    return StreamOptions(output=output, output_format=output_format, shard=shard, failed=failed,
                         resume=not no_resume, quiet=quiet, command=f"cscli {command}", check=check,
                         min_distance=min_distance)


def input_frames(inputs, input_format):
    """Frames of all inputs (stdin when none), streamed, with unique ids enforced."""
    from pathlib import Path

    from cscli.core.errors import DataError
    from cscli.core.frames import claim_stdout, iter_many
    from cscli.core.stream import iter_unique_ids

    claim_stdout()
    # fail on a missing input before the command loads a model or starts work (reading is lazy)
    for path in inputs or ["-"]:
        if path != "-" and not Path(path).is_file():
            raise DataError(f"{path}: {'is a directory, expected a frame file' if Path(path).is_dir() else 'no such file'}")
    return iter_unique_ids(iter_many(inputs or ["-"], input_format))


def pass_stream(command: str, check: bool = True):
    """Decorator: turn the shared stream options into ``frames`` and ``settings`` arguments."""

    def deco(func):
        @functools.wraps(func)
        def wrapper(inputs, output, input_format, output_format, shard, failed, no_resume, quiet, **kwargs):
            settings = stream_settings(command, output, output_format, shard, failed, no_resume, quiet, check=check)
            return func(frames=input_frames(inputs, input_format), settings=settings, **kwargs)

        return stream_options(wrapper)

    return deco


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
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                        help="Where the model runs.")(func)


def work_dir_option(help_text: str = "Folder for intermediate files (kept; a re-run resumes from them)."):
    return click.option("--work-dir", default=None, metavar="DIR", help=help_text)


def report_option(func):
    return click.option("--report", "report_path", default=None, metavar="FILE.json",
                        help="Write a JSON report of the run here.")(func)


def plot_option(what: str = "a plot"):
    return click.option("--plot", "plot_path", default=None, metavar="FILE.png", help=f"Write {what} here.")


def plot_dir_option(what: str = "plots"):
    return click.option("--plot-dir", "plot_dir", default=None, metavar="DIR", help=f"Write {what} (PNG) into DIR.")


def failed_option(func):
    return click.option("--failed", default=None, metavar="FILE",
                        help="Write frames that fail (with info['error']) here; the run exits 0.")(func)


def refs_option(required: bool = False, help_text: str = "Reference frames (repeatable)."):
    return click.option("--refs", "refs", multiple=True, required=required, metavar="FILE", help=help_text)


def input_format_option(func):
    return click.option("--input-format", type=click.Choice(INPUT_FORMATS), default=None,
                        help="Input format (default: from the extension, else sniffed).")(func)


def output_format_option(func):
    return click.option("--output-format", type=click.Choice(OUTPUT_FORMATS), default=None,
                        help="Output format (default: from the extension, extxyz on stdout).")(func)


def command_option(program: str, envvar: str | None = None):
    """``--<program>-command CMD``: how to start an external program (one spelling everywhere)."""
    return click.option(f"--{program}-command", f"{program.replace('-', '_')}_command", default=None, metavar="CMD",
                        envvar=envvar, show_envvar=bool(envvar), help=f"Command that runs {program}.")


def resolve_seed(seed: int | None) -> int:
    """The one seed rule: a given seed is used as is; without one a seed is drawn from the OS,
    used, and must be recorded in the output's provenance (``info['seed']``) so the run can be
    repeated."""
    if seed is not None:
        return int(seed)
    import secrets

    return secrets.randbelow(2**31 - 1)


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

    return click.option("--config", "config_file", default=None, metavar="FILE.yaml", is_eager=True,
                        expose_value=False, callback=load,
                        help="YAML file of option values (keys: option names); command-line flags win.")(func)
