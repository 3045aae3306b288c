"""``cscli sun-filter``: flag stable, unique and novel (S.U.N.) frames."""

from __future__ import annotations

import click

from cscli.cli.options import io_options


@click.command("sun-filter")
@io_options
@click.option("--refs", "refs", multiple=True, metavar="FILE",
              help="Known structures (repeatable): reference phases, earlier iterations. Novelty is checked "
                   "against them; with energies they also give e_hull to frames that lack it. "
                   "Default: the shipped Li-P-S reference phases (novelty only).")
@click.option("--refs-format", type=click.Choice(["extxyz", "jsonl", "cif", "poscar"]), default=None,
              help="Format of the --refs files (default: from the extension).")
@click.option("--e-hull-max", type=float, default=0.1, show_default=True,
              help="is_stable when e_hull < this (eV/atom).")
@click.option("--only-sun", is_flag=True, help="Write only the S.U.N. frames (default: all frames, flagged).")
@click.option("--summary", "summary_path", default=None, metavar="FILE.json",
              help="Write the counts and ratios (S, U, N, S.U.N.) as JSON here.")
@click.option("--ltol", type=float, default=0.2, show_default=True, help="StructureMatcher fractional length tolerance.")
@click.option("--stol", type=float, default=0.3, show_default=True, help="StructureMatcher site tolerance.")
@click.option("--angle-tol", type=float, default=5.0, show_default=True, help="StructureMatcher angle tolerance (degrees).")
@click.option("--attempt-supercell", is_flag=True, help="StructureMatcher attempt_supercell=True (slower).")
@click.option("--no-primitive-cell", is_flag=True, help="StructureMatcher primitive_cell=False.")
@click.option("--no-scale", is_flag=True, help="StructureMatcher scale=False (volumes must match too).")
@click.option("-j", "--jobs", type=int, default=None, help="Processes (default: all usable cores).")
@click.option("--allow-mixed-models", is_flag=True,
              help="Go on (with a warning) when frames and references were labelled by different models.")
@click.option("--failed", default=None, metavar="FILE",
              help="Write frames that cannot be assessed (no e_hull, not periodic) here, with info['error'].")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def command(inputs, output, input_format, output_format, refs, refs_format, e_hull_max, only_sun, summary_path,
            ltol, stol, angle_tol, attempt_supercell, no_primitive_cell, no_scale, jobs, allow_mixed_models,
            failed, quiet):
    """Flag stable, unique and novel frames (MatterGen's S.U.N. criteria).

    Reads the whole batch (uniqueness depends on order: a frame is a duplicate when pymatgen
    StructureMatcher matches it to an earlier unique frame). Writes info keys is_stable
    (e_hull < --e-hull-max), is_unique, is_novel, is_sun, duplicate_of (id of the earlier frame),
    matches_reference (id of the reference). Counts on stderr and in --summary.

    \b
      cscli hull relaxed.extxyz --refs refs.extxyz | cscli sun-filter --refs refs.extxyz \\
          --refs iter1.extxyz --only-sun --summary sun.json -o sun.extxyz
    """
    import json
    import sys

    from cscli.cli.options import input_frames
    from cscli.core.datafiles import reference_phases_path
    from cscli.core.errors import CscliError, DataError, UsageError
    from cscli.core.frames import FrameWriter, read_frames
    from cscli.screen.hull import Hull, read_refs
    from cscli.screen.matching import MatchOptions, atoms_to_structure, default_jobs
    from cscli.core.stream import add_history
    from cscli.screen.sun import e_hull_of, format_summary, sun_flags

    if e_hull_max != e_hull_max:
        raise UsageError("--e-hull-max must be a number")
    if min(ltol, stol, angle_tol) <= 0:
        raise UsageError("--ltol, --stol and --angle-tol must be positive")
    jobs = jobs or default_jobs()
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    options = MatchOptions(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=not no_primitive_cell,
                           scale=not no_scale, attempt_supercell=attempt_supercell)

    def say(text):
        if not quiet:
            print(f"cscli sun-filter: {text}", file=sys.stderr)

    frames = list(input_frames(inputs, input_format))
    if not frames:
        raise DataError("no frames in input")
    if refs:
        ref_frames = read_refs(refs, refs_format)
    else:
        ref_frames = read_frames(str(reference_phases_path()))
        say(f"no --refs: novelty against the {len(ref_frames)} shipped Li-P-S reference phases")

    # stability needs e_hull; compute it from the references when they carry energies
    lacking = [a for a in frames if a.info.get("e_hull") is None]
    hull = None
    if lacking and refs and all(a.info.get("energy") is not None for a in ref_frames):
        hull = Hull.from_frames(ref_frames, allow_mixed=allow_mixed_models)
        say(f"{len(lacking)} frames lack e_hull: computing it against the {hull.n_refs} references")
    good, bad = [], []
    for atoms in frames:
        try:
            if atoms.info.get("e_hull") is None and hull is not None:
                message = hull.check_model(atoms, allow_mixed_models)
                if message:
                    say(f"warning: {message}")
                atoms.info.update(hull.evaluate(atoms))
            e_hull_of(atoms)  # missing (no references to compute it), NaN or not a number: a frame failure
            atoms_to_structure(atoms)
            good.append(atoms)
        except CscliError as exc:
            bad.append((atoms, str(exc)))
    if bad:
        for atoms, message in bad[:5]:
            say(message)
        if not failed:
            raise DataError(f"{len(bad)} of {len(frames)} frames cannot be assessed (pass --failed FILE to set them aside)")
        with FrameWriter(failed, append=True) as writer:
            for atoms, message in bad:
                atoms = atoms.copy()
                atoms.info["error"] = message
                writer.write(atoms)
    for atoms in ref_frames:
        atoms_to_structure(atoms)  # a non-periodic reference is an input error, not a frame failure

    result = sun_flags(good, ref_frames, options, e_hull_max=e_hull_max, jobs=jobs)
    written = 0
    with FrameWriter(output, output_format) as writer:
        for i, atoms in enumerate(good):
            info = atoms.info
            info["is_stable"] = bool(result.is_stable[i])
            info["is_unique"] = bool(result.is_unique[i])
            info["is_novel"] = bool(result.is_novel[i])
            info["is_sun"] = bool(result.is_sun[i])
            for key in ("duplicate_of", "matches_reference"):
                info.pop(key, None)
            if result.duplicate_of[i] is not None:
                info["duplicate_of"] = str(good[result.duplicate_of[i]].info["id"])
            if result.matches_reference[i] is not None:
                info["matches_reference"] = str(ref_frames[result.matches_reference[i]].info["id"])
            add_history(atoms, f"sun-filter(e_hull_max={e_hull_max})")
            if only_sun and not info["is_sun"]:
                continue
            try:
                writer.write(atoms)
            except BrokenPipeError:
                break
            written += 1
    summary = dict(result.summary)
    summary["failed"] = len(bad)
    summary["written"] = written
    say(format_summary(summary) + f"; {written} written" + (f", {len(bad)} failed" if bad else ""))
    if summary_path:
        with open(summary_path, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
            fh.write("\n")
