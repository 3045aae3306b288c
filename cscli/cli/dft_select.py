"""``cscli dft-select``: pick frames for DFT by E_hull bins; optionally write VASP inputs."""

from __future__ import annotations

import click

from cscli.cli.options import KeyValue, config_option, io_options, quiet_option, resolve_seed, seed_option


@click.command("dft-select")
@io_options
@click.option(
    "--bins",
    default=None,
    metavar="LO:HI:N,...",
    help="E_hull bins (eV/atom) and quotas, lo inclusive, hi exclusive, -inf allowed. "
    "Default: the seed paper's -inf:0:100,0:0.03:200,0.03:0.1:300.",
)
@click.option(
    "--method",
    type=click.Choice(["random", "fps"]),
    default="random",
    show_default=True,
    help="Choice inside an over-full bin: seeded uniform random, or farthest-point sampling "
    "in fingerprint space (starts at the bin's lowest E_hull).",
)
@click.option(
    "--fingerprint",
    type=click.Choice(["ov", "crystalnn"]),
    default="ov",
    show_default=True,
    help="Fingerprint for --method fps: Oganov-Valle (fast) or matminer CrystalNN site statistics.",
)
@seed_option
@click.option(
    "--write-vasp",
    "write_vasp",
    default=None,
    metavar="DIR",
    help="Also write one VASP relaxation folder per selected frame (MPRelaxSet + paper settings), "
    "folders.txt and a SLURM array script into DIR.",
)
@click.option("--slurm-time", default="24:00:00", show_default=True, help="#SBATCH --time of the array script.")
@click.option("--slurm-ntasks", type=int, default=32, show_default=True, help="#SBATCH --ntasks (MPI ranks per run).")
@click.option("--slurm-max-parallel", type=int, default=None, help="Run at most this many array tasks at once (%N).")
@click.option(
    "--sbatch",
    "sbatch_extra",
    multiple=True,
    metavar="OPTION",
    help="Extra #SBATCH line, e.g. --sbatch=--partition=cpu (repeatable).",
)
@click.option(
    "--incar",
    "incar_extra",
    multiple=True,
    type=KeyValue(),
    help="Override an INCAR tag, e.g. --incar NCORE=4 (repeatable).",
)
@quiet_option
@config_option
def command(
    inputs,
    output,
    input_format,
    output_format,
    bins,
    method,
    fingerprint,
    seed,
    write_vasp,
    slurm_time,
    slurm_ntasks,
    slurm_max_parallel,
    sbatch_extra,
    incar_extra,
    quiet,
):
    """Select frames for DFT by energy above hull (info['e_hull'], eV/atom) with per-bin quotas.

    Reads the whole input (run `cscli hull` or `cscli sun-filter` first), writes the selected frames
    in input order with info['dft_bin'], and with --write-vasp DIR the VASP relaxation inputs.
    --method random records its seed in info['dft_select_seed'].

        cscli dft-select sun.extxyz --seed 0 -o dft.extxyz --write-vasp vasp/
    """
    import sys

    from cscli.cli.options import read_input
    from cscli.core.frames import write_frames
    from cscli.core.log import configure
    from cscli.core.stream import add_history
    from cscli.dft.dft_select import DEFAULT_BINS, bin_label, parse_bins, select
    from cscli.dft.vasp import incar_settings

    log = configure("dft-select", quiet)
    bin_list = parse_bins(bins) if bins else DEFAULT_BINS
    incar = incar_settings(incar_extra)
    frames = read_input(inputs, input_format)
    seed = resolve_seed(seed) if method == "random" else None
    chosen, reports = select(frames, bin_list, method=method, seed=seed, fingerprint=fingerprint)
    picked = []
    for i in chosen:
        atoms = frames[i]
        atoms.info["dft_bin"] = bin_label(float(atoms.info["e_hull"]), bin_list)
        if seed is not None:
            atoms.info["dft_select_seed"] = seed
        add_history(atoms, f"dft-select({method}" + (f",seed={seed})" if seed is not None else ")"))
        picked.append(atoms)
    write_frames(picked, output, output_format)
    outside = len(frames) - sum(r.available for r in reports)
    parts = [f"{r.bin.label}: {r.selected}/{r.available} (quota {r.bin.quota})" for r in reports]
    log.info(
        f"{len(picked)} of {len(frames)} frames selected; "
        + "; ".join(parts)
        + (f"; {outside} outside all bins" if outside else "")
    )
    if write_vasp:
        from cscli.dft.vasp import POTCAR_MESSAGE, SBATCH_NAME, write_vasp_inputs

        slurm = {
            "time": slurm_time,
            "ntasks": slurm_ntasks,
            "max_parallel": slurm_max_parallel,
            "extra": list(sbatch_extra),
        }
        report = write_vasp_inputs(picked, write_vasp, slurm=slurm, incar_overrides=incar)
        log.info(f"{len(report.folders)} VASP folders in {report.root}; submit with: sbatch {report.script}")
        if report.potcars_written < len(report.folders):
            log.warning(POTCAR_MESSAGE.format(script=SBATCH_NAME))
    sys.stdout.flush()
