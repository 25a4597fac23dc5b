"""Several processes, GPUs or machines: the runs on ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node N -m dreamprune_cli pipeline ...`` starts N copies of the command;
torchrun gives each its ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address
(``MASTER_ADDR``/``MASTER_PORT``). :func:`join_from_environment` reads them and joins the
process group: NCCL when the run is on CUDA (rank ``r`` of a machine on ``cuda:LOCAL_RANK``),
Gloo on the CPU. Without those variables (a plain ``dreamprune ...``) nothing here runs and
every loop behaves exactly as before: the engine's ``sync`` arguments stay ``None``.

What each part of a run does over N ranks (one :class:`RankSync` carries the collectives):

* dreaming: the global batch of ``batch_size`` dreams is split, ``batch_size / N`` per rank,
  each drawn from the rank's own generator (:func:`rank_seed`). ``L_orth`` is global: every
  rank's penultimate representations are gathered *with their gradients*
  (:meth:`RankSync.gather_rows`), so the diversity term pushes apart all ``batch_size`` dreams,
  as one process with the whole batch does; each rank's loss is divided by N so that the
  gradient reaching its dreams is exactly the one-process gradient (the gather's backward sums
  the N ranks' copies). bench/distributed.py measures what a per-rank ``L_orth`` would change.
* distillation: the student runs in ``DistributedDataParallel`` (:meth:`RankSync.wrap`), so
  its gradients are averaged over the ranks and every rank holds the same student; masks
  are buffers multiplied into the weights, so pruned weights stay exactly zero.
* the losses a loop checks and records are the means over the ranks
  (:meth:`RankSync.mean`), so every rank stops on the same non-finite step; a Ctrl-C or
  SIGTERM received by any rank stops every rank after the same step
  (:meth:`RankSync.first_signal`).
* checkpoints: each rank's own state (its dreams, their optimiser, its generator) is gathered
  into the one file rank 0 writes, with the world size (:meth:`RankSync.gather_state`);
  ``--resume`` gives every rank its own part back (:func:`rank_state`) and refuses a
  checkpoint written by another number of processes (:func:`check_world_size`).
* evaluation: images are dealt out round-robin, each rank scores its share and the scores
  are gathered in the original order (:func:`~dreamprune_cli.engine.evaluate.evaluate_pairs`
  with ``sync``), so the numbers equal one process's.
* files and progress: rank 0 only (:attr:`RankSync.is_writer`); the output folder must be on a
  file system every rank can read (rank 0 writes the pruned student, the others load it).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from dreamprune_cli.errors import DreampruneError, UsageError

log = logging.getLogger(__name__)

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE")
RANK_SEED_STRIDE = 1_000_003  # a prime: rank r's seed is seed + r * stride
TIMEOUT_ENV = "DREAMPRUNE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 3600  # rank 0 may prune (and calibrate) for a while before the others go on


def launched(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting
    ``RANK`` and ``WORLD_SIZE``) with more than one process."""
    env = os.environ if env is None else env
    return all(name in env for name in LAUNCH_VARIABLES) and _int(env, "WORLD_SIZE") > 1


def launch_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's rank from the launcher's variables (0 when not launched)."""
    env = os.environ if env is None else env
    return _int(env, "RANK") if launched(env) else 0


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env.get(name, "0"))
    except ValueError:
        raise UsageError(f"${name}={env[name]!r}: expected an integer (set by torchrun)") \
            from None


T = TypeVar("T")


def is_writer(sync: RankSync | None) -> bool:
    """Whether this process writes the run's files: rank 0, or the only process."""
    return sync is None or sync.is_writer


