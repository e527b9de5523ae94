//! The fleet as the coordinator sees it: every actor, reward worker and learner that called
//! in, with the run and lease it holds, when it last called, the policy version its latest
//! lease asked for, and its throughput over the last minute.
//!
//! Workers are pulled, not registered: the registry is fed by the calls they make anyway
//! (`Lease*`, `Submit*`, `Renew`), keyed by role and the worker name they send. A worker that
//! made no call for `gone_after_ms` (the coordinator config's `worker_gone_after_ms`; a worker
//! holding a lease renews it every third of its time to live, at most every 60 s) is shown as
//! gone. Both the dashboard's `GET /api/workers` and any later command read it through
//! [`Registry::list`].
//!
//! Limits: the registry lives in memory, so a restarted coordinator knows a worker again at
//! its next call; it holds at most [`MAX_WORKERS`] workers, forgetting the longest silent
//! first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::store::{Millis, RunId, Store};

/// Workers the registry remembers at most.
pub const MAX_WORKERS: usize = 4096;

/// The window throughput is measured over.
pub const THROUGHPUT_WINDOW_MS: Millis = 60_000;

/// What a worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Generates completions (`LeasePrompts`, `SubmitSamples`); throughput in tokens/s.
    Actor,
    /// Scores completions (`LeaseScoring`, `SubmitScores`); throughput in samples/s.
    Reward,
    /// Trains batches (`LeaseBatch`, `SubmitStep`); throughput in trained tokens/s.
    Learner,
}

impl Role {
    /// What this role's throughput counts.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Actor => "tokens/s",
            Role::Reward => "samples/s",
            Role::Learner => "tokens/s",
        }
    }

    /// The role holding a lease of `stage` (`generate`, `score`, `train`).
    pub fn of_stage(stage: &str) -> Option<Role> {
        match stage {
            "generate" => Some(Role::Actor),
            "score" => Some(Role::Reward),
            "train" => Some(Role::Learner),
            _ => None,
        }
    }
}

/// One worker as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub role: Role,
    /// The run of its latest call; 0 for a pool waiting for a run to serve.
    pub run: RunId,
    /// The lease its latest lease call got (none when it got no work).
    pub lease: Option<i64>,
    /// That lease's deadline, moved by each renewal.
    pub lease_deadline_ms: Option<Millis>,
    pub first_seen_ms: Millis,
    /// Its latest call of any kind: the heartbeat.
    pub last_seen_ms: Millis,
    /// The policy version its latest lease asked for (actors sample with it, learners train
    /// on top of it); none for reward workers.
    pub policy_version: Option<u64>,
    /// Work finished over the last [`THROUGHPUT_WINDOW_MS`], per second, in [`Role::unit`].
    pub throughput: f64,
    pub unit: &'static str,
    /// Work finished since it was first seen, in the unit's numerator (tokens or samples).
    pub done: u64,
    /// No call for longer than the registry's `gone_after_ms`.
    pub gone: bool,
}

#[derive(Debug)]
struct Entry {
    run: RunId,
    lease: Option<i64>,
    lease_deadline_ms: Option<Millis>,
    first_seen_ms: Millis,
    last_seen_ms: Millis,
    policy_version: Option<u64>,
    done: u64,
    /// (when, units) of recent finished work, oldest first.
    recent: VecDeque<(Millis, u64)>,
}

/// The workers that called in, keyed by role and name.
#[derive(Debug)]
pub struct Registry {
    gone_after_ms: Millis,
    workers: Mutex<HashMap<(Role, String), Entry>>,
}

impl Registry {
    /// A registry that shows a worker as gone after `gone_after_ms` without a call.
    pub fn new(gone_after_ms: Millis) -> Registry {
        Registry { gone_after_ms, workers: Mutex::new(HashMap::new()) }
    }

