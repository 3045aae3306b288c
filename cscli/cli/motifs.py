"""``cscli motifs``: tag frames with their anion motifs, keep a catalogue, draw a fingerprint map."""

from __future__ import annotations

import click

from cscli.cli.options import pass_stream, resolve_seed, seed_option


@click.command("motifs")
@pass_stream("motifs")
@click.option(
    "--exclude",
    default="Li",
    show_default=True,
    metavar="EL[,EL...]",
    help="Cation species left out of the bond graph ('' keeps every atom).",
)
@click.option(
    "--cutoff",
    "cutoffs",
    multiple=True,
    metavar="A-B=R",
    help="Bond cutoff override in Å, e.g. --cutoff P-S=2.4 (repeatable). Defaults: P-S 2.35, "
    "S-S 2.20, P-P 2.50; other pairs 1.15 x the sum of covalent radii.",
)
@click.option(
    "--catalogue",
    default=None,
    metavar="FILE.jsonl",
    help="Motif catalogue (JSON lines) to merge this run into; motifs not in it are flagged new.",
)
@click.option(
    "--export-dir",
    default=None,
    metavar="DIR",
    help="Write each unique finite unit as <name>_<hash>.xyz, centred in a 20 Å box.",
)
@click.option(
    "--table",
    "table_path",
    default=None,
    metavar="FILE.tsv",
    help="Write the motif table as tab-separated text (it is always shown on stderr unless -q).",
)
@click.option(
    "--map",
    "map_path",
    default=None,
    metavar="PNG",
    help="t-SNE map of CrystalNN fingerprints (also writes <stem>.csv); stores info['fingerprint'].",
)
@click.option(
    "--color-by",
    type=click.Choice(["motif", "iteration"]),
    default="motif",
    show_default=True,
    help="Colour the map by dominant motif or by info['iteration'].",
)
@click.option("--keep-cations", is_flag=True, help="Fingerprints with the cations kept (default: removed).")
@seed_option
def command(
    frames, settings, exclude, cutoffs, catalogue, export_dir, table_path, map_path, color_by, keep_cations, seed
):
    """Find the anion units (P-S graph components) of each frame, name them and count them.

    Each output frame gets info['motifs'] (list of {hash, name, count}), info['motif_names'] and
    info['motif_charge_balance']. The motif table of the run goes to stderr.

        cscli motifs relaxed.extxyz --catalogue cat.jsonl > tagged.extxyz
    """
    from cscli.core.errors import UsageError
    from cscli.core.log import get_logger
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.screen.motifs import (
        Catalogue,
        MotifSettings,
        analyze,
        dominant_motif,
        export_cluster,
        format_table,
        tag_frame,
    )

    excl = tuple(s.strip() for s in exclude.split(",") if s.strip())
    from ase.data import atomic_numbers

    for s in excl:
        if s not in atomic_numbers:
            raise UsageError(f"--exclude: unknown element {s!r}")
    msettings = MotifSettings.make(exclude=excl, cutoffs=cutoffs)
    if color_by == "iteration" and not map_path:
        raise UsageError("--color-by needs --map PNG")
    log = get_logger()
    if map_path:  # only the t-SNE map draws random numbers
        seed = resolve_seed(seed)
    cat = Catalogue.load(catalogue)
    if catalogue and settings.resume:
        _merge_unrecorded_output(cat, settings, msettings)
    exported: set[str] = set()
    fp_rows: list[tuple[str, object, object]] = []
    remove = () if keep_cations else excl

    def process(atoms):
        motifs = analyze(atoms, msettings)
        tag_frame(atoms, motifs, msettings)
        cat.add(atoms.info["id"], motifs, atoms.info.get("iteration"))
        if export_dir:
            for m in motifs:
                if m.dimensionality == 0 and m.hash not in exported:
                    export_cluster(m, export_dir)
                    exported.add(m.hash)
        if map_path:
            from cscli.screen.fingerprints import frame_fingerprint

            fp = frame_fingerprint(atoms, remove)
            label = dominant_motif(motifs) if color_by == "motif" else atoms.info.get("iteration", "unknown")
            fp_rows.append((atoms.info["id"], fp, label))
            atoms.info["tsne_seed"] = seed  # the map's provenance, beside info['fingerprint']
        add_history(atoms, "motifs")
        return atoms

    try:
        result = run_stream(frames, process, settings)
    finally:
        if catalogue:
            cat.save(catalogue)
    rows = cat.summary_rows()
    if rows:
        log.info("motif table\n" + format_table(rows).rstrip("\n"))
    if table_path:
        with open(table_path, "w", encoding="utf-8") as fh:
            fh.write(format_table(rows, sep="\t"))
    if map_path and fp_rows:
        from cscli.screen.fingerprints import fingerprint_map

        ids, fps, labels = zip(*fp_rows)
        fingerprint_map(list(fps), list(labels), map_path, color_by=color_by, seed=seed, ids=list(ids))
        log.info(f"map of {len(ids)} frames written to {map_path} (t-SNE seed {seed})")
    if catalogue:
        new = sum(r["new"] for r in rows)
        log.info(f"{len(rows)} motifs, {new} new; catalogue {catalogue} holds {len(cat.records)}")
    finish(result, settings)


def _merge_unrecorded_output(cat, settings, msettings) -> None:
    """Frames a killed run wrote to the output but never merged into the catalogue (it is saved at
    the end): merge them now, since the resumed run skips them."""
    from pathlib import Path

    from cscli.core.frames import iter_frames, scan_output
    from cscli.screen.motifs import analyze

    if settings.output in (None, "-") or not Path(settings.output).is_file():
        return
    missing = scan_output(settings.output, settings.output_format) - cat.merged
    if not missing:
        return
    for atoms in iter_frames(settings.output, settings.output_format):
        if atoms.info.get("id") in missing:
            cat.add(atoms.info["id"], analyze(atoms, msettings), atoms.info.get("iteration"))
