#!/bin/sh
# after the running SCALe seed-0 job: seed 1, both arms, one at a time
while pgrep -f "tb3.py sft --seed 0 --init ck/pre2_s0 --loss scale" >/dev/null; do sleep 5; done
./run_v4.sh 1 vanilla
./run_v4.sh 1 scale
