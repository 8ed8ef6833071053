//! The notification projector: turns lifecycle events into notification rows.

use events_envelope::{EventEnvelope, EventSchema, NotificationLifecycle};
use events_storage::NewNotification;
use serde_json::Value;

use crate::error::{CartridgeError, Result};
use crate::pipeline::{Cartridge, LocalBoxFuture, NotificationPush, PipelineContext};

/// Projects events onto the `notifications` table per their schema's lifecycle (brief §7).
///
/// * **creates** — upsert by idempotency key (insert when the event has none).
/// * **updates** — the newest *open* (not resolved) notification with the same domain and
///   group field/value gets the event's payload merged over its own (keys the update does
///   not carry keep their value), the event's description and a new `updated_at`. It
///   becomes unseen again iff the value of one of `meaningful_fields` changed; a change of
///   `silent_fields` (or of any other field) never resets it. With no open notification
///   the event creates one when its schema also `creates`, otherwise it passes through
///   without effect (it is still kept in the event log).
/// * **resolves** — the newest open notification of the group gets agent status
///   `resolved` with the event payload as resolution; none open → pass through.
/// * no lifecycle, or a type not in the catalog → pass through; with
///   [`NotificationProjector::strict_catalog`] an unknown type is refused instead
///   ([`CartridgeError::Invalid`], hence dead-lettered).
///
/// The domain used for grouping is the envelope's, or the schema's when the envelope's is
/// empty. The projector never drops an event.
#[derive(Debug, Default, Clone)]
pub struct NotificationProjector {
    strict_catalog: bool,
}

/// What one event did to the notification table (also what is pushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Created(i64),
    Updated { id: i64, meaningful: bool },
    Resolved(i64),
}

impl NotificationProjector {
    /// Name reported by [`Cartridge::name`].
    pub const NAME: &'static str = "notification-projector";

    /// A projector that passes unknown event types through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuse event types that are not in the catalog (`strict_catalog = true` in config).
    #[must_use]
    pub fn strict_catalog(mut self, strict: bool) -> Self {
        self.strict_catalog = strict;
        self
    }

    fn storage(e: events_storage::StorageError) -> CartridgeError {
        CartridgeError::storage(Self::NAME, e)
    }

    fn project(
        &self,
        event: &EventEnvelope,
        ctx: &mut PipelineContext<'_, '_>,
    ) -> Result<Option<Effect>> {
        let Some(schema) = ctx.catalog.get(&event.event) else {
            if self.strict_catalog {
                return Err(CartridgeError::Invalid(format!(
                    "event type {} is not in the catalog (strict_catalog is on)",
                    event.event
                )));
            }
            return Ok(None);
        };
        let Some(lifecycle) = schema.lifecycle.as_ref() else {
            return Ok(None);
        };
        let domain = effective_domain(event, schema);
        let group = group_of(event, lifecycle);

        if lifecycle.updates || lifecycle.resolves {
            let open = match &group {
                Some((field, value)) => ctx
                    .tx
                    .find_open_in_group(domain, field, value)
                    .map_err(Self::storage)?,
                None => None,
            };
            if let Some(open) = open {
                if lifecycle.resolves {
                    ctx.tx
                        .resolve_found_notification(open.id, &event.payload)
                        .map_err(Self::storage)?;
                    return Ok(Some(Effect::Resolved(open.id)));
                }
                let mut payload = open.payload().map_err(Self::storage)?;
                let meaningful = lifecycle.meaningful_fields.iter().any(|f| {
                    event
                        .payload
                        .get(f)
                        .is_some_and(|v| payload.get(f) != Some(v))
                });
                for (k, v) in &event.payload {
                    payload.insert(k.clone(), v.clone());
                }
                ctx.tx
                    .update_notification(open.id, &payload, &event.description, meaningful)
                    .map_err(Self::storage)?;
                return Ok(Some(Effect::Updated {
                    id: open.id,
                    meaningful,
                }));
            }
        }
        if lifecycle.creates {
            let new = new_notification(event, schema, domain, group);
            let id = if new.idempotency_key.is_some() {
                let (id, created) = ctx
                    .tx
                    .upsert_by_idempotency_key(&new)
                    .map_err(Self::storage)?;
                if !created {
                    return Ok(Some(Effect::Updated {
                        id,
                        meaningful: false,
                    }));
                }
                id
            } else {
                ctx.tx.insert_notification(&new).map_err(Self::storage)?
            };
            return Ok(Some(Effect::Created(id)));
        }
        tracing::debug!(event = %event.event, event_id = %event.id, "no open notification to update or resolve");
        Ok(None)
    }
}

impl Cartridge for NotificationProjector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, Result<Option<EventEnvelope>>> {
        Box::pin(async move {
            if let Some(effect) = self.project(&event, ctx)? {
                let (notification_id, was_created, is_meaningful) = match effect {
                    Effect::Created(id) => (id, true, true),
                    Effect::Updated { id, meaningful } => (id, false, meaningful),
                    Effect::Resolved(id) => (id, false, true),
                };
                ctx.pushes.push(NotificationPush {
                    notification_id,
                    event_type: event.event.clone(),
                    was_created,
                    is_meaningful,
                });
            }
            Ok(Some(event))
        })
    }
}

