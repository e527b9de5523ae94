"""Checks `r1ctl reward score` results on the HumanEval jobs from make_jobs.py.

Every variant must get its expected status and reward (canonical 1, broken 0). Prints a
table per variant and every mismatch; exits 1 if there is any.

Usage: python check_results.py RESULTS.jsonl
"""

import collections
import json
import sys

EXPECTED = {"canonical": ("ok", 1.0), "pass_body": ("failed", 0.0), "off_by_one": ("failed", 0.0),
            "early_exit": ("exited_early", 0.0)}


def main():
    results = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
    right = collections.Counter()
    total = collections.Counter()
    wrong = []
    for r in results:
        variant = r["id"].rsplit("/", 1)[1]
        total[variant] += 1
        if (r["status"], r["reward"]) == EXPECTED[variant]:
            right[variant] += 1
        else:
            wrong.append(f'{r["id"]}: {r["status"]} {r["reward"]} ({r["detail"][:200]})')
    for variant, (status, reward) in EXPECTED.items():
        print(f"{variant:12} {right[variant]:4}/{total[variant]:<4} as expected (status {status}, reward {reward:g})")
    for line in sorted(wrong):
        print("MISMATCH", line)
    sys.exit(1 if wrong or not results else 0)


if __name__ == "__main__":
    main()
