//! Table-driven tests of the math verifier's equivalence: `(gold, prediction, expected)`.
//! Each table is one topic; every row must hold. Cases where plain string comparison would be
//! wrong are in `NAIVE_STRING_WRONG`.

use r1_reward::math::is_equivalent;

type Case = (&'static str, &'static str, bool);

fn check(table: &[Case]) {
    let bad: Vec<String> = table
        .iter()
        .filter(|(gold, pred, want)| is_equivalent(gold, pred) != *want)
        .map(|(gold, pred, want)| format!("gold `{gold}` pred `{pred}`: expected {want}"))
        .collect();
    assert!(bad.is_empty(), "{} of {} cases wrong:\n{}", bad.len(), table.len(), bad.join("\n"));
}

const NUMBERS: &[Case] = &[
    ("5", "5", true),
    ("5", "6", false),
    ("5", "5.0", true),
    ("5", "5.00", true),
    ("5", "05", true),
    ("-3", "-3", true),
    ("-3", "3", false),
    ("-3", "−3", true),
    ("0", "-0", true),
    ("0.5", ".5", true),
    ("0.5", "0.50", true),
    ("0.5", "0.05", false),
    ("1000", "1,000", true),
    ("1000", "1{,}000", true),
    ("1000", "1\\,000", true),
    ("1234567", "1,234,567", true),
    ("12345", "12,345", true),
    ("12345", "12,346", false),
    ("1000000", "1 000 000", true),
    ("0", "1 000", false),
    ("6", "2 3", false),
    ("\\frac{1}{3}", "0.\\overline{3}", true),
    ("\\frac{4}{11}", "0.\\overline{36}", true),
    ("\\frac{1}{6}", "0.1\\overline{6}", true),
    ("\\frac{1}{6}", "0.1\\bar{6}", true),
    ("1", "0.\\overline{9}", true),
    ("\\frac{4}{11}", "0.\\overline{63}", false),
    ("\\frac{37}{30}", "1.2\\overline{3}", true),
    ("3.14", "3.14", true),
    ("3.14", "3.141", false),
    ("100", "10^2", true),
    ("100", "10^{2}", true),
    ("1024", "2^{10}", true),
    ("1024", "2^10", true), // typed intent, not LaTeX's 2^1 0
    ("0.001", "10^-3", true),
    ("x^{12}", "x^12", true),
    ("8", "2^3", true),
    ("0.001", "10^{-3}", true),
    ("42", "42.", true),
    ("7", "7.0", true),
    ("120", "5!", true),
    ("10", "\\binom{5}{2}", true),
    ("10", "\\dbinom{5}{3}", true),
    ("4", "\\sqrt{16}", true),
    ("2", "\\sqrt[3]{8}", true),
    ("-2", "\\sqrt[3]{-8}", true),
    ("3", "|-3|", true),
    ("5", "2+3", true),
    ("6", "2\\cdot 3", true),
    ("6", "2\\times3", true),
    ("2", "6\\div 3", true),
    ("1", "3-2", true),
];

