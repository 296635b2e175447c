"""Training across processes with PyTorch's own DistributedDataParallel, launched by torchrun:

    torchrun --nproc-per-node 4 -m edgead train --model hetnet --data DATA --out RUN

One process (no torchrun) is the same code with a world of one: every helper here is then a
no-op, so a model's `fit` reads the same either way. What runs where:
- the frozen teacher's pass over the training images, the expensive part, is split across the
  ranks and its features gathered back in the images' order (`features`), so that feature
  statistics, banks and coresets see every image, as in one process;
- each optimisation step draws one global batch with the seeded generator every rank shares,
  and each rank trains on its own slice of it (`local`): together the ranks see the batch one
  process would, and DDP all-reduces (averages) the gradients of the trained modules (`wrap`);
- only rank 0 scores the hold-out set, computes thresholds and writes the run.

Collectives time out (EDGEAD_DIST_TIMEOUT seconds, default 1800), so a rank that dies makes
the others fail with an error instead of hanging; torchrun then stops the job."""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from edgead.core.errors import DistributedError
from edgead.core.machine import launched_processes


TIMEOUT_ENV = "EDGEAD_DIST_TIMEOUT"


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return launched_processes() > 1


@contextmanager
def session() -> Iterator[None]:
    """The process group (gloo, CPU) for the duration of a training run when torchrun launched
    several processes; nothing otherwise. Progress bars are left to rank 0."""
    if not launched() or active():
        yield
        return
    seconds = float(os.environ.get(TIMEOUT_ENV, "1800"))
    where = f"rank {os.environ.get('RANK', '?')} of {os.environ['WORLD_SIZE']}"
    try:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=seconds))
    except RuntimeError as e:
        raise DistributedError(f"{where}: the other ranks did not join within {seconds:g} s ({_first_line(e)}); "
                               "check that every node runs the same torchrun command with the same --rdzv-endpoint "
                               f"(or raise {TIMEOUT_ENV})") from None
    if not is_main():
        os.environ["EDGEAD_QUIET"] = "1"
    try:
        yield
    except RuntimeError as e:  # gloo reports a peer that died as a plain RuntimeError, in the middle of a step
        raise DistributedError(f"{where}: training stopped: {_first_line(e)}. If another rank failed or was stopped, "
                               "its own output says why; nothing was written") from None
    finally:
        dist.destroy_process_group()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def shard(n: int) -> slice:
    """This rank's contiguous share of n items (shares differ by at most one item)."""
    size, extra = divmod(n, world())
    start = rank() * size + min(rank(), extra)
    return slice(start, start + size + (rank() < extra))


def gather(local: torch.Tensor) -> torch.Tensor:
    """Every rank's `local` rows concatenated in rank order (the order of `shard`)."""
    if not active():
        return local
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(world())]
    dist.all_gather(sizes, torch.tensor([len(local)]))
    most = int(max(s.item() for s in sizes))
    padded = torch.zeros((most, *local.shape[1:]), dtype=local.dtype)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world())]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


def features(fn: Callable, images, batch: int, progress=iter):
    """fn over this rank's share of `images` (N, ...) in batches, gathered: fn of all N, in order.
    fn returns a tensor or a tuple of tensors (then so does this)."""
    part = images[shard(len(images))]
    with torch.no_grad():
        outs = [fn(torch.from_numpy(part[i: i + batch])) for i in progress(range(0, len(part), batch))]
        if not outs:  # more ranks than images: an empty share of the right shapes
            first = fn(torch.from_numpy(images[:1]))
            outs = [tuple(t[:0] for t in first) if isinstance(first, tuple) else first[:0]]
    if isinstance(outs[0], tuple):
        return tuple(gather(torch.cat(parts)) for parts in zip(*outs))
    return gather(torch.cat(outs))


def mean(value: torch.Tensor) -> float:
    """A scalar averaged over the ranks (for logs: each rank's loss is that of its slice)."""
    if not active():
        return value.item()
    total = value.detach().reshape(1).clone().float()
    dist.all_reduce(total)
    return total.item() / world()


def local(batch):
    """This rank's slice of a global batch (a tensor, array or list of indices or samples)."""
    if not active():
        return batch
    if len(batch) < world():
        raise DistributedError(f"a batch of {len(batch)} cannot be shared by {world()} ranks: use at most "
                               f"{len(batch)} processes, or a larger batch (--set batch_size=N)")
    return batch[rank()::world()]


def share(global_size: int) -> float:
    """What a rank's mean loss over its slice of a global batch of `global_size` (see `local`) is
    weighted by, so that DDP's average of the ranks' gradients is the gradient of the mean over
    the whole batch (1 when slices are equal)."""
    return len(range(rank(), global_size, world())) * world() / global_size if active() else 1.0


def wrap(module: nn.Module, call: Callable | None = None, unused: bool = False) -> Callable:
    """`module` (or `call(module, ...)`, for a step that is not its forward) behind DDP, so that
    the gradients of its trained parameters are averaged across ranks; as is in one process.
    `unused`: some trained parameters get no gradient in a step (DDP then looks for them)."""
    if not active():
        return module if call is None else (lambda *a, **k: call(module, *a, **k))
    step = _Step(module, call) if call is not None else module
    # buffers (feature statistics, stored prompts) are constants while training: nothing to broadcast
    return nn.parallel.DistributedDataParallel(step, find_unused_parameters=unused, forward_sync_buffers=False)


class _Step(nn.Module):
    def __init__(self, module: nn.Module, call: Callable):
        super().__init__()
        self.module, self.call = module, call

    def forward(self, *args, **kwargs):
        return self.call(self.module, *args, **kwargs)
