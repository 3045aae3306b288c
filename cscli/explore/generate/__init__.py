"""Offline candidate generators: random symmetric crystals (AIRSS-style) and motif-seeded crystals.

Both backends draw, for frame ``k``, everything from ``numpy.random.default_rng([seed, k])``, so a
frame is reproducible on its own: the same seed gives the same frames, a resumed run regenerates
only the missing ids, and ``--shard i/n`` splits the work without changing any frame.

``random``
    A composition is drawn from those enumerated in the chemical system (reduced formulas with at
    most ``max_atoms`` atoms per cell, all elements present unless ``allow_subsystems``; with
    ``charge_balance`` only those balanced with one common oxidation state per element and the
    most electronegative element negative), then a formula-unit count ``Z`` and a space group
    compatible with it (pyxtal's Wyckoff-position compatibility check), a cell volume from
    per-element volumes (see :func:`element_volumes`) times a random factor, and pyxtal places
    the atoms with minimum pair distances ``distance_factor * (r_cov,i + r_cov,j)`` (Cordero
    covalent radii from ASE). Every frame is checked against those bounds after generation.

``motifs``
    Rigid anion units (a built-in PS4 tetrahedron and the lone S2- anion, or units read from a
    motif catalogue) and the counter-cation (Li) in charge-balanced ratios. pyxtal places the
    unit centres on general Wyckoff positions and the cations/lone anions anywhere; each unit is
    then given a random orientation and copied by the space-group operations, so the crystal keeps
    the space group. Frames are accepted only when all pairs respect the covalent bounds and atoms
    of different anion units are at least ``anion_distance`` apart (no accidental S-S bonds).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, UsageError
from cscli.explore.generate.common import (
    DEFAULT_ANION_DISTANCE,
    DEFAULT_DISTANCE_FACTOR,
    DEFAULT_MAX_ATOMS,
    DEFAULT_VOLUME_FACTOR,
    OfflineSettings,
    chemical_system_key,
    default_references,
    distance_bounds,
    distance_violations,
    element_volumes,
    formula,
    in_chemical_system,
    parse_chemical_system,
)
from cscli.explore.generate.motif_crystals import (
    PS4_BOND,
    RigidUnit,
    builtin_motifs,
    load_motifs,
    motif_compositions,
    motif_from_atoms,
    motif_structure,
)
from cscli.explore.generate.random_crystals import charge_balanced, enumerate_compositions, random_structure
from cscli.explore.generate.spacegroups import choose_spacegroup, general_multiplicity, parse_spacegroups

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

    from cscli.core.stream import StreamOptions, StreamSummary
    from cscli.explore.mattergen import MatterGenRun

BACKENDS = ("random", "motifs", "mattergen")


def offline_id(backend: str, iteration: int, k: int) -> str:
    prefix = {"random": "rnd", "motifs": "mtf"}[backend]
    return f"{prefix}-it{iteration}-{k}"


def generate_offline(
    backend: str,
    settings: OfflineSettings,
    num: int,
    seed: int,
    iteration: int = 0,
    skip=lambda fid: False,
    on_error=None,
) -> Iterator[Atoms]:
    """Yield ``num`` frames (ids ``rnd-it<iteration>-<k>`` / ``mtf-...``), skipping ids ``skip(id)`` is
    true for; frame ``k`` depends only on (seed, k) and the settings. A frame that cannot be made
    within ``settings.max_tries`` raises DataError, or is passed to ``on_error(id, exc)`` and left out."""
    import numpy as np

    if backend == "random":
        comps = enumerate_compositions(
            settings.elements, settings.max_atoms, settings.charge_balance, settings.allow_subsystems
        )
        make = lambda rng: random_structure(settings, rng, comps)  # noqa: E731
    elif backend == "motifs":
        motifs = settings.motifs or load_motifs(None)
        comps = motif_compositions(settings.elements, motifs, settings.max_atoms)
        make = lambda rng: motif_structure(settings, rng, motifs, comps)  # noqa: E731
    else:
        raise UsageError(f"unknown offline backend {backend!r}")
    for k in range(num):
        fid = offline_id(backend, iteration, k)
        if skip(fid):
            continue
        rng = np.random.default_rng([int(seed), k])
        try:
            atoms = make(rng)
        except DataError as exc:
            if on_error is None:
                raise
            on_error(fid, exc)
            continue
        atoms.info["id"] = fid
        atoms.info["generator"] = backend
        atoms.info["iteration"] = int(iteration)
        atoms.info["generate_seed"] = int(seed)
        atoms.info["chemical_system"] = chemical_system_key(settings.elements)
        atoms.info["source"] = f"cscli generate --backend {backend}"
        yield atoms


def write_offline(
    backend: str, settings: OfflineSettings, num: int, seed: int, iteration: int, stream: StreamOptions
) -> StreamSummary:
    """Generate into a resumable output: ids already in ``stream.output`` and ids of other shards are
    not generated at all; each frame is written as soon as it is made; a frame that cannot be made is
    reported and counted as failed. DataError when nothing could be generated."""
    from cscli.core.frames import remove_if_empty
    from cscli.core.stream import FrameSink, add_history, progress

    sink = FrameSink(stream)
    summary = sink.summary
    bar = progress(desc=f"{stream.command} ({backend})", total=num)

    def skip(fid: str) -> bool:
        if stream.shard is not None and not stream.shard.keeps(fid):
            summary.skipped_shard += 1
        elif fid in sink.done:
            summary.skipped_done += 1
        else:
            return False
        bar.update(1)
        return True

    try:
        with sink:
            frames = generate_offline(
                backend, settings, num, seed, iteration, skip=skip, on_error=lambda fid, exc: sink.fail(fid, str(exc))
            )
            for atoms in frames:
                add_history(atoms, f"generate({backend},seed={seed})")
                sink.write(atoms)
                bar.update(1)
    finally:
        bar.close()
        remove_if_empty(stream.output)
    if summary.failed and not summary.written:
        raise DataError(
            f"no structure could be generated ({summary.failed} failed); loosen --distance-factor or raise --max-atoms"
        )
    return summary


def write_mattergen(run: MatterGenRun, stream: StreamOptions) -> StreamSummary:
    """Run MatterGen batch by batch into a resumable output (batches whose frames are in the
    output already are skipped); ``run.stats`` counts batches and samples outside the system."""
    from cscli.core.frames import remove_if_empty
    from cscli.core.stream import FrameSink, add_history

    sink = FrameSink(stream)
    try:
        with sink:
            for atoms in run.run(done_ids=sink.done, resume=stream.resume):
                add_history(atoms, f"generate(mattergen,{run.model})")
                if sink.write(atoms):
                    run.stats["written"] += 1
    finally:
        remove_if_empty(stream.output)
    return sink.summary


__all__ = [
    "BACKENDS",
    "DEFAULT_ANION_DISTANCE",
    "DEFAULT_DISTANCE_FACTOR",
    "DEFAULT_MAX_ATOMS",
    "DEFAULT_VOLUME_FACTOR",
    "PS4_BOND",
    "OfflineSettings",
    "RigidUnit",
    "builtin_motifs",
    "charge_balanced",
    "chemical_system_key",
    "choose_spacegroup",
    "default_references",
    "distance_bounds",
    "distance_violations",
    "element_volumes",
    "enumerate_compositions",
    "formula",
    "general_multiplicity",
    "generate_offline",
    "in_chemical_system",
    "load_motifs",
    "motif_compositions",
    "motif_from_atoms",
    "motif_structure",
    "offline_id",
    "parse_chemical_system",
    "parse_spacegroups",
    "random_structure",
    "write_mattergen",
    "write_offline",
]
