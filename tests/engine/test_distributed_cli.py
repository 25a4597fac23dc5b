"""The commands over 2 processes, started as torchrun starts them (Gloo on the CPU): outputs
from rank 0 only, evaluation equal to one process, interrupt and resume across ranks, and
the refusal of a checkpoint written by another number of processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamprune_cli.cli import app
from tests.engine import distributed_workers as workers
from tests.runs.test_commands import _ffa_weights

pytestmark = [pytest.mark.slow,  # whole commands, end to end (CI runs them too)
              pytest.mark.skipif(not torch.distributed.is_available()
                                 or not torch.distributed.is_gloo_available(),
                                 reason="this torch build has no Gloo backend")]

TINY = ["--variant", "tiny", "--device", "cpu", "--size", "32", "--batch-size", "4",
        "--threads", "1"]


def _pipeline_args(weights: Path, pair_dirs: tuple[Path, Path], out: Path,
                   steps: int) -> list[str]:
    inputs, targets = pair_dirs
    return ["pipeline", "--weights", str(weights), "--flops-target", "0.58", "--steps",
            str(steps), "--calibration-steps", "2", "--flops-size", "64", "--out", str(out),
            "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets),
            "--checkpoint-every", "2", *TINY, "--json"]


def _ok(results: list[tuple[int, str, str]]) -> dict:
    for rank, (code, _, err) in enumerate(results):
        assert code == 0, f"rank {rank}: exit {code}\n{err}"
    assert results[1][1] == ""  # results are printed by rank 0 only
    return json.loads(results[0][1])


def test_evaluate_on_two_ranks_equals_one_process(runner, tmp_path: Path, pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    inputs, targets = pair_dirs
    args = ["evaluate", "--weights", str(weights), "--variant", "tiny", "--device", "cpu",
            "--input-dir", str(inputs), "--target-dir", str(targets), "--json"]
    two = _ok(workers.finish(workers.launch_cli(args)))
    one = runner.invoke(app, args)
    assert one.exit_code == 0, one.output
    single = json.loads(one.stdout)
    assert two["count"] == single["count"] == 3
    assert two["psnr"] == single["psnr"] and two["ssim"] == single["ssim"]
    assert two["per_image"] == single["per_image"] and two["macs"] == single["macs"]


def test_pipeline_interrupt_and_resume_across_ranks(runner, tmp_path: Path,
                                                    pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    out = tmp_path / "run"
    processes = workers.launch_cli(_pipeline_args(weights, pair_dirs, out, steps=10_000))
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.is_file() and time.monotonic() < deadline \
            and all(p.poll() is None for p in processes):
        time.sleep(0.2)
    assert checkpoint.is_file(), [p.communicate()[1] for p in processes]
    processes[1].send_signal(signal.SIGINT)  # Ctrl-C on one rank stops every rank
    results = workers.finish(processes)
    assert [code for code, _, _ in results] == [130, 130], [err for _, _, err in results]
    assert "--resume" in results[0][2]
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    done = int(state["step"])
    assert 2 <= done < 10_000
    assert not torch.equal(state["ranks"][0]["dreamer"]["dreams"],
                           state["ranks"][1]["dreamer"]["dreams"])
    assert not (out / "student.safetensors").exists()

    # one process may not continue a 2-process run
    single = runner.invoke(app, _pipeline_args(weights, pair_dirs, out, done + 2)[:-1]
                           + ["--resume", str(out)])
    assert single.exit_code == 2, single.output
    assert "written by 2 processes and this run has 1" in single.output

    # the same 2 processes continue it, and end where an uninterrupted run ends
    resumed = _ok(workers.finish(workers.launch_cli(
        _pipeline_args(weights, pair_dirs, out, done + 2) + ["--resume", str(out)])))
    assert resumed["steps"] == done + 2
    straight_dir = tmp_path / "straight"
    straight = _ok(workers.finish(workers.launch_cli(
        _pipeline_args(weights, pair_dirs, straight_dir, done + 2))))
    assert straight["steps"] == done + 2
    got = load_file(str(out / "student.safetensors"))
    want = load_file(str(straight_dir / "student.safetensors"))
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, atol=1e-6, rtol=0, msg=key)
    assert resumed["psnr_student"] == pytest.approx(straight["psnr_student"], abs=1e-4)
    for name in ("report.json", "report.md", "grid.png", "dreams.png", "losses.csv",
                 "masks.safetensors", "prune/student.safetensors", "run.json"):
        assert (straight_dir / name).is_file(), name


def test_two_ranks_refuse_a_single_process_checkpoint(runner, tmp_path: Path,
                                                      pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    out = tmp_path / "run"
    first = runner.invoke(app, _pipeline_args(weights, pair_dirs, out, steps=2))
    assert first.exit_code == 0, first.output
    results = workers.finish(workers.launch_cli(
        _pipeline_args(weights, pair_dirs, out, steps=4) + ["--resume", str(out)]))
    for code, _, err in results:  # every rank stops with the same one-line error
        assert code == 2, err
        assert "written by 1 process and this run has 2" in err


def test_batch_not_divisible_and_unsupported_command(tmp_path: Path, pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    args = _pipeline_args(weights, pair_dirs, tmp_path / "run", steps=2)
    args[args.index("--batch-size") + 1] = "3"
    for code, _, err in workers.finish(workers.launch_cli(args)):
        assert code == 2 and "--batch-size 3: not a multiple of the 2 processes" in err
    assert not (tmp_path / "run").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "yours.txt").write_text("a file of the user's")
    args = _pipeline_args(weights, pair_dirs, busy, steps=2)
    for code, _, err in workers.finish(workers.launch_cli(args)):  # rank 0's refusal, on all
        assert code == 2 and "directory is not empty" in err
    prune = ["prune", "--weights", str(weights), "--variant", "tiny", "--out",
             str(tmp_path / "p")]
    for code, _, err in workers.finish(workers.launch_cli(prune)):
        assert code == 2 and "'prune' runs in one process" in err


def test_dream_on_two_ranks(tmp_path: Path) -> None:
    weights = _ffa_weights(tmp_path)
    out = tmp_path / "dreams"
    args = ["dream", "--weights", str(weights), "--save-dir", str(out), "--count", "6",
            "--steps", "3", *TINY, "--json"]
    data = _ok(workers.finish(workers.launch_cli(args)))
    assert data["count"] == 6
    tensors = load_file(str(out / "dreams.safetensors"))
    assert tensors["dreams"].shape == (6, 3, 32, 32)
    # the two halves of a batch come from the two ranks' own generators
    assert not torch.equal(tensors["clean"][0], tensors["clean"][2])
    assert sorted(p.name for p in out.glob("dream_*.png")) == [f"dream_{i:03d}.png"
                                                               for i in range(6)]
    assert not (out / "state.pt").exists()


def test_under_torchrun_itself(runner, tmp_path: Path, pair_dirs) -> None:
    """``torchrun --standalone --nproc-per-node 2 -m dreamprune_cli evaluate``: the launcher's
    own environment (rendezvous, ranks, OMP_NUM_THREADS) is what the commands expect."""
    weights = _ffa_weights(tmp_path)
    inputs, targets = pair_dirs
    args = ["evaluate", "--weights", str(weights), "--variant", "tiny", "--device", "cpu",
            "--input-dir", str(inputs), "--target-dir", str(targets), "--json"]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("DREAMPRUNE_") or key == "DREAMPRUNE_CACHE"}
    env["PYTHONPATH"] = str(workers.REPO)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "dreamprune_cli", *args],
                          cwd=workers.REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # one JSON object, from rank 0
    one = runner.invoke(app, args)
    assert json.loads(lines[0])["psnr"] == json.loads(one.stdout)["psnr"]
