"""``cscli finetune``: fine-tune DPA-3 (deepmd-kit), MatterSim, SevenNet or MatterGen on labelled frames."""

from __future__ import annotations

import click

from cscli.cli.options import config_option, device_option, input_format_option, quiet_option, seed_option


@click.command("finetune")
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option(
    "-o",
    "--output",
    default="finetune-run",
    show_default=True,
    metavar="DIR",
    help="Output folder: model, input, lcurve.out, learning_curve.png, summary.json.",
)
@click.option(
    "--backend",
    type=click.Choice(["deepmd", "mattersim", "sevennet", "mattergen"]),
    default="deepmd",
    show_default=True,
    help="deepmd: DPA-3 with deepmd-kit (PyTorch); mattersim; sevennet (sevenn, "
    "pretrained weights offline); mattergen.",
)
@input_format_option
@click.option(
    "--valid", "valid_file", default=None, metavar="FILE", help="Validation frames (instead of splitting the input)."
)
@click.option(
    "--valid-fraction",
    type=float,
    default=0.1,
    show_default=True,
    help="Fraction of the input held out for validation (ignored with --valid).",
)
@click.option(
    "--init",
    default=None,
    metavar="MODEL",
    help="Start from this model. deepmd: a checkpoint .pt (e.g. DPA-3.1-3M; `dp --pt train --finetune`) "
    "or a frozen .pth; mattersim: a MatterSim checkpoint (required); sevennet: 7net-0 (default), "
    "7net-l3i5, 7net-mf-0[:HEAD] or a SevenNet checkpoint[::HEAD].",
)
@click.option(
    "--model-branch", default=None, help="deepmd: branch (head) of a multi-task pretrained model to fine-tune from."
)
@click.option(
    "--backend-config",
    "backend_config",
    default=None,
    metavar="FILE",
    help="deepmd: a whole deepmd input (JSON/YAML), cscli fills in data, type_map and run length; "
    "sevennet: sevenn `train` keys (YAML/JSON: optimizer, scheduler, loss, ...) that override cscli's.",
)
@click.option(
    "--preset",
    type=click.Choice(["dpa3-l6", "dpa3-l3", "small", "tiny"]),
    default=None,
    help="deepmd: DPA-3 size when training from scratch [dpa3-l6].",
)
@click.option(
    "--epochs", type=float, default=None, help="Passes over the training frames [deepmd, mattersim 50; sevennet 20]."
)
@click.option("--steps", type=int, default=None, help="Optimizer steps (batches); wins over --epochs.")
@click.option(
    "--batch-size",
    default=None,
    help="Frames per batch. deepmd: N, auto or auto:N [auto]; mattersim: N [16]; sevennet: N [4].",
)
@click.option(
    "--start-lr", type=float, default=None, help="Initial learning rate [deepmd 1e-3, mattersim 2e-4, sevennet 1e-3]."
)
@click.option(
    "--stop-lr",
    type=float,
    default=None,
    help="Final learning rate [deepmd 3e-5; sevennet: none, the preset's 0.99 per epoch].",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(["exp", "wsd", "constant"]),
    default=None,
    help="exp = exponential decay over the run [default]; wsd = constant start lr, decaying over the "
    "last 30 % (deepmd: short runs from scratch, with --start-lr 1e-2); constant (sevennet).",
)
@click.option(
    "--start-pref", default=None, help="deepmd: energy:force:virial loss prefactors at the start [0.2:100:0.02]."
)
@click.option("--limit-pref", default=None, help="deepmd: energy:force:virial loss prefactors at the end [20:60:1].")
@click.option("--loss", default=None, metavar="huber[:DELTA]|mse", help="sevennet: loss function [huber:0.01].")
@click.option(
    "--loss-weights",
    default=None,
    metavar="E:F:S",
    help="sevennet: energy-per-atom:force:stress loss weights [1:1:0.01].",
)
@click.option(
    "--energy-shift",
    type=click.Choice(["fit", "none"]),
    default=None,
    help="sevennet: fit the per-element energy shift between labels and the pretrained model and put it "
    "into the model's atomic reference energies before training [fit].",
)
@device_option
@click.option(
    "--property",
    "properties",
    multiple=True,
    default=None,
    help="mattergen: property to condition on [energy_above_hull, from info['e_hull']].",
)
@click.option("--no-plot", is_flag=True, help="Do not draw learning_curve.png.")
@seed_option
@config_option
@quiet_option
def command(inputs, output, backend, input_format, valid_file, valid_fraction, no_plot, seed, quiet, **given):
    """Fine-tune a force field (or MatterGen) on labelled frames (energy, forces, optional stress).

    Prints the path of the trained model on stdout, so that

        cscli relax --model "$(cscli finetune train.extxyz -o ft -q)" candidates.extxyz

    chains. Frames need info['energy'] and arrays['forces']; info['stress'] (ASE sign, eV/Å³) is
    used when present. Without --seed a seed is drawn and recorded in summary.json.
    """
    from cscli.cli.options import input_frames, resolve_seed
    from cscli.core.errors import DataError
    from cscli.core.log import configure
    from cscli.learn.finetune import backend_options, finetune
    from cscli.learn.finetune.data import split_frames

    log = configure("finetune", quiet)
    seed = resolve_seed(seed)
    options = backend_options(backend, seed=seed, **given)  # usage errors before reading frames
    frames = list(input_frames(inputs, input_format))
    if not frames:
        raise DataError("no frames in input")
    if valid_file:
        from cscli.core.frames import read_frames

        train, valid = frames, read_frames(valid_file, input_format)
        if not valid:
            raise DataError(f"--valid {valid_file}: no frames")
    else:
        train, valid = split_frames(frames, valid_fraction, seed=seed)
    summary = finetune(train, valid, output, backend=backend, plot=not no_plot, **options)
    final = summary.get("final") or {}
    wanted = ("rmse_e_val", "rmse_f_val", "rmse_v_val", "rmse_s_val", "mae_e_val", "mae_f_val", "mae_s_val")
    shown = ", ".join(
        f"{k} {final[k]:.4g}" for k in wanted if isinstance(final.get(k), float) and final[k] == final[k]
    )  # skip nan
    log.info(
        f"{backend} model {summary['model']} ({summary['n_train']} train / {summary['n_valid']} valid frames, "
        f"seed {seed}){'; ' + shown if shown else ''}"
    )
    from cscli.core.frames import data_stdout

    print(summary["model"], file=data_stdout(), flush=True)
