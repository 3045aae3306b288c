"""The ``cscli`` click group.

Subcommands are imported only when invoked, so ``cscli --help`` never imports torch, ASE or
pymatgen. Add a command by writing ``cscli/cli/<name>.py`` with a click command named ``command``
and listing it in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from cscli import __version__

# name -> (module, one-line help). Order is the exploration loop's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("cscli.cli.generate", "Generate candidate crystals (MatterGen, random, motif-seeded)."),
    "relax": ("cscli.cli.relax", "Relax frames with a machine-learned force field."),
    "hull": ("cscli.cli.hull", "Energy above the convex hull against reference phases."),
    "sun-filter": ("cscli.cli.sun_filter", "Flag stable, unique and novel (S.U.N.) frames."),
    "dft-select": ("cscli.cli.dft_select", "Pick frames for DFT by E_hull bins; write VASP inputs."),
    "perturb": ("cscli.cli.perturb", "Perturbed copies of frames (atoms and lattice)."),
    "label": ("cscli.cli.label", "Label frames with energies/forces (GPAW, VASP, or an MLFF oracle)."),
    "collect": ("cscli.cli.collect", "Read finished VASP runs back into labelled frames."),
    "entropy-select": ("cscli.cli.entropy_select", "Select training frames by information-entropy gain."),
    "finetune": ("cscli.cli.finetune", "Fine-tune a force field (DPA-3, MatterSim, SevenNet) or MatterGen."),
    "evaluate": ("cscli.cli.evaluate", "Energy/force/stress errors of a model against labelled frames."),
    "motifs": ("cscli.cli.motifs", "Anion motifs (P-S graph units), names and a catalogue."),
    "report": ("cscli.cli.report", "Completeness of the loop over its iterations: S.U.N., entropy, motifs, errors."),
    "qha": ("cscli.cli.qha", "Quasi-harmonic free energies and Gibbs-hull phase diagrams."),
    "md-screen": ("cscli.cli.md_screen", "Li conductivity from MD mean-square displacement."),
    "density": ("cscli.cli.density", "Charge-density model: CHGCAR in and out."),
    "table": ("cscli.cli.table", "Print info keys of frames as a table (or TSV)."),
    "models": ("cscli.cli.models", "List force-field models and where their weights are looked for."),
}


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, help_text = COMMANDS[name]
        if not _module_exists(module_name):
            return _planned(name, help_text)
        module = importlib.import_module(module_name)
        return module.command

    def format_commands(self, ctx, formatter):
        rows = []
        for name, (module_name, help_text) in COMMANDS.items():
            suffix = "" if _module_exists(module_name) else " (planned)"
            rows.append((name, help_text + suffix))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        from cscli.core.errors import CscliError

        try:
            return super().invoke(ctx)
        except CscliError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            sub = _command_name(ctx, exc)
            click.echo(f"cscli {sub}: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # never a traceback for users unless asked for
            if ctx.obj and ctx.obj.get("debug"):
                raise
            sub = _command_name(ctx, exc)
            first = (str(exc).strip().splitlines() or [""])[0]
            click.echo(
                f"cscli {sub}: error: {type(exc).__name__}: {first} (re-run with --debug for the traceback)", err=True
            )
            sys.exit(1)


def _command_name(ctx, exc) -> str:
    """``CMD`` of the ``cscli CMD: error:`` line: a click group below (``cscli density``) names its
    subcommand by setting ``exc.cscli_command`` (see :class:`NamedSubcommandGroup`)."""
    return getattr(exc, "cscli_command", None) or ctx.invoked_subcommand or "cscli"


class NamedSubcommandGroup(click.Group):
    """A command group whose errors are reported as ``cscli GROUP SUB: error: ...``."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if ctx.invoked_subcommand and not hasattr(exc, "cscli_command"):
                try:
                    exc.cscli_command = f"{ctx.info_name} {ctx.invoked_subcommand}"
                except AttributeError:  # an exception type without a __dict__
                    pass
            raise


def _planned(name: str, help_text: str) -> click.Command:
    def run():
        click.echo(f"cscli {name}: not implemented yet (planned)", err=True)
        sys.exit(2)

    return click.Command(name, callback=run, help=help_text + " (planned)")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cscli")
@click.option("--debug", is_flag=True, envvar="CSCLI_DEBUG", help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """Crystal-structure exploration in one chemical system, one pipe-able command per step.

    Frames flow between commands as extxyz or JSON lines on files or stdin/stdout (-):

        cscli relax refs.extxyz | cscli perturb -n 3 --seed 1 > out.extxyz
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:
        os.environ["CSCLI_DEBUG"] = "1"
