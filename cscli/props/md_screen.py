"""Li-ion conductivity screening by molecular dynamics (the seed paper's §2.6 and SI §1.4).

Per frame: :func:`filter_reason` (composition, E_hull, volume per Li) → :func:`make_supercell`
(every cell height ≥ ``min_length``) → :func:`run_md` (Maxwell–Boltzmann velocities, isotropic MTK
NPT, then Nosé–Hoover-chain NVT, with checkpoints and runaway checks) → the analysis of
:mod:`cscli.props.diffusion` over the last ``analysis_ps`` of NVT → info keys (``md_*``, see the
frame schema in :mod:`cscli.core.frames`). :func:`analyze_trajectory` runs the same analysis on an
existing trajectory file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cscli.core.errors import DataError, FrameError, UsageError
from cscli.core.log import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

    from cscli.props.diffusion import DiffusionResult

log = get_logger(__name__)

CHECKPOINT = "md_checkpoint.npz"


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The paper's pre-MD filters. Fractions are strict lower bounds (x_El > value); ``require``:
    elements that must be present (x > 0); ``e_hull_max`` in eV/atom (inclusive; ``inf`` turns the
    filter off and e_hull is then not needed); ``max_volume_per_mobile`` in Å³ (strict)."""

    min_fraction: tuple[tuple[str, float], ...] = (("Li", 0.15), ("S", 0.45))
    require: tuple[str, ...] = ("P",)
    e_hull_max: float = 0.03
    max_volume_per_mobile: float = 200.0
    mobile: str = "Li"


def parse_fractions(text: str | None) -> tuple[tuple[str, float], ...]:
    """``"Li=0.15,S=0.45"`` → ((Li, 0.15), (S, 0.45)); ``""``/``"none"`` → ()."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return ()
    from ase.data import atomic_numbers

    out = []
    for part in str(text).split(","):
        el, sep, value = part.strip().partition("=")
        el = el.strip()
        if not sep or el not in atomic_numbers:
            raise UsageError(f"--min-fraction {text!r}: expected El=FRACTION[,El=FRACTION...], e.g. Li=0.15,S=0.45")
        try:
            frac = float(value)
        except ValueError:
            raise UsageError(f"--min-fraction {text!r}: {value!r} is not a number") from None
        if not 0 <= frac < 1:
            raise UsageError(f"--min-fraction {text!r}: a fraction must be in [0, 1)")
        out.append((el, frac))
    return tuple(out)


def filter_reason(atoms: Atoms, filters: Filters) -> str | None:
    """Why ``atoms`` is not simulated (one line), or None when it passes every filter."""
    symbols = atoms.get_chemical_symbols()
    n = len(symbols)
    for el, minimum in filters.min_fraction:
        x = symbols.count(el) / n
        if not x > minimum:
            return f"x_{el} = {x:.3f} <= {minimum:g}"
    for el in filters.require:
        if el not in symbols:
            return f"no {el}"
    if math.isfinite(filters.e_hull_max):
        from cscli.core.frames import info_number

        e_hull = info_number(atoms, "e_hull", "run `cscli hull` first, or pass --e-hull-max inf", FrameError)
        if e_hull > filters.e_hull_max:
            return f"e_hull = {e_hull:.4f} > {filters.e_hull_max:g} eV/atom"
    n_mobile = symbols.count(filters.mobile)
    if math.isfinite(filters.max_volume_per_mobile):
        if n_mobile == 0:
            return f"no {filters.mobile}"
        v = atoms.get_volume() / n_mobile
        if not v < filters.max_volume_per_mobile:
            return f"volume per {filters.mobile} = {v:.1f} >= {filters.max_volume_per_mobile:g} Å³"
    return None


# ---------------------------------------------------------------------------------------------
# Supercell
# ---------------------------------------------------------------------------------------------


def supercell_repeats(cell, min_length: float) -> tuple[int, int, int]:
    """Smallest diagonal repeats making every cell *height* (distance between opposite faces,
    ≤ the lattice parameter) ≥ ``min_length``: the minimum-image condition for a cutoff of
    min_length/2, and lattice parameters ≥ min_length too."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    heights = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return tuple(max(1, math.ceil(min_length / h - 1e-9)) for h in heights)


