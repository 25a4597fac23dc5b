"""Feature distillation (``--lambda-feat``): channel alignment, repeated calls, depth
pairing, the loss by hand, no hooks when off, the teacher forward reused, resume refusals."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.distill import Distiller, distill_offline
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.feature_distill import (FeatureDistillation, FeatureSettings,
                                                   feature_loss)
from dreamprune_cli.engine.inputs import make_input_source
from dreamprune_cli.engine.joint import JointTrainer
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.channel_map import LayerChannels, identity_map
from dreamprune_cli.settings import Settings, resolve_settings
from tests.engine.test_joint import _teacher_student
from tests.helpers import Twice

CPU = torch.device("cpu")
PRECISION = resolve_precision(CPU)


def _images(count: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand((count, 3, size, size), generator=torch.Generator().manual_seed(seed))


def _term(teacher: nn.Module, student: nn.Module, kept: dict[str, LayerChannels],
          lambda_feat: float = 1.0, layers: tuple[str, ...] = ()) -> FeatureDistillation:
    term = FeatureDistillation.build(FeatureSettings(lambda_feat, layers), teacher, student,
                                     kept)
    assert term is not None
    return term


def _features(term: FeatureDistillation, teacher: nn.Module, student: nn.Module,
              x: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    with torch.no_grad(), term.teacher_tap() as tap:
        teacher(x)
    with term.student_tap() as mine:
        student(x)
    return term.loss(mine.calls(), tap.calls()), mine.calls(), tap.calls()


# --- channel alignment -----------------------------------------------------------------------

def _channel_cut() -> tuple[nn.Sequential, nn.Sequential, dict[str, LayerChannels]]:
    """A 3 -> 6 -> 3 teacher and its student keeping channels (0, 2, 3, 5) of the first
    layer, weights copied from the teacher's rows (and the removed channels' columns of the
    second layer zero in the teacher, so the second layer's output is the teacher's too)."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1))
    kept_out = [0, 2, 3, 5]
    with torch.no_grad():
        teacher[2].weight[:, [1, 4]] = 0
    student = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(4, 3, 3, padding=1))
    with torch.no_grad():
        student[0].weight.copy_(teacher[0].weight[kept_out])
        student[0].bias.copy_(teacher[0].bias[kept_out])
        student[2].weight.copy_(teacher[2].weight[:, kept_out])
        student[2].bias.copy_(teacher[2].bias)
    kept = {"0": LayerChannels(tuple(kept_out), (0, 1, 2)),
            "2": LayerChannels((0, 1, 2), tuple(kept_out))}
    return teacher.eval(), student.eval(), kept


def test_feature_maps_align_to_the_kept_channels() -> None:
    teacher, student, kept = _channel_cut()
    x = _images()
    loss, mine, theirs = _features(_term(teacher, student, kept), teacher, student, x)
    assert theirs["0"][0].shape == (2, 4, 32, 32)  # the teacher's, at the kept channels only
    assert torch.equal(mine["0"][0], theirs["0"][0])  # the same rows: the same channels
    assert loss.item() < 1e-6
    wrong = dict(kept, **{"0": LayerChannels((0, 1, 2, 3), (0, 1, 2))})
    loss, *_ = _features(_term(teacher, student, wrong), teacher, student, x)
    assert loss.item() > 1e-2
    with pytest.raises(UsageError, match="^feat_layers 'body' matches no"):
        _term(teacher, student, kept, layers=("body",))


def test_a_channel_pruned_prenet_matches_its_first_layer_exactly() -> None:
    """A real cut (Torch-Pruning): the first layer's first call sees the same input (its
    later calls see the previous stage's output, which the cut changed), so its kept
    channels are the teacher's, bit for bit; the term over every layer is positive."""
    from dreamprune_cli.prune.channel_map import teacher_channels
    from dreamprune_cli.prune.channel.plan import prune_channels
    from tests.prune.test_reconstruct import _tiny_prenet

    teacher = _tiny_prenet()
    student = prune_channels(teacher, 0.58, "lamp", flops_size=32).student
    kept = teacher_channels(student)
    x = _images()
    first = _term(teacher.network, student.network, kept, layers=("conv0.0",))
    assert len(kept["conv0.0"].outputs) < teacher.network.conv0[0].out_channels  # thinner
    loss, mine, theirs = _features(first, teacher.adapter(), student.adapter(), x)
    assert len(mine["conv0.0"]) == len(theirs["conv0.0"]) == 3  # one call per stage
    assert torch.equal(mine["conv0.0"][0], theirs["conv0.0"][0])
    everything = _term(teacher.network, student.network, kept)
    assert len(everything.layers) == len(kept)
    loss, *_ = _features(everything, teacher.adapter(), student.adapter(), x)
    assert loss.item() > 0


