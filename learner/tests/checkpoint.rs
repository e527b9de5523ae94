//! Checkpoints: atomic folders, `latest`, exact optimizer round trip, bit-identical resume.

mod common;

use std::path::Path;

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use common::*;
use r1_learner::checkpoint::{self, CheckpointError, TrainerState};
use r1_learner::optim::{Optim, OptimConfig, path_id};
use r1_learner::schedule::{Decay, ScheduleConfig};

/// xorshift64*: the "trainer RNG" whose state the checkpoint must carry.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn tensor(&mut self, shape: [usize; 2]) -> Tensor<B, 2> {
        let v: Vec<f32> = (0..shape[0] * shape[1]).map(|_| self.next()).collect();
        Tensor::from_data(TensorData::new(v, shape), &device())
    }
}

fn config() -> OptimConfig {
    OptimConfig {
        lr: 0.05,
        weight_decay: 0.1,
        max_grad_norm: Some(0.8),
        schedule: ScheduleConfig { warmup_steps: 2, decay: Decay::Cosine, total_steps: 8, min_lr_ratio: 0.1 },
        ..OptimConfig::default()
    }
}

fn fresh_model() -> Toy<B> {
    let mut rng = Rng(7);
    Toy::new(rng.tensor([4, 3]), rng.tensor([1, 3]).reshape([3]))
}

/// One training step on a batch drawn from `rng`.
fn train(model: Toy<B>, optim: &mut Optim<B, Toy<B>>, rng: &mut Rng, steps: usize) -> Toy<B> {
    (0..steps).fold(model, |model, _| {
        let (x, y) = (rng.tensor([8, 4]), rng.tensor([8, 3]));
        let grads = GradientsParams::from_grads::<B, Toy<B>>(model.loss(x, y).backward(), &model);
        optim.step(model, grads).0
    })
}

fn bits(model: &Toy<B>) -> Vec<u32> {
    let mut v = values(model.w.val());
    v.extend(values(model.b.val()));
    v.into_iter().map(|x| (x as f32).to_bits()).collect()
}

/// Stand-in for the model crate's safetensors writer: raw little-endian f32.
fn write_weights(model: &Toy<B>, dir: &Path) -> std::io::Result<()> {
    let bytes: Vec<u8> = bits(model).iter().flat_map(|b| b.to_le_bytes()).collect();
    std::fs::write(dir.join("weights.bin"), bytes)
}

/// Reads them back into a module with *fresh* parameter ids, as a safetensors load would.
fn read_weights(dir: &Path) -> Toy<B> {
    let bytes = std::fs::read(dir.join("weights.bin")).unwrap();
    let f: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let w = Tensor::from_data(TensorData::new(f[..12].to_vec(), [4, 3]), &device());
    let b = Tensor::from_data(TensorData::new(f[12..].to_vec(), [3]), &device());
    Toy::new(w, b)
}

#[test]
fn resumed_run_is_bit_identical_to_a_straight_run() {
    const N: usize = 7;
    for k in [1, 3, 6] {
        let mut rng = Rng(42);
        let mut optim = Optim::new(config()).unwrap();
        let straight = train(fresh_model(), &mut optim, &mut rng, N);

        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(42);
        let mut optim = Optim::new(config()).unwrap();
        let model = train(fresh_model(), &mut optim, &mut rng, k);
        let state = TrainerState { step: k as u64, rng: vec![rng.0], data_cursor: 8 * k as u64, ..Default::default() };
        let path =
            checkpoint::save(dir.path(), k as u64, |d| write_weights(&model, d), &optim, &model, &state, &config())
                .unwrap();
        assert_eq!(path, dir.path().join(format!("step-{k}")));
        drop((model, optim, rng));

        let ckpt = checkpoint::latest(dir.path()).unwrap().expect("a checkpoint");
        let state = ckpt.trainer_state().unwrap();
        assert_eq!((state.step, state.data_cursor), (k as u64, 8 * k as u64));
        assert_eq!(ckpt.config::<OptimConfig>().unwrap(), config());
        let model = read_weights(&ckpt.path);
        let mut optim = Optim::new(config()).unwrap();
        ckpt.load_optimizer(&mut optim, &model, &device()).unwrap();
        assert_eq!(optim.steps(), k as u64);
        let resumed = train(model, &mut optim, &mut Rng(state.rng[0]), N - k);

        assert_eq!(bits(&resumed), bits(&straight), "resume after {k} of {N} steps diverged");
    }
}

