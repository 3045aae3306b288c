"""``cscli entropy-select``: training frames that add the most QUESTS information entropy."""

from __future__ import annotations

import click

from cscli.cli.options import (
    config_option,
    io_options,
    plot_option,
    quiet_option,
    report_option,
    resolve_seed,
    seed_option,
)


@click.command("entropy-select")
@io_options
@click.option(
    "--train",
    "train_path",
    default=None,
    metavar="FILE",
    help="Existing training set (frames); δH is measured against it. May be empty or absent.",
)
@click.option(
    "-n",
    "n_select",
    type=click.IntRange(min=1),
    default=None,
    help="Number of frames to select (default: until --min-dh stops it, or all).",
)
@click.option(
    "--strategy",
    type=click.Choice(["greedy", "rank"]),
    default="greedy",
    show_default=True,
    help="greedy: add the best frame, update δH, repeat; rank: top -n by δH against --train.",
)
@click.option(
    "--min-dh",
    type=float,
    default=None,
    help="Stop when the best frame's δH (nats, mean over its atoms) falls below this.",
)
@click.option(
    "--bandwidth",
    type=click.FloatRange(min=0, min_open=True),
    default=0.015,
    show_default=True,
    help="Gaussian kernel bandwidth h (QUESTS default).",
)
@click.option(
    "--k", "k_nbrs", type=click.IntRange(min=2), default=32, show_default=True, help="Neighbours per QUESTS descriptor."
)
@click.option(
    "--cutoff",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Descriptor cutoff (Å).",
)
@click.option(
    "--method",
    type=click.Choice(["auto", "exact", "approx"]),
    default="auto",
    show_default=True,
    help="δH against --train: exact kernel sums, or approximate nearest neighbours (PyNNDescent); "
    "auto = exact up to 1e9 environment pairs.",
)
@click.option(
    "--ann-neighbors",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Nearest training environments in the approximate kernel sum (QUESTS uses 3).",
)
@report_option
@plot_option("log10(dH/dN) and H along the selection")
@seed_option
@quiet_option
@config_option
def command(
    inputs,
    output,
    input_format,
    output_format,
    train_path,
    n_select,
    strategy,
    min_dh,
    bandwidth,
    k_nbrs,
    cutoff,
    method,
    ann_neighbors,
    report_path,
    plot_path,
    seed,
    quiet,
):
    """Select candidate frames (INPUT..., default stdin) that add the most information entropy to a
    training set, and write them with info['delta_entropy'] (nats).

    \b
    cscli entropy-select perturbed.extxyz --train train.extxyz -n 100 --report sel.json > picked.extxyz
    """
    from cscli.cli.options import read_input, write_report
    from cscli.core.errors import UsageError
    from cscli.core.frames import FrameWriter, iter_frames
    from cscli.core.log import configure
    from cscli.core.stream import add_history
    from cscli.learn.entropy import entropy_select, plot_report

    log = configure("entropy-select", quiet)
    if strategy == "rank" and n_select is None and min_dh is None:
        raise UsageError("--strategy rank needs -n or --min-dh")
    frames = read_input(inputs, input_format)
    train = list(iter_frames(train_path)) if train_path else []
    seed = resolve_seed(seed)  # approximate nearest neighbours (PyNNDescent) draw random numbers
    selected, report = entropy_select(
        frames,
        train,
        n=n_select,
        strategy=strategy,
        min_dh=min_dh,
        h=bandwidth,
        k=k_nbrs,
        cutoff=cutoff,
        method=method,
        ann_neighbors=ann_neighbors,
        seed=seed,
    )
    tag = f"entropy-select({strategy}" + (f",seed={seed})" if report["method"] == "approx" else ")")
    with FrameWriter(output, output_format) as writer:
        for atoms in selected:
            add_history(atoms, tag)
            writer.write(atoms)
    if report_path:
        write_report(report, report_path)
    if plot_path:
        plot_report(report, plot_path)
    hb, ha = report["entropy_before"], report["entropy_after"]
    hb_s = "n/a" if hb is None else f"{hb:.3f}"
    ha_s = "n/a" if ha is None else f"{ha:.3f}"
    log.info(
        f"{len(selected)} of {len(frames)} frames selected ({report['stop_reason']}); "
        f"H {hb_s} -> {ha_s} nats ({report['method']})"
    )
