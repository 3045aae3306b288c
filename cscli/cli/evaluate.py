"""``cscli evaluate``: energy/force/stress errors of a model against labelled frames."""

from __future__ import annotations

import click

from cscli.cli.options import input_frames, inputs_argument, model_options


@click.command("evaluate")
@inputs_argument
@click.option("--input-format", type=click.Choice(["extxyz", "jsonl", "cif", "poscar"]), default=None,
              help="Input format (default: from the extension, else sniffed).")
@model_options()
@click.option("-o", "--output", "--report", "report_path", default="-", show_default=True, metavar="FILE.json",
              help="Where the JSON report goes (- for stdout).")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png",
              help="Parity plots (energy per atom, force components, stress) as a PNG.")
@click.option("--no-per-composition", is_flag=True, help="Only the overall errors, no per-formula groups.")
@click.option("--parity-sample", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="Force components kept (uniform sample) for the parity plot.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary table on stderr.")
def command(inputs, input_format, model, device, report_path, plot_path, no_per_composition, parity_sample, quiet):
    """Errors of a force field against the labels (info['energy'], arrays['forces'],
    info['stress']) of INPUT... (default stdin): RMSE and MAE of energy per atom (eV/atom),
    force components (eV/Å) and stress (GPa), overall and per reduced formula.

    \b
    cscli evaluate -m chgnet test.extxyz --plot parity.png > errors.json
    """
    import json
    import sys

    from cscli.core.errors import DataError
    from cscli.learn.evaluate import evaluate_model, plot_parity, summary_lines
    from cscli.core.frames import data_stdout
    from cscli.core.models import load_calculator

    frames = input_frames(inputs, input_format)  # a missing input fails before the model loads
    calc = load_calculator(model, device=device)
    name = getattr(calc, "cscli_model", model)
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(desc="evaluate", unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        report = evaluate_model(calc, frames, per_composition=not no_per_composition, parity=plot_path is not None,
                                parity_sample=parity_sample, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if report["frames_read"] == 0:
        raise DataError("no frames in input")
    if report["frames_evaluated"] == 0:
        raise DataError(f"none of the {report['frames_read']} frames has labels (info['energy'], arrays['forces'] "
                        "or info['stress'])" + (f"; {len(report['failed'])} failed" if report["failed"] else ""))
    report = {"model": name, **report}
    if plot_path:
        plot_parity(report, plot_path, title=f"{name}: {report['frames_evaluated']} frames")
        report.pop("parity")
    text = json.dumps(report, indent=1) + "\n"
    if report_path == "-":
        out = data_stdout()
        out.write(text)
        out.flush()
    else:
        with open(report_path, "w", encoding="utf-8") as fh:
            fh.write(text)
    if not quiet:
        sk = report["skipped"]
        print(f"cscli evaluate: {name}, {report['frames_evaluated']} of {report['frames_read']} frames evaluated"
              f" (without energy {sk['energy']}, forces {sk['forces']}, stress {sk['stress']};"
              f" failed {len(report['failed'])})", file=sys.stderr)
        for line in summary_lines(report):
            print(line, file=sys.stderr)
    if report["failed"]:
        raise DataError(f"{len(report['failed'])} frames failed to evaluate (listed in the report)")
