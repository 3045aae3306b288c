"""``cscli generate``: candidate crystals from MatterGen, random symmetric cells or anion motifs."""

from __future__ import annotations

import click

from cscli.cli.options import (
    RangeFloat,
    SectionedCommand,
    command_option,
    config_option,
    no_resume_option,
    output_format_option,
    output_option,
    quiet_option,
    refs_option,
    seed_option,
    shard_option,
    work_dir_option,
)


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


#: ``cscli generate --help``: the options of each backend under their own heading
SECTIONS = {
    "random and motifs backends": [
        "max_atoms",
        "charge_balance",
        "allow_subsystems",
        "distance_factor",
        "volume_factor",
        "spacegroups",
        "refs",
    ],
    "motifs backend": ["motif_catalogue", "motif_names", "anion_distance"],
    "mattergen backend": [
        "mattergen_command",
        "e_hull",
        "batch_size",
        "guidance",
        "model_path",
        "pretrained_name",
        "work_dir",
        "keep_outside",
    ],
    "MatterGen fine-tuning data (--make-dataset)": [
        "make_dataset",
        "dataset_dir",
        "dataset_name",
        "cache_folder",
        "val_fraction",
        "csv_only",
        "csv_to_dataset_command",
    ],
}


@click.command("generate", cls=SectionedCommand, sections=SECTIONS)
@click.option(
    "--backend",
    type=click.Choice(["auto", "mattergen", "random", "motifs"]),
    default="auto",
    show_default=True,
    help="mattergen (external program), random (pyxtal random symmetric crystals), motifs (rigid anion "
    "units + Li); auto = mattergen when its command is found, else random.",
)
@click.option(
    "-s",
    "--chemical-system",
    default=None,
    metavar="A-B-C",
    help="Chemical system, e.g. Li-P-S (required to generate).",
)
@click.option(
    "-n",
    "--num",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Structures to generate (MatterGen: per E_hull target).",
)
@seed_option
@click.option(
    "--iteration",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Exploration-loop iteration (info['iteration'], ids).",
)
@output_option()
@output_format_option
@no_resume_option
@shard_option
@quiet_option
@config_option
# offline backends
@click.option("--max-atoms", type=click.IntRange(min=1), default=24, show_default=True, help="Most atoms per cell.")
@click.option("--charge-balance", is_flag=True, help="random: only compositions balanced with common oxidation states.")
@click.option("--allow-subsystems", is_flag=True, help="random: also compositions lacking some elements of the system.")
@click.option(
    "--distance-factor",
    type=float,
    default=0.75,
    show_default=True,
    help="Minimum pair distance as a fraction of the covalent-radius sum.",
)
@click.option(
    "--volume-factor",
    type=RangeFloat(),
    default="1.0,1.25",
    show_default=True,
    help="Cell volume = U(lo,hi) x sum of per-element volumes.",
)
@click.option(
    "--spacegroups", default="2-230", show_default=True, help="Space groups to draw from, e.g. 2-230 or 14,62,225."
)
@refs_option(help_text="Reference phases to fit per-element volumes (repeatable; default: shipped ones for Li-P-S).")
@click.option(
    "--motif-catalogue",
    default=None,
    metavar="FILE",
    help="Catalogue of anion units (extxyz/jsonl, info motif_name and charge).",
)
@click.option(
    "--motifs", "motif_names", default="PS4,S", show_default=True, help="Unit names to combine (built-in: PS4, S)."
)
@click.option(
    "--anion-distance",
    type=float,
    default=3.0,
    show_default=True,
    help="Minimum distance (Å) between atoms of different anion units.",
)
# MatterGen
@command_option(
    "mattergen",
    help_text="Command running mattergen-generate (default: $CSCLI_MATTERGEN_CMD, else mattergen-generate on PATH).",
)
@click.option(
    "--e-hull",
    "e_hull",
    default="0.0,0.03,0.06",
    show_default=True,
    callback=_float_list,
    help="E_hull targets (eV/atom), one set of batches each.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Structures per MatterGen run."
)
@click.option("--guidance", type=float, default=2.0, show_default=True, help="Diffusion guidance factor.")
@click.option("--model-path", default=None, metavar="DIR", help="A (fine-tuned) MatterGen model folder.")
@click.option(
    "--pretrained-name", default=None, help="A pretrained checkpoint name (default chemical_system_energy_above_hull)."
)
@work_dir_option(
    "Per-batch results folders (default: OUTPUT.mattergen next to the output file, else a temporary folder)."
)
@click.option(
    "--keep-outside",
    is_flag=True,
    help="Keep samples outside the chemical system (flagged outside_system) instead of dropping them.",
)
# MatterGen fine-tuning data
@click.option(
    "--make-dataset",
    default=None,
    metavar="FRAMES",
    help="Instead of generating: write FRAMES (with DFT info['e_hull']) as MatterGen's train/val CSV and run csv-to-dataset.",
)
@click.option("--dataset-dir", default=None, metavar="DIR", help="Folder for train.csv/val.csv.")
@click.option("--dataset-name", default="cscli", show_default=True, help="Dataset name for csv-to-dataset.")
@click.option("--cache-folder", default=None, metavar="DIR", help="csv-to-dataset cache folder (default DIR/cache).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Fraction of frames in val.csv.")
@click.option("--csv-only", is_flag=True, help="Write the CSVs, do not run csv-to-dataset.")
@command_option(
    "csv-to-dataset",
    help_text="Command for csv-to-dataset (default: $CSCLI_MATTERGEN_CSV_CMD, else beside the MatterGen command).",
)
def command(
    backend,
    chemical_system,
    num,
    seed,
    iteration,
    output,
    output_format,
    no_resume,
    shard,
    quiet,
    max_atoms,
    charge_balance,
    allow_subsystems,
    distance_factor,
    volume_factor,
    spacegroups,
    refs,
    motif_catalogue,
    motif_names,
    anion_distance,
    mattergen_command,
    e_hull,
    batch_size,
    guidance,
    model_path,
    pretrained_name,
    work_dir,
    keep_outside,
    make_dataset,
    dataset_dir,
    dataset_name,
    cache_folder,
    val_fraction,
    csv_only,
    csv_to_dataset_command,
):
    """Generate candidate crystals in one chemical system; frames go to stdout or -o.

    Resumable (ids already in -o FILE are skipped) and, for random/motifs, shardable. The seed is
    recorded in info['generate_seed'] (random/motifs draw one when --seed is not given; MatterGen
    is passed a seed only when given).

    \b
      cscli generate --backend random -s Li-P-S -n 50 --seed 0 | cscli relax > relaxed.extxyz
      cscli generate --backend motifs -s Li-P-S -n 20 --seed 1 -o motifs.extxyz
      cscli generate --backend mattergen -s Li-P-S --e-hull 0,0.03,0.06 -n 64 -o mg.extxyz
      cscli generate --make-dataset labelled.extxyz --dataset-dir mg_data --dataset-name lips
    """
    from cscli.cli.options import resolve_seed
    from cscli.core.errors import UsageError
    from cscli.core.frames import claim_stdout
    from cscli.core.log import configure
    from cscli.core.stream import StreamOptions, summary_line
    from cscli.explore.generate import chemical_system_key, parse_chemical_system

    log = configure("generate", quiet)
    claim_stdout()  # stdout carries frames only: any print from pyxtal or MatterGen's wrappers goes to stderr
    if make_dataset:
        return _make_dataset(
            make_dataset,
            dataset_dir,
            dataset_name,
            cache_folder,
            val_fraction,
            resolve_seed(seed),
            csv_only,
            mattergen_command,
            csv_to_dataset_command,
        )
    if not chemical_system:
        raise UsageError("--chemical-system is required, e.g. -s Li-P-S")
    elements = parse_chemical_system(chemical_system)
    stream = StreamOptions(
        output=output, output_format=output_format, shard=shard, resume=not no_resume, command="cscli generate"
    )
    if backend == "auto":
        import shutil

        from cscli.explore.mattergen import resolve_command

        backend = "mattergen" if shutil.which(resolve_command(mattergen_command)[0]) else "random"
        log.info(f"backend {backend}")
    if backend == "mattergen":  # MatterGen gets --seed only when given: its versions before the option refuse it
        return _mattergen(
            elements,
            num,
            seed,
            iteration,
            stream,
            mattergen_command,
            e_hull,
            batch_size,
            guidance,
            model_path,
            pretrained_name,
            work_dir,
            keep_outside,
        )

    import time

    from cscli.core.frames import read_refs
    from cscli.explore.generate import OfflineSettings, load_motifs, parse_spacegroups, write_offline

    seed = resolve_seed(seed)
    motifs = None
    if backend == "motifs":
        motifs = load_motifs(motif_catalogue, [n.strip() for n in motif_names.split(",") if n.strip()])
    settings = OfflineSettings(
        elements=elements,
        max_atoms=max_atoms,
        charge_balance=charge_balance,
        allow_subsystems=allow_subsystems,
        distance_factor=distance_factor,
        volume_factor=tuple(volume_factor),
        spacegroups=parse_spacegroups(spacegroups),
        references=read_refs(refs) if refs else None,
        anion_distance=anion_distance,
        motifs=motifs,
    )
    start = time.perf_counter()
    summary = write_offline(backend, settings, num, seed, iteration, stream)
    log.info(
        summary_line(summary, stream) + f" in {time.perf_counter() - start:.1f} s ({chemical_system_key(elements)})"
    )


