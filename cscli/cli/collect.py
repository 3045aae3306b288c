"""``cscli collect``: read finished VASP runs back into labelled frames."""

from __future__ import annotations

import click

from cscli.cli.options import (
    config_option,
    output_format_option,
    output_option,
    quiet_option,
    report_option,
    resolve_seed,
    seed_option,
)


@click.command("collect")
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...")
@output_option("Output file (- for stdout).")
@output_format_option
@click.option(
    "--per-run",
    default="5",
    show_default=True,
    metavar="N|LO-HI",
    help="Ionic steps taken per run: first and last always, the rest at random; LO-HI draws the count per run.",
)
@click.option("--all-steps", is_flag=True, help="Take every (SCF-converged) ionic step.")
@seed_option
@click.option(
    "--require-converged",
    is_flag=True,
    help="Skip runs whose ionic loop did not converge or did not finish (they are still reported).",
)
@click.option(
    "--keep-scf-unconverged", is_flag=True, help="Also take ionic steps whose SCF loop hit NELM (dropped by default)."
)
@report_option
@quiet_option
@config_option
def command(
    dirs, output, output_format, per_run, all_steps, seed, require_converged, keep_scf_unconverged, report_path, quiet
):
    """Read VASP run folders (vasprun.xml, else OUTCAR) into labelled frames.

    DIR is a run folder, a `dft-select --write-vasp` directory (its folders.txt), or any folder
    holding run folders. Each frame gets energy, forces, stress, label_method=dft-vasp, and
    parent_id (the selected frame's id from cscli_frame.json, else the folder name).
    Unconverged, unfinished and failed runs are reported on stderr and in --report; the exit
    status is 1 only when nothing at all could be read. The seed of the step sampling is recorded
    in info['collect_seed'] and the report.

        cscli collect vasp/ -o labelled.extxyz --report collect.json
    """
    from collections import Counter

    from cscli.cli.options import write_report
    from cscli.core.errors import DataError
    from cscli.core.frames import FrameWriter
    from cscli.core.log import configure
    from cscli.core.stream import add_history
    from cscli.dft.vasp import collect_runs, find_run_dirs, parse_per_run

    log = configure("collect", quiet)
    lo_hi = parse_per_run(per_run)
    folders = find_run_dirs(dirs)
    seed = None if all_steps else resolve_seed(seed)
    frames, reports = collect_runs(
        folders,
        per_run=lo_hi,
        seed=seed,
        all_steps=all_steps,
        require_converged=require_converged,
        keep_scf_unconverged=keep_scf_unconverged,
    )
    with FrameWriter(output, output_format, keep_if_empty=True) as writer:  # nothing read: keep an earlier output
        for atoms in frames:
            add_history(atoms, "collect")
            writer.write(atoms)
        written = writer.count
    if report_path:
        write_report({"frames_written": written, "seed": seed, "runs": [r.as_dict() for r in reports]}, report_path)
    status = Counter(r.status for r in reports)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    log.info(f"{written} frames from {len(reports)} runs ({parts})")
    if written == 0:
        raise DataError(
            f"nothing could be read from {len(reports)} run folder(s)"
            + (f" (see {report_path})" if report_path else "")
        )
