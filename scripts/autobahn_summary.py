"""Summarises an Autobahn|Testsuite report (index.json) for one agent and
exits non-zero unless every case is OK for behaviour and close behaviour.

The only exceptions are 7.1.6, 7.13.1 and 7.13.2: wstest records them as
INFORMATIONAL whatever the peer does (7.1.6 depends on how fast a large
message is flushed before a Close, 7.13.x on close codes the RFC leaves
open), in both the server and the client suite. NON-STRICT, UNCLEAN and
INFORMATIONAL anywhere else are failures.

usage: autobahn_summary.py INDEX_JSON AGENT LABEL
"""
import json
import sys
from collections import Counter

ALWAYS_INFORMATIONAL = {"7.1.6", "7.13.1", "7.13.2"}

path, agent, label = sys.argv[1:4]
report = json.load(open(path))[agent]
key = lambda c: [int(x) for x in c.split(".")]
beh, close, bad, ok = Counter(), Counter(), [], 0
for case in sorted(report, key=key):
    r = report[case]
    b, c = r["behavior"], r["behaviorClose"]
    beh[b] += 1
    close[c] += 1
    if case in ALWAYS_INFORMATIONAL:
        if b != "INFORMATIONAL" or c not in ("OK", "INFORMATIONAL"):
            bad.append((case, b, c))
    elif b != "OK" or c != "OK":
        bad.append((case, b, c))
    else:
        ok += 1
fmt = lambda cnt: ", ".join("%s %d" % kv for kv in sorted(cnt.items()))
print("%s: %d cases; behaviour: %s; close behaviour: %s" % (label, len(report), fmt(beh), fmt(close)))
for case, b, c in bad:
    print("%s: FAILED %s behaviour=%s close=%s" % (label, case, b, c))
print("%s: %d OK/OK, %d always-INFORMATIONAL, %d failed"
      % (label, ok, len(ALWAYS_INFORMATIONAL & set(report)), len(bad)))
sys.exit(1 if bad else 0)