# --- repeated calls and depth students -------------------------------------------------------

def test_a_layer_called_twice_contributes_both_calls() -> None:
    torch.manual_seed(0)
    teacher = Twice().eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.body.weight.add_(0.2 * torch.randn_like(student.body.weight))
    x = _images(size=16)
    term = _term(teacher, student, identity_map(teacher), layers=("body",))
    loss, mine, theirs = _features(term, teacher, student, x)
    assert len(mine["body"]) == len(theirs["body"]) == 2
    by_hand = [(mine["body"][k] - theirs["body"][k]).abs().mean().item() for k in range(2)]
    assert by_hand[0] != pytest.approx(by_hand[1])
    assert loss.item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)
    # the student's hooks kept the graph: the loss reaches its weights
    loss.backward()
    assert student.body.weight.grad is not None and student.body.weight.grad.abs().sum() > 0


def test_a_depth_student_pairs_the_teachers_last_calls() -> None:
    """A student with 1 of the teacher's 3 repeats: its one call is asked for the teacher's
    last call's features (as its output is for the teacher's output), not the first's."""
    torch.manual_seed(0)
    teacher = Twice(repeats=3).eval()
    shallow = Twice(repeats=1).eval()
    shallow.load_state_dict(teacher.state_dict())
    term = _term(teacher, shallow, identity_map(shallow), layers=("body",))
    x = _images(size=16)
    loss, mine, theirs = _features(term, teacher, shallow, x)
    assert len(mine["body"]) == 1 and len(theirs["body"]) == 3  # the first step: all kept
    assert (mine["body"][0] - theirs["body"][0]).abs().mean().item() == 0.0  # the first
    last = (mine["body"][0] - theirs["body"][-1]).abs().mean()
    assert last.item() > 0 and loss.item() == pytest.approx(last.item(), rel=1e-6)
    loss, _, kept = _features(term, teacher, shallow, x)
    assert len(kept["body"]) == 1  # then the teacher keeps no more calls than the student
    assert torch.equal(kept["body"][0], theirs["body"][-1])  # ... its last one
    assert loss.item() == pytest.approx(last.item(), rel=1e-6)


def test_a_removed_block_is_skipped() -> None:
    teacher = Twice().eval()
    student = copy.deepcopy(teacher)
    student.body = nn.Identity()  # what a depth cut leaves
    term = _term(teacher, student, identity_map(student))
    assert [layer.name for layer in term.layers] == ["stem", "head"]


