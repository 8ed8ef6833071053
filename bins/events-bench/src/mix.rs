//! The default event mix of issue 8 and the final state it must produce.
//!
//! The generator is deterministic (seeded) and streaming, so the emitting process and the
//! verifying process compute the same sequence independently without holding a million
//! envelopes in memory. The expectation is computed from the generated plan alone — never by
//! asking the daemon — so a projection bug cannot hide behind its own bookkeeping.
//!
//! Shares of the mix (of all events, drawn per event):
//!
//! | share | kind | event type | effect |
//! |---|---|---|---|
//! | 35 % | create | `domain.software-development.planning.todo_created` (new slug) | a notification |
//! | 5 % | duplicate | the same type with an already used slug, a new event id | dropped by dedup |
//! | 30 % | update | `...planning.dependency_resolved` on an open slug | payload `dependency` replaced |
//! | 10 % | resolve | `...build.completed` on an open slug | agent status `resolved` |
//! | 20 % | pass-through | `bench.tick.passed` (not in the catalog) | event log only |
//!
//! i.e. 40 % creates of which one in eight is a duplicate. An update or resolve drawn before
//! any slug is open becomes a create; the actual counts are reported with every run. Each
//! shard ends with one `bench.run.finished` sentinel: when the daemon has logged it, every
//! event of that shard before it is committed (one consumer, in order).

use std::collections::HashMap;

use events_envelope::EventEnvelope;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

/// `source` of every generated event; verification filters on it.
pub(crate) const SOURCE: &str = "bench";
pub(crate) const TODO_CREATED: &str = "domain.software-development.planning.todo_created";
pub(crate) const DEPENDENCY_RESOLVED: &str =
    "domain.software-development.planning.dependency_resolved";
pub(crate) const BUILD_COMPLETED: &str = "domain.software-development.build.completed";
pub(crate) const PASS_THROUGH: &str = "bench.tick.passed";
pub(crate) const SENTINEL: &str = "bench.run.finished";

/// What one generated event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Create,
    Duplicate,
    Update,
    Resolve,
    PassThrough,
    Sentinel,
}

/// One planned event: its kind, the slug it is about and its position in the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) kind: Kind,
    pub(crate) shard: u32,
    /// Slug number within the shard (unused for pass-through and sentinel).
    pub(crate) slug: u64,
    /// Position within the shard, 0-based.
    pub(crate) seq: u64,
}

pub(crate) fn slug_name(shard: u32, slug: u64) -> String {
    format!("s{shard}-{slug}")
}

impl Planned {
    /// The envelope a producer would emit for this plan item (fresh id, timestamp now).
    pub(crate) fn envelope(&self) -> EventEnvelope {
        let slug = slug_name(self.shard, self.slug);
        match self.kind {
            Kind::Create | Kind::Duplicate => EventEnvelope::new(TODO_CREATED, SOURCE)
                .with_description(format!("todo {slug} created"))
                .with_field("slug", slug)
                .with_field("title", "benchmark todo"),
            Kind::Update => EventEnvelope::new(DEPENDENCY_RESOLVED, SOURCE)
                .with_description(format!("dependency of {slug} resolved"))
                .with_field("slug", slug)
                .with_field("dependency", dependency_value(self.seq)),
            Kind::Resolve => EventEnvelope::new(BUILD_COMPLETED, SOURCE)
                .with_description(format!("build of {slug} completed"))
                .with_field("slug", slug)
                .with_field("commit", format!("c{}", self.seq)),
            Kind::PassThrough => EventEnvelope::new(PASS_THROUGH, SOURCE).with_field("n", self.seq),
            Kind::Sentinel => EventEnvelope::new(SENTINEL, SOURCE).with_field("shard", self.shard),
        }
    }
}

fn dependency_value(seq: u64) -> String {
    format!("dep-{seq}")
}

/// The final state a correct daemon holds after consuming every event of the mix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Expectation {
    /// Events generated, sentinels included.
    pub(crate) total: u64,
    pub(crate) creates: u64,
    pub(crate) duplicates: u64,
    pub(crate) updates: u64,
    pub(crate) resolves: u64,
    pub(crate) pass_through: u64,
    /// Rows of the event log with `source = 'bench'` (everything but duplicates).
    pub(crate) logged: u64,
    /// Notifications with `source = 'bench'` (one per created slug).
    pub(crate) notifications: u64,
    /// Of those, with `agent_status = 'resolved'`.
    pub(crate) resolved: u64,
    /// slug → the `dependency` value of its last update (slugs never updated are absent).
    #[serde(skip)]
    pub(crate) dependency: HashMap<String, String>,
}

impl Expectation {
    fn merge(&mut self, other: Expectation) {
        self.total += other.total;
        self.creates += other.creates;
        self.duplicates += other.duplicates;
        self.updates += other.updates;
        self.resolves += other.resolves;
        self.pass_through += other.pass_through;
        self.logged += other.logged;
        self.notifications += other.notifications;
        self.resolved += other.resolved;
        self.dependency.extend(other.dependency);
    }

    /// The expectation of `shards` shards of `per_shard` events each, seeded from `seed`.
    pub(crate) fn of(seed: u64, shards: u32, per_shard: u64) -> Self {
        let mut all = Expectation::default();
        for shard in 0..shards {
            let mut generator = MixGen::new(seed, shard, per_shard);
            for _ in generator.by_ref() {}
            all.merge(generator.into_expectation());
        }
        all
    }
}