#[test]
fn optimizer_state_round_trips_bitwise() {
    let mut optim = Optim::new(config()).unwrap();
    let model = train(fresh_model(), &mut optim, &mut Rng(3), 4);
    let dir = tempfile::tempdir().unwrap();
    let state = TrainerState::default();
    checkpoint::save(dir.path(), 4, |d| write_weights(&model, d), &optim, &model, &state, &()).unwrap();

    let loaded_model = read_weights(&dir.path().join("step-4"));
    let mut loaded = Optim::new(config()).unwrap();
    checkpoint::latest(dir.path()).unwrap().unwrap().load_optimizer(&mut loaded, &loaded_model, &device()).unwrap();

    let (mut a, mut b) = (optim.state(&model).adam, loaded.state(&loaded_model).adam);
    assert_eq!(a.len(), 2);
    let moments = |s: burn::optim::AdamWState<Inner, 2>| {
        let m = s.momentum;
        (
            m.time,
            values(m.moment_1).iter().chain(&values(m.moment_2)).map(|x| (*x as f32).to_bits()).collect::<Vec<_>>(),
        )
    };
    let (wa, wb) = (a.remove(&path_id("w")).unwrap(), b.remove(&path_id("w")).unwrap());
    assert_eq!(moments(wa.into_state::<2>()), moments(wb.into_state::<2>()));
    let (ba, bb) =
        (a.remove(&path_id("b")).unwrap().into_state::<1>(), b.remove(&path_id("b")).unwrap().into_state::<1>());
    assert_eq!(ba.momentum.time, 4);
    assert_eq!(values(ba.momentum.moment_2), values(bb.momentum.moment_2));
}

#[test]
fn interrupted_saves_are_ignored_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let model = fresh_model();
    let optim = Optim::<B, Toy<B>>::new(config()).unwrap();
    let state = TrainerState::default();
    assert_eq!(checkpoint::latest(dir.path()).unwrap(), None);
    assert_eq!(checkpoint::latest(&dir.path().join("missing")).unwrap(), None);

    checkpoint::save(dir.path(), 3, |d| write_weights(&model, d), &optim, &model, &state, &()).unwrap();
    // A crash in the middle of saving step 9 leaves only its temporary folder.
    let err = checkpoint::save(dir.path(), 9, |_| Err(std::io::Error::other("disk full")), &optim, &model, &state, &())
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Weights { .. }), "{err}");
    assert!(dir.path().join(".tmp-step-9").is_dir());
    std::fs::create_dir(dir.path().join("step-x")).unwrap();
    std::fs::write(dir.path().join("step-12"), b"a file, not a checkpoint").unwrap();
    let latest = checkpoint::latest(dir.path()).unwrap().unwrap();
    assert_eq!(latest.step, 3);

    // The next save of step 9 replaces the leftover and becomes the latest.
    checkpoint::save(dir.path(), 9, |d| write_weights(&model, d), &optim, &model, &state, &()).unwrap();
    assert!(!dir.path().join(".tmp-step-9").exists());
    assert_eq!(checkpoint::latest(dir.path()).unwrap().unwrap().step, 9);

    // A finished checkpoint is never overwritten.
    let err = checkpoint::save(dir.path(), 9, |d| write_weights(&model, d), &optim, &model, &state, &()).unwrap_err();
    assert!(matches!(err, CheckpointError::Exists(_)), "{err}");
}