fn effective_domain<'a>(event: &'a EventEnvelope, schema: &'a EventSchema) -> &'a str {
    if event.domain.is_empty() {
        &schema.domain
    } else {
        &event.domain
    }
}

/// The group field and the event's value for it: the payload's value (strings raw, other
/// JSON in compact form), else the envelope's `entity` when the group key is `entity`.
fn group_of(event: &EventEnvelope, lifecycle: &NotificationLifecycle) -> Option<(String, String)> {
    let field = lifecycle.group_key.as_ref()?;
    let value = match event.payload.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => match field.as_str() {
            "entity" => event.entity.clone()?,
            _ => return None,
        },
        Some(other) => other.to_string(),
    };
    Some((field.clone(), value))
}

fn new_notification(
    event: &EventEnvelope,
    schema: &EventSchema,
    domain: &str,
    group: Option<(String, String)>,
) -> NewNotification {
    let (group_field, group_value) = group.unzip();
    NewNotification {
        domain: domain.to_owned(),
        actionable: schema.actionable,
        group_field,
        group_value,
        ..NewNotification::from_envelope(event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use events_envelope::{
        EventCatalog, EventEnvelope, EventLevel, EventSchema, NotificationLifecycle,
    };
    use events_storage::{AgentStatus, EventDb, HumanStatus, Notification, NotificationFilter};
    use serde_json::json;

    use crate::{CartridgeError, NotificationPush, Pipeline, PipelineContext};

    fn catalog() -> EventCatalog {
        let mut c = EventCatalog::new();
        let lifecycle = |l: NotificationLifecycle| {
            l.with_group_key("slug")
                .with_meaningful_fields(["status"])
                .with_silent_fields(["progress"])
        };
        c.register(
            EventSchema::new("t.job.created", "created", EventLevel::Workflow, "jobs")
                .with_idempotency_fields(["slug"])
                .with_lifecycle(lifecycle(NotificationLifecycle::creates())),
        )
        .expect("register");
        c.register(
            EventSchema::new("t.job.changed", "changed", EventLevel::Workflow, "jobs")
                .with_lifecycle(lifecycle(NotificationLifecycle::updates())),
        )
        .expect("register");
        let mut upsert = NotificationLifecycle::creates();
        upsert.updates = true;
        c.register(
            EventSchema::new("t.job.scored", "scored", EventLevel::Workflow, "jobs")
                .with_lifecycle(lifecycle(upsert)),
        )
        .expect("register");
        c.register(
            EventSchema::new("t.job.done", "done", EventLevel::Workflow, "jobs")
                .with_lifecycle(NotificationLifecycle::resolves().with_group_key("slug")),
        )
        .expect("register");
        c.register(EventSchema::new(
            "t.job.log",
            "log",
            EventLevel::Infrastructure,
            "jobs",
        ))
        .expect("register");
        c
    }

    fn ev(kind: &str, payload: serde_json::Value) -> EventEnvelope {
        let serde_json::Value::Object(map) = payload else {
            panic!("object literal")
        };
        EventEnvelope::new(kind, "test")
            .with_domain("jobs")
            .with_payload(map)
    }

    /// Run each event through the standard pipeline in its own transaction; returns the
    /// pushes per event (None = dropped).
    async fn run(
        db: &EventDb,
        catalog: Arc<EventCatalog>,
        pipeline: Pipeline,
        events: Vec<EventEnvelope>,
    ) -> Vec<Result<Option<Vec<NotificationPush>>, String>> {
        let handle = tokio::runtime::Handle::current();
        db.write(move |tx| {
            let mut out = Vec::new();
            for event in events {
                let mut ctx = PipelineContext::new(&catalog, tx);
                let result = handle.block_on(pipeline.execute(event, &mut ctx));
                let pushes = std::mem::take(&mut ctx.pushes);
                out.push(match result {
                    Ok(Some(event)) => {
                        tx.append_event(&event, None)?;
                        Ok(Some(pushes))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e.to_string()),
                });
            }
            Ok(out)
        })
        .await
        .expect("write")
    }

    async fn all(db: &EventDb) -> Vec<Notification> {
        db.list_notifications(NotificationFilter::default())
            .await
            .expect("list")
            .notifications
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lifecycle_semantics() {
        let db = EventDb::open_in_memory().await.expect("db");
        let catalog = Arc::new(catalog());
        let pipeline = Pipeline::standard(false);
        let out = run(
            &db,
            catalog.clone(),
            pipeline.clone(),
            vec![
                ev(
                    "t.job.created",
                    json!({"slug": "a", "status": "queued", "progress": 0, "title": "A"}),
                ),
                ev("t.job.created", json!({"slug": "a", "status": "other"})), // duplicate key
                ev("t.job.log", json!({"line": 1})),                          // no lifecycle
                ev("t.job.unknown", json!({})),                               // not in catalog
                ev("t.job.changed", json!({"slug": "zzz", "status": "x"})),   // nothing open
            ],
        )
        .await;
        assert_eq!(
            out[0].as_ref().ok().and_then(|p| p.as_ref()).map(Vec::len),
            Some(1)
        );
        assert_eq!(out[1], Ok(None), "dedup drops the second create");
        assert_eq!(out[2], Ok(Some(vec![])));
        assert_eq!(out[3], Ok(Some(vec![])));
        assert_eq!(
            out[4],
            Ok(Some(vec![])),
            "update without open notification passes through"
        );
        let rows = all(&db).await;
        assert_eq!(rows.len(), 1);
        let id = rows[0].id;
        assert_eq!(rows[0].idempotency_key.as_deref(), Some("t.job.created:a"));
        assert_eq!(rows[0].group_value.as_deref(), Some("a"));

        // silent change: stays seen; meaningful change: unseen again; payload merged
        db.set_seen(id, true).await.expect("seen");
        let out = run(
            &db,
            catalog.clone(),
            pipeline.clone(),
            vec![ev("t.job.changed", json!({"slug": "a", "progress": 50}))],
        )
        .await;
        assert_eq!(
            out[0],
            Ok(Some(vec![NotificationPush {
                notification_id: id,
                event_type: "t.job.changed".into(),
                was_created: false,
                is_meaningful: false
            }]))
        );
        let row = db.get_notification(id).await.expect("get").expect("row");
        assert_eq!(row.human_status, HumanStatus::Seen);
        assert_eq!(row.payload.get("progress"), Some(&json!(50)));
        assert_eq!(
            row.payload.get("title"),
            Some(&json!("A")),
            "keys the update lacks are kept"
        );

        let out = run(
            &db,
            catalog.clone(),
            pipeline.clone(),
            vec![ev(
                "t.job.changed",
                json!({"slug": "a", "status": "queued"}),
            )],
        )
        .await;
        assert!(
            matches!(&out[0], Ok(Some(p)) if !p[0].is_meaningful),
            "same status value is not a change"
        );
        assert_eq!(
            db.get_notification(id)
                .await
                .expect("get")
                .expect("row")
                .human_status,
            HumanStatus::Seen
        );
        let out = run(
            &db,
            catalog.clone(),
            pipeline.clone(),
            vec![ev(
                "t.job.changed",
                json!({"slug": "a", "status": "running"}),
            )],
        )
        .await;
        assert!(matches!(&out[0], Ok(Some(p)) if p[0].is_meaningful));
        assert_eq!(
            db.get_notification(id)
                .await
                .expect("get")
                .expect("row")
                .human_status,
            HumanStatus::Unseen
        );

        // resolve with the payload as resolution; later updates find nothing open
        let out = run(
            &db,
            catalog.clone(),
            pipeline.clone(),
            vec![
                ev("t.job.done", json!({"slug": "a", "summary": "ok"})),
                ev("t.job.done", json!({"slug": "a"})),
            ],
        )
        .await;
        assert!(matches!(&out[0], Ok(Some(p)) if p.len() == 1 && p[0].is_meaningful));
        assert_eq!(out[1], Ok(Some(vec![])));
        let row = db.get_notification(id).await.expect("get").expect("row");
        assert_eq!(row.agent_status, AgentStatus::Resolved);
        assert_eq!(row.resolution, Some(json!({"slug": "a", "summary": "ok"})));

        // creates+updates: the first creates, the next updates the open one
        let out = run(
            &db,
            catalog.clone(),
            pipeline.clone(),
            vec![
                ev("t.job.scored", json!({"slug": "b", "status": "1"})),
                ev("t.job.scored", json!({"slug": "b", "status": "2"})),
            ],
        )
        .await;
        assert!(matches!(&out[0], Ok(Some(p)) if p[0].was_created));
        assert!(matches!(&out[1], Ok(Some(p)) if !p[0].was_created && p[0].is_meaningful));
        assert_eq!(all(&db).await.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_idempotency_field_and_strict_catalog_are_invalid() {
        let db = EventDb::open_in_memory().await.expect("db");
        let catalog = Arc::new(catalog());
        let out = run(
            &db,
            catalog.clone(),
            Pipeline::standard(true),
            vec![
                ev("t.job.created", json!({"status": "x"})),
                ev("t.job.unknown", json!({})),
            ],
        )
        .await;
        assert!(matches!(&out[0], Err(e) if e.contains("slug")), "{out:?}");
        assert!(
            matches!(&out[1], Err(e) if e.contains("not in the catalog")),
            "{out:?}"
        );
        assert!(!CartridgeError::Invalid("x".into()).is_retryable());
        assert!(CartridgeError::failed("c", "x").is_retryable());
    }
}
