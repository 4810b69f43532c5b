#!/usr/bin/env bash
# One device call: the whole suite on the real kernel, the contract table, the repros, then the
# calibration for the time left. Logs to $OUT (8 files at most come back).
set -u
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 VLLM_LOGGING_LEVEL=ERROR
python3 -m fp8_verify env > $OUT/env.txt 2>&1
( time timeout ${SUITE_S:-300} python3 -m fp8_verify check --profile ci --report $OUT/report.json \
    -q -p no:cacheprovider --ignore=tests/test_mutants.py ) > $OUT/suite.log 2>&1
tail -45 $OUT/suite.log | cut -c1-250
[ "${SKIP_CONTRACT:-0}" = 1 ] || timeout 150 python3 -m fp8_verify.contract --json $OUT/contract_h100.json --md $OUT/contract_h100.md \
    > /dev/null 2>&1; echo "contract rc=$?"
[ "${SKIP_CONTRACT:-0}" = 1 ] || ( cd repros && for f in fv*.py; do echo "== $f"; timeout 60 python3 $f 2>&1 | grep -v -i warn | tail -4; \
  echo "exit ${PIPESTATUS[0]}"; done ) >> $OUT/env.txt 2>&1
if [ "${CAL_S:-0}" -gt 0 ]; then
  timeout $((CAL_S + 60)) python3 -m fp8_verify.calibrate --n 100000 --seconds $CAL_S --out $OUT/cal \
    > $OUT/calibrate.log 2>&1; tail -8 $OUT/calibrate.log
  cp $OUT/cal/calibration.json $OUT/cal/calibration.png $OUT/ 2>/dev/null; rm -rf $OUT/cal
fi
