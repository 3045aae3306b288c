"""Diffusivities and Nernst–Einstein conductivity from a trajectory (pure numpy).

The analysis behind ``cscli md-screen`` (and ``--from-trajectory``), usable on any positions/cells
arrays:

1. :func:`unwrap` — positions wrapped into the cell become continuous paths. Each step's
   displacement is taken in fractional coordinates, reduced to the nearest image, and converted to
   Cartesian with the cell of the *later* frame; the Cartesian steps are summed. With a changing cell
   (NPT) this is the "toroidal" unwrapping of von Bülow, Bullerjahn & Hummer (J. Chem. Phys. 153,
   021101, 2020), which does not inflate the MSD the way rescaling the cumulative fractional
   displacement by the current cell does. With a fixed cell both schemes are identical.
2. :func:`remove_drift` — the mean displacement of the *framework* (every atom that is not the mobile
   species, unweighted) is subtracted from every atom. The conductivity of Li is a motion relative to
   the host lattice, and a thermostat lets the whole cell drift; the framework mean is the host's
   reference frame. It is unweighted, as in pymatgen-analysis-diffusion's ``DiffusionAnalyzer``, so
   the numbers are comparable with that tool (for a rigidly drifting host both weightings agree).
3. :func:`msd_all_origins` — MSD per atom for every lag, averaged over all time origins (FFT).
4. :func:`fit_diffusivity` — slope of MSD(t) = 6 D t + c by least squares weighted by 1/t (the
   variance of a multiple-origin MSD grows with the lag) over ~200 lags between ``fit_start`` and
   ``fit_end``. This is DiffusionAnalyzer's ``smoothed="max"`` estimator when the window is its default
   (1 ps to the lag where each mobile atom has ``min_obs``/N_atoms independent origins); on the LGPS
   AIMD run in ``shared/data/md_reference`` it reproduces the published D = 1.16084e-6 cm²/s.
   The paper's endpoint formula (SI eq. 1, one time origin: the displacement between the first and
   last frame of the window over 6 Δt) is computed too.
5. Standard error by block averaging: the window is cut into ``n_blocks`` consecutive blocks, the
   same estimator runs on each, and the error is std(D_blocks)/sqrt(n_blocks).
6. σ = n e² z² D / (k_B T) (Nernst–Einstein, no Haven ratio) in mS/cm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Å²/fs → cm²/s
A2_PER_FS_TO_CM2_PER_S = 1e-16 / 1e-15
ELEMENTARY_CHARGE = 1.602176634e-19  # C
BOLTZMANN = 1.380649e-23  # J/K


def _as_cells(cells, n_frames: int) -> np.ndarray:
    cells = np.asarray(cells, dtype=float)
    if cells.ndim == 2:
        cells = np.broadcast_to(cells, (n_frames, 3, 3))
    if cells.shape != (n_frames, 3, 3):
        raise ValueError(f"cells must be (3, 3) or ({n_frames}, 3, 3), got {cells.shape}")
    return cells


def unwrap(positions, cells) -> np.ndarray:
    """Continuous Cartesian paths (F, N, 3) from wrapped positions (F, N, 3) and cells ((3, 3) or
    (F, 3, 3), rows = lattice vectors). Steps are minimum-image in fractional coordinates, so an atom
    must move less than half a cell length between consecutive frames."""
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"positions must be (frames, atoms, 3), got {pos.shape}")
    cells = _as_cells(cells, len(pos))
    frac = np.einsum("fnj,fjk->fnk", pos, np.linalg.inv(cells))
    dfrac = np.diff(frac, axis=0)
    dfrac -= np.round(dfrac)
    steps = np.einsum("fnj,fjk->fnk", dfrac, cells[1:])
    out = np.empty_like(pos)
    out[0] = pos[0]
    out[1:] = pos[0] + np.cumsum(steps, axis=0)
    return out


def remove_drift(paths, framework) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the unweighted mean displacement of the ``framework`` atoms (boolean mask or
    indices) from every atom. Returns (corrected paths, drift (F, 3))."""
    paths = np.asarray(paths, dtype=float)
    idx = np.flatnonzero(np.asarray(framework)) if np.asarray(framework).dtype == bool else np.asarray(framework)
    if len(idx) == 0:
        return paths.copy(), np.zeros((len(paths), 3))
    drift = (paths[:, idx] - paths[0, idx]).mean(axis=1)
    return paths - drift[:, None, :], drift


