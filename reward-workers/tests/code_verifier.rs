//! The code verifier on ordinary programs: assert-style tests, stdin/stdout cases, code
//! extraction and the job fields it validates.

use r1_reward::code::extract_code;
use r1_reward::job::{IoCase, ScoreJob, Status, score};

fn job(completion: &str, test: Option<&str>, tests: &[(&str, &str)]) -> ScoreJob {
    ScoreJob {
        id: serde_json::json!("t"),
        verifier: "code".into(),
        completion: completion.into(),
        ground_truth: None,
        language: None,
        test: test.map(Into::into),
        tests: (!tests.is_empty())
            .then(|| tests.iter().map(|(i, o)| IoCase { stdin: i.to_string(), stdout: o.to_string() }).collect()),
        timeout_s: Some(5.0),
        ..Default::default()
    }
}

fn check(name: &str, job: ScoreJob, reward: f64, status: Status) {
    let result = score(&job);
    assert_eq!((result.reward, result.status), (reward, status), "{name}: {}", result.detail);
    assert_eq!(result.components.get("code"), Some(&reward), "{name}: components");
}

const ADD: &str = "def add(a, b):\n    return a + b\n";

#[test]
fn assert_style_tests() {
    let fenced = format!("Here is my solution:\n\n```python\n{ADD}```\n\nIt adds.");
    let cases: Vec<(&str, ScoreJob, f64, Status)> = vec![
        ("correct", job(ADD, Some("assert add(2, 3) == 5"), &[]), 1.0, Status::Ok),
        ("wrong", job("def add(a, b):\n    return a - b\n", Some("assert add(2, 3) == 5"), &[]), 0.0, Status::Failed),
        (
            "syntax error",
            job("def add(a, b)\n    return a + b\n", Some("assert add(2, 3) == 5"), &[]),
            0.0,
            Status::Failed,
        ),
        ("fenced block", job(&fenced, Some("assert add(2, 3) == 5"), &[]), 1.0, Status::Ok),
        (
            "raw text with prose fails",
            job("It adds: def add(a, b): return a + b", Some("assert add(1, 1) == 2"), &[]),
            0.0,
            Status::Failed,
        ),
        (
            "check(entry_point) style",
            job(ADD, Some("def check(f):\n    assert f(1, 2) == 3\ncheck(add)"), &[]),
            1.0,
            Status::Ok,
        ),
        (
            "the sentinel is not in the environment",
            job("import os\nprint(os.environ.get('R1_SENTINEL'))\nos._exit(0)\n", Some("assert False"), &[]),
            0.0,
            Status::ExitedEarly,
        ),
        (
            "the harness source holds no sentinel",
            job("print(open('../prog/harness.py').read())\nimport os\nos._exit(0)\n", Some("pass"), &[]),
            0.0,
            Status::ExitedEarly,
        ),
        // Attacks on the pass signal: each scores 0.
        (
            "forging the sentinel from the harness frame",
            job(
                "import os, sys\ns = sys._getframe(1).f_locals['sentinel']\nos.write(1, ('\\n' + s + '\\n').encode())\nos._exit(0)\n",
                Some("assert False"),
                &[],
            ),
            0.0,
            Status::Failed,
        ),
        (
            "walking every frame for a sentinel",
            job(
                "import os, sys\nf = sys._getframe()\nwhile f:\n    for v in list(f.f_locals.values()):\n        if isinstance(v, str) and len(v) == 32:\n            os.write(1, ('\\n' + v + '\\n').encode())\n    f = f.f_back\nos._exit(0)\n",
                Some("assert False"),
                &[],
            ),
            0.0,
            Status::ExitedEarly,
        ),
        (
            "reading the sentinel from stdin",
            job(
                "import os, sys\ns = sys.stdin.read()\nos.write(1, ('\\n' + s.strip() + '\\n').encode())\nos._exit(0)\n",
                Some("assert False"),
                &[],
            ),
            0.0,
            Status::ExitedEarly,
        ),
        (
            "an object that equals everything",
            job(
                "class E:\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return E()\n",
                Some("assert add(2, 3) == 5"),
                &[],
            ),
            0.0,
            Status::Failed,
        ),
        (
            "exiting 0 from inside a tested function",
            job("import os\ndef add(a, b):\n    os._exit(0)\n", Some("assert add(2, 3) == 5"), &[]),
            0.0,
            Status::Failed,
        ),
        (
            "classes, methods and module values cross as plain data",
            job(
                "class Solution:\n    def two(self, xs, t):\n        return [i for i, x in enumerate(xs) if x == t]\nK = {'a': (1, 2.5)}\n",
                Some(
                    "assert Solution().two([3, 1, 3], 3) == [0, 2]\nassert K['a'] == (1, 2.5)\ntry:\n    Solution().two(None, 1)\nexcept TypeError:\n    pass\nelse:\n    raise AssertionError",
                ),
                &[],
            ),
            1.0,
            Status::Ok,
        ),
        (
            "tests use the modules the program imported",
            job(
                "import math\ndef area(r):\n    return math.pi * r * r\n",
                Some("assert math.isclose(area(2), 4 * math.pi)"),
                &[],
            ),
            1.0,
            Status::Ok,
        ),
        (
            // The program imports its own file as a module; were the harness to import it by
            // that name, the code would run in the harness and find the sentinel.
            "getting the program imported into the harness",
            job(
                "import os, sys\nif __name__ == 'solution' and hasattr(sys.modules['__main__'], '_r1_main'):\n    f = sys._getframe()\n    while f:\n        for v in list(f.f_locals.values()):\n            if isinstance(v, str) and len(v) == 32:\n                os.write(1, ('\\n' + v + '\\n').encode())\n        f = f.f_back\n    os._exit(0)\nelif __name__ != 'solution':\n    sys.path.insert(0, '../prog')\n    import solution\n",
                Some("assert False"),
                &[],
            ),
            0.0,
            Status::Failed,
        ),
        ("a test that raises SystemExit(1)", job(ADD, Some("import sys\nsys.exit(1)"), &[]), 0.0, Status::Failed),
        (
            "slow past timeout_s",
            ScoreJob { timeout_s: Some(0.5), ..job("import time\ntime.sleep(5)\n", Some("pass"), &[]) },
            0.0,
            Status::Timeout,
        ),
    ];
    for (name, job, reward, status) in cases {
        check(name, job, reward, status);
    }
}