def on_writer(sync: RankSync | None, action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0 only (everywhere in one process) and give its result to
    every rank; an expected error it raises (:class:`DreampruneError`, e.g. a refused output
    folder) is raised on every rank, so that all stop with rank 0's message (another
    exception ends rank 0, and torchrun then stops the others)."""
    if sync is None:
        return action()
    outcome: tuple[bool, Any] = (True, None)
    if sync.is_writer:
        try:
            outcome = (True, action())
        except DreampruneError as exc:
            outcome = (False, exc)
    ok, value = sync.broadcast(outcome)
    if not ok:
        raise value
    return value


def rank_seed(seed: int, sync: RankSync | None) -> int:
    """The seed of this rank's generator: ``seed`` itself on rank 0 and in a single process
    (so one process draws exactly what it drew before), ``seed + rank * 1_000_003`` on the
    others: a run is reproducible for a given number of processes."""
    return seed if sync is None else seed + sync.rank * RANK_SEED_STRIDE


@dataclass(frozen=True)
class RankSync:
    """This process's place in the job and the collectives the loops need.

    Attributes:
        rank: 0 .. world_size - 1 over every machine.
        world_size: number of processes (>= 2).
        local_rank: index of the process on its machine (its GPU on CUDA).
        device: where this rank computes.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the files and reports progress."""
        return self.rank == 0

    def _tensor(self, values: list[float]) -> torch.Tensor:
        # NCCL only moves tensors on the rank's GPU; Gloo those on the CPU
        return torch.tensor(values, dtype=torch.float64, device=self._comm_device())

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def mean(self, *values: float) -> list[float]:
        """The mean of each value over the ranks (float64; NaN on any rank gives NaN)."""
        tensor = self._tensor(list(values))
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) / self.world_size for v in tensor.cpu()]

    def first_signal(self, received: int | None) -> int | None:
        """The stop signal any rank received since the last call (the highest number when
        several did), else ``None``; every rank gets the same answer."""
        tensor = self._tensor([float(received or 0)])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        number = int(tensor.item())
        return number or None

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's ``rows`` ``(B, ...)`` concatenated in rank order ``(N * B, ...)``,
        differentiable: the gradient of a loss computed identically on every rank reaches
        each rank's rows summed over the N copies (divide that loss by N for its gradient).
        Every rank must pass the same shape."""
        return _GatherRows.apply(rows, self.world_size, self.rank)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in ``DistributedDataParallel``: rank 0's parameters and buffers are
        copied to every rank now, gradients are averaged over the ranks in ``backward``."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device] if self.device.type == "cuda" else None
        # masks and normalisation statistics never change while distilling (eval mode):
        # copied from rank 0 once here, not before every forward; the graph is the same
        # every step
        return DistributedDataParallel(module, device_ids=device_ids,
                                       forward_sync_buffers=False, static_graph=True)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable; tensors moved to the CPU first), in rank order."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, _to_cpu(value))
        return gathered

    def gather_state(self, state: dict[str, Any], per_rank: tuple[str, ...]) -> dict[str, Any]:
        """A checkpoint state holding every rank's part: rank 0's ``state`` with the keys in
        ``per_rank`` replaced by ``state["ranks"][r][key]`` for each rank, and
        ``world_size``. Every rank gets the whole state (for the non-finite check)."""
        parts = self.all_gather({key: state[key] for key in per_rank})
        shared = {key: value for key, value in state.items() if key not in per_rank}
        return {**shared, "world_size": self.world_size, "ranks": parts}

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()


