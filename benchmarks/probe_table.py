"""Merge probe_hostile.py results (OUT/probe.partial.jsonl of several runs; a later file overrides
an earlier one case by case) and print the per-class table:

    python benchmarks/probe_table.py probe-old/probe.partial.jsonl probe-new/probe.partial.jsonl
"""

import json
import sys

res = {}
for f in sys.argv[1:]:
    for l in open(f):
        r = json.loads(l)
        res[r["name"]] = r
rs = list(res.values())
cats = sorted({r["category"] for r in rs})
cols = ["cases", "passed", "one-line errors", "tracebacks", "hangs", "accepted tampering", "reads outside",
        "writes outside", "files lost"]
def row(name, g):
    return (f"| {name} | {len(g)} | {sum(r['passed'] for r in g)} | {sum(r['one_line_error'] for r in g)} | "
            f"{sum(r['traceback'] for r in g)} | {sum(r['hang'] for r in g)} | {sum(r['accepted_hostile'] for r in g)} | "
            f"{sum(bool(r['reads_outside']) for r in g)} | {sum(bool(r['writes_outside']) for r in g)} | "
            f"{sum(len(r['files_lost']) for r in g)} |")
print("| class | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for c in cats:
    print(row(c, [r for r in rs if r["category"] == c]))
print(row("**all**", rs))
bad = [r for r in rs if not r["passed"]]
for r in bad:
    print("FAIL", r["name"], r["stderr_tail"][-200:], r["reads_outside"][:2], r["writes_outside"][:2], r["files_lost"][:2])
