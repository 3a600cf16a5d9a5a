#!/bin/sh
# v3: conclusion right after the caption, image-independent self-checks after it; SFT with 4 replayed captions
# per step (fixed weight, both arms), vision frozen, lr 2e-3
set -e
PY=../../.venv/bin/python
[ -f ck/pre3_s0/model.pt ] || nice -n 15 $PY tb3.py pretrain --seed 0 --steps 1000 --lr 3e-3 --stop_exact 0.95 --save ck/pre3_s0 --tag pre_v3 > logs/pre3_s0.log 2>&1
nice -n 15 $PY tb3.py sft --seed 0 --init ck/pre3_s0 --loss vanilla --steps 300 --lr 2e-3 --warmup 0.1 --freeze_vision --replay 4 --tag v3 > logs/sft3_van_s0.log 2>&1
