//! Random operation sequences against the store and a tiny in-memory model of §6.

use events_storage::{AgentStatus, EventDb, HumanStatus, Transition};
use proptest::prelude::*;
use serde_json::json;

use crate::new_notification;

const AGENTS: [&str; 3] = ["a", "b", "c"];
const ROWS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Seen(usize, bool),
    Claim(usize, usize),
    Status(usize, AgentStatus, usize),
    Resolve(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let row = 0..ROWS + 1; // ROWS = a missing id
    let agent = 0..AGENTS.len();
    let status = prop_oneof![
        Just(AgentStatus::None),
        Just(AgentStatus::Claimed),
        Just(AgentStatus::InProgress),
        Just(AgentStatus::Resolved),
    ];
    prop_oneof![
        (row.clone(), any::<bool>()).prop_map(|(r, s)| Op::Seen(r, s)),
        (row.clone(), agent.clone()).prop_map(|(r, a)| Op::Claim(r, a)),
        (row.clone(), status, agent).prop_map(|(r, s, a)| Op::Status(r, s, a)),
        row.prop_map(Op::Resolve),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Changed,
    Unchanged,
    Conflict,
    NotFound,
    Invalid,
}

fn kind(t: &Transition) -> Kind {
    match t {
        Transition::Changed(_) => Kind::Changed,
        Transition::Unchanged(_) => Kind::Unchanged,
        Transition::Conflict { .. } => Kind::Conflict,
        Transition::NotFound => Kind::NotFound,
        Transition::Invalid(_) => Kind::Invalid,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    human: HumanStatus,
    agent: AgentStatus,
    holder: Option<&'static str>,
}

impl Model {
    /// The §6 rules, written independently of the store's code.
    fn apply(&mut self, op: &Op) -> Kind {
        use AgentStatus::*;
        match *op {
            Op::Seen(_, seen) => {
                let target = if seen {
                    HumanStatus::Seen
                } else {
                    HumanStatus::Unseen
                };
                if self.human == target {
                    Kind::Unchanged
                } else {
                    self.human = target;
                    Kind::Changed
                }
            }
            Op::Claim(_, a) => self.claim(AGENTS[a]),
            Op::Status(_, to, a) => {
                let agent = AGENTS[a];
                if self.agent == Resolved {
                    return Kind::Conflict;
                }
                if to == Resolved {
                    return Kind::Invalid;
                }
                match (self.agent, to) {
                    (None, None) => Kind::Unchanged,
                    (None, Claimed) => self.claim(agent),
                    (None, _) => Kind::Invalid,
                    _ if self.holder != Some(agent) => Kind::Invalid,
                    (from, to) if from == to => Kind::Unchanged,
                    (_, None) => {
                        self.agent = None;
                        self.holder = Option::None;
                        Kind::Changed
                    }
                    (_, to) => {
                        self.agent = to;
                        Kind::Changed
                    }
                }
            }
            Op::Resolve(_) => {
                if self.agent == Resolved {
                    Kind::Conflict
                } else {
                    self.agent = Resolved;
                    Kind::Changed
                }
            }
        }
    }

    fn claim(&mut self, agent: &'static str) -> Kind {
        match self.agent {
            AgentStatus::None => {
                self.agent = AgentStatus::Claimed;
                self.holder = Some(agent);
                Kind::Changed
            }
            AgentStatus::Claimed | AgentStatus::InProgress if self.holder == Some(agent) => {
                Kind::Unchanged
            }
            _ => Kind::Conflict,
        }
    }
}

fn row_of(op: &Op) -> usize {
    match *op {
        Op::Seen(r, _) | Op::Claim(r, _) | Op::Status(r, _, _) | Op::Resolve(r) => r,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let db = EventDb::open_in_memory().await.unwrap();
            let mut ids = Vec::new();
            for i in 0..ROWS {
                ids.push(crate::insert(&db, new_notification(i)).await);
            }
            let missing = ids.iter().max().copied().unwrap_or(0) + 1;
            let mut models = vec![Model { human: HumanStatus::Unseen, agent: AgentStatus::None, holder: None }; ROWS];
            for op in &ops {
                let row = row_of(op);
                let id = ids.get(row).copied().unwrap_or(missing);
                let got = match *op {
                    Op::Seen(_, seen) => db.set_seen(id, seen).await,
                    Op::Claim(_, a) => db.claim(id, AGENTS[a]).await,
                    Op::Status(_, s, a) => db.set_agent_status(id, s, AGENTS[a]).await,
                    Op::Resolve(_) => db.resolve(id, json!({"by": "model"})).await,
                }
                .unwrap();
                let Some(model) = models.get_mut(row) else {
                    prop_assert_eq!(kind(&got), Kind::NotFound, "{:?}", op);
                    continue;
                };
                let expected = model.apply(op);
                prop_assert_eq!(kind(&got), expected, "{:?} gave {:?}", op, got);
                let stored = db.get_notification(id).await.unwrap().unwrap();
                prop_assert_eq!(stored.human_status, model.human, "{:?}", op);
                prop_assert_eq!(stored.agent_status, model.agent, "{:?}", op);
                if model.agent == AgentStatus::Resolved {
                    prop_assert!(stored.resolved_at.is_some());
                } else {
                    prop_assert_eq!(stored.agent_id.as_deref(), model.holder, "{:?}", op);
                }
                prop_assert_eq!(stored.seen_at.is_some(), model.human == HumanStatus::Seen);
                if let Some(n) = got.notification() {
                    prop_assert_eq!(n, &stored, "the returned row is the stored row");
                }
            }
            Ok(())
        })?;
    }
}
