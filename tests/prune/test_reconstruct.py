"""Layer-wise least-squares reconstruction of structured and masked students."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamprune_cli.models.channel_map import LayerChannels, identity_map
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.models.registry import build_model, get_model_info, model_config
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.reconstruct import (POSITIONS, reconstruct, reconstruct_student,
                                               stage_matched_teacher, weight_support)
from dreamprune_cli.prune.unstructured.masks import attach_masks, get_masks, set_masks
from tests.helpers import Twice


def _images(count: int = 6, size: int = 32) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(1))


def _cut_pair(conv2: dict) -> tuple[nn.Sequential, nn.Sequential, dict[str, LayerChannels]]:
    """A teacher conv->relu->conv->relu->conv whose conv1 channels 2 and 5 are dead (always 0
    after the ReLU) and whose conv3 ignores conv2's channels 1 and 4; its student: those
    channels cut, conv2's weights perturbed. The teacher's kept conv2 outputs are an exact
    linear function of the student's conv2 inputs, and the output depends on nothing cut."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(8, 6, 3, **conv2), nn.ReLU(),
                            nn.Conv2d(6, 3, 1)).eval()
    kept_in, kept_out = [0, 1, 3, 4, 6, 7], [0, 2, 3, 5]
    with torch.no_grad():
        teacher[0].weight[[2, 5]] = 0
        teacher[0].bias[[2, 5]] = -1.0
        teacher[4].weight[:, [1, 4]] = 0
    student = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(6, 4, 3, **conv2), nn.ReLU(),
                            nn.Conv2d(4, 3, 1)).eval()
    with torch.no_grad():
        student[0].weight.copy_(teacher[0].weight[kept_in])
        student[0].bias.copy_(teacher[0].bias[kept_in])
        student[2].weight.copy_(teacher[2].weight[kept_out][:, kept_in]
                                + 0.3 * torch.randn(4, 6, 3, 3))
        student[2].bias.copy_(teacher[2].bias[kept_out] + 0.3)
        student[4].weight.copy_(teacher[4].weight[:, kept_out])
        student[4].bias.copy_(teacher[4].bias)
    kept = {"0": LayerChannels(tuple(kept_in), (0, 1, 2)),
            "2": LayerChannels(tuple(kept_out), tuple(kept_in)),
            "4": LayerChannels((0, 1, 2), tuple(kept_out))}
    return teacher, student, kept


@pytest.mark.parametrize("conv2", [
    {"padding": 1},
    {"padding": 2, "dilation": 2, "stride": 2},
    {"padding": 1, "padding_mode": "reflect"},
    {"padding": "same", "bias": True},
])
def test_a_cut_linear_layer_is_recovered_exactly(conv2: dict) -> None:
    teacher, student, kept = _cut_pair(conv2)
    x = _images()
    report = reconstruct(teacher, student, x, kept, ridge=1e-10)
    with torch.no_grad():
        want, got = teacher[:3](x)[:, [0, 2, 3, 5]], student[:3](x)
        assert (student(x) - teacher(x)).abs().max().item() < 1e-5
    assert (got - want).abs().max().item() < 1e-5
    layers = {layer.name: layer for layer in report.layers}
    assert layers["2"].status == "solved" and layers["2"].error_after < 1e-5
    assert layers["2"].error_before > 0.1 and layers["2"].rows == 6 * min(
        POSITIONS, want.shape[-1] * want.shape[-2])
    assert layers["0"].error_before < 1e-6 and layers["4"].error_after < 1e-5  # exact already
    assert report.mse_after < 1e-10 < report.mse_before


