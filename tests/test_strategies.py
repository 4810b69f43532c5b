"""Self-tests of the strategies and the problem builder: valid problems, clear errors for bad
arguments, determinism, and small shrunk counterexamples."""

from __future__ import annotations

import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fp8_verify.errors import UsageError
from fp8_verify.problem import ProblemSpec, budget, build, cdiv, problem_bytes
from fp8_verify.strategies import block_shapes, m_dims, nk_dims, problem_specs, value_regimes
from fp8_verify.suite.options import examples

pytestmark = [pytest.mark.cpu, pytest.mark.selftest]


@settings(max_examples=examples(40))
@given(problem_specs(m=m_dims(max_value=64), n=nk_dims(max_value=272), k=nk_dims(max_value=400)))
def test_problems_are_well_formed(spec):
    p = build(spec)
    assert p.a.dtype == p.b.dtype == torch.float8_e4m3fn
    assert p.a_scale.shape == (p.m, cdiv(p.k, 128))
    assert p.a_scale.stride(0) == 1 or p.m == 1  # M-major (a single row is any layout)
    assert p.b_scale.shape == (cdiv(p.n, 128), cdiv(p.k, 128)) and p.b_scale.is_contiguous()
    assert not torch.isnan(p.a.float()).any() and not torch.isnan(p.b.float()).any()
    assert (p.a_scale > 0).all() and (p.b_scale > 0).all()


@given(problem_specs(m=m_dims(max_value=32)))
def test_same_spec_same_bits(spec):
    x, y = build(spec), build(spec)
    assert torch.equal(x.a.view(torch.uint8), y.a.view(torch.uint8))
    assert torch.equal(x.a_scale, y.a_scale) and torch.equal(x.b_scale, y.b_scale)


@given(m_dims(max_value=100, aligned=True), m_dims(max_value=100, aligned=False))
def test_alignment_filters(a, u):
    assert a % 4 == 0 and u % 4 != 0


def test_edges_are_drawn():
    for target in (1, 3, 5, 7, 9, 63, 65):
        find(m_dims(max_value=128), lambda m, t=target: m == t, settings=settings(max_examples=2000))


def test_shrinks_to_a_small_problem():
    """A failure that needs M % 4 != 0 and fp16 shrinks to the smallest such spec (one whole block)."""
    spec = find(
        problem_specs(),
        lambda s: s.m % 4 != 0 and s.out_dtype == "float16",
        settings=settings(max_examples=500, database=None),
    )
    assert (spec.m, spec.n, spec.k, spec.seed) == (1, 128, 128, 0), spec


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: m_dims(min_value=0), "min_value=0"),
        (lambda: m_dims(min_value=9, max_value=3), "max_value=3 < min_value=9"),
        (lambda: m_dims(min_value=4, max_value=4, aligned=False), "no M in"),
        (lambda: nk_dims(min_value=17, max_value=31), "no multiple of 16"),
        (lambda: block_shapes([(128,)]), "pairs of positive ints"),
        (lambda: value_regimes(["gaussian"]), "not among"),
        (lambda: problem_specs(m=5), "must be a Hypothesis strategy"),
        (lambda: problem_specs(max_bytes=0), "max_bytes=0 must be a positive int"),
    ],
)
def test_bad_arguments_are_named(bad, match):
    with pytest.raises(InvalidArgument, match=match):
        s = bad()
        s.example() if isinstance(s, st.SearchStrategy) else None


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"m": 0}, "m=0 must be >= 1"),
        ({"out_dtype": "float32"}, "out_dtype='float32'"),
        ({"values": "random", "scales": "fp32"}, "does not go with"),
        ({"block": (128,)}, "block="),
    ],
)
def test_bad_spec_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        ProblemSpec(**{"m": 4, "n": 128, "k": 128, **kw})


BUDGET = problem_bytes(64, 512, 1024)  # M = 64 fits N = 512, K = 1024; M = 512 does not
WORK = 2**26


@settings(max_examples=examples(40))
@given(st.data())
def test_shapes_fit_the_budgets(data):
    """Drawn problems fit the memory and work budgets: M is capped (keeping M % 4), never N or K; only an
    aligned M stays at 4 past a cap under 4 (a path that needs M % 4 == 0 must still be drawable)."""
    m = data.draw(m_dims(max_value=512), label="m before the cap")
    spec = data.draw(problem_specs(m=st.just(m), max_bytes=BUDGET, max_work=WORK))
    fits = problem_bytes(spec.m, spec.n, spec.k) <= BUDGET and spec.m * spec.n * spec.k <= WORK
    assert fits or spec.m == 1 or (spec.m == 4 and m % 4 == 0)
    assert spec.m <= m
    if spec.m < m and spec.m >= 4:
        over = problem_bytes(spec.m + 4, spec.n, spec.k) > BUDGET or (spec.m + 4) * spec.n * spec.k > WORK
        assert spec.m % 4 == m % 4 and over


def test_memory_budget_from_env(monkeypatch):
    budget.memory_budget.cache_clear()
    monkeypatch.setenv(budget.BUDGET_ENV, "1e9")
    assert budget.memory_budget() == 10**9
    budget.memory_budget.cache_clear()
    monkeypatch.setenv(budget.BUDGET_ENV, "lots")
    with pytest.raises(UsageError, match="is not a number of bytes"):
        budget.memory_budget()
    budget.memory_budget.cache_clear()


@pytest.mark.parametrize("aligned", [True, False, None])
def test_a_path_compiling_per_m_draws_few_m(aligned):
    """A path that compiles a graph per M draws at most STATIC_M_VALUES values, each allowed by its M
    rule (a 1,000-example run must not compile 1,000 graphs); a path with M dynamic is not limited."""
    from types import SimpleNamespace

    from fp8_verify.strategies.dims import STATIC_M_VALUES, m_dims_for

    def path(dynamic_m: bool):
        return SimpleNamespace(
            spec=SimpleNamespace(dynamic_m=dynamic_m), m_rule=SimpleNamespace(aligned=aligned)
        )

    seen: dict[bool, set[int]] = {True: set(), False: set()}

    def collect(dynamic_m: bool) -> None:
        @settings(max_examples=200, database=None, derandomize=True)
        @given(m_dims_for(path(dynamic_m)))
        def draw(m):
            assert aligned is None or (m % 4 == 0) == aligned
            seen[dynamic_m].add(m)

        draw()

    collect(False)
    collect(True)
    assert 1 < len(seen[False]) <= STATIC_M_VALUES
    assert len(seen[True]) > STATIC_M_VALUES
