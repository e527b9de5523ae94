//! Run specs: tables of good and bad specs, `R1_*` overrides, and the JSON round trip.

use r1_spec::{Aggregation, Algorithm, DatasetFormat, GrpoConfig, Preset, RunSpec, TisLevel};

const BASE: &str = r#"
name = "t"
base_model = "m"
[dataset]
path = "d.jsonl"
fields = { prompt = "q", answer = "a" }
[[rewards]]
name = "accuracy"
verifier = "math"
weight = 1.0
[algorithm]
kind = "grpo"
[schedule]
total_steps = 10
"#;

/// The base spec with `key` (dotted path) set to the TOML value `value`, or removed when
/// `value` is empty.
fn edit(key: &str, value: &str) -> String {
    set(BASE, key, value)
}

/// `text` with `key` set to `value` (removed when `value` is empty).
fn set(text: &str, key: &str, value: &str) -> String {
    let mut doc: toml::Table = text.parse().unwrap();
    let parts: Vec<&str> = key.split('.').collect();
    let mut table = &mut doc;
    for p in &parts[..parts.len() - 1] {
        table = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .unwrap();
    }
    let last = parts[parts.len() - 1].to_string();
    if value.is_empty() {
        table.remove(&last);
    } else {
        let v: toml::Table = format!("v = {value}").parse().unwrap();
        table.insert(last, v["v"].clone());
    }
    toml::to_string(&doc).unwrap()
}

/// `Ok(())` for a spec that must load, `Err(text)` for one whose error must contain `text`.
fn check(name: &str, text: &str, expected: Result<(), &str>) {
    match (RunSpec::from_toml(text), expected) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err(want)) => {
            let msg = e.to_string();
            assert!(msg.contains(want), "{name}: error `{msg}` does not mention `{want}`");
            assert!(!msg.ends_with('.'), "{name}: message ends with a period: {msg}");
        }
        (got, want) => panic!("{name}: expected {want:?}, got {got:?}"),
    }
}

