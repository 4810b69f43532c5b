"""The suite's command-line options, its Hypothesis profiles and the example counts they imply.

Profiles: ``dev`` (local default: few examples), ``ci`` (default when ``$CI`` is set: derandomized, no
deadline, no example database, fixed counts) and ``nightly`` (25x). Chosen with ``--hypothesis-profile``,
``$FP8_VERIFY_PROFILE`` or ``fp8-verify check --profile``.

They apply to fp8-verify's own items only (its suite's test files, and tests that take its fixtures or
carry its markers; :func:`owns`): a project that loads the plugin keeps Hypothesis' settings -- its own
profile, or Hypothesis' defaults -- for its own tests. So fp8-verify's profile is never loaded globally:
it is registered as ``fp8-verify-<name>`` and made Hypothesis' default only while fp8-verify's test
modules import and its items are parametrized (:func:`scoped`), which is when Hypothesis and
``@settings`` read the default; its ``@given`` tests without settings of their own get it by
``@settings`` (:func:`apply`). The plain names are registered too, with Hypothesis' defaults, so that
``--hypothesis-profile dev`` loads (never over a profile of the same name -- Hypothesis' own ``ci``, or a
user's).

Counterexamples travel between hosts and runs through Hypothesis' example databases:
``$FP8_VERIFY_EXAMPLE_DB`` names one -- a directory (shared, e.g. a mounted volume), ``github:OWNER/REPO``
(the CI artifacts of a GitHub repository, ``GitHubArtifactDatabase``) or ``redis://HOST:PORT``
(``hypothesis.extra.redis``). ``dev`` and ``nightly`` read and write it; ``ci`` only reads it, replaying
every saved counterexample before its own examples, with a fixed seed in place of derandomization (which
Hypothesis allows only without a database), so a failure a nightly run found on one host fails CI on
another. That seed is Hypothesis' ``--hypothesis-seed``, which holds for every test of the session (a
project's own too): Hypothesis' per-test ``@seed`` would turn the database off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.errors import InvalidArgument

from ..errors import UsageError, whole_number

PROFILE_ENV = "FP8_VERIFY_PROFILE"
PROFILES = ("dev", "ci", "nightly")
SCALE = {"dev": 0.5, "ci": 1.0, "nightly": 25.0}
MAX_EXAMPLES = {"dev": 15, "ci": 40, "nightly": 1000}
"""Examples per property test on the CPU double, whose bit-exact emulation costs per element."""
MAX_EXAMPLES_REAL = {"dev": 100, "ci": 1000, "nightly": 25000}
"""Examples per property test where the real kernel runs: an example costs milliseconds there (numbers
drawn on the GPU, the emulation a Triton kernel), so CI reaches the shapes one wave of 132 SMs does not."""
BATCH = {"dev": 1, "ci": 1, "nightly": 128}
"""Problems per example of the bit-exact property (``--fp8-batch``): the nightly draws a shape and checks
up to this many problems of it with fresh activations, its emulation and reference run once over all of
them (:func:`fp8_verify.suite.properties.check_bit_exact`); the ci and dev profiles check one."""
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


def batch(profile: str, override: int | None = None) -> int:
    """Problems per bit-exact example: ``override`` (``--fp8-batch``), else by profile (:data:`BATCH`)."""
    return override or BATCH.get(profile, 1)


def max_examples(profile: str, real: bool, override: int | None = None) -> int:
    """Examples per property test: ``override`` (``--fp8-examples``), else by profile and kernel."""
    return override or (MAX_EXAMPLES_REAL if real else MAX_EXAMPLES)[profile]


SCOPE_PREFIX = "fp8-verify-"  # fp8-verify's profiles, as registered with Hypothesis
FIXTURES = ("gemm", "fp8_record", "fp8_shard")  # a test that takes one of these is fp8-verify's
MARKERS = ("paths", "sharded")  # likewise a test marked so


def profile_settings(profile: str, real: bool = False, override: int | None = None, **extra: Any) -> settings:
    """fp8-verify's settings for ``profile``, built on Hypothesis' own defaults (never on a profile the
    project loaded), with example counts for where the kernel runs."""
    shared = example_database()
    if profile == "ci" and shared is None:
        own: dict[str, Any] = {"derandomize": True, "database": None, "print_blob": True}
    elif profile == "ci":
        from hypothesis.database import ReadOnlyDatabase

        own = {"database": ReadOnlyDatabase(shared), "print_blob": True}
    else:
        own = {} if shared is None else {"database": shared}
    n = max_examples(profile, real, override)
    return settings(settings.get_profile("default"), max_examples=n, **own, **_COMMON, **extra)


def register_names() -> None:
    """Let ``--hypothesis-profile dev|ci|nightly`` load in Hypothesis' plugin: a name Hypothesis does not
    know yet is registered with its defaults (fp8-verify's items get fp8-verify's profile of that name all
    the same); a name it knows -- its own ``ci``, a user's ``dev`` -- is left as it is."""
    for name in PROFILES:
        try:
            settings.get_profile(name)
        except InvalidArgument:
            settings.register_profile(name, settings.get_profile("default"))


