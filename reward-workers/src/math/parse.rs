//! LaTeX answer text → [`Node`] tree.
//!
//! Two steps: `lex` turns the cleaned answer into tokens, folding the LaTeX that carries no
//! meaning for the value (`\left`, `\!`, `\displaystyle`, `^\circ`, `\$`, thousands separators)
//! and mapping synonyms (`\dfrac`/`\tfrac` → `frac`, `\leq`/`≤`, `\cdot`/`×`); [`parse`] is a
//! recursive-descent parser over those tokens with implicit multiplication (`2x`, `3\sqrt2`),
//! mixed numbers (`2\frac{1}{2}` = 5/2), `\pm` (expanded into both answers), intervals,
//! tuples, sets, unions, matrices and relation chains.
//!
//! Limits: nesting deeper than [`MAX_DEPTH`] is an error, never a stack overflow. Anything the
//! grammar does not know (`\int`, `\ldots`, cases, …) is a [`ParseError`]; the caller then
//! compares normalised text instead.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};

/// Deepest nesting of groups the parser follows before giving up.
pub const MAX_DEPTH: usize = 64;

/// Why an answer could not be parsed into a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse answer: {0}")]
pub struct ParseError(pub &'static str);

type PResult<T> = Result<T, ParseError>;

/// A parsed answer. Scalars use the arithmetic variants; the rest are answer shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Num(BigRational),
    Var(String),
    Pi,
    /// Euler's number: a lone `e` is the constant, not a variable.
    E,
    Inf,
    Neg(Box<Node>),
    Add(Box<Node>, Box<Node>),
    Mul(Box<Node>, Box<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    Func(Func, Box<Node>),
    Binom(Box<Node>, Box<Node>),
    /// `x%`: the value is x/100, but comparison may also accept x (see `equiv`).
    Percent(Box<Node>),
    /// `a \pm b`, only before expansion by [`parse`].
    PlusMinus(Box<Node>, Box<Node>),
    /// `(a, b]`, `[a, b]`, `(a, b, c)`: an ordered sequence with its brackets.
    Seq {
        open: char,
        close: char,
        items: Vec<Node>,
    },
    /// `\{a, b\}` or `\emptyset`.
    Set(Vec<Node>),
    /// `A \cup B`.
    Union(Vec<Node>),
    Matrix(Vec<Vec<Node>>),
    /// `a = b`, `x < 3`, `1 < x \le 2`: `ops.len() == items.len() - 1`.
    Rel {
        items: Vec<Node>,
        ops: Vec<char>,
    },
    /// Several answers at the top level: `2, 3` or `2 \text{ or } 3`.
    List(Vec<Node>),
    /// A word answer (`\text{Monday}`), compared case-insensitively.
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sqrt,
    Sin,
    Cos,
    Tan,
    Sec,
    Csc,
    Cot,
    Asin,
    Acos,
    Atan,
    Ln,
    Log10,
    Exp,
    Abs,
    Floor,
    Ceil,
    Factorial,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Digits with an optional fraction and exponent, separators removed.
    Num(String),
    Var(String),
    /// A command the parser knows: `frac`, `sqrt`, `pi`, `infty`, `sin`, `log`, `binom`, `empty`.
    Cmd(&'static str),
    Text(String),
    Sym(char),
    SetOpen,
    SetClose,
    RowSep,
    Begin(String),
    End,
}

const FUNCS: &[(&str, &str)] = &[
    ("sin", "sin"),
    ("cos", "cos"),
    ("tan", "tan"),
    ("sec", "sec"),
    ("csc", "csc"),
    ("cot", "cot"),
    ("arcsin", "asin"),
    ("arccos", "acos"),
    ("arctan", "atan"),
    ("ln", "ln"),
    ("log", "log"),
    ("exp", "exp"),
    ("sqrt", "sqrt"),
];

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

/// Words dropped after a value: `5 cm`, `12 \text{ inches}`, `3 dollars`.
const UNITS: &[&str] = &[
    "cm",
    "mm",
    "km",
    "in",
    "ft",
    "yd",
    "mi",
    "kg",
    "mg",
    "lb",
    "lbs",
    "oz",
    "sec",
    "min",
    "hr",
    "hrs",
    "ml",
    "mL",
    "inch",
    "inches",
    "foot",
    "feet",
    "yard",
    "yards",
    "mile",
    "miles",
    "meter",
    "meters",
    "metre",
    "metres",
    "centimeter",
    "centimeters",
    "kilometer",
    "kilometers",
    "unit",
    "units",
    "degree",
    "degrees",
    "radian",
    "radians",
    "second",
    "seconds",
    "minute",
    "minutes",
    "hour",
    "hours",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "dollar",
    "dollars",
    "cent",
    "cents",
    "gram",
    "grams",
    "kilogram",
    "kilograms",
    "pound",
    "pounds",
    "ounce",
    "ounces",
    "mph",
    "square",
    "sq",
    "cubic",
    "people",
    "students",
    "ways",
    "times",
    "points",
    "percent",
];

/// Whether a word is a unit the parser drops after a value.
fn is_unit(word: &str) -> bool {
    UNITS.contains(&word)
}

/// Strips what surrounds an answer (`$…$`, `\(…\)`, `\displaystyle`, a final period) and folds
/// spacing commands, so equal answers typed differently reach the lexer alike.
pub fn clean(s: &str) -> String {
    let mut t = s.trim();
    for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
        if t.len() >= open.len() + close.len() && t.starts_with(open) && t.ends_with(close) {
            t = t[open.len()..t.len() - close.len()].trim();
        }
    }
    let mut out = t.to_string();
    for (from, to) in [
        ("\\left.", ""),
        ("\\right.", ""),
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("{,}", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("~", " "),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("°", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\%", "%"),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
    ] {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    let mut trimmed = out.trim().trim_end_matches(['.', ' ']).trim();
    // A sentence around the answer, as `<answer>` tags often hold: "The answer is 5".
    for lead in ["the final answer is", "the answer is", "final answer:", "answer:"] {
        if trimmed.len() > lead.len()
            && trimmed.is_char_boundary(lead.len())
            && trimmed[..lead.len()].eq_ignore_ascii_case(lead)
        {
            trimmed = trimmed[lead.len()..].trim_start_matches([' ', ':']).trim();
            break;
        }
    }
    trimmed.to_string()
}

/// Parses a cleaned answer (see [`clean`]).
pub fn parse(s: &str) -> PResult<Node> {
    let toks = lex(s)?;
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let node = p.list()?;
    if p.pos != p.toks.len() {
        return Err(ParseError("unexpected token"));
    }
    Ok(expand_pm(node))
}

fn lex(s: &str) -> PResult<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    lex_into(&chars, &mut out, 0)?;
    Ok(out)
}

fn lex_into(c: &[char], out: &mut Vec<Tok>, nesting: usize) -> PResult<()> {
    if nesting > 4 {
        return Err(ParseError("text nested too deep"));
    }
    let mut i = 0;
    let mut depth = 0i32; // bracket depth, for telling `1,000` from a pair
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let (tok, next) = lex_number(c, i, depth == 0);
            out.push(tok);
            i = next;
        } else if ch.is_ascii_alphabetic() {
            let start = i;
            while i < c.len() && c[i].is_ascii_alphabetic() {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            lex_word(&word, out);
        } else if ch == '\\' {
            i = lex_command(c, i + 1, out, nesting)?;
        } else {
            i += 1;
            let tok = match ch {
                '(' | '[' => {
                    depth += 1;
                    Tok::Sym(ch)
                }
                ')' | ']' => {
                    depth -= 1;
                    Tok::Sym(ch)
                }
                '{' | '}' | '+' | '*' | '/' | '^' | '_' | ',' | '=' | '<' | '>' | '!' | '|' | '%' | '&' | '-' => {
                    Tok::Sym(ch)
                }
                ';' => Tok::Sym(','),
                '−' | '–' => Tok::Sym('-'),
                '×' | '·' | '⋅' => Tok::Sym('*'),
                '÷' => Tok::Sym('/'),
                '≤' | '≥' | '≠' | '±' | '∪' | '∈' | '⌊' | '⌋' | '⌈' | '⌉' => Tok::Sym(ch),
                'π' => Tok::Cmd("pi"),
                '∞' => Tok::Cmd("infty"),
                '√' => Tok::Cmd("sqrt"),
                '∅' => Tok::Cmd("empty"),
                '\'' | '"' | ':' => continue,
                _ => return Err(ParseError("unknown character")),
            };
            out.push(tok);
        }
    }
    Ok(())
}

/// Reads a number at `i`: `12`, `1.5`, `.5`, `1,000` (only outside brackets and only in groups of
/// three), `1.5e3`.
fn lex_number(c: &[char], mut i: usize, allow_groups: bool) -> (Tok, usize) {
    let mut s = String::new();
    let digits = |i: &mut usize, s: &mut String| {
        while *i < c.len() && c[*i].is_ascii_digit() {
            s.push(c[*i]);
            *i += 1;
        }
    };
    digits(&mut i, &mut s);
    if allow_groups && (1..=3).contains(&s.len()) {
        while matches!(c.get(i), Some(',' | ' '))
            && c.len() > i + 3
            && c[i + 1..i + 4].iter().all(char::is_ascii_digit)
            && !c.get(i + 4).is_some_and(char::is_ascii_digit)
        {
            s.extend(&c[i + 1..i + 4]);
            i += 4;
        }
    }
    if c.get(i) == Some(&'.') && c.get(i + 1).is_some_and(char::is_ascii_digit) {
        s.push('.');
        i += 1;
        digits(&mut i, &mut s);
    }
    // A repeating block: `0.\overline{36}`, `0.1\overline{6}`, `0.\bar{3}` → "0.(36)" etc.
    let dot = usize::from(c.get(i) == Some(&'.') && !s.contains('.'));
    for cmd in ["\\overline", "\\bar"] {
        let name: Vec<char> = cmd.chars().collect();
        if c.get(i + dot..i + dot + name.len()) == Some(&name[..])
            && let Some((rep, next)) = braced(c, i + dot + name.len())
            && !rep.is_empty()
            && rep.iter().all(char::is_ascii_digit)
        {
            if dot == 1 {
                s.push('.');
            }
            s.push('(');
            s.extend(rep);
            s.push(')');
            return (Tok::Num(s), next);
        }
    }
    if matches!(c.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(c.get(j), Some('+' | '-')) {
            j += 1;
        }
        if c.get(j).is_some_and(char::is_ascii_digit) && !s.is_empty() {
            s.push('e');
            s.extend(&c[i + 1..j]);
            i = j;
            digits(&mut i, &mut s);
        }
    }
    (Tok::Num(s), i)
}

fn lex_word(word: &str, out: &mut Vec<Tok>) {
    if let Some((_, f)) = FUNCS.iter().find(|(w, _)| *w == word) {
        out.push(Tok::Cmd(f));
    } else if word == "and" || word == "or" {
        out.push(Tok::Sym(','));
    } else if word == "pi" {
        out.push(Tok::Cmd("pi"));
    } else if word.len() >= 2 && (is_unit(word) || word.len() >= 3) {
        out.push(Tok::Text(word.to_string()));
    } else {
        out.extend(word.chars().map(|ch| Tok::Var(ch.to_string())));
    }
}

/// Reads the command after a backslash at `i`; returns where lexing resumes.
fn lex_command(c: &[char], mut i: usize, out: &mut Vec<Tok>, nesting: usize) -> PResult<usize> {
    let start = i;
    while i < c.len() && c[i].is_ascii_alphabetic() {
        i += 1;
    }
    if i == start {
        let Some(&ch) = c.get(i) else { return Err(ParseError("lone backslash")) };
        match ch {
            '{' => out.push(Tok::SetOpen),
            '}' => out.push(Tok::SetClose),
            '\\' => out.push(Tok::RowSep),
            '%' => out.push(Tok::Sym('%')),
            ',' | ';' | ':' | '!' | ' ' | '$' => {}
            _ => return Err(ParseError("unknown escape")),
        }
        return Ok(i + 1);
    }
    let name: String = c[start..i].iter().collect();
    let tok = match name.as_str() {
        "text" | "textbf" | "mathrm" | "mbox" | "textit" | "operatorname" | "textrm" | "textnormal" | "mathbf"
        | "mathit" | "boldsymbol" | "mathsf" => {
            let (content, next) = braced(c, i).ok_or(ParseError("unclosed text group"))?;
            let text: String = content.iter().collect::<String>().trim().to_string();
            let wordy = !text.is_empty() && text.chars().all(|ch| ch.is_alphabetic() || ch == ' ' || ch == '-');
            // Text words are words (`\text{ m}` is a unit); a math font keeps its content math.
            let font = matches!(name.as_str(), "mathbf" | "mathit" | "boldsymbol" | "mathsf");
            if text == "and" || text == "or" {
                out.push(Tok::Sym(','));
            } else if wordy && !font {
                out.push(Tok::Text(text));
            } else {
                lex_into(content, out, nesting + 1)?;
            }
            return Ok(next);
        }
        "begin" => {
            let (env, mut next) = braced(c, i).ok_or(ParseError("unclosed \\begin"))?;
            let env: String = env.iter().collect();
            if env == "array" {
                next = braced(c, next).map_or(next, |(_, n)| n); // column spec
            }
            out.push(Tok::Begin(env));
            return Ok(next);
        }
        "end" => {
            let (_, next) = braced(c, i).ok_or(ParseError("unclosed \\end"))?;
            out.push(Tok::End);
            return Ok(next);
        }
        "left" | "right" | "displaystyle" | "big" | "Big" | "bigl" | "bigr" | "Bigl" | "Bigr" | "quad" | "qquad"
        | "circ" | "degree" | "limits" | "hfill" | "angle" | "measuredangle" => {
            return Ok(i);
        }
        "lfloor" => Tok::Sym('⌊'),
        "rfloor" => Tok::Sym('⌋'),
        "lceil" => Tok::Sym('⌈'),
        "rceil" => Tok::Sym('⌉'),
        "frac" | "dfrac" | "tfrac" | "cfrac" => Tok::Cmd("frac"),
        "binom" | "dbinom" | "tbinom" | "choose" => Tok::Cmd("binom"),
        "sqrt" => Tok::Cmd("sqrt"),
        "pi" => Tok::Cmd("pi"),
        "infty" | "infinity" => Tok::Cmd("infty"),
        "emptyset" | "varnothing" => Tok::Cmd("empty"),
        "cdot" | "times" | "ast" => Tok::Sym('*'),
        "div" => Tok::Sym('/'),
        "pm" => Tok::Sym('±'),
        "le" | "leq" | "leqslant" => Tok::Sym('≤'),
        "ge" | "geq" | "geqslant" => Tok::Sym('≥'),
        "ne" | "neq" => Tok::Sym('≠'),
        "lt" => Tok::Sym('<'),
        "gt" => Tok::Sym('>'),
        "cup" => Tok::Sym('∪'),
        "in" => Tok::Sym('∈'),
        "approx" => Tok::Sym('='),
        "lvert" | "rvert" | "vert" | "mid" => Tok::Sym('|'),
        "lbrace" => Tok::SetOpen,
        "rbrace" => Tok::SetClose,
        "cr" => Tok::RowSep,
        other => {
            if let Some((_, f)) = FUNCS.iter().find(|(w, _)| *w == other) {
                Tok::Cmd(f)
            } else if let Some(g) = GREEK.iter().find(|g| **g == other) {
                Tok::Var((*g).to_string())
            } else {
                return Err(ParseError("unknown LaTeX command"));
            }
        }
    };
    out.push(tok);
    Ok(i)
}

/// The content of the `{…}` group starting at `i` (after optional spaces) and the index after it.
fn braced(c: &[char], mut i: usize) -> Option<(&[char], usize)> {
    while c.get(i).is_some_and(|ch| ch.is_whitespace()) {
        i += 1;
    }
    if c.get(i) != Some(&'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut j = i;
    while j < c.len() {
        match c[j] {
            '\\' => j += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&c[i + 1..j], j + 1));
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

fn b(n: Node) -> Box<Node> {
    Box::new(n)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_sym(&self, s: char) -> bool {
        self.peek() == Some(&Tok::Sym(s))
    }

    fn eat_sym(&mut self, s: char) -> bool {
        let hit = self.peek_sym(s);
        self.pos += hit as usize;
        hit
    }

    fn expect_sym(&mut self, s: char) -> PResult<()> {
        if self.eat_sym(s) { Ok(()) } else { Err(ParseError("missing closing bracket")) }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(ParseError("nested too deep")) } else { Ok(()) }
    }

    /// `item (, item)*`; one item stays itself.
    fn list(&mut self) -> PResult<Node> {
        let mut items = vec![self.item()?];
        while self.eat_sym(',') {
            items.push(self.item()?);
        }
        Ok(if items.len() == 1 { items.pop().unwrap() } else { Node::List(items) })
    }

    /// A relation chain over unions.
    fn item(&mut self) -> PResult<Node> {
        let mut items = vec![self.union()?];
        let mut ops = Vec::new();
        while let Some(Tok::Sym(op @ ('=' | '<' | '>' | '≤' | '≥' | '≠' | '∈'))) = self.peek() {
            let mut op = *op;
            self.pos += 1;
            if (op == '<' || op == '>') && self.eat_sym('=') {
                op = if op == '<' { '≤' } else { '≥' };
            }
            ops.push(op);
            items.push(self.union()?);
        }
        Ok(if ops.is_empty() { items.pop().unwrap() } else { Node::Rel { items, ops } })
    }

    fn union(&mut self) -> PResult<Node> {
        let mut parts = vec![self.sum()?];
        while self.eat_sym('∪') {
            parts.push(self.sum()?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap() } else { Node::Union(parts) })
    }

    fn sum(&mut self) -> PResult<Node> {
        let mut lhs = self.term()?;
        loop {
            if self.eat_sym('+') {
                lhs = Node::Add(b(lhs), b(self.term()?));
            } else if self.eat_sym('-') {
                lhs = Node::Add(b(lhs), b(Node::Neg(b(self.term()?))));
            } else if self.eat_sym('±') {
                lhs = Node::PlusMinus(b(lhs), b(self.term()?));
            } else {
                return Ok(lhs);
            }
        }
    }

    fn term(&mut self) -> PResult<Node> {
        let mut lhs = self.unary()?;
        loop {
            if self.eat_sym('*') {
                lhs = Node::Mul(b(lhs), b(self.unary()?));
            } else if self.eat_sym('/') {
                lhs = Node::Div(b(lhs), b(self.unary()?));
            } else if matches!(self.peek(), Some(Tok::Text(_))) && !matches!(lhs, Node::Text(_)) {
                self.pos += 1; // a unit after a value, maybe squared
                if self.eat_sym('^') {
                    self.script()?;
                }
            } else if self.starts_atom() {
                let frac_next = self.peek() == Some(&Tok::Cmd("frac"));
                let rhs = self.power()?;
                lhs = match (mixed_whole(&lhs), &rhs) {
                    (Some(neg), Node::Div(n, d)) if frac_next && is_int_lit(n) && is_int_lit(d) => {
                        let sum = Node::Add(b(strip_neg(lhs)), b(rhs));
                        if neg { Node::Neg(b(sum)) } else { sum }
                    }
                    _ => Node::Mul(b(lhs), b(rhs)),
                };
            } else {
                return Ok(lhs);
            }
        }
    }

    fn unary(&mut self) -> PResult<Node> {
        if self.eat_sym('-') {
            self.enter()?;
            let n = Node::Neg(b(self.unary()?));
            self.depth -= 1;
            Ok(n)
        } else if self.eat_sym('±') {
            self.enter()?;
            let n = Node::PlusMinus(b(Node::Num(BigRational::zero())), b(self.unary()?));
            self.depth -= 1;
            Ok(n)
        } else if self.eat_sym('+') {
            self.unary()
        } else {
            self.power()
        }
    }

    fn starts_atom(&self) -> bool {
        let after_num = self.pos > 0 && matches!(self.toks[self.pos - 1], Tok::Num(_));
        match self.peek() {
            // `2 3` is no product: most likely a mangled number, so refuse it.
            Some(Tok::Num(_)) => !after_num,
            Some(Tok::Var(_) | Tok::SetOpen | Tok::Begin(_)) => true,
            Some(Tok::Cmd(c)) => *c != "empty",
            Some(Tok::Sym(c)) => matches!(c, '(' | '{'),
            _ => false,
        }
    }

    fn power(&mut self) -> PResult<Node> {
        let mut base = self.postfix()?;
        if self.eat_sym('^') {
            let exp = self.script()?;
            base = Node::Pow(b(base), b(exp));
            base = self.suffixes(base);
        }
        Ok(base)
    }

    fn suffixes(&mut self, mut n: Node) -> Node {
        loop {
            if self.eat_sym('!') {
                n = Node::Func(Func::Factorial, b(n));
            } else if self.eat_sym('%') {
                n = Node::Percent(b(n));
            } else {
                return n;
            }
        }
    }

    fn postfix(&mut self) -> PResult<Node> {
        let n = self.atom()?;
        Ok(self.suffixes(n))
    }

    /// An exponent: a `{…}` group, a signed atom, or a whole number. LaTeX would raise `2^10` to
    /// the 1 and append a 0, but whoever types it means 2^{10}, so the number is taken whole.
    fn script(&mut self) -> PResult<Node> {
        if self.eat_sym('-') {
            return Ok(Node::Neg(b(self.script()?)));
        }
        if matches!(self.peek(), Some(Tok::Num(_))) {
            return self.atom();
        }
        self.arg()
    }

    /// A command argument: a `{…}` group, or a single token (`\frac34`, `\sqrt2`, `x^2`).
    fn arg(&mut self) -> PResult<Node> {
        if let Some(Tok::Num(s)) = self.peek() {
            let s = s.clone();
            if s.len() > 1 && s.chars().all(|c| c.is_ascii_digit()) {
                let (first, rest) = s.split_at(1);
                self.toks[self.pos] = Tok::Num(rest.to_string());
                return num(first);
            }
        }
        if self.peek_sym('{') {
            self.pos += 1;
            self.enter()?;
            let n = self.list()?;
            self.depth -= 1;
            self.expect_sym('}')?;
            return Ok(n);
        }
        self.atom()
    }

    fn atom(&mut self) -> PResult<Node> {
        self.enter()?;
        let n = self.atom_inner();
        self.depth -= 1;
        n
    }

    fn atom_inner(&mut self) -> PResult<Node> {
        let Some(tok) = self.toks.get(self.pos).cloned() else {
            return Err(ParseError("answer ends too early"));
        };
        self.pos += 1;
        match tok {
            Tok::Num(s) => num(&s),
            Tok::Var(v) => {
                if self.eat_sym('_') {
                    let sub = self.arg()?;
                    // `x_1`, `x_{n+1}`: the printed subscript tree keeps names apart.
                    return Ok(Node::Var(format!("{v}_{sub:?}")));
                }
                Ok(if v == "e" { Node::E } else { Node::Var(v) })
            }
            Tok::Text(t) => Ok(Node::Text(t)),
            Tok::Cmd("pi") => Ok(Node::Pi),
            Tok::Cmd("infty") => Ok(Node::Inf),
            Tok::Cmd("empty") => Ok(Node::Set(Vec::new())),
            Tok::Cmd("frac") => {
                let n = self.arg()?;
                let d = self.arg()?;
                Ok(Node::Div(b(n), b(d)))
            }
            Tok::Cmd("binom") => {
                let n = self.arg()?;
                let k = self.arg()?;
                Ok(Node::Binom(b(n), b(k)))
            }
            Tok::Cmd("sqrt") => {
                if self.eat_sym('[') {
                    let idx = self.sum()?;
                    self.expect_sym(']')?;
                    let x = self.arg()?;
                    return Ok(Node::Pow(b(x), b(Node::Div(b(one()), b(idx)))));
                }
                Ok(Node::Func(Func::Sqrt, b(self.arg()?)))
            }
            Tok::Cmd("log") => {
                let base = if self.eat_sym('_') { Some(self.arg()?) } else { None };
                let x = self.func_arg()?;
                Ok(match base {
                    Some(base) => Node::Div(b(Node::Func(Func::Ln, b(x))), b(Node::Func(Func::Ln, b(base)))),
                    None => Node::Func(Func::Log10, b(x)),
                })
            }
            Tok::Cmd(name) => {
                let f = match name {
                    "sin" => Func::Sin,
                    "cos" => Func::Cos,
                    "tan" => Func::Tan,
                    "sec" => Func::Sec,
                    "csc" => Func::Csc,
                    "cot" => Func::Cot,
                    "asin" => Func::Asin,
                    "acos" => Func::Acos,
                    "atan" => Func::Atan,
                    "ln" => Func::Ln,
                    "exp" => Func::Exp,
                    _ => return Err(ParseError("unknown function")),
                };
                let power = if self.eat_sym('^') { Some(self.script()?) } else { None };
                // `\sin^{-1}` is the inverse function, any other power applies to the value.
                let minus_one = matches!(&power, Some(Node::Neg(one)) if is_one(one));
                let inverse = match f {
                    Func::Sin if minus_one => Some(Func::Asin),
                    Func::Cos if minus_one => Some(Func::Acos),
                    Func::Tan if minus_one => Some(Func::Atan),
                    _ => None,
                };
                let x = Node::Func(inverse.unwrap_or(f), b(self.func_arg()?));
                Ok(match power {
                    Some(p) if inverse.is_none() => Node::Pow(b(x), b(p)),
                    _ => x,
                })
            }
            Tok::Sym(open @ ('(' | '[')) => {
                let inner = self.list()?;
                let close = match self.peek() {
                    Some(Tok::Sym(c @ (')' | ']'))) => *c,
                    _ => return Err(ParseError("missing closing bracket")),
                };
                self.pos += 1;
                Ok(match inner {
                    Node::List(items) => Node::Seq { open, close, items },
                    one if open == '(' && close == ')' => one,
                    one => Node::Seq { open, close, items: vec![one] },
                })
            }
            Tok::Sym('{') => {
                let inner = self.list()?;
                self.expect_sym('}')?;
                Ok(inner)
            }
            Tok::Sym(open @ ('|' | '⌊' | '⌈')) => {
                let inner = self.sum()?;
                let (close, f) = match open {
                    '|' => ('|', Func::Abs),
                    '⌊' => ('⌋', Func::Floor),
                    _ => ('⌉', Func::Ceil),
                };
                self.expect_sym(close)?;
                Ok(Node::Func(f, b(inner)))
            }
            Tok::SetOpen => {
                if self.peek() == Some(&Tok::SetClose) {
                    self.pos += 1;
                    return Ok(Node::Set(Vec::new()));
                }
                let inner = self.list()?;
                if self.peek() != Some(&Tok::SetClose) {
                    return Err(ParseError("missing \\}"));
                }
                self.pos += 1;
                Ok(Node::Set(match inner {
                    Node::List(items) => items,
                    one => vec![one],
                }))
            }
            Tok::Begin(env) => self.matrix(&env),
            _ => Err(ParseError("unexpected token")),
        }
    }

    /// A function's argument: `(…)`, `{…}` or one factor (`\sin x`, `\ln 2`).
    fn func_arg(&mut self) -> PResult<Node> {
        if self.peek_sym('{') { self.arg() } else { self.power() }
    }

    fn matrix(&mut self, env: &str) -> PResult<Node> {
        if !matches!(env, "pmatrix" | "bmatrix" | "matrix" | "array" | "Bmatrix" | "smallmatrix") {
            return Err(ParseError("unsupported environment"));
        }
        let mut rows = vec![vec![]];
        loop {
            match self.peek() {
                Some(Tok::End) => {
                    self.pos += 1;
                    break;
                }
                Some(Tok::RowSep) => {
                    self.pos += 1;
                    rows.push(vec![]);
                }
                Some(Tok::Sym('&')) => self.pos += 1,
                None => return Err(ParseError("missing \\end")),
                _ => {
                    let cell = self.sum()?;
                    rows.last_mut().unwrap().push(cell);
                }
            }
        }
        rows.retain(|r| !r.is_empty());
        let width = rows.first().map_or(0, Vec::len);
        if width == 0 || rows.iter().any(|r| r.len() != width) {
            return Err(ParseError("ragged matrix"));
        }
        Ok(Node::Matrix(rows))
    }
}

fn one() -> Node {
    Node::Num(BigRational::one())
}

fn is_one(n: &Node) -> bool {
    matches!(n, Node::Num(r) if r.is_one())
}

fn is_int_lit(n: &Node) -> bool {
    matches!(n, Node::Num(r) if r.is_integer())
}

/// For the mixed-number rule: `Some(negative)` when `n` is an integer literal, maybe negated.
fn mixed_whole(n: &Node) -> Option<bool> {
    match n {
        Node::Num(r) if r.is_integer() && !r.is_zero() => Some(false),
        Node::Neg(x) if is_int_lit(x) => Some(true),
        _ => None,
    }
}

fn strip_neg(n: Node) -> Node {
    match n {
        Node::Neg(x) => *x,
        other => other,
    }
}

/// Largest decimal exponent `1e…` turns into an exact rational; beyond that the number is
/// rejected rather than expanded.
const MAX_SCI_EXP: i64 = 400;

fn num(s: &str) -> PResult<Node> {
    rational(s).map(Node::Num)
}

/// The value of a lexed number: `12`, `1.5`, `1.5e3`, `0.1(6)` (repeating block in brackets).
fn rational(s: &str) -> PResult<BigRational> {
    if let Some((fixed, rest)) = s.split_once('(') {
        // `I.F(R)` = I.F + 0.0…0RRR… = I.F + R / (10^|F| · (10^|R| − 1)).
        let rep = rest.trim_end_matches(')');
        let base = rational(fixed.trim_end_matches('.'))?;
        let shift = fixed.split_once('.').map_or(0, |(_, f)| f.len());
        let r: BigInt = rep.parse().map_err(|_| ParseError("bad repeating block"))?;
        let ten = BigInt::from(10);
        let den = num_traits::pow(ten.clone(), shift) * (num_traits::pow(ten, rep.len()) - 1);
        return Ok(base + BigRational::new(r, den));
    }
    let (mant, exp) = match s.find('e') {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().map_err(|_| ParseError("bad exponent"))?),
        None => (s, 0),
    };
    if exp.abs() > MAX_SCI_EXP {
        return Err(ParseError("exponent too large"));
    }
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits: BigInt = format!("{int}{frac}").parse().map_err(|_| ParseError("bad number"))?;
    let ten = BigInt::from(10);
    let scale = exp - frac.len() as i64;
    let r = if scale >= 0 {
        BigRational::from_integer(digits * num_traits::pow(ten, scale as usize))
    } else {
        BigRational::new(digits, num_traits::pow(ten, (-scale) as usize))
    };
    Ok(r)
}

/// Replaces every `a ± b` by `a + b` (`plus`) or `a − b`; a tree with `±` becomes a
/// [`Node::List`] of both.
fn expand_pm(n: Node) -> Node {
    fn has(n: &Node) -> bool {
        match n {
            Node::PlusMinus(..) => true,
            Node::Neg(a) | Node::Func(_, a) | Node::Percent(a) => has(a),
            Node::Add(a, c) | Node::Mul(a, c) | Node::Div(a, c) | Node::Pow(a, c) | Node::Binom(a, c) => {
                has(a) || has(c)
            }
            _ => false,
        }
    }
    fn pick(n: &Node, plus: bool) -> Node {
        let p = |x: &Node| b(pick(x, plus));
        match n {
            Node::PlusMinus(a, c) => Node::Add(p(a), if plus { p(c) } else { b(Node::Neg(p(c))) }),
            Node::Neg(a) => Node::Neg(p(a)),
            Node::Func(f, a) => Node::Func(*f, p(a)),
            Node::Percent(a) => Node::Percent(p(a)),
            Node::Add(a, c) => Node::Add(p(a), p(c)),
            Node::Mul(a, c) => Node::Mul(p(a), p(c)),
            Node::Div(a, c) => Node::Div(p(a), p(c)),
            Node::Pow(a, c) => Node::Pow(p(a), p(c)),
            Node::Binom(a, c) => Node::Binom(p(a), p(c)),
            other => other.clone(),
        }
    }
    let map = |v: Vec<Node>| v.into_iter().map(expand_pm).collect::<Vec<_>>();
    match n {
        Node::List(v) => {
            let mut out = Vec::new();
            for x in map(v) {
                match x {
                    Node::List(inner) => out.extend(inner),
                    x => out.push(x),
                }
            }
            Node::List(out)
        }
        Node::Rel { items, ops } => {
            let items = map(items);
            // `x = 1 \pm \sqrt2` is two answers, not a relation to a list.
            if let ([lhs, Node::List(v)], ['=']) = (items.as_slice(), ops.as_slice()) {
                let rel = |r: &Node| Node::Rel { items: vec![lhs.clone(), r.clone()], ops: vec!['='] };
                return Node::List(v.iter().map(rel).collect());
            }
            Node::Rel { items, ops }
        }
        Node::Seq { open, close, items } => Node::Seq { open, close, items: map(items) },
        Node::Set(v) => Node::Set(map(v)),
        n if has(&n) => Node::List(vec![pick(&n, true), pick(&n, false)]),
        n => n,
    }
}
