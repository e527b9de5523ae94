#!/usr/bin/env python3
"""Builds bench/reward/math_pairs.jsonl: MATH-style (gold, completion, label) pairs.

Every line is {"id", "kind", "gold", "completion", "label"}: `gold` is a MATH ground-truth answer,
`completion` ends a model response with the answer boxed, `label` is whether a careful human grader
accepts the boxed answer. Two parts:
  - HAND: pairs written and labelled one by one, the forms MATH answers and model outputs take;
  - generated families whose labels hold by construction (equal by arithmetic, or changed so
    they differ), seeded so the file is reproducible.
Run: python3 bench/reward/make_pairs.py > bench/reward/math_pairs.jsonl
"""
import json
import random
from fractions import Fraction
from math import gcd

T, F = True, False

# (gold, predicted answer, label). Ambiguous conventions (is 0.333 = 1/3?) are left out.
HAND = [
    # integers and decimals
    ("5", "5", T), ("5", "6", F), ("12", "12.0", T), ("-7", "-7", T), ("-7", "7", F),
    ("0", "0", T), ("1000", "1,000", T), ("1000", "1000.", T), ("25", "25\\text{ cm}", T),
    ("144", "12^2", T), ("3.5", "3.50", T), ("3.5", "3.05", F), ("0.25", "\\frac{1}{4}", T),
    ("2.4", "\\frac{12}{5}", T), ("17", "17 \\text{ students}", T), ("9", "\\$9", T),
    ("18.90", "\\$18.90", T), ("42", "\\textbf{42}", T), ("64", "2^6", T), ("81", "3^5", F),
    ("10", "\\binom{5}{2}", T), ("720", "6!", T), ("6", "3!", T), ("11", "011", T),
    ("1.5", "1\\frac{1}{2}", T), ("2", "\\sqrt{4}", T), ("8", "\\sqrt{64}", T),
    ("100", "10^2", T), ("-1", "-1.0", T), ("3", "x=3", T), ("4", "n = 4", T), ("4", "n = 5", F),
    ("1,000,000", "1000000", T), ("1,000,000", "10^6", T), ("20", "20\\%", T),
    # fractions
    ("\\frac{1}{2}", "\\frac12", T), ("\\frac{1}{2}", "\\dfrac{1}{2}", T), ("\\frac{1}{2}", "0.5", T),
    ("\\frac{1}{2}", "\\frac{2}{4}", T), ("\\frac{1}{2}", "\\frac{1}{3}", F), ("\\frac{3}{8}", "0.375", T),
    ("\\frac{3}{8}", "\\frac{8}{3}", F), ("\\frac{7}{4}", "1\\frac{3}{4}", T), ("\\frac{7}{4}", "1.75", T),
    ("-\\frac{2}{3}", "\\frac{-2}{3}", T), ("-\\frac{2}{3}", "\\frac{2}{3}", F), ("\\frac{5}{12}", "\\tfrac{5}{12}", T),
    ("\\frac{1}{12}", "1/12", T), ("\\frac{9}{2}", "4.5", T), ("\\frac{9}{2}", "4\\frac12", T),
    ("\\frac{11}{36}", "\\frac{11}{36}", T), ("\\frac{11}{36}", "\\frac{13}{36}", F),
    ("\\dfrac{4}{9}", "\\frac{4}{9}", T), ("\\frac{1}{6}", "\\frac{2}{12}", T),
    # radicals, pi, expressions
    ("2\\sqrt{2}", "\\sqrt{8}", T), ("2\\sqrt{2}", "2\\sqrt2", T), ("2\\sqrt{2}", "2.828", F),
    ("\\sqrt{3}", "\\sqrt{3}", T), ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", T),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", T), ("\\frac{\\sqrt{2}}{2}", "\\frac{\\sqrt{3}}{2}", F),
    ("5\\sqrt{5}", "\\sqrt{125}", T), ("3\\sqrt{3}", "3\\sqrt{2}", F), ("4\\sqrt{3}", "\\sqrt{48}", T),
    ("\\frac{5\\sqrt{3}}{3}", "\\frac{5}{\\sqrt{3}}", T), ("1+\\sqrt{2}", "\\sqrt{2}+1", T),
    ("2-\\sqrt{3}", "\\sqrt{3}-2", F), ("\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt{5}+1}{2}", T),
    ("6\\pi", "6\\pi", T), ("6\\pi", "\\pi \\cdot 6", T), ("6\\pi", "3\\pi", F), ("\\frac{\\pi}{4}", "\\frac{1}{4}\\pi", T),
    ("36\\pi", "36\\pi \\text{ square units}", T), ("8\\pi", "8 \\pi\\text{ cm}^2", T),
    ("\\frac{4\\pi}{3}", "\\frac{4}{3}\\pi", T), ("2\\pi", "6.28", F), ("\\pi - 2", "-2 + \\pi", T),
    ("\\frac{\\pi}{6}", "\\frac{\\pi}{3}", F), ("3\\sqrt{2} + 2", "2 + 3\\sqrt{2}", T),
    ("2^{100}", "2^{100}", T), ("2^{100}", "4^{50}", T), ("3^{20}", "9^{10}", T), ("3^{20}", "3^{19}", F),
    ("\\frac{1}{64}", "2^{-6}", T), ("\\frac{1}{64}", "4^{-3}", T),
    # symbolic
    ("x^2+2x+1", "(x+1)^2", T), ("x^2-9", "(x-3)(x+3)", T), ("x^2-9", "(x-3)^2", F),
    ("2x+3", "3+2x", T), ("2x+3", "2x-3", F), ("\\frac{x+1}{2}", "\\frac{x}{2}+\\frac{1}{2}", T),
    ("3x^2-5x+2", "(3x-2)(x-1)", T), ("3x^2-5x+2", "(3x+2)(x-1)", F), ("a^2+b^2", "b^2+a^2", T),
    ("\\frac{1}{x}", "x^{-1}", T), ("6x^3", "6x^3", T), ("6x^3", "6x^2", F), ("x^3+1", "(x+1)(x^2-x+1)", T),
    ("4a^2b", "4ba^2", T), ("y = 2x + 1", "y = 1 + 2x", T), ("y = 2x + 1", "y=2x-1", F),
    ("y = -\\frac{1}{2}x + 3", "y = -0.5x + 3", T),
    # intervals, inequalities
    ("[2, 5)", "[2,5)", T), ("[2, 5)", "[2,5]", F), ("[2, 5)", "(2,5)", F), ("(-\\infty, 3)", "(-\\infty,3)", T),
    ("(-\\infty, 3)", "x<3", T), ("(-\\infty, 3)", "(-\\infty, 3]", F), ("[0, \\infty)", "[0,\\infty)", T),
    ("[0, \\infty)", "x \\ge 0", T), ("[0, \\infty)", "(0, \\infty)", F),
    ("(-\\infty, -2) \\cup (2, \\infty)", "(-\\infty,-2)\\cup(2,\\infty)", T),
    ("(-\\infty, -2) \\cup (2, \\infty)", "(2,\\infty)\\cup(-\\infty,-2)", T),
    ("(-\\infty, -2) \\cup (2, \\infty)", "(-\\infty,-2]\\cup[2,\\infty)", F),
    ("(-\\infty,1]\\cup[3,\\infty)", "(-\\infty, 1] \\cup [3, \\infty)", T), ("(1, 4]", "1 < x \\le 4", T),
    ("(1, 4]", "(1,4)", F), ("\\left[-\\frac{1}{2}, 2\\right]", "[-0.5, 2]", T),
    # tuples, points, vectors, matrices
    ("(3, -1)", "(3,-1)", T), ("(3, -1)", "(-1, 3)", F), ("(2, 5)", "\\left(2, 5\\right)", T),
    ("\\left(\\frac{1}{2}, 3\\right)", "(0.5, 3)", T), ("(1, 2, 3)", "(1,2,3)", T), ("(1, 2, 3)", "(1,3,2)", F),
    ("(0, 0)", "(0,0)", T), ("(-2, 4)", "(-2, -4)", F),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", T),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", F),
    ("\\begin{pmatrix} 2 & 1 \\\\ 0 & 3 \\end{pmatrix}", "\\begin{bmatrix} 2 & 1 \\\\ 0 & 3 \\end{bmatrix}", T),
    ("\\begin{pmatrix} 2 & 1 \\\\ 0 & 3 \\end{pmatrix}", "\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}", F),
    ("\\begin{pmatrix} -1/2 \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix} -\\frac12 \\\\ 3 \\end{pmatrix}", T),
    # sets, multiple answers
    ("\\{1, 2, 3\\}", "\\{3, 1, 2\\}", T), ("\\{1, 2, 3\\}", "\\{1, 2\\}", F), ("1, 2", "2, 1", T),
    ("-3, 2", "2, -3", T), ("-3, 2", "-3", F), ("-3, 2", "3, -2", F), ("1, -1", "\\pm 1", T),
    ("2 \\pm \\sqrt{3}", "2+\\sqrt{3}, 2-\\sqrt{3}", T), ("2 \\pm \\sqrt{3}", "2+\\sqrt{3}", F),
    ("\\frac{-3 \\pm \\sqrt{5}}{2}", "\\frac{-3+\\sqrt5}{2}, \\frac{-3-\\sqrt5}{2}", T),
    ("1, 4, 9", "1, 9, 4", T), ("x = 1, x = 5", "1, 5", T), ("0, 1", "0 \\text{ and } 1", T),
    # degrees, percents, units
    ("30^\\circ", "30", T), ("30", "30^\\circ", T), ("120^\\circ", "120", T), ("60", "60^\\circ", T),
    ("45", "135", F), ("25\\%", "25\\%", T), ("25\\%", "25", T), ("40", "40\\%", T),
    ("15\\text{ cm}", "15", T), ("6\\text{ inches}", "6", T), ("3\\text{ hours}", "4", F),
    # multiple choice, words
    ("\\text{(C)}", "C", T), ("\\text{(C)}", "(C)", T), ("\\text{(C)}", "\\text{(C)}", T),
    ("\\text{(C)}", "(D)", F), ("\\text{(A)}", "A", T), ("\\text{(E)}", "\\textbf{(E)}", T),
    ("\\text{Sunday}", "\\text{Sunday}", T), ("\\text{Sunday}", "\\text{Monday}", F),
    ("\\text{even}", "\\text{even}", T), ("\\text{odd}", "\\text{even}", F),
    # scientific notation
    ("3.2 \\times 10^{4}", "32000", T), ("32000", "3.2 \\times 10^4", T), ("32000", "3.2\\times10^5", F),
    ("5 \\times 10^{-3}", "0.005", T), ("5 \\times 10^{-3}", "0.05", F),
]

