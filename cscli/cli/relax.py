"""cscli relax: relax frames with a machine-learned force field."""

import click

from cscli.cli.options import model_options, optimizer_option, pass_stream


@click.command("relax")
@pass_stream("relax")
@model_options(default=None)
@click.option("--fmax", type=float, default=0.05, show_default=True, help="Force convergence (eV/Å).")
@click.option("--steps", type=click.IntRange(0), default=500, show_default=True, help="Maximum optimizer steps.")
@optimizer_option()
@click.option("--fix-cell", is_flag=True, help="Relax positions only (default: cell too, FrechetCellFilter).")
@click.option("--pressure", type=float, default=0.0, show_default=True, help="Hydrostatic pressure (GPa).")
@click.option(
    "--trajectory-dir", default=None, metavar="DIR", help="Write each relaxation's ASE trajectory to DIR/<id>.traj."
)
def command(frames, settings, model, device, fmax, steps, optimizer, fix_cell, pressure, trajectory_dir):
    """Relax each frame (positions and cell) and record energy, forces, stress and convergence.

    Writes info keys energy, energy_per_atom, stress, model, relax_converged, relax_steps,
    relax_fmax, relax_optimizer, relax_cell_filter and arrays forces. Unconverged frames are kept
    (relax_converged=F); frames whose model output is not finite fail (see --failed).

    \b
    Example:
      cscli relax refs.extxyz -o relaxed.extxyz --model 7net-0 --fmax 0.05
    """
    from pathlib import Path

    from cscli.core.models import load_calculator
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.explore.relax import relax_atoms

    calc = load_calculator(model, device)
    if trajectory_dir:
        Path(trajectory_dir).mkdir(parents=True, exist_ok=True)

    def process(atoms):
        traj = str(Path(trajectory_dir) / f"{atoms.info['id']}.traj") if trajectory_dir else None
        result = relax_atoms(
            atoms,
            calc,
            fmax=fmax,
            steps=steps,
            optimizer=optimizer,
            fix_cell=fix_cell,
            pressure=pressure,
            trajectory=traj,
        )
        add_history(result, f"relax({calc.cscli_model})")
        return result

    finish(run_stream(frames, process, settings), settings)
