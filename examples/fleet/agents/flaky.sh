#!/bin/sh
# Fails its first two rounds, then works. Its prompt arrives on standard input.
head -n 1
if [ "$ARBITER_ROUND" -le 2 ]; then
  echo "flaky: round $ARBITER_ROUND failed" >&2
  exit 1
fi
echo "flaky: round $ARBITER_ROUND recovered"
