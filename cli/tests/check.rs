//! `--check` on the service commands: a good config exits 0 with a summary, a bad value fails
//! with the flag (or variable) that set it, without starting anything. The chart's commands
//! go through the same path in `chart.rs`.

mod common;
use common::r1ctl;

/// Runs `r1ctl <args> --check` with `env`; (success, stdout + stderr).
fn check(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = r1ctl();
    cmd.args(args).arg("--check").env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// (arguments, environment, words the output must hold)
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn good_configs_pass_with_a_summary() {
    let cases: &[Case] = &[
        (&["serve", "coordinator", "--listen", "127.0.0.1:7070"], &[], "listening on 127.0.0.1:7070"),
        (&["serve", "coordinator", "--listen", "0.0.0.0:7070"], &[("R1_COORDINATOR_TOKEN", "t")], "token set"),
        (&["serve", "actor", "--health-listen", "0.0.0.0:8081"], &[], "a pool (the oldest running GRPO run"),
        (&["serve", "actor", "--run", "3"], &[], "serving run 3"),
        (&["serve", "learner", "--world-size", "4"], &[("R1_LEARNER_RANK", "3")], "rank 3 of 4"),
        (&["serve", "learner", "--master-listen", "0.0.0.0:29500"], &[], "serves weights on 127.0.0.1:7071"),
        (&["reward", "work", "--health-listen", "0.0.0.0:8081"], &[], "scoring a pool"),
        (&["reward", "serve"], &[], "listening on 127.0.0.1:50061"),
    ];
    for (args, env, words) in cases {
        let (ok, out) = check(args, env);
        assert!(ok && out.contains("config ok") && out.contains(words), "{args:?} {env:?}: {out}");
    }
}

#[test]
fn bad_values_fail_naming_the_flag() {
    let cases: &[Case] = &[
        (&["serve", "coordinator", "--listen", "0.0.0.0:99999"], &[], "port 99999 is out of range"),
        (&["serve", "coordinator", "--listen", "0.0.0.0:7070"], &[], "set R1_COORDINATOR_TOKEN"),
        (&["serve", "coordinator"], &[("R1_COORDINATOR_RUN_CLAIM_MS", "0")], "run_claim_ms"),
        (
            &["serve", "actor", "--coordinator", "htp//nowhere"],
            &[],
            "--coordinator/R1_ACTOR_COORDINATOR: `htp//nowhere` is not a coordinator URL",
        ),
        (&["serve", "actor", "--learner", "learner:7071"], &[], "--learner/R1_ACTOR_LEARNER"),
        (
            &["serve", "actor", "--health-listen", "8081"],
            &[],
            "--health-listen/R1_ACTOR_HEALTH_LISTEN is `8081`, which has no port",
        ),
        (&["serve", "actor", "--max-groups", "0"], &[], "max_groups and max_batch must be at least 1"),
        (
            &["serve", "learner", "--world-size", "2"],
            &[("R1_LEARNER_RANK", "2")],
            "rank 2 (--rank/R1_LEARNER_RANK) is outside a world of 2",
        ),
        (
            &["serve", "learner", "--master-addr", "learner-0:70000"],
            &[],
            "--master-addr/R1_LEARNER_MASTER_ADDR is `learner-0:70000`: port 70000 is out of range",
        ),
        (
            &["serve", "learner"],
            &[("R1_LEARNER_RING_BIND", "10.0.0.1:x")],
            "R1_LEARNER_RING_BIND is `10.0.0.1:x`: port `x` is not a number",
        ),
        (&["serve", "learner"], &[("R1_LEARNER_BOGUS", "1")], "bogus"),
        (
            &["reward", "work", "--coordinator", "nowhere"],
            &[],
            "--coordinator/R1_COORDINATOR: `nowhere` is not a coordinator URL",
        ),
        (&["reward", "work", "--max-groups", "0"], &[], "--max-groups is 0"),
        (
            &["reward", "work", "--otlp-endpoint", "collector:4317"],
            &[],
            "--otlp-endpoint/OTEL_EXPORTER_OTLP_ENDPOINT: `collector:4317` has no http://",
        ),
        (&["reward", "serve", "--max-pending", "0"], &[], "--max-pending must be at least 1"),
    ];
    for (args, env, words) in cases {
        let (ok, out) = check(args, env);
        assert!(!ok, "{args:?} {env:?} passed: {out}");
        assert!(out.contains(words), "{args:?} {env:?}: the error lacks `{words}`: {out}");
    }
}

/// A backend this build lacks is refused before any work, with the build command that adds
/// it; `--check` on a service notes it in its summary and passes (the chart checks a GPU
/// pool's rendered command on CPU builds).
#[test]
fn devices_this_build_lacks_name_the_feature_to_build() {
    // (device, built with it, words the error holds)
    let cases = [
        ("cpu-flex", cfg!(feature = "flex"), "--features flex"),
        ("cpu-torch", cfg!(feature = "tch"), "LIBTORCH_USE_PYTORCH=1 cargo build --release -p r1ctl --features tch"),
        ("cuda", cfg!(feature = "cuda"), "--features cuda"),
    ];
    for (device, _, words) in cases.into_iter().filter(|(_, built, _)| !built) {
        let out = r1ctl()
            .args(["bench", "generate", "--shape", "small", "--batch", "1", "--prompt-len", "2", "--new-tokens", "1"])
            .args(["--device", device])
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && text.contains(words), "--device {device}: {text}");
        let (ok, summary) = check(&["serve", "actor", "--device", device], &[]);
        assert!(
            ok && summary.contains(&format!("device {device} (this r1ctl has no")),
            "serve actor --device {device} --check: {summary}"
        );
    }
}