const FRACTIONS: &[Case] = &[
    ("\\frac{1}{2}", "0.5", true),
    ("\\frac{1}{2}", "\\dfrac{1}{2}", true),
    ("\\frac{1}{2}", "\\tfrac12", true),
    ("\\frac34", "0.75", true),
    ("\\frac{3}{4}", "\\frac{6}{8}", true),
    ("\\frac{3}{4}", "3/4", true),
    ("\\frac{3}{4}", "\\frac{4}{3}", false),
    ("\\frac{1}{3}", "0.333", false),
    ("\\frac{1}{3}", "0.3333333", false),
    ("\\frac{2}{3}", "\\frac{4}{6}", true),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", true),
    ("-\\frac{1}{2}", "\\frac{1}{-2}", true),
    ("-\\frac{1}{2}", "-0.5", true),
    ("-\\frac{1}{2}", "\\frac{1}{2}", false),
    ("\\frac{7}{2}", "3\\frac{1}{2}", true),
    ("\\frac{7}{2}", "3 \\frac12", true),
    ("-\\frac{7}{2}", "-3\\frac{1}{2}", true),
    ("2\\frac{1}{4}", "\\frac{9}{4}", true),
    ("2\\frac{1}{4}", "2.25", true),
    ("2\\frac{1}{4}", "\\frac{1}{2}", false),
    ("\\frac{10}{3}", "\\frac{10}{3}", true),
    ("\\frac{1}{4}", "\\frac{1}{4}", true),
    ("\\frac{1}{4}", "0.25", true),
    ("\\frac{1}{4}", "25\\%", true),
    ("\\frac{\\frac{1}{2}}{2}", "\\frac14", true),
    ("\\frac{1}{2}", "{\\frac{1}{2}}", true),
    ("\\frac{5}{2}", "2.5", true),
    ("\\frac{5}{2}", "\\frac{5}{2}\\text{ cm}", true),
    ("\\frac{11}{12}", "\\frac{11}{13}", false),
    ("0.125", "\\frac{1}{8}", true),
    ("1.5", "\\frac{3}{2}", true),
    ("1.5", "1\\frac{1}{2}", true),
    ("\\frac{1}{1000}", "0.001", true),
    ("\\frac{22}{7}", "\\pi", false),
];

const LATEX_NOISE: &[Case] = &[
    ("5", "$5$", true),
    ("5", "\\(5\\)", true),
    ("5", "\\[5\\]", true),
    ("5", "\\displaystyle 5", true),
    ("5", "5\\!", true),
    ("30", "30^\\circ", true),
    ("30", "30^{\\circ}", true),
    ("30^\\circ", "30", true),
    ("30", "30°", true),
    ("30", "30 \\text{ degrees}", true),
    ("12", "12 \\text{ cm}", true),
    ("12", "12\\text{cm}", true),
    ("12", "12 cm", true),
    ("12", "12 \\mbox{ inches}", true),
    ("12", "12\\text{ cm}^2", true),
    ("12", "\\$12", true),
    ("12.50", "\\$12.50", true),
    ("12", "12 \\text{ dollars}", true),
    ("20", "20\\text{ m}", true),
    ("20", "20 \\mathrm{m}", true),
    ("4", "4\\text{ m}^2", true),
    ("2\\mathbf{v}", "\\mathbf{v} + \\mathbf{v}", true),
    ("12", "13 \\text{ cm}", false),
    ("(1,2)", "\\left(1,2\\right)", true),
    ("(1,2)", "\\left( 1, 2 \\right)", true),
    ("\\frac{1}{2}", "\\left(\\frac{1}{2}\\right)", true),
    ("5", "{5}", true),
    ("5", "{{5}}", true),
    ("5", "5~", true),
    ("2\\sqrt{3}", "2 \\sqrt 3", true),
    ("2\\sqrt{3}", "2\\sqrt3", true),
    ("2\\sqrt{3}", "\\sqrt{12}", true),
    ("2\\sqrt{3}", "2\\sqrt{2}", false),
    ("\\sqrt{2}", "\\sqrt2", true),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", true),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", true),
    ("\\frac{\\sqrt{2}}{2}", "0.7071", false),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt3}", true),
    ("3\\sqrt{2}", "\\sqrt{18}", true),
    ("\\pi", "\\pi", true),
    ("2\\pi", "2 \\pi", true),
    ("2\\pi", "\\pi \\cdot 2", true),
    ("2\\pi", "6.28", false),
    ("\\frac{\\pi}{2}", "\\frac12\\pi", true),
    ("\\frac{\\pi}{2}", "\\pi/2", true),
    ("\\frac{\\pi}{3}", "60^\\circ", false),
    ("\\infty", "\\infty", true),
    ("\\infty", "-\\infty", false),
    ("-\\infty", "-\\infty", true),
    ("\\infty", "∞", true),
    ("16\\pi", "16 \\pi \\text{ square units}", true),
    ("4", "4\\,\\text{cm}", true),
    ("\\text{5}", "5", true),
    ("5", "\\textbf{5}", true),
    ("5", "\\mathbf{5}", true),
];