def msd_all_origins(paths) -> np.ndarray:
    """Per-atom MSD (N, F) for lags 0..F-1, each averaged over all F-lag time origins.

    Uses MSD(m) = S1(m) - 2 S2(m) with S2 the position autocorrelation by FFT (O(F log F))."""
    x = np.asarray(paths, dtype=float)
    n_frames = x.shape[0]
    if n_frames < 2:
        raise ValueError("need at least 2 frames for an MSD")
    x = np.moveaxis(x, 0, -1)  # (N, 3, F)
    counts = n_frames - np.arange(n_frames)
    nfft = 1 << (2 * n_frames - 1).bit_length()
    spec = np.fft.rfft(x, n=nfft, axis=-1)
    s2 = np.fft.irfft(spec * spec.conj(), n=nfft, axis=-1)[..., :n_frames].sum(axis=1) / counts
    sq = (x**2).sum(axis=1)  # (N, F)
    total = 2.0 * sq.sum(axis=-1)
    # Q(m) = Q(m-1) - D(m-1) - D(F-m)
    drop = np.zeros_like(sq)
    drop[:, 1:] = sq[:, :-1] + sq[:, ::-1][:, :-1]
    q = total[:, None] - np.cumsum(drop, axis=-1)
    s1 = q / counts
    return np.maximum(s1 - 2.0 * s2, 0.0)


def fit_lags(n_frames: int, start: int, end: int, max_points: int = 200) -> np.ndarray:
    """Lags (in frames) used in the fit: ``start``..``end``-1 with a stride giving ≤ ~max_points."""
    return np.arange(start, end, max(int((end - start) / max_points), 1))


