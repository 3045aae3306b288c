"""``cscli hull``: energy above the convex hull of reference phases."""

from __future__ import annotations

import click

from cscli.cli.options import pass_stream, refs_format_option, refs_option


@click.command("hull")
@pass_stream("hull")
@refs_option(required=True, help_text="Reference frames with energies (repeatable): relaxed reference phases, "
                                     "earlier iterations.")
@refs_format_option
@click.option("--allow-mixed-models", is_flag=True,
              help="Go on (with a warning) when frames and references were labelled by different models.")
def command(frames, settings, refs, refs_format, allow_mixed_models):
    """E_hull of each frame against reference phases (pymatgen PhaseDiagram).

    Energies are info['energy'] (total, eV), from one model or DFT setup for frames and
    references alike. Writes info keys e_hull (eV/atom; negative below the hull), e_form_per_atom,
    energy_per_atom and decomposition (reduced formula -> fraction). Streams: references are read
    once, frames one at a time.

    \b
      cscli relax cscli/data/lips_reference_phases.extxyz -o refs.extxyz
      cscli hull relaxed.extxyz --refs refs.extxyz --refs iter1.extxyz -o hull.extxyz
    """
    from cscli.core.log import get_logger
    from cscli.core.stream import add_history, finish, run_stream
    from cscli.screen.hull import Hull, read_refs

    log = get_logger()
    hull = Hull.from_frames(read_refs(refs, refs_format), allow_mixed=allow_mixed_models)
    log.info(f"{hull.n_refs} references, {'-'.join(sorted(hull.elements))}, "
             f"{len(hull.diagram.stable_entries)} on the hull")
    warned: set[str] = set()

    def process(atoms):
        message = hull.check_model(atoms, allow_mixed_models)
        if message and str(atoms.info.get("model")) not in warned:
            warned.add(str(atoms.info.get("model")))
            log.warning(message)
        atoms.info.update(hull.evaluate(atoms))
        add_history(atoms, "hull")
        return atoms

    summary = run_stream(frames, process, settings)
    finish(summary, settings)