    pub fn gone_after_ms(&self) -> Millis {
        self.gone_after_ms
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<(Role, String), Entry>) -> R) -> R {
        f(&mut self.workers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The entry of `(role, name)`, created (and the oldest forgotten past [`MAX_WORKERS`])
    /// if needed, with its heartbeat and run set.
    fn touch<'a>(
        map: &'a mut HashMap<(Role, String), Entry>,
        role: Role,
        name: &str,
        run: RunId,
        now: Millis,
    ) -> &'a mut Entry {
        let key = (role, name.to_string());
        if !map.contains_key(&key) && map.len() >= MAX_WORKERS {
            let oldest = map.iter().min_by_key(|(_, e)| e.last_seen_ms).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let e = map.entry(key).or_insert_with(|| Entry {
            run,
            lease: None,
            lease_deadline_ms: None,
            first_seen_ms: now,
            last_seen_ms: now,
            policy_version: None,
            done: 0,
            recent: VecDeque::new(),
        });
        e.run = run;
        e.last_seen_ms = e.last_seen_ms.max(now);
        e
    }

    /// A lease call: the lease it got, as (id, deadline) (none: no work now) and, for
    /// actors and learners, the policy version it asks for.
    pub fn leased(
        &self,
        role: Role,
        name: &str,
        run: RunId,
        lease: Option<(i64, Millis)>,
        policy_version: Option<u64>,
        now: Millis,
    ) {
        self.with(|map| {
            let e = Registry::touch(map, role, name, run, now);
            e.lease = lease.map(|(id, _)| id);
            e.lease_deadline_ms = lease.map(|(_, deadline)| deadline);
            if policy_version.is_some() {
                e.policy_version = policy_version;
            }
        })
    }

    /// Any other call of a worker (a pool asking which run to serve, a learner fleet's run
    /// claim): the heartbeat, and the run it serves now (0: none), its lease left as it was.
    pub fn seen(&self, role: Role, name: &str, run: RunId, now: Millis) {
        self.with(|map| {
            Registry::touch(map, role, name, run, now);
        })
    }

    /// A renewal of `lease` by its holder: the heartbeat, and the new deadline while held.
    pub fn renewed(&self, role: Role, name: &str, run: RunId, lease: i64, deadline_ms: Option<Millis>, now: Millis) {
        self.with(|map| {
            let e = Registry::touch(map, role, name, run, now);
            if e.lease == Some(lease) || e.lease.is_none() {
                e.lease = deadline_ms.map(|_| lease);
                e.lease_deadline_ms = deadline_ms;
            }
        })
    }

    /// A submission of finished work: `units` of the role's unit (tokens or samples).
    pub fn finished(&self, role: Role, name: &str, run: RunId, units: u64, now: Millis) {
        self.with(|map| {
            let e = Registry::touch(map, role, name, run, now);
            e.done += units;
            e.recent.push_back((now, units));
            while e.recent.front().is_some_and(|(t, _)| *t <= now - THROUGHPUT_WINDOW_MS) {
                e.recent.pop_front();
            }
        })
    }

    /// Every worker at `now`, by role, then live before gone, then name.
    pub fn list(&self, now: Millis) -> Vec<WorkerStatus> {
        let mut all: Vec<WorkerStatus> = self.with(|map| {
            map.iter()
                .map(|((role, name), e)| {
                    let recent: u64 =
                        e.recent.iter().filter(|(t, _)| *t > now - THROUGHPUT_WINDOW_MS).map(|(_, n)| n).sum();
                    // A worker seen for less than the window is measured over its time so far.
                    let span = (now - e.first_seen_ms).clamp(1_000, THROUGHPUT_WINDOW_MS);
                    WorkerStatus {
                        name: name.clone(),
                        role: *role,
                        run: e.run,
                        lease: e.lease,
                        lease_deadline_ms: e.lease_deadline_ms,
                        first_seen_ms: e.first_seen_ms,
                        last_seen_ms: e.last_seen_ms,
                        policy_version: e.policy_version,
                        throughput: recent as f64 * 1000.0 / span as f64,
                        unit: role.unit(),
                        done: e.done,
                        gone: now - e.last_seen_ms > self.gone_after_ms,
                    }
                })
                .collect()
        });
        all.sort_by(|a, b| (a.role, a.gone, &a.name).cmp(&(b.role, b.gone, &b.name)));
        all
    }
}

