#!/usr/bin/env bash
# One device call: the whole suite on the real kernel, the contract table, the repros. Logs to $OUT.
set -u
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 VLLM_LOGGING_LEVEL=ERROR
python3 -m fp8_verify env > $OUT/env.txt 2>&1
( time timeout ${SUITE_S:-330} python3 -m fp8_verify check --profile ci --report $OUT/report.json \
    --summary-md $OUT/summary.md -q -p no:cacheprovider --ignore=tests/test_mutants.py ) > $OUT/suite.log 2>&1
tail -40 $OUT/suite.log
timeout 120 python3 -m fp8_verify.contract --json $OUT/contract_h100.json --md $OUT/contract_h100.md \
    > $OUT/contract.log 2>&1; tail -3 $OUT/contract.log
( cd repros && for f in fv*.py; do echo "== $f"; timeout 60 python3 $f 2>&1 | grep -v -i warn | tail -4; echo "exit $?"; done ) > $OUT/repros.log 2>&1
cat $OUT/repros.log | cut -c1-300