def test_linear_layers_are_solved() -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5),
                            nn.Linear(5, 2)).eval()
    student = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3),
                            nn.Linear(3, 2)).eval()
    with torch.no_grad():
        teacher[4].weight[:, [2, 3]] = 0
        student[1].load_state_dict(teacher[1].state_dict())
        student[3].weight.copy_(teacher[3].weight[[0, 1, 4]] + 0.5)
        student[4].weight.copy_(teacher[4].weight[:, [0, 1, 4]])
        student[4].bias.copy_(teacher[4].bias)
    kept = {"1": LayerChannels(tuple(range(8)), tuple(range(12))),
            "3": LayerChannels((0, 1, 4), tuple(range(8))),
            "4": LayerChannels((0, 1), (0, 1, 4))}
    x = torch.rand(64, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    report = reconstruct(teacher, student, x, kept, ridge=1e-10)
    with torch.no_grad():
        assert (student[:4](x) - teacher[:4](x)[:, [0, 1, 4]]).abs().max().item() < 1e-5
    assert {layer.name: layer.status for layer in report.layers}["3"] == "solved"


def test_a_layer_called_twice_gathers_both_calls() -> None:
    torch.manual_seed(0)
    teacher = Twice().eval()
    student = Twice().eval()
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        student.body.weight.add_(0.2 * torch.randn_like(student.body.weight))
    calls = []
    student.body.register_forward_hook(lambda *_: calls.append(1))
    x = _images(4, 16)
    report = reconstruct(teacher, student, x, identity_map(teacher), positions=64)
    body = next(layer for layer in report.layers if layer.name == "body")
    assert body.calls == 2 and body.rows == 2 * 4 * 64  # both calls of every image
    assert body.status == "solved" and body.error_after < body.error_before
    assert report.mse_after < report.mse_before
    # a student with fewer repeats (a depth cut) pairs its call with the teacher's last: its
    # one call, which the teacher's first call equals, is asked for the second's output
    shallow = Twice(repeats=1).eval()
    shallow.load_state_dict(teacher.state_dict())
    report = reconstruct(teacher, shallow, x, identity_map(teacher))
    body = next(layer for layer in report.layers if layer.name == "body")
    assert body.calls == 1 and body.error_before > 0.01  # the first call would be exact


def test_a_solve_that_does_not_help_is_refused() -> None:
    """A layer already equal to the teacher's (no bias to compensate): a strong ridge only
    shrinks it, so it keeps its weights."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False)).eval()
    student = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False)).eval()
    student.load_state_dict(teacher.state_dict())
    before = student[0].weight.detach().clone()
    report = reconstruct(teacher, student, _images(), identity_map(teacher), ridge=10.0)
    assert report.layers[0].status == "kept"
    assert torch.equal(student[0].weight, before)


def test_grouped_convolutions_are_left_unchanged() -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 3, padding=1, groups=6),
                            nn.Conv2d(6, 3, 1)).eval()
    student = nn.Sequential(nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 3, padding=1, groups=6),
                            nn.Conv2d(6, 3, 1)).eval()
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        student[1].weight.add_(1.0)
    before = student[1].weight.detach().clone()
    report = reconstruct(teacher, student, _images(), identity_map(teacher))
    grouped = next(layer for layer in report.layers if layer.name == "1")
    assert grouped.status == "skipped" and "grouped" in grouped.reason
    assert torch.equal(student[1].weight, before)


def _tiny_prenet() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(name="prenet", info=get_model_info("prenet"),
                       network=build_model("prenet", "tiny", channels=8).eval(),
                       config=model_config("prenet", "tiny", channels=8), weights=None)


def test_channel_pruned_prenet_drifts_less_after() -> None:
    teacher = _tiny_prenet()
    student = prune_channels(teacher, 0.58, "lamp", flops_size=32).student
    report = reconstruct_student(teacher, student, count=4, size=32)
    assert report.count("solved") > 0 and not report.reverted
    assert report.mse_after <= report.mse_before
    assert report.fidelity_db_after >= report.fidelity_db_before
    gates = {layer.name: layer for layer in report.layers}["conv_g.0"]
    assert gates.calls == 3  # the recurrent stages of the tiny PReNet, every call gathered
    data = report.as_dict()
    assert data["images"] == 4 and data["size"] == [32, 32] and len(data["layers"]) == len(
        report.layers)


def test_depth_pruned_prenet_drifts_no_more_after() -> None:
    from dreamprune_cli.prune.depth.plan import prune_depth

    teacher = _tiny_prenet()
    student = prune_depth(teacher, 0.67, flops_size=32, calibration_size=32).student
    report = reconstruct_student(teacher, student, count=4, size=32)
    assert report.mse_after <= report.mse_before


def _masked_pair(sparse_teacher: bool) -> tuple[nn.Sequential, nn.Sequential, torch.Tensor]:
    """A teacher conv(3->4, 3x3, bias) -> ReLU -> conv(4->3, 1x1); its student: the same
    layers, the first with a random mask of about half its weights and those it kept
    perturbed. ``sparse_teacher``: the teacher's first layer is zero where the mask drops, so
    the masked layer can reproduce it exactly."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1)).eval()
    mask = torch.rand(4, 3, 3, 3) < 0.5
    if sparse_teacher:
        with torch.no_grad():
            teacher[0].weight.mul_(mask)
    student = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1)).eval()
    student.load_state_dict(teacher.state_dict())
    attach_masks(student, ["0"])
    set_masks(student, {"0": mask})
    with torch.no_grad():
        original = student[0].parametrizations["weight"].original
        original.add_(0.3 * torch.randn_like(original))
        student[0].bias.add_(0.2)
    return teacher, student, mask