/// What a submission names, to find the worker that holds it.
#[derive(Debug, Clone, Copy)]
pub enum Held {
    /// A group, by the lease it is under now (before the submission releases it).
    Group(i64),
    /// A lease by id.
    Lease(i64),
}

/// The role and name of the worker holding `what` in run `run`, if any. Submissions carry no
/// worker name, so the registry credits their work to the lease's holder.
pub fn holder(store: &Store, run: RunId, what: Held) -> Option<(Role, String)> {
    let (sql, id) = match what {
        Held::Group(g) => (
            "SELECT l.role, l.holder FROM groups g JOIN leases l ON l.id = g.lease_id
             WHERE g.id = ?1 AND g.run_id = ?2",
            g,
        ),
        Held::Lease(l) => ("SELECT role, holder FROM leases WHERE id = ?1 AND run_id = ?2", l),
    };
    let (stage, name): (String, String) =
        store.conn.query_row(sql, rusqlite::params![id, run], |r| Ok((r.get(0)?, r.get(1)?))).ok()?;
    Some((Role::of_stage(&stage)?, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_gone_just_past_its_silence_limit() {
        let r = Registry::new(1_000);
        r.leased(Role::Actor, "a", 1, Some((7, 5_000)), Some(3), 0);
        let gone = |now| r.list(now)[0].gone;
        assert!(!gone(1_000), "at the limit it is still live");
        assert!(gone(1_001), "just past it it is gone");
        r.renewed(Role::Actor, "a", 1, 7, Some(9_000), 1_500);
        assert!(!gone(2_000), "a renewal is a heartbeat");
        let w = &r.list(2_000)[0];
        assert_eq!((w.lease, w.lease_deadline_ms, w.policy_version), (Some(7), Some(9_000), Some(3)));
    }

    #[test]
    fn throughput_counts_the_last_minute_only() {
        let r = Registry::new(1_000_000);
        r.finished(Role::Actor, "a", 1, 600, 0);
        r.finished(Role::Actor, "a", 1, 1_200, 30_000);
        let at = |now| r.list(now)[0].throughput;
        // Over its first 30 s: 1800 tokens / 30 s.
        assert!((at(30_000) - 60.0).abs() < 1e-9, "{}", at(30_000));
        // At 60 s the first batch left the window: 1200 tokens / 60 s.
        assert!((at(60_000) - 20.0).abs() < 1e-9, "{}", at(60_000));
        assert_eq!(r.list(60_000)[0].done, 1_800);
    }

    #[test]
    fn a_lease_call_without_work_clears_the_lease_and_roles_are_apart() {
        let r = Registry::new(1_000);
        r.leased(Role::Learner, "x", 1, Some((4, 9)), Some(2), 0);
        r.leased(Role::Reward, "x", 1, None, None, 0);
        r.leased(Role::Learner, "x", 1, None, None, 10);
        let all = r.list(10);
        assert_eq!(all.len(), 2, "one name in two roles is two workers");
        assert_eq!((all[0].role, all[0].lease, all[0].policy_version), (Role::Reward, None, None));
        assert_eq!((all[1].role, all[1].lease, all[1].policy_version), (Role::Learner, None, Some(2)));
    }

    #[test]
    fn the_longest_silent_worker_is_forgotten_at_the_limit() {
        let r = Registry::new(1_000);
        for i in 0..MAX_WORKERS {
            r.leased(Role::Actor, &format!("w{i}"), 1, None, None, i as Millis + 1);
        }
        assert_eq!(r.list(0).len(), MAX_WORKERS);
        r.leased(Role::Actor, "new", 1, None, None, 1_000_000);
        let names: Vec<String> = r.list(0).into_iter().map(|w| w.name).collect();
        assert_eq!(names.len(), MAX_WORKERS);
        assert!(names.contains(&"new".to_string()) && !names.contains(&"w0".to_string()));
    }
}
