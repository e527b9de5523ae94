#!/usr/bin/env python3
"""Writes arith.jsonl: random LaTeX arithmetic and its exact value from Python's `fractions`.

Each line is {"latex", "value"} with value "p/q" in lowest terms. The expressions use what MATH
answers use: \\frac/\\dfrac/\\tfrac, decimals, powers with negative exponents, \\sqrt of perfect
squares, \\sqrt[3]{}, factorials, \\binom, mixed numbers, \\cdot/\\times/\\div, \\left( \\right).
Seeded, so the file is reproducible:
    python3 reward-workers/tests/data/math/make_arith.py > reward-workers/tests/data/math/arith.jsonl
"""
import json
import random
from fractions import Fraction
from math import comb, factorial


def leaf(rng):
    k = rng.randrange(9)
    if k == 0:
        n = rng.randint(1, 99)
        return str(n), Fraction(n)
    if k == 1:
        n = rng.randint(1, 9999)
        s = f"{n / 100:.2f}"
        return s, Fraction(s)
    if k == 2:
        p, q = rng.randint(1, 30), rng.randint(2, 30)
        cmd = rng.choice(["\\frac", "\\dfrac", "\\tfrac"])
        return f"{cmd}{{{p}}}{{{q}}}", Fraction(p, q)
    if k == 3:
        r = rng.randint(1, 30)
        return f"\\sqrt{{{r * r}}}", Fraction(r)
    if k == 4:
        r = rng.randint(1, 9)
        return f"\\sqrt[3]{{{r ** 3}}}", Fraction(r)
    if k == 5:
        n = rng.randint(0, 8)
        return f"{n}!", Fraction(factorial(n))
    if k == 6:
        n = rng.randint(2, 12)
        j = rng.randint(0, n)
        return f"\\binom{{{n}}}{{{j}}}", Fraction(comb(n, j))
    if k == 7:
        w, p = rng.randint(1, 9), rng.randint(1, 7)
        q = rng.randint(p + 1, 9)
        return f"{w}\\frac{{{p}}}{{{q}}}", w + Fraction(p, q)
    b, e = rng.randint(2, 6), rng.randint(-4, 6)
    return f"{b}^{{{e}}}", Fraction(b) ** e


def expr(rng, depth):
    if depth == 0 or rng.random() < 0.3:
        return leaf(rng)
    (a, x), (b, y) = expr(rng, depth - 1), expr(rng, depth - 1)
    op = rng.randrange(6)
    if op == 0:
        return f"{a} + {b}", x + y
    if op == 1:
        return f"{a} - \\left({b}\\right)", x - y
    if op == 2:
        times = rng.choice(["\\cdot", "\\times"])
        return f"\\left({a}\\right) {times} \\left({b}\\right)", x * y
    if op == 3 and y != 0:
        return f"\\frac{{{a}}}{{{b}}}", x / y
    if op == 4 and y != 0:
        return f"\\left({a}\\right) \\div \\left({b}\\right)", x / y
    return f"-\\left({a}\\right)", -x


def main():
    rng = random.Random(2026)
    for _ in range(300):
        latex, value = expr(rng, 3)
        print(json.dumps({"latex": latex, "value": f"{value.numerator}/{value.denominator}"}))


if __name__ == "__main__":
    main()
