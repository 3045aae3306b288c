"""``cscli generate``: candidate crystals from MatterGen, random symmetric cells or anion motifs."""

from __future__ import annotations

import sys

import click

from cscli.cli.options import OUTPUT_FORMATS, RangeFloat, ShardType


def _float_list(ctx, param, value):
    if value is None:
        return None
    try:
        out = [float(x) for x in str(value).split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated numbers, e.g. 0.0,0.03,0.06") from None
    if not out or any(x < 0 for x in out):
        raise click.BadParameter(f"{value!r}: need one or more non-negative numbers")
    return out


class VolumeFactor(RangeFloat):
    name = "lo,hi"


@click.command("generate")
@click.option("--backend", type=click.Choice(["auto", "mattergen", "random", "motifs"]), default="auto", show_default=True,
              help="mattergen (external program), random (pyxtal random symmetric crystals), motifs (rigid anion "
                   "units + Li); auto = mattergen when its command is found, else random.")
@click.option("-s", "--chemical-system", default=None, metavar="A-B-C", help="Chemical system, e.g. Li-P-S (required to generate).")
@click.option("-n", "--num", type=click.IntRange(min=1), default=10, show_default=True,
              help="Structures to generate (MatterGen: per E_hull target).")
@click.option("--seed", type=int, default=None, help="Random seed (reproducible output; drawn and reported when omitted).")
@click.option("--iteration", type=click.IntRange(min=0), default=0, show_default=True, help="Exploration-loop iteration (info['iteration'], ids).")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="Output file (- for stdout). A file is appended to and resumed.")
@click.option("--output-format", type=click.Choice(OUTPUT_FORMATS), default=None, help="Output format (default: from the extension, extxyz on stdout).")
@click.option("--no-resume", is_flag=True, help="Overwrite the output file instead of skipping ids already in it.")
@click.option("--shard", type=ShardType(), default=None, help="Offline backends: only the ids of shard i of n (0-based).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
# offline backends
@click.option("--max-atoms", type=click.IntRange(min=1), default=24, show_default=True, help="random/motifs: most atoms per cell.")
@click.option("--charge-balance", is_flag=True, help="random: only compositions balanced with common oxidation states.")
@click.option("--allow-subsystems", is_flag=True, help="random: also compositions lacking some elements of the system.")
@click.option("--distance-factor", type=float, default=0.75, show_default=True,
              help="random/motifs: minimum pair distance as a fraction of the covalent-radius sum.")
@click.option("--volume-factor", type=VolumeFactor(), default="1.0,1.25", show_default=True,
              help="random/motifs: cell volume = U(lo,hi) x sum of per-element volumes.")
@click.option("--spacegroups", default="2-230", show_default=True, help="random/motifs: space groups to draw from, e.g. 2-230 or 14,62,225.")
@click.option("--refs", default=None, metavar="FILE", help="random/motifs: reference phases to fit per-element volumes (default: shipped ones for Li-P-S).")
@click.option("--motif-catalogue", default=None, metavar="FILE", help="motifs: catalogue of anion units (extxyz/jsonl, info motif_name and charge).")
@click.option("--motifs", "motif_names", default="PS4,S", show_default=True, help="motifs: unit names to combine (built-in: PS4, S).")
@click.option("--anion-distance", type=float, default=3.0, show_default=True, help="motifs: minimum distance (Å) between atoms of different anion units.")
# MatterGen
@click.option("--mattergen-cmd", default=None, metavar="CMD", help="Command running mattergen-generate (default: $CSCLI_MATTERGEN_CMD, else mattergen-generate on PATH).")
@click.option("--e-hull", "e_hull", default="0.0,0.03,0.06", show_default=True, callback=_float_list,
              help="mattergen: E_hull targets (eV/atom), one set of batches each.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="mattergen: structures per MatterGen run.")
@click.option("--guidance", type=float, default=2.0, show_default=True, help="mattergen: diffusion guidance factor.")
@click.option("--model-path", default=None, metavar="DIR", help="mattergen: a (fine-tuned) model folder.")
@click.option("--pretrained-name", default=None, help="mattergen: a pretrained checkpoint name (default chemical_system_energy_above_hull).")
@click.option("--work-dir", default=None, metavar="DIR", help="mattergen: per-batch results folders (default: OUTPUT.mattergen next to the output file, else a temporary folder).")
@click.option("--keep-outside", is_flag=True, help="mattergen: keep samples outside the chemical system (flagged outside_system) instead of dropping them.")
# MatterGen fine-tuning data
@click.option("--make-dataset", default=None, metavar="FRAMES", help="Instead of generating: write FRAMES (with DFT info['e_hull']) as MatterGen's train/val CSV and run csv-to-dataset.")
@click.option("--dataset-dir", default=None, metavar="DIR", help="make-dataset: folder for train.csv/val.csv.")
@click.option("--dataset-name", default="cscli", show_default=True, help="make-dataset: dataset name for csv-to-dataset.")
@click.option("--cache-folder", default=None, metavar="DIR", help="make-dataset: csv-to-dataset cache folder (default DIR/cache).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="make-dataset: fraction of frames in val.csv.")
@click.option("--csv-only", is_flag=True, help="make-dataset: write the CSVs, do not run csv-to-dataset.")
@click.option("--csv-to-dataset-cmd", default=None, metavar="CMD", help="make-dataset: command for csv-to-dataset (default: beside the MatterGen command).")
def command(backend, chemical_system, num, seed, iteration, output, output_format, no_resume, shard, quiet,
            max_atoms, charge_balance, allow_subsystems, distance_factor, volume_factor, spacegroups, refs,
            motif_catalogue, motif_names, anion_distance, mattergen_cmd, e_hull, batch_size, guidance, model_path,
            pretrained_name, work_dir, keep_outside, make_dataset, dataset_dir, dataset_name, cache_folder,
            val_fraction, csv_only, csv_to_dataset_cmd):
    """Generate candidate crystals in one chemical system; frames go to stdout or -o.

    \b
      cscli generate --backend random -s Li-P-S -n 50 --seed 0 | cscli relax > relaxed.extxyz
      cscli generate --backend motifs -s Li-P-S -n 20 --seed 1 -o motifs.extxyz
      cscli generate --backend mattergen -s Li-P-S --e-hull 0,0.03,0.06 -n 64 -o mg.extxyz
      cscli generate --make-dataset labelled.extxyz --dataset-dir mg_data --dataset-name lips
    """
    from cscli.core.errors import UsageError

    if make_dataset:
        return _make_dataset(make_dataset, dataset_dir, dataset_name, cache_folder, val_fraction, seed, csv_only,
                             mattergen_cmd, csv_to_dataset_cmd, quiet)
    if not chemical_system:
        raise UsageError("--chemical-system is required, e.g. -s Li-P-S")
    from cscli.core.frames import claim_stdout
    from cscli.explore.generate import parse_chemical_system

    claim_stdout()  # stdout carries frames only: any print from pyxtal or MatterGen's wrappers goes to stderr

    elements = parse_chemical_system(chemical_system)
    if backend == "auto":
        import shutil

        from cscli.explore.mattergen import resolve_command

        backend = "mattergen" if shutil.which(resolve_command(mattergen_cmd)[0]) else "random"
        if not quiet:
            click.echo(f"cscli generate: backend {backend}", err=True)
    if backend == "mattergen":
        return _mattergen(elements, num, seed, iteration, output, output_format, no_resume, quiet, mattergen_cmd,
                          e_hull, batch_size, guidance, model_path, pretrained_name, work_dir, keep_outside)
    return _offline(backend, elements, num, seed, iteration, output, output_format, no_resume, shard, quiet,
                    max_atoms, charge_balance, allow_subsystems, distance_factor, volume_factor, spacegroups, refs,
                    motif_catalogue, motif_names, anion_distance)


def _writer_and_done(output, output_format, no_resume):
    from cscli.core.frames import FrameWriter, scan_output

    to_file = output != "-"
    done = scan_output(output, output_format) if to_file and not no_resume else set()
    writer = FrameWriter(output, output_format, append=to_file and not no_resume)
    return writer, done


def _offline(backend, elements, num, seed, iteration, output, output_format, no_resume, shard, quiet, max_atoms,
             charge_balance, allow_subsystems, distance_factor, volume_factor, spacegroups, refs, motif_catalogue,
             motif_names, anion_distance):
    import time

    from cscli.core.errors import DataError
    from cscli.core.frames import read_frames, remove_if_empty
    from cscli.explore.generate import OfflineSettings, generate_offline, load_motifs, parse_spacegroups
    from cscli.core.stream import add_history

    if seed is None:
        import secrets

        seed = secrets.randbits(31)
        if not quiet:
            click.echo(f"cscli generate: --seed {seed} (pass it to reproduce this run)", err=True)
    motifs = None
    if backend == "motifs":
        motifs = load_motifs(motif_catalogue, [n.strip() for n in motif_names.split(",") if n.strip()])
    settings = OfflineSettings(
        elements=elements, max_atoms=max_atoms, charge_balance=charge_balance, allow_subsystems=allow_subsystems,
        distance_factor=distance_factor, volume_factor=tuple(volume_factor), spacegroups=parse_spacegroups(spacegroups),
        references=read_frames(refs) if refs else None, anion_distance=anion_distance, motifs=motifs)
    writer, done = _writer_and_done(output, output_format, no_resume)
    skip = (lambda fid: fid in done or (shard is not None and not shard.keeps(fid)))
    written = failed = 0
    start = time.perf_counter()
    progress = None
    if not quiet:
        from tqdm import tqdm

        progress = tqdm(total=num, desc=f"cscli generate ({backend})", unit="frame", file=sys.stderr, leave=False)
    try:
        failures = []
        frames = generate_offline(backend, settings, num, seed, iteration, skip=skip,
                                  on_error=lambda fid, exc: failures.append(fid) or click.echo(f"cscli generate: {fid}: {exc}", err=True))
        for atoms in frames:
            add_history(atoms, f"generate({backend},seed={seed})")
            writer.write(atoms)
            written += 1
            if progress is not None:
                progress.update(1)
        failed = len(failures)
    except BrokenPipeError:
        pass
    finally:
        writer.close()
        if progress is not None:
            progress.close()
        remove_if_empty(output)
    elapsed = time.perf_counter() - start
    if not quiet:
        skipped = len([i for i in done if i.startswith({"random": "rnd", "motifs": "mtf"}[backend] + f"-it{iteration}-")])
        parts = [f"{written} frames written in {elapsed:.1f} s"]
        if skipped:
            parts.append(f"{skipped} already done")
        if failed:
            parts.append(f"{failed} failed")
        click.echo("cscli generate: " + ", ".join(parts), file=sys.stderr)
    if failed and not written:
        raise DataError(f"no structure could be generated ({failed} failed); loosen --distance-factor or raise --max-atoms")


def _mattergen(elements, num, seed, iteration, output, output_format, no_resume, quiet, mattergen_cmd, e_hull,
               batch_size, guidance, model_path, pretrained_name, work_dir, keep_outside):
    import tempfile

    from cscli.core.frames import remove_if_empty
    from cscli.explore.generate import chemical_system_key
    from cscli.explore.mattergen import MatterGenRun, check_checkpoint, check_program, resolve_command
    from cscli.core.stream import add_history

    cmd = resolve_command(mattergen_cmd)
    check_program(cmd)
    check_checkpoint(model_path, pretrained_name)
    tmp = None
    if work_dir is None:
        if output != "-":
            work_dir = output + ".mattergen"
        else:
            tmp = tempfile.TemporaryDirectory(prefix="cscli-mattergen-")
            work_dir = tmp.name
    run = MatterGenRun(command=cmd, work_dir=work_dir, chemical_system=chemical_system_key(elements), targets=e_hull,
                       num=num, batch_size=batch_size, guidance=guidance, model_path=model_path,
                       pretrained_name=pretrained_name, seed=seed, iteration=iteration, quiet=quiet,
                       keep_outside=keep_outside)
    writer, done = _writer_and_done(output, output_format, no_resume)
    try:
        for atoms in run.run(done_ids=done, resume=not no_resume):
            if atoms.info["id"] in done:
                continue
            add_history(atoms, f"generate(mattergen,{run.model})")
            writer.write(atoms)
            done.add(atoms.info["id"])
            run.stats["written"] += 1
    except BrokenPipeError:
        pass
    finally:
        writer.close()
        remove_if_empty(output)
        if tmp is not None:
            tmp.cleanup()
    s = run.stats
    if not quiet:
        frac = f" ({100.0 * s['outside_system'] / s['generated']:.0f} %)" if s["generated"] else ""
        click.echo(f"cscli generate: {s['written']} frames written; {s['batches_run']} batches run, "
                   f"{s['batches_skipped']} already done; {s['outside_system']} of {s['generated']} samples outside "
                   f"{chemical_system_key(elements)}{frac} {'kept' if keep_outside else 'dropped'}", err=True)


def _make_dataset(frames_path, dataset_dir, dataset_name, cache_folder, val_fraction, seed, csv_only, mattergen_cmd,
                  csv_to_dataset_cmd, quiet):
    from pathlib import Path

    from cscli.core.errors import UsageError
    from cscli.core.frames import iter_frames
    from cscli.explore.mattergen import csv_to_dataset_command, resolve_command, run_csv_to_dataset, write_dataset_csv

    if not dataset_dir:
        raise UsageError("--make-dataset needs --dataset-dir DIR for train.csv and val.csv")
    command = None
    if not csv_only:  # fail before writing anything when the program is missing
        from cscli.explore.mattergen import check_program

        command = csv_to_dataset_command(resolve_command(mattergen_cmd), csv_to_dataset_cmd)
        check_program(command, "MatterGen csv-to-dataset")
    counts = write_dataset_csv(iter_frames(frames_path), dataset_dir, val_fraction, seed or 0)
    if not quiet:
        click.echo(f"cscli generate: {counts['train']} train and {counts['val']} val rows in {dataset_dir}", err=True)
    if csv_only:
        return
    cache = cache_folder or str(Path(dataset_dir) / "cache")
    path = run_csv_to_dataset(command, dataset_dir, dataset_name, cache, quiet)
    if not quiet:
        click.echo(f"cscli generate: MatterGen dataset in {path}", err=True)
