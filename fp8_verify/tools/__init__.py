"""The tooling around the suite: timings (:mod:`.bench`), planted bugs (:mod:`.mutants`), upstream's
metrics as baselines (:mod:`.baselines`), the bound's calibration on the real kernel
(:mod:`.calibrate`) and the contract table (:mod:`.contract_table`). They import the product
(``fp8_verify`` outside this folder); nothing in the product imports them (tests/test_structure.py).
"""
