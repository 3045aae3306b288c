"""Force-field loading: one function, every backend, offline.

``load_calculator(NAME_OR_PATH, device)`` returns an ASE calculator with ``calc.cscli_model`` set to
a name that is written into each frame (``info['model']``) and ``calc.cscli_model_version`` set to
the backend package and its version (``info['model_version']``, e.g. ``sevenn 0.13.0``).

Names (``cscli models`` lists them with where the weights are looked for):

==================  ======================================================================
``chgnet``          CHGNet 0.3.0, weights inside the ``chgnet`` wheel
``7net-0``          SevenNet-0 (11 Jul 2024), weights inside the ``sevenn`` wheel
``7net-mf-0``       SevenNet multi-fidelity; ``7net-mf-0:PBE`` picks the head (modal)
``7net-l3i5``       SevenNet l3i5
``mattersim-1m``    MatterSim v1.0.0 1M / 5M: ``~/.local/mattersim/pretrained_models`` (MatterSim's
``mattersim-5m``    own cache) or ``$CSCLI_MODEL_DIR``; never downloaded by cscli
``dpa3``            DPA-3.1-3M (deepmd-kit): ``$CSCLI_MODEL_DIR`` or ``~/.cache/cscli/models``;
                    ``dpa3:HEAD`` picks a head of the multi-task model
==================  ======================================================================

Dispersion: ``NAME+d3`` (e.g. ``7net-0+d3``, ``mace:model.model+d3``) adds Grimme's DFT-D3 with
Becke–Johnson damping and PBE parameters, two-body terms only (VASP's ``IVDW = 12``), computed by
the ``dftd3`` package (simple-dftd3) and summed with the model by ASE's ``SumCalculator``. The
shipped models are trained on PBE without dispersion, under which molecular S8 and layered P are
barely bound (their QHA fails on imaginary modes: docs/qha.md); the recorded model name keeps the
``+d3``.

Paths: a deepmd-kit frozen model (``dp --pt freeze`` → TorchScript ``.pth``) or checkpoint
(``.pt``), a MatterSim checkpoint, a SevenNet checkpoint, a CHGNet state file, or a MACE model
(``.model``) are recognised from their content; ``BACKEND:PATH`` (``deepmd:``, ``mattersim:``,
``sevennet:``, ``chgnet:``, ``mace:``) forces the backend.
"""

from __future__ import annotations

import contextlib
import os
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from cscli.core.errors import ModelError, UsageError

DEFAULT_MODEL = "7net-l3i5"  # chosen by measurement: docs/models.md (benchmarks/model_accuracy.py)

MATTERSIM_FILES = {"mattersim-1m": "mattersim-v1.0.0-1M.pth", "mattersim-5m": "mattersim-v1.0.0-5M.pth"}
DPA3_FILES = ("DPA-3.1-3M.pt", "DPA-3.1-3M.pth", "dpa-3.1-3m.pt", "dpa-3.1-3m.pth")
SEVENNET_NAMES = ("7net-0", "7net-mf-0", "7net-l3i5")
BACKENDS = ("chgnet", "sevennet", "mattersim", "deepmd", "mace")
#: the distribution that provides each backend (its version is recorded beside the model name)
BACKEND_PACKAGES = {
    "chgnet": "chgnet",
    "sevennet": "sevenn",
    "mattersim": "mattersim",
    "deepmd": "deepmd-kit",
    "mace": "mace-torch",
}


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name: str  # recorded in info['model']
    path: str | None = None  # weights file, when the backend needs one
    head: str | None = None  # modal / multi-task head
    dispersion: str | None = None  # "d3bj": DFT-D3(BJ) added to the model (``NAME+d3``)


#: ``NAME+SUFFIX`` dispersion corrections: suffix -> (damping, description)
DISPERSION_SUFFIXES = {"d3": "d3bj"}


def model_dirs() -> list[Path]:
    """Where cscli looks for downloaded weights, in order."""
    dirs = []
    if os.environ.get("CSCLI_MODEL_DIR"):
        dirs.append(Path(os.environ["CSCLI_MODEL_DIR"]))
    dirs.append(Path.home() / ".cache" / "cscli" / "models")
    return dirs


def mattersim_dirs() -> list[Path]:
    return [*model_dirs(), Path.home() / ".local" / "mattersim" / "pretrained_models"]


def _find(names, dirs) -> Path | None:
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def resolve_device(device: str = "auto") -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device!r}: choose auto, cpu or cuda")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible to torch")
    return device


