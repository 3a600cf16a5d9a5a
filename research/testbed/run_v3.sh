#!/bin/sh
# v3: conclusion right after the caption, image-independent self-checks after it; SFT from the v2 perception
# checkpoint (pre2_s0, same tokenizer) with 4 replayed captions per step (fixed weight, both arms), vision frozen
# (a fresh v3 pretrain, pre3_s0 with a re-trained tokenizer, had no perception breakthrough in 1000 steps)
set -e
PY=../../.venv/bin/python
S=${1:-0}; LOSS=${2:-vanilla}
nice -n 15 $PY tb3.py sft --seed $S --init ck/pre2_s0 --loss $LOSS --steps 300 --lr 2e-3 --warmup 0.1 --freeze_vision --replay 4 --tag v3 > logs/sft3_${LOSS}_s$S.log 2>&1