def chosen_profile(config: pytest.Config) -> str:
    """The profile of fp8-verify's items: ``--hypothesis-profile`` (fp8-verify's of that name, or a user's
    profile, which then applies to them as it is), else ``$FP8_VERIFY_PROFILE`` or ``$CI``."""
    return config.getoption("hypothesis_profile", None) or profile_from_env()


def register_scoped(config: pytest.Config, profile: str, real: bool) -> str:
    """Register fp8-verify's ``profile`` (with Hypothesis' ``--hypothesis-verbosity`` and
    ``--hypothesis-explain``, which Hypothesis applies only to its global default) as
    ``fp8-verify-<profile>``; returns the name :func:`scoped` loads (a user's profile: its own name)."""
    if profile not in PROFILES:
        return profile
    extra: dict[str, Any] = {}
    verbosity = config.getoption("hypothesis_verbosity", None)
    if verbosity:
        extra["verbosity"] = Verbosity[verbosity]
    if config.getoption("hypothesis_explain", None):
        extra["phases"] = (*settings.get_profile("default").phases, Phase.explain)
    name = SCOPE_PREFIX + profile
    settings.register_profile(
        name, profile_settings(profile, real, config.getoption("--fp8-examples"), **extra)
    )
    return name


@contextlib.contextmanager
def scoped(name: str) -> Iterator[None]:
    """Hypothesis' default settings are profile ``name`` inside, and what they were outside: fp8-verify's
    modules import and its items are parametrized in here, so that ``@given`` and ``@settings`` (which
    read the default then) see its profile and a project's own tests never do."""
    before = settings.get_current_profile_name()
    settings.load_profile(name)
    try:
        yield
    finally:
        settings.load_profile(before)


def owns(fixturenames: list[str] | tuple[str, ...], has_marker: Any) -> bool:
    """Whether a test outside fp8-verify's test files is one of its items: it takes one of its fixtures
    or carries one of its markers (``has_marker(name)``)."""
    return any(f in fixturenames for f in FIXTURES) or any(has_marker(m) for m in MARKERS)


def apply(function: Any, name: str) -> None:
    """Give a ``@given`` test with no ``@settings`` of its own the profile ``name`` (Hypothesis' settings
    decorator, above ``@given``); a test's own settings stay as they are."""
    if not getattr(function, "is_hypothesis_test", False):
        return
    with contextlib.suppress(InvalidArgument):  # it has settings of its own
        settings(settings.get_profile(name))(function)


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
    test failure): the profile, the problem-size budgets and the wait on a native build's lock."""
    from ..problem import budget
    from .guard import wait_limit

    profile_from_env()
    wait_limit()
    for fn in (budget.memory_budget, budget.work_budget):
        fn.cache_clear()
        fn()


def current_profile() -> str:
    """The profile in force: fp8-verify's inside :func:`scoped` (as its test modules import), else
    Hypothesis' current one."""
    return settings.get_current_profile_name().removeprefix(SCOPE_PREFIX)


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
        "--fp8-batch",
        type=whole_number,
        metavar="N",
        help="problems per example of the bit-exact property: N problems of the drawn shape with fresh "
        "activations, judged by one batched emulation and reference (default: 128 under nightly, else 1)",
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
