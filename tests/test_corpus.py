"""Hardware answers in the CPU tier: every corpus captured on Hopper (docs/corpus/*.json, written by
``python -m fp8_verify.tools.corpus capture`` on the real kernels) is recomputed here and must give the
same bits. Where the installed release is the captured one, through the row itself on the CPU doubles
(vLLM's routing and the doubles' contracts and arithmetic); else through the emulation of the row's
kernel arithmetic alone (fp8_verify/tools/corpus.py). This is the CPU tier's evidence that its doubles
compute what the hardware computes -- the per-token kernel, DeepGEMM and vLLM's Triton GEMM included --
which the properties on the doubles cannot give (there the emulation is compared with itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fp8_verify.subject.vllm import load
from fp8_verify.tools.corpus import replay_entry

pytestmark = pytest.mark.cpu

CORPORA = sorted((Path(__file__).resolve().parent.parent / "docs" / "corpus").glob("*.json"))


def _entries():
    for corpus in CORPORA:
        doc = json.loads(corpus.read_text())
        for i, e in enumerate(doc["entries"]):
            yield pytest.param(doc["vllm"], doc["device"], e, id=f"{corpus.stem}-{i}-{e['path']}")


@pytest.mark.skipif(not CORPORA, reason="no hardware corpus in docs/corpus/ (capture one on Hopper)")
@pytest.mark.parametrize(("captured", "device_name", "entry"), list(_entries()))
def test_hardware_answer_replays(captured, device_name, entry):
    """One captured real-kernel answer, recomputed here bit for bit (a rejection must be one here too
    when replayed through the route)."""
    r = replay_entry(entry, load().vllm_version, captured)
    if r.how == "not modelled":
        pytest.skip(f"{r.detail}: an arithmetic fp8-verify does not model (kernels.Kernel.modelled)")
    assert r.ok, (
        f"{entry['path']} {entry['spec']} ({r.how}; captured on {device_name}, vLLM {captured}): {r.detail}"
    )