def make_supercell(atoms: Atoms, min_length: float) -> tuple[Atoms, tuple[int, int, int]]:
    reps = supercell_repeats(atoms.cell, min_length)
    sc = atoms.repeat(reps)
    sc.calc = None
    for key in list(sc.arrays):
        if key not in ("numbers", "positions"):
            del sc.arrays[key]
    sc.info = {}
    return sc, reps


# ---------------------------------------------------------------------------------------------
# MD
# ---------------------------------------------------------------------------------------------


@dataclass
class MDSettings:
    temperature: float = 700.0  # K
    pressure_bar: float = 1.0
    npt_ps: float = 10.0
    nvt_ps: float = 60.0
    timestep_fs: float = 2.0
    sample_fs: float = 20.0
    checkpoint_ps: float = 2.0
    tdamp_steps: float = 100.0  # thermostat time constant in timesteps (ASE's advice)
    pdamp_steps: float = 1000.0  # barostat time constant in timesteps (ASE's advice)
    max_temperature_factor: float = 3.0  # runaway: instantaneous T above factor × target
    min_distance: float = 0.5  # runaway: atoms closer than this (Å)
    max_volume_factor: float = 2.0  # runaway: volume outside [V0/f, f·V0]

    def check(self) -> None:
        for name in ("temperature", "timestep_fs", "sample_fs"):
            if not getattr(self, name) > 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        if self.npt_ps < 0 or self.nvt_ps <= 0:
            raise UsageError("--npt-ps must be >= 0 and --nvt-ps > 0")
        if self.sample_fs < self.timestep_fs:
            raise UsageError(f"--sample-fs {self.sample_fs:g} is shorter than --timestep-fs {self.timestep_fs:g}")

    @property
    def sample_every(self) -> int:
        return max(1, int(round(self.sample_fs / self.timestep_fs)))

    @property
    def npt_steps(self) -> int:
        return int(round(self.npt_ps * 1000 / self.timestep_fs / self.sample_every)) * self.sample_every

    @property
    def nvt_steps(self) -> int:
        return int(round(self.nvt_ps * 1000 / self.timestep_fs / self.sample_every)) * self.sample_every


class Runaway(FrameError):
    """The MD left physical territory (non-finite forces, temperature, atoms colliding, volume)."""


@dataclass
class MDRun:
    """What :func:`run_md` returns: samples every ``sample_every`` steps of both phases."""

    positions: np.ndarray  # (S, N, 3) Å, wrapped as the integrator left them
    cells: np.ndarray  # (S, 3, 3)
    phase: np.ndarray  # (S,) 0 = NPT, 1 = NVT
    temperatures: np.ndarray  # (S,) K, instantaneous
    pressures: np.ndarray  # (S,) bar, instantaneous (ideal-gas term included)
    steps: int  # MD steps done in total (both phases)
    temperature_mean_nvt: float  # K, mean over every NVT step
    resumed_from: int = 0  # step of the checkpoint the run resumed from (0: fresh)
    npt_integrator: str = ""
    nvt_integrator: str = ""


def _npt_class():
    """ASE's isotropic MTK barostat (ASE ≥ 3.26), else the older Melchionna NPT."""
    try:
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT
    except ImportError:  # pragma: no cover - old ASE
        from ase.md.npt import NPT

        return NPT


def _build(atoms, phase: int, s: MDSettings):
    from ase import units

    dt = s.timestep_fs * units.fs
    if phase == 0:
        cls = _npt_class()
        if cls.__name__ == "IsotropicMTKNPT":
            return cls(
                atoms,
                timestep=dt,
                temperature_K=s.temperature,
                pressure_au=s.pressure_bar * units.bar,
                tdamp=s.tdamp_steps * dt,
                pdamp=s.pdamp_steps * dt,
            )
        # pragma: no cover - ASE < 3.26: Melchionna NPT, pfactor from a 1000-step barostat time
        return cls(
            atoms,
            timestep=dt,
            temperature_K=s.temperature,
            externalstress=s.pressure_bar * units.bar,
            ttime=s.tdamp_steps * dt,
            pfactor=(s.pdamp_steps * dt) ** 2 * 30 * units.GPa,
        )
    from ase.md.nose_hoover_chain import NoseHooverChainNVT

    return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=s.temperature, tdamp=s.tdamp_steps * dt)