def merge_rank_batches(sync: RankSync, batches: list[tuple[torch.Tensor, torch.Tensor]]
                       ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each global batch whole: for every batch index, the ranks' ``(dreams, clean)``
    ``(B / N, 3, H, W)`` parts concatenated in rank order into ``(B, 3, H, W)``."""
    parts = sync.all_gather(batches)
    return [(torch.cat([rank[index][0] for rank in parts]),
             torch.cat([rank[index][1] for rank in parts])) for index in range(len(batches))]


class _GatherRows(torch.autograd.Function):
    """All-gather along the first dimension whose backward sums the gradients of every
    rank's copy (an all-reduce) and returns this rank's slice: torch's own
    ``torch.distributed.nn.functional.all_gather`` does the same but is deprecated."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, world_size: int, rank: int) -> torch.Tensor:
        parts = [torch.empty_like(rows) for _ in range(world_size)]
        dist.all_gather(parts, rows.contiguous())
        ctx.rows, ctx.rank = rows.shape[0], rank
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def checkpoint_world_size(state: Mapping[str, Any]) -> int:
    """The number of processes that wrote a joint-loop checkpoint (1 for one written
    without the field, i.e. before distributed runs)."""
    return int(state.get("world_size", 1))


def check_world_size(state: Mapping[str, Any], sync: RankSync | None, source: Any) -> None:
    """Refuse to resume a checkpoint written by another number of processes.

    Raises:
        UsageError: ``state`` was written by N processes and this run has another number
            (exit 2), naming ``source`` and the command that would resume it.
    """
    saved = checkpoint_world_size(state)
    current = 1 if sync is None else sync.world_size
    if saved != current:
        how = ("a single process (plain 'dreamprune ...', no torchrun)" if saved == 1 else
               f"{saved} processes (torchrun with {saved} processes in all, e.g. "
               f"--nproc-per-node {saved})")
        raise UsageError(f"$resume: {source} was written by {saved} process"
                         f"{'es' if saved != 1 else ''} and this run has {current}; resume "
                         f"it with {how}")


def rank_state(state: dict[str, Any], sync: RankSync | None) -> dict[str, Any]:
    """This rank's view of a checkpoint: the shared entries plus its own ``ranks`` part
    (the state itself when it was written by one process)."""
    if "ranks" not in state:
        return state
    rank = 0 if sync is None else sync.rank
    shared = {key: value for key, value in state.items() if key != "ranks"}
    return {**shared, **state["ranks"][rank]}


def split_batch(batch_size: int, sync: RankSync | None, option: str = "$batch_size") -> int:
    """Each rank's share of a global batch.

    Raises:
        UsageError: ``batch_size`` is not a multiple of the number of processes.
    """
    if sync is None:
        return batch_size
    if batch_size % sync.world_size:
        raise UsageError(f"{option} {batch_size}: not a multiple of the {sync.world_size} "
                         f"processes (each dreams batch_size / processes images); pass a "
                         f"multiple of {sync.world_size}")
    return batch_size // sync.world_size


def shard(count: int, sync: RankSync | None) -> range:
    """Indices of the items of ``count`` this rank handles: round-robin ``rank, rank + N, ...``
    (all of them in a single process)."""
    return range(count) if sync is None else range(sync.rank, count, sync.world_size)


def gather_scores(sync: RankSync, mine: set[int], scores: list[Any], outputs: list[Any],
                  macs_total: int, phase: dict[str, float], seconds: float
                  ) -> tuple[list[Any], list[Any], int, float]:
    """Every rank's share of an evaluation, merged back into the images' order.

    ``mine``: the indices this rank scored (:func:`shard`); ``scores`` their scores in that
    order, ``outputs`` the kept restorations of the first of them. Returns all scores and
    kept outputs in image order, the MACs summed over the ranks and the slowest rank's time;
    ``phase`` (seconds per phase) becomes the slowest rank's, in place.
    """
    order = sorted(mine)
    part = {"scores": list(zip(order, scores)), "outputs": list(zip(order, outputs)),
            "macs": macs_total, "phase": dict(phase), "seconds": seconds}
    parts = sync.all_gather(part)
    merged_scores = sorted((item for p in parts for item in p["scores"]), key=lambda x: x[0])
    merged_outputs = sorted((item for p in parts for item in p["outputs"]),
                            key=lambda x: x[0])
    for name in phase:
        phase[name] = max(p["phase"][name] for p in parts)
    return ([score for _, score in merged_scores], [image for _, image in merged_outputs],
            sum(int(p["macs"]) for p in parts), max(float(p["seconds"]) for p in parts))


LAUNCHABLE_COMMANDS = ("evaluate", "dream", "distill", "pipeline")


def refuse_launched(command: str, env: Mapping[str, str] | None = None) -> None:
    """Under torchrun, only the commands that share their work over processes run.

    Raises:
        UsageError: ``command`` is not one of :data:`LAUNCHABLE_COMMANDS` and this process
            was launched with several others.
    """
    if launched(env) and command not in LAUNCHABLE_COMMANDS:
        raise UsageError(f"'{command}' runs in one process: start it without torchrun "
                         f"(torchrun runs {', '.join(LAUNCHABLE_COMMANDS)})")


def join_from_environment(device: torch.device,
                          env: Mapping[str, str] | None = None) -> RankSync | None:
    """Join the job torchrun started, if it did; ``None`` in a plain single process.

    ``device``: the run's resolved device. On CUDA each rank takes ``cuda:LOCAL_RANK`` and the
    backend is NCCL; on the CPU it is Gloo. The rendezvous is torchrun's (``env://``); the
    time limit of a collective is ``$DREAMPRUNE_DIST_TIMEOUT`` seconds (default 3600: the
    other ranks wait while rank 0 prunes).

    Raises:
        UsageError: a ``--device cuda:N`` naming one GPU for several processes, fewer GPUs
            than processes on a machine, or an MPS device (no backend for it).
    """
    env = os.environ if env is None else env
    if not launched(env):
        return None
    rank, world, local = _int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK")
    if device.type == "cuda":
        if device.index is not None:
            raise UsageError(f"$device {device}: under torchrun each process takes the GPU "
                             "of its LOCAL_RANK; pass $device cuda or auto")
        if local >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local}: this machine has "
                             f"{torch.cuda.device_count()} GPU(s); start at most that many "
                             "processes per machine (--nproc-per-node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UsageError(f"$device {device}: torchrun runs need CUDA (NCCL) or the CPU (Gloo)")
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(env.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout,
                                device_id=device if device.type == "cuda" else None)
    log.info("rank %d of %d (local %d) on %s, %s backend", rank, world, local, device, backend)
    return RankSync(rank=rank, world_size=world, local_rank=local, device=device)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (for a one-machine rendezvous)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def local_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The variables torchrun sets for process ``rank`` of a one-machine job (one thread
    each)."""
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def spawn_local(body: Callable[..., None], world_size: int, *args: Any) -> None:
    """Run ``body(sync, *args)`` in ``world_size`` new CPU processes of this machine joined
    in a Gloo group, one thread each (tests and benchmarks; users start runs with
    torchrun). ``body`` must be importable (a module-level function); an exception in any
    process is raised here."""
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(world_size, free_port(), body, args), nprocs=world_size,
             join=True)


def _spawned(rank: int, world_size: int, port: int, body: Callable[..., None],
             args: tuple[Any, ...]) -> None:
    os.environ.update(local_environment(rank, world_size, port))
    torch.set_num_threads(1)
    sync = join_from_environment(torch.device("cpu"))
    try:
        body(sync, *args)
    finally:
        leave()


def abandon(exit_code: int) -> None:
    """End an interrupted process of a group at once, without tearing the group down.

    After Ctrl-C another rank may still be inside a collective; Gloo's teardown (and the
    interpreter's, with its worker threads alive) then aborts the process with SIGABRT
    ("terminate called without an active exception") instead of the interrupt's exit code.
    Output is flushed first; checkpoints were already written atomically. Does nothing
    outside a process group.
    """
    if dist.is_available() and dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)


def leave() -> None:
    """Leave the process group, if this process joined one (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
