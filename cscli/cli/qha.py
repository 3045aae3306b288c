"""``cscli qha``: quasi-harmonic G(T, p) of each frame (phonopy + any force field)."""

from __future__ import annotations

import click

from cscli.cli.options import (
    model_options,
    optimizer_option,
    pass_stream,
    plot_dir_option,
    work_dir_option,
)

DEFAULT_SCALES = "0.95:1.05:0.02"


@click.command("qha")
@pass_stream("qha")
@model_options(default=None)
@click.option(
    "--scales",
    default=DEFAULT_SCALES,
    show_default=True,
    metavar="LO:HI:STEP",
    help="Lattice scale factors of the relaxed cell (a = s·a0), or a comma list; at least 5.",
)
@click.option(
    "--temperatures",
    default="0:600:10",
    show_default=True,
    metavar="LO:HI:STEP",
    help="Temperatures (K), or a comma list.",
)
@click.option(
    "--pressures",
    default="0,0.5,1,2",
    show_default=True,
    metavar="P,...",
    help="Pressures (GPa), or LO:HI:STEP; all from the same phonon runs.",
)
@click.option(
    "--eos",
    type=click.Choice(["vinet", "birch_murnaghan", "murnaghan"]),
    default="vinet",
    show_default=True,
    help="Equation of state fitted to F(V) at each T.",
)
@click.option(
    "--min-length",
    type=click.FloatRange(0),
    default=12.0,
    show_default=True,
    help="Every supercell lattice length is at least this (Å).",
)
@click.option(
    "--mesh",
    default="20",
    show_default=True,
    metavar="L|N,N,N",
    help="q-mesh: a length (phonopy's mesh length, Å), three integers, or 'supercell' (the "
    "supercell's commensurate q-points, Γ-centred: exact frequencies, coarser sampling; docs/qha.md).",
)
@click.option(
    "--displacement",
    type=click.FloatRange(min=0, min_open=True),
    default=0.01,
    show_default=True,
    help="Finite displacement (Å).",
)
@click.option("--no-prerelax", is_flag=True, help="Use the input cell as a0 (no relaxation first).")
@click.option(
    "--fmax",
    type=click.FloatRange(min=0, min_open=True),
    default=0.001,
    show_default=True,
    help="Force threshold of the pre-relaxation and of the fixed-volume relaxations (eV/Å).",
)
@click.option(
    "--steps", type=click.IntRange(0), default=500, show_default=True, help="Maximum optimizer steps per relaxation."
)
@optimizer_option(
    "ASE optimizer of the pre-relaxation and the fixed-volume relaxations (BFGS: 2.6-5.2x less CPU than "
    "FIRE at the same energies, docs/qha.md).",
    default="BFGS",
)
@click.option(
    "--symprec",
    type=click.FloatRange(0),
    default=1e-3,
    show_default=True,
    help="Relaxations keep the space group found at this tolerance (Å; refine_symmetry + FixSymmetry); 0 = off.",
)
@click.option(
    "--follow-soft-modes",
    is_flag=True,
    help="After the pre-relaxation, compute Γ phonons of the cell and relax it along any imaginary optical "
    "mode, without the symmetry constraint, to the model's lower-symmetry minimum (a structure held on a "
    "saddle by its space group otherwise fails on imaginary modes); recorded in qha_soft_modes.",
)
@click.option(
    "--imaginary-tol",
    type=click.FloatRange(0),
    default=0.1,
    show_default=True,
    help="A lowest mesh frequency below -TOL (THz) marks a volume unstable.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Displaced supercells per model call where the backend batches (SevenNet); 1 = one at a "
    "time (faster on CPU, see docs/qha.md).",
)
@work_dir_option(
    "Cache of per-volume relaxed cells and force sets; a killed run resumes from it "
    "(default: OUTPUT.qha-work beside a file output, none for stdout)."
)
@plot_dir_option("per frame F(V) at several T with the G minimum path, V(T) and α(T)")
def command(
    frames,
    settings,
    model,
    device,
    scales,
    temperatures,
    pressures,
    eos,
    min_length,
    mesh,
    displacement,
    no_prerelax,
    fmax,
    steps,
    optimizer,
    symprec,
    follow_soft_modes,
    imaginary_tol,
    batch_size,
    work_dir,
    plot_dir,
):
    """Quasi-harmonic Gibbs free energy G(T, p) of each frame.

    Per frame: pre-relax (tight --fmax), scale the lattice by each --scales factor, relax ions and
    cell shape at fixed volume, phonons by finite displacements (phonopy, symmetry-reduced) in a
    supercell with all lengths >= --min-length, thermal properties on the --mesh, and phonopy's
    QHA (EOS fit of E(V) + F_ph(V,T) + pV) at every pressure. Volumes with imaginary modes are
    left out of the fit while >= 5 remain, else the frame fails.

    Writes info keys (arrays indexed [T][p], per atom) qha_temperatures (K), qha_pressures (GPa),
    qha_gibbs_per_atom (eV/atom), qha_volume_per_atom (Å³/atom), qha_bulk_modulus (GPa),
    qha_thermal_expansion (1/K), qha_heat_capacity_p (J/K/mol of atoms), qha_scales_used,
    qha_scales, qha_min_frequency (THz, per scale), qha_imaginary, qha_eos, qha_supercell,
    qha_mesh, qha_settings, model.

    \b
      cscli qha Li3PS4.extxyz -o qha.extxyz --scales 0.95:1.05:0.025 --min-length 10
      cscli hull qha.extxyz --refs refs_qha.extxyz --at 300,2 --plot pd.png
    """
    from pathlib import Path

    from cscli.core.errors import UsageError
    from cscli.core.models import load_calculator
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.props.qha import (
        SUPERCELL_MESH,
        QHASettings,
        parse_grid,
        qha_frame,
        qha_info,
        qha_provenance,
    )

    try:
        if mesh == SUPERCELL_MESH:
            mesh_value = SUPERCELL_MESH
        else:
            mesh_value = [int(x) for x in mesh.split(",")] if "," in str(mesh) else float(mesh)
    except ValueError:
        raise UsageError(f"--mesh {mesh!r}: a length (number), three integers N,N,N or 'supercell'") from None
    if isinstance(mesh_value, list) and (len(mesh_value) != 3 or min(mesh_value) < 1):
        raise UsageError(f"--mesh {mesh!r}: three positive integers N,N,N")
    qset = QHASettings(
        scales=tuple(parse_grid(scales, "--scales")),
        temperatures=tuple(parse_grid(temperatures, "--temperatures")),
        pressures=tuple(parse_grid(pressures, "--pressures")),
        eos=eos,
        min_length=min_length,
        mesh=mesh_value,
        displacement=displacement,
        prerelax=not no_prerelax,
        prerelax_fmax=fmax,
        fmax=fmax,
        steps=steps,
        imaginary_tol=imaginary_tol,
        batch_size=batch_size,
        symprec=symprec or None,
        optimizer=optimizer,
        follow_soft_modes=follow_soft_modes,
    )
    qset.check()  # bad grids fail before the model loads
    if work_dir is None and settings.output != "-":
        work_dir = str(Path(settings.output).with_suffix("")) + ".qha-work"
    if plot_dir:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    calc = load_calculator(model, device)
    provenance = qha_provenance(calc, qset)

    def process(atoms):
        result = qha_frame(atoms, calc, qset, work_dir=work_dir)
        out = atoms.copy()
        out.info.update(qha_info(result))
        out.info["qha_settings"] = provenance
        out.info["model"] = calc.cscli_model
        if plot_dir:
            from cscli.props.qha import plot_frame

            plot_frame(result, Path(plot_dir) / f"{atoms.info['id']}.png", title=str(atoms.info["id"]))
        add_history(out, f"qha({calc.cscli_model})")
        return out

    finish(run_stream(frames, process, settings), settings)