def _integrator_state(dyn) -> dict[str, np.ndarray]:
    state = {}
    thermo = getattr(dyn, "_thermostat", None)
    if thermo is not None:
        state["eta"] = np.array(thermo._eta)
        state["p_eta"] = np.array(thermo._p_eta)
    baro = getattr(dyn, "_barostat", None)
    if baro is not None:
        state["xi"] = np.array(baro._xi)
        state["p_xi"] = np.array(baro._p_xi)
        state["p_eps"] = np.array(dyn._p_eps)
    return state


def _set_integrator_state(dyn, state: dict[str, np.ndarray]) -> None:
    thermo = getattr(dyn, "_thermostat", None)
    if thermo is not None and "eta" in state:
        thermo._eta = np.array(state["eta"], dtype=float)
        thermo._p_eta = np.array(state["p_eta"], dtype=float)
    baro = getattr(dyn, "_barostat", None)
    if baro is not None and "xi" in state:
        baro._xi = np.array(state["xi"], dtype=float)
        baro._p_xi = np.array(state["p_xi"], dtype=float)
        dyn._p_eps = float(state["p_eps"])  # the cell is the checkpoint's, so _eps restarts at 0


def _pressure_bar(atoms) -> float:
    from ase import units

    stress = atoms.get_stress(voigt=False, include_ideal_gas=True)
    return float(-np.trace(stress) / 3 / units.bar)