def resolve_model(name_or_path: str | None = None) -> ModelSpec:
    """Turn a model name or path into a ModelSpec without importing any backend."""
    text = (name_or_path or DEFAULT_MODEL).strip()
    base_text, plus, suffix = text.rpartition("+")
    if plus and not Path(text).exists():
        if suffix.lower() not in DISPERSION_SUFFIXES:
            raise UsageError(
                f"model {text!r}: unknown correction '+{suffix}'; available: "
                + ", ".join(f"+{k}" for k in DISPERSION_SUFFIXES)
            )
        spec = resolve_model(base_text)
        if spec.dispersion:
            raise UsageError(f"model {text!r}: one dispersion correction at most")
        return replace(spec, name=f"{spec.name}+{suffix.lower()}", dispersion=DISPERSION_SUFFIXES[suffix.lower()])
    backend, _, rest = text.partition(":")
    if backend in BACKENDS and rest:
        return _spec_for_path(rest, backend)
    base, _, head = text.partition(":")
    base = base.lower()  # names are case-insensitive; heads (deepmd multi-task branches) are not
    if base in ("chgnet", "chgnet-0.3.0"):
        return ModelSpec("chgnet", "chgnet-0.3.0")
    if base in SEVENNET_NAMES:
        if base == "7net-mf-0" and not head:
            head = "PBE"
        return ModelSpec("sevennet", base + (f":{head}" if head else ""), head=head.upper() if head else None)
    if base in MATTERSIM_FILES:
        found = _find([MATTERSIM_FILES[base]], mattersim_dirs())
        if found is None:
            where = ", ".join(str(d) for d in mattersim_dirs())
            raise ModelError(
                f"{base}: weights {MATTERSIM_FILES[base]} not found (looked in {where}); this machine cannot "
                f"download them: copy the file into one of those folders or pass --model mattersim:PATH"
            )
        return ModelSpec("mattersim", base, str(found))
    if base in ("dpa3", "dpa-3", "dpa-3.1-3m"):
        found = _find(DPA3_FILES, model_dirs())
        if found is None:
            where = ", ".join(str(d) for d in model_dirs())
            raise ModelError(
                f"{base}: DPA-3.1-3M weights not found (looked for {DPA3_FILES[0]} in {where}); download them where "
                f"you have internet, copy them there (or set CSCLI_MODEL_DIR), or pass --model deepmd:PATH"
            )
        return ModelSpec("deepmd", "dpa-3.1-3m" + (f":{head}" if head else ""), str(found), head or None)
    if base.startswith("mace") and not Path(text).exists():
        raise ModelError(
            f"{text}: MACE foundation weights download from the internet; pass a local file: --model mace:PATH"
        )
    path = Path(text)
    if path.exists() or "/" in text or path.suffix:
        return _spec_for_path(text, None)
    known = "chgnet, " + ", ".join(SEVENNET_NAMES) + ", mattersim-1m, mattersim-5m, dpa3"
    raise UsageError(f"unknown model {text!r}: give a model file or one of {known}")


def _spec_for_path(path_text: str, backend: str | None) -> ModelSpec:
    path_text, _, head = path_text.partition("::")
    path = Path(path_text)
    if not path.is_file():
        raise ModelError(f"{path_text}: model file not found")
    backend = backend or detect_backend(path)
    return ModelSpec(backend, f"{backend}:{path.name}@{file_digest(path)}", str(path), head or None)


def file_digest(path: str | Path) -> str:
    """First 8 hex digits of a model file's SHA-256: model files are often all named model.pth
    (one per loop iteration), and the hull's same-model check must tell them apart."""
    import hashlib

    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:8]


def detect_backend(path: Path) -> str:
    """Tell a model file's backend from its content (not its name)."""
    if path.suffix == ".model":
        return "mace"
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a PyTorch model file (not a zip archive); pass BACKEND:PATH to force a backend")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    if any("/code/" in n for n in names):  # TorchScript: deepmd-kit frozen models
        return "deepmd"
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from None
    if isinstance(obj, dict):
        keys = set(obj)
        if obj.get("model_name") == "m3gnet" or {"model_args", "model"} <= keys and "model_name" in keys:
            return "mattersim"
        if "config" in keys and "model_state_dict" in keys:
            return "sevennet"
        if "model" in keys and isinstance(obj["model"], dict) and "_extra_state" in obj["model"]:
            return "deepmd"
        if "model" in keys and isinstance(obj["model"], dict) and {"state_dict", "model_args"} <= set(obj["model"]):
            return "chgnet"  # CHGNet Trainer.save() files
        if "state_dict" in keys and "model_args" in keys:
            return "chgnet"
    if isinstance(obj, torch.nn.Module) and type(obj).__module__.startswith("mace"):
        return "mace"
    raise ModelError(f"{path}: unrecognised model file; pass BACKEND:PATH with BACKEND one of {', '.join(BACKENDS)}")


