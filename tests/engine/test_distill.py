"""``dreamprune_cli.engine.distill``: the student's recovery schedule (learning-rate
schedule, weight average) and dreams seeded from synthetic degraded images: values, masks,
bit-exact resume, refusals."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.synthetic import make_degraded_batch
from dreamprune_cli.engine.distill import Distiller, StudentSchedule, distill_offline
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.joint import JointTrainer
from dreamprune_cli.engine.losses import tv_loss
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.prune.unstructured.masks import get_masks, plain_state_dict
from tests.engine.test_joint import _teacher_student

CPU = torch.device("cpu")
PRECISION = resolve_precision(CPU)


# --- the learning-rate factors -------------------------------------------------------------

def test_cosine_with_warmup_factors_by_hand() -> None:
    """W = 2, T = 10, r = 0.1: updates 1 and 2 at 1/2 and 2/2, then
    r + (1 - r)(1 + cos(pi (t - 2) / 8)) / 2, reaching r after the last update."""
    plan = StudentSchedule("cosine", warmup_steps=2, lr_min_ratio=0.1, total_steps=10)
    expected = {0: 0.5, 1: 1.0, 2: 1.0,
                4: 0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2,  # p = 1/4: cos = sqrt(2)/2
                6: 0.55,  # p = 1/2: half way between 1 and r
                8: 0.1 + 0.9 * (1 - math.sqrt(0.5)) / 2,  # p = 3/4
                10: 0.1, 12: 0.1}  # the floor, and beyond the run
    for done, factor in expected.items():
        assert plan.lr_factor(done) == pytest.approx(factor, abs=1e-12), done
    no_warmup = StudentSchedule("cosine", lr_min_ratio=0.0, total_steps=4)
    assert [no_warmup.lr_factor(t) for t in range(5)] == pytest.approx(
        [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2, 0.0])
    warm_constant = StudentSchedule("constant", warmup_steps=3)
    assert [warm_constant.lr_factor(t) for t in range(5)] == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    assert not StudentSchedule().scheduled and warm_constant.scheduled


def test_the_optimiser_follows_the_factors() -> None:
    """The Distiller's LambdaLR: update k runs at lr * factor(k - 1)."""
    _, student = _teacher_student()
    plan = StudentSchedule("cosine", warmup_steps=2, lr_min_ratio=0.1, total_steps=6)
    distiller = Distiller(student, 1e-3, 1.0, CPU, PRECISION, schedule=plan)
    x = torch.rand((1, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    rates = []
    for _ in range(6):
        rates.append(distiller.lr)
        distiller.step(x, x)
    assert rates == pytest.approx([1e-3 * plan.lr_factor(t) for t in range(6)], rel=1e-12)
    assert distiller.lr == pytest.approx(1e-4)  # after the last update: the floor
    constant = Distiller(_teacher_student()[1], 1e-3, 1.0, CPU, PRECISION)
    assert constant.scheduler is None and constant.average is None  # the method, unchanged


@pytest.mark.parametrize("values, name", [
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(warmup_steps=-1), "warmup_steps"),
    (dict(lr_min_ratio=1.5), "lr_min_ratio"),
    (dict(ema_decay=1.0), "ema_decay"),
    (dict(lr_schedule="cosine", warmup_steps=10, total_steps=10), "warmup_steps"),
])
def test_bad_schedules_are_refused_naming_the_setting(values: dict, name: str) -> None:
    with pytest.raises(UsageError, match=f"^{name} "):
        StudentSchedule(**values)


def test_schedule_from_the_distill_settings() -> None:
    values = {"lr_schedule": "cosine", "warmup_steps": 3, "lr_min_ratio": 0.05,
              "ema_decay": 0.9, "student_lr": 1e-4, "total_steps": 99}
    assert StudentSchedule.from_values(values, 20) == StudentSchedule(
        "cosine", 3, 0.05, 0.9, total_steps=20)


# --- the moving average of the weights ------------------------------------------------------

class _Scale(nn.Module):
    """A one-parameter network: ``x -> w x``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x


def test_ema_equals_the_hand_computed_average_on_one_parameter() -> None:
    """decay d: ema_1 = w_1, ema_2 = d w_1 + (1 - d) w_2, ema_3 = d ema_2 + (1 - d) w_3."""
    student = RestorationAdapter(_Scale(), get_model_info("identity"))
    distiller = Distiller(student, 0.1, 1.0, CPU, PRECISION,
                          schedule=StudentSchedule(ema_decay=0.75, total_steps=3))
    x = torch.full((1, 3, 8, 8), 0.5)
    weights = []
    for _ in range(3):
        distiller.step(x, 2 * x)  # the teacher doubles: w moves towards 2
        weights.append(float(student.network.w.detach()))
    assert weights[0] != weights[1] != weights[2]
    averaged = distiller.average
    assert averaged is not None and int(averaged.n_averaged) == 3
    ema = weights[0]
    for w in weights[1:]:
        ema = 0.75 * ema + 0.25 * w
    assert float(averaged.module.w) == pytest.approx(ema, abs=1e-7)
    assert float(student.network.w.detach()) == weights[-1]  # the raw weight trains on
    distiller.adopt_average()
    assert float(student.network.w.detach()) == pytest.approx(ema, abs=1e-7)


def test_masks_stay_zero_in_the_averaged_student() -> None:
    """The average is of the unmasked ``original`` tensors, with the student's masks kept:
    pruned weights are exactly zero in the average and in the student after adopting it."""
    _, student = _teacher_student()
    masks = get_masks(student.network)
    plan = StudentSchedule("cosine", warmup_steps=1, ema_decay=0.5, total_steps=4)
    distiller = Distiller(student, 1e-2, 1.0, CPU, PRECISION, schedule=plan)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.rand((2, 3, 16, 16), generator=generator)
        distiller.step(x, x.flip(-1))
    assert distiller.average is not None
    averaged = plain_state_dict(distiller.average.module)
    raw = plain_state_dict(student.network)
    for name, mask in masks.items():
        assert torch.equal(get_masks(distiller.average.module)[name], mask)
        assert torch.all(averaged[f"{name}.weight"][~mask] == 0), name
    assert any(not torch.equal(averaged[f"{name}.weight"], raw[f"{name}.weight"])
               for name in masks)  # an average, not the raw weights
    distiller.adopt_average()
    adopted = plain_state_dict(student.network)
    assert get_masks(student.network).keys() == masks.keys()
    for key, value in averaged.items():
        assert torch.equal(adopted[key], value), key
    for name, mask in masks.items():
        assert torch.all(adopted[f"{name}.weight"][~mask] == 0), name


def test_ema_of_a_plain_student_and_offline() -> None:
    """A student without masks (as channel and depth students are) averages every weight;
    the offline loop keeps the average too."""
    teacher, _ = _teacher_student()
    torch.manual_seed(1)
    student = RestorationAdapter(build_model("ffa", "tiny", blocks=1), get_model_info("ffa"))
    start = copy.deepcopy(student.network.state_dict())
    plan = StudentSchedule("cosine", ema_decay=0.9, total_steps=3)
    distiller = Distiller(student, 1e-3, 1.0, CPU, PRECISION, schedule=plan)
    dreams = torch.rand((4, 3, 16, 16), generator=torch.Generator().manual_seed(2))
    result = distill_offline(distiller, teacher, dreams, 3, 2,
                             torch.Generator().manual_seed(3))
    assert result.steps == 3 and distiller.average is not None
    assert int(distiller.average.n_averaged) == 3
    assert distiller.lr == pytest.approx(1e-3 * 0.01)
    distiller.adopt_average()
    after = student.network.state_dict()
    for key, value in distiller.average.module.state_dict().items():
        assert torch.equal(after[key], value), key
    assert any(not torch.equal(after[k], start[k]) for k in start)


# --- resume ----------------------------------------------------------------------------------

def _trainer(plan: StudentSchedule, dream_init: str = "noise", seed: int = 0) -> JointTrainer:
    teacher, student = _teacher_student()
    generator = torch.Generator().manual_seed(seed)
    schedule = DreamSchedule(batch_size=2, size=16, dream_init=dream_init)  # type: ignore[arg-type]
    dreamer = Dreamer(teacher, make_clean_source(None), schedule, generator, CPU, PRECISION)
    distiller = Distiller(student, 1e-3, 1.0, CPU, PRECISION, schedule=plan)
    return JointTrainer(dreamer, distiller, round_steps=3, generator=generator)


PLAN = StudentSchedule("cosine", warmup_steps=2, lr_min_ratio=0.05, ema_decay=0.8,
                       total_steps=7)


@pytest.mark.parametrize("dream_init", ["noise", "synthetic"])
def test_resume_mid_schedule_matches_uninterrupted(tmp_path: Path, dream_init: str) -> None:
    """7 steps straight = 4 steps, a checkpoint, a resume to 7, bit for bit on the CPU: the
    raw student, its average, the learning rate, the dreams, the history."""
    straight = _trainer(PLAN, dream_init)
    straight.run(7)
    first = _trainer(PLAN, dream_init)
    first.run(4, checkpoint=tmp_path / "checkpoint.pt", checkpoint_every=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["distiller"]["scheduler"]["last_epoch"] == 4
    assert int(state["distiller"]["average"]["n_averaged"]) == 4
    assert state["recorded"] == {"lr_schedule": "cosine", "warmup_steps": 2,
                                 "ema_decay": 0.8, "lr_min_ratio": 0.05, "steps": 7,
                                 "dream_init": dream_init}
    resumed = _trainer(PLAN, dream_init, seed=123)  # the checkpoint replaces its generator
    resumed.load(tmp_path / "checkpoint.pt")
    assert resumed.step == 4 and resumed.distiller.lr == first.distiller.lr
    resumed.run(7)
    assert resumed.distiller.lr == straight.distiller.lr
    for name in ("student", "average"):
        a = straight.distiller.state_dict()[name]
        b = resumed.distiller.state_dict()[name]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert torch.equal(straight.dreamer.dreams, resumed.dreamer.dreams)
    assert straight.history == resumed.history


@pytest.mark.parametrize("changed, name, before", [
    (dict(plan=StudentSchedule("constant", ema_decay=0.8, total_steps=7)), "lr_schedule",
     "cosine"),
    (dict(plan=StudentSchedule("cosine", warmup_steps=1, lr_min_ratio=0.05, ema_decay=0.8,
                               total_steps=7)), "warmup_steps", "2"),
    (dict(plan=StudentSchedule("cosine", warmup_steps=2, lr_min_ratio=0.1, ema_decay=0.8,
                               total_steps=7)), "lr_min_ratio", "0.05"),
    (dict(plan=StudentSchedule("cosine", warmup_steps=2, lr_min_ratio=0.05, ema_decay=0.8,
                               total_steps=9)), "steps", "7"),
    (dict(plan=StudentSchedule("cosine", warmup_steps=2, lr_min_ratio=0.05, ema_decay=0.5,
                               total_steps=7)), "ema_decay", "0.8"),
    (dict(plan=PLAN, dream_init="synthetic"), "dream_init", "noise"),
])
def test_resume_refuses_a_changed_setting(tmp_path: Path, changed: dict, name: str,
                                          before: str) -> None:
    _trainer(PLAN).run(2, checkpoint=tmp_path / "checkpoint.pt")
    with pytest.raises(UsageError) as refused:
        _trainer(**changed).load(tmp_path / "checkpoint.pt")
    message = str(refused.value)
    assert message.startswith(f"{name} ") and f"with {name} {before}" in message
    assert "\n" not in message and refused.value.exit_code == 2


def test_a_checkpoint_of_an_earlier_version_resumes_with_the_method(tmp_path: Path) -> None:
    """No recorded settings, no scheduler or average: constant rate, no average, noise."""
    method = StudentSchedule()
    _trainer(method).run(2, checkpoint=tmp_path / "checkpoint.pt")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["recorded"], state["distiller"]["scheduler"], state["distiller"]["average"]
    torch.save(state, tmp_path / "old.pt")
    _trainer(method).load(tmp_path / "old.pt")
    with pytest.raises(UsageError, match="^ema_decay 0.5: .* with ema_decay 0.0"):
        _trainer(StudentSchedule(ema_decay=0.5)).load(tmp_path / "old.pt")


# --- dreams seeded from synthetic degraded images -------------------------------------------

def _dreamer(model: str, seed: int, **schedule: object) -> Dreamer:
    torch.manual_seed(0)
    teacher = RestorationAdapter(build_model(model, "tiny"), get_model_info(model))
    plan = DreamSchedule(batch_size=3, size=32, **schedule)  # type: ignore[arg-type]
    return Dreamer(teacher, make_clean_source(None), plan, torch.Generator().manual_seed(seed),
                   CPU, PRECISION)


@pytest.mark.parametrize("model, task", [("ffa", "dehaze"), ("identity", "derain")])
def test_seeded_dreams_start_as_the_synthetic_images(model: str, task: str) -> None:
    """Step 0 scores exactly make_degraded_batch's images (seeded by one draw from the run's
    generator), dreamed towards their clean scenes; they carry the task's degradation
    (brighter than the scene: haze's airlight, rain's streaks; haze lowers the contrast),
    and they are scenes, far smoother than the noise a round of the method starts from."""
    dreamer = _dreamer(model, 7, dream_init="synthetic", lambda_orth=0.0)
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(7)))
    degraded, clean = make_degraded_batch(task, 3, 32, seed)
    first = dreamer.step()  # starts the round
    torch.testing.assert_close(first.dreams, degraded, atol=1e-6, rtol=0)
    assert torch.equal(dreamer.clean, clean)
    assert float(first.dreams.min()) >= 0.0 and float(first.dreams.max()) <= 1.0
    means = first.dreams.mean(dim=(1, 2, 3))
    assert torch.all(means > clean.mean(dim=(1, 2, 3)))
    if task == "dehaze":
        assert torch.all(first.dreams.std(dim=(1, 2, 3)) < clean.std(dim=(1, 2, 3)))
    assert not torch.equal(dreamer.dreams.detach(), first.dreams)  # then inversion moves them
    noise = _dreamer(model, 7, lambda_orth=0.0).step().dreams  # pixel noise: no scene
    assert float(tv_loss(first.dreams)) < 0.5 * float(tv_loss(noise))


def test_a_new_round_seeds_new_synthetic_images() -> None:
    dreamer = _dreamer("ffa", 0, dream_init="synthetic")
    dreamer.new_round()
    first = dreamer.dreams.detach().clone()
    dreamer.new_round()
    assert not torch.equal(first, dreamer.dreams.detach())
    with pytest.raises(UsageError, match="^dream_init 'images'"):
        _dreamer("ffa", 0, dream_init="images")
