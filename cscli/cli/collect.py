"""``cscli collect``: read finished VASP runs back into labelled frames."""

from __future__ import annotations

import click

from cscli.cli.options import OUTPUT_FORMATS, seed_option


@click.command("collect")
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help="Output file (- for stdout).")
@click.option("--output-format", type=click.Choice(OUTPUT_FORMATS), default=None,
              help="Output format (default: from the extension, extxyz on stdout).")
@click.option("--per-run", default="5", show_default=True, metavar="N|LO-HI",
              help="Ionic steps taken per run: first and last always, the rest at random; "
                   "LO-HI draws the count per run.")
@click.option("--all-steps", is_flag=True, help="Take every (SCF-converged) ionic step.")
@seed_option
@click.option("--require-converged", is_flag=True,
              help="Skip runs whose ionic loop did not converge or did not finish (they are still reported).")
@click.option("--keep-scf-unconverged", is_flag=True,
              help="Also take ionic steps whose SCF loop hit NELM (dropped by default).")
@click.option("--report", "report_path", default=None, metavar="FILE",
              help="Write a JSON report: one entry per run with status, steps, convergence.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr (problem runs are still reported).")
def command(dirs, output, output_format, per_run, all_steps, seed, require_converged, keep_scf_unconverged,
            report_path, quiet):
    """Read VASP run folders (vasprun.xml, else OUTCAR) into labelled frames.

    DIR is a run folder, a `dft-select --write-vasp` directory (its folders.txt), or any folder
    holding run folders. Each frame gets energy, forces, stress, label_method=dft-vasp, and
    parent_id (the selected frame's id from cscli_frame.json, else the folder name).
    Unconverged, unfinished and failed runs are reported on stderr and in --report; the exit
    status is 1 only when nothing at all could be read.

        cscli collect vasp/ -o labelled.extxyz --report collect.json
    """
    import json
    from collections import Counter

    from cscli.core.errors import DataError
    from cscli.core.frames import FrameWriter
    from cscli.core.stream import add_history
    from cscli.dft.vasp import collect_runs, find_run_dirs, parse_per_run

    lo_hi = parse_per_run(per_run)
    folders = find_run_dirs(dirs)
    frames, reports = collect_runs(folders, per_run=lo_hi, seed=0 if seed is None else seed, all_steps=all_steps,
                                   require_converged=require_converged, keep_scf_unconverged=keep_scf_unconverged,
                                   quiet=quiet)
    with FrameWriter(output, output_format, keep_if_empty=True) as writer:  # nothing read: keep an earlier output
        for atoms in frames:
            add_history(atoms, "collect")
            writer.write(atoms)
        written = writer.count
    if report_path:
        with open(report_path, "w") as fh:
            json.dump({"frames_written": written, "runs": [r.as_dict() for r in reports]}, fh, indent=1)
    status = Counter(r.status for r in reports)
    if not quiet:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
        click.echo(f"cscli collect: {written} frames from {len(reports)} runs ({parts})", err=True)
    if written == 0:
        raise DataError(f"nothing could be read from {len(reports)} run folder(s)" +
                        (f" (see {report_path})" if report_path else ""))
