#!/bin/sh
# v5: v4 trace + closing restatement "So N of the 16 cells are red."; question "How many cells are not red?",
# answer 16 - N (the think never states it). $3 = replay captions per step (both arms).
set -e
PY=../../.venv/bin/python
S=${1:-0}; LOSS=${2:-vanilla}; R=${3:-4}
nice -n 10 $PY tb3.py sft --seed $S --init ck/pre2_s0 --loss $LOSS --steps 300 --lr 2e-3 --warmup 0.1 --freeze_vision --replay $R --answer notred --tag v5r$R > logs/sft5r${R}_${LOSS}_s$S.log 2>&1
