"""How big a drawn problem may be: M is capped so that the problem and its float64 check fit a share of
the free memory (GPU, else host; ``$FP8_VERIFY_MAX_PROBLEM_BYTES``) and its work, ``M * N * K``
multiply-adds, fits the work budget (``$FP8_VERIFY_MAX_PROBLEM_MACS``; by default far more on a GPU than
on the CPU double, whose bit-exact emulation of the tensor cores costs per element)."""

from __future__ import annotations

import os
from functools import cache

import torch

from ..errors import UsageError

BUDGET_ENV = "FP8_VERIFY_MAX_PROBLEM_BYTES"
BUDGET_SHARE = 0.25  # of the free device memory: room for the paths' own buffers and xdist neighbours
WORK_ENV = "FP8_VERIFY_MAX_PROBLEM_MACS"
WORK_DEFAULT = {"cuda": 2**36, "cpu": 2**25}  # e.g. 2048 x 4096 x 7168 on a GPU, 64 x 512 x 1024 on a CPU
# (the CPU's halved on 2026-12-06, from 2**26: the CI tier's 300 s, measured 313 s on a fresh clone; the CPU
# double's bit-exact property compares the emulation with itself, so its problems' size buys routing
# coverage, not arithmetic evidence -- that comes from Hopper and the replayed corpus)
M_LIMIT = {"cuda": 4096, "cpu": 512}
"""The largest M drawn by default: past one wave of output tiles on a GPU (every SM90 schedule, DeepGEMM's
block_m by M); 512 on the CPU double, where each example's cost grows with M and the CI tier must stay
within its time (a larger M reaches the CPU only where a property asks for it)."""
GPU_SHARE_ENV = "FP8_VERIFY_GPU_SHARE"  # set for each xdist worker that shares its GPU (suite.isolation)


def gpu_share() -> float:
    """The share of its GPU this process may use: 1, or 1/k when k xdist workers share it."""
    try:
        share = float(os.environ.get(GPU_SHARE_ENV, "1"))
    except ValueError:
        return 1.0
    return share if 0 < share <= 1 else 1.0


ORACLE_CHUNK_BYTES = 2**28
"""The float64 weight rows the oracle (:func:`fp8_verify.judge.bound.oracle`) dequantizes at a time:
production-sized weights (N and K of 18432) are judged in column chunks, so that a problem's check fits
one worker's share of a GPU."""


def problem_bytes(m: int, n: int, k: int) -> int:
    """Peak bytes one problem and its check need on the device, roughly: the fp8 operands and fp32
    scales, vLLM's padded copies, the float64 dequantized operands with their expanded scales and
    absolute values (8 copies of [M+N, K]; of the weight only the oracle's chunk of rows at a time), and
    about sixteen float64 [M, N] tensors (reference, bound, sums, error, the emulation's partials).
    Measured on an H100: four copies of [M+N, K] and eight of [M, N] -- the count before -- fell short by
    more than 3x (a worker held to 8.4 GiB ran out)."""
    chunk = min(n, max(128, ORACLE_CHUNK_BYTES // (8 * max(1, k))))  # the oracle's weight rows at a time
    return 2 * (m + n) * k + 8 * (m + chunk) * k * 8 + 8 * m * n * 16 + 8 * (m + n) * (k // 128 + 1)


def _positive_env(name: str, what: str) -> int | None:
    env = os.environ.get(name)
    if not env:
        return None
    try:
        value = int(float(env))
    except ValueError:
        raise UsageError(f"{name}={env!r} is not a number of {what}") from None
    if value <= 0:
        raise UsageError(f"{name}={env!r} must be a positive number of {what}")
    return value


@cache
def work_budget() -> int:
    """Multiply-adds (``M * N * K``) a drawn problem may take: ``$FP8_VERIFY_MAX_PROBLEM_MACS``, else
    :data:`WORK_DEFAULT` for where problems run."""
    env = _positive_env(WORK_ENV, "multiply-adds")
    return env or WORK_DEFAULT["cuda" if torch.cuda.is_available() else "cpu"]


@cache
def m_limit() -> int:
    """The default largest M (:data:`M_LIMIT`) for where problems run."""
    return M_LIMIT["cuda" if torch.cuda.is_available() else "cpu"]


@cache
def memory_budget() -> int:
    """Bytes a drawn problem may use: ``$FP8_VERIFY_MAX_PROBLEM_BYTES`` if set, else a quarter of the
    free memory of the GPU -- of this process's share of it, under xdist -- (or, without one, of the
    machine's available memory)."""
    env = _positive_env(BUDGET_ENV, "bytes")
    if env:
        return env
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        free = min(free, int(total * gpu_share()))
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 8 << 30
    return int(free * BUDGET_SHARE)


def max_m_for(n: int, k: int, budget: int | None = None, work: int | None = None) -> int:
    """The largest M whose problem fits ``budget`` bytes and ``work`` multiply-adds (defaults:
    :func:`memory_budget`, :func:`work_budget`), at least 1.

    >>> max_m_for(512, 1024, budget=10**8, work=2**30) > 512
    True
    """
    budget = memory_budget() if budget is None else budget
    work = work_budget() if work is None else work
    per_row = problem_bytes(1, n, k) - problem_bytes(0, n, k)
    return max(1, min((budget - problem_bytes(0, n, k)) // per_row, work // (n * k)))