#[test]
fn specs_accepted_and_refused() {
    let cases: &[(&str, String, Result<(), &str>)] = &[
        ("base", BASE.into(), Ok(())),
        ("unknown top-level key", format!("{BASE}\nnmae = \"x\""), Err("nmae")),
        ("unknown nested key", edit("dataset.fields.promt", "\"x\""), Err("promt")),
        ("unknown algorithm", edit("algorithm.kind", "\"ppo\""), Err("ppo")),
        ("unknown grpo key", edit("algorithm.groupsize", "4"), Err("groupsize")),
        ("missing schedule", edit("schedule", ""), Err("schedule")),
        ("answer kind gsm8k", edit("dataset.answer_kind", "\"gsm8k\""), Ok(())),
        ("answer kind choice", edit("dataset.answer_kind", "\"choice\""), Ok(())),
        ("unknown answer kind", edit("dataset.answer_kind", "\"gsm-8k\""), Err("gsm-8k")),
        (
            "answer kind without an answer column",
            set(&edit("dataset.answer_kind", "\"boxed\""), "dataset.fields", "{ prompt = \"q\" }")
                .replace("verifier = \"math\"", "verifier = \"format\""),
            Err("dataset.answer_kind"),
        ),
        (
            "answer kind for sft",
            set(&set(&edit("algorithm.kind", "\"sft\""), "rewards", "[]"), "dataset.answer_kind", "\"gsm8k\""),
            Err("dataset.answer_kind"),
        ),
        (
            "system prompt with the r1 template",
            edit("dataset.system_prompt", "\"Reason step by step.\""),
            Err("dataset.system_prompt"),
        ),
        (
            "system prompt with the chat template",
            set(&edit("dataset.system_prompt", "\"Reason step by step.\""), "algorithm.sampling.template", "\"chat\""),
            Ok(()),
        ),
        (
            "blank system prompt",
            set(&edit("dataset.system_prompt", "\" \""), "algorithm.sampling.template", "\"chat\""),
            Err("dataset.system_prompt"),
        ),
        (
            "system prompt for sft needs its template",
            set(
                &set(&set(&edit("algorithm.kind", "\"sft\""), "rewards", "[]"), "dataset.system_prompt", "\"x\""),
                "algorithm.template",
                "\"r1\"",
            ),
            Err("algorithm.template"),
        ),
        ("missing name", edit("name", ""), Err("name")),
        ("blank name", edit("name", "\" \""), Err("`name`")),
        ("group size 1", edit("algorithm.group_size", "1"), Err("algorithm.group_size")),
        ("group size 2", edit("algorithm.group_size", "2"), Ok(())),
        ("group size 1024", edit("algorithm.group_size", "1024"), Ok(())),
        ("group size 1025", edit("algorithm.group_size", "1025"), Err("algorithm.group_size")),
        (
            "negative group size",
            edit("algorithm.group_size", "-4"),
            Err("`-4`, expected u32 for key \"default.algorithm.group_size\""),
        ),
        (
            "group size as a word",
            edit("algorithm.group_size", "\"sixteen\""),
            Err("string \"sixteen\", expected u32 for key \"default.algorithm.group_size\""),
        ),
        (
            "sampling temperature as a word",
            edit("algorithm.sampling.temperature", "\"hot\""),
            Err("for key \"default.algorithm.sampling.temperature\""),
        ),
        ("no prompts per step", edit("algorithm.prompts_per_step", "0"), Err("algorithm.prompts_per_step")),
        ("no rewards for grpo", edit("rewards", "[]"), Err("`rewards`")),
        (
            "duplicate reward name",
            format!("{BASE}\n[[rewards]]\nname = \"accuracy\"\nverifier = \"format\"\nweight = 1.0"),
            Err("rewards[1].name"),
        ),
        (
            "nan weight",
            edit("rewards", "[{name = \"a\", verifier = \"format\", weight = nan}]"),
            Err("rewards[0].weight"),
        ),
        ("reward without weight", edit("rewards", "[{name = \"a\", verifier = \"format\"}]"), Err("weight")),
        (
            "reward with options",
            edit("rewards", "[{name = \"a\", verifier = \"format\", weight = 1.0, options = {x = 1}}]"),
            Ok(()),
        ),
        ("math needs an answer column", edit("dataset.fields", "{ prompt = \"q\" }"), Err("dataset.fields.answer")),
        (
            "code needs a tests column",
            edit("rewards", "[{name = \"c\", verifier = \"code\", weight = 1.0}]"),
            Err("dataset.fields.tests"),
        ),
        ("empty column name", edit("dataset.fields.answer", "\"\""), Err("dataset.fields.answer")),
        ("eval fraction 0.999", edit("dataset.eval_fraction", "0.999"), Ok(())),
        ("eval fraction 1", edit("dataset.eval_fraction", "1.0"), Err("dataset.eval_fraction")),
        ("negative eval fraction", edit("dataset.eval_fraction", "-0.1"), Err("dataset.eval_fraction")),
        ("eval file", edit("dataset.eval_path", "\"e.parquet\""), Ok(())),
        (
            "eval file and fraction",
            edit("dataset.eval_path", "\"e.jsonl\"").replace("[dataset]", "[dataset]\neval_fraction = 0.1"),
            Err("dataset.eval_fraction"),
        ),
        ("no epochs", edit("dataset.epochs", "0"), Err("dataset.epochs")),
        ("no extension, no format", edit("dataset.path", "\"data/train\""), Err("dataset.format")),
        ("no extension, format given", edit("dataset.format", "\"parquet\"").replace("d.jsonl", "data/train"), Ok(())),
        ("unknown format", edit("dataset.format", "\"csv\""), Err("csv")),
        ("no actors", edit("fleet.actors", "0"), Err("fleet.actors")),
        ("4096 reward workers", edit("fleet.reward_workers", "4096"), Ok(())),
        ("4097 learner ranks", edit("fleet.learner_ranks", "4097"), Err("fleet.learner_ranks")),
        ("no steps", edit("schedule.total_steps", "0"), Err("schedule.total_steps")),
        ("eval without an eval split", edit("schedule.eval_every", "10"), Err("has no eval split")),
        ("eval with a split", set(&edit("schedule.eval_every", "10"), "dataset.eval_fraction", "0.1"), Ok(())),
        ("eval for sft", set(&edit("algorithm", "{kind = \"sft\"}"), "schedule.eval_every", "1"), Err("GRPO only")),
        ("sft", edit("algorithm", "{kind = \"sft\", batch_size = 8}"), Ok(())),
        ("sft without rewards", set(&edit("algorithm", "{kind = \"sft\"}"), "rewards", ""), Ok(())),
        (
            "sft without answer",
            set(&set(&edit("algorithm", "{kind = \"sft\"}"), "rewards", ""), "dataset.fields", "{prompt = \"q\"}"),
            Err("dataset.fields.answer"),
        ),
        ("sft batch 0", edit("algorithm", "{kind = \"sft\", batch_size = 0}"), Err("algorithm.batch_size")),
        // [algorithm.learner]: typed and checked with the rest of the spec.
        ("learner lr", edit("algorithm.learner.lr", "1e-5"), Ok(())),
        ("unknown learner key", edit("algorithm.learner.learning_rate", "1e-5"), Err("unknown key `learning_rate`")),
        ("learner key of the wrong type", edit("algorithm.learner.lr", "\"fast\""), Err("lr")),
        ("zero lr", edit("algorithm.learner.lr", "0.0"), Err("algorithm.learner.lr")),
        ("negative beta", edit("algorithm.learner.beta", "-0.1"), Err("algorithm.learner.beta")),
        ("tis cap at 1", edit("algorithm.learner.tis_cap", "1.0"), Ok(())),
        ("tis cap under 1", edit("algorithm.learner.tis_cap", "0.99"), Err("algorithm.learner.tis_cap")),
        ("unknown preset", edit("algorithm.learner.preset", "\"ppo\""), Err("use \"r1\", \"dapo\" or \"dr_grpo\"")),
        ("dapo preset", edit("algorithm.learner.preset", "\"dapo\""), Ok(())),
        (
            "token_sum_norm without sum-norm aggregation",
            edit("algorithm.learner.token_sum_norm", "512"),
            Err("algorithm.learner.token_sum_norm"),
        ),
        ("zero micro batch", edit("algorithm.learner.micro_batch", "0"), Err("algorithm.learner.micro_batch")),
        (
            "64 steps per batch",
            set(&edit("algorithm.learner.minibatches_per_batch", "8"), "algorithm.learner.epochs_per_batch", "8"),
            Ok(()),
        ),
        (
            "minibatches that split the prompts",
            set(&edit("algorithm.learner.minibatches_per_batch", "4"), "algorithm.prompts_per_step", "12"),
            Ok(()),
        ),
        (
            "minibatches that do not split the prompts",
            set(&edit("algorithm.learner.minibatches_per_batch", "5"), "algorithm.prompts_per_step", "12"),
            Err("use a divisor of prompts_per_step"),
        ),
        (
            "65 minibatches",
            edit("algorithm.learner.minibatches_per_batch", "65"),
            Err("algorithm.learner.minibatches_per_batch"),
        ),
        (
            "128 steps per batch",
            set(&edit("algorithm.learner.minibatches_per_batch", "16"), "algorithm.learner.epochs_per_batch", "8"),
            Err("algorithm.learner.epochs_per_batch"),
        ),
        ("zero epochs", edit("algorithm.learner.epochs_per_batch", "0"), Err("algorithm.learner.epochs_per_batch")),
        // Asynchronous runs need a trust region.
        ("stale samples with R1's eps 10", edit("algorithm.max_policy_lag", "1"), Err("no trust region")),
        (
            "stale samples with eps 0.2",
            set(&edit("algorithm.max_policy_lag", "1"), "algorithm.learner.clip_eps", "0.2"),
            Ok(()),
        ),
        (
            "stale samples with eps_high 1",
            set(&edit("algorithm.max_policy_lag", "1"), "algorithm.learner", "{clip_eps = 0.2, clip_eps_high = 1.0}"),
            Err("algorithm.learner.clip_eps"),
        ),
        (
            "stale samples with the dapo preset",
            set(&edit("algorithm.max_policy_lag", "2"), "algorithm.learner.preset", "\"dapo\""),
            Ok(()),
        ),
        (
            "grpo loss key under sft",
            set(&edit("algorithm", "{kind = \"sft\", batch_size = 4}"), "algorithm.learner.clip_eps_low", "0.2"),
            Err("unknown key `clip_eps_low`"),
        ),
        ("grpo key under sft", edit("algorithm", "{kind = \"sft\", group_size = 4}"), Err("group_size")),
    ];
    for (name, text, expected) in cases {
        check(name, text, *expected);
    }
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let spec = RunSpec::from_toml(BASE).unwrap();
    let Algorithm::Grpo(g) = &spec.algorithm else { panic!("not grpo") };
    let got = (g.group_size, g.prompts_per_step, g.max_policy_lag, g.dynamic_sampling);
    assert_eq!(got, (16, 32, 0, false));
    assert_eq!((spec.fleet.actors, spec.fleet.reward_workers, spec.fleet.learner_ranks), (1, 1, 1));
    assert_eq!(
        (spec.dataset.epochs, spec.dataset.shuffle, spec.dataset.seed, spec.dataset.eval_fraction),
        (1, true, 0, 0.0)
    );
    assert_eq!((spec.schedule.checkpoint_every, spec.schedule.eval_every), (100, 0));
    assert_eq!(spec.dataset.resolved_format(&spec.dataset.path).unwrap(), DatasetFormat::Jsonl);
    assert_eq!(spec.group_size(), 16);
    // A GRPO run with an answer column compares against the column as given.
    assert_eq!(spec.dataset.answer_kind, Some(r1_spec::AnswerKind::Plain));
    let sft = RunSpec::from_toml(&set(&edit("algorithm.kind", "\"sft\""), "rewards", "[]")).unwrap();
    assert_eq!(sft.dataset.answer_kind, None);
}

