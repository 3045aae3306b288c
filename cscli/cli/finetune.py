"""``cscli finetune``: fine-tune DPA-3 (deepmd-kit), MatterSim or MatterGen on labelled frames."""

from __future__ import annotations

import click

from cscli.cli.options import INPUT_FORMATS, seed_option

DEFAULT_EPOCHS = 50.0


@click.command("finetune")
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option("-o", "--output", default="finetune-run", show_default=True, metavar="DIR",
              help="Output folder: model, input, lcurve.out, learning_curve.png, summary.json.")
@click.option("--backend", type=click.Choice(["deepmd", "mattersim", "mattergen"]), default="deepmd",
              show_default=True, help="deepmd: DPA-3 with deepmd-kit (PyTorch); mattersim; mattergen.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), default=None,
              help="Input format (default: from the extension, else sniffed).")
@click.option("--valid", "valid_file", default=None, metavar="FILE",
              help="Validation frames (instead of splitting the input).")
@click.option("--valid-fraction", type=float, default=0.1, show_default=True,
              help="Fraction of the input held out for validation (ignored with --valid).")
@click.option("--init", default=None, metavar="CHECKPOINT",
              help="Start from this model. deepmd: a checkpoint .pt (e.g. DPA-3.1-3M; `dp --pt train --finetune`) "
                   "or a frozen .pth; mattersim: a MatterSim checkpoint (required).")
@click.option("--model-branch", default=None,
              help="deepmd: branch (head) of a multi-task pretrained model to fine-tune from.")
@click.option("--config", "config_file", default=None, metavar="FILE",
              help="deepmd: a whole deepmd input (JSON/YAML); cscli fills in data, type_map and run length.")
@click.option("--preset", type=click.Choice(["dpa3-l6", "dpa3-l3", "small", "tiny"]), default="dpa3-l6",
              show_default=True, help="deepmd: DPA-3 size when training from scratch.")
@click.option("--epochs", type=float, default=None, help=f"Passes over the training frames [default: {DEFAULT_EPOCHS:g}].")
@click.option("--steps", type=int, default=None, help="deepmd: training steps (overrides --epochs).")
@click.option("--batch-size", default=None,
              help="Frames per batch. deepmd: N, auto or auto:N [auto]; mattersim: N [16].")
@click.option("--start-lr", type=float, default=None, help="Initial learning rate [deepmd 1e-3, mattersim 2e-4].")
@click.option("--stop-lr", type=float, default=3e-5, show_default=True, help="deepmd: final learning rate.")
@click.option("--lr-schedule", type=click.Choice(["exp", "wsd"]), default="exp", show_default=True,
              help="deepmd: exp = exponential decay over the run (the paper's, for fine-tuning); wsd = constant "
                   "start lr, decaying over the last 30 %% (short runs from scratch, with --start-lr 1e-2).")
@click.option("--start-pref", default="0.2:100:0.02", show_default=True,
              help="deepmd: energy:force:virial loss prefactors at the start.")
@click.option("--limit-pref", default="20:60:1", show_default=True,
              help="deepmd: energy:force:virial loss prefactors at the end.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where training runs.")
@click.option("--property", "properties", multiple=True, default=("energy_above_hull",), show_default=True,
              help="mattergen: property to condition on (info key e_hull is used for energy_above_hull).")
@click.option("--no-plot", is_flag=True, help="Do not draw learning_curve.png.")
@seed_option
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def command(inputs, output, backend, input_format, valid_file, valid_fraction, init, model_branch, config_file,
            preset, epochs, steps, batch_size, start_lr, stop_lr, lr_schedule, start_pref, limit_pref, device, properties,
            no_plot, seed, quiet):
    """Fine-tune a force field (or MatterGen) on labelled frames (energy, forces, optional stress).

    Prints the path of the trained model on stdout, so that

        cscli relax --model "$(cscli finetune train.extxyz -o ft -q)" candidates.extxyz

    chains. Frames need info['energy'] and arrays['forces']; stress (ASE sign, eV/Å³) becomes the
    deepmd virial (-stress x volume).
    """
    import sys

    from cscli.cli.options import input_frames
    from cscli.core.errors import DataError, UsageError
    from cscli.learn.finetune import finetune
    from cscli.learn.finetune.data import split_frames

    seed = 0 if seed is None else seed
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

    options: dict = {"seed": seed, "device": device}
    if backend == "deepmd":
        from cscli.learn.finetune.deepmd import Schedule, load_config, parse_prefactors

        schedule = Schedule(epochs=epochs, steps=steps,
                            batch_size=batch_size or "auto", start_lr=1e-3 if start_lr is None else start_lr,
                            stop_lr=stop_lr, lr_schedule=lr_schedule, start_pref=parse_prefactors(start_pref),
                            limit_pref=parse_prefactors(limit_pref))
        options.update(schedule=schedule, preset=preset, init=init, model_branch=model_branch,
                       config=load_config(config_file) if config_file else None)
    elif backend == "mattersim":
        if init is None:
            raise UsageError("--backend mattersim needs --init CHECKPOINT (a MatterSim .pth)")
        if config_file or model_branch:
            raise UsageError("--config and --model-branch apply to --backend deepmd only")
        try:
            bs = 16 if batch_size is None else int(batch_size)
        except ValueError:
            raise UsageError(f"--batch-size {batch_size!r}: mattersim needs an integer") from None
        options.update(init=init, epochs=DEFAULT_EPOCHS if epochs is None else epochs, steps=steps,
                       batch_size=bs, lr=2e-4 if start_lr is None else start_lr)
    else:
        options.update(init=init, properties=list(properties), epochs=epochs)
    summary = finetune(train, valid, output, backend=backend, quiet=quiet, plot=not no_plot, **options)
    if not quiet:
        final = summary.get("final") or {}
        wanted = ("rmse_e_val", "rmse_f_val", "rmse_v_val", "mae_e_val", "mae_f_val", "mae_s_val")
        shown = ", ".join(f"{k} {final[k]:.4g}" for k in wanted
                          if isinstance(final.get(k), float) and final[k] == final[k])  # skip nan
        print(f"cscli finetune: {backend} model {summary['model']} ({summary['n_train']} train / "
              f"{summary['n_valid']} valid frames){'; ' + shown if shown else ''}", file=sys.stderr)
    from cscli.core.frames import data_stdout

    print(summary["model"], file=data_stdout(), flush=True)
