#!/bin/sh
# seed 2, both arms, after run_seeds.sh (pid given as $1) has finished
while kill -0 "$1" 2>/dev/null; do sleep 5; done
./run_v4.sh 2 vanilla
./run_v4.sh 2 scale
