#!/bin/sh
# The exact commands of every testbed variant (README.md "Task and protocol"; earlier one-file-per-variant scripts
# are in git history). Usage: ./run.sh pretrain | ./run.sh <variant> <seed> vanilla|scale [option]
#   pretrain  the v2 perception checkpoint ck/pre2_s0 (caption with running totals), the init of every SFT run
#   v2        caption with running totals; SFT lr 1e-3, vision frozen (seed 0, vanilla in the README's table)
#   v3        conclusion right after the caption, image-independent self-checks after it, 4 replayed captions/step
#   v4        v3 with the v4 self-check pool (the recommended configuration of the first session)
#   v5 [R]    v4 trace + closing restatement; question "how many cells are not red?", answer 16 - N; R replayed
#             captions per step (default 4)
#   v6 [V]    v5 without replay, self-checks that hold no digits; V = chain adds "So the total is still N." after each
set -e
PY=../../.venv/bin/python
VARIANT=${1:?variant: pretrain, v2, v3, v4, v5 or v6}; S=${2:-0}; LOSS=${3:-vanilla}
SFT="$PY tb3.py sft --seed $S --init ck/pre2_s0 --loss $LOSS --steps 300 --warmup 0.1 --freeze_vision"
case "$VARIANT" in
  pretrain) nice -n 15 $PY tb3.py pretrain --seed 0 --steps 1000 --lr 3e-3 --stop_exact 0.95 --save ck/pre2_s0 \
              --tag pre_v2 > logs/pre2_s0.log 2>&1 ;;
  v2) nice -n 15 $SFT --lr 1e-3 --tag v2 > logs/sft2_van_s$S.log 2>&1 ;;
  v3) nice -n 15 $SFT --lr 2e-3 --replay 4 --tag v3 > "logs/sft3_${LOSS}_s$S.log" 2>&1 ;;
  v4) nice -n 15 $SFT --lr 2e-3 --replay 4 --tag v4 > "logs/sft4_${LOSS}_s$S.log" 2>&1 ;;
  v5) R=${4:-4}
      nice -n 10 $SFT --lr 2e-3 --replay "$R" --answer notred --tag "v5r$R" > "logs/sft5r${R}_${LOSS}_s$S.log" 2>&1 ;;
  v6) V=${4:-plain}; EXTRA=""; [ "$V" = chain ] && EXTRA="--chain"
      nice -n 10 $SFT --lr 2e-3 --replay 0 --answer notred --v6 $EXTRA --tag "v6$V" \
        > "logs/sft6${V}_${LOSS}_s$S.log" 2>&1 ;;
  *) echo "unknown variant $VARIANT" >&2; exit 2 ;;
esac
