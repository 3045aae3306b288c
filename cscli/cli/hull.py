"""``cscli hull``: energy above the convex hull of reference phases."""

from __future__ import annotations

import click

from cscli.cli.options import pass_stream, plot_option, refs_format_option, refs_option


@click.command("hull")
@pass_stream("hull")
@refs_option(
    required=True,
    help_text="Reference frames with energies (repeatable): relaxed reference phases, earlier iterations.",
)
@refs_format_option
@click.option(
    "--allow-mixed-models",
    is_flag=True,
    help="Go on (with a warning) when frames and references were labelled by different models.",
)
@click.option(
    "--at",
    "at",
    default=None,
    metavar="T,p",
    help="Gibbs hull at temperature T (K) and pressure p (GPa) from the qha_* keys of `cscli qha`.",
)
@plot_option("the phase diagram (PNG: stable phases, metastable ones with E_hull < 0.1 eV/atom coloured)")
def command(frames, settings, refs, refs_format, allow_mixed_models, at, plot_path):
    """E_hull of each frame against reference phases (pymatgen PhaseDiagram).

    Energies are info['energy'] (total, eV), from one model or DFT setup for frames and
    references alike. Writes info keys e_hull (eV/atom; negative below the hull), e_form_per_atom,
    energy_per_atom, decomposition (reduced formula -> fraction) and hull_condition. Streams:
    references are read once, frames one at a time.

    With --at T,p every frame and reference uses its quasi-harmonic G(T, p) per atom
    (qha_gibbs_per_atom, interpolated on its (T, p) grid) instead of the energy; a frame or
    reference without qha keys, or with T,p outside its grid, is an error.

    \b
      cscli relax cscli/data/lips_reference_phases.extxyz -o refs.extxyz
      cscli hull relaxed.extxyz --refs refs.extxyz --refs iter1.extxyz -o hull.extxyz
      cscli hull qha.extxyz --refs refs_qha.extxyz --at 300,2 --plot pd_300K_2GPa.png -o hull.extxyz
    """
    from cscli.core.errors import UsageError
    from cscli.core.frames import read_refs
    from cscli.core.log import get_logger
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.screen.hull import Hull

    condition = None
    if at is not None:
        try:
            condition = tuple(float(x) for x in str(at).split(","))
        except ValueError:
            condition = ()
        if len(condition) != 2 or condition[0] < 0:
            raise UsageError(f"--at {at!r}: expected T,p (K, GPa), e.g. --at 300,0")
    hull = Hull.from_frames(read_refs(refs, refs_format), allow_mixed=allow_mixed_models, condition=condition)
    log = get_logger()
    log.info(
        f"{hull.n_refs} references, {'-'.join(sorted(hull.elements))}, {len(hull.diagram.stable_entries)} on the hull"
    )
    warned: set[str] = set()

    def process(atoms):
        message = hull.check_model(atoms, allow_mixed_models)
        if message and str(atoms.info.get("model")) not in warned:
            warned.add(str(atoms.info.get("model")))
            log.warning(message)
        atoms.info.update(hull.evaluate(atoms))
        add_history(atoms, "hull" if condition is None else f"hull(at={condition[0]:g},{condition[1]:g})")
        if plot_path:
            evaluated.append(atoms)
        return atoms

    evaluated: list = []
    summary = run_stream(frames, process, settings)
    if plot_path:
        hull.plot(evaluated, plot_path)
    finish(summary, settings)
