"""S.U.N. flags of a batch: stable (E_hull below a bound), unique within the batch, novel w.r.t.
reference structures. Matching is pymatgen StructureMatcher's, through :mod:`cscli.screen.matching`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cscli.core.errors import CscliError, DataError, FrameError
from cscli.core.frames import info_number
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

    from cscli.screen.matching import MatchOptions


@dataclass
class SunResult:
    is_stable: list[bool]
    is_unique: list[bool]
    is_novel: list[bool]
    duplicate_of: list[int | None]
    matches_reference: list[int | None]
    summary: dict = field(default_factory=dict)

    @property
    def is_sun(self) -> list[bool]:
        return [s and u and n for s, u, n in zip(self.is_stable, self.is_unique, self.is_novel)]


def e_hull_of(atoms: Atoms) -> float:
    return info_number(atoms, "e_hull", "run `cscli hull` first, or give --refs with energies", error=FrameError)


def sun_flags(
    frames: list[Atoms], refs: list[Atoms], options: MatchOptions, e_hull_max: float = 0.1, jobs: int = 1
) -> SunResult:
    """Flags of every frame (all frames need ``info['e_hull']``)."""
    from cscli.screen.matching import atoms_to_structure, find_duplicates, find_in_references, prepare_many

    t0 = time.perf_counter()
    e_hull = [e_hull_of(a) for a in frames]
    structures = [atoms_to_structure(a) for a in frames]
    ref_structures = [atoms_to_structure(a) for a in refs]
    prepared = prepare_many(structures + ref_structures, options, jobs)
    cand, ref_prep = prepared[: len(frames)], prepared[len(frames) :]
    t1 = time.perf_counter()
    dup, ustats = find_duplicates(cand, options, jobs)
    t2 = time.perf_counter()
    hits, nstats = find_in_references(cand, ref_prep, options, jobs)
    t3 = time.perf_counter()
    result = SunResult(
        is_stable=[e < e_hull_max for e in e_hull],
        is_unique=[d is None for d in dup],
        is_novel=[h is None for h in hits],
        duplicate_of=dup,
        matches_reference=hits,
    )
    n = len(frames)
    counts = {
        "stable": sum(result.is_stable),
        "unique": sum(result.is_unique),
        "novel": sum(result.is_novel),
        "stable_unique": sum(s and u for s, u in zip(result.is_stable, result.is_unique)),
        "unique_novel": sum(u and v for u, v in zip(result.is_unique, result.is_novel)),
        "sun": sum(result.is_sun),
    }
    result.summary = {
        "frames": n,
        "references": len(refs),
        "e_hull_max": e_hull_max,
        **counts,
        "ratios": {k: (v / n if n else 0.0) for k, v in counts.items()},
        "matcher": options.as_dict(),
        "pairs": {
            "unique": {
                "formula_groups": ustats.pairs_in_formula_groups,
                "buckets": ustats.pairs_in_buckets,
                "fitted": ustats.pairs_fitted,
            },
            "novel": {
                "formula_groups": nstats.pairs_in_formula_groups,
                "buckets": nstats.pairs_in_buckets,
                "fitted": nstats.pairs_fitted,
            },
        },
        "seconds": {"reduce": round(t1 - t0, 3), "unique": round(t2 - t1, 3), "novel": round(t3 - t2, 3)},
    }
    return result


@dataclass
class SunBatch:
    """The outcome of :func:`sun_filter`: the assessable frames, flagged in ``info``, in input
    order; the frames that could not be assessed with their one-line reason; the summary counts."""

    frames: list
    failed: list[tuple]  # (atoms, message)
    summary: dict


def sun_filter(
    frames: list[Atoms],
    refs: list[Atoms] | None,
    options: MatchOptions,
    e_hull_max: float = 0.1,
    jobs: int = 1,
    allow_mixed_models: bool = False,
    keep_failed: bool = False,
) -> SunBatch:
    """Flag a whole batch: fill in e_hull from energy-carrying ``refs`` where a frame lacks it, set
    aside frames that cannot be assessed (no or non-finite e_hull, not periodic), then write
    ``is_stable``/``is_unique``/``is_novel``/``is_sun``/``duplicate_of``/``matches_reference``
    into each remaining frame's ``info``. Without ``refs`` novelty is checked against the shipped
    Li-P-S reference phases. Unassessable frames are a DataError unless ``keep_failed``."""
    from cscli.screen.hull import Hull
    from cscli.screen.matching import atoms_to_structure

    log = get_logger(__name__)
    if refs:
        ref_frames = list(refs)
    else:
        from cscli.core.datafiles import reference_phases_path
        from cscli.core.frames import read_frames

        ref_frames = read_frames(str(reference_phases_path()))
        log.info(f"no --refs: novelty against the {len(ref_frames)} shipped Li-P-S reference phases")
    # stability needs e_hull; compute it from the references when they carry energies
    lacking = [a for a in frames if a.info.get("e_hull") is None]
    hull = None
    if lacking and refs and all(a.info.get("energy") is not None for a in ref_frames):
        hull = Hull.from_frames(ref_frames, allow_mixed=allow_mixed_models)
        log.info(f"{len(lacking)} frames lack e_hull: computing it against the {hull.n_refs} references")
    good, bad = [], []
    for atoms in frames:
        try:
            if atoms.info.get("e_hull") is None and hull is not None:
                message = hull.check_model(atoms, allow_mixed_models)
                if message:
                    log.warning(message)
                atoms.info.update(hull.evaluate(atoms))
            e_hull_of(atoms)  # missing (no references to compute it), NaN or not a number: a frame failure
            atoms_to_structure(atoms)
            good.append(atoms)
        except CscliError as exc:
            bad.append((atoms, str(exc)))
    for _atoms, message in bad[:5]:
        log.warning(message)
    if bad and not keep_failed:
        raise DataError(f"{len(bad)} of {len(frames)} frames cannot be assessed (pass --failed FILE to set them aside)")
    for atoms in ref_frames:
        atoms_to_structure(atoms)  # a non-periodic reference is an input error, not a frame failure

    result = sun_flags(good, ref_frames, options, e_hull_max=e_hull_max, jobs=jobs)
    for i, atoms in enumerate(good):
        info = atoms.info
        info["is_stable"] = bool(result.is_stable[i])
        info["is_unique"] = bool(result.is_unique[i])
        info["is_novel"] = bool(result.is_novel[i])
        info["is_sun"] = bool(result.is_sun[i])
        for key in ("duplicate_of", "matches_reference"):
            info.pop(key, None)
        if result.duplicate_of[i] is not None:
            info["duplicate_of"] = str(good[result.duplicate_of[i]].info["id"])
        if result.matches_reference[i] is not None:
            info["matches_reference"] = str(ref_frames[result.matches_reference[i]].info["id"])
    summary = dict(result.summary)
    summary["failed"] = len(bad)
    return SunBatch(good, bad, summary)


def format_summary(summary: dict) -> str:
    n = summary["frames"]
    parts = [
        f"{summary[k]} {k.replace('_', '+')} ({summary['ratios'][k]:.1%})" for k in ("stable", "unique", "novel", "sun")
    ]
    return f"{n} frames: " + ", ".join(parts).replace("sun (", "S.U.N. (")


__all__ = ["SunBatch", "SunResult", "e_hull_of", "format_summary", "sun_filter", "sun_flags"]
