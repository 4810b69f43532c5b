"""One GPU per xdist worker (several workers share one when there are more workers than GPUs, each then
held to its share of the GPU's memory), and crash isolation after a sticky CUDA error.

A sticky CUDA error (an illegal address, a device-side assert) poisons the process's CUDA context: every
later CUDA call fails too. The test that hit it fails with its own error; after that, under pytest-xdist
the worker exits so that xdist starts a fresh one for the rest of the run, and without xdist the
remaining tests that need the GPU are skipped with the name of the test that poisoned it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from ..problem.budget import GPU_SHARE_ENV, gpu_share

STICKY = (
    "illegal memory access",
    "illegal address",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "an illegal instruction",
)
WORKER_EXIT = 75  # the status a poisoned worker leaves with (the controller explains it)


def is_sticky_cuda_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "AcceleratorError" or ("cuda" in text and any(s in text for s in STICKY))


def worker_count() -> int:
    """How many xdist workers this run has (1 without xdist)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def worker_id() -> str | None:
    """pytest-xdist's worker id (``gw0``...), None in the controller or without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER")


def pin_gpu_for_worker() -> None:
    """Under xdist, give worker gwN one GPU (N mod count) before anything initialises CUDA."""
    wid = worker_id()
    if not wid or ("CUDA_VISIBLE_DEVICES" in os.environ and "," not in os.environ["CUDA_VISIBLE_DEVICES"]):
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else None
    if ids is None:
        try:
            import torch

            if torch.cuda.is_initialized():
                return
            ids = [str(i) for i in range(torch.cuda.device_count())]
        except Exception:
            return
    if ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[int(wid.removeprefix("gw")) % len(ids)]
        os.environ[GPU_SHARE_ENV] = str(1 / -(-worker_count() // len(ids)))


def share_cpu_threads() -> None:
    """Under xdist, give each worker its share of the host's cores for torch's intra-op threads: by
    default every worker starts one thread per core. 16 workers on a 32-core host spent 25% more test
    time than 8 on the same host (2 x H200, 2026-11-27); oversubscribed threads are the likely cause."""
    workers = worker_count()
    if worker_id() and workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


MEMORY_HEADROOM = 0.85  # of a worker's share: CUDA contexts, cuBLAS and Triton workspaces live outside it


def limit_gpu_memory() -> None:
    """Hold this process's caching allocator to its share of the GPU (``torch.cuda``'s per-process
    fraction): on reaching it the allocator frees its cache and retries, instead of one worker's cache
    starving its neighbours into out-of-memory errors (8 workers on one H100 did, before this)."""
    share = gpu_share()
    if share < 1:
        import torch

        torch.cuda.set_per_process_memory_fraction(MEMORY_HEADROOM * share)


def interrupt_on_sigterm() -> None:
    """A run stopped by ``timeout`` or a CI job's time limit (SIGTERM) ends as if by Ctrl-C: pytest then
    still prints its summary and the report of the tests that ran, instead of dying without either.
    Only in the controlling process, and only where nobody installed a handler of their own. GNU
    ``timeout`` signals the process and then its whole group, so the same stop arrives twice: repeats
    within a few seconds are ignored; a later SIGTERM ends the process outright."""
    if worker_id() is None and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        first: list[float] = []

        def stop(signum: int, frame: object) -> None:
            if not first:
                first.append(time.monotonic())
                raise KeyboardInterrupt(f"signal {signum}: the run was stopped")
            if time.monotonic() - first[0] > 5.0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)


class CrashIsolation:
    """Plugin object (one per session, on ``config``): remembers the test that poisoned the context."""

    def __init__(self, needs_gpu) -> None:
        self.needs_gpu = needs_gpu  # item -> bool
        self.poisoned_by: str | None = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if call.excinfo is not None and self.poisoned_by is None and is_sticky_cuda_error(call.excinfo.value):
            self.poisoned_by = item.nodeid
            report.sections.append(
                (
                    "fp8-verify",
                    "sticky CUDA error: this process's CUDA context is poisoned; later GPU tests run "
                    "in a fresh worker or are skipped",
                )
            )

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Under xdist, end a poisoned worker right after the poisoning test's last report has gone
        out: xdist then reports that test as the one the worker crashed on (not an innocent later one)
        and starts a fresh worker for the rest of the run."""
        if report.when == "teardown" and report.nodeid == self.poisoned_by and worker_id():
            time.sleep(0.5)  # let xdist's channel deliver the reports already sent
            os._exit(WORKER_EXIT)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.poisoned_by is not None and self.needs_gpu(item):  # without xdist
            pytest.skip(
                f"CUDA context poisoned by {self.poisoned_by} (sticky CUDA error); rerun with -n 1 "
                "or more to isolate it in its own worker"
            )

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched) -> None:
        """xdist controller: say why the worker went away when it was fp8-verify's own exit."""
        if "crashed while running" in str(report.longrepr):
            report.longrepr = (
                f"{report.longrepr}; if the test above failed with a sticky CUDA error, fp8-verify ended "
                "the worker on purpose (its CUDA context was poisoned) and the run goes on in a fresh one"
            )
