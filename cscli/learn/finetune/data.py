"""Training data for fine-tuning: train/validation split and deepmd-kit's npy system format.

deepmd-kit's standard data format (one *system* per directory, all frames of a system share the
same atom count and atom-type order)::

    type.raw            one type index per atom (int)
    type_map.raw        element of each type index
    set.000/box.npy     (nframes, 9)  cell vectors, Å
    set.000/coord.npy   (nframes, 3N) Cartesian positions, Å
    set.000/energy.npy  (nframes,)    total energy, eV
    set.000/force.npy   (nframes, 3N) forces, eV/Å
    set.000/virial.npy  (nframes, 9)  virial, eV  (only when every frame of the system has a stress)

The virial is ``-stress * volume`` with stress in ASE's sign convention (tensile positive), which
is the inverse of what deepmd's own ASE calculator does (``stress = -virial / volume``). Frames that
carry deepmd's virial directly (``info['virial_eV']``, 9 numbers, as in the LiPS20 set) use it as is.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cscli.core.errors import DataError, UsageError
from cscli.core.frames import info_number

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


def split_frames(
    frames: Sequence[Atoms], valid_fraction: float = 0.1, seed: int | None = 0, min_valid: int = 1
) -> tuple[list[Atoms], list[Atoms]]:
    """Random train/validation split (reproducible for a given seed).

    At least ``min_valid`` frames go to validation when ``valid_fraction > 0`` and at least one frame
    stays in training.
    """
    import numpy as np

    if not 0.0 <= valid_fraction < 1.0:
        raise UsageError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    n = len(frames)
    if n == 0:
        raise DataError("no training frames")
    n_valid = 0 if valid_fraction == 0 else max(min_valid, int(round(valid_fraction * n)))
    if n_valid >= n:
        raise DataError(f"{n} frame(s) are too few to keep {n_valid} for validation; pass more frames or --valid FILE")
    order = np.random.default_rng(seed).permutation(n)
    valid_idx = set(order[:n_valid].tolist())
    train = [a for i, a in enumerate(frames) if i not in valid_idx]
    valid = [a for i, a in enumerate(frames) if i in valid_idx]
    return train, valid


def frame_labels(atoms: Atoms) -> dict:
    """Energy (eV), forces (eV/Å) and virial (eV, 3x3 or None) of a labelled frame."""
    import numpy as np

    fid = atoms.info.get("id", "?")
    energy = info_number(atoms, "energy", "label the frames first")
    forces = atoms.arrays.get("forces")
    if forces is None:
        raise DataError(f"frame {fid}: no forces (arrays['forces']); label the frames first")
    forces = np.asarray(forces, dtype=float).reshape(len(atoms), 3)
    if not np.all(np.isfinite(forces)):
        raise DataError(f"frame {fid}: forces are not finite")
    virial = None
    if "virial_eV" in atoms.info:
        virial = np.asarray(_maybe_json(atoms.info["virial_eV"]), dtype=float).reshape(3, 3)
    elif "stress" in atoms.info and atoms.pbc.all():
        virial = stress_to_virial(atoms.info["stress"], atoms.get_volume())
    if virial is not None and not np.all(np.isfinite(virial)):
        virial = None
    return {"energy": energy, "forces": forces, "virial": virial}


def _maybe_json(value):
    if isinstance(value, str):
        return json.loads(value) if value[:1] == "[" else [float(x) for x in value.split()]
    return value


def stress_to_virial(stress, volume: float):
    """deepmd virial (eV, 3x3) from an ASE stress (Voigt 6 or 3x3, eV/Å³, tensile positive)."""
    import numpy as np
    from ase.stress import voigt_6_to_full_3x3_stress

    s = np.asarray(stress, dtype=float)
    s = voigt_6_to_full_3x3_stress(s) if s.shape == (6,) else s.reshape(3, 3)
    return -s * float(volume)


def virial_to_stress(virial, volume: float):
    """Inverse of :func:`stress_to_virial`: ASE Voigt-6 stress (eV/Å³) from a deepmd virial."""
    import numpy as np
    from ase.stress import full_3x3_to_voigt_6_stress

    v = np.asarray(virial, dtype=float).reshape(3, 3)
    return full_3x3_to_voigt_6_stress(-0.5 * (v + v.T) / float(volume))


def type_map_of(*frame_sets: Sequence[Atoms], extra: Sequence[str] = ()) -> list[str]:
    """Sorted union of the elements in the frames (and ``extra``), by atomic number."""
    from ase.data import atomic_numbers

    elements = set(extra)
    for frames in frame_sets:
        for atoms in frames:
            elements.update(atoms.get_chemical_symbols())
    return sorted(elements, key=lambda s: atomic_numbers[s])


def write_deepmd_systems(
    frames: Sequence[Atoms], directory: str | Path, type_map: Sequence[str], prefix: str = "sys"
) -> list[Path]:
    """Write frames as deepmd npy systems under ``directory``, one system per composition.

    Atoms are sorted by type index within each frame (stable), so frames of one composition share
    ``type.raw`` whatever their original atom order. Returns the system directories. A system gets
    ``virial.npy`` only when every one of its frames has a virial (from ``stress`` or ``virial_eV``).
    """
    import numpy as np

    index = {el: i for i, el in enumerate(type_map)}
    groups: OrderedDict[tuple, list] = OrderedDict()
    for atoms in frames:
        try:
            types = np.array([index[s] for s in atoms.get_chemical_symbols()], dtype=int)
        except KeyError as exc:
            raise DataError(
                f"frame {atoms.info.get('id', '?')}: element {exc.args[0]} not in type map {list(type_map)}"
            ) from None
        periodic = bool(atoms.pbc.all())
        if atoms.pbc.any() and not periodic:
            raise DataError(f"frame {atoms.info.get('id', '?')}: partly periodic cells are not supported by deepmd")
        order = np.argsort(types, kind="stable")
        labels = frame_labels(atoms)
        key = (tuple(types[order].tolist()), periodic)
        groups.setdefault(key, []).append((atoms, order, labels))

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    systems = []
    for k, ((types, periodic), items) in enumerate(groups.items()):
        sysdir = directory / f"{prefix}{k:03d}"
        setdir = sysdir / "set.000"
        setdir.mkdir(parents=True, exist_ok=True)
        (sysdir / "type.raw").write_text("\n".join(str(t) for t in types) + "\n")
        (sysdir / "type_map.raw").write_text("\n".join(type_map) + "\n")
        if not periodic:
            (sysdir / "nopbc").write_text("")
        box = np.array([a.cell.array.reshape(9) if periodic else np.zeros(9) for a, _, _ in items])
        coord = np.array([a.positions[o].reshape(-1) for a, o, _ in items])
        energy = np.array([lab["energy"] for _, _, lab in items])
        force = np.array([lab["forces"][o].reshape(-1) for _, o, lab in items])
        np.save(setdir / "box.npy", box)
        np.save(setdir / "coord.npy", coord)
        np.save(setdir / "energy.npy", energy)
        np.save(setdir / "force.npy", force)
        if all(lab["virial"] is not None for _, _, lab in items):
            np.save(setdir / "virial.npy", np.array([lab["virial"].reshape(9) for _, _, lab in items]))
        systems.append(sysdir)
    return systems


def read_deepmd_system(sysdir: str | Path) -> list[Atoms]:
    """Frames of a deepmd npy system (all sets), labels in cscli's schema (for checks and export)."""
    import numpy as np
    from ase import Atoms

    sysdir = Path(sysdir)
    types = np.loadtxt(sysdir / "type.raw", dtype=int, ndmin=1)
    type_map = (sysdir / "type_map.raw").read_text().split()
    symbols = [type_map[t] for t in types]
    periodic = not (sysdir / "nopbc").exists()
    frames = []
    for setdir in sorted(sysdir.glob("set.*")):
        coord = np.load(setdir / "coord.npy").reshape(-1, len(types), 3)
        box = np.load(setdir / "box.npy").reshape(-1, 3, 3) if periodic else None
        energy = np.load(setdir / "energy.npy").reshape(-1)
        force = np.load(setdir / "force.npy").reshape(-1, len(types), 3)
        virial = np.load(setdir / "virial.npy").reshape(-1, 3, 3) if (setdir / "virial.npy").exists() else None
        for i in range(len(coord)):
            atoms = Atoms(symbols, positions=coord[i], cell=box[i] if periodic else None, pbc=periodic)
            atoms.info["energy"] = float(energy[i])
            atoms.arrays["forces"] = force[i].copy()
            if virial is not None:
                atoms.info["stress"] = virial_to_stress(virial[i], atoms.get_volume())
            frames.append(atoms)
    return frames


