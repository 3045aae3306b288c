"""S.U.N. flags of a batch: stable (E_hull below a bound), unique within the batch, novel w.r.t.
reference structures. Matching is pymatgen StructureMatcher's, through :mod:`cscli.screen.matching`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cscli.core.errors import FrameError
from cscli.core.frames import info_number

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


def sun_flags(frames: list[Atoms], refs: list[Atoms], options: MatchOptions, e_hull_max: float = 0.1,
              jobs: int = 1) -> SunResult:
    """Flags of every frame (all frames need ``info['e_hull']``)."""
    from cscli.screen.matching import atoms_to_structure, find_duplicates, find_in_references, prepare_many

    t0 = time.perf_counter()
    e_hull = [e_hull_of(a) for a in frames]
    structures = [atoms_to_structure(a) for a in frames]
    ref_structures = [atoms_to_structure(a) for a in refs]
    prepared = prepare_many(structures + ref_structures, options, jobs)
    cand, ref_prep = prepared[: len(frames)], prepared[len(frames):]
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
            "unique": {"formula_groups": ustats.pairs_in_formula_groups, "buckets": ustats.pairs_in_buckets,
                       "fitted": ustats.pairs_fitted},
            "novel": {"formula_groups": nstats.pairs_in_formula_groups, "buckets": nstats.pairs_in_buckets,
                      "fitted": nstats.pairs_fitted},
        },
        "seconds": {"reduce": round(t1 - t0, 3), "unique": round(t2 - t1, 3), "novel": round(t3 - t2, 3)},
    }
    return result


def format_summary(summary: dict) -> str:
    n = summary["frames"]
    parts = [f"{summary[k]} {k.replace('_', '+')} ({summary['ratios'][k]:.1%})"
             for k in ("stable", "unique", "novel", "sun")]
    return f"{n} frames: " + ", ".join(parts).replace("sun (", "S.U.N. (")


__all__ = ["SunResult", "e_hull_of", "format_summary", "sun_flags"]