def test_the_loss_by_hand_on_a_one_conv_model() -> None:
    """Teacher 1x1 conv 3 -> 4, student 3 -> 2 keeping channels (1, 3): the Distiller's
    loss is lambda_kd |S(x) - T(x)| + lambda_feat |S_0(x) - T_0(x)[:, (1, 3)]| (means), with
    the gradient of exactly that sum."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 1)).eval()
    student = nn.Sequential(nn.Conv2d(3, 2, 1)).eval()
    kept = {"0": LayerChannels((1, 3), (0, 1, 2))}
    x, target = _images(2, 8), torch.rand(2, 2, 8, 8)
    term = _term(teacher, student, kept, lambda_feat=0.5)
    distiller = Distiller(student, 1e-3, 2.0, CPU, PRECISION, features=term)
    reference = copy.deepcopy(student)
    with torch.no_grad():
        t0 = teacher(x)[:, [1, 3]]
    s0 = reference(x)
    kd_hand = 2.0 * (s0 - target).abs().mean()
    feat_hand = (s0 - t0).abs().mean()
    (kd_hand + 0.5 * feat_hand).backward()
    with torch.no_grad(), term.teacher_tap() as tap:
        teacher(x)
    kd = distiller.step(x, target, tap.calls())
    assert kd == pytest.approx(kd_hand.item(), rel=1e-6)
    assert distiller.last_feature_loss == pytest.approx(feat_hand.item(), rel=1e-6)
    for mine, want in zip(student.parameters(), reference.parameters()):
        assert torch.allclose(mine.grad, want.grad, atol=1e-7)
    with pytest.raises(ValueError, match="needs the teacher's features"):
        distiller.step(x, target)


def test_feature_loss_by_hand() -> None:
    s = {"a": [torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)], "b": [torch.zeros(1, 3)],
         "gone": [torch.ones(1, 1)]}
    t = {"a": [torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)],
         "b": [torch.full((1, 3), 0.25)], "gone": []}
    # a: the student's 2 calls with the teacher's last 2: mean(|1 - 0|, |0 - 1|) = 1
    # (the first 2 would give 0.5); b: 0.25; gone: no teacher call, skipped
    assert float(feature_loss(s, t)) == pytest.approx((1.0 + 0.25) / 2)
    with pytest.raises(ValueError, match="b call 1"):
        feature_loss({"b": [torch.zeros(1, 2)]}, {"b": [torch.zeros(1, 3)]})


# --- off: nothing hooked; on: in the joint loop and offline ----------------------------------

def test_lambda_feat_zero_registers_no_hooks(monkeypatch) -> None:
    assert FeatureDistillation.build(FeatureSettings(), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1),
                                     {}) is None
    registered: list[nn.Module] = []
    original = nn.Module.register_forward_hook

    def spy(self: nn.Module, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        registered.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "register_forward_hook", spy)
    trainer = _trainer(None)
    trainer.run(2)
    assert registered == [] and "feat" not in trainer.history[-1]
    assert "lambda_feat" not in trainer.recorded()  # checkpoints stay as they were


def _trainer(settings: FeatureSettings | None, inputs: str = "dreams",
             seed: int = 0) -> JointTrainer:
    teacher, student = _teacher_student()
    generator = torch.Generator().manual_seed(seed)
    source = make_input_source(inputs, teacher, make_clean_source(None),
                               DreamSchedule(batch_size=2, size=16), generator, CPU, PRECISION)
    term = None if settings is None else FeatureDistillation.build(
        settings, teacher.network, student.network, identity_map(student.network), teacher)
    distiller = Distiller(student, 1e-3, 1.0, CPU, PRECISION, features=term)
    return JointTrainer(source, distiller, round_steps=3, generator=generator)


@pytest.mark.parametrize("inputs", ["dreams", "mixed"])
def test_the_joint_loop_reuses_the_teachers_forward(inputs: str) -> None:
    """As many teacher forwards per step with the term as without (one per source); the
    mixed batch's features are both halves', in the batch's order."""
    counts = []
    for settings in (None, FeatureSettings(0.5)):
        trainer = _trainer(settings, inputs)
        forwards = [0]
        root = trainer.inputs.dreamer.teacher  # the adapter every source runs
        handle = root.register_forward_pre_hook(lambda *_: forwards.__setitem__(0,
                                                                                forwards[0] + 1))
        trainer.run(2)
        handle.remove()
        counts.append(forwards[0])
    assert counts[0] == counts[1] == 2 * (1 if inputs == "dreams" else 2)
    history = trainer.history
    assert all(h["feat"] > 0 and h["kd"] > 0 for h in history)
    term = trainer.distiller.features
    with term.teacher_tap() as tap:
        drawn = trainer.inputs.step()
    first = term.layers[0].name
    assert tap.calls()[first][0].shape[0] == drawn.inputs.shape[0] == 2


