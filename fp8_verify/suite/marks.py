"""Skips and expected failures: Hopper-only tests skip with the reason the real kernel is not here, and a
test item that a known upstream defect covers (:mod:`.findings`) is a strict xfail that holds only while
it fails the way the finding says.

pytest's own ``xfail(strict=True)`` accepts any failure; here the report is decided after the call:

* every failure matches a finding's signature -> xfailed (``wasxfail`` names the finding);
* another failure -> failed, with a section saying which failure was expected instead;
* no failure -> failed: the defect is fixed on this release and the finding's range must say so.

For a Hypothesis test the check runs per example, through the documented reassignable
``test.hypothesis.inner_test``: an example that fails with a finding's signature is recorded and counts,
for Hypothesis, as passing, so the test goes on -- a second, different bug in the same cell (another M,
another shape) is still seen, raised, shrunk and reported as usual. It goes on for
:data:`PAST_A_KNOWN_FAILURE` examples after the first known failure (or to the end of its examples, if
sooner), then ends at once (:class:`EnoughExamples`, a ``BaseException``, which Hypothesis does not
catch) unless another failure is being shrunk. A fixed number rather than all of them: a contract cell
(``examples(6)``, where the review's planted second bug hid) still runs every example, while a known
failure that costs far more than a passing example is capped -- FV-001's compile fails afresh on every
call, about 0.4 s each on the CPU: its three cells took 50 s with all 40 examples (CPU ci profile), 9 s
with 6 (3 s with the first alone), and 1,000 examples on a GPU would be minutes each. The contract cells'
cost is the rest: ~21 s -> ~90 s for the five CUTLASS paths' xfailed cells on the 2-core CPU (ci),
about 4% of the CPU CI's tests. Known failures are not shrunk (the finding's repro is the minimal one).
"""

from __future__ import annotations

import functools
from collections import Counter

import pytest

from .findings import Finding, for_item
from .records import FINDING_KEY

FINDINGS = pytest.StashKey[tuple[Finding, ...]]()
#: The findings that the examples of a Hypothesis test failed with, one entry per failing example.
KNOWN = pytest.StashKey[Counter[str]]()
#: Examples a Hypothesis test runs after its first known failure (5: every example of a contract cell).
PAST_A_KNOWN_FAILURE = 5


class EnoughExamples(BaseException):
    """Ends a Hypothesis test :data:`PAST_A_KNOWN_FAILURE` examples after its first known failure."""


def known_failures(item: pytest.Item) -> tuple[Finding, ...]:
    return item.stash.get(FINDINGS, ())


def matching(findings: tuple[Finding, ...], exc: BaseException) -> Finding | None:
    return next((f for f in findings if f.signature.matches(exc)), None)


def expect(item: pytest.Item, findings: tuple[Finding, ...], release: str | None) -> None:
    """Mark ``item`` as expected to fail with one of ``findings`` on ``release``."""
    item.stash[FINDINGS] = findings
    for f in findings:
        item.add_marker(pytest.mark.fp8_finding(f.id, release))


def findings_for(
    item: pytest.Item, path_spec, release: str | None, compile_backend: str | None
) -> tuple[Finding, ...]:
    prop = getattr(item, "originalname", item.name)
    params = dict((getattr(item, "callspec", None) and item.callspec.params) or {})
    return for_item(prop, path_spec, params, release, compile_backend)


class ExpectedFailures:
    """Plugin object: turns the call report of an item with a known finding into xfailed or failed."""

    def __init__(self, release: str | None) -> None:
        self.release = release

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        findings = known_failures(item)
        holder = getattr(getattr(item, "obj", None), "hypothesis", None)
        if not findings or holder is None:
            yield
            return
        original = holder.inner_test
        known = item.stash[KNOWN] = Counter()
        record = getattr(item, "funcargs", {}).get("fp8_record")
        state = {"after": -1, "other": False}  # examples since the first known failure; another seen

        @functools.wraps(original)
        def checked_example(*args, **kwargs):
            result = None
            try:
                result = original(*args, **kwargs)
            except Exception as e:
                found = matching(findings, e)
                if found is None:
                    state["other"] = True  # Hypothesis shrinks and reports it: never cut that short
                    raise
                known[found.id] += 1  # a known failure: record it and go on to the next example
                if record is not None:
                    record.example()
            if known:
                state["after"] += 1
                if state["after"] >= PAST_A_KNOWN_FAILURE and not state["other"]:
                    raise EnoughExamples()
            return result

        holder.inner_test = checked_example  # per item: parametrized items share the function
        try:
            yield
        finally:
            holder.inner_test = original

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        findings = known_failures(item)
        if not findings or call.when != "call":
            return
        report = outcome.get_result()
        exc = call.excinfo.value if call.excinfo is not None else None
        known = item.stash.get(KNOWN, Counter())
        if isinstance(exc, EnoughExamples):
            exc = None
        elif exc is not None and (found := matching(findings, exc)) is not None:
            known[found.id] += 1  # a test that is not Hypothesis' failed as the finding says
            exc = None
        ids = ", ".join(f.id for f in findings)
        if exc is None and known:
            by_id = {f.id: f for f in findings}
            report.outcome = "skipped"
            report.wasxfail = "; ".join(
                f"{fid} (vLLM {self.release}): {by_id[fid].title}" for fid, _ in known.most_common()
            )
            report.user_properties.append((FINDING_KEY, known.most_common(1)[0][0]))
        elif exc is None:
            report.outcome = "failed"
            report.longrepr = (
                f"[XPASS(strict)] {ids} expected on vLLM {self.release} but the property passed: the "
                f"defect looks fixed in this release. If so, set first_fixed to {self.release} "
                "(fp8_verify/suite/findings.py) and update FINDINGS.md."
            )
        else:
            expected = "; ".join(f"{f.id}: {f.signature.describe()}" for f in findings)
            seen = ", ".join(f"{n} as {fid}" for fid, n in known.most_common())
            report.sections.append(
                (
                    "fp8-verify",
                    f"expected the failure of {expected}, but the property failed another way: a new "
                    "defect, or a changed one, in a cell these findings cover"
                    + (f" (examples that failed as expected: {seen})" if seen else ""),
                )
            )
