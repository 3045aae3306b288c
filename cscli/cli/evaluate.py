"""``cscli evaluate``: energy/force/stress errors of a model against labelled frames."""

from __future__ import annotations

import click

from cscli.cli.options import (
    config_option,
    input_format_option,
    input_frames,
    inputs_argument,
    model_options,
    plot_option,
    quiet_option,
)


@click.command("evaluate")
@inputs_argument
@input_format_option
@model_options()
@click.option(
    "-o",
    "--output",
    "--report",
    "report_path",
    default="-",
    show_default=True,
    metavar="FILE.json",
    help="Where the JSON report goes (- for stdout).",
)
@plot_option("parity plots (energy per atom, force components, stress) as a PNG")
@click.option("--no-per-composition", is_flag=True, help="Only the overall errors, no per-formula groups.")
@click.option(
    "--parity-sample",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Force components kept (uniform sample) for the parity plot.",
)
@quiet_option
@config_option
def command(inputs, input_format, model, device, report_path, plot_path, no_per_composition, parity_sample, quiet):
    """Errors of a force field against the labels (info['energy'], arrays['forces'],
    info['stress']) of INPUT... (default stdin): RMSE and MAE of energy per atom (eV/atom),
    force components (eV/Å) and stress (GPa), overall and per reduced formula.

    \b
    cscli evaluate -m chgnet test.extxyz --plot parity.png > errors.json
    """
    from cscli.cli.options import write_report
    from cscli.core.errors import DataError
    from cscli.core.log import configure
    from cscli.core.models import load_calculator
    from cscli.core.stream import progress
    from cscli.learn.evaluate import evaluate_model, plot_parity, summary_lines

    log = configure("evaluate", quiet)
    frames = input_frames(inputs, input_format)  # a missing input fails before the model loads
    calc = load_calculator(model, device=device)
    name = getattr(calc, "cscli_model", model)
    bar = progress(desc="evaluate")
    try:
        report = evaluate_model(
            calc,
            frames,
            per_composition=not no_per_composition,
            parity=plot_path is not None,
            parity_sample=parity_sample,
            progress=bar.update,
        )
    finally:
        bar.close()
    if report["frames_read"] == 0:
        raise DataError("no frames in input")
    if report["frames_evaluated"] == 0:
        raise DataError(
            f"none of the {report['frames_read']} frames has labels (info['energy'], arrays['forces'] "
            "or info['stress'])" + (f"; {len(report['failed'])} failed" if report["failed"] else "")
        )
    report = {"model": name, "model_version": getattr(calc, "cscli_model_version", None), **report}
    if plot_path:
        plot_parity(report, plot_path, title=f"{name}: {report['frames_evaluated']} frames")
        report.pop("parity")
    write_report(report, report_path)
    sk = report["skipped"]
    log.info(
        f"{name}, {report['frames_evaluated']} of {report['frames_read']} frames evaluated"
        f" (without energy {sk['energy']}, forces {sk['forces']}, stress {sk['stress']};"
        f" failed {len(report['failed'])}):\n" + "\n".join(summary_lines(report))
    )
    if report["failed"]:
        raise DataError(f"{len(report['failed'])} frames failed to evaluate (listed in the report)")
