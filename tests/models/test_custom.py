"""``dreamprune_cli.models.custom``: user models from a file, declared attributes, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.custom import (custom_model_info, declared_info,
                                          find_penultimate_layer, is_custom_spec)

SOURCE = '''
import torch
from torch import nn


class Net(nn.Module):
    size_multiple = 4
    task = "dehaze"

    def __init__(self, width=4):
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        return x + self.tail(torch.relu(self.head(x)))


class BadTask(Net):
    task = "denoise"


def not_a_module():
    return 3
'''


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(SOURCE)
    return path


def test_specs_are_told_apart() -> None:
    assert is_custom_spec("pkg.mod:factory") and is_custom_spec("a/b.py:Net")
    assert not is_custom_spec("ffa")


def test_a_class_from_a_file_with_its_declarations(source: Path) -> None:
    info = custom_model_info(f"{source}:Net")
    assert (info.task, info.size_multiple, list(info.variants)) == ("derain", 1, ["official"])
    network = info.factory(width=6)
    assert isinstance(network, nn.Module) and network.head.out_channels == 6
    declared = declared_info(info, network)
    assert (declared.task, declared.size_multiple) == ("dehaze", 4)
    assert declared.penultimate_layer == "tail"  # the last convolution a forward calls
    assert find_penultimate_layer(nn.Sequential(nn.ReLU())) is None


def test_refusals_name_the_spec_and_the_problem(source: Path, tmp_path: Path) -> None:
    cases = {f"{tmp_path / 'absent.py'}:X": "no such file",
             f"{source}:Missing": "has no attribute 'Missing'",
             "no_such_pkg_xyz.mod:factory": "import failed: ModuleNotFoundError",
             ":Net": "expected 'package.module:factory'"}
    for spec, message in cases.items():
        with pytest.raises(UsageError, match=message):
            custom_model_info(spec)
    with pytest.raises(UsageError, match="returned int, expected a torch.nn.Module"):
        custom_model_info(f"{source}:not_a_module").factory()
    with pytest.raises(UsageError, match="construction failed: TypeError"):
        custom_model_info(f"{source}:Net").factory(depth=2)
    info = custom_model_info(f"{source}:BadTask")
    with pytest.raises(UsageError, match=r"BadTask.task = 'denoise': expected one of derain, "
                                         "raindrop, dehaze"):
        declared_info(info, info.factory())