@contextlib.contextmanager
def _quiet_stdout():
    """Backends print banners on stdout; stdout carries frames, so send them to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def load_calculator(name_or_path: str | None = None, device: str = "auto"):
    """An ASE calculator for a model name or file; ``calc.cscli_model`` names it."""
    spec = resolve_model(name_or_path)
    dev = resolve_device(device)
    try:
        with _quiet_stdout():
            # the backend loads the model under its own name, without the "+d3" suffix
            base = replace(spec, name=spec.name.rsplit("+", 1)[0], dispersion=None) if spec.dispersion else spec
            calc = _LOADERS[spec.backend](base, dev)
    except ImportError as exc:
        raise ModelError(
            f"{spec.name}: backend {spec.backend!r} is not installed ({exc}); install the cscli[{spec.backend}] extra"
        ) from None
    except (ModelError, UsageError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{spec.name}: cannot load model: {first}") from None
    version = backend_version(spec.backend)
    if spec.dispersion:
        calc = add_dispersion(calc, spec.dispersion)
        version += f", {backend_version('dftd3')}"
    calc.cscli_model = spec.name
    calc.cscli_model_version = version
    return calc


def add_dispersion(calc, damping: str = "d3bj"):
    """``calc`` plus DFT-D3 (PBE parameters, ``damping``, no three-body term) as one ASE calculator."""
    try:
        from dftd3.ase import DFTD3
    except ImportError as exc:
        raise ModelError(f"+d3: the dftd3 package is not installed ({exc}); pip install dftd3") from None
    from ase.calculators.mixing import SumCalculator

    return SumCalculator([calc, DFTD3(method="PBE", damping=damping)])


def backend_version(backend: str) -> str:
    """``"<package> <version>"`` of a backend (``"<package> unknown"`` when not installed as a
    distribution), for ``info['model_version']``."""
    from importlib.metadata import PackageNotFoundError, version

    package = BACKEND_PACKAGES.get(backend, backend)
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} unknown"


def store_model(atoms, calc) -> None:
    """Write the model's name and backend version into ``atoms.info`` (``model``, ``model_version``)."""
    name = getattr(calc, "cscli_model", None)
    if name:
        atoms.info["model"] = name
    version = getattr(calc, "cscli_model_version", None)
    if version:
        atoms.info["model_version"] = version


def _load_chgnet(spec: ModelSpec, device: str):
    import ase.constraints
    import ase.filters

    # chgnet 0.3.0 imports ExpCellFilter from its pre-3.23 home in ASE; it lives in ase.filters now
    if not hasattr(ase.constraints, "ExpCellFilter"):
        ase.constraints.ExpCellFilter = ase.filters.ExpCellFilter
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.from_file(spec.path) if spec.path else CHGNet.load()
    return CHGNetCalculator(model=model, use_device=device)


def _load_sevennet(spec: ModelSpec, device: str):
    import warnings

    from sevenn.calculator import SevenNetCalculator

    # the CUDA tensor-product accelerators do not exist on CPU; the warning says nothing actionable
    warnings.filterwarnings("ignore", message="No tensor product accelerator")

    model = spec.path or spec.name.split(":")[0]
    head = spec.head
    if spec.path and head is None:  # `cscli finetune --backend sevennet` records the fidelity it trained
        import torch

        head = (torch.load(spec.path, map_location="cpu", weights_only=False).get("cscli") or {}).get("head")
    return SevenNetCalculator(model=model, device=device, modal=head)


def _load_mattersim(spec: ModelSpec, device: str):
    from mattersim.forcefield.potential import MatterSimCalculator, Potential

    potential = Potential.from_checkpoint(load_path=spec.path, device=device, load_training_state=False)
    return MatterSimCalculator(potential=potential, device=device)


def _load_deepmd(spec: ModelSpec, device: str):
    if device == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    from deepmd.calculator import DP

    kwargs = {"head": spec.head} if spec.head else {}
    return DP(model=spec.path, **kwargs)


def _load_mace(spec: ModelSpec, device: str):
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=spec.path, device=device, default_dtype="float64")


_LOADERS = {
    "chgnet": _load_chgnet,
    "sevennet": _load_sevennet,
    "mattersim": _load_mattersim,
    "deepmd": _load_deepmd,
    "mace": _load_mace,
}


def describe_models() -> list[dict]:
    """Each named model, its backend and whether its weights are available here."""
    rows = [
        {
            "name": "chgnet",
            "backend": "chgnet",
            "weights": "inside the chgnet wheel",
            "available": _importable("chgnet"),
        }
    ]
    for name in SEVENNET_NAMES:
        rows.append(
            {
                "name": name,
                "backend": "sevennet",
                "weights": "inside the sevenn wheel",
                "available": _importable("sevenn"),
            }
        )
    for name, fname in MATTERSIM_FILES.items():
        found = _find([fname], mattersim_dirs())
        rows.append(
            {
                "name": name,
                "backend": "mattersim",
                "weights": str(found) if found else f"{fname} in " + ", ".join(map(str, mattersim_dirs())),
                "available": bool(found) and _importable("mattersim"),
            }
        )
    found = _find(DPA3_FILES, model_dirs())
    rows.append(
        {
            "name": "dpa3",
            "backend": "deepmd",
            "weights": str(found) if found else f"{DPA3_FILES[0]} in " + ", ".join(map(str, model_dirs())),
            "available": bool(found) and _importable("deepmd"),
        }
    )
    rows.append(
        {"name": "mace:PATH", "backend": "mace", "weights": "a local .model file", "available": _importable("mace")}
    )
    density = Path(__file__).resolve().parents[1] / "data" / "density_lips.pt"  # cscli density (charge density)
    rows.append(
        {
            "name": "density-lips",
            "backend": "cscli-density",
            "weights": str(density),
            "available": density.is_file() and _importable("e3nn"),
        }
    )
    for row in rows:
        row["default"] = row["name"] == DEFAULT_MODEL
    return rows


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
