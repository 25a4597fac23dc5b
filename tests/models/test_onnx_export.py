"""ONNX export: teachers, unstructured and channel students; numbers against PyTorch; errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dreamprune_cli.cli import app
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.models.onnx_export import check_onnx_packages, export_onnx
from dreamprune_cli.models.registry import build_model, get_model_info, model_config
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.unstructured.plan import prune_model
from tests.runs.test_commands import _ffa_weights

HAVE_ONNX = all(importlib.util.find_spec(p) is not None
                for p in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason="onnx, onnxscript or onnxruntime not installed "
                          "(pip install 'dreamprune[onnx]')")


def _tiny_ffa() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(name="ffa", info=get_model_info("ffa"),
                       network=build_model("ffa", "tiny", blocks=1).eval(),
                       config=model_config("ffa", "tiny", blocks=1), weights=None)


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def _reference(loaded: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.adapter().eval()(x)


def test_a_missing_package_is_named_with_the_extra() -> None:
    with pytest.raises(UsageError, match="'dreamprune_no_such_package' package: pip install "
                                         "'dreamprune\\[onnx\\]'") as caught:
        check_onnx_packages(("dreamprune_no_such_package",))
    assert caught.value.exit_code == 2


@needs_onnx
@pytest.mark.slow
def test_cli_exports_a_teacher_with_dynamic_shapes(runner, tmp_path: Path) -> None:
    import onnx

    weights = _ffa_weights(tmp_path)
    out = tmp_path / "ffa.onnx"
    result = runner.invoke(app, ["export", "--weights", str(weights), "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == "onnx" and data["onnx"]["dynamic"]
    assert data["onnx"]["max_abs_diff"] <= 1e-5
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert metadata["dreamprune.model"] == "ffa"
    assert json.loads(metadata["dreamprune.config"])["blocks"] == 1
    teacher = _tiny_ffa()
    x = torch.rand(2, 3, 40, 52)  # neither the traced batch nor its size
    assert float((_run_onnx(out, x) - _reference(teacher, x)).abs().max()) <= 1e-5
    again = runner.invoke(app, ["export", "--weights", str(weights), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("granularity", ["unstructured", "channel", "depth"])
def test_students_export_and_match(granularity: str, tmp_path: Path) -> None:
    import onnx

    from dreamprune_cli.prune.depth.plan import prune_depth

    teacher = _tiny_ffa()
    if granularity == "channel":
        student = prune_channels(teacher, 0.6, "uniform", flops_size=32).student
    elif granularity == "depth":
        student = prune_depth(teacher, 0.6, flops_size=32, calibration_size=32).student
    else:
        student = prune_model(teacher, 0.6, "uniform", flops_size=32).student
    out = tmp_path / "student.onnx"
    done = export_onnx(student, out, size=32)
    assert not done.dynamic and done.input_shape == (1, 3, 32, 32)
    x = torch.rand(1, 3, 32, 32)
    assert float((_run_onnx(out, x) - _reference(student, x)).abs().max()) <= 1e-5
    model = onnx.load(str(out))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["dreamprune.granularity"] == granularity
    stored = sum(int(torch.tensor(list(t.dims)).prod()) for t in model.graph.initializer)
    dense = sum(p.numel() for p in teacher.network.parameters())
    if granularity in ("channel", "depth"):  # thinner tensors, or fewer, in the file
        assert stored < 0.9 * dense
    else:  # zeros are stored like any weight
        assert stored >= 0.9 * dense


class _Svd(nn.Module):
    """A network whose operator (singular values) has no ONNX conversion."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + torch.linalg.svdvals(x[0, 0]).sum()


@needs_onnx
def test_an_unconvertible_operator_is_named(tmp_path: Path) -> None:
    loaded = LoadedModel(name="identity", info=get_model_info("identity"), network=_Svd(),
                         config={}, weights=None)
    out = tmp_path / "svd.onnx"
    with pytest.raises(UsageError, match="operator aten._linalg_svd.* has no ONNX "
                                         "conversion") as caught:
        export_onnx(loaded, out, size=8)
    assert caught.value.exit_code == 2 and not out.exists()
    assert "\n" not in str(caught.value)
