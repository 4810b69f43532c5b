#!/usr/bin/env bash
# One device call (PHASE=suite or PHASE=mutants), logs under /tmp/visit, packed into $OUT/visit-*.tgz.
#   suite:   the whole suite on the real kernel (alone, timed); then, while CAL_PROCS calibration
#            processes share the GPU: the failure-artifact demo (#7), the repros, the torch
#            scaled_mm layout probe and the contract table (#4); then the calibrations are merged.
#   mutants: the planted-bug catalogue (fp8-verify mutants --jobs), beside more calibration seeds.
# Every step has its own timeout, so the call ends inside END_S seconds (default 560).
set -u
export PYTHONPATH=${PYTHONPATH_OVERRIDE:-/tmp/site:$PWD} PYTHONUNBUFFERED=1 VLLM_LOGGING_LEVEL=ERROR
L=/tmp/visit-${PHASE:-suite}; rm -rf $L; mkdir -p $L
T0=$(date +%s); END_S=${END_S:-560}
left() { echo $(( END_S - ($(date +%s) - T0) )); }
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $L/steps.log; }
calibrate() {  # seeds... : one process per seed, each stopping CAL_S seconds from now
  for s in "$@"; do
    timeout $((CAL_S + 90)) python3 -m fp8_verify.calibrate --n 100000 --seed $s --seconds $CAL_S \
      --out $L/cal$s > $L/cal$s.log 2>&1 &
  done
}
pack() {
  ls $L/cal*/calibration.json >/dev/null 2>&1 && python3 -m fp8_verify.calibrate --merge $L/cal*/calibration.json \
    --out $L/calmerged > $L/calmerged.log 2>&1; cat $L/calmerged.log 2>/dev/null
  tar czf $OUT/visit-${PHASE:-suite}.tgz --exclude=examples.jsonl -C $L . ; say "packed"
}
python3 -m fp8_verify env > $L/env.txt 2>&1; nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv >> $L/env.txt
if [ "${PHASE:-suite}" = suite ]; then
  say "suite start"
  ( time timeout $(( $(left) - 200 )) python3 -m fp8_verify check --profile ci --report $L/report.json \
      -p no:cacheprovider -rfE ) > $L/suite.log 2>&1
  say "suite rc=$? $(grep -E '^(real|[0-9]+ (passed|failed))' $L/suite.log | tr '\n' ' ')"
  tail -12 $L/suite.log | cut -c1-200
  CAL_S=$(( $(left) - 75 )); calibrate ${SEEDS:-11 12 13}; say "calibration x$(wc -w <<< "${SEEDS:-11 12 13}") for ${CAL_S}s"
  A=$L/art; mkdir -p $A
  timeout 150 python3 -m fp8_verify check --mutant kernel-neighbour-row-scale --profile ci --report $A/r.json \
    -p no:cacheprovider -k "test_within_bound and dynamic_eager" > $A/check.log 2>&1; say "artifact check rc=$?"
  for f in $A/r.json.failures/*.py; do [ -f "$f" ] || continue
    timeout 60 python3 -m fp8_verify repro --mutant kernel-neighbour-row-scale $f > $A/repro-mutant.log 2>&1; say "repro --mutant rc=$?"
    timeout 60 python3 $f > $A/repro-plain.log 2>&1; say "repro plain (real kernel, no bug) rc=$?"; break
  done
  ( cd repros && for f in fv*.py; do echo "== $f"; timeout 40 python3 $f 2>&1 | grep -v -i warn | tail -3
    echo "exit ${PIPESTATUS[0]}"; done ) > $L/repros.log 2>&1; say "repros done"
  timeout 90 python3 scripts/scaled_mm_probe.py > $L/scaled_mm_probe.log 2>&1; say "probe rc=$?"
  timeout $(( $(left) - 45 )) python3 -m fp8_verify.contract --json $L/contract_h100.json --md $L/contract_h100.md \
    > $L/contract.log 2>&1; say "contract rc=$?"
else
  CAL_S=$(( $(left) - 60 )); calibrate ${SEEDS:-14 15}
  timeout $(( $(left) - 40 )) python3 -m fp8_verify mutants --profile ci --jobs ${JOBS:-6} --report $L/mutants.json \
    > $L/mutants.log 2>&1; say "mutants rc=$?"; tail -25 $L/mutants.log | cut -c1-220
  cp -r /tmp/fp8-verify-mutants-* $L/ 2>/dev/null
fi
say "waiting for calibration"; wait; say "calibration done"; pack
cat $L/steps.log