WRAPS = [
    "Therefore, the final answer is $\\boxed{%s}$.",
    "So the answer is $\\boxed{%s}$",
    "Putting it together we get \\[\\boxed{%s}\\]",
    "The answer is $\\boxed{%s}$. I hope it is correct.",
]


def frac(p, q):
    f = Fraction(p, q)
    s = "-" if f < 0 else ""
    return f"{s}\\frac{{{abs(f.numerator)}}}{{{f.denominator}}}"


def terminating(q):
    while q % 2 == 0:
        q //= 2
    while q % 5 == 0:
        q //= 5
    return q == 1


def generated(rng):
    out = []
    for _ in range(40):  # fractions
        q = rng.randint(2, 40)
        p = rng.choice([x for x in range(1, 3 * q) if gcd(x, q) == 1])
        k = rng.randint(2, 6)
        gold = frac(p, q)
        out.append(("fraction", gold, f"\\frac{{{k * p}}}{{{k * q}}}", T))
        out.append(("fraction", gold, frac(p + rng.randint(1, 3), q), F))
        if terminating(q):
            out.append(("fraction", gold, str(p / q), T))
    for _ in range(30):  # big integers, separators, units
        n = rng.randint(1000, 9_999_999)
        out.append(("integer", str(n), f"{n:,}", T))
        out.append(("integer", f"{n:,}", str(n + rng.choice([1, -1, 10, 100])), F))
        out.append(("integer", str(n), f"{n}\\text{{ dollars}}", T))
    for _ in range(25):  # radicals
        k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10, 11])
        out.append(("radical", f"{k}\\sqrt{{{m}}}", f"\\sqrt{{{k * k * m}}}", T))
        out.append(("radical", f"{k}\\sqrt{{{m}}}", f"{k}\\sqrt{{{m + 1}}}", F))
    for _ in range(20):  # intervals
        a, b = sorted(rng.sample(range(-20, 20), 2))
        lo, hi = rng.choice("(["), rng.choice(")]")
        gold = f"{lo}{a}, {b}{hi}"
        out.append(("interval", gold, f"{lo}{a},{b}{hi}", T))
        other = {"(": "[", "[": "("}[lo]
        out.append(("interval", gold, f"{other}{a}, {b}{hi}", F))
    for _ in range(20):  # points
        a, b = rng.sample(range(-15, 15), 2)
        out.append(("tuple", f"({a}, {b})", f"\\left({a},{b}\\right)", T))
        out.append(("tuple", f"({a}, {b})", f"({b}, {a})", F))
    for _ in range(20):  # pi multiples
        k, m = rng.randint(1, 12), rng.randint(2, 12)
        f = Fraction(k, m)
        gold = f"\\frac{{{f.numerator}\\pi}}{{{f.denominator}}}" if f.denominator > 1 else f"{f.numerator}\\pi"
        out.append(("pi", gold, f"\\frac{{{k}}}{{{m}}}\\pi", T))
        out.append(("pi", gold, f"\\frac{{{k + m}}}{{{m}}}\\pi", F))
    for _ in range(20):  # factoring
        a, b = rng.sample(range(-9, 10), 2)
        s, p = a + b, a * b
        gold = f"x^2{s:+d}x{p:+d}".replace("+0x", "").replace("+0", "")
        pred = f"(x{a:+d})(x{b:+d})".replace("+0)", ")")
        out.append(("polynomial", gold, pred, T))
        out.append(("polynomial", gold, f"(x{a:+d})(x{-b:+d})".replace("+0)", ")"), b == 0))
    return out


def main():
    rng = random.Random(1234)
    rows = [("hand", g, p, l) for g, p, l in HAND] + generated(rng)
    for i, (kind, gold, pred, label) in enumerate(rows):
        completion = "...reasoning... " + rng.choice(WRAPS) % pred
        print(json.dumps({"id": i, "kind": kind, "gold": gold, "completion": completion, "label": label}))


if __name__ == "__main__":
    main()