def test_a_masked_layer_is_recovered_exactly_on_its_support() -> None:
    """The teacher's layer is zero off the mask: per-channel least squares over the kept
    weights (and the bias) gives the teacher's weights back, the mask unchanged."""
    teacher, student, mask = _masked_pair(sparse_teacher=True)
    assert torch.equal(weight_support(student[0]), mask.reshape(4, -1).T)
    assert weight_support(teacher[0]) is None
    x = _images()
    report = reconstruct(teacher, student, x, identity_map(student), ridge=1e-10)
    assert torch.equal(get_masks(student)["0"], mask)
    with torch.no_grad():
        assert torch.allclose(student[0].weight, teacher[0].weight, atol=1e-5)
        assert torch.allclose(student[0].bias, teacher[0].bias, atol=1e-5)
        assert (student(x) - teacher(x)).abs().max().item() < 1e-5
    layers = {layer.name: layer for layer in report.layers}
    assert layers["0"].status == "solved" and layers["0"].error_after < 1e-5


def test_a_masked_layer_keeps_its_zeros_and_fits_best_on_its_support() -> None:
    """A dense teacher: the masked weights stay exactly zero, and each output channel is the
    least-squares fit over its kept weights (checked against torch.linalg.lstsq on the
    unfolded inputs, hand-built here)."""
    teacher, student, mask = _masked_pair(sparse_teacher=False)
    x = _images(count=2, size=8)  # 2 x 64 positions: every position is a row
    reconstruct(teacher, student, x, identity_map(student), ridge=0.0)
    weight = student[0].weight.detach()
    assert torch.all(weight[~mask] == 0)
    rows = torch.nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 27)
    rows = torch.cat([rows, torch.ones(rows.shape[0], 1)], 1).double()
    with torch.no_grad():
        target = teacher[0](x).permute(0, 2, 3, 1).reshape(-1, 4).double()
    for channel in range(4):
        support = torch.cat([mask[channel].flatten(), torch.tensor([True])])
        best = torch.linalg.lstsq(rows[:, support], target[:, channel:channel + 1]).solution
        got = torch.cat([weight[channel].flatten()[mask[channel].flatten()],
                         student[0].bias.detach()[channel:channel + 1]]).double()
        assert torch.allclose(got, best[:, 0], atol=1e-4), channel


def test_an_unstructured_prenet_student_drifts_no_more_after() -> None:
    from dreamprune_cli.prune.unstructured.plan import prune_model

    teacher = _tiny_prenet()
    student = prune_model(teacher, 0.4, "lamp", flops_size=32).student
    masks = get_masks(student.network)
    report = reconstruct_student(teacher, student, count=4, size=32)
    assert report.mse_after <= report.mse_before and report.count("solved") > 0
    assert all(torch.equal(get_masks(student.network)[name], mask)
               for name, mask in masks.items())


def test_a_masked_weight_on_an_unexcited_input_keeps_the_teachers_value() -> None:
    """The calibration images' third channel is zero: the ridge pulls the masked layer's
    weights on it towards their current (the teacher's) values, not to zero."""
    teacher, student, mask = _masked_pair(sparse_teacher=True)
    with torch.no_grad():
        student[0].parametrizations["weight"].original.copy_(teacher[0].weight)
    x = _images()
    x[:, 2] = 0.0
    reconstruct(teacher, student, x, identity_map(student))
    kept_on_blue = mask[:, 2] & (teacher[0].weight[:, 2] != 0)
    assert kept_on_blue.any()
    assert torch.allclose(student[0].weight[:, 2][kept_on_blue],
                          teacher[0].weight[:, 2][kept_on_blue], atol=1e-6)


