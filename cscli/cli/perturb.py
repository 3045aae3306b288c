"""cscli perturb: perturbed copies of frames (atoms and lattice)."""

import click

from cscli.cli.options import RangeFloat, pass_stream, resolve_seed, seed_option


@click.command("perturb")
@pass_stream("perturb")
@click.option(
    "-n", "--copies", type=click.IntRange(1), default=5, show_default=True, help="Perturbed copies per frame."
)
@click.option(
    "--sigma",
    type=RangeFloat(),
    default="0.08,0.15",
    show_default=True,
    help="Displacement σ range in units of a = (V/N)^(1/3); σ is drawn uniformly per copy.",
)
@click.option(
    "--strain",
    type=RangeFloat(),
    default="0.03,0.05",
    show_default=True,
    help="Lattice strain range (largest principal strain, fraction).",
)
@click.option(
    "--min-distance",
    type=float,
    default=0.7,
    show_default=True,
    help="Redraw a copy with two atoms closer than this (Å).",
)
@seed_option
def command(frames, settings, copies, sigma, strain, min_distance, seed):
    """N perturbed copies of each frame, ids <id>.p<k>, parent_id kept.

    Atoms move by Gaussian displacements of σ ~ U(sigma)·a; the cell takes a random symmetric strain
    of magnitude ~ U(strain). Energies and forces of the parent are dropped (the copies need new
    labels). Each copy depends only on (seed, parent id, k): resumed, sharded and reordered runs
    with the same --seed give the same copies. Without --seed one is drawn and recorded in
    info['perturb_seed'].

    \b
    Example:
      cscli relax refs.extxyz | cscli perturb -n 3 --seed 1 > perturbed.extxyz
    """
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.explore.perturb import copy_ids, perturb_frame

    seed = resolve_seed(seed)

    def process(atoms):
        out = perturb_frame(atoms, copies, seed=seed, sigma_rel=sigma, strain=strain, min_distance=min_distance)
        for frame in out:
            add_history(frame, f"perturb(seed={seed})")
        return out

    summary = run_stream(frames, process, settings, output_ids=lambda a: copy_ids(str(a.info["id"]), copies))
    finish(summary, settings)
