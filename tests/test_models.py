"""Model names and files resolve to the right backend, offline, with clear errors."""

import glob
import os
from pathlib import Path

import pytest

from cscli.core.errors import ModelError, UsageError
from cscli.core.models import DEFAULT_MODEL, describe_models, detect_backend, resolve_model


def test_named_models_resolve_without_loading():
    assert resolve_model("chgnet").backend == "chgnet"
    assert resolve_model(None).name == DEFAULT_MODEL
    spec = resolve_model("7net-mf-0")
    assert (spec.backend, spec.head, spec.name) == ("sevennet", "PBE", "7net-mf-0:PBE")
    assert resolve_model("7net-l3i5").head is None
    with pytest.raises(UsageError, match="unknown model"):
        resolve_model("gpt-5")


def test_shipped_weight_files_are_detected_by_content():
    import chgnet
    import sevenn._const

    assert detect_backend(Path(sevenn._const.SEVENNET_0_11Jul2024)) == "sevennet"
    chgnet_file = glob.glob(os.path.join(os.path.dirname(chgnet.__file__), "pretrained/0.3.0/*.pth.tar"))[0]
    assert detect_backend(Path(chgnet_file)) == "chgnet"
    assert resolve_model(f"sevennet:{sevenn._const.SEVENNET_l3i5}").backend == "sevennet"


def test_downloaded_weights_are_found_in_the_model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CSCLI_MODEL_DIR", str(tmp_path / "models"))
    with pytest.raises(ModelError, match="not found"):
        resolve_model("mattersim-5m")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mattersim-v1.0.0-5M.pth").write_bytes(b"x")
    (tmp_path / "models" / "DPA-3.1-3M.pt").write_bytes(b"x")
    assert resolve_model("mattersim-5m").path == str(tmp_path / "models" / "mattersim-v1.0.0-5M.pth")
    spec = resolve_model("dpa3:MP_traj_v024_alldata_mixu")
    assert spec.backend == "deepmd" and spec.head == "MP_traj_v024_alldata_mixu"
    rows = {r["name"]: r for r in describe_models()}
    assert rows["mattersim-5m"]["weights"].endswith("mattersim-v1.0.0-5M.pth")
    assert rows[DEFAULT_MODEL]["default"] and rows[DEFAULT_MODEL]["available"]
