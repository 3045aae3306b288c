"""Paths of data files shipped with cscli (see cscli/data/README.md)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def reference_phases_path(system: str = "Li-P-S") -> Path:
    """The shipped reference phases of a chemical system (only Li-P-S ships today)."""
    from cscli.core.errors import UsageError

    key = "-".join(sorted(system.split("-")))
    if key != "Li-P-S":
        raise UsageError(f"no reference phases ship for {system}; pass your own with --refs")
    return DATA_DIR / "lips_reference_phases.extxyz"


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or $CSCLI_SHARED_DATA), if present."""
    import os

    env = os.environ.get("CSCLI_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None