/// Streams the plan of one shard: `count` events, the last one the sentinel.
#[derive(Debug)]
pub(crate) struct MixGen {
    rng: StdRng,
    shard: u32,
    count: u64,
    seq: u64,
    next_slug: u64,
    open: Vec<u64>,
    expect: Expectation,
}

impl MixGen {
    /// `count` ≥ 1 events for shard `shard`; the same `(seed, shard, count)` always gives the
    /// same plan.
    pub(crate) fn new(seed: u64, shard: u32, count: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ (u64::from(shard) << 48)),
            shard,
            count: count.max(1),
            seq: 0,
            next_slug: 0,
            open: Vec::new(),
            expect: Expectation::default(),
        }
    }

    pub(crate) fn into_expectation(self) -> Expectation {
        self.expect
    }

    fn draw(&mut self) -> (Kind, u64) {
        if self.seq + 1 == self.count {
            return (Kind::Sentinel, 0);
        }
        let roll = self.rng.random_range(0..100u32);
        let kind = match roll {
            0..35 => Kind::Create,
            35..40 if self.next_slug > 0 => Kind::Duplicate,
            40..70 if !self.open.is_empty() => Kind::Update,
            70..80 if !self.open.is_empty() => Kind::Resolve,
            80..100 => Kind::PassThrough,
            _ => Kind::Create,
        };
        let slug = match kind {
            Kind::Create => {
                let slug = self.next_slug;
                self.next_slug += 1;
                self.open.push(slug);
                slug
            }
            Kind::Duplicate => self.rng.random_range(0..self.next_slug),
            Kind::Update => self.open[self.rng.random_range(0..self.open.len())],
            Kind::Resolve => {
                let index = self.rng.random_range(0..self.open.len());
                self.open.swap_remove(index)
            }
            Kind::PassThrough | Kind::Sentinel => 0,
        };
        (kind, slug)
    }
}

impl Iterator for MixGen {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        if self.seq >= self.count {
            return None;
        }
        let (kind, slug) = self.draw();
        let planned = Planned {
            kind,
            shard: self.shard,
            slug,
            seq: self.seq,
        };
        self.seq += 1;
        let e = &mut self.expect;
        e.total += 1;
        match kind {
            Kind::Create => {
                e.creates += 1;
                e.notifications += 1;
            }
            Kind::Duplicate => e.duplicates += 1,
            Kind::Update => {
                e.updates += 1;
                e.dependency
                    .insert(slug_name(self.shard, slug), dependency_value(planned.seq));
            }
            Kind::Resolve => {
                e.resolves += 1;
                e.resolved += 1;
            }
            Kind::PassThrough => e.pass_through += 1,
            Kind::Sentinel => {}
        }
        if kind != Kind::Duplicate {
            e.logged += 1;
        }
        Some(planned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_plan_is_deterministic_per_seed_and_shard() {
        let a: Vec<_> = MixGen::new(7, 1, 500).collect();
        let b: Vec<_> = MixGen::new(7, 1, 500).collect();
        let c: Vec<_> = MixGen::new(8, 1, 500).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 500);
        assert_eq!(a.last().map(|p| p.kind), Some(Kind::Sentinel));
    }

    #[test]
    fn the_shares_are_close_to_the_issue_mix() {
        let e = Expectation::of(1, 1, 100_000);
        let pct = |n: u64| n as f64 * 100.0 / e.total as f64;
        assert!((pct(e.creates + e.duplicates) - 40.0).abs() < 1.5, "{e:?}");
        assert!((pct(e.duplicates) - 5.0).abs() < 1.0, "{e:?}");
        assert!((pct(e.updates) - 30.0).abs() < 1.5, "{e:?}");
        assert!((pct(e.resolves) - 10.0).abs() < 1.0, "{e:?}");
        assert!((pct(e.pass_through) - 20.0).abs() < 1.5, "{e:?}");
        assert_eq!(e.logged, e.total - e.duplicates);
        assert_eq!(
            e.total,
            e.creates + e.duplicates + e.updates + e.resolves + e.pass_through + 1
        );
    }

    #[test]
    fn updates_and_resolves_only_touch_open_slugs_and_duplicates_only_used_ones() {
        let mut created = HashSet::new();
        let mut resolved = HashSet::new();
        for p in MixGen::new(3, 0, 20_000) {
            match p.kind {
                Kind::Create => assert!(created.insert(p.slug), "slug {} created twice", p.slug),
                Kind::Duplicate => assert!(created.contains(&p.slug)),
                Kind::Update => assert!(created.contains(&p.slug) && !resolved.contains(&p.slug)),
                Kind::Resolve => {
                    assert!(created.contains(&p.slug));
                    assert!(resolved.insert(p.slug), "slug {} resolved twice", p.slug);
                }
                Kind::PassThrough | Kind::Sentinel => {}
            }
        }
    }

    #[test]
    fn every_planned_envelope_is_valid() {
        for p in MixGen::new(5, 2, 2_000) {
            let envelope = p.envelope();
            envelope.validate().expect("generated envelope is valid");
            assert_eq!(envelope.source, SOURCE);
        }
    }

    #[test]
    fn shards_use_disjoint_slugs() {
        let e = Expectation::of(9, 3, 3_000);
        assert_eq!(e.total, 9_000);
        assert!(e.dependency.keys().any(|k| k.starts_with("s2-")));
        assert!(e.dependency.keys().any(|k| k.starts_with("s0-")));
    }
}
