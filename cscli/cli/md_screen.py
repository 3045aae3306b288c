"""cscli md-screen: Li-ion conductivity screening by molecular dynamics."""

import click

from cscli.cli.options import model_options, pass_stream, seed_option, work_dir_option


@click.command("md-screen")
@pass_stream("md-screen", no_input_with="from_trajectory")
@model_options(default=None)
@work_dir_option(
    "Checkpoints of each frame's MD (a killed run resumes from them); default: OUTPUT.md-work "
    "next to an output file, none on stdout."
)
@seed_option
@click.option(
    "--min-fraction",
    default="Li=0.15,S=0.45",
    show_default=True,
    metavar="El=X,...",
    help="Filter: atom fraction of each element must exceed X ('none': no fraction filter).",
)
@click.option(
    "--require",
    multiple=True,
    default=("P",),
    show_default=True,
    metavar="EL",
    help="Filter: element that must be present (repeatable; --require '' for none).",
)
@click.option(
    "--e-hull-max",
    type=float,
    default=0.03,
    show_default=True,
    help="Filter: E_hull ≤ this (eV/atom; info['e_hull'] needed); 'inf' turns it off.",
)
@click.option(
    "--max-volume-per-li",
    type=float,
    default=200.0,
    show_default=True,
    help="Filter: volume per mobile ion < this (Å³); 'inf' turns it off.",
)
@click.option("--only-pass", is_flag=True, help="Leave filtered frames out (default: write them with md_skipped).")
@click.option("--mobile", default="Li", show_default=True, help="The conducting species.")
@click.option(
    "--min-length", type=float, default=10.0, show_default=True, help="Supercell: every cell height ≥ this (Å)."
)
@click.option("--temperature", type=float, default=700.0, show_default=True, help="MD temperature (K).")
@click.option("--pressure-bar", type=float, default=1.0, show_default=True, help="NPT pressure (bar).")
@click.option("--npt-ps", type=float, default=10.0, show_default=True, help="NPT equilibration (ps; 0 skips it).")
@click.option("--nvt-ps", type=float, default=60.0, show_default=True, help="NVT production (ps).")
@click.option(
    "--timestep-fs",
    type=float,
    default=2.0,
    show_default=True,
    help="MD time step (fs); with --from-trajectory: time between its frames.",
)
@click.option(
    "--sample-fs", type=float, default=20.0, show_default=True, help="Sampling interval of the analysis (fs)."
)
@click.option("--checkpoint-ps", type=float, default=2.0, show_default=True, help="Checkpoint interval (ps).")
@click.option(
    "--analysis-ps",
    type=float,
    default=50.0,
    show_default=True,
    help="Analyse the last this many ps of NVT (all of it when shorter).",
)
@click.option("--fit-start-ps", type=float, default=1.0, show_default=True, help="First lag of the MSD fit (ps).")
@click.option(
    "--fit-end-ps",
    default="auto",
    show_default=True,
    metavar="PS|auto|max",
    help="Last lag of the MSD fit (ps); auto: a tenth of the analysed window; max: "
    "DiffusionAnalyzer's smoothed='max' rule (lags up to N_Li·frames/30).",
)
@click.option(
    "--blocks",
    "n_blocks",
    type=click.IntRange(2),
    default=5,
    show_default=True,
    help="Blocks for the standard error of D.",
)
@click.option(
    "--d-framework-max",
    type=float,
    default=1e-6,
    show_default=True,
    help="Kinetic filter: D of every other element below this (cm²/s).",
)
@click.option(
    "--sigma-min",
    type=float,
    default=400.0,
    show_default=True,
    help="md_is_conductor when σ ≥ this (mS/cm) and kinetically stable.",
)
@click.option("--trajectory-dir", default=None, metavar="DIR", help="Keep each MD trajectory as DIR/<id>.extxyz.")
@click.option("--plot-dir", default=None, metavar="DIR", help="Write MSD(t) per element with the fit to DIR/<id>.png.")
@click.option(
    "--from-trajectory",
    default=None,
    metavar="FILE",
    help="Analyse this trajectory (extxyz, .traj, XDATCAR, vasprun.xml; --timestep-fs = time between "
    "its frames) instead of running MD; writes its last frame with the results.",
)
def command(
    frames,
    settings,
    model,
    device,
    work_dir,
    seed,
    min_fraction,
    require,
    e_hull_max,
    max_volume_per_li,
    only_pass,
    mobile,
    min_length,
    temperature,
    pressure_bar,
    npt_ps,
    nvt_ps,
    timestep_fs,
    sample_fs,
    checkpoint_ps,
    analysis_ps,
    fit_start_ps,
    fit_end_ps,
    n_blocks,
    d_framework_max,
    sigma_min,
    trajectory_dir,
    plot_dir,
    from_trajectory,
):
    """Filter candidates, run NPT then NVT MD, and screen σ_Li from the mean-square displacement.

    The seed paper's protocol (defaults): x_Li > 0.15, x_S > 0.45, P present, E_hull ≤ 0.03 eV/atom,
    V/Li < 200 Å³; supercell ≥ 10 Å; 10 ps NPT at 1 bar then 60 ps NVT at 700 K, 2 fs steps; D per
    element from the MSD of the last 50 ps; σ_Li by Nernst–Einstein; kinetically stable when
    D_P, D_S < 1e-6 cm²/s; md_is_conductor when also σ_Li ≥ 400 mS/cm. Writes the md_* info keys
    (docs/md-screen.md); filtered frames get md_skipped.

    \b
    Examples:
      cscli md-screen sun.extxyz -o md.extxyz --model 7net-0 --plot-dir msd/
      cscli md-screen --from-trajectory XDATCAR --timestep-fs 20 --temperature 600 -o lgps.extxyz
    """
    from cscli.core.errors import UsageError
    from cscli.core.frames import FrameWriter
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.props.md_screen import Filters, MDSettings, ScreenSettings, parse_fit_end, parse_fractions, screen_frame

    screen = ScreenSettings(
        md=MDSettings(
            temperature=temperature,
            pressure_bar=pressure_bar,
            npt_ps=npt_ps,
            nvt_ps=nvt_ps,
            timestep_fs=timestep_fs,
            sample_fs=sample_fs,
            checkpoint_ps=checkpoint_ps,
        ),
        filters=Filters(
            min_fraction=parse_fractions(min_fraction),
            require=tuple(r for r in require if r),
            e_hull_max=e_hull_max,
            max_volume_per_mobile=max_volume_per_li,
            mobile=mobile,
        ),
        min_length=min_length,
        analysis_ps=analysis_ps,
        fit_start_ps=fit_start_ps,
        fit_end_ps=parse_fit_end(fit_end_ps),
        n_blocks=n_blocks,
        d_framework_max=d_framework_max,
        sigma_min=sigma_min,
    )
    if from_trajectory:
        from cscli.props.md_screen import analyze_trajectory

        if not timestep_fs > 0:
            raise UsageError(f"--timestep-fs must be positive (got {timestep_fs})")
        out = analyze_trajectory(from_trajectory, timestep_fs, temperature, screen, plot_dir)
        add_history(out, "md-screen(from-trajectory)")
        writer = FrameWriter(settings.output, settings.output_format, append=False)
        try:
            writer.write(out)
        finally:
            writer.close()
        return
    screen.check()
    from pathlib import Path

    from cscli.cli.options import resolve_seed
    from cscli.core.models import load_calculator

    run_seed = resolve_seed(seed)
    if work_dir is None and settings.output != "-":
        work_dir = f"{settings.output}.md-work"
    from cscli.core.models import resolve_model

    resolve_model(model)  # an unknown model name fails now, before any frame is read
    calc = None

    def lazy_calc():
        # loaded on the first frame that passes the filters: a batch that is all filtered (or
        # fails on missing e_hull) does not wait for a model
        nonlocal calc
        if calc is None:
            calc = load_calculator(model, device)
        return calc

    def process(atoms):
        result = screen_frame(
            atoms,
            lazy_calc,
            screen,
            run_seed,
            work_dir=work_dir,
            trajectory_dir=trajectory_dir,
            plot_dir=plot_dir,
            only_pass=only_pass,
        )
        if isinstance(result, list):
            return result
        if "md_skipped" not in result.info:
            add_history(result, f"md-screen({result.info['model']})")
        return result

    finish(run_stream(frames, process, settings), settings)
    if work_dir and Path(work_dir).is_dir() and not any(Path(work_dir).rglob("*.npz")):
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
