#!/bin/sh
# A well-behaved agent: reads its prompt from the file named by its first argument.
echo "steady: round $ARBITER_ROUND, prompt: $(head -n 1 "$1")"