const PERCENT_AND_SCIENTIFIC: &[Case] = &[
    // Decision: a percentage equals both its number and its fraction, on either side.
    ("10\\%", "10\\%", true),
    ("10\\%", "10", true),
    ("10\\%", "0.1", true),
    ("10", "10\\%", true),
    ("0.1", "10\\%", true),
    ("10\\%", "0.01", false),
    ("10\\%", "20\\%", false),
    ("25\\%", "\\frac14", true),
    ("50\\%", "50 \\%", true),
    ("50\\%", "50%", true),
    ("50", "50 \\text{ percent}", true),
    ("12.5\\%", "0.125", true),
    ("1.5 \\times 10^{3}", "1500", true),
    ("1500", "1.5 \\times 10^3", true),
    ("1500", "1.5e3", true),
    ("1500", "1.5E3", true),
    ("1500", "1.5 \\cdot 10^{3}", true),
    ("0.00015", "1.5 \\times 10^{-4}", true),
    ("0.00015", "1.5e-4", true),
    ("1.5 \\times 10^{-4}", "1.5 \\times 10^{-3}", false),
    ("6.02 \\times 10^{23}", "602000000000000000000000", true),
    ("6.02 \\times 10^{23}", "6.02e23", true),
    ("3 \\times 10^8", "300000000", true),
    ("3 \\times 10^8", "3 \\times 10^9", false),
];

const SYMBOLIC: &[Case] = &[
    ("x+1", "1+x", true),
    ("x+1", "x+2", false),
    ("2x", "x+x", true),
    ("2x", "2 x", true),
    ("2x", "x \\cdot 2", true),
    ("x^2-1", "(x-1)(x+1)", true),
    ("x^2-1", "(x-1)^2", false),
    ("x^2+2x+1", "(x+1)^2", true),
    ("\\frac{x}{2}", "0.5x", true),
    ("\\frac{x}{2}", "\\frac12 x", true),
    ("\\frac{1}{x}", "x^{-1}", true),
    ("\\sqrt{x}", "x^{1/2}", true),
    ("\\sqrt{x}", "x^{\\frac{1}{2}}", true),
    ("x^3", "x \\cdot x \\cdot x", true),
    ("x^3", "3x", false),
    ("a+b", "b+a", true),
    ("a+b", "a+c", false),
    ("ab", "ba", true),
    ("2ab", "a \\cdot 2b", true),
    ("\\frac{a+b}{2}", "\\frac{a}{2}+\\frac{b}{2}", true),
    ("x^2y", "yx^2", true),
    ("\\sin^2 x + \\cos^2 x", "1", true),
    ("\\sin(2x)", "2\\sin x\\cos x", true),
    ("\\sin x", "\\cos x", false),
    ("\\ln(xy)", "\\ln x + \\ln y", true),
    ("\\log_2 8", "3", true),
    ("\\log_{3} 81", "4", true),
    ("e^{x}", "\\exp(x)", true),
    ("\\frac{1}{\\sqrt{x}}", "\\frac{\\sqrt{x}}{x}", true),
    ("3x+2", "2+3x", true),
    ("3x+2", "3(x+2)", false),
    ("3(x+2)", "3x+6", true),
    ("\\theta", "\\theta", true),
    ("2\\alpha", "\\alpha+\\alpha", true),
    ("2\\alpha", "2\\beta", false),
    ("x_1 + x_2", "x_2 + x_1", true),
    ("x_1", "x_2", false),
    ("\\frac{\\pi}{4}", "\\arctan 1", true),
    ("\\frac{\\pi}{6}", "\\arcsin \\frac12", true),
    ("\\frac{\\pi}{6}", "\\arcsin(0.5)", true),
    ("\\frac{\\pi}{4}", "\\tan^{-1} 1", true),
    ("\\frac{1}{\\tan 1}", "\\tan^{-1} 1", false),
    ("2", "\\lfloor 2.5 \\rfloor", true),
    ("3", "\\lceil 2.5 \\rceil", true),
    ("(-1)^{n}", "(-1)^n", true),
    ("(-1)^{n}", "(-1)^{n+1}", false),
    ("1 + \\sqrt{2}", "\\sqrt{2} + 1", true),
    ("1 - \\sqrt{2}", "\\sqrt{2} - 1", false),
    ("\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt5+1}{2}", true),
    ("\\frac{1+\\sqrt{5}}{2}", "1.618", false),
    ("2^{100}", "2^{100}", true),
    ("2^{100}", "1267650600228229401496703205376", true),
    ("2^{100}", "1267650600228229401496703205377", false),
    ("2^{100}", "4^{50}", true),
    ("3^{100}", "3^{101}", false),
    ("x^{10}", "(x^5)^2", true),
    ("\\frac{x^2-4}{x-2}", "x+2", true),
];

