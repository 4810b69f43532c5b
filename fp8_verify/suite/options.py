"""The suite's command-line options, its Hypothesis profiles and the example counts they imply.

Profiles: ``dev`` (local default: few examples), ``ci`` (default when ``$CI`` is set: derandomized, no
deadline, no example database, fixed counts) and ``nightly`` (25x). Chosen with ``--hypothesis-profile``,
``$FP8_VERIFY_PROFILE`` or ``fp8-verify check --profile``.

Counterexamples travel between hosts and runs through Hypothesis' example databases:
``$FP8_VERIFY_EXAMPLE_DB`` names one -- a directory (shared, e.g. a mounted volume), ``github:OWNER/REPO``
(the CI artifacts of a GitHub repository, ``GitHubArtifactDatabase``) or ``redis://HOST:PORT``
(``hypothesis.extra.redis``). ``dev`` and ``nightly`` read and write it; ``ci`` only reads it, replaying
every saved counterexample before its own examples, with a fixed seed in place of derandomization (which
Hypothesis allows only without a database), so a failure a nightly run found on one host fails CI on
another.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from ..errors import UsageError, whole_number

PROFILE_ENV = "FP8_VERIFY_PROFILE"
PROFILES = ("dev", "ci", "nightly")
SCALE = {"dev": 0.5, "ci": 1.0, "nightly": 25.0}
MAX_EXAMPLES = {"dev": 15, "ci": 40, "nightly": 1000}
"""Examples per property test on the CPU double, whose bit-exact emulation costs per element."""
MAX_EXAMPLES_REAL = {"dev": 100, "ci": 1000, "nightly": 25000}
"""Examples per property test where the real kernel runs: an example costs milliseconds there (numbers
drawn on the GPU, the emulation a Triton kernel), so CI reaches the shapes one wave of 132 SMs does not."""
REQUIRE = ("auto", "real", "double", "any")

# The fp8_record fixture accumulates over examples on purpose (examples run, worst error/bound).
_COMMON = dict(
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.differing_executors,
        HealthCheck.function_scoped_fixture,
    ],
    deadline=None,
)


EXAMPLE_DB_ENV = "FP8_VERIFY_EXAMPLE_DB"
CI_SEED = 0  # the ci profile's seed when an example database replaces derandomization


def example_database():
    """The database ``$FP8_VERIFY_EXAMPLE_DB`` names, or None (Hypothesis' default then applies)."""
    spec = os.environ.get(EXAMPLE_DB_ENV)
    if not spec:
        return None
    from hypothesis import database as db

    if spec.startswith("github:"):
        owner, _, repo = spec.removeprefix("github:").partition("/")
        if not owner or not repo:
            raise UsageError(f"{EXAMPLE_DB_ENV}={spec!r}: expected github:OWNER/REPO")
        return db.GitHubArtifactDatabase(owner, repo)
    if spec.startswith("redis://"):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as e:
            raise UsageError(f"{EXAMPLE_DB_ENV}={spec!r} needs the redis package ({e})") from None
        return RedisExampleDatabase(redis.Redis.from_url(spec))
    return db.DirectoryBasedExampleDatabase(spec)


def max_examples(profile: str, real: bool, override: int | None = None) -> int:
    """Examples per property test: ``override`` (``--fp8-examples``), else by profile and kernel."""
    return override or (MAX_EXAMPLES_REAL if real else MAX_EXAMPLES)[profile]


def register_profiles(real: bool = False, override: int | None = None) -> None:
    """The three profiles, with example counts for where the kernel runs (registered again once the
    subject is loaded; Hypothesis' plugin loads ``--hypothesis-profile`` after that)."""
    shared = example_database()
    local = {} if shared is None else {"database": shared}
    n = {p: max_examples(p, real, override) for p in PROFILES}
    settings.register_profile("dev", max_examples=n["dev"], **local, **_COMMON)
    if shared is None:
        ci = {"derandomize": True, "database": None}
    else:
        from hypothesis.database import ReadOnlyDatabase

        ci = {"database": ReadOnlyDatabase(shared)}
    settings.register_profile("ci", max_examples=n["ci"], print_blob=True, **ci, **_COMMON)
    settings.register_profile("nightly", max_examples=n["nightly"], **local, **_COMMON)


def fixed_seed_for(config: pytest.Config, profile: str) -> None:
    """With a shared database the ci profile cannot derandomize: pin Hypothesis' seed instead (unless the
    user gave ``--hypothesis-seed``), so that CI stays deterministic for a given database."""
    if (
        profile == "ci"
        and os.environ.get(EXAMPLE_DB_ENV)
        and config.getoption("hypothesis_seed", None) is None
    ):
        config.option.hypothesis_seed = CI_SEED


def profile_from_env() -> str:
    """``$FP8_VERIFY_PROFILE``, else ``ci`` under CI and ``dev`` elsewhere; a bad name is a usage error."""
    name = os.environ.get(PROFILE_ENV) or ("ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise UsageError(f"{PROFILE_ENV}={name!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return name


def check_environment() -> None:
    """Every environment variable the suite reads, validated up front (a bad one is a usage error, not a
    test failure): the profile and the problem-size budgets."""
    from ..problem import budget

    profile_from_env()
    for fn in (budget.memory_budget, budget.work_budget):
        fn.cache_clear()
        fn()


def current_profile() -> str:
    return settings.get_current_profile_name()


def examples(n: int) -> int:
    """``n`` examples under the ci profile, scaled for the others: for tests whose example count is set
    per test (expensive ones) but should still grow in nightly runs."""
    return max(2, round(n * SCALE.get(current_profile(), 1.0)))


def addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("fp8-verify")
    g.addoption("--fp8-report", metavar="FILE", help="write the JSON report here")
    g.addoption(
        "--fp8-artifacts",
        metavar="DIR",
        help="where failing examples leave repro scripts and error maps "
        "(default: <report>.failures/ when --fp8-report is given)",
    )
    g.addoption(
        "--fp8-summary-md",
        metavar="FILE",
        help="write the Markdown summary here (also appended to $GITHUB_STEP_SUMMARY if set)",
    )
    g.addoption(
        "--fp8-require",
        choices=REQUIRE,
        default="auto",
        help="which kernel must run: real (the SM90 kernel; fail if it does not load), double (the CPU "
        "double even on a GPU), any, or auto (real where an SM90 GPU is visible, else the double)",
    )
    g.addoption(
        "--fp8-path",
        action="append",
        default=[],
        metavar="NAME=module:function[@m4]",
        help="add a GEMM with vLLM's signature (a, b, a_scale, b_scale, block, out_dtype) as a path: every "
        "property that applies runs on it (@m4: its kernel takes only M % 4 == 0)",
    )
    g.addoption(
        "--fp8-examples",
        type=whole_number,
        metavar="N",
        help="examples per property test, for every profile (default: by profile, and 25x more where the "
        "real kernel runs than on the CPU double); tests that set their own count keep it",
    )
    g.addoption(
        "--fp8-shards",
        type=whole_number,
        metavar="N",
        help="run each property marked sharded as N test items of 1/N of its examples, each from a seed of "
        "its own, so that xdist spreads one property over N workers (and GPUs); the report joins them",
    )
    g.addoption(
        "--fp8-self-tests",
        action="store_true",
        help="run fp8-verify's own tests (marked selftest) on the real kernel too; by default they run "
        "only on the CPU double, since they do not touch the kernel",
    )
    g.addoption(
        "--fp8-dry-run",
        action="store_true",
        help="run without a subject: if vLLM is missing or broken, its tests skip instead of the run "
        "stopping (the suite's self-tests still run)",
    )
