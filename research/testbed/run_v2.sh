#!/bin/sh
# v2: caption with running totals; SFT lr 1e-3, vision frozen (run 2 of the search)
set -e
PY=../../.venv/bin/python
nice -n 15 $PY tb3.py pretrain --seed 0 --steps 1000 --lr 3e-3 --stop_exact 0.95 --save ck/pre2_s0 --tag pre_v2 > logs/pre2_s0.log 2>&1
nice -n 15 $PY tb3.py sft --seed 0 --init ck/pre2_s0 --loss vanilla --steps 300 --lr 1e-3 --warmup 0.1 --freeze_vision --tag v2 > logs/sft2_van_s0.log 2>&1
