#!/bin/sh
# Takes its time.
sleep 1
echo "slow: round $ARBITER_ROUND done after a second"
