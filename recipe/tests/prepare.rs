//! The recipe end to end on a tiny config: prepare makes loadable files and reuses them when
//! the inputs are unchanged; the base model samples and is scored; SFT lowers the loss; a
//! fresh student trains from the teacher's tokenizer.

use std::path::Path;

use r1_model::{CpuBackend, CpuTrainBackend, PromptTemplate, TextTokenizer};
use r1_recipe::data::{SftRecord, TaskItem, read_jsonl, read_tasks};
use r1_recipe::eval::{GenConfig, sample_and_score, summarize};
use r1_recipe::train::{encode, train};
use r1_recipe::{ModelShape, RecipeConfig, SftConfig, prepare};

fn tokenizer_and_model(dir: &Path) -> (TextTokenizer, r1_model::CausalLm<CpuBackend>) {
    let tok = TextTokenizer::from_dir(dir).unwrap();
    let model = r1_model::load::<CpuBackend>(dir, &Default::default()).unwrap();
    (tok, model)
}

#[test]
fn prepare_makes_every_file_and_reuses_what_is_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RecipeConfig::tiny();
    let first = prepare(dir.path(), &cfg).unwrap();
    assert!(first.reused.is_empty(), "{:?}", first.reused);
    let eval = read_tasks(&first.eval_jsonl, "prompt", "answer").unwrap();
    let train = read_tasks(&first.train_jsonl, "prompt", "answer").unwrap();
    assert_eq!((eval.len(), train.len()), (cfg.tasks.eval, cfg.tasks.train));
    let cold: Vec<SftRecord> = read_jsonl(&first.coldstart_jsonl).unwrap();
    assert_eq!(cold.len(), cfg.tasks.coldstart);

    // The base folder is a model folder with the tokenizer, and EOS agrees between the two.
    let (tok, model) = tokenizer_and_model(&first.base_model_dir);
    assert_eq!(model.config().vocab_size, tok.inner().get_vocab_size(true));
    assert_eq!(model.config().eos_token_ids, vec![tok.eos_token_id().unwrap()]);
    assert!(first.base_model_dir.join("generation_config.json").exists());
    assert_eq!(first.pretrain_report.steps, cfg.pretrain.steps);

    // (change, stages reused)
    let mut more_steps = cfg.clone();
    more_steps.pretrain.steps += 1;
    let mut other_vocab = cfg.clone();
    other_vocab.tokenizer.vocab_size += 5;
    let mut other_seed = cfg.clone();
    other_seed.seed += 1;
    let cases: [(&str, RecipeConfig, &[&str]); 4] = [
        ("unchanged", cfg.clone(), &["data", "tokenizer", "base"]),
        ("pretraining steps", more_steps, &["data", "tokenizer"]),
        ("vocabulary", other_vocab, &["data"]),
        ("seed", other_seed, &[]),
    ];
    for (what, c, want) in cases {
        let got = prepare(dir.path(), &c).unwrap();
        assert_eq!(got.reused, want, "after changing {what}");
    }
    // Back to the first config: everything is redone, then the files are as the first time.
    let again = prepare(dir.path(), &cfg).unwrap();
    assert_eq!(read_tasks(&again.eval_jsonl, "prompt", "answer").unwrap(), eval);
}

#[test]
fn a_broken_stage_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RecipeConfig::tiny();
    prepare(dir.path(), &cfg).unwrap();
    std::fs::write(dir.path().join("tokenizer/stamp.json"), "{ not json").unwrap();
    let got = prepare(dir.path(), &cfg).unwrap();
    // The tokenizer comes out byte-identical, so the base model made from it is still valid.
    assert_eq!(got.reused, ["data", "base"], "a tokenizer without a valid stamp is made again");
    std::fs::remove_file(dir.path().join("base/model.safetensors")).unwrap();
    std::fs::write(dir.path().join("base/stamp.json"), "{}").unwrap();
    let got = prepare(dir.path(), &cfg).unwrap();
    assert_eq!(got.reused, ["data", "tokenizer"]);
    r1_model::load::<CpuBackend>(&got.base_model_dir, &Default::default()).unwrap();
}

