"""Which paths a property runs on: a test that takes the ``gemm`` fixture runs on every path of the session
(the registry plus ``--path`` additions), narrowed by registry facts (:class:`PathSpec` fields) named in
its ``paths`` marker::

    @pytest.mark.paths(compiled=False)            # eager paths only
    @pytest.mark.paths(kernel=CUTLASS_SM90)        # paths that end in the SM90 CUTLASS kernel
    @pytest.mark.paths(op=True)                    # paths that call a registered torch.ops.vllm op
    @pytest.mark.paths(restricts_m=True)           # paths whose kernel rejects some M on this release
    @pytest.mark.paths(exact=True)                 # rows whose kernel arithmetic is known (bit-exact)
    @pytest.mark.paths(families=("gemm", "layer"))  # rows of these families (GEMM, LAYER, QUANT)

Absent paths stay in the parametrization and skip with the reason (the report then says which release
lacks them); a new row or a user's kernel gets every property whose facts it has.
"""

from __future__ import annotations

import pytest

from ..subject.registry import PathSpec, Registry
from ..subject.releases import MRule
from ..subject.vllm import Subject


def select(registry: Registry, subject: Subject, marker: pytest.Mark | None) -> list[PathSpec]:
    facts = dict(marker.kwargs) if marker is not None else {}
    restricts_m = facts.pop("restricts_m", None)
    exact = facts.pop("exact", None)
    families = facts.pop("families", None)
    try:
        specs = registry.select(**facts)
    except KeyError as e:
        raise pytest.UsageError(f"paths marker: {e.args[0]}") from None
    if restricts_m is not None:
        specs = [s for s in specs if (s.m_rule(subject) is not MRule.ANY) == restricts_m]
    if exact is not None:
        specs = [s for s in specs if s.exact == exact]
    if families is not None:
        specs = [s for s in specs if s.family in families]
    return specs
