#!/bin/sh
# v6: v5 (answer 16 - N, no replay) with self-checks that hold no digits; $3 = "chain" adds "So the total is still N." after each
set -e
PY=../../.venv/bin/python
S=${1:-0}; LOSS=${2:-vanilla}; V=${3:-plain}
EXTRA=""; [ "$V" = chain ] && EXTRA="--chain"
nice -n 10 $PY tb3.py sft --seed $S --init ck/pre2_s0 --loss $LOSS --steps 300 --lr 2e-3 --warmup 0.1 --freeze_vision --replay 0 --answer notred --v6 $EXTRA --tag v6$V > logs/sft6${V}_${LOSS}_s$S.log 2>&1