# ----------------------------------------------------------------------------- learning curves


def read_lcurve(path: str | Path) -> dict[str, list[float]]:
    """deepmd's ``lcurve.out`` as columns (``step``, ``rmse_e_val``, ``rmse_f_trn``, ``lr`` ...)."""
    import numpy as np

    path = Path(path)
    with open(path) as fh:
        header = fh.readline()
    names = header.lstrip("#").split()
    data = np.loadtxt(path, ndmin=2)
    if data.size == 0:
        return {n: [] for n in names}
    return {n: data[:, i].tolist() for i, n in enumerate(names)}


def plot_learning_curve(
    curve: dict[str, list[float]], png: str | Path, title: str = "learning curve", x: str = "step"
) -> Path:
    """PNG of every ``rmse_*`` / ``mae_*`` / ``loss*`` column against ``x`` (log y), train solid, validation dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = curve.get(x) or []
    keys = [k for k in curve if k != x and k.startswith(("rmse", "loss", "mae")) and len(curve[k]) == len(steps)]
    import math as _m

    def _useful(k):
        return any(isinstance(y, (int, float)) and _m.isfinite(y) and y > 0 for y in curve[k])

    keys = [k for k in keys if "_" in k and k.rsplit("_", 1)[0] not in ("rmse",) and _useful(k)]
    quantities = sorted({k.rsplit("_", 1)[0] for k in keys})
    fig, axes = plt.subplots(1, max(1, len(quantities)), figsize=(4.2 * max(1, len(quantities)), 3.4), squeeze=False)
    for ax, q in zip(axes[0], quantities):
        for suffix, style in (("trn", "-"), ("train", "-"), ("val", "--"), ("valid", "--")):
            k = f"{q}_{suffix}"
            if k in curve and len(curve[k]) == len(steps):
                ys = curve[k]
                if any(y > 0 for y in ys):
                    ax.plot(steps, ys, style, label={"trn": "train", "val": "validation"}.get(suffix, suffix))
        ax.set_xlabel(x)
        unit = {
            "rmse_e": "eV/atom",
            "rmse_f": "eV/Å",
            "rmse_v": "eV/atom",
            "mae_e": "eV/atom",
            "mae_f": "eV/Å",
            "mae_s": "GPa",
            "rmse_s": "GPa",
        }.get(q, "")
        ax.set_ylabel(f"{q} ({unit})" if unit else q)
        if any(y > 0 for k in keys if k.startswith(q + "_") for y in curve[k]):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