#[test]
fn example_spec_loads_and_round_trips_through_json() {
    let path = format!(
        "{}/../coordinator/examples/run.toml",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    );
    let spec = RunSpec::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(spec.dataset.fields.prompt, "question");
    // GSM8K publishes `... #### 72`: the example extracts the gold answer after `####`.
    assert_eq!(spec.dataset.answer_kind, Some(r1_spec::AnswerKind::Gsm8k));
    let Algorithm::Grpo(g) = &spec.algorithm else { panic!("not grpo") };
    assert_eq!(g.learner.optim.lr, 3e-6);
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(RunSpec::from_json(&json).unwrap(), spec);
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
fn environment_overrides_the_file() {
    // (variables, Ok(group_size) or Err(text in the error))
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<u32, &'a str>);
    let cases: &[Case] = &[
        (&[], Ok(16)),
        (&[("R1_ALGORITHM__GROUP_SIZE", "8")], Ok(8)),
        (&[("R1_LOG", "debug"), ("R1_COORDINATOR", "http://x")], Ok(16)),
        (&[("R1_FLEET__ACTORS", "0")], Err("fleet.actors")),
        (&[("R1_DATASET__NOPE", "1")], Err("nope")),
    ];
    for (vars, expected) in cases {
        figment::Jail::expect_with(|jail| {
            jail.create_file("run.toml", BASE)?;
            for (k, v) in *vars {
                jail.set_env(k, v);
            }
            let got = RunSpec::load(std::path::Path::new("run.toml")).map(|s| s.group_size());
            match (got, expected) {
                (Ok(g), Ok(want)) => assert_eq!(g, *want, "{vars:?}"),
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{vars:?}: {e}"),
                (got, want) => panic!("{vars:?}: expected {want:?}, got {got:?}"),
            }
            Ok(())
        });
    }
    let missing = RunSpec::load(std::path::Path::new("/nonexistent/run.toml")).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/run.toml"), "{missing}");
}

/// The learner table of `BASE` with `table` (TOML inline-table body) as
/// `[algorithm.learner]`, parsed.
fn learner(table: &str) -> r1_spec::LearnerOptions {
    let text = set(BASE, "algorithm.learner", &format!("{{{table}}}"));
    match RunSpec::from_toml(&text).unwrap().algorithm {
        Algorithm::Grpo(g) => g.learner,
        Algorithm::Sft(_) => panic!("not grpo"),
    }
}

#[test]
fn presets_write_out_their_settings_and_keys_override_them() {
    // (table, the loss settings it must resolve to)
    let dr = |norm| GrpoConfig { token_sum_norm: Some(norm), ..GrpoConfig::dr_grpo() };
    let cases: Vec<(&str, GrpoConfig)> = vec![
        ("", GrpoConfig::r1()),
        ("preset = \"r1\"", GrpoConfig::r1()),
        ("preset = \"dapo\"", GrpoConfig::dapo()),
        // Dr. GRPO's constant normaliser: max_new_tokens (1024 by default) unless given.
        ("preset = \"dr_grpo\"", dr(1024)),
        ("preset = \"dr_grpo\", token_sum_norm = 300", dr(300)),
        ("preset = \"dapo\", beta = 0.01", GrpoConfig { beta: 0.01, ..GrpoConfig::dapo() }),
        ("clip_eps = 0.2", GrpoConfig { clip_eps_low: 0.2, clip_eps_high: 0.2, ..GrpoConfig::r1() }),
        (
            "clip_eps = 0.2, clip_eps_high = 0.28",
            GrpoConfig { clip_eps_low: 0.2, clip_eps_high: 0.28, ..GrpoConfig::r1() },
        ),
        (
            "preset = \"dapo\", clip_eps = 0.1",
            GrpoConfig { clip_eps_low: 0.1, clip_eps_high: 0.1, ..GrpoConfig::dapo() },
        ),
        (
            "tis_cap = 2.0, tis_level = \"sequence\", log_ratio_clamp = 10.0",
            GrpoConfig { tis_cap: Some(2.0), tis_level: TisLevel::Sequence, log_ratio_clamp: 10.0, ..GrpoConfig::r1() },
        ),
        (
            "aggregation = \"seq-mean-token-sum-norm\"",
            GrpoConfig {
                aggregation: Aggregation::SeqMeanTokenSumNorm,
                token_sum_norm: Some(1024),
                ..GrpoConfig::r1()
            },
        ),
    ];
    for (table, want) in cases {
        assert_eq!(learner(table).grpo, want, "{table}");
    }
    // Each preset sets the fields that define it (written out, not inherited).
    let (r1, dapo, dr) = (GrpoConfig::r1(), GrpoConfig::dapo(), GrpoConfig::dr_grpo());
    assert_eq!((r1.clip_eps_low, r1.clip_eps_high, r1.beta), (10.0, 10.0, 0.001));
    assert_eq!(
        (dapo.clip_eps_low, dapo.clip_eps_high, dapo.beta, dapo.aggregation),
        (0.2, 0.28, 0.0, Aggregation::TokenMean)
    );
    assert_eq!((dr.std_normalize, dr.beta, dr.aggregation), (false, 0.0, Aggregation::SeqMeanTokenSumNorm));
    // The stored spec records the preset and every resolved value, and reads back the same.
    let text = set(BASE, "algorithm.learner", "{preset = \"dr_grpo\", lr = 1e-5}");
    let spec = RunSpec::from_toml(&text).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    let table = &json["algorithm"]["learner"];
    assert_eq!(table["preset"], "dr_grpo");
    assert_eq!(table["token_sum_norm"], 1024);
    assert_eq!(table["std_normalize"], false);
    assert_eq!(table["lr"], 1e-5);
    assert_eq!(RunSpec::from_json(&json.to_string()).unwrap(), spec);
    let Algorithm::Grpo(g) = &spec.algorithm else { panic!("not grpo") };
    assert_eq!(g.learner.preset, Some(Preset::DrGrpo));
}
