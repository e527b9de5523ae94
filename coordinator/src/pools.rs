//! Run-agnostic worker pools: which run a pooled worker serves, and learner fleets' claims.
//!
//! A pool deployed once (the Helm chart's Deployments and StatefulSet) serves the runs
//! submitted later. Actors and reward workers started without a run ask
//! [`Coordinator::next_run`] which run to serve: the oldest running run that needs their role
//! (a GRPO run needs both; an SFT run neither), and ask again when that run ends or is
//! cancelled.
//!
//! A learner fleet holds one run's model at a time, so its rank 0 claims a run
//! ([`Coordinator::claim_run`]): its own live claim if it has one (a restarted pod keeps its
//! name), else the oldest running run that no other fleet holds a live claim on. A claim is
//! a row of `run_claims` with a deadline; the fleet renews it by claiming the same run again
//! while it trains, and releases it when the run ends. A claim past its deadline (a fleet
//! that died) may be taken by another fleet, which resumes the run from its checkpoints.
//! Claims live in SQLite like every other state, so a coordinator restart forgets none, and
//! two fleets never train one run. Learners pinned with `--run N` make no claim (for tests
//! and debugging, where the operator is the scheduler).

use rusqlite::{OptionalExtension, params};

use crate::runs::{Coordinator, RunsError};
use crate::spec::Algorithm;
use crate::store::{Millis, RunId, RunState};
use crate::workers::Role;

/// How long a claim lasts without a renewal, by default ([`Coordinator::with_claim_ms`]).
pub const DEFAULT_CLAIM_MS: Millis = 60_000;

/// A learner fleet's claim on a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Claim {
    pub run: RunId,
    /// The fleet's name (its rank 0's worker name).
    pub holder: String,
    pub deadline_ms: Millis,
}

/// Whether a run of `algorithm` has work for `role`.
pub fn needs(algorithm: &Algorithm, role: Role) -> bool {
    match (algorithm, role) {
        (_, Role::Learner) => true,
        (Algorithm::Grpo(_), Role::Actor | Role::Reward) => true,
        (Algorithm::Sft(_), Role::Actor | Role::Reward) => false,
    }
}

impl Coordinator {
    /// The oldest running run that needs `role`, if any.
    pub fn next_run(&self, role: Role) -> Result<Option<RunId>, RunsError> {
        let runs = self.with_store_locked(|s| s.runs())?;
        Ok(runs
            .into_iter()
            .filter(|r| r.state == RunState::Running && needs(&r.spec.algorithm, role))
            .map(|r| r.id)
            .min())
    }

    /// Claims a run for the learner fleet `holder`: run `want`, or with `None` its own live
    /// claim or the oldest unclaimed running run. `Ok(None)`: nothing to claim (or `want` is
    /// no longer running); [`RunsError::ClaimHeld`] when another fleet holds `want`.
    pub fn claim_run(&self, holder: &str, want: Option<RunId>) -> Result<Option<Claim>, RunsError> {
        let now = self.now();
        let deadline_ms = now + self.claim_ms();
        let running: Vec<RunId> = {
            let mut ids: Vec<RunId> = self
                .with_store_locked(|s| s.runs())?
                .into_iter()
                .filter(|r| r.state == RunState::Running)
                .map(|r| r.id)
                .collect();
            ids.sort_unstable();
            ids
        };
        self.with_store_locked(|store| {
            let tx = store.conn.transaction().map_err(crate::store::StoreError::from)?;
            // Claims of runs that ended are dropped: they hold nothing.
            let live: Vec<(RunId, String, Millis)> = {
                let mut stmt = tx
                    .prepare("SELECT run_id, holder, deadline_ms FROM run_claims")
                    .map_err(crate::store::StoreError::from)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(crate::store::StoreError::from)?;
                rows.collect::<Result<_, _>>().map_err(crate::store::StoreError::from)?
            };
            for (run, _, _) in &live {
                if !running.contains(run) {
                    tx.execute("DELETE FROM run_claims WHERE run_id = ?1", [*run])
                        .map_err(crate::store::StoreError::from)?;
                }
            }
            let held_by_other =
                |run: RunId| live.iter().find(|(r, h, d)| *r == run && h != holder && *d >= now).cloned();
            let pick = match want {
                Some(run) if !running.contains(&run) => None,
                Some(run) => {
                    if let Some((_, other, until)) = held_by_other(run) {
                        return Err(RunsError::ClaimHeld { run, holder: other, deadline_ms: until });
                    }
                    Some(run)
                }
                None => {
                    let own = live
                        .iter()
                        .filter(|(r, h, d)| h == holder && *d >= now && running.contains(r))
                        .map(|(r, _, _)| *r)
                        .min();
                    own.or_else(|| running.iter().copied().find(|r| held_by_other(*r).is_none()))
                }
            };
            let Some(run) = pick else {
                tx.commit().map_err(crate::store::StoreError::from)?;
                return Ok(None);
            };
            tx.execute(
                "INSERT INTO run_claims (run_id, holder, deadline_ms, claimed_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(run_id) DO UPDATE SET
                   claimed_ms = CASE WHEN holder = excluded.holder THEN claimed_ms ELSE excluded.claimed_ms END,
                   holder = excluded.holder, deadline_ms = excluded.deadline_ms",
                params![run, holder, deadline_ms, now],
            )
            .map_err(crate::store::StoreError::from)?;
            tx.commit().map_err(crate::store::StoreError::from)?;
            Ok(Some(Claim { run, holder: holder.to_string(), deadline_ms }))
        })
    }

    /// Gives up `holder`'s claim on `run`; false when it held none.
    pub fn release_claim(&self, holder: &str, run: RunId) -> Result<bool, RunsError> {
        self.with_store_locked(|store| {
            let n = store
                .conn
                .execute("DELETE FROM run_claims WHERE run_id = ?1 AND holder = ?2", params![run, holder])
                .map_err(crate::store::StoreError::from)?;
            Ok(n > 0)
        })
    }

    /// Every claim on a running run, live or past its deadline, by run.
    pub fn claims(&self) -> Result<Vec<Claim>, RunsError> {
        self.with_store_locked(|store| {
            let mut stmt = store
                .conn
                .prepare(
                    "SELECT c.run_id, c.holder, c.deadline_ms FROM run_claims c JOIN runs r ON r.id = c.run_id
                     WHERE r.state = 'running' ORDER BY c.run_id",
                )
                .map_err(crate::store::StoreError::from)?;
            let rows = stmt
                .query_map([], |r| Ok(Claim { run: r.get(0)?, holder: r.get(1)?, deadline_ms: r.get(2)? }))
                .map_err(crate::store::StoreError::from)?;
            Ok(rows.collect::<Result<_, _>>().map_err(crate::store::StoreError::from)?)
        })
    }

    /// The holder of `run`'s claim, if one is live at `now`.
    pub fn claim_of(&self, run: RunId) -> Result<Option<Claim>, RunsError> {
        let now = self.now();
        self.with_store_locked(|store| {
            Ok(store
                .conn
                .query_row("SELECT holder, deadline_ms FROM run_claims WHERE run_id = ?1", [run], |r| {
                    Ok(Claim { run, holder: r.get(0)?, deadline_ms: r.get(1)? })
                })
                .optional()
                .map_err(crate::store::StoreError::from)?
                .filter(|c| c.deadline_ms >= now))
        })
    }
}
