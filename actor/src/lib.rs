//! r1-actor: the generation service.
//!
//! Actors lease prompt groups from the coordinator, sample G completions per prompt with the
//! `r1-model` sampler and return tokens, log-probabilities and the policy version that made
//! them; they swap in new weights between generation batches, never inside one.
//!
//! Not built yet: this crate is a placeholder for the training-system issue. Everything an
//! actor computes already lives in `r1_model::sample`, which `r1ctl generate` drives today.
