"""``dreamprune_cli.engine.dream``: the image terms shape the dreams, and the schedule comes
from the dream settings. (Dreaming inside the joint loop: ``test_joint.py``.)"""

from __future__ import annotations

import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.losses import coarse_distance, tv_loss
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.settings import resolve_settings
from tests.helpers import masked_ffa_pair as _teacher_student

CPU = torch.device("cpu")


def test_dream_image_terms_change_the_dreams() -> None:
    """lambda_tv smooths the dreams; lambda_far moves their coarse content off the targets."""
    def dreams_after(**terms: float) -> tuple[torch.Tensor, torch.Tensor]:
        teacher, _ = _teacher_student()
        schedule = DreamSchedule(batch_size=2, size=16, far_pool=4, noise_lr=0.01, **terms)
        dreamer = Dreamer(teacher, make_clean_source(None), schedule,
                          torch.Generator().manual_seed(0), CPU, resolve_precision(CPU))
        for _ in range(15):
            dreamer.step()
        return dreamer.dreams.detach(), dreamer.clean

    plain, clean = dreams_after()
    smooth, _ = dreams_after(lambda_tv=10.0)
    far, _ = dreams_after(lambda_far=10.0)
    assert float(tv_loss(smooth)) < 0.9 * float(tv_loss(plain))
    assert float(coarse_distance(far, clean, 4)) > 1.5 * float(coarse_distance(plain, clean, 4))
    assert 0.0 <= float(far.min()) and float(far.max()) <= 1.0


def test_schedule_from_the_dream_settings() -> None:
    """Every field of the schedule comes from the settings by name; other keys are ignored."""
    dream = resolve_settings({"model": "ffa", "lambda_far": 0.2}, env={}).settings.dream
    schedule = DreamSchedule.from_values(dream.model_dump())
    assert schedule == DreamSchedule(noise_lr=dream.noise_lr, lambda_orth=dream.lambda_orth,
                                      lambda_tv=dream.lambda_tv, lambda_far=0.2,
                                      far_pool=dream.far_pool,
                                      representation=dream.representation,
                                      batch_size=dream.batch_size, size=dream.size)
    assert DreamSchedule.from_values({"size": 32, "round_steps": 9}) == DreamSchedule(size=32)
