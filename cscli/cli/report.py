"""``cscli report``: completeness of the exploration loop over its iteration folders."""

from __future__ import annotations

import click

from cscli.cli.options import config_option, quiet_option, report_option


@click.command("report")
@click.argument("folders", nargs=-1, required=True, metavar="ITER_DIR...")
@click.option(
    "-o",
    "--output-dir",
    default="report",
    show_default=True,
    metavar="DIR",
    help="Where report.json, report.md and the PNGs go.",
)
@report_option
@click.option(
    "--stable-threshold",
    type=float,
    default=0.1,
    show_default=True,
    help="E_hull (eV/atom) below which a frame counts as stable for the pre-screen's "
    "precision/recall/F1/DAF (Matbench Discovery uses 0).",
)
@click.option(
    "--dh-threshold",
    type=float,
    default=0.0,
    show_default=True,
    help="δH (nats) below which an environment counts as already covered by earlier iterations.",
)
@click.option(
    "--max-dh-dn",
    type=float,
    default=1e-3,
    show_default=True,
    help="converged needs dH/dN of the labelled set below this (nats per frame).",
)
@click.option(
    "--force-rmse-target",
    type=float,
    default=0.1,
    show_default=True,
    help="converged needs the force RMSE on the last iteration's new labels (before fine-tuning) below this (eV/Å).",
)
@click.option(
    "--energy-rmse-target",
    type=float,
    default=0.02,
    show_default=True,
    help="... and the energy RMSE below this (eV/atom).",
)
@click.option(
    "--bandwidth",
    type=click.FloatRange(min=0, min_open=True),
    default=0.015,
    show_default=True,
    help="QUESTS kernel bandwidth h (as entropy-select).",
)
@click.option("--no-entropy", is_flag=True, help="Skip H and δH (QUESTS descriptors of every frame).")
@click.option("--no-tsne", is_flag=True, help="Skip the t-SNE map (CrystalNN fingerprints of every candidate).")
@click.option("--no-plots", is_flag=True, help="Only report.json and report.md.")
@click.option("--seed", type=int, default=0, show_default=True, help="t-SNE random seed.")
@config_option
@quiet_option
def command(
    folders,
    output_dir,
    report_path,
    stable_threshold,
    dh_threshold,
    max_dh_dn,
    force_rmse_target,
    energy_rmse_target,
    bandwidth,
    no_entropy,
    no_tsne,
    no_plots,
    seed,
    quiet,
):
    """Completeness figures of the loop's iteration folders (iter_000/ iter_001/ ..., as written by
    scripts/loop.sh; docs/report.md lists the files read): per iteration and cumulative counts,
    S.U.N. ratios, E_hull distribution, DFT frames, information entropy H and δH against earlier
    iterations, new motifs, force-field errors before/after fine-tuning, E_hull force field vs DFT
    and a converged flag.

    Writes DIR/report.json, DIR/report.md and PNGs; the markdown table goes to stdout.

    \b
      cscli report loop/iter_* -o loop/report
    """
    import json
    from pathlib import Path

    from cscli.core.frames import claim_stdout, data_stdout, to_builtin
    from cscli.core.log import configure
    from cscli.report.completeness import Settings, build_report, markdown_table

    claim_stdout()
    log = configure("report", quiet)
    settings = Settings(
        stable_threshold=stable_threshold,
        dh_threshold=dh_threshold,
        max_dh_dn=max_dh_dn,
        force_rmse_target=force_rmse_target,
        energy_rmse_target=energy_rmse_target,
        bandwidth=bandwidth,
        entropy=not no_entropy,
        tsne=not no_tsne,
        seed=seed,
    )
    report, data = build_report(folders, settings)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not no_plots:
        from cscli.report.plots import write_plots

        report["plots"] = write_plots(report, data, out, tsne=settings.tsne, seed=seed)
    table = markdown_table(report)
    json_path = Path(report_path) if report_path else out / "report.json"
    json_path.write_text(json.dumps(to_builtin(report), indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text("# Exploration report\n\n" + table, encoding="utf-8")
    stream = data_stdout()
    stream.write(table)
    stream.flush()
    log.info(
        "%d iterations; %s, %s/report.md%s",
        len(report["iterations"]),
        json_path,
        out,
        "".join(f", {p}" for p in report.get("plots", [])),
    )
