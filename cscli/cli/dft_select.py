"""``cscli dft-select``: pick frames for DFT by E_hull bins; optionally write VASP inputs."""

from __future__ import annotations

import sys

import click

from cscli.cli.options import io_options, seed_option


@click.command("dft-select")
@io_options
@click.option("--bins", default=None, metavar="LO:HI:N,...",
              help="E_hull bins (eV/atom) and quotas, lo inclusive, hi exclusive, -inf allowed. "
                   "Default: the seed paper's -inf:0:100,0:0.03:200,0.03:0.1:300.")
@click.option("--method", type=click.Choice(["random", "fps"]), default="random", show_default=True,
              help="Choice inside an over-full bin: seeded uniform random, or farthest-point sampling "
                   "in fingerprint space (starts at the bin's lowest E_hull).")
@click.option("--fingerprint", type=click.Choice(["ov", "crystalnn"]), default="ov", show_default=True,
              help="Fingerprint for --method fps: Oganov-Valle (fast) or matminer CrystalNN site statistics.")
@seed_option
@click.option("--write-vasp", "write_vasp", default=None, metavar="DIR",
              help="Also write one VASP relaxation folder per selected frame (MPRelaxSet + paper settings), "
                   "folders.txt and a SLURM array script into DIR.")
@click.option("--slurm-time", default="24:00:00", show_default=True, help="#SBATCH --time of the array script.")
@click.option("--slurm-ntasks", type=int, default=32, show_default=True, help="#SBATCH --ntasks (MPI ranks per run).")
@click.option("--slurm-max-parallel", type=int, default=None, help="Run at most this many array tasks at once (%N).")
@click.option("--sbatch", "sbatch_extra", multiple=True, metavar="OPTION",
              help="Extra #SBATCH line, e.g. --sbatch=--partition=cpu (repeatable).")
@click.option("--incar", "incar_extra", multiple=True, metavar="KEY=VALUE",
              help="Override an INCAR tag, e.g. --incar NCORE=4 (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def command(inputs, output, input_format, output_format, bins, method, fingerprint, seed, write_vasp,
            slurm_time, slurm_ntasks, slurm_max_parallel, sbatch_extra, incar_extra, quiet):
    """Select frames for DFT by energy above hull (info['e_hull'], eV/atom) with per-bin quotas.

    Reads the whole input (run `cscli hull` or `cscli sun-filter` first), writes the selected frames
    in input order with info['dft_bin'], and with --write-vasp DIR the VASP relaxation inputs.

        cscli dft-select sun.extxyz --seed 0 -o dft.extxyz --write-vasp vasp/
    """
    from cscli.cli.options import input_frames
    from cscli.dft.dft_select import DEFAULT_BINS, bin_label, parse_bins, select
    from cscli.core.errors import DataError
    from cscli.core.frames import write_frames
    from cscli.core.stream import add_history

    bin_list = parse_bins(bins) if bins else DEFAULT_BINS
    incar = _parse_incar(incar_extra)
    frames = list(input_frames(inputs, input_format))
    if not frames:
        raise DataError("no frames in input")
    seed = 0 if seed is None else seed  # reproducible by default
    chosen, reports = select(frames, bin_list, method=method, seed=seed, fingerprint=fingerprint)
    picked = []
    for i in chosen:
        atoms = frames[i]
        atoms.info["dft_bin"] = bin_label(float(atoms.info["e_hull"]), bin_list)
        add_history(atoms, f"dft-select({method})")
        picked.append(atoms)
    write_frames(picked, output, output_format)
    if not quiet:
        outside = len(frames) - sum(r.available for r in reports)
        parts = [f"{r.bin.label}: {r.selected}/{r.available} (quota {r.bin.quota})" for r in reports]
        click.echo(f"cscli dft-select: {len(picked)} of {len(frames)} frames selected; " + "; ".join(parts)
                   + (f"; {outside} outside all bins" if outside else ""), err=True)
    if write_vasp:
        from cscli.dft.vasp import POTCAR_MESSAGE, SBATCH_NAME, write_vasp_inputs

        slurm = {"time": slurm_time, "ntasks": slurm_ntasks, "max_parallel": slurm_max_parallel,
                 "extra": list(sbatch_extra)}
        report = write_vasp_inputs(picked, write_vasp, slurm=slurm, incar_overrides=incar)
        click.echo(f"cscli dft-select: {len(report.folders)} VASP folders in {report.root}; "
                   f"submit with: sbatch {report.script}", err=True)
        if report.potcars_written < len(report.folders):
            click.echo("cscli dft-select: " + POTCAR_MESSAGE.format(script=SBATCH_NAME), err=True)
    sys.stdout.flush()


def _parse_incar(items):
    from cscli.core.errors import UsageError

    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--incar {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip().upper()
        value = value.strip()
        for conv in (int, float):
            try:
                value = conv(value)
                break
            except ValueError:
                continue
        else:
            if value.upper() in (".TRUE.", "TRUE", "T"):
                value = True
            elif value.upper() in (".FALSE.", "FALSE", "F"):
                value = False
        out[key] = value
    return out