#[test]
fn stdin_stdout_cases() {
    let echo_sum = "a, b = map(int, input().split())\nprint(a + b)\n";
    let cases: Vec<(&str, ScoreJob, f64, Status)> = vec![
        ("all cases pass", job(echo_sum, None, &[("1 2\n", "3\n"), ("10 -4", "6")]), 1.0, Status::Ok),
        (
            "whitespace is tolerated",
            job("print(' 1  2 ')\nprint()\nprint('3')", None, &[("", "1 2\n3")]),
            1.0,
            Status::Ok,
        ),
        ("one case wrong", job(echo_sum, None, &[("1 2\n", "3\n"), ("2 2\n", "5\n")]), 0.0, Status::Failed),
        ("tokens must match, not just characters", job("print('12')", None, &[("", "1 2")]), 0.0, Status::Failed),
        ("crash on input", job(echo_sum, None, &[("x y\n", "3\n")]), 0.0, Status::Failed),
        (
            "early exit prints nothing",
            job("import sys\nsys.exit(0)\nprint(3)", None, &[("", "3")]),
            0.0,
            Status::Failed,
        ),
        ("both kinds: the assert run gets no stdin", job(echo_sum, Some("pass"), &[("1 1", "2")]), 0.0, Status::Failed),
    ];
    for (name, job, reward, status) in cases {
        check(name, job, reward, status);
    }
}

#[test]
fn job_fields_are_validated_at_their_boundaries() {
    let base = job("print(1)", Some("pass"), &[]);
    let cases: Vec<(&str, ScoreJob, Status)> = vec![
        ("no tests at all", job("print(1)", None, &[]), Status::InvalidInput),
        (
            "empty stdin/stdout list",
            ScoreJob { tests: Some(vec![]), ..job("print(1)", None, &[]) },
            Status::InvalidInput,
        ),
        ("unknown language", ScoreJob { language: Some("cobol".into()), ..base.clone() }, Status::InvalidInput),
        ("python by name", ScoreJob { language: Some("python".into()), ..base.clone() }, Status::Ok),
        ("timeout_s = 0", ScoreJob { timeout_s: Some(0.0), ..base.clone() }, Status::InvalidInput),
        ("timeout_s = 60", ScoreJob { timeout_s: Some(60.0), ..base.clone() }, Status::Ok),
        ("timeout_s just over 60", ScoreJob { timeout_s: Some(60.001), ..base.clone() }, Status::InvalidInput),
        ("timeout_s NaN", ScoreJob { timeout_s: Some(f64::NAN), ..base.clone() }, Status::InvalidInput),
        ("memory_mb = 31", ScoreJob { memory_mb: Some(31), ..base.clone() }, Status::InvalidInput),
        ("memory_mb = 64", ScoreJob { memory_mb: Some(64), ..base.clone() }, Status::Ok),
        ("memory_mb = 16384", ScoreJob { memory_mb: Some(16384), ..base.clone() }, Status::Ok),
        ("memory_mb = 16385", ScoreJob { memory_mb: Some(16385), ..base.clone() }, Status::InvalidInput),
    ];
    for (name, job, status) in cases {
        let result = score(&job);
        assert_eq!(result.status, status, "{name}: {}", result.detail);
    }
}

#[test]
fn code_extraction() {
    let tags = ["python", "py"];
    let cases = [
        ("no fence", "print(1)", "print(1)"),
        ("python fence", "text\n```python\nprint(1)\n```\nmore", "print(1)\n"),
        ("last python fence wins", "```python\nprint(1)\n```\n```py\nprint(2)\n```", "print(2)\n"),
        ("tagged beats untagged", "```python\nprint(1)\n```\n```\nprint(2)\n```", "print(1)\n"),
        ("untagged when no tagged", "```\nprint(2)\n```", "print(2)\n"),
        ("other language ignored", "```bash\nls\n```\nprint(3)", "```bash\nls\n```\nprint(3)"),
        ("unclosed fence leaves the text", "```python\nprint(1)", "```python\nprint(1)"),
        ("tag case and spaces", "``` Python \nx = 1\n```", "x = 1\n"),
    ];
    for (name, completion, want) in cases {
        assert_eq!(extract_code(completion, &tags), want, "{name}");
    }
}
