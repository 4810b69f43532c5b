"""The mutants' pytest plugin: ``-p fp8_verify.tools.mutants.plant`` plants ``$FP8_VERIFY_MUTANT`` before
any test runs (``fp8-verify check --mutant ID``), and in the runner's subprocesses
(``$FP8_VERIFY_MUTANT_RUNNER``) runs the profile without shrinking and without the example database and
orders the tests so that the cheap numeric properties of the eager paths come first."""

from __future__ import annotations

import os

import pytest

MUTANT_ENV = "FP8_VERIFY_MUTANT"
RUNNER_ENV = "FP8_VERIFY_MUTANT_RUNNER"  # set by the runner: no shrinking, no example database
# With -x the first failure ends a run: numeric properties of the eager paths go first (cheap, and the
# core claim), then the rest in file order, compiled tests last.
FIRST = ("test_paths.py", "test_exact.py")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    mutant = os.environ.get(MUTANT_ENV)
    if mutant:
        from ...subject.vllm import load
        from .catalogue import apply

        load()
        apply(mutant)
    if os.environ.get(RUNNER_ENV) != "1":
        return
    from hypothesis import Phase, settings

    from ...suite.plugin import state

    # fp8-verify's items run under its own profile, which is not Hypothesis' global one (suite.options)
    name = state(config).scope
    phases = [p for p in settings.get_profile(name).phases if p not in (Phase.shrink, Phase.explain)]
    settings.register_profile(name, settings.get_profile(name), phases=phases, database=None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a runner subprocess: order the items as :data:`FIRST` says (stable within a file)."""
    if os.environ.get(RUNNER_ENV) != "1":
        return

    def key(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        first = FIRST.index(name) if name in FIRST else len(FIRST)
        return (item.get_closest_marker("compiled") is not None or _compiled_path(item), first)

    items.sort(key=key)


def _compiled_path(item: pytest.Item) -> bool:
    from ...subject.registry import default

    params = (getattr(item, "callspec", None) and item.callspec.params) or {}
    name = params.get("gemm")
    return name in default() and default().get(name).compiled