#[test]
fn bad_configs_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RecipeConfig::tiny();
    cfg.tasks.max_difficulty = 9;
    let err = prepare(&dir.path().join("out"), &cfg).unwrap_err().to_string();
    assert!(err.contains("difficulty 9"), "{err}");
    assert!(!dir.path().join("out").exists());
    let toml_err = toml::from_str::<RecipeConfig>("[tasks]\ntrian = 5\n").unwrap_err().to_string();
    assert!(toml_err.contains("trian"), "{toml_err}");
}

#[test]
fn the_base_model_samples_and_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let p = prepare(dir.path(), &RecipeConfig::tiny()).unwrap();
    let (tok, model) = tokenizer_and_model(&p.base_model_dir);
    let items: Vec<TaskItem> = read_tasks(&p.eval_jsonl, "prompt", "answer").unwrap().into_iter().take(3).collect();
    let cfg = GenConfig { k: 2, max_new_tokens: 8, ..GenConfig::default() };
    let mut generated = 0;
    let out = sample_and_score(&model, &tok, &items, &cfg, &Default::default(), &mut |n| generated += n).unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|o| o.samples.len() == 2));
    let total: usize = out.iter().flat_map(|o| &o.samples).map(|s| s.tokens).sum();
    assert_eq!(total, generated, "every generated token is counted once");
    let r = summarize(&out, 2);
    assert!((0.0..=1.0).contains(&r.pass_at_1) && r.mean_completion_tokens <= 8.0, "{r:?}");
}

#[test]
fn sft_lowers_the_loss_of_the_base_and_of_a_fresh_student() {
    let dir = tempfile::tempdir().unwrap();
    let p = prepare(dir.path(), &RecipeConfig::tiny()).unwrap();
    let tok = TextTokenizer::from_dir(&p.base_model_dir).unwrap();
    let eos = tok.eos_token_id().unwrap();
    let records: Vec<SftRecord> = read_jsonl(&p.coldstart_jsonl).unwrap();
    let records = &records[..4];
    let cfg = SftConfig { steps: 40, batch_size: 4, lr: 1e-2, warmup_steps: 2, ..SftConfig::default() };
    let device = Default::default();

    let base = r1_model::load::<CpuTrainBackend>(&p.base_model_dir, &device).unwrap();
    let examples = encode(records, &tok, PromptTemplate::R1, eos, base.config().max_position_embeddings).unwrap();
    let (_, report) = train(base, &examples, &cfg, &device, &mut |_| {}).unwrap();
    assert!(report.final_loss < 0.75 * report.first_loss, "{report:?}");

    let shape = ModelShape {
        hidden_size: 16,
        intermediate_size: 32,
        num_layers: 1,
        num_heads: 2,
        num_kv_heads: 1,
        max_position_embeddings: 384,
    };
    let student = r1_model::CausalLm::<CpuTrainBackend>::init(
        &shape.config(tok.inner().get_vocab_size(true), eos).unwrap(),
        &device,
    );
    let (student, report) = train(student, &examples, &cfg, &device, &mut |_| {}).unwrap();
    assert!(report.final_loss < 0.75 * report.first_loss, "{report:?}");
    let out = dir.path().join("student");
    r1_recipe::model::save_hf(&student, &p.base_model_dir, &out).unwrap();
    let (_, reloaded) = tokenizer_and_model(&out);
    assert_eq!(reloaded.config().hidden_size, 16);
}

#[test]
fn sft_input_errors_name_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = prepare(dir.path(), &RecipeConfig::tiny()).unwrap();
    let tok = TextTokenizer::from_dir(&p.base_model_dir).unwrap();
    let long = SftRecord { prompt: "q".into(), completion: "1 + ".repeat(400), answer: None };
    let ok = SftRecord { prompt: "q".into(), completion: "<answer> 1 </answer>".into(), answer: None };
    let err = encode(&[ok, long], &tok, PromptTemplate::R1, 0, 384).unwrap_err().to_string();
    assert!(err.contains("record 2") && err.contains("384 positions"), "{err}");
}