def _write_checkpoint(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _check_runaway(atoms, s: MDSettings, volume0: float, step: int) -> None:
    forces = atoms.get_forces()
    if not np.all(np.isfinite(forces)) or not np.all(np.isfinite(atoms.positions)):
        raise Runaway(f"non-finite forces or positions at MD step {step}")
    temperature = atoms.get_temperature()
    if not temperature < s.max_temperature_factor * s.temperature:
        raise Runaway(f"temperature {temperature:.0f} K at MD step {step} is far off the {s.temperature:g} K target")
    volume = atoms.get_volume()
    if not volume0 / s.max_volume_factor < volume < volume0 * s.max_volume_factor:
        raise Runaway(
            f"volume {volume:.0f} Å³ at MD step {step} is outside {1 / s.max_volume_factor:g}–"
            f"{s.max_volume_factor:g}× the start ({volume0:.0f} Å³): the cell is flying apart or collapsing"
        )
    from cscli.core.frames import min_interatomic_distance

    dmin = min_interatomic_distance(atoms, s.min_distance + 0.1)
    if dmin < s.min_distance:
        raise Runaway(f"two atoms {dmin:.2f} Å apart at MD step {step}: the structure collapsed")


def run_md(
    atoms: Atoms,
    calc,
    settings: MDSettings,
    seed: int,
    work_dir: str | Path | None = None,
    on_step: Callable[[int], None] | None = None,
) -> MDRun:
    """NPT (``npt_ps``) then NVT (``nvt_ps``) from Maxwell–Boltzmann velocities drawn with ``seed``.

    Samples positions/cell/T/P every ``sample_every`` steps. With ``work_dir``, positions, momenta,
    cell, integrator (thermostat/barostat) variables, the samples and the running sums are saved
    every ``checkpoint_ps`` to ``work_dir/md_checkpoint.npz`` (atomically) and a re-run resumes from
    there. ``on_step(step)`` is called after each step (tests use it to interrupt a run).
    Raises :class:`Runaway` when the run leaves physical territory.
    """
    from ase.md import velocitydistribution as vd

    s = settings
    s.check()
    atoms = atoms.copy()
    atoms.calc = calc
    every = s.sample_every
    n_npt, n_nvt = s.npt_steps, s.nvt_steps
    total = n_npt + n_nvt
    ckpt_every = max(every, int(round(s.checkpoint_ps * 1000 / s.timestep_fs / every)) * every)
    ckpt = Path(work_dir) / CHECKPOINT if work_dir else None
    samples = {"positions": [], "cells": [], "phase": [], "temperatures": [], "pressures": []}
    step, t_sum, t_count, resumed_from, volume0 = 0, 0.0, 0, 0, atoms.get_volume()
    state: dict[str, np.ndarray] = {}
    if ckpt is not None and ckpt.is_file():
        with np.load(ckpt) as data:
            if data["numbers"].tolist() != atoms.numbers.tolist() or int(data["total"]) != total:
                raise FrameError(f"{ckpt}: checkpoint of a different structure or protocol; delete it to start over")
            atoms.set_cell(data["cell"], scale_atoms=False)
            atoms.set_positions(data["positions"])
            atoms.set_momenta(data["momenta"])
            step, t_sum, t_count = int(data["step"]), float(data["t_sum"]), int(data["t_count"])
            volume0 = float(data["volume0"])
            for key in samples:
                samples[key] = list(data["s_" + key])
            state = {k[6:]: data[k] for k in data.files if k.startswith("state_")}
        resumed_from = step
        log.info(f"resuming MD from step {step} of {total} ({ckpt})")
    else:
        # velocities before the integrator is built: the integrators read the momenta at construction
        rng = np.random.default_rng(seed)
        if hasattr(vd, "thermalize_momenta"):  # ASE ≥ 3.29
            vd.thermalize_momenta(atoms, s.temperature, rng=rng)
        else:  # pragma: no cover
            vd.MaxwellBoltzmannDistribution(atoms, temperature_K=s.temperature, rng=rng)
        vd.Stationary(atoms)
    names = ["", ""]

    def sample(phase: int) -> None:
        samples["positions"].append(atoms.get_positions())
        samples["cells"].append(atoms.cell.array.copy())
        samples["phase"].append(phase)
        samples["temperatures"].append(atoms.get_temperature())
        samples["pressures"].append(_pressure_bar(atoms) if phase == 0 else float("nan"))

    def save(phase: int, dyn) -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        extra = {f"state_{k}": v for k, v in _integrator_state(dyn).items()}
        _write_checkpoint(
            ckpt,
            numbers=atoms.numbers,
            cell=atoms.cell.array,
            positions=atoms.get_positions(),
            momenta=atoms.get_momenta(),
            step=step,
            total=total,
            phase=phase,
            t_sum=t_sum,
            t_count=t_count,
            volume0=volume0,
            **{f"s_{k}": np.asarray(v) for k, v in samples.items()},
            **extra,
        )

    for phase, (start, stop) in enumerate([(0, n_npt), (n_npt, total)]):
        if step >= stop:
            continue
        dyn = _build(atoms, phase, s)
        names[phase] = type(dyn).__name__
        if state and step > start:
            _set_integrator_state(dyn, state)
        state = {}
        if step == start:  # the phase's time zero (NVT: the NPT end state, as an NVT sample)
            atoms.get_forces()
            sample(phase)
        while step < stop:
            dyn.step()
            step += 1
            if phase == 1:
                t_sum += atoms.get_temperature()
                t_count += 1
            if on_step is not None:
                on_step(step)
            if step % every == 0:
                _check_runaway(atoms, s, volume0, step)
                sample(phase)
            if step % ckpt_every == 0 or step == stop:
                save(phase, dyn)
    if not names[0] and n_npt:
        names[0] = _npt_class().__name__
    return MDRun(
        positions=np.asarray(samples["positions"]),
        cells=np.asarray(samples["cells"]),
        phase=np.asarray(samples["phase"], dtype=int),
        temperatures=np.asarray(samples["temperatures"]),
        pressures=np.asarray(samples["pressures"], dtype=float),
        steps=step,
        temperature_mean_nvt=t_sum / t_count if t_count else float("nan"),
        resumed_from=resumed_from,
        npt_integrator=names[0],
        nvt_integrator=names[1] or "NoseHooverChainNVT",
    )


# ---------------------------------------------------------------------------------------------
# Results → info
# ---------------------------------------------------------------------------------------------


@dataclass
class ScreenSettings:
    md: MDSettings = field(default_factory=MDSettings)
    filters: Filters = field(default_factory=Filters)
    min_length: float = 10.0
    analysis_ps: float = 50.0
    fit_start_ps: float = 1.0
    fit_end_ps: float | str | None = None  # ps, "max" (DiffusionAnalyzer's rule) or None (window/10)
    n_blocks: int = 5
    d_framework_max: float = 1e-6  # cm²/s, kinetic filter on every non-mobile element
    sigma_min: float = 400.0  # mS/cm

    def check(self) -> None:
        self.md.check()
        if not self.analysis_ps > 0:
            raise UsageError(f"--analysis-ps must be positive (got {self.analysis_ps})")
        if self.min_length < 0:
            raise UsageError(f"--min-length must be >= 0 (got {self.min_length}; 0 keeps the cell as it is)")


def _fit_end_fs(fit_end_ps):
    if fit_end_ps is None or fit_end_ps == "max":
        return fit_end_ps
    return float(fit_end_ps) * 1000


def parse_fit_end(text) -> float | str | None:
    """``--fit-end-ps``: a positive number of ps, ``max`` or ``auto`` (None)."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    if str(text).strip().lower() == "max":
        return "max"
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--fit-end-ps {text!r}: give a time in ps, 'auto' or 'max'") from None
    if not value > 0:
        raise UsageError(f"--fit-end-ps must be positive (got {value})")
    return value


def analysis_window(n_samples: int, dt_fs: float, analysis_ps: float) -> int:
    """Number of frames in the last ``analysis_ps`` (all of them when the run is shorter)."""
    return min(n_samples, int(round(analysis_ps * 1000 / dt_fs)) + 1)


def result_info(result: DiffusionResult, settings: ScreenSettings) -> dict:
    """The ``md_*`` info keys of one analysis (D per element, σ, kinetic filter, conductor flag)."""
    from cscli.props.diffusion import sigma_endpoint

    info: dict = {}
    for el, e in result.elements.items():
        info[f"md_d_{el}"] = e.d
        info[f"md_d_{el}_err"] = e.d_err
        info[f"md_d_{el}_endpoint"] = e.d_endpoint
    mob = result.mobile.lower()
    info[f"md_sigma_{mob}"] = result.sigma
    info[f"md_sigma_{mob}_err"] = result.sigma_err
    info[f"md_sigma_{mob}_endpoint"] = sigma_endpoint(result)
    stable = all(e.d < settings.d_framework_max for el, e in result.elements.items() if el != result.mobile)
    info["md_kinetically_stable"] = bool(stable)
    info["md_is_conductor"] = bool(stable and result.sigma >= settings.sigma_min)
    info["md_analysis_ps"] = result.window_fs / 1000
    info["md_fit_start_ps"] = result.fit_start_fs / 1000
    info["md_fit_end_ps"] = result.fit_end_fs / 1000
    info["md_max_framework_displacement"] = result.max_framework_displacement
    return info


def _backend_version(calc) -> str:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = type(calc).__module__.split(".")[0]
    for dist in packages_distributions().get(top, [top]):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return top


def _seed_for(seed: int, frame_id: str) -> np.random.SeedSequence:
    import hashlib

    key = int.from_bytes(hashlib.sha1(frame_id.encode()).digest()[:4], "big")
    return np.random.SeedSequence([seed, key])


def screen_frame(
    atoms: Atoms,
    calc,
    settings: ScreenSettings,
    seed: int,
    work_dir: str | Path | None = None,
    trajectory_dir: str | Path | None = None,
    plot_dir: str | Path | None = None,
    only_pass: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> Atoms | list:
    """Filter, simulate and analyse one frame; returns it with ``md_*`` keys (or ``md_skipped``),
    or ``[]`` for a filtered frame with ``only_pass``. ``calc``: an ASE calculator, or a function
    returning one (called only when the frame passes the filters)."""
    import ase

    from cscli.props.diffusion import analyze

    out = atoms.copy()
    out.calc = None
    fid = str(atoms.info["id"])
    reason = filter_reason(atoms, settings.filters)
    if reason is not None:
        if only_pass:
            return []
        out.info["md_skipped"] = reason
        return out
    mobile = settings.filters.mobile
    if mobile not in atoms.get_chemical_symbols():
        raise FrameError(f"frame {fid}: no {mobile} atoms: nothing to screen")
    if callable(calc) and not hasattr(calc, "get_forces") and not hasattr(calc, "calculate"):
        calc = calc()
    sc, reps = make_supercell(atoms, settings.min_length)
    frame_dir = Path(work_dir) / _safe(fid) if work_dir else None
    run = run_md(sc, calc, settings.md, int(_seed_for(seed, fid).generate_state(1)[0]), frame_dir, on_step)
    nvt = run.phase == 1
    dt = settings.md.sample_every * settings.md.timestep_fs
    n_win = analysis_window(int(nvt.sum()), dt, settings.analysis_ps)
    pos = run.positions[nvt][-n_win:]
    cells = run.cells[nvt][-n_win:]
    try:
        result = analyze(
            sc.get_chemical_symbols(),
            pos,
            cells,
            dt,
            settings.md.temperature,
            mobile=mobile,
            fit_start_fs=settings.fit_start_ps * 1000,
            fit_end_fs=_fit_end_fs(settings.fit_end_ps),
            n_blocks=settings.n_blocks,
        )
    except ValueError as exc:
        raise FrameError(f"frame {fid}: {exc}") from None
    info = out.info
    info.update(result_info(result, settings))
    others = ", ".join(f"D_{el} = {e.d:.1e}" for el, e in result.elements.items() if el != mobile)
    log.info(
        f"{fid}: σ_{mobile} = {result.sigma:.0f} ± {result.sigma_err:.0f} mS/cm, D_{mobile} = "
        f"{result.d(mobile):.2e} cm²/s, {others} ({run.steps} steps, {len(sc)} atoms)"
    )
    npt = run.phase == 0
    half = np.flatnonzero(npt)[np.count_nonzero(npt) // 2 :] if npt.any() else np.array([], dtype=int)
    if len(half):
        info["md_volume_per_atom_npt"] = float(np.mean([abs(np.linalg.det(c)) for c in run.cells[half]]) / len(sc))
        info["md_pressure_mean_npt"] = float(np.nanmean(run.pressures[half]))
    info["md_temperature_mean"] = run.temperature_mean_nvt
    info["md_steps"] = run.steps
    info["md_supercell"] = "x".join(map(str, reps))
    info["md_n_atoms"] = len(sc)
    info["model"] = getattr(calc, "cscli_model", type(calc).__name__)
    info["seed"] = int(seed)
    md = settings.md
    info["md_settings"] = json.dumps(
        {
            "temperature_K": md.temperature,
            "pressure_bar": md.pressure_bar,
            "npt_ps": md.npt_ps,
            "nvt_ps": md.nvt_ps,
            "timestep_fs": md.timestep_fs,
            "sample_fs": dt,
            "tdamp_fs": md.tdamp_steps * md.timestep_fs,
            "pdamp_fs": md.pdamp_steps * md.timestep_fs,
            "npt": run.npt_integrator,
            "nvt": run.nvt_integrator,
            "min_length": settings.min_length,
            "n_blocks": result.n_blocks,
            "ase": ase.__version__,
            "backend": _backend_version(calc),
        },
        sort_keys=True,
    )
    if trajectory_dir:
        write_trajectory(Path(trajectory_dir) / f"{_safe(fid)}.extxyz", sc, run, md)
    if plot_dir:
        plot_msd(
            result,
            Path(plot_dir) / f"{_safe(fid)}.png",
            title=f"{fid} ({atoms.get_chemical_formula()}, {md.temperature:g} K, {info['model']})",
        )
    if frame_dir is not None:
        (frame_dir / CHECKPOINT).unlink(missing_ok=True)
    return out


def _safe(frame_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in frame_id)


def write_trajectory(path: Path, sc: Atoms, run: MDRun, md: MDSettings) -> None:
    """Every sample of both phases as extxyz (``time_fs``, ``md_phase`` npt/nvt in info)."""
    from ase import Atoms

    from cscli.core.frames import write_frames

    path.parent.mkdir(parents=True, exist_ok=True)
    dt = md.sample_every * md.timestep_fs
    frames = []
    for i, (pos, cell, ph, temp) in enumerate(zip(run.positions, run.cells, run.phase, run.temperatures)):
        a = Atoms(sc.numbers, positions=pos, cell=cell, pbc=True)
        a.info.update(id=f"{path.stem}-{i}", time_fs=i * dt, md_phase="nvt" if ph else "npt", temperature=float(temp))
        frames.append(a)
    write_frames(frames, str(path))


def plot_msd(result: DiffusionResult, path: Path, title: str = "") -> None:
    """MSD(t) per element with the fit over the fit window (the paper's Fig. 6b–c)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    t_ps = result.lag_times_fs / 1000
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for el, e in result.elements.items():
        (line,) = ax.plot(t_ps, e.msd, label=f"{el}: D = {e.d:.2e} ± {e.d_err:.1e} cm²/s")
        fit_t = np.linspace(result.fit_start_fs, result.fit_end_fs, 50)
        ax.plot(fit_t / 1000, 6 * e.d / 0.1 * fit_t + e.intercept, "--", color=line.get_color(), lw=1)
    ax.axvspan(result.fit_start_fs / 1000, result.fit_end_fs / 1000, color="0.9", zorder=0)
    ax.set_xlabel("lag time (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.set_title(f"{title}\nσ_{result.mobile} = {result.sigma:.0f} ± {result.sigma_err:.0f} mS/cm", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# --from-trajectory
# ---------------------------------------------------------------------------------------------


def analyze_trajectory(
    path: str, dt_fs: float, temperature: float, settings: ScreenSettings, plot_dir: str | Path | None = None
) -> Atoms:
    """The md-screen analysis (no filters, no MD) of an ASE-readable trajectory whose consecutive
    frames are ``dt_fs`` apart; returns its last frame carrying the results."""
    import ase.io

    from cscli.props.diffusion import analyze

    if not dt_fs > 0:
        raise UsageError(f"--timestep-fs must be positive (got {dt_fs})")
    if not temperature > 0:
        raise UsageError(f"--temperature must be positive (got {temperature})")
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    positions, cells, first, last = [], [], None, None
    try:
        for atoms in ase.io.iread(path, index=":"):
            if first is None:
                first = atoms
            elif len(atoms) != len(first) or atoms.numbers.tolist() != first.numbers.tolist():
                raise DataError(f"{path}: frame {len(positions)} has different atoms than frame 0")
            positions.append(atoms.get_positions())
            cells.append(atoms.cell.array.copy())
            last = atoms
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{path}: cannot read as a trajectory ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if first is None or len(positions) < 3:
        raise DataError(f"{path}: {len(positions)} frame(s); a trajectory needs at least 3 frames")
    if not first.cell.rank == 3:
        raise DataError(f"{path}: frames have no 3D periodic cell")
    mobile = settings.filters.mobile
    symbols = first.get_chemical_symbols()
    if mobile not in symbols:
        raise DataError(f"{path}: no {mobile} atoms in the trajectory ({first.get_chemical_formula()})")
    n_win = analysis_window(len(positions), dt_fs, settings.analysis_ps)
    result = analyze(
        symbols,
        np.asarray(positions)[-n_win:],
        np.asarray(cells)[-n_win:],
        dt_fs,
        temperature,
        mobile=mobile,
        fit_start_fs=settings.fit_start_ps * 1000,
        fit_end_fs=_fit_end_fs(settings.fit_end_ps),
        n_blocks=settings.n_blocks,
    )
    out = last.copy()
    out.calc = None
    out.info = {k: v for k, v in last.info.items() if k in ("id", "time_fs")}
    out.info.setdefault("id", Path(path).stem)
    out.info["source"] = str(path)
    out.info.update(result_info(result, settings))
    out.info["md_temperature"] = float(temperature)
    out.info["md_timestep_fs"] = float(dt_fs)
    out.info["md_n_frames"] = len(positions)
    if plot_dir:
        plot_msd(
            result,
            Path(plot_dir) / f"{_safe(str(out.info['id']))}.png",
            title=f"{Path(path).name} ({first.get_chemical_formula()}, {temperature:g} K)",
        )
    return out


__all__ = [
    "Filters",
    "MDRun",
    "MDSettings",
    "Runaway",
    "ScreenSettings",
    "analysis_window",
    "analyze_trajectory",
    "filter_reason",
    "make_supercell",
    "parse_fractions",
    "plot_msd",
    "result_info",
    "run_md",
    "screen_frame",
    "supercell_repeats",
]
