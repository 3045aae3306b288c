"""``cscli sun-filter``: flag stable, unique and novel (S.U.N.) frames."""

from __future__ import annotations

import click

from cscli.cli.options import (
    config_option,
    failed_option,
    io_options,
    quiet_option,
    refs_format_option,
    refs_option,
    report_option,
)


@click.command("sun-filter")
@io_options
@refs_option(
    help_text="Known structures (repeatable): reference phases, earlier iterations. Novelty is checked "
    "against them; with energies they also give e_hull to frames that lack it. "
    "Default: the shipped Li-P-S reference phases (novelty only)."
)
@refs_format_option
@click.option(
    "--e-hull-max", type=float, default=0.1, show_default=True, help="is_stable when e_hull < this (eV/atom)."
)
@click.option("--only-sun", is_flag=True, help="Write only the S.U.N. frames (default: all frames, flagged).")
@report_option
@click.option(
    "--ltol", type=float, default=0.2, show_default=True, help="StructureMatcher fractional length tolerance."
)
@click.option("--stol", type=float, default=0.3, show_default=True, help="StructureMatcher site tolerance.")
@click.option(
    "--angle-tol", type=float, default=5.0, show_default=True, help="StructureMatcher angle tolerance (degrees)."
)
@click.option("--attempt-supercell", is_flag=True, help="StructureMatcher attempt_supercell=True (slower).")
@click.option("--no-primitive-cell", is_flag=True, help="StructureMatcher primitive_cell=False.")
@click.option("--no-scale", is_flag=True, help="StructureMatcher scale=False (volumes must match too).")
@click.option("-j", "--jobs", type=int, default=None, help="Processes (default: all usable cores).")
@click.option(
    "--allow-mixed-models",
    is_flag=True,
    help="Go on (with a warning) when frames and references were labelled by different models.",
)
@failed_option
@quiet_option
@config_option
def command(
    inputs,
    output,
    input_format,
    output_format,
    refs,
    refs_format,
    e_hull_max,
    only_sun,
    report_path,
    ltol,
    stol,
    angle_tol,
    attempt_supercell,
    no_primitive_cell,
    no_scale,
    jobs,
    allow_mixed_models,
    failed,
    quiet,
):
    """Flag stable, unique and novel frames (MatterGen's S.U.N. criteria).

    Reads the whole batch (uniqueness depends on order: a frame is a duplicate when pymatgen
    StructureMatcher matches it to an earlier unique frame). Writes info keys is_stable
    (e_hull < --e-hull-max), is_unique, is_novel, is_sun, duplicate_of (id of the earlier frame),
    matches_reference (id of the reference). Frames that cannot be assessed (no e_hull, not
    periodic) go to --failed. Counts on stderr and in --report.

    \b
      cscli hull relaxed.extxyz --refs refs.extxyz | cscli sun-filter --refs refs.extxyz \\
          --refs iter1.extxyz --only-sun --report sun.json -o sun.extxyz
    """
    from cscli.cli.options import read_input, write_report
    from cscli.core.errors import UsageError
    from cscli.core.frames import FrameWriter, read_refs
    from cscli.core.log import configure
    from cscli.core.stream import add_history
    from cscli.screen.matching import MatchOptions, default_jobs
    from cscli.screen.sun import format_summary, sun_filter

    log = configure("sun-filter", quiet)
    if e_hull_max != e_hull_max:
        raise UsageError("--e-hull-max must be a number")
    if min(ltol, stol, angle_tol) <= 0:
        raise UsageError("--ltol, --stol and --angle-tol must be positive")
    jobs = jobs or default_jobs()
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    options = MatchOptions(
        ltol=ltol,
        stol=stol,
        angle_tol=angle_tol,
        primitive_cell=not no_primitive_cell,
        scale=not no_scale,
        attempt_supercell=attempt_supercell,
    )
    frames = read_input(inputs, input_format)
    batch = sun_filter(
        frames,
        read_refs(refs, refs_format) if refs else None,
        options,
        e_hull_max=e_hull_max,
        jobs=jobs,
        allow_mixed_models=allow_mixed_models,
        keep_failed=bool(failed),
    )
    if batch.failed:
        with FrameWriter(failed, append=True) as writer:
            for atoms, message in batch.failed:
                atoms = atoms.copy()
                atoms.info["error"] = message
                writer.write(atoms)
    written = 0
    with FrameWriter(output, output_format) as writer:
        for atoms in batch.frames:
            add_history(atoms, f"sun-filter(e_hull_max={e_hull_max})")
            if only_sun and not atoms.info["is_sun"]:
                continue
            try:
                writer.write(atoms)
            except BrokenPipeError:
                break
            written += 1
    summary = {**batch.summary, "written": written}
    nbad = len(batch.failed)
    log.info(format_summary(summary) + f"; {written} written" + (f", {nbad} failed" if nbad else ""))
    if report_path:
        write_report(summary, report_path)