def test_resume_refuses_a_changed_feature_setting(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    _trainer(FeatureSettings(0.5)).run(2, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert state["recorded"]["lambda_feat"] == 0.5 and state["recorded"]["feat_layers"] == []
    resumed = _trainer(FeatureSettings(0.5), seed=7)
    resumed.load(checkpoint)
    resumed.run(3)
    for settings, name, before in ((None, "lambda_feat", "0.5"),
                                   (FeatureSettings(0.25), "lambda_feat", "0.5"),
                                   (FeatureSettings(0.5, ("pre.*",)), "feat_layers", "[]")):
        with pytest.raises(UsageError) as refused:
            _trainer(settings).load(checkpoint)
        message = str(refused.value)
        assert message.startswith(f"{name} ") and f"with {name} {before}" in message, message
        assert "\n" not in message and refused.value.exit_code == 2
    plain = tmp_path / "plain.pt"  # a run without the term cannot be resumed with it
    _trainer(None).run(1, checkpoint=plain)
    with pytest.raises(UsageError, match=r"^lambda_feat 0.5: .* with lambda_feat 0.0"):
        _trainer(FeatureSettings(0.5)).load(plain)


def test_offline_runs_the_teacher_once_per_step() -> None:
    teacher, student = _teacher_student()
    term = FeatureDistillation.build(FeatureSettings(1.0), teacher.network, student.network,
                                     identity_map(student.network), teacher)
    distiller = Distiller(student, 1e-3, 1.0, CPU, PRECISION, features=term)
    forwards = [0]
    teacher.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    result = distill_offline(distiller, teacher, _images(5, 16), 3, 2,
                             torch.Generator().manual_seed(0))
    assert forwards[0] == 3 and [h["step"] for h in result.history] == [1, 2, 3]
    assert all(h["feat"] > 0 for h in result.history)


def test_dreamer_teacher_forward_is_the_one_hooked() -> None:
    """The features recorded during a dream step are the teacher's on the dreams it scored
    (the student's inputs), not on the updated dreams."""
    teacher, student = _teacher_student()
    term = FeatureDistillation.build(FeatureSettings(1.0), teacher.network, student.network,
                                     identity_map(student.network), teacher)
    assert term is not None
    dreamer = Dreamer(teacher, make_clean_source(None), DreamSchedule(batch_size=2, size=16),
                      torch.Generator().manual_seed(0), CPU, PRECISION)
    with term.teacher_tap() as tap:
        drawn = dreamer.step()
    with torch.no_grad(), term.teacher_tap() as again:
        teacher(drawn.dreams)
    name = term.layers[0].name
    assert torch.allclose(tap.calls()[name][0], again.calls()[name][0], atol=1e-6)


# --- settings --------------------------------------------------------------------------------

def test_feature_settings_precedence_and_record(tmp_path: Path, monkeypatch) -> None:
    from dreamprune_cli import settings as settings_module
    from dreamprune_cli.run_record import DEFINING

    assert (Settings().distill.lambda_feat, Settings().distill.feat_layers) == (0.0, [])
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "ffa.toml").write_text("[distill]\nlambda_feat = 0.1\n")
    monkeypatch.setattr(settings_module, "presets_dir", lambda: presets)
    r = resolve_settings({"model": "ffa"}, env={})
    assert r.settings.distill.lambda_feat == 0.1 and r.sources["lambda_feat"].startswith(
        "preset ")
    config = tmp_path / "c.toml"
    config.write_text("[distill]\nlambda_feat = 0.2\nfeat_layers = [\"conv*\"]\n")
    r = resolve_settings({"model": "ffa"}, config=config, env={})
    assert r.settings.distill.lambda_feat == 0.2 and r.sources["lambda_feat"] == \
        f"config {config}"
    assert r.settings.distill.feat_layers == ["conv*"]
    env = {"DREAMPRUNE_LAMBDA_FEAT": "0.3", "DREAMPRUNE_FEAT_LAYERS": "a*,b.*"}
    r = resolve_settings({"model": "ffa"}, config=config, env=env)
    assert r.settings.distill.lambda_feat == 0.3 and r.settings.distill.feat_layers == [
        "a*", "b.*"]
    r = resolve_settings({"model": "ffa", "lambda_feat": 0.5}, config=config, env=env)
    assert r.settings.distill.lambda_feat == 0.5
    assert r.sources["lambda_feat"] == "flag --lambda-feat"
    for name in ("lambda_feat", "feat_layers"):
        assert name in DEFINING["distill"] and name in DEFINING["pipeline"]
    with pytest.raises(UsageError, match="invalid lambda_feat=-1.0"):
        resolve_settings({"lambda_feat": -1.0}, env={})
    with pytest.raises(UsageError, match="^lambda_feat -1"):
        FeatureSettings(-1.0)