#[test]
fn optimizer_state_for_another_model_is_rejected() {
    let mut optim = Optim::new(config()).unwrap();
    let model = train(fresh_model(), &mut optim, &mut Rng(5), 1);
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(dir.path(), 1, |d| write_weights(&model, d), &optim, &model, &TrainerState::default(), &())
        .unwrap();

    // Same shapes, different parameter names: the moments must not be applied silently.
    #[derive(burn::module::Module, Debug)]
    struct Renamed<B: burn::tensor::backend::Backend> {
        inner: Toy<B>,
    }
    let other = Renamed { inner: fresh_model() };
    let mut other_optim = Optim::<B, Renamed<B>>::new(config()).unwrap();
    let ckpt = checkpoint::latest(dir.path()).unwrap().unwrap();
    let err = ckpt.load_optimizer(&mut other_optim, &other, &device()).unwrap_err();
    assert!(err.to_string().contains("match no parameter"), "{err}");
}

#[test]
fn damaged_trainer_state_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = fresh_model();
    let optim = Optim::<B, Toy<B>>::new(config()).unwrap();
    let state = TrainerState { step: 2, rng: vec![1, 2], data_cursor: 5, counters: [("samples".into(), 64)].into() };
    checkpoint::save(dir.path(), 2, |d| write_weights(&model, d), &optim, &model, &state, &()).unwrap();
    let ckpt = checkpoint::latest(dir.path()).unwrap().unwrap();
    assert_eq!(ckpt.trainer_state().unwrap(), state);
    std::fs::write(ckpt.path.join("trainer_state.json"), b"{\"step\": 2, \"extra\": 1}").unwrap();
    let err = ckpt.trainer_state().unwrap_err();
    assert!(err.to_string().contains("trainer_state.json"), "{err}");
}

/// Every checkpoint carries the SHA-256 of its files; `verify` names the first one that is
/// missing, truncated or altered, so a resume never loads a damaged file.
#[test]
fn verify_finds_every_kind_of_damage() {
    use checkpoint::{Checkpoint, Verified};
    let model = fresh_model();
    let optim = Optim::<B, Toy<B>>::new(config()).unwrap();
    type Damage = fn(&Path);
    // (what is done to the saved folder, Ok(verdict) or Err(text the error must contain))
    let cases: &[(&str, Damage, Result<Verified, &str>)] = &[
        ("untouched", |_| {}, Ok(Verified::Intact)),
        (
            "truncated state",
            |d| {
                let f = std::fs::OpenOptions::new().write(true).open(d.join("trainer_state.json")).unwrap();
                f.set_len(5).unwrap();
            },
            Err("trainer_state.json has SHA-256"),
        ),
        (
            "one byte changed",
            |d| {
                let p = d.join("optimizer.json");
                let mut b = std::fs::read(&p).unwrap();
                b[0] ^= 1;
                std::fs::write(&p, b).unwrap();
            },
            Err("optimizer.json has SHA-256"),
        ),
        (
            "file removed",
            |d| std::fs::remove_file(d.join("run_config.json")).unwrap(),
            Err("run_config.json is missing"),
        ),
        (
            "checksums garbled",
            |d| std::fs::write(d.join("checksums.json"), "{").unwrap(),
            Err("checksums.json does not parse"),
        ),
        (
            "written before checksums",
            |d| std::fs::remove_file(d.join("checksums.json")).unwrap(),
            Ok(Verified::NoChecksums),
        ),
    ];
    for (what, damage, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = checkpoint::save(
            dir.path(),
            2,
            |d| write_weights(&model, d),
            &optim,
            &model,
            &TrainerState::default(),
            &(),
        )
        .unwrap();
        damage(&path);
        let got = Checkpoint { step: 2, path: path.clone() }.verify();
        match (got, want) {
            (Ok(v), Ok(w)) => assert_eq!(v, *w, "{what}"),
            (Err(e), Err(text)) => {
                let e = e.to_string();
                assert!(
                    e.contains(text) && e.contains(&path.display().to_string()) && e.contains("older checkpoint"),
                    "{what}: {e}"
                );
            }
            (got, want) => panic!("{what}: expected {want:?}, got {got:?}"),
        }
    }
}
