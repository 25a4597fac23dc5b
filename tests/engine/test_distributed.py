"""The engine over 2 processes (Gloo on the CPU) against one process doing the same work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamprune_cli.engine import distributed
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import Dreamer
from dreamprune_cli.engine.evaluate import evaluate_pairs
from dreamprune_cli.engine.losses import distill_loss
from dreamprune_cli.errors import UsageError
from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.prune.unstructured.masks import plain_state_dict
from tests.engine import distributed_workers as workers

pytestmark = pytest.mark.skipif(not torch.distributed.is_available()
                                or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no Gloo backend")

CPU = torch.device("cpu")


def _load(out: Path, rank: int) -> dict:
    return torch.load(out / f"rank{rank}.pt", weights_only=False)  # written by the test


def test_two_rank_student_equals_averaged_gradients(tmp_path: Path) -> None:
    steps = 3
    workers.spawn(workers.joint_body, tmp_path, steps)
    ranks = [_load(tmp_path, rank) for rank in range(workers.WORLD)]
    # the ranks dreamed different batches, yet hold the same student
    assert not torch.equal(ranks[0]["seen"][0][0], ranks[1]["seen"][0][0])
    for key, value in ranks[0]["student"].items():
        assert torch.equal(value, ranks[1]["student"][key]), key
    # one process: the same per-rank batches, gradients averaged, one Adam step each
    _, student = workers.teacher_student()
    reference = Distiller(student, workers.STUDENT_LR, 1.0, CPU, resolve_precision(CPU))
    for step in range(steps):
        reference.optimizer.zero_grad(set_to_none=True)
        for rank in ranks:
            inputs, target = rank["seen"][step]
            (distill_loss(reference.student(inputs), target) / len(ranks)).backward()
        reference.optimizer.step()
    expected = plain_state_dict(student.network)
    for key, value in ranks[0]["student"].items():
        torch.testing.assert_close(value, expected[key], atol=1e-6, rtol=0, msg=key)
    # masks identical on every rank, pruned weights exactly zero
    weights = dict(ranks[0]["student"])
    for name, mask in ranks[0]["masks"].items():
        assert torch.equal(mask, ranks[1]["masks"][name])
        assert torch.all(weights[f"{name}.weight"][~mask] == 0), name
    # the recorded losses are the ranks' means, the same in both histories
    assert ranks[0]["history"] == ranks[1]["history"]


def test_two_rank_weight_average_is_of_the_unwrapped_student(tmp_path: Path) -> None:
    """With DistributedDataParallel, the average is of the (unwrapped) student every rank
    holds: the same on both ranks, the hand-computed EMA of the raw weights, masks zero."""
    steps, decay = 3, 0.6
    workers.spawn(workers.ema_body, tmp_path, steps)
    ranks = [_load(tmp_path, rank) for rank in range(workers.WORLD)]
    assert ranks[0]["lr"] == ranks[1]["lr"] == pytest.approx(workers.STUDENT_LR * 0.01)
    for key, value in ranks[0]["adopted"].items():
        assert torch.equal(value, ranks[1]["adopted"][key]), key
        ema = ranks[0]["raw"][0][key]
        for raw in ranks[0]["raw"][1:]:
            ema = decay * ema + (1 - decay) * raw[key]
        torch.testing.assert_close(value, ema, atol=1e-6, rtol=0, msg=key)
    assert any(not torch.equal(v, ranks[0]["raw"][-1][k]) for k, v in ranks[0]["adopted"].items())
    for name, mask in ranks[0]["masks"].items():
        assert torch.all(ranks[0]["adopted"][f"{name}.weight"][~mask] == 0), name


@pytest.mark.parametrize("inputs", ["synthetic", "mixed"])
def test_two_ranks_on_synthetic_and_mixed_inputs(tmp_path: Path, inputs: str) -> None:
    """Each rank draws its own share (synthetic: 2 of 4; mixed: 1 dream and 1 synthetic image
    of 2 + 2), the ranks keep one student, and a resume over both ranks is bit-identical."""
    workers.spawn(workers.inputs_body, tmp_path, inputs)
    ranks = [_load(tmp_path, rank) for rank in range(workers.WORLD)]
    assert ranks[0]["seen"][0][0].shape == (2, 3, 16, 16)
    assert not torch.equal(ranks[0]["seen"][0][0], ranks[1]["seen"][0][0])
    assert ranks[0]["history"] == ranks[1]["history"]
    assert (set(ranks[0]["history"][0]) == {"step", "kd"}) == (inputs == "synthetic")
    for rank in ranks:
        assert rank["resumed_history"] == rank["history"]
        for key, value in rank["straight"].items():
            assert torch.equal(value, ranks[0]["straight"][key]), key
            assert torch.equal(value, rank["resumed"][key]), key


def test_two_rank_dreams_equal_one_process_with_the_whole_batch(tmp_path: Path) -> None:
    """Global L_orth: each rank's dreams move as one process's with the global batch."""
    steps = 3
    workers.spawn(workers.dream_body, tmp_path, steps)
    ranks = [_load(tmp_path, rank) for rank in range(workers.WORLD)]
    assert ranks[0]["dreams"].shape[0] == workers.SCHEDULE.batch_size // workers.WORLD
    teacher, _ = workers.teacher_student()
    dreamer = Dreamer(teacher, make_clean_source(None), workers.SCHEDULE,
                      torch.Generator().manual_seed(0), CPU, resolve_precision(CPU))
    dreamer.load_state_dict({"dreams": torch.cat([r["dreams"] for r in ranks]),
                             "clean": torch.cat([r["clean"] for r in ranks]),
                             "optimizer": None, "scaler": dreamer.scaler.state_dict()})
    orth = [dreamer.step().orth_loss for _ in range(steps)]
    torch.testing.assert_close(torch.cat([r["final"] for r in ranks]),
                               dreamer.dreams.detach(), atol=1e-5, rtol=0)
    for rank in ranks:  # every rank computed L_orth over the whole batch
        assert rank["orth"] == pytest.approx(orth, rel=1e-5)


def test_two_rank_evaluation_equals_one_process(tmp_path: Path, pair_dirs) -> None:
    pairs = pair_folders(*pair_dirs)  # 3 images: an uneven split
    workers.spawn(workers.evaluate_body, tmp_path, pairs)
    teacher, _ = workers.teacher_student()
    single = evaluate_pairs(teacher, pairs, "rgb", 0, CPU, keep_outputs=2)
    for rank in range(workers.WORLD):
        merged = _load(tmp_path, rank)["result"]
        assert merged.count == single.count == 3
        assert merged.psnr == single.psnr and merged.ssim == single.ssim
        assert merged.per_image == single.per_image
        assert merged.macs == single.macs and merged.macs_256 == single.macs_256
        assert len(merged.outputs) == 2
        for got, want in zip(merged.outputs, single.outputs):
            assert torch.equal(got, want)


def test_not_launched_means_single_process() -> None:
    assert not distributed.launched({})
    assert not distributed.launched({"RANK": "0", "WORLD_SIZE": "1"})
    assert distributed.launched({"RANK": "1", "WORLD_SIZE": "2"})
    assert distributed.launch_rank({"RANK": "1", "WORLD_SIZE": "2"}) == 1
    assert distributed.join_from_environment(CPU, env={}) is None
    assert distributed.rank_seed(7, None) == 7


def test_rank_helpers() -> None:
    sync = distributed.RankSync(rank=1, world_size=2, local_rank=1, device=CPU)
    assert distributed.rank_seed(7, sync) == 7 + distributed.RANK_SEED_STRIDE
    assert list(distributed.shard(5, sync)) == [1, 3]
    assert distributed.split_batch(8, sync) == 4
    with pytest.raises(UsageError, match="batch_size 3: not a multiple of the 2"):
        distributed.split_batch(3, sync)
    state = {"step": 3, "world_size": 2,
             "ranks": [{"generator": "g0", "dreamer": "d0"}, {"generator": "g1", "dreamer": "d1"}]}
    assert distributed.rank_state(state, sync) == {"step": 3, "world_size": 2,
                                                   "generator": "g1", "dreamer": "d1"}


def test_world_size_mismatch_is_refused() -> None:
    two = distributed.RankSync(rank=0, world_size=2, local_rank=0, device=CPU)
    distributed.check_world_size({"step": 1}, None, "ckpt")  # one process wrote it
    distributed.check_world_size({"step": 1, "world_size": 2}, two, "ckpt")
    with pytest.raises(UsageError, match="ckpt was written by 2 processes and this run has 1"):
        distributed.check_world_size({"step": 1, "world_size": 2}, None, "ckpt")
    with pytest.raises(UsageError, match="written by 1 process and this run has 2"):
        distributed.check_world_size({"step": 1}, two, "ckpt")


def test_unsupported_commands_refused_under_torchrun() -> None:
    env = {"RANK": "0", "WORLD_SIZE": "2"}
    distributed.refuse_launched("pipeline", env)
    with pytest.raises(UsageError, match="'prune' runs in one process"):
        distributed.refuse_launched("prune", env)
    distributed.refuse_launched("prune", {})


def test_explicit_gpu_index_refused_under_torchrun() -> None:
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    with pytest.raises(UsageError, match="device mps"):
        distributed.join_from_environment(torch.device("mps"), env=env)


def test_dream_images_resume_across_ranks(tmp_path: Path) -> None:
    workers.spawn(workers.dream_resume_body, tmp_path)
    ranks = [_load(tmp_path, rank) for rank in range(workers.WORLD)]
    state = ranks[0]["state"]
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert len(state["ranks"][0]["dreams"]) == 1  # one finished batch, each rank's half
    assert state["ranks"][0]["dreams"][0].shape[0] == workers.SCHEDULE.batch_size // 2
    for rank in ranks:  # every rank returns the whole set, the same after a resume
        assert rank["straight"].shape[0] == 8
        assert torch.equal(rank["straight"], rank["resumed"])
        assert torch.equal(rank["straight"], ranks[0]["straight"])