@pytest.mark.parametrize("toward_current", [False, True])
def test_the_ridge_of_a_dense_layer_pulls_where_asked(toward_current: bool) -> None:
    """A dense layer whose third input channel the calibration never excites: its weights
    there shrink to zero with the plain ridge, and keep their values when pulled towards the
    current weights (what reconstruct_student asks for a masked student's dense layers)."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()
    student = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        student[0].weight[:, :2].add_(0.3 * torch.randn(4, 2, 3, 3))
    x = _images()
    x[:, 2] = 0.0
    reconstruct(teacher, student, x, identity_map(student), ridge=1e-3,
                toward_current=toward_current)
    blue = student[0].weight.detach()[:, 2]
    if toward_current:
        assert torch.allclose(blue, teacher[0].weight[:, 2], atol=1e-6)
    else:
        assert blue.abs().max().item() < 1e-6
    assert torch.allclose(student[0].weight[:, :2], teacher[0].weight[:, :2], atol=5e-3)


@pytest.mark.parametrize(("granularity", "prior", "expected"), [
    ("channel", None, True), ("channel", "zero", False), ("channel", "current", True),
    ("unstructured", None, True), ("unstructured", "zero", False),
])
def test_reconstruct_student_passes_the_ridge_prior(monkeypatch: pytest.MonkeyPatch,
                                                     granularity: str, prior: str | None,
                                                     expected: bool) -> None:
    """By default (``None`` here: not passed) every student is pulled towards its current
    weights; ``"zero"`` asks for the plain ridge (masked layers keep pulling towards their
    current weights inside the solve whatever is asked)."""
    import dreamprune_cli.prune.reconstruct as module
    from dreamprune_cli.prune.unstructured.plan import prune_model

    asked: list[bool] = []
    monkeypatch.setattr(module, "reconstruct",
                        lambda *args, **kwargs: asked.append(kwargs["toward_current"]))
    teacher = _tiny_prenet()
    student = (prune_channels(teacher, 0.58, "lamp", flops_size=32).student
               if granularity == "channel"
               else prune_model(teacher, 0.4, "lamp", flops_size=32).student)
    options = {} if prior is None else {"prior": prior}
    reconstruct_student(teacher, student, count=1, size=16, **options)
    assert asked == [expected]


def _fewer_stages(teacher: LoadedModel, stages: int) -> LoadedModel:
    """``teacher`` run for ``stages`` of its recurrent stages: a depth student by hand."""
    import copy

    network = copy.deepcopy(teacher.network)
    network.stages = stages
    return LoadedModel(name=teacher.name, info=teacher.info, network=network,
                       config={**teacher.config, "stages": stages}, weights=None,
                       granularity="depth", kept_channels=identity_map(network))


def test_the_stage_matched_teacher_runs_the_students_stages() -> None:
    teacher = _tiny_prenet()
    assert stage_matched_teacher(teacher, teacher.network) is teacher.network
    reference = stage_matched_teacher(teacher, _fewer_stages(teacher, 2).network)
    assert reference is not teacher.network and reference.stages == 2
    assert teacher.network.stages == 3  # the teacher is not touched
    for mine, theirs in zip(reference.parameters(), teacher.network.parameters()):
        assert torch.equal(mine, theirs)


def test_a_cut_of_stages_alone_has_nothing_to_repair() -> None:
    teacher = _tiny_prenet()
    student = _fewer_stages(teacher, 2)
    before = {k: v.clone() for k, v in student.network.state_dict().items()}
    report = reconstruct_student(teacher, student, count=4, size=32)
    assert report.mse_before == 0.0 and report.mse_after == 0.0 and not report.reverted
    assert report.count("solved") == report.count("bias") == 0 and report.count("kept") > 0
    for key, value in student.network.state_dict().items():
        assert torch.equal(value, before[key])


def test_a_stage_and_channel_cut_is_fitted_to_the_teacher_run_for_its_stages() -> None:
    from dreamprune_cli.models.adapter import RestorationAdapter

    teacher = _tiny_prenet()
    shallow = _fewer_stages(teacher, 2)
    student = prune_channels(shallow, 0.7, "lamp", flops_size=32).student
    student.config = dict(shallow.config)
    images = _images(4, 32)
    with torch.no_grad():
        mine = RestorationAdapter(student.network, teacher.info)(images)
        truncated = RestorationAdapter(shallow.network, teacher.info)(images)
        full = RestorationAdapter(teacher.network, teacher.info)(images)
    to_truncated = float(((mine - truncated) ** 2).mean())
    to_full = float(((mine - full) ** 2).mean())
    assert abs(to_truncated - to_full) > 0.01 * to_full  # the two references differ
    report = reconstruct_student(teacher, student, images)
    assert report.mse_before == pytest.approx(to_truncated, rel=1e-4)
    assert report.count("solved") > 0 and report.mse_after < report.mse_before
    gates = {layer.name: layer for layer in report.layers}["conv_g.0"]
    assert gates.calls == 2  # each of the student's stages paired with the same stage