const TUPLES_INTERVALS_SETS: &[Case] = &[
    ("(1,2)", "(1,2)", true),
    ("(1,2)", "(1, 2)", true),
    ("(1,2)", "(2,1)", false),
    ("(1,2)", "[1,2]", false),
    ("(1,2)", "(1,2]", false),
    ("[1,2]", "[1,2]", true),
    ("[1,2]", "[1, 2]", true),
    ("[1,2]", "(1,2)", false),
    ("[1,2)", "[1,2)", true),
    ("[1,2)", "[1,2]", false),
    ("(-\\infty, 3]", "(-\\infty,3]", true),
    ("(-\\infty, 3]", "(-\\infty, 3)", false),
    ("(-\\infty, 3]", "x \\le 3", true),
    ("(-\\infty, 3]", "x \\leq 3", true),
    ("(-\\infty, 3]", "x < 3", false),
    ("(3, \\infty)", "x > 3", true),
    ("(3, \\infty)", "x>3", true),
    ("[3, \\infty)", "x \\ge 3", true),
    ("[3, \\infty)", "x > 3", false),
    ("(3, \\infty)", "3 < x", true),
    ("(1, 5]", "1 < x \\le 5", true),
    ("(1, 5]", "1 \\le x \\le 5", false),
    ("x > 3", "(3, \\infty)", true),
    ("x > 3", "x > 3", true),
    ("x > 3", "3 < x", true),
    ("x > 3", "x \\ge 3", false),
    ("(-\\infty, 1) \\cup (2, \\infty)", "(-\\infty,1)\\cup(2,\\infty)", true),
    ("(-\\infty, 1) \\cup (2, \\infty)", "(2,\\infty) \\cup (-\\infty,1)", true),
    ("(-\\infty, 1) \\cup (2, \\infty)", "(-\\infty,1]\\cup(2,\\infty)", false),
    ("(-\\infty, 1) \\cup (2, \\infty)", "x < 1 \\text{ or } x > 2", true),
    ("(\\frac{1}{2}, 3)", "(0.5, 3)", true),
    ("(0.5, 3)", "\\left(\\frac12, 3\\right)", true),
    ("(1,2,3)", "(1,2,3)", true),
    ("(1,2,3)", "(1,3,2)", false),
    ("(1,2,3)", "(1,2)", false),
    ("(3, -4)", "(3,-4)", true),
    ("(3, -4)", "(-4, 3)", false),
    ("(\\sqrt{2}, 1)", "(\\sqrt2, 1)", true),
    ("\\{1,2,3\\}", "\\{3,2,1\\}", true),
    ("\\{1,2,3\\}", "\\{1,2\\}", false),
    ("\\{1,2,3\\}", "1,2,3", true),
    ("\\{1,2,3\\}", "\\{1,2,4\\}", false),
    ("\\{5\\}", "5", true),
    ("\\emptyset", "\\varnothing", true),
    ("\\emptyset", "\\{\\}", true),
    ("\\emptyset", "\\{0\\}", false),
];

