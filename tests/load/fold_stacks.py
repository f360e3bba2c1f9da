#!/usr/bin/env python3
# Folds `perf script` output into one line per distinct stack,
# "root;caller;...;leaf count", the input format of flame graph renderers.
# Written here because Debian 12 packages no flame graph tooling.
import collections
import re
import sys

counts = collections.Counter()
stack = []
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        if stack:
            counts[";".join(reversed(stack))] += 1
            stack = []
        continue
    if line.startswith((" ", "\t")):
        # "    7f1c2d3e4f5a symbol+0x1a (/path/lib.so)"
        parts = line.strip().split(" ", 1)
        if len(parts) < 2:
            continue
        symbol = re.sub(r"\+0x[0-9a-f]+ \(.*\)$| \(.*\)$", "", parts[1]).strip()
        stack.append(symbol.replace(";", ":") or "[unknown]")
    else:
        stack = []  # the sample's header line: comm pid time: event
if stack:
    counts[";".join(reversed(stack))] += 1
for folded, n in counts.most_common():
    print(folded, n)
