//! Golden tests: r1-learner against PyTorch (`learner/reference/grpo_reference.py`).

mod common;

use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};
use common::*;
use r1_learner::grpo::{GrpoBatch, GrpoConfig, group_advantages, grpo_loss};
use r1_learner::optim::{Optim, OptimConfig};
use r1_learner::sft::sft_loss;
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

#[test]
fn grpo_loss_and_grad_match_pytorch() {
    let g = golden("grpo_golden.json");
    let inp = &g["inputs"];
    let rewards: Vec<f64> = flat(&inp["rewards"]).1;
    let group_size = inp["group_size"].as_u64().unwrap() as usize;
    let mut c = Checker::default();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 50, "the golden file lost cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let cfg: GrpoConfig = serde_json::from_value(case["config"].clone()).unwrap();

        let adv = group_advantages(&rewards, group_size, &cfg).unwrap();
        c.check(
            &format!("{name}: advantages"),
            &adv.advantages.iter().map(|&a| a as f64).collect::<Vec<_>>(),
            &flat(&case["advantages"]).1,
            1e-6,
        );
        let degenerate: Vec<f64> = adv.degenerate_groups.iter().map(|&i| i as f64).collect();
        c.check(&format!("{name}: degenerate groups"), &degenerate, &flat(&case["degenerate_groups"]).1, 0.0);

        let logp = tensor::<B, 2>(&inp["logp"]).require_grad();
        let batch = GrpoBatch {
            logp: logp.clone(),
            old_logp: (!case["on_policy"].as_bool().unwrap()).then(|| tensor(&inp["old_logp"])),
            ref_logp: Some(tensor(&inp["ref_logp"])),
            behaviour_logp: Some(tensor(&inp["behaviour_logp"])),
            advantages: Tensor::from_floats(adv.advantages.as_slice(), &device()),
            mask: tensor(&inp["mask"]),
        };
        let out = grpo_loss(batch, &cfg, None).unwrap();
        let grads = out.loss.clone().backward();
        let grad = logp.grad(&grads).expect("logp has a gradient");
        c.check(&format!("{name}: loss"), &values(out.loss), &[f(&case["loss"])], 1e-5);
        c.check(&format!("{name}: d loss / d logp"), &values(grad), &flat(&case["grad_logp"]).1, 1e-5);

        let s = &case["stats"];
        let st = out.stats;
        let kl = st.kl_ref_mean.expect("reference given");
        for (what, got, want) in [
            ("clip_frac", st.clip_frac, f(&s["clip_frac"])),
            ("clip_frac_low", st.clip_frac_low, f(&s["clip_frac_low"])),
            ("clip_frac_high", st.clip_frac_high, f(&s["clip_frac_high"])),
            ("tis_weight_mean", st.tis_weight_mean, f(&s["tis_weight_mean"])),
            ("kl_ref_mean", kl, f(&s["kl_ref_mean"])),
            ("approx_kl_old", st.approx_kl_old, f(&s["approx_kl_old"])),
            ("ratio_mean", st.ratio_mean, f(&s["ratio_mean"])),
            ("ratio_max", st.ratio_max, f(&s["ratio_max"])),
            ("tis_capped_frac", st.tis_capped_frac, f(&s["tis_capped_frac"])),
            ("tokens", st.tokens, f(&s["tokens"])),
        ] {
            c.check(&format!("{name}: stats.{what}"), &[got], &[want], 1e-5);
        }
    }
    eprintln!("{} GRPO golden checks passed", c.finish());
}

#[test]
fn sft_loss_and_grad_match_pytorch() {
    let g = golden("sft_golden.json");
    let logits = tensor::<B, 3>(&g["logits"]).require_grad();
    let (shape, t) = flat(&g["targets"]);
    let targets = Tensor::<B, 2, Int>::from_data(
        burn::tensor::TensorData::new(t.iter().map(|&x| x as i64).collect::<Vec<_>>(), [shape[0], shape[1]]),
        &device(),
    );
    let loss = sft_loss(logits.clone(), targets, tensor(&g["mask"]), None).unwrap();
    let grads = loss.clone().backward();
    let mut c = Checker::default();
    c.check("sft loss", &values(loss), &[f(&g["loss"])], 1e-5);
    c.check("sft d loss / d logits", &values(logits.grad(&grads).unwrap()), &flat(&g["grad_logits"]).1, 1e-5);
    c.finish();
}

#[test]
fn adamw_schedule_and_clipping_match_pytorch() {
    let g = golden("optim_golden.json");
    let (x, y) = (tensor::<B, 2>(&g["x"]), tensor::<B, 2>(&g["y"]));
    let mut c = Checker::default();
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let cfg: OptimConfig = serde_json::from_value(case["optim"].clone()).unwrap();
        let mut optim = Optim::<B, Toy<B>>::new(cfg).unwrap();
        let mut model = Toy::new(tensor(&g["w0"]), tensor(&g["b0"]));
        for (k, want) in case["steps"].as_array().unwrap().iter().enumerate() {
            let grads = GradientsParams::from_grads::<B, Toy<B>>(model.loss(x.clone(), y.clone()).backward(), &model);
            let (next, stats) = optim.step(model, grads);
            model = next;
            c.check(&format!("{name} step {k}: lr"), &[stats.lr], &[f(&want["lr"])], 1e-12);
            c.check(&format!("{name} step {k}: grad norm"), &[stats.grad_norm], &[f(&want["grad_norm"])], 1e-5);
            c.check(&format!("{name} step {k}: w"), &values(model.w.val()), &flat(&want["w"]).1, 1e-6);
            c.check(&format!("{name} step {k}: b"), &values(model.b.val()), &flat(&want["b"]).1, 1e-6);
        }
    }
    c.finish();
}
