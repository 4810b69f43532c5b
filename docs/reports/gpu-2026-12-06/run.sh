#!/usr/bin/env bash
# This session's GPU run (one Hopper machine per vLLM release): stage the release's bundle, then one of
#   run.sh corpus   -- the hardware corpus and a smoke run of every new row
#   run.sh exact ROWS EXAMPLES SHARDS  -- test_bit_exact at scale on the rows named (regex for -k)
#   run.sh ci       -- the ci profile, -n 8, the whole suite
# Logs and reports go to $OUT. Each stage is bounded by `timeout`.
set -uo pipefail
export CUDA_HOME=/usr/local/cuda PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CI=true
V=$(cat /tmp/site/.ready 2>/dev/null || echo none)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"
case "$1" in
  corpus)
    timeout "${2:-280}" python3 -m fp8_verify.tools.corpus capture --out "$OUT/corpus-$V.json" 2>&1 | tail -40 | tee "$OUT/corpus.log"
    ;;
  exact)
    timeout "${5:-560}" python3 -m fp8_verify.cli check --profile ci --require real -n 8 \
      -k "test_bit_exact and ($2)" --examples "$3" --shards "$4" tests/test_exact.py \
      --report "$OUT/exact-$V.json" --durations=15 2>&1 | tail -60 | tee "$OUT/exact.log"
    ;;
  final)  # the session's last call: the wheels vLLM's config needs, then every study in one go
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    timeout 75 python3 -m fp8_verify.cli check --profile ci --require real -n 8 \
      -k "test_bit_exact and (layer_ or quant_)" --examples 2000 --shards 8 tests/test_exact.py \
      --report "$OUT/exact-layers-$V.json" 2>&1 | tail -25 | tee "$OUT/exact-layers.log"
    timeout 40 python3 -m fp8_verify.cli check --profile ci --require real -n 8 \
      -k "quant_double or deepgemm_double" tests/test_hopper.py \
      --report "$OUT/doubles-$V.json" 2>&1 | tail -25 | tee "$OUT/doubles.log"
    timeout 30 python3 docs/reports/gpu-2026-12-06/triton_study.py 2>&1 | tail -25 | tee "$OUT/triton-study.log"
    timeout 35 python3 -m fp8_verify.tools.corpus capture --out "$OUT/corpus-$V.json" 2>&1 | tail -3
    ;;
  ci)
    timeout "${2:-560}" python3 -m fp8_verify.cli check --profile ci --require real -n 8 \
      --report "$OUT/ci-$V.json" --durations=25 2>&1 | tail -90 | tee "$OUT/ci.log"
    ;;
esac
