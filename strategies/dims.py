"""Dimension strategies, with the values that break GEMM kernels weighted in."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument


def _check_range(name: str, min_value: int, max_value: int) -> None:
    if not (isinstance(min_value, int) and isinstance(max_value, int)):
        raise InvalidArgument(
            f"{name}: min_value and max_value must be ints, got {min_value!r} and {max_value!r}"
        )
    if min_value < 1:
        raise InvalidArgument(f"{name}: min_value={min_value} must be >= 1")
    if max_value < min_value:
        raise InvalidArgument(f"{name}: max_value={max_value} < min_value={min_value}")


def m_dims(
    min_value: int = 1, max_value: int = 512, aligned: bool | None = None, distinct: int | None = None
) -> st.SearchStrategy[int]:
    """Token counts M: 1-9, 4k +/- 1, powers of two and their neighbours, and anything in range.

    ``aligned=True`` keeps M % 4 == 0 (what the CUTLASS kernel takes directly), ``False`` keeps
    M % 4 != 0 (what must be padded), None draws both. ``distinct=n`` draws only the first ``n`` of those
    edge values: for a path that compiles a graph per M, so that a long run compiles a bounded number.

    >>> m_dims(max_value=64, aligned=False).example() % 4 != 0
    True
    """
    _check_range("m_dims", min_value, max_value)
    edges = set(range(1, 10))
    p = 1
    while p <= 2 * max_value:
        edges |= {p - 1, p, p + 1}
        p *= 2
    for c in (4 * (max_value // 8), 4 * (max_value // 4)):
        edges |= {c - 1, c, c + 1}
    edges = sorted(e for e in edges if min_value <= e <= max_value)
    if aligned is not None:
        edges = [e for e in edges if (e % 4 == 0) == aligned]
    if not any(((e % 4 == 0) == aligned) for e in range(min_value, max_value + 1)) and aligned is not None:
        raise InvalidArgument(f"m_dims: no M in [{min_value}, {max_value}] with aligned={aligned}")
    if distinct is not None:
        if distinct < 1 or not edges:
            raise InvalidArgument(f"m_dims: distinct={distinct} needs >= 1 and an edge value in range")
        return st.sampled_from(edges[:distinct])
    anything = st.integers(min_value, max_value)
    if aligned is not None:
        anything = anything.filter(lambda v: (v % 4 == 0) == aligned)
    return st.one_of(st.sampled_from(edges), anything) if edges else anything


def nk_dims(
    min_value: int = 16,
    max_value: int = 1024,
    multiple_of: int = 16,
    block: int = 128,
    partial_blocks: bool = True,
) -> st.SearchStrategy[int]:
    """N or K: multiples of ``multiple_of`` (vLLM's CUTLASS route needs 16), whole blocks weighted in.

    ``partial_blocks=False`` keeps only multiples of ``block``.

    >>> nk_dims(max_value=512, partial_blocks=False).example() % 128
    0
    """
    _check_range("nk_dims", min_value, max_value)
    if multiple_of < 1 or block < 1:
        raise InvalidArgument(f"nk_dims: multiple_of={multiple_of} and block={block} must be >= 1")
    step = block if not partial_blocks else multiple_of
    lo, hi = -(-min_value // step), max_value // step
    if hi < lo:
        raise InvalidArgument(f"nk_dims: no multiple of {step} in [{min_value}, {max_value}]")
    whole = st.integers(max(1, -(-min_value // block)), max(1, max_value // block)).map(lambda q: q * block)
    whole = whole.filter(lambda v: min_value <= v <= max_value)
    return st.one_of(whole, st.integers(lo, hi).map(lambda q: q * step))


STATIC_M_VALUES = 8
"""How many M a path that compiles a graph per M draws (``m_dims(distinct=...)``)."""


def m_dims_for(path, max_value: int = 512) -> st.SearchStrategy[int]:
    """M for a registry path (:class:`fp8_verify.subject.registry.GemmPath`): every M its kernel takes on
    the installed release (its M rule), from :data:`STATIC_M_VALUES` values only where it compiles a graph
    per M (``dynamic_m=False``: each new M costs a compile; 1,000 examples must not cost 1,000).
    """
    static = not path.spec.dynamic_m
    return m_dims(
        max_value=max_value, aligned=path.m_rule.aligned, distinct=STATIC_M_VALUES if static else None
    )
