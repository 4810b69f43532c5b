"""Skips and expected failures: Hopper-only tests skip with the reason the real kernel is not here, and a
test item that a known upstream defect covers (:mod:`.findings`) is a strict xfail that holds only while
it fails the way the finding says.

pytest's own ``xfail(strict=True)`` accepts any failure; here the report is decided after the call:

* the failure matches the finding's signature -> xfailed (``wasxfail`` names the finding);
* another failure -> failed, with a section saying which failure was expected instead;
* no failure -> failed: the defect is fixed on this release and the finding's range must say so.

For a Hypothesis test the check runs per example, through the documented reassignable
``test.hypothesis.inner_test``: the first example that fails with the finding's signature ends the test
at once (as a ``BaseException``, which Hypothesis does not catch), so a known failure costs one failing
example -- no shrinking (the finding's repro is the minimal example) -- while any other failure is
raised, shrunk and reported.
"""

from __future__ import annotations

import functools

import pytest

from .findings import Finding, for_item
from .records import FINDING_KEY

FINDINGS = pytest.StashKey[tuple[Finding, ...]]()


class KnownFailure(BaseException):
    """Raised from the first example that fails the way a finding says, ending the Hypothesis run."""

    def __init__(self, finding: Finding, error: BaseException) -> None:
        super().__init__(f"{finding.id}: {error}")
        self.finding, self.error = finding, error


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

        @functools.wraps(original)
        def until_known_failure(*args, **kwargs):
            try:
                return original(*args, **kwargs)
            except Exception as e:
                found = matching(findings, e)
                if found is None:
                    raise
                raise KnownFailure(found, e) from e

        holder.inner_test = until_known_failure  # per item: parametrized items share the function
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
        if isinstance(exc, KnownFailure):
            exc = exc.error
        found = matching(findings, exc) if exc is not None else None
        ids = ", ".join(f.id for f in findings)
        if found is not None:
            report.outcome = "skipped"
            report.wasxfail = f"{found.id} (vLLM {self.release}): {found.title}"
            report.user_properties.append((FINDING_KEY, found.id))
        elif exc is None:
            report.outcome = "failed"
            report.longrepr = (
                f"[XPASS(strict)] {ids} expected on vLLM {self.release} but the property passed: the "
                f"defect looks fixed in this release. If so, set first_fixed to {self.release} "
                "(fp8_verify/suite/findings.py) and update FINDINGS.md."
            )
        else:
            expected = "; ".join(f"{f.id}: {f.signature.describe()}" for f in findings)
            report.sections.append(
                (
                    "fp8-verify",
                    f"expected the failure of {expected}, but the property failed another way: a new "
                    "defect, or a changed one, in a cell these findings cover",
                )
            )