def _mattergen(
    elements,
    num,
    seed,
    iteration,
    stream,
    mattergen_command,
    e_hull,
    batch_size,
    guidance,
    model_path,
    pretrained_name,
    work_dir,
    keep_outside,
):
    import tempfile

    from cscli.core.log import get_logger
    from cscli.explore.generate import chemical_system_key, write_mattergen
    from cscli.explore.mattergen import MatterGenRun, check_checkpoint, check_program, resolve_command

    cmd = resolve_command(mattergen_command)
    check_program(cmd)
    check_checkpoint(model_path, pretrained_name)
    tmp = None
    if work_dir is None:
        if stream.output != "-":
            work_dir = stream.output + ".mattergen"
        else:
            tmp = tempfile.TemporaryDirectory(prefix="cscli-mattergen-")
            work_dir = tmp.name
    system = chemical_system_key(elements)
    run = MatterGenRun(
        command=cmd,
        work_dir=work_dir,
        chemical_system=system,
        targets=e_hull,
        num=num,
        batch_size=batch_size,
        guidance=guidance,
        model_path=model_path,
        pretrained_name=pretrained_name,
        seed=seed,
        iteration=iteration,
        keep_outside=keep_outside,
    )
    try:
        write_mattergen(run, stream)
    finally:
        if tmp is not None:
            tmp.cleanup()
    s = run.stats
    frac = f" ({100.0 * s['outside_system'] / s['generated']:.0f} %)" if s["generated"] else ""
    get_logger().info(
        f"{s['written']} frames written; {s['batches_run']} batches run, {s['batches_skipped']} already "
        f"done; {s['outside_system']} of {s['generated']} samples outside {system}{frac} "
        f"{'kept' if keep_outside else 'dropped'}"
    )


