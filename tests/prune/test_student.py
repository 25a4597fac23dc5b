"""The one writer and reader of student and mask files."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from dreamprune_cli.models.checkpoint import METADATA_MODEL, save_safetensors
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.models.registry import build_model, model_config
from dreamprune_cli.prune.unstructured.masks import get_masks
from dreamprune_cli.prune.unstructured.plan import prune_model
from dreamprune_cli.prune.student import MASKS_FILE, load_student, write_student


def test_write_then_load_keeps_masks_and_zeros(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_safetensors(tmp_path / "t.safetensors",
                               build_model("ffa", "tiny", blocks=1).state_dict(), "ffa",
                               model_config("ffa", "tiny", blocks=1))
    teacher = load_model("ffa", weights=weights)
    student = prune_model(teacher, 0.6, "lamp", flops_size=64).student
    (tmp_path / "out").mkdir()
    paths = write_student(student, tmp_path / "out", {"dreamprune.note": "test"})
    assert set(paths) == {"student", "masks"}
    with safe_open(str(paths["masks"]), framework="pt") as handle:
        metadata = handle.metadata()
        dtypes = {handle.get_tensor(k).dtype for k in handle.keys()}
    assert metadata[METADATA_MODEL] == "ffa" and metadata["dreamprune.note"] == "test"
    assert dtypes == {torch.bool}  # one format: bool masks with the student's metadata

    again = load_student(paths["student"], "ffa")
    before, after = get_masks(student.network), get_masks(again.network)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k].cpu(), after[k]) for k in before)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(student.adapter()(x), again.adapter()(x), atol=1e-6)
    assert (tmp_path / "out" / MASKS_FILE).is_file()
