"""Where and how a network runs: the device, the precision and memory layout, the processes of a
``torchrun`` job. A trained network loaded back from its checkpoint, and the RNG state a checkpoint
keeps, are :mod:`lipstudy.checkpoints`' (re-exported here, where callers have always found them).

Training, evaluation, parsing photos, the figures and the benchmarks all need these, and they must
agree (a model evaluated in another precision than the one the book's tables claim would be a
different model), so each is decided here once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .checkpoints import CHECKPOINT, load_checkpoint, model_from_checkpoint, rng_state, set_rng_state  # noqa: F401
from .config import AMP_MODES


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> this process's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the variables ``torchrun`` sets; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


@dataclass(frozen=True)
class PrecisionPlan:
    """How the forward pass runs: autocast dtype (None = fp32) and memory layout."""

    autocast_dtype: torch.dtype | None
    channels_last: bool

    @property
    def autocast(self) -> bool:
        return self.autocast_dtype is not None

    def autocast_context(self, device: torch.device) -> torch.autocast:
        """The ``torch.autocast`` block of this plan on ``device`` (a no-op block for fp32)."""
        return torch.autocast(device.type, dtype=self.autocast_dtype or torch.bfloat16, enabled=self.autocast)


def precision_plan(device: torch.device, amp: str = "auto", channels_last: bool | None = None) -> PrecisionPlan:
    """The precision and layout a model runs with on ``device``. bf16 rather than fp16 because
    it keeps fp32's exponent range: no loss scaling, and the 10x classifier learning rate cannot
    overflow it. "auto" is bf16 autocast on CUDA and fp32 elsewhere; "bf16" forces autocast on
    any device (how the CUDA numerics are checked on a CPU); "off" is fp32 everywhere."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    use_bf16 = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    nhwc = device.type == "cuda" if channels_last is None else bool(channels_last)
    return PrecisionPlan(torch.bfloat16 if use_bf16 else None, nhwc)


# glibc's mallopt parameters (<malloc.h>).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_KEPT = False


def keep_freed_memory() -> bool:
    """Make this process's glibc malloc keep freed memory for reuse (blocks under 64 MiB from the
    heap, up to 1 GiB of free heap kept) instead of returning it to the kernel. A CPU training
    step allocates and frees tens of megabytes of activations; by default glibc hands the large
    blocks back (mmap / heap trimming) and the next step faults every page in again
    (``benchmarks/train_profile.py`` counts the faults and the kernel's share of a step; its figures
    are in ``results/benchmarks/train_profile.json``). Where the memory comes from changes no arithmetic, so runs
    stay bit-identical. Process-wide, once; forked loader workers inherit it. False where the C
    library has no ``mallopt`` (not glibc)."""
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return True
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    _HEAP_KEPT = bool(mallopt(_M_MMAP_THRESHOLD, 64 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _HEAP_KEPT
