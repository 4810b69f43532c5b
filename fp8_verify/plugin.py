"""The pytest plugin's public name: ``-p fp8_verify.plugin``, or ``pytest_plugins = ["fp8_verify.plugin"]``
in a conftest. It is opt-in: nothing is registered for projects that do not name it. The hooks and
fixtures live in :mod:`fp8_verify.suite.plugin`; every one of them is exported here
(tests/test_structure.py checks)."""

from .suite.plugin import (
    fp8_record,
    fp8_shard,
    gemm,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_make_collect_report,
    pytest_report_header,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

__all__ = [
    "fp8_record",
    "fp8_shard",
    "gemm",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_make_collect_report",
    "pytest_report_header",
    "pytest_runtest_setup",
    "pytest_terminal_summary",
]
