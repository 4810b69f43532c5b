"""One property's examples split over several test items (``--fp8-shards N``), so that xdist can run one
property on several workers, and so on several GPUs.

Why: a property test is the unit xdist schedules, and the slowest one bounds the run however many
workers there are. On the H200 with vLLM 0.23.0 (docs/gpu-speed.md) the slowest property took 64 s of
a 140 s run on one GPU and 64 s of 126 s on two: the second GPU cannot help until that test is split.

A test marked ``sharded`` (a property at the profile's example count) becomes N items,
``test[...-shard2of4]``, each running ``ceil(n / N)`` of its ``n`` examples. The items must draw
different examples. Under the dev and nightly profiles they do (Hypothesis seeds at random). The ci
profile derandomizes, and Hypothesis derives that seed from the test function alone, the same for every
item of it: each shard gets a seed of its own from its node id instead (Hypothesis' ``seed``), which is
as deterministic. A pinned seed (``--hypothesis-seed``, which the ci profile sets itself when
``$FP8_VERIFY_EXAMPLE_DB`` is given, to replay that database) would either repeat one seed in every
shard or, overridden, stop the replay, so that combination is refused. The report joins a property's
shards into one row again.
"""

from __future__ import annotations

import hashlib
import math
import re

import pytest
from hypothesis import seed, settings

from ..errors import UsageError
from ..report.summary import ORDER

FIXTURE = "fp8_shard"
MARKER = "sharded"
_ID = re.compile(r"-?shard\d+of\d+(?=\]$)")
_APPLIED = "_fp8_verify_shards"  # on a test function: the shard count its settings were set for


def count(config: pytest.Config) -> int:
    return config.getoption("--fp8-shards") or 1


def check(config: pytest.Config) -> None:
    """Refuse shards that would all draw the same examples (a pinned seed)."""
    if count(config) > 1 and config.getoption("hypothesis_seed", None) is not None:
        raise UsageError(
            "--fp8-shards splits a property's examples over seeds of their own; a pinned seed "
            "(--hypothesis-seed, or the ci profile with $FP8_VERIFY_EXAMPLE_DB) would give every shard the "
            "same examples"
        )


def shard_id(i: int, n: int) -> str:
    """>>> shard_id(0, 4)
    'shard1of4'"""
    return f"shard{i + 1}of{n}"


def base_nodeid(nodeid: str) -> str:
    """The node id of the whole property: ``t.py::test[bypass-shard2of4]`` -> ``t.py::test[bypass]``.

    >>> base_nodeid("t.py::test[bypass-shard2of4]"), base_nodeid("t.py::test[shard1of2]")
    ('t.py::test[bypass]', 't.py::test')
    """
    return _ID.sub("", nodeid).replace("[]", "")


def parametrize(metafunc: pytest.Metafunc) -> None:
    """Split a ``sharded`` test into the configured number of items, each with its share of the
    examples (Hypothesis' own ``settings`` decorator, applied once per function)."""
    n = count(metafunc.config)
    if n <= 1 or metafunc.definition.get_closest_marker(MARKER) is None:
        return
    fn = metafunc.function
    if getattr(fn, _APPLIED, None) != n:
        per_shard = math.ceil(settings.default.max_examples / n)
        settings(max_examples=per_shard)(fn)  # above @given: the profile's other settings stay
        setattr(fn, _APPLIED, n)
    metafunc.fixturenames.append(FIXTURE)
    metafunc.parametrize(FIXTURE, range(n), indirect=True, ids=[shard_id(i, n) for i in range(n)])


def seed_item(item: pytest.Item) -> None:
    """Under a derandomized profile, give a shard a seed of its own, derived from its node id."""
    if item.get_closest_marker(MARKER) is None or not settings.default.derandomize:
        return
    if getattr(item, "callspec", None) is None or FIXTURE not in item.callspec.params:
        return
    seed(int.from_bytes(hashlib.sha256(item.nodeid.encode()).digest()[:8], "big"))(item.obj)


def merge(rows: list[dict]) -> dict:
    """One report row for a property run as several shards: examples and seconds add up, the worst
    error/bound and the worst outcome win (with that shard's reason, finding and artifacts)."""
    if len(rows) == 1:
        return rows[0]
    worst = min(rows, key=lambda r: ORDER.index(r["outcome"]) if r["outcome"] in ORDER else 0)
    ratios = [r["max_error_over_bound"] for r in rows if r.get("max_error_over_bound") is not None]
    coverage: dict[str, int] = {}
    for r in rows:
        for c, k in (r.get("coverage") or {}).items():
            coverage[c] = coverage.get(c, 0) + k
    summed = ("coverage", "problems", "largest", "max_dims", "kernels")
    out = {k: v for k, v in worst.items() if k not in summed}
    kernels: dict[str, int] = {}
    for r in rows:
        for name, k in (r.get("kernels") or {}).items():
            kernels[name] = kernels.get(name, 0) + k
    sized = [r for r in rows if r.get("largest")]
    if sized:
        out["largest"] = max((r["largest"] for r in sized), key=math.prod)
        out["max_dims"] = [max(d) for d in zip(*(r["max_dims"] for r in sized), strict=True)]
    if any(r.get("problems") for r in rows):
        out["problems"] = sum(r.get("problems") or r["examples"] or 0 for r in rows)
    if kernels:
        out["kernels"] = kernels
    out.update(
        test=base_nodeid(worst["test"]),
        examples=sum(r["examples"] or 0 for r in rows),
        max_error_over_bound=max(ratios) if ratios else None,
        seconds=round(sum(r["seconds"] for r in rows), 2),
        shards=len(rows),
    )
    return {**out, "coverage": coverage} if coverage else out