def fit_diffusivity(times_fs, msd) -> tuple[float, float]:
    """(D in cm²/s, intercept in Å²) from MSD = 6 D t + c, least squares weighted by 1/t."""
    t = np.asarray(times_fs, dtype=float)
    y = np.asarray(msd, dtype=float)
    w = 1.0 / np.sqrt(t)
    a = np.stack([t, np.ones_like(t)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    return float(slope / 6.0 * A2_PER_FS_TO_CM2_PER_S), float(intercept)


def nernst_einstein(n_ions: int, volume_a3: float, d_cm2_s: float, temperature: float, charge: int = 1) -> float:
    """σ (mS/cm) = n z² e² D / (k_B T), n = n_ions / volume."""
    n_per_m3 = n_ions / (volume_a3 * 1e-30)
    sigma_s_per_m = n_per_m3 * (charge * ELEMENTARY_CHARGE) ** 2 * (d_cm2_s * 1e-4) / (BOLTZMANN * temperature)
    return float(sigma_s_per_m * 10.0)  # 1 S/m = 10 mS/cm


@dataclass
class ElementDiffusion:
    d: float  # cm²/s, weighted multiple-origin fit
    d_err: float  # cm²/s, block-averaging standard error
    d_endpoint: float  # cm²/s, the paper's one-origin endpoint formula
    intercept: float  # Å², of the fit
    msd: np.ndarray  # Å², at ``DiffusionResult.lag_times_fs``
    blocks: list[float] = field(default_factory=list)


@dataclass
class DiffusionResult:
    temperature: float
    dt_fs: float
    n_frames: int
    window_fs: float
    fit_start_fs: float
    fit_end_fs: float
    n_blocks: int
    mobile: str
    volume: float  # Å³, mean over the window
    lag_times_fs: np.ndarray
    elements: dict[str, ElementDiffusion]
    counts: dict[str, int]
    sigma: float = float("nan")  # mS/cm of the mobile species
    sigma_err: float = float("nan")
    max_framework_displacement: float = 0.0  # Å, drift-corrected

    def d(self, element: str) -> float:
        return self.elements[element].d


def _window(
    n_frames: int, n_atoms: int, dt_fs: float, fit_start_fs: float, fit_end_fs: float | str | None, min_obs: int
) -> tuple[int, int]:
    """Fit lags [start, end) in frames. ``fit_end_fs``: a time, ``"max"`` (DiffusionAnalyzer's rule,
    min(N·F // min_obs, F)), or None (one tenth of the window, at least 3 lags). A start at or past
    the end moves to a tenth of the end."""
    if fit_end_fs == "max":
        end = min(n_atoms * n_frames // min_obs, n_frames)
    elif fit_end_fs is None:
        end = max(n_frames // 10, 3) + 1
    else:
        end = int(round(float(fit_end_fs) / dt_fs)) + 1
    end = max(2, min(end, n_frames))
    start = max(1, int(round(fit_start_fs / dt_fs)))
    if start >= end - 1:
        start = max(1, end // 10)
    return start, end


def _element_d(paths, idx, lags, dt_fs):
    msd = msd_all_origins(paths[:, idx]).mean(axis=0)
    d, intercept = fit_diffusivity(lags * dt_fs, msd[lags])
    return d, intercept, msd


def analyze(
    symbols,
    positions,
    cells,
    dt_fs: float,
    temperature: float,
    mobile: str = "Li",
    fit_start_fs: float = 1000.0,
    fit_end_fs: float | str | None = None,
    n_blocks: int = 5,
    min_obs: int = 30,
    charge: int = 1,
    unwrapped: bool = False,
    drift: bool = True,
) -> DiffusionResult:
    """Full analysis of a trajectory window (positions (F, N, 3) in Å, wrapped or not; cells
    (3, 3) or (F, 3, 3); ``dt_fs`` between frames). D per element, σ of ``mobile``.

    Every element is fitted over the same lag window, set by the mobile species' count (the
    default, see :func:`_window`); each of the ``n_blocks`` blocks uses the same lags (or, when they
    do not fit in half a block, the same rule on the block's length). ``drift=False`` keeps the
    framework's drift in (for checks)."""
    if not dt_fs > 0:
        raise ValueError(f"time between frames must be positive, got {dt_fs}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    symbols = np.asarray(list(symbols))
    pos = np.asarray(positions, dtype=float)
    n_frames = len(pos)
    if n_frames < 3:
        raise ValueError(f"a trajectory of {n_frames} frame(s) has no diffusion to measure (need ≥ 3)")
    if pos.shape[1] != len(symbols):
        raise ValueError(f"{len(symbols)} symbols for {pos.shape[1]} atoms")
    cells = _as_cells(cells, n_frames)
    paths = pos if unwrapped else unwrap(pos, cells)
    framework = symbols != mobile
    if drift:
        paths, _ = remove_drift(paths, framework)
    n_ref = int(np.sum(~framework)) or len(symbols)
    lags = fit_lags(n_frames, *_window(n_frames, n_ref, dt_fs, fit_start_fs, fit_end_fs, min_obs))
    n_blocks = max(1, min(n_blocks, n_frames // 5))  # at least 5 frames a block
    block_len = n_frames // n_blocks
    # each block is fitted over the same lags when they fit in half a block, else by the same rule
    if lags[-1] <= block_len // 2:
        block_lags = lags
    else:
        block_lags = fit_lags(block_len, *_window(block_len, n_ref, dt_fs, fit_start_fs, fit_end_fs, min_obs))
    elements: dict[str, ElementDiffusion] = {}
    counts: dict[str, int] = {}
    window = (n_frames - 1) * dt_fs
    for el in dict.fromkeys(symbols.tolist()):
        idx = np.flatnonzero(symbols == el)
        counts[el] = len(idx)
        d, intercept, msd = _element_d(paths, idx, lags, dt_fs)
        blocks = []
        if n_blocks > 1:
            for b in range(n_blocks):
                chunk = paths[b * block_len : (b + 1) * block_len]
                blocks.append(_element_d(chunk, idx, block_lags, dt_fs)[0])
        d_err = float(np.std(blocks, ddof=1) / np.sqrt(n_blocks)) if len(blocks) > 1 else float("nan")
        disp = paths[-1, idx] - paths[0, idx]
        d_end = float((disp**2).sum(axis=1).mean() / (6.0 * window) * A2_PER_FS_TO_CM2_PER_S)
        elements[el] = ElementDiffusion(d=d, d_err=d_err, d_endpoint=d_end, intercept=intercept, msd=msd, blocks=blocks)
    volume = float(np.abs(np.linalg.det(cells)).mean())
    result = DiffusionResult(
        temperature=float(temperature),
        dt_fs=float(dt_fs),
        n_frames=n_frames,
        window_fs=window,
        fit_start_fs=float(lags[0] * dt_fs),
        fit_end_fs=float(lags[-1] * dt_fs),
        n_blocks=n_blocks,
        mobile=mobile,
        volume=volume,
        lag_times_fs=np.arange(n_frames) * dt_fs,
        elements=elements,
        counts=counts,
    )
    if np.any(framework):
        fw = paths[:, framework] - paths[0, framework]
        result.max_framework_displacement = float(np.sqrt((fw**2).sum(axis=2)).max())
    if mobile in elements:
        factor = nernst_einstein(counts[mobile], volume, 1.0, temperature, charge)
        result.sigma = elements[mobile].d * factor
        result.sigma_err = elements[mobile].d_err * factor
    return result


def sigma_endpoint(result: DiffusionResult, charge: int = 1) -> float:
    """σ (mS/cm) of the mobile species from the paper's endpoint D."""
    return nernst_einstein(
        result.counts[result.mobile],
        result.volume,
        result.elements[result.mobile].d_endpoint,
        result.temperature,
        charge,
    )


__all__ = [
    "DiffusionResult",
    "ElementDiffusion",
    "analyze",
    "fit_diffusivity",
    "fit_lags",
    "msd_all_origins",
    "nernst_einstein",
    "remove_drift",
    "sigma_endpoint",
    "unwrap",
]