const EQUATIONS: &[Case] = &[
    ("5", "x = 5", true),
    ("5", "x=5", true),
    ("5", "x = 6", false),
    ("x = 5", "5", true),
    ("x = 5", "x = 5", true),
    ("x = 5", "5 = x", true),
    ("x=5", "x=6", false),
    ("y = 2x + 3", "y = 3 + 2x", true),
    ("y = 2x + 3", "y - 2x = 3", true),
    ("y = 2x + 3", "2y = 4x + 6", true),
    ("y = 2x + 3", "y = 2x - 3", false),
    ("y = 2x + 3", "2x + 3", true),
    ("x^2 + y^2 = 25", "y^2 + x^2 = 25", true),
    ("x^2 + y^2 = 25", "x^2 + y^2 = 5", false),
    ("k = \\frac{3}{2}", "1.5", true),
    ("a = 2", "a = 2", true),
    ("f(x) = 2x", "2x", true),
    ("f(x) = 2x", "f(x) = x + x", true),
    ("30", "\\angle A = 30^\\circ", true),
    ("\\frac{1}{2}", "t = 0.5", true),
    ("2x - 3y = 6", "3y - 2x = -6", true),
    ("2x - 3y = 6", "2x - 3y = -6", false),
    ("(2, 3)", "x = 2, y = 3", true),
    ("(2, 3)", "x = 3, y = 2", false),
    ("(2, 3)", "x = 2", false),
];

const MULTIPLE_ANSWERS: &[Case] = &[
    ("2, 3", "2, 3", true),
    ("2, 3", "3, 2", true),
    ("2, 3", "2", false),
    ("2, 3", "2, 3, 4", false),
    ("2, 3", "2 \\text{ and } 3", true),
    ("2, 3", "2 \\text{ or } 3", true),
    ("2, 3", "x = 2, x = 3", true),
    ("x = 2, x = 3", "3, 2", true),
    ("-1, 1", "\\pm 1", true),
    ("1 \\pm \\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2", true),
    ("1 \\pm \\sqrt{2}", "1-\\sqrt2, 1+\\sqrt2", true),
    ("1 \\pm \\sqrt{2}", "1+\\sqrt2", false),
    ("\\frac{-1 \\pm \\sqrt{5}}{2}", "\\frac{-1+\\sqrt5}{2}, \\frac{-1-\\sqrt5}{2}", true),
    ("x = 1 \\pm \\sqrt{3}", "1-\\sqrt3, 1+\\sqrt3", true),
    ("-2, 5", "5; -2", true),
    ("1, 1, 2", "1, 2, 1", true),
    ("1, 1, 2", "1, 2, 2", false),
    ("\\frac12, 2", "2, 0.5", true),
];

const MATRICES: &[Case] = &[
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", true),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}", true),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", false),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 & 3 & 4 \\end{pmatrix}", false),
    ("\\begin{pmatrix} \\frac12 \\\\ 0 \\end{pmatrix}", "\\begin{pmatrix} 0.5 \\\\ 0 \\end{pmatrix}", true),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "(1, -2)", true),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "(-2, 1)", false),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "[1, -2]", false),
    ("(1, -2)", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", true),
    ("\\begin{pmatrix} 2 & 0 \\\\ 0 & 2 \\end{pmatrix}", "\\begin{pmatrix} 2 & 0 \\\\ 0 & 2 \\\\ \\end{pmatrix}", true),
    ("\\begin{pmatrix} x & 1 \\\\ 0 & x \\end{pmatrix}", "\\begin{pmatrix} x & 1 \\\\ 0 & x \\end{pmatrix}", true),
    ("\\begin{pmatrix} \\sqrt{2} \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix} \\sqrt{2} \\\\ 1 \\end{pmatrix}", true),
];

