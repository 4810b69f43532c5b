#!/usr/bin/env bash
# This session's GPU run (one Hopper machine per vLLM release): stage the release's bundle, then one of
#   run.sh corpus   -- the hardware corpus and a smoke run of every new row
#   run.sh exact ROWS EXAMPLES SHARDS [LIMIT [BATCH]] -- test_bit_exact at scale on the rows named (-k)
#   run.sh nightly EXAMPLES [LIMIT]  -- a nightly slice of test_bit_exact (the GEMM rows), batched
#                                        (128 problems per example) and, in the same sitting, unbatched
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
      -k "test_bit_exact and ($2)" --examples "$3" --shards "$4" --batch "${6:-1}" tests/test_exact.py \
      --report "$OUT/exact-$V.json" --durations=15 2>&1 | tail -60 | tee "$OUT/exact.log"
    python3 docs/reports/gpu-2026-12-06/rate.py "$OUT/exact-$V.json" | tee -a "$OUT/exact.log"
    ;;
  nightly)  # problems judged per GPU-hour, start-up included: batched, then one problem per example
    for b in 128 1; do
      t0=$(date +%s.%N)
      timeout "${3:-200}" python3 -m fp8_verify.cli check --profile nightly --require real -n 8 \
        -k "test_bit_exact and not quant_ and not layer_" --examples "$2" --shards 8 --batch "$b" tests/test_exact.py \
        --report "$OUT/nightly-b$b-$V.json" 2>&1 | tail -30 > "$OUT/nightly-b$b.log"
      echo "batch $b: wall $(python3 -c "import time; print(round(time.time() - $t0, 1))") s" | tee -a "$OUT/nightly.log"
      python3 docs/reports/gpu-2026-12-06/rate.py "$OUT/nightly-b$b-$V.json" | tee -a "$OUT/nightly.log"
    done
    ;;
  final)  # the wheels vLLM's config needs, the doubles, the corpus with layer rows, the layer rows batched
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl .whl-extra/*.whl
    timeout 90 python3 -m fp8_verify.cli check --profile ci --require real -n 8 \
      -k "quant_double or deepgemm_double" tests/test_hopper.py \
      --report "$OUT/doubles-$V.json" 2>&1 | tail -25 | tee "$OUT/doubles.log"
    timeout 150 python3 -m fp8_verify.tools.corpus capture --out "$OUT/corpus-$V.json" 2>&1 | tail -3
    python3 -c "import json; d = json.load(open('$OUT/corpus-$V.json')); print(len(d['entries']), 'entries, complete', d['complete'])"
    timeout "${2:-300}" python3 -m fp8_verify.cli check --profile ci --require real -n 8 \
      -k "test_bit_exact and (layer_ or quant_ or deepgemm)" --examples "${3:-400}" --shards 8 --batch 128 \
      tests/test_exact.py --report "$OUT/exact-layers-$V.json" 2>&1 | tail -40 > "$OUT/exact-layers.log"
    python3 docs/reports/gpu-2026-12-06/rate.py "$OUT/exact-layers-$V.json" | tee -a "$OUT/exact-layers.log"
    ;;
  ci)
    timeout "${2:-560}" python3 -m fp8_verify.cli check --profile ci --require real -n 8 \
      --report "$OUT/ci-$V.json" --durations=25 2>&1 | tail -90 | tee "$OUT/ci.log"
    python3 docs/reports/gpu-2026-12-06/rate.py "$OUT/ci-$V.json" | tee -a "$OUT/ci.log"
    ;;
esac
