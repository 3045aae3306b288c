"""Prediction, testing and VASP non-SCF inputs (``cscli density predict | test | nscf``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cscli.core.errors import DataError, UsageError
from cscli.core.log import get_logger

log = get_logger(__name__)

DEFAULT_MODEL_FILE = "density_lips.pt"


def default_model_path() -> Path:
    """The Li–P–S density model shipped in ``cscli/data`` (``scripts/train_density_model.py``)."""
    return Path(__file__).resolve().parents[2] / "data" / DEFAULT_MODEL_FILE


def resolve_model_path(model: str | None) -> str:
    if model:
        return model
    path = default_model_path()
    if not path.is_file():
        from cscli.core.errors import ModelError

        raise ModelError(f"no --model given and the shipped density model {path} is missing")
    return str(path)


def valence_electrons(atoms, model_meta: dict | None = None) -> float | None:
    """Valence electrons of ``atoms`` under the model's training convention (GPAW's PAW setups
    unless the model records another ``valence`` table); None when unknown."""
    table = (model_meta or {}).get("valence") or GPAW_VALENCE
    try:
        return float(sum(table[s] for s in atoms.get_chemical_symbols()))
    except KeyError:
        return None


# valence electrons of GPAW's default PBE PAW setups (gpaw-data 0.9.20000) for the Li–P–S system
GPAW_VALENCE = {"Li": 1, "P": 5, "S": 6}


def grid_for(atoms, grid=None, spacing=None, encut: float = 520.0, prec: str = "Normal"):
    from cscli.props.density.io import spacing_grid_shape, vasp_grid_shape

    if grid is not None:
        grid = tuple(int(n) for n in grid)
        if len(grid) != 3 or min(grid) < 1:
            raise UsageError(f"--grid {grid}: expected three positive integers")
        return grid
    if spacing is not None:
        return spacing_grid_shape(atoms, spacing)
    return vasp_grid_shape(atoms, encut, prec)


def predict_grid(predictor, atoms, shape, batch: int | None = None):
    """ρ (electrons/Å³) on the VASP-convention grid ``shape`` of ``atoms``; ``batch``: probe–atom
    edges per network call (:meth:`Predictor.predict_grid`)."""
    return predictor.predict_grid(atoms, shape, edge_chunk=batch).reshape(shape)


def predict_frames(
    frames,
    model_path,
    out_dir,
    device="cpu",
    grid=None,
    spacing=None,
    encut=520.0,
    prec="Normal",
    normalize=False,
    batch=None,
):
    """A CHGCAR per frame under ``out_dir`` (``<id>.CHGCAR``); yields the annotated frames."""
    from cscli.core.models import resolve_device
    from cscli.props.density.io import write_chgcar
    from cscli.props.density.model import Predictor, load_model

    net, meta = load_model(model_path)
    pred = Predictor(net, resolve_device(device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, atoms in enumerate(frames):
        fid = str(atoms.info.get("id", f"frame-{i}"))
        pred.check_species(atoms, fid)
        shape = grid_for(atoms, grid, spacing, encut, prec)
        t0 = time.time()
        rho = predict_grid(pred, atoms, shape, batch)
        seconds = time.time() - t0
        volume = abs(np.linalg.det(atoms.cell.array))
        total = float(rho.mean() * volume)
        nval = valence_electrons(atoms, meta)
        scaled = None
        if normalize:
            if nval is None:
                raise DataError(f"{fid}: --normalize needs the valence electron count of every element")
            scaled = nval / total
            rho = rho * scaled
        path = out / f"{_safe(fid)}.CHGCAR"
        write_chgcar(path, atoms, rho, comment=f"{atoms.get_chemical_formula()} cscli density prediction")
        log.info(
            "%s: grid %dx%dx%d, %.2f s, ∫ρ = %.4f e (valence %s)%s",
            fid,
            *shape,
            seconds,
            total,
            "?" if nval is None else f"{nval:g}",
            f", scaled ×{scaled:.5f}" if scaled else "",
        )
        atoms.info["density_file"] = str(path)
        atoms.info["density_electrons"] = total
        atoms.info["density_model"] = f"{Path(model_path).name} (cscli density)"
        if nval is not None:
            atoms.info["density_valence_electrons"] = nval
        atoms.info["density_grid"] = list(shape)
        atoms.info["density_seconds"] = seconds
        yield atoms


def _safe(text) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:100] or "frame"


# ----------------------------------------------------------------------------- test


def superposition_baseline(density, radial: dict) -> np.ndarray:
    """ρ on the density's points from superposed spherical atomic densities ``radial``
    ({symbol: (r Å, ρ e/Å³)}), periodic images included."""
    from cscli.props.density.model import periodic_pairs

    pts, _ = density.all_points()
    atoms = density.atoms
    rmax = max(float(np.max(r)) for r, _ in radial.values())
    p, a, vec = periodic_pairs(atoms.cell.array, atoms.pbc, pts, atoms.positions, rmax)
    dist = np.linalg.norm(vec, axis=1)
    sym = np.asarray(atoms.get_chemical_symbols())
    out = np.zeros(len(pts))
    for s in set(sym):
        r, rho = radial[s]
        sel = sym[a] == s
        np.add.at(out, p[sel], np.interp(dist[sel], r, rho, right=0.0))
    return out


def test_model(
    model_path, densities, device="cpu", eval_points: int | None = None, plot_path=None, baseline: dict | None = None
) -> dict:
    """NMAE per structure and overall (Σ|Δρ| / Σ|ρ| over every point, or ``eval_points`` each)."""
    from cscli.core.models import resolve_device
    from cscli.props.density.model import Predictor, load_model
    from cscli.props.density.train import eval_set

    net, meta = load_model(model_path)
    pred = Predictor(net, resolve_device(device))
    for d in densities:
        pred.check_species(d.atoms, d.name)
    rows, num, den, bnum = [], 0.0, 0.0, 0.0
    first = None
    for d in densities:
        if eval_points:
            pts, vals = eval_set(d, eval_points)
        else:
            pts, vals = d.all_points()
        t0 = time.time()
        if d.is_grid and not eval_points:  # every grid point, in all_points' (C) order
            p = pred.predict_grid(d.atoms, d.values.shape)
        else:
            p = pred.predict(d.atoms, pts)
        err = float(np.abs(p - vals).sum())
        row = {
            "name": d.name,
            "source": d.source,
            "n_atoms": len(d.atoms),
            "n_points": int(len(vals)),
            "nmae": err / max(float(np.abs(vals).sum()), 1e-300),
            "seconds": time.time() - t0,
        }
        if baseline:
            b = superposition_baseline(d, baseline) if not eval_points else None
            if b is not None:
                row["baseline_nmae"] = float(np.abs(b - vals).sum() / np.abs(vals).sum())
                bnum += float(np.abs(b - vals).sum())
        if d.is_grid:
            row["electrons_dft"] = d.electrons()
            if not eval_points:
                row["electrons_predicted"] = float(p.mean() * d.volume)
        rows.append(row)
        num += err
        den += float(np.abs(vals).sum())
        if first is None and d.is_grid and not eval_points:
            first = (d, p.reshape(d.values.shape))
        log.info("%s: NMAE %.3f %%", d.name, 100 * row["nmae"])
    report = {
        "model": str(model_path),
        "model_meta": {k: meta.get(k) for k in ("trained_on", "valid_nmae", "step")},
        "n_structures": len(rows),
        "nmae": num / max(den, 1e-300),
        "structures": rows,
    }
    if baseline and bnum:
        report["baseline_nmae"] = bnum / max(den, 1e-300)
    if plot_path:
        if first is None:
            log.warning("no full-grid structure to plot a slice of; %s not written", plot_path)
        else:
            plot_slice(first[0], first[1], plot_path)
            report["plot"] = str(plot_path)
    return report


def plot_slice(density, predicted, path, axis: int = 2) -> None:
    """DFT | predicted | difference on the grid plane through the first atom (normal to ``axis``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = density.values.shape
    frac = density.atoms.get_scaled_positions()[0] if len(density.atoms) else np.zeros(3)
    k = int(round(frac[axis] * shape[axis])) % shape[axis]
    take = lambda a: np.take(a, k, axis=axis)  # noqa: E731
    ref, pr = take(density.values), take(predicted)
    vmax = float(max(ref.max(), pr.max()))
    diff = pr - ref
    dmax = float(np.abs(diff).max()) or 1.0
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.6))
    for a, data, title, kw in (
        (ax[0], ref, "DFT", dict(vmin=0, vmax=vmax, cmap="viridis")),
        (ax[1], pr, "predicted", dict(vmin=0, vmax=vmax, cmap="viridis")),
        (ax[2], diff, "predicted − DFT", dict(vmin=-dmax, vmax=dmax, cmap="RdBu_r")),
    ):
        im = a.imshow(data.T, origin="lower", **kw)
        a.set_title(title)
        a.set_xticks([])
        a.set_yticks([])
        fig.colorbar(im, ax=a, shrink=0.8, label="e/Å³")
    fig.suptitle(f"{density.name}: grid plane {k} of {shape[axis]} along axis {'abc'[axis]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- nscf


def write_nscf_inputs(chgcar_paths, out_dir, line_density: int = 20, user_incar: dict | None = None) -> list[dict]:
    """Per predicted CHGCAR a folder with VASP band-structure inputs: pymatgen's
    ``MPNonSCFSet`` in line mode (``ICHARG = 11``, k-points along the Setyawan–Curtarolo
    high-symmetry path) and the CHGCAR copied beside them. POTCARs are not written (VASP
    licence): ``POTCAR.spec`` lists the symbols pymatgen would use."""
    import shutil

    from pymatgen.io.vasp.sets import MPNonSCFSet

    from cscli.props.density.io import read_chgcar

    out = Path(out_dir)
    rows = []
    for path in chgcar_paths:
        d = read_chgcar(path)
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = AseAtomsAdaptor.get_structure(d.atoms)
        vis = MPNonSCFSet(
            structure,
            mode="line",
            kpoints_line_density=line_density,
            user_incar_settings={"ICHARG": 11, "LCHARG": False, **(user_incar or {})},
        )
        folder = out / _safe(d.name)
        folder.mkdir(parents=True, exist_ok=True)
        vis.incar.write_file(str(folder / "INCAR"))
        vis.kpoints.write_file(str(folder / "KPOINTS"))
        vis.poscar.write_file(str(folder / "POSCAR"))
        (folder / "POTCAR.spec").write_text("\n".join(vis.potcar_symbols) + "\n")
        shutil.copyfile(path, folder / "CHGCAR")
        rows.append(
            {
                "chgcar": str(path),
                "dir": str(folder),
                "n_kpoints": len(vis.kpoints.kpts) if vis.kpoints.kpts else 0,
                "labels": [x for x in (vis.kpoints.labels or []) if x],
            }
        )
        log.info("%s: %s (%d k-points on the line path)", d.name, folder, rows[-1]["n_kpoints"])
    return rows
