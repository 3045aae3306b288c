"""The motif catalogue across runs (JSON lines, merged by hash), the run's motif table, and the
export of finite units as centred clusters."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from cscli.core.errors import DataError
from cscli.core.frames import to_builtin
from cscli.screen.motifs.graph import EXPORT_BOX, Motif


def example_record(motif: Motif) -> dict:
    """A JSON-friendly example of the motif's atoms (a centred cluster, or the periodic unit)."""
    unit, atoms = motif.unit, motif.atoms
    if unit is None or atoms is None:
        return {}
    pos = unit.positions(atoms)
    rec = {"symbols": [unit.species[i] for i in unit.nodes]}
    if unit.finite:
        pos = pos - pos.mean(axis=0)
    else:
        rec["cell"] = [[round(float(x), 5) for x in row] for row in atoms.cell.array]
        rec["pbc"] = [bool(p) for p in atoms.pbc]
    rec["positions"] = [[round(float(x), 4) for x in row] for row in pos]
    return rec


class Catalogue:
    """Motifs seen across runs (JSON lines, one record per hash), merged by hash."""

    def __init__(self, records: dict[str, dict] | None = None):
        self.records: dict[str, dict] = dict(records or {})
        self.known = set(self.records)  # hashes present before this run
        # frames already merged (each record lists its frames' ids): merging one twice is a no-op,
        # so a run killed between writing frames and saving can be completed from its output
        self.merged: set[str] = {str(i) for rec in self.records.values() for i in rec.get("ids", ())}
        self.run_counts: Counter = Counter()
        self.run_frames: Counter = Counter()
        self.run_order: list[str] = []

    @classmethod
    def load(cls, path: str | os.PathLike | None) -> Catalogue:
        if path is None or not Path(path).exists() or Path(path).stat().st_size == 0:
            return cls()
        records = {}
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    records[rec["hash"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError(f"{path}:{lineno}: not a motif catalogue record") from None
        return cls(records)

    def add(self, frame_id: str, motifs: Sequence[Motif], iteration=None) -> None:
        frame_id = str(frame_id)
        if frame_id in self.merged:
            return
        self.merged.add(frame_id)
        for m in motifs:
            rec = self.records.get(m.hash)
            if rec is None:
                rec = {
                    "hash": m.hash,
                    "name": m.name,
                    "formula": m.formula,
                    "charge": m.charge,
                    "dimensionality": m.dimensionality,
                    "natoms": m.natoms,
                    "first_id": frame_id,
                    "first_iteration": iteration,
                    "count": 0,
                    "frames": 0,
                    "example": example_record(m),
                }
                self.records[m.hash] = rec
            rec["count"] += m.count
            rec["frames"] += 1
            rec.setdefault("ids", []).append(frame_id)
            if m.hash not in self.run_counts:
                self.run_order.append(m.hash)
            self.run_counts[m.hash] += m.count
            self.run_frames[m.hash] += 1

    def is_new(self, motif_hash: str) -> bool:
        return motif_hash not in self.known

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in self.records.values():
                # frame values (e.g. info['iteration'] read from extxyz) can be numpy scalars
                fh.write(json.dumps(to_builtin(rec), separators=(",", ":")) + "\n")
        os.replace(tmp, path)

    def summary_rows(self) -> list[dict]:
        """This run's motifs, most abundant first, with ``new`` (not in the catalogue before)."""
        rows = []
        for h in self.run_order:
            rec = self.records[h]
            rows.append(
                {
                    "name": rec["name"],
                    "hash": h,
                    "formula": rec["formula"],
                    "charge": rec["charge"],
                    "dimensionality": rec["dimensionality"],
                    "count": self.run_counts[h],
                    "frames": self.run_frames[h],
                    "new": self.is_new(h),
                    "first_id": rec["first_id"],
                }
            )
        return sorted(rows, key=lambda r: (-r["frames"], -r["count"], r["name"]))


def format_table(rows: Sequence[dict], sep: str | None = None) -> str:
    """The summary as an aligned text table (or ``sep``-separated with ``sep='\\t'``)."""
    head = ["name", "hash", "dim", "charge", "count", "frames", "new", "first_id"]
    body = [
        [
            r["name"],
            r["hash"][:12] if sep is None else r["hash"],
            f"{r['dimensionality']}D",
            "?" if r["charge"] is None else str(r["charge"]),
            str(r["count"]),
            str(r["frames"]),
            "yes" if r["new"] else "",
            r["first_id"],
        ]
        for r in rows
    ]
    if sep is not None:
        return "\n".join(sep.join(row) for row in [head, *body]) + "\n"
    widths = [max(len(row[k]) for row in [head, *body]) for k in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]) + "\n"


def safe_name(name: str) -> str:
    out = []
    for ch in name:
        if ch.isalnum() or ch in "-_.,":
            out.append(ch)
        elif ch == "^":
            out.append("_")
        elif ch == "+":
            out.append("p")
    text = "".join(out).replace(",", "")
    return text.strip("_") or "unit"


def export_cluster(motif: Motif, directory: str | os.PathLike, box: float = EXPORT_BOX) -> Path | None:
    """Write a finite motif as ``<name>_<hash12>.xyz`` (extxyz, centred in a ``box`` Å cube)."""
    from ase.io import write

    if motif.unit is None or motif.atoms is None or not motif.unit.finite:
        return None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{safe_name(motif.name)}_{motif.hash[:12]}.xyz"
    if path.exists():
        return path
    cluster = motif.unit.cluster(motif.atoms, box)
    cluster.info.update(
        {
            "motif_hash": motif.hash,
            "motif_name": motif.name,
            "charge": motif.charge,
            "source_id": str(motif.atoms.info.get("id", "")),
        }
    )
    write(str(path), cluster, format="extxyz")
    return path
