#!/usr/bin/env python3
"""Writes symbolic.jsonl: pairs of LaTeX forms that sympy says are equal, and perturbed ones
that it says are not, all printed by `sympy.latex` (so the parser meets another writer's LaTeX:
`\\left(x + 1\\right)^{2}`, `\\frac{\\sqrt{3}}{2}`, `\\sin{\\left(x \\right)}`).

Each line is {"a", "b", "equal"}. Needs sympy (the bench venv has it); seeded, so reproducible:
    ~/.cache/r1-py/bin/python reward-workers/tests/data/math/make_symbolic.py \\
        > reward-workers/tests/data/math/symbolic.jsonl
"""
import json
import random

import sympy as sp

x, y = sp.symbols("x y")


def atom(rng):
    k = rng.randrange(8)
    if k == 0:
        return sp.Integer(rng.randint(1, 9))
    if k == 1:
        return sp.Rational(rng.randint(1, 9), rng.randint(2, 9))
    if k == 2:
        return sp.sqrt(rng.choice([2, 3, 5, 6, 7]))
    if k == 3:
        return rng.choice([x, y])
    if k == 4:
        return sp.pi
    if k == 5:
        return rng.choice([sp.sin(x), sp.cos(x), sp.sin(2 * x), sp.exp(y), sp.sqrt(x)])
    if k == 6:
        return sp.Integer(rng.randint(1, 9)) ** sp.Rational(1, rng.choice([2, 3]))
    return rng.choice([x, y]) + rng.randint(1, 5)


def term(rng, depth):
    if depth == 0:
        return atom(rng)
    a, b = term(rng, depth - 1), term(rng, depth - 1)
    return rng.choice([a + b, a - b, a * b, a / b if b != 0 else a, a ** 2, a * b + a])


def main():
    rng = random.Random(7)
    seen = set()
    while len(seen) < 150:
        e = term(rng, 2)
        if e.is_number and e == 0:
            continue
        forms = {sp.latex(f) for f in (e, sp.expand(e), sp.factor(e), sp.simplify(e), sp.together(e), sp.expand_trig(e))}
        forms = sorted(forms)
        if len(forms) < 2:
            continue
        a, b = forms[0], forms[-1]
        if (a, b) in seen:
            continue
        seen.add((a, b))
        print(json.dumps({"a": a, "b": b, "equal": True}))
        print(json.dumps({"a": a, "b": sp.latex(sp.expand(e) + rng.choice([1, x, sp.Rational(1, 2)])), "equal": False}))


if __name__ == "__main__":
    main()
