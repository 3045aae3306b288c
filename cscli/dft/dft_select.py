"""Pick frames for DFT by energy-above-hull bins (``cscli dft-select``).

The seed paper's recipe: after the MLFF relaxation and the S.U.N. filter, at most 100 frames
below the hull (E_hull < 0), 200 in [0, 0.03) and 300 in [0.03, 0.10) eV/atom go to DFT. Inside
a bin that holds more frames than its quota the choice is either a seeded uniform random sample
or a farthest-point sample (FPS) in a structural fingerprint space, which spreads the DFT budget
over distinct structures instead of near-copies.

Fingerprints
    ``ov``        Oganov–Valle fingerprint (J. Chem. Phys. 130, 104504 (2009), the similarity
                  measure of USPEX): per element pair a Gaussian-smeared radial distribution
                  ``F_AB(R) = sum_ij delta(R - R_ij) / (4 pi R^2 N_A N_B / V dR) - 1``, the pair
                  blocks weighted by ``N_A N_B / sum N_A N_B`` and compared by cosine distance.
                  Fast (milliseconds per frame).
    ``crystalnn`` matminer's ``SiteStatsFingerprint`` of CrystalNN local-order parameters
                  (Zimmermann & Jain), Euclidean distance. Slower (~30 ms per site).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cscli.core.errors import UsageError
from cscli.core.frames import info_number

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from ase import Atoms


@dataclass(frozen=True)
class Bin:
    lo: float  # inclusive (may be -inf)
    hi: float  # exclusive
    quota: int

    def contains(self, e_hull: float) -> bool:
        return self.lo <= e_hull < self.hi

    @property
    def label(self) -> str:
        lo = "-inf" if math.isinf(self.lo) else f"{self.lo:g}"
        return f"[{lo},{self.hi:g})"


#: The seed paper's quotas (E_hull in eV/atom).
DEFAULT_BINS: tuple[Bin, ...] = (Bin(-math.inf, 0.0, 100), Bin(0.0, 0.03, 200), Bin(0.03, 0.10, 300))
DEFAULT_BINS_TEXT = "-inf:0:100,0:0.03:200,0.03:0.1:300"
METHODS = ("random", "fps")
FINGERPRINTS = ("ov", "crystalnn")


def parse_bins(text: str) -> tuple[Bin, ...]:
    """``"lo:hi:quota,..."`` (eV/atom, ``-inf`` allowed for lo) → sorted, non-overlapping bins."""
    bins = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split(":")
        if len(pieces) != 3:
            raise UsageError(f"--bins: {part!r} is not lo:hi:quota (e.g. 0:0.03:200)")
        try:
            lo, hi = float(pieces[0]), float(pieces[1])
            quota = int(pieces[2])
        except ValueError:
            raise UsageError(f"--bins: {part!r}: lo and hi must be numbers, quota an integer") from None
        if not lo < hi or math.isnan(lo) or math.isnan(hi):
            raise UsageError(f"--bins: {part!r}: need lo < hi")
        if quota < 0:
            raise UsageError(f"--bins: {part!r}: quota must be >= 0")
        bins.append(Bin(lo, hi, quota))
    if not bins:
        raise UsageError("--bins: no bins given")
    bins.sort(key=lambda b: b.lo)
    for a, b in zip(bins, bins[1:]):
        if b.lo < a.hi:
            raise UsageError(f"--bins: bins {a.label} and {b.label} overlap")
    return tuple(bins)


def e_hull_of(atoms: Atoms) -> float:
    return info_number(atoms, "e_hull", "run `cscli hull` first")


# ----------------------------------------------------------------------------- fingerprints


def ov_fingerprint(
    atoms: Atoms, elements: Sequence[str], r_max: float = 6.0, dr: float = 0.05, sigma: float = 0.05
) -> np.ndarray:
    """Oganov–Valle fingerprint of a periodic frame, the pair blocks of ``elements`` concatenated.

    Each block is ``F_AB(R) - ...`` sampled on ``R = dr/2, 3dr/2, ... < r_max`` with Gaussian
    smearing ``sigma`` (Å), multiplied by the pair weight ``N_A N_B / sum N_A N_B`` so that the
    cosine distance between two frames is the USPEX distance. Absent pairs give zero blocks.
    """
    import numpy as np
    from ase.neighborlist import neighbor_list

    symbols = np.array(atoms.get_chemical_symbols())
    counts = {el: int((symbols == el).sum()) for el in elements}
    pairs = [(a, b) for i, a in enumerate(elements) for b in elements[i:]]
    grid = np.arange(dr / 2, r_max, dr)
    volume = abs(atoms.cell.volume)
    i_idx, j_idx, dist = neighbor_list("ijd", atoms, r_max + 3 * sigma)
    si, sj = symbols[i_idx], symbols[j_idx]
    weights_total = sum(counts[a] * counts[b] for a, b in pairs) or 1
    reach = int(math.ceil(5 * sigma / dr)) + 1
    blocks = []
    for a, b in pairs:
        na, nb = counts[a], counts[b]
        if na == 0 or nb == 0:
            blocks.append(np.zeros_like(grid))
            continue
        # i of type a, neighbour j of type b (ordered pairs once: a-b with i in A)
        d = dist[(si == a) & (sj == b)]
        density = np.zeros_like(grid)
        if len(d):
            # Gaussians evaluated only within 5 sigma of each distance (the tail beyond is < 4e-6)
            centre = np.floor(d / dr).astype(int)
            for off in range(-reach, reach + 1):
                g = centre + off
                ok = (g >= 0) & (g < len(grid))
                np.add.at(density, g[ok], np.exp(-0.5 * ((grid[g[ok]] - d[ok]) / sigma) ** 2))
            density /= sigma * math.sqrt(2 * math.pi)
        f = density / (4 * math.pi * grid**2 * na * nb / volume) - 1.0
        blocks.append(f * (na * nb / weights_total))
    return np.concatenate(blocks)


def fingerprints(frames: Sequence[Atoms], kind: str = "ov") -> np.ndarray:
    import numpy as np

    if kind == "ov":
        elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
        return np.array([ov_fingerprint(a, elements) for a in frames])
    if kind == "crystalnn":
        import warnings

        from matminer.featurizers.structure import SiteStatsFingerprint
        from pymatgen.io.ase import AseAtomsAdaptor

        ssf = SiteStatsFingerprint.from_preset("CrystalNNFingerprint_ops")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = [ssf.featurize(AseAtomsAdaptor.get_structure(a)) for a in frames]
        return np.nan_to_num(np.array(rows, dtype=float))
    raise UsageError(f"unknown fingerprint {kind!r}; choose from {', '.join(FINGERPRINTS)}")


def pairwise_distances(x: np.ndarray, metric: str) -> np.ndarray:
    import numpy as np

    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        norms[norms == 0] = 1.0
        u = x / norms[:, None]
        return np.clip(0.5 * (1.0 - u @ u.T), 0.0, 1.0)
    diff = x[:, None, :] - x[None, :, :]
    return np.sqrt((diff**2).sum(-1))


def farthest_point_order(dist: np.ndarray, k: int, start: int = 0) -> list[int]:
    """Greedy max–min (farthest-point) selection of ``k`` indices from a distance matrix."""
    import numpy as np

    n = dist.shape[0]
    k = min(k, n)
    if k <= 0:
        return []
    chosen = [start]
    mind = dist[start].copy()
    mind[start] = -np.inf
    while len(chosen) < k:
        nxt = int(np.argmax(mind))  # ties → lowest index: deterministic
        chosen.append(nxt)
        mind = np.minimum(mind, dist[nxt])
        mind[chosen] = -np.inf
    return chosen


# ----------------------------------------------------------------------------- selection


@dataclass
class BinReport:
    bin: Bin
    available: int
    selected: int


def select(
    frames: Sequence[Atoms],
    bins: Sequence[Bin] = DEFAULT_BINS,
    method: str = "random",
    seed: int | None = None,
    fingerprint: str = "ov",
) -> tuple[list[int], list[BinReport]]:
    """Indices of the frames chosen (in input order) and a per-bin report.

    ``random``: a uniform sample without replacement (numpy ``default_rng(seed)``), one draw per
    bin in bin order. ``fps``: farthest-point sampling in fingerprint space, started at the
    frame with the lowest E_hull of the bin (ties: the first), so it needs no seed.
    Frames outside every bin are not selected.
    """
    import numpy as np

    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    e_hull = np.array([e_hull_of(a) for a in frames], dtype=float)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    reports = []
    for b in bins:
        members = np.flatnonzero((e_hull >= b.lo) & (e_hull < b.hi))
        if len(members) <= b.quota:
            picked = list(members)
        elif method == "random":
            picked = list(rng.choice(members, size=b.quota, replace=False))
        else:
            x = fingerprints([frames[i] for i in members], fingerprint)
            dist = pairwise_distances(x, "cosine" if fingerprint == "ov" else "euclidean")
            start = int(np.argmin(e_hull[members]))
            picked = [members[i] for i in farthest_point_order(dist, b.quota, start)]
        chosen.extend(int(i) for i in picked)
        reports.append(BinReport(b, int(len(members)), len(picked)))
    return sorted(chosen), reports


def bin_label(e_hull: float, bins: Sequence[Bin]) -> str | None:
    for b in bins:
        if b.contains(e_hull):
            return b.label
    return None
