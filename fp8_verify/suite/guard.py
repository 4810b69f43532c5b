"""Imports that build a native extension on first use (MMA-Sim's CPU fma, via torch's cpp_extension JIT),
with every wait on another build bounded.

Why: torch serialises JIT builds with a lock file (``<extensions dir>/<name>/lock``) and a waiter polls it
with no limit (``torch.utils.file_baton.FileBaton.wait``). A build interrupted in the middle (Ctrl-C, a CI
job's time limit) leaves the lock behind, and every later import waits on it for ever: a run once sat 32
minutes in that loop at collection. Here a lock older than the limit is reported at once, a younger one is
waited on for at most the limit, and either ends in :class:`NativeBuildError`, one line that names the lock
and how to clear it. MMA-Sim is imported only by the tests that use it (never at collection).

The limit is ``$FP8_VERIFY_BUILD_WAIT_S`` seconds (default :data:`DEFAULT_WAIT_S`: a clean build of the
extension takes seconds; other xdist workers wait for the first one's).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from ..errors import UsageError

WAIT_ENV = "FP8_VERIFY_BUILD_WAIT_S"
DEFAULT_WAIT_S = 120.0
MMASIM_EXTENSION = "mmasim_fma_cpu"  # mmasim/arithmetic/fma.py: load("mmasim_fma_cpu", ...)


class NativeBuildError(RuntimeError):
    """A native extension could not be built: its lock is stale or was held past the limit, or the build
    failed. One line, to be said as is."""


def wait_limit() -> float:
    """``$FP8_VERIFY_BUILD_WAIT_S`` (seconds > 0), else :data:`DEFAULT_WAIT_S`."""
    text = os.environ.get(WAIT_ENV)
    if not text:
        return DEFAULT_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"{WAIT_ENV}={text!r} must be a positive number of seconds")
    return value


def extension_dir(name: str) -> Path:
    """Where torch's cpp_extension builds extension ``name`` (and puts its ``lock``): the same rule as
    ``torch.utils.cpp_extension._get_build_directory``, without creating anything."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        import torch
        from torch.utils.cpp_extension import get_default_build_root

        if torch.version.hip is not None:
            accelerator = "rocm" + torch.version.hip.replace(".", "")
        elif torch.version.cuda is not None:
            accelerator = "cu" + torch.version.cuda.replace(".", "")
        else:
            accelerator = "cpu"
        folder = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
        root = os.path.join(get_default_build_root(), f"{folder}_{accelerator}")
    return Path(root) / name


def _message(lock: Path, why: str) -> str:
    return (
        f"the build of the native extension {lock.parent.name} is locked by {lock} ({why}; the limit is "
        f"${WAIT_ENV}): if no build is running, an interrupted one left it -- remove the file and run again"
    )


def check_lock(name: str, limit: float) -> None:
    """Raise :class:`NativeBuildError` when ``name``'s build lock is older than ``limit`` seconds: a build
    takes seconds, so such a lock is stale (or a build is stuck), and waiting on it could be for ever."""
    lock = extension_dir(name) / "lock"
    age = _age(lock)
    if age is not None and age > limit:
        raise NativeBuildError(_message(lock, f"{age:.0f} s old, over the {limit:g} s limit"))


def _age(lock: Path) -> float | None:
    """Seconds since the lock was taken (torch creates it empty and never touches it), None if gone."""
    try:
        return time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def bounded_build_wait(limit: float) -> Iterator[None]:
    """While inside, torch's wait on another process's build lock gives up with
    :class:`NativeBuildError` once the lock is older than ``limit`` seconds, or after ``limit`` seconds of
    waiting, instead of polling for ever (restored on the way out)."""
    from torch.utils.file_baton import FileBaton

    unbounded = FileBaton.wait

    def wait(self: FileBaton) -> None:
        lock = Path(self.lock_file_path)
        deadline = time.monotonic() + limit
        while (age := _age(lock)) is not None:
            if age > limit or time.monotonic() > deadline:
                raise NativeBuildError(
                    _message(lock, f"held {max(age, limit):.0f} s, over the {limit:g} s limit")
                )
            time.sleep(self.wait_seconds)

    FileBaton.wait = wait  # type: ignore[method-assign]
    try:
        yield
    finally:
        FileBaton.wait = unbounded  # type: ignore[method-assign]


def import_building(module: str, extension: str, limit: float | None = None) -> ModuleType:
    """Import ``module``, which builds ``extension`` on first import, with the lock checked first and the
    wait on it bounded. Raises ImportError when the module is not installed, :class:`NativeBuildError` on a
    stale or long-held lock."""
    if module in sys.modules:
        return sys.modules[module]
    limit = wait_limit() if limit is None else limit
    check_lock(extension, limit)
    with bounded_build_wait(limit):
        try:
            return importlib.import_module(module)
        except (NativeBuildError, ImportError):
            raise
        except Exception as e:  # the build itself failed (no compiler, no ninja): say so in one line
            raise NativeBuildError(
                f"importing {module} builds the native extension {extension}, and that failed: "
                f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            ) from e


def import_mmasim() -> ModuleType:
    """MMA-Sim's ``nv_ptx`` (its Hopper WGMMA model), whose import builds its C++ fma extension."""
    return import_building("mmasim.nv_ptx", MMASIM_EXTENSION)
