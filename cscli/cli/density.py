"""``cscli density``: an equivariant charge-density model — train, predict, test, nscf."""

from __future__ import annotations

import click

from cscli.cli.main import NamedSubcommandGroup
from cscli.cli.options import config_option, device_option, plot_option, quiet_option, report_option, resolve_seed


@click.group("density", cls=NamedSubcommandGroup)
def command():
    """Charge-density model: CHGCAR in and out (docs/density.md).

    \b
        cscli label -c gpaw frames.extxyz --density-dir dens -o labelled.extxyz
        cscli density train dens/ -o model-dir --steps 2000
        cscli density predict sun.extxyz -o pred/ --normalize
        cscli density test --model model-dir/model.pt held-out/ --report test.json --plot slice.png
        cscli density nscf pred/ -o bands/
    """


def _write_report(path, data):
    import json
    from pathlib import Path

    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")


@command.command("train")
@click.argument("data", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    metavar="DIR",
    help="Run folder: model.pt (best on validation), checkpoint.pt, history.json, learning_curve.png.",
)
@click.option(
    "--valid",
    "valid_paths",
    multiple=True,
    metavar="PATH",
    help="Validation data (repeatable); default: --valid-fraction of DATA's structures.",
)
@click.option("--valid-fraction", type=float, default=0.2, show_default=True)
@click.option("--init", default=None, metavar="MODEL", help="Fine-tune this density model instead of starting fresh.")
@click.option("--steps", type=int, default=2000, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Initial learning rate (Adam).")
@click.option(
    "--final-lr",
    type=float,
    default=1e-4,
    show_default=True,
    help="Learning rate at the last step (exponential decay).",
)
@click.option("--probes", type=int, default=1000, show_default=True, help="Probe points per structure and step.")
@click.option("--structures-per-step", type=int, default=2, show_default=True)
@click.option(
    "--near-atom-fraction",
    type=float,
    default=0.5,
    show_default=True,
    help="Share of probe points drawn near atoms (the rest uniformly over the grid).",
)
@click.option("--near-atom-radius", type=float, default=1.5, show_default=True, help="Å.")
@click.option("--eval-every", type=int, default=100, show_default=True)
@click.option(
    "--eval-points", type=int, default=20000, show_default=True, help="Validation points per structure (at most)."
)
@click.option("--cutoff", type=float, default=None, help="Atom–atom cutoff (Å) of a new model (default 4).")
@click.option("--probe-cutoff", type=float, default=None, help="Probe–atom cutoff (Å) of a new model (default 4).")
@click.option("--layers", type=int, default=None, help="Interaction layers of a new model (default 2).")
@click.option(
    "--seed", type=int, default=None, help="Seed (split, sampling, initial weights); drawn and recorded if absent."
)
@click.option("--no-resume", is_flag=True, help="Start over even if DIR holds a checkpoint.")
@device_option
@plot_option("the learning curve (default DIR/learning_curve.png)")
@report_option
@quiet_option
@config_option
def train_cmd(
    data,
    out_dir,
    valid_paths,
    valid_fraction,
    init,
    steps,
    lr,
    final_lr,
    probes,
    structures_per_step,
    near_atom_fraction,
    near_atom_radius,
    eval_every,
    eval_points,
    cutoff,
    probe_cutoff,
    layers,
    seed,
    no_resume,
    device,
    plot_path,
    report_path,
    quiet,
):
    """Train (or --init fine-tune) a density model on CHGCAR files, EAC-Net h5 files or folders."""
    from cscli.core.log import configure
    from cscli.core.models import resolve_device
    from cscli.props.density import io
    from cscli.props.density import train as lib

    log = configure("density train", quiet)
    seed = resolve_seed(seed)
    settings = lib.TrainSettings(
        steps=steps,
        lr=lr,
        final_lr=final_lr,
        probes=probes,
        structures_per_step=structures_per_step,
        near_atom_fraction=near_atom_fraction,
        near_atom_radius=near_atom_radius,
        valid_fraction=valid_fraction,
        eval_every=eval_every,
        eval_points=eval_points,
        seed=seed,
        device=resolve_device(device),
        resume=not no_resume,
    )
    lib.check_settings(settings)
    densities = io.read_all(data)
    valid = io.read_all(valid_paths) if valid_paths else None
    config = {
        k: v for k, v in (("cutoff", cutoff), ("probe_cutoff", probe_cutoff), ("layers", layers)) if v is not None
    }
    log.info("%d structures, seed %d", len(densities), seed)
    summary = lib.train(densities, out_dir, settings, config=config, init=init, valid=valid)
    if plot_path:
        import shutil
        from pathlib import Path

        shutil.copyfile(Path(out_dir) / "learning_curve.png", plot_path)
    if summary.get("best_valid_nmae") is not None:
        log.info(
            "best %s NMAE %.3f %% → %s", summary["monitored_on"], 100 * summary["best_valid_nmae"], summary["model"]
        )
    if report_path:
        _write_report(report_path, summary)


@command.command("predict")
@click.argument("frames", nargs=-1, required=True)
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR", help="Folder for <id>.CHGCAR files.")
@click.option("-m", "--model", default=None, metavar="MODEL", help="Density model (default: the shipped Li–P–S model).")
@click.option("--grid", nargs=3, type=int, default=None, metavar="NX NY NZ", help="Grid size (default: VASP's).")
@click.option("--spacing", type=float, default=None, metavar="Å", help="Grid with at most this spacing (Å).")
@click.option(
    "--encut",
    type=float,
    default=520.0,
    show_default=True,
    help="ENCUT (eV) whose VASP fine grid is used when neither --grid nor --spacing is given.",
)
@click.option(
    "--prec",
    type=click.Choice(["Normal", "Accurate"]),
    default="Normal",
    show_default=True,
    help="VASP PREC for the default grid.",
)
@click.option("--normalize", is_flag=True, help="Scale each density to integrate to the valence electron count.")
@click.option(
    "--batch",
    type=click.IntRange(1),
    default=None,
    help="Probe–atom pairs per network call (default: 8192 on a CPU, all pairs of an atom on a GPU).",
)
@click.option(
    "--frames-out",
    default=None,
    metavar="FILE",
    help="Also write the frames with info['density_file'], ['density_electrons'] here (extxyz).",
)
@device_option
@report_option
@quiet_option
@config_option
def predict_cmd(
    frames, out_dir, model, grid, spacing, encut, prec, normalize, batch, frames_out, device, report_path, quiet
):
    """Predict a CHGCAR per frame of FRAMES (extxyz, JSON lines, any ASE-readable file)."""
    from cscli.core.errors import UsageError
    from cscli.core.frames import read_frames, write_frames
    from cscli.core.log import configure
    from cscli.props.density import predict as lib

    configure("density predict", quiet)
    if grid and spacing:
        raise UsageError("--grid and --spacing exclude each other")
    model_path = lib.resolve_model_path(model)
    from cscli.props.density.model import load_payload

    load_payload(model_path)  # a wrong file fails before anything is read or written
    atoms_list = [a for f in frames for a in read_frames(f)]
    done = list(
        lib.predict_frames(
            atoms_list,
            model_path,
            out_dir,
            device=device,
            grid=grid or None,
            spacing=spacing,
            encut=encut,
            prec=prec,
            normalize=normalize,
            batch=batch,
        )
    )
    if frames_out:
        write_frames(done, frames_out)
    if report_path:
        _write_report(
            report_path,
            {
                "model": model_path,
                "frames": [
                    {
                        k: a.info.get(k)
                        for k in (
                            "id",
                            "density_file",
                            "density_electrons",
                            "density_valence_electrons",
                            "density_grid",
                            "density_seconds",
                        )
                    }
                    for a in done
                ],
            },
        )


@command.command("test")
@click.argument("data", nargs=-1, required=True)
@click.option("-m", "--model", default=None, metavar="MODEL", help="Density model (default: the shipped one).")
@click.option("--eval-points", type=int, default=None, help="Random points per structure (default: every grid point).")
@device_option
@plot_option("a DFT | predicted | difference slice of the first structure")
@report_option
@quiet_option
@config_option
def test_cmd(data, model, eval_points, device, plot_path, report_path, quiet):
    """NMAE = Σ|Δρ| / Σ|ρ| of a model on DFT densities, per structure and overall."""

    from cscli.core.frames import data_stdout
    from cscli.core.log import configure
    from cscli.props.density import io
    from cscli.props.density import predict as lib

    log = configure("density test", quiet)
    model_path = lib.resolve_model_path(model)
    from cscli.props.density.model import load_payload

    load_payload(model_path)
    densities = io.read_all(data)
    report = lib.test_model(model_path, densities, device=device, eval_points=eval_points, plot_path=plot_path)
    out = data_stdout()
    for row in report["structures"]:
        out.write(f"{row['name']}\t{100 * row['nmae']:.3f} %\n")
    out.write(f"overall\t{100 * report['nmae']:.3f} %\n")
    log.info("NMAE %.3f %% over %d structures", 100 * report["nmae"], report["n_structures"])
    if report_path:
        _write_report(report_path, report)


@command.command("nscf")
@click.argument("chgcars", nargs=-1, required=True)
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR", help="One VASP input folder per CHGCAR here.")
@click.option("--line-density", type=int, default=20, show_default=True, help="k-points per Å⁻¹ along the path.")
@click.option("--incar", "incar", multiple=True, metavar="KEY=VALUE", help="Extra INCAR setting (repeatable).")
@report_option
@quiet_option
@config_option
def nscf_cmd(chgcars, out_dir, line_density, incar, report_path, quiet):
    """VASP band-structure inputs (ICHARG = 11, line-mode k-path) from predicted CHGCARs or folders of them."""
    import glob
    import os

    from cscli.cli.options import KeyValue
    from cscli.core.errors import DataError
    from cscli.core.log import configure
    from cscli.props.density import predict as lib

    configure("density nscf", quiet)
    paths = []
    for p in chgcars:
        if os.path.isdir(p):
            paths += sorted(f for f in glob.glob(os.path.join(p, "*")) if "CHGCAR" in os.path.basename(f).upper())
        elif os.path.isfile(p):
            paths.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not paths:
        raise DataError("no CHGCAR found in the arguments")
    kv = dict(KeyValue().convert(x, None, None) for x in incar)
    rows = lib.write_nscf_inputs(paths, out_dir, line_density, kv)
    if report_path:
        _write_report(report_path, {"runs": rows})