const CHOICES: &[Case] = &[
    ("B", "B", true),
    ("B", "(B)", true),
    ("B", "B.", true),
    ("B", "\\text{(B)}", true),
    ("B", "\\textbf{(B)}", true),
    ("B", "(B) 12", true),
    ("B", "B) 12", true),
    ("B", "C", false),
    ("B", "(C)", false),
    ("\\text{(B)}", "B", true),
    ("\\text{(B)}", "(B)", true),
    ("\\text{(C)}", "(B)", false),
    ("(D)", "D", true),
    ("(D)", "\\text{D}", true),
    ("(E)", "E.", true),
    ("A", "12", false),
    // Listing several letters picks none.
    ("B", "B C", false),
    ("B", "B or C", false),
    ("B", "(B) and (C)", false),
    ("B", "(B) or maybe (D)", false),
    ("B", "(B) 12 cm", true),
];

const TEXT: &[Case] = &[
    ("\\text{Monday}", "Monday", true),
    ("\\text{Monday}", "monday", true),
    ("\\text{Monday}", "\\text{Tuesday}", false),
    ("\\text{Evelyn}", "\\text{Evelyn}", true),
    ("\\text{yes}", "yes", true),
    ("\\text{No}", "no", true),
    ("\\text{No}", "on", false),
    ("\\text{no}", "\\text{yes}", false),
    ("\\text{odd}", "\\text{even}", false),
    ("\\text{odd}", "\\textbf{odd}", true),
    // Extra words are not units of a word answer.
    ("\\text{Monday}", "Monday Tuesday", false),
    ("\\text{Monday}", "\\text{Monday} \\text{Tuesday}", false),
];

/// Naive string matching is wrong in both directions on these: "naive" compares the strings
/// after dropping spaces, braces, brackets and `\\left`/`\\right`, as simple normalisers do.
const NAIVE_STRING_WRONG: &[Case] = &[
    // Different strings, equal answers.
    ("0.5", "\\frac{1}{2}", true),
    ("1000", "1,000", true),
    ("\\frac{1}{2}", "\\frac{2}{4}", true),
    ("x^2+1", "1+x^2", true),
    ("\\{1,2\\}", "\\{2,1\\}", true),
    ("5", "x = 5", true),
    ("(3,\\infty)", "x > 3", true),
    ("\\sqrt{8}", "2\\sqrt{2}", true),
    ("10\\%", "0.1", true),
    ("\\dfrac{3}{4}", "\\tfrac34", true),
    // Strings equal once brackets, braces and spaces are dropped, different answers.
    ("(1,2)", "[1,2]", false),
    ("(1,2]", "[1,2)", false),
    ("[0,1)", "(0, 1]", false),
    ("\\frac{1}{2}3", "\\frac{1}{23}", false),
    ("(-1)^2", "-1^2", false),
    ("\\sqrt{2}x", "\\sqrt{2x}", false),
    ("x^{2}+1", "x^{2+1}", false),
    ("2(x+1)", "2x+1", false),
];

#[test]
fn numbers() {
    check(NUMBERS);
}

#[test]
fn fractions_and_mixed_numbers() {
    check(FRACTIONS);
}

#[test]
fn latex_noise_units_and_constants() {
    check(LATEX_NOISE);
}

#[test]
fn percentages_and_scientific_notation() {
    check(PERCENT_AND_SCIENTIFIC);
}

#[test]
fn symbolic_expressions() {
    check(SYMBOLIC);
}

#[test]
fn tuples_intervals_and_sets() {
    check(TUPLES_INTERVALS_SETS);
}

#[test]
fn equations_against_values() {
    check(EQUATIONS);
}

#[test]
fn multiple_answers() {
    check(MULTIPLE_ANSWERS);
}

#[test]
fn matrices() {
    check(MATRICES);
}

#[test]
fn multiple_choice_letters() {
    check(CHOICES);
}

#[test]
fn word_answers() {
    check(TEXT);
}

#[test]
fn naive_string_matching_is_wrong_both_ways() {
    check(NAIVE_STRING_WRONG);
    let naive = |s: &str| {
        s.replace("\\left", "").replace("\\right", "").chars().filter(|c| !" {}()[]".contains(*c)).collect::<String>()
    };
    for (gold, pred, equal) in NAIVE_STRING_WRONG {
        assert_ne!(naive(gold) == naive(pred), *equal, "`{gold}` vs `{pred}` does not show a naive mistake");
    }
}
