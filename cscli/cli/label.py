"""``cscli label``: energies, forces and stress from GPAW, VASP or an MLFF oracle."""

from __future__ import annotations

import click

from cscli.cli.options import KeyValue, command_option, device_option, model_option, pass_stream, work_dir_option


@click.command("label")
@pass_stream("label")
@click.option(
    "-c",
    "--calculator",
    type=click.Choice(["gpaw", "vasp", "model"]),
    default="gpaw",
    show_default=True,
    help="gpaw: PBE plane-wave DFT (offline); vasp: VASP through ASE; model: a cscli force field "
    "as a stand-in oracle (label_method mlff-oracle:<model>).",
)
@model_option(help_text="Force field for --calculator model (a name, see `cscli models`, or a model file).")
@device_option
@click.option("--ecut", type=float, default=500.0, show_default=True, help="GPAW plane-wave cutoff (eV).")
@click.option(
    "--kpt-density",
    type=float,
    default=4.0,
    show_default=True,
    help="GPAW Γ-centred k-points per Å⁻¹ (2π included): n_i = ceil(|b_i| d).",
)
@click.option(
    "--reciprocal-density",
    type=float,
    default=None,
    metavar="R",
    help="GPAW k-mesh as VASP gets it from dft-select: pymatgen's Γ-centred MP mesh of R points "
    "per Å⁻³ (e.g. 64); overrides --kpt-density.",
)
@click.option("--xc", default="PBE", show_default=True, help="GPAW exchange-correlation functional.")
@click.option(
    "--smearing",
    type=click.Choice(["fermi-dirac", "marzari-vanderbilt", "methfessel-paxton"]),
    default="fermi-dirac",
    show_default=True,
    help="GPAW occupation smearing.",
)
@click.option("--width", type=float, default=0.05, show_default=True, help="GPAW smearing width (eV).")
@click.option("--spinpol", is_flag=True, help="GPAW spin-polarised calculation.")
@click.option(
    "--scf-energy",
    type=float,
    default=None,
    help="GPAW SCF convergence on energy (eV per valence electron; GPAW default 5e-4).",
)
@click.option(
    "--gpaw-opt",
    "gpaw_opts",
    multiple=True,
    type=KeyValue(),
    help="Extra GPAW keyword, value as JSON, e.g. --gpaw-opt 'mixer={\"beta\":0.05}' (repeatable).",
)
@command_option(
    "gpaw",
    envvar="CSCLI_GPAW_PYTHON",
    default="/usr/bin/python3",
    help_text="Command running the GPAW worker: a Python with GPAW, or e.g. 'gpaw -P 4 python' for MPI.",
)
@click.option("--timeout", type=float, default=None, help="Give up on a frame after this many seconds (GPAW).")
@work_dir_option("Keep per-frame GPAW logs / VASP folders here (GPAW default: a temporary directory).")
@click.option(
    "--density-dir",
    default=None,
    metavar="DIR",
    help="GPAW: also write each SCF's valence pseudo-density here as <id>.CHGCAR (ρ·V, electrons; "
    "see docs/density.md) for `cscli density train`.",
)
@click.option("--encut", type=float, default=520.0, show_default=True, help="VASP ENCUT (eV) for --calculator vasp.")
@command_option("vasp", help_text="How to run VASP for --calculator vasp (default: $ASE_VASP_COMMAND).")
def command(
    frames,
    settings,
    calculator,
    model,
    device,
    ecut,
    kpt_density,
    reciprocal_density,
    xc,
    smearing,
    width,
    spinpol,
    scf_energy,
    gpaw_opts,
    gpaw_command,
    timeout,
    work_dir,
    density_dir,
    encut,
    vasp_command,
):
    """Label frames with energy, forces and stress; the frame keeps its id.

    Resumable (ids already in -o FILE are skipped) and shardable (--shard i/n or auto in a SLURM
    array). Writes info['label_method'] (dft-gpaw, dft-vasp or mlff-oracle:<model>) and
    info['label_settings'].

        cscli label perturbed.extxyz --ecut 500 --kpt-density 4 -o labelled.extxyz --shard auto
    """
    from cscli.core.log import get_logger
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.dft import label as lib

    if calculator == "gpaw":
        opts = lib.GpawSettings(
            ecut=ecut,
            kpt_density=kpt_density,
            reciprocal_density=reciprocal_density,
            xc=xc,
            smearing=smearing,
            width=width,
            spinpol=spinpol,
            python=gpaw_command,
            timeout=timeout,
            convergence={"energy": scf_energy} if scf_energy else {},
            extra=dict(gpaw_opts),
        )
        labeller = lib.gpaw_labeller(opts, work_dir, density_dir)
    elif calculator == "vasp":
        if density_dir:
            from cscli.core.errors import UsageError

            raise UsageError("--density-dir works with --calculator gpaw only (VASP writes its own CHGCAR)")
        labeller = lib.vasp_labeller(work_dir or "vasp-label", encut=encut, command=vasp_command)
    else:
        labeller = lib.model_labeller(model, device)
    tag = f"label({labeller.tag})"

    def process(atoms):
        out = labeller(atoms)
        add_history(out, tag)
        return out

    get_logger().info(labeller.description)
    summary = run_stream(frames, process, settings)
    finish(summary, settings)