def _make_dataset(
    frames_path,
    dataset_dir,
    dataset_name,
    cache_folder,
    val_fraction,
    seed,
    csv_only,
    mattergen_command,
    csv_to_dataset_command,
):
    from pathlib import Path

    from cscli.core.errors import UsageError
    from cscli.core.frames import iter_frames
    from cscli.core.log import get_logger
    from cscli.explore.mattergen import check_program, resolve_command, run_csv_to_dataset, write_dataset_csv
    from cscli.explore.mattergen import csv_to_dataset_command as csv_command

    log = get_logger()
    if not dataset_dir:
        raise UsageError("--make-dataset needs --dataset-dir DIR for train.csv and val.csv")
    command = None
    if not csv_only:  # fail before writing anything when the program is missing
        command = csv_command(resolve_command(mattergen_command), csv_to_dataset_command)
        check_program(command, "MatterGen csv-to-dataset")
    counts = write_dataset_csv(iter_frames(frames_path), dataset_dir, val_fraction, seed)
    log.info(f"{counts['train']} train and {counts['val']} val rows in {dataset_dir} (split seed {seed})")
    if csv_only:
        return
    cache = cache_folder or str(Path(dataset_dir) / "cache")
    path = run_csv_to_dataset(command, dataset_dir, dataset_name, cache)
    log.info(f"MatterGen dataset in {path}")
