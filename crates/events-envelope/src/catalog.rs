//! The event catalog (brief §5): which event types exist, how they are deduplicated and which
//! notification lifecycle they drive.
//!
//! The catalog is plain data. The dedup cartridge asks it for idempotency keys, the notification
//! projector for lifecycles, the API and CLI list it. Types not in the catalog are still valid
//! events (unless the daemon runs with `strict_catalog`); they are logged and passed through
//! without a notification.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::format_timestamp;
use crate::envelope::{EventEnvelope, EventLevel, EventVisibility, validate_event_name};
use crate::error::{CatalogError, ValidationError};

/// Origin recorded for the schemas of [`EventCatalog::builtin`].
const BUILTIN_ORIGIN: &str = "built-in";
/// Origin recorded for schemas added with [`EventCatalog::register`].
const REGISTER_ORIGIN: &str = "register";

/// How an event type drives notifications. Absent on a schema = the type is not
/// notification-worthy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationLifecycle {
    /// An event of this type creates a new notification.
    #[serde(default)]
    pub creates: bool,
    /// An event of this type updates the newest open notification of its group.
    #[serde(default)]
    pub updates: bool,
    /// An event of this type resolves the newest open notification of its group.
    #[serde(default)]
    pub resolves: bool,
    /// Payload field that ties lifecycle events of one thing together (e.g. `slug`);
    /// `updates`/`resolves` find their notification by domain + this field's value.
    #[serde(default)]
    pub group_key: Option<String>,
    /// Payload fields whose change makes an update meaningful: the notification becomes unseen.
    #[serde(default)]
    pub meaningful_fields: Vec<String>,
    /// Payload fields updated without making the notification unseen again.
    #[serde(default)]
    pub silent_fields: Vec<String>,
}

impl NotificationLifecycle {
    /// A lifecycle whose events create notifications.
    pub fn creates() -> Self {
        Self {
            creates: true,
            ..Self::default()
        }
    }

    /// A lifecycle whose events update the open notification of their group.
    pub fn updates() -> Self {
        Self {
            updates: true,
            ..Self::default()
        }
    }

    /// A lifecycle whose events resolve the open notification of their group.
    pub fn resolves() -> Self {
        Self {
            resolves: true,
            ..Self::default()
        }
    }

    /// Sets the group key (payload field correlating the lifecycle's events).
    pub fn with_group_key(mut self, field: impl Into<String>) -> Self {
        self.group_key = Some(field.into());
        self
    }

    /// Sets the meaningful fields.
    pub fn with_meaningful_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.meaningful_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the silent fields.
    pub fn with_silent_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.silent_fields = fields.into_iter().map(Into::into).collect();
        self
    }
}

/// What the platform knows about one event type.
///
/// Serde shape = the TOML catalog file shape of brief §5; unknown keys are refused so a typo in
/// an operator's file (`idempotency_field`) is an error at start, not a silently ignored line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSchema {
    /// The event type, dot notation (`acme.order.placed`).
    pub event_type: String,
    /// One line for people (shown by `events catalog list`).
    pub description: String,
    /// The level producers are expected to use; carried for listings, not forced on events.
    pub default_level: EventLevel,
    /// Business domain of the type.
    pub domain: String,
    /// The visibility producers are expected to use.
    #[serde(default)]
    pub default_visibility: EventVisibility,
    /// Fields composing the idempotency key, looked up in the payload first, then among the
    /// envelope's own fields. Empty = events of this type are never deduplicated by key.
    #[serde(default)]
    pub idempotency_fields: Vec<String>,
    /// How events of this type drive notifications; `None` = not notification-worthy.
    #[serde(default)]
    pub lifecycle: Option<NotificationLifecycle>,
    /// Whether agents can claim and resolve the notifications this type creates.
    #[serde(default)]
    pub actionable: bool,
}

impl EventSchema {
    /// A schema with local visibility, no idempotency fields, no lifecycle, not actionable.
    pub fn new(
        event_type: impl Into<String>,
        description: impl Into<String>,
        default_level: EventLevel,
        domain: impl Into<String>,
    ) -> Self {
        Self {
            event_type: event_type.into(),
            description: description.into(),
            default_level,
            domain: domain.into(),
            default_visibility: EventVisibility::default(),
            idempotency_fields: Vec::new(),
            lifecycle: None,
            actionable: false,
        }
    }

    /// Sets the default visibility.
    pub fn with_visibility(mut self, visibility: EventVisibility) -> Self {
        self.default_visibility = visibility;
        self
    }

    /// Sets the idempotency fields.
    pub fn with_idempotency_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.idempotency_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the notification lifecycle.
    pub fn with_lifecycle(mut self, lifecycle: NotificationLifecycle) -> Self {
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Sets whether agents can claim and resolve the notifications.
    pub fn with_actionable(mut self, actionable: bool) -> Self {
        self.actionable = actionable;
        self
    }

    /// Checks the schema's own rules: a valid event type name and no empty field names.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let invalid = |source: ValidationError| CatalogError::InvalidSchema {
            event_type: self.event_type.clone(),
            source,
        };
        validate_event_name(&self.event_type)
            .map_err(|err| invalid(ValidationError::new("event_type", err.message)))?;
        if self.idempotency_fields.iter().any(|f| f.trim().is_empty()) {
            return Err(invalid(ValidationError::new(
                "idempotency_fields",
                "field names must not be empty",
            )));
        }
        if let Some(lifecycle) = &self.lifecycle {
            if lifecycle
                .group_key
                .as_deref()
                .is_some_and(|k| k.trim().is_empty())
            {
                return Err(invalid(ValidationError::new(
                    "lifecycle.group_key",
                    "must not be empty when given",
                )));
            }
            let mut names = lifecycle
                .meaningful_fields
                .iter()
                .chain(&lifecycle.silent_fields);
            if names.any(|f| f.trim().is_empty()) {
                return Err(invalid(ValidationError::new(
                    "lifecycle",
                    "meaningful_fields and silent_fields must not contain empty names",
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Entry {
    schema: EventSchema,
    /// Where the schema came from, for duplicate errors: `built-in`, `register`, `file:line`.
    origin: String,
}

/// The registry of event schemas, keyed and listed by event type.
///
/// Built once at start ([`EventCatalog::builtin`] plus operator files, see `load_dir`) and then
/// shared read-only; it is `Clone` so a failed load can leave the original untouched.
#[derive(Debug, Clone, Default)]
pub struct EventCatalog {
    entries: BTreeMap<String, Entry>,
}

impl EventCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// A catalog holding the built-in schemas ([`builtin_schemas`]).
    pub fn builtin() -> Self {
        let mut catalog = Self::new();
        for schema in builtin_schemas() {
            // The built-in set is valid and free of duplicates; a unit test proves it, so an
            // error here cannot happen and is not worth surfacing to every caller.
            let _ = catalog.register_from(schema, BUILTIN_ORIGIN.to_owned());
        }
        catalog
    }

    /// Adds a schema; errors if its event type is invalid or already registered.
    pub fn register(&mut self, schema: EventSchema) -> Result<(), CatalogError> {
        self.register_from(schema, REGISTER_ORIGIN.to_owned())
    }

    pub(crate) fn register_from(
        &mut self,
        schema: EventSchema,
        origin: String,
    ) -> Result<(), CatalogError> {
        schema.validate()?;
        if let Some(existing) = self.entries.get(&schema.event_type) {
            return Err(CatalogError::Duplicate {
                event_type: schema.event_type,
                existing: existing.origin.clone(),
            });
        }
        self.entries
            .insert(schema.event_type.clone(), Entry { schema, origin });
        Ok(())
    }

    /// The schema of `event_type`, if registered.
    pub fn get(&self, event_type: &str) -> Option<&EventSchema> {
        self.entries.get(event_type).map(|entry| &entry.schema)
    }

    /// Whether `event_type` is registered.
    pub fn contains(&self, event_type: &str) -> bool {
        self.entries.contains_key(event_type)
    }

    /// All schemas, sorted by event type.
    pub fn list_all(&self) -> Vec<&EventSchema> {
        self.iter().collect()
    }

    /// Iterates over the schemas, sorted by event type.
    pub fn iter(&self) -> impl Iterator<Item = &EventSchema> + '_ {
        self.entries.values().map(|entry| &entry.schema)
    }

    /// Number of registered schemas.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no schema is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The idempotency key of `envelope` per its schema: `"{event_type}:{v1}:{v2}..."`.
    ///
    /// Each declared field is looked up in the payload first, then among the envelope's own
    /// fields (`id`, `event`, `version`, `source`, `timestamp`, `level`, `domain`, `entity`,
    /// `description`, `visibility`, `terminal_when`, `correlation_id`, `causation_id`), so the
    /// built-in `system.worker.crashed` can be keyed on `[worker_name, timestamp]`. Strings go
    /// in raw, other JSON values as compact JSON (a payload `null` counts as present and gives
    /// `null`); the envelope's `timestamp` is written as on the wire
    /// (`2026-11-24T20:09:13.123456Z`) so the key does not depend on the transport, `level` as
    /// its integer and `visibility` by name.
    ///
    /// `Ok(None)` when the type is not in the catalog or declares no idempotency fields.
    /// A declared field found nowhere is [`CatalogError::MissingIdempotencyField`]: the event
    /// is invalid (HTTP 422, dead letter), because deduplicating it on a partial key could drop
    /// distinct events.
    pub fn build_idempotency_key(
        &self,
        envelope: &EventEnvelope,
    ) -> Result<Option<String>, CatalogError> {
        let Some(schema) = self.get(&envelope.event) else {
            return Ok(None);
        };
        if schema.idempotency_fields.is_empty() {
            return Ok(None);
        }
        let mut key = envelope.event.clone();
        for field in &schema.idempotency_fields {
            key.push(':');
            match envelope.payload.get(field) {
                Some(Value::String(text)) => key.push_str(text),
                Some(other) => key.push_str(&other.to_string()),
                None => match envelope_field(envelope, field) {
                    Some(text) => key.push_str(&text),
                    None => {
                        return Err(CatalogError::MissingIdempotencyField {
                            event_type: envelope.event.clone(),
                            field: field.clone(),
                        });
                    }
                },
            }
        }
        Ok(Some(key))
    }
}

/// The text of an envelope field for idempotency keys; `None` for unknown names and absent
/// optional fields.
fn envelope_field(envelope: &EventEnvelope, field: &str) -> Option<String> {
    Some(match field {
        "id" => envelope.id.clone(),
        "event" => envelope.event.clone(),
        "version" => envelope.version.to_string(),
        "source" => envelope.source.clone(),
        "timestamp" => format_timestamp(envelope.timestamp),
        "level" => envelope.level.as_u8().to_string(),
        "domain" => envelope.domain.clone(),
        "entity" => envelope.entity.clone()?,
        "description" => envelope.description.clone(),
        "visibility" => envelope.visibility.as_str().to_owned(),
        "terminal_when" => envelope.terminal_when.clone()?,
        "correlation_id" => envelope.correlation_id.clone()?,
        "causation_id" => envelope.causation_id.clone()?,
        _ => return None,
    })
}

/// Domain of the built-in `domain.software-development.*` types.
const SOFTWARE_DEVELOPMENT: &str = "software-development";

/// The built-in schemas: the `system.*` and `domain.software-development.*` set of the seed
/// design (Task 5.4), sorted by event type.
///
/// Choices the seed leaves open, made here:
/// - every `domain.software-development.*` type groups its notifications by the payload field
///   `slug` (the todo's slug, as the seed's producers send it): `todo_created` opens the
///   notification of a todo, `dependency_resolved`/`verdict_ready`/... update it,
///   `build.completed` resolves it;
/// - the create-only types (`todo_created`, `todo_dumped`, `todo_activated`) are keyed on
///   `[slug]`: one notification per todo and step, however often a producer retries;
/// - types that update or resolve have no idempotency fields: each such event is a new fact
///   (a second verdict, another artifact change) and must not be dropped as a duplicate;
///   redelivery of the same event is handled by the event id, not by the catalog;
/// - meaningful fields name what the seed says makes an update worth a look: `dependency`,
///   `verdict`, `question`/`options`, `score`; `artifact_changed` is silent (`artifact`,
///   `files`, `progress`).
pub fn builtin_schemas() -> Vec<EventSchema> {
    use EventLevel::{Business, Infrastructure, Operational, Workflow};
    let sd = |name: &str| format!("domain.{SOFTWARE_DEVELOPMENT}.{name}");
    let mut schemas = vec![
        EventSchema::new(
            "system.daemon.restarted",
            "The events daemon (re)started",
            Infrastructure,
            "system",
        )
        .with_visibility(EventVisibility::Cluster)
        .with_idempotency_fields(["computer", "pid"])
        .with_lifecycle(NotificationLifecycle::creates()),
        EventSchema::new(
            "system.worker.crashed",
            "A worker process crashed",
            Operational,
            "system",
        )
        .with_visibility(EventVisibility::Cluster)
        .with_idempotency_fields(["worker_name", "timestamp"])
        .with_lifecycle(NotificationLifecycle::creates())
        .with_actionable(true),
        // Emitted by events-delivery when an endpoint is switched off (410 Gone or too many
        // failed deliveries in a row); actionable because someone has to fix and re-enable it.
        EventSchema::new(
            "system.webhook.disabled",
            "A webhook endpoint was disabled after failing deliveries",
            Operational,
            "system",
        )
        .with_visibility(EventVisibility::Cluster)
        .with_lifecycle(NotificationLifecycle::creates())
        .with_actionable(true),
        EventSchema::new(
            sd("planning.todo_created"),
            "A todo was created",
            Workflow,
            SOFTWARE_DEVELOPMENT,
        )
        .with_idempotency_fields(["slug"])
        .with_lifecycle(NotificationLifecycle::creates().with_group_key("slug")),
        EventSchema::new(
            sd("planning.todo_dumped"),
            "A todo was dumped from a brain dump",
            Workflow,
            SOFTWARE_DEVELOPMENT,
        )
        .with_idempotency_fields(["slug"])
        .with_lifecycle(NotificationLifecycle::creates().with_group_key("slug")),
        EventSchema::new(
            sd("planning.todo_activated"),
            "A todo was activated for work",
            Workflow,
            SOFTWARE_DEVELOPMENT,
        )
        .with_idempotency_fields(["slug"])
        .with_lifecycle(NotificationLifecycle::creates().with_group_key("slug")),
        EventSchema::new(
            sd("planning.artifact_changed"),
            "A planning artifact of a todo changed",
            Operational,
            SOFTWARE_DEVELOPMENT,
        )
        .with_lifecycle(
            NotificationLifecycle::updates()
                .with_group_key("slug")
                .with_silent_fields(["artifact", "files", "progress"]),
        ),
        EventSchema::new(
            sd("planning.dependency_resolved"),
            "A dependency of a todo was resolved",
            Workflow,
            SOFTWARE_DEVELOPMENT,
        )
        .with_lifecycle(
            NotificationLifecycle::updates()
                .with_group_key("slug")
                .with_meaningful_fields(["dependency"]),
        ),
        EventSchema::new(
            sd("planning.dor_assessed"),
            "A todo's definition of ready was assessed",
            Workflow,
            SOFTWARE_DEVELOPMENT,
        )
        .with_lifecycle(
            NotificationLifecycle {
                creates: true,
                updates: true,
                ..NotificationLifecycle::default()
            }
            .with_group_key("slug")
            .with_meaningful_fields(["score"]),
        )
        .with_actionable(true),
        EventSchema::new(
            sd("build.completed"),
            "A build of a todo completed",
            Workflow,
            SOFTWARE_DEVELOPMENT,
        )
        .with_lifecycle(NotificationLifecycle::resolves().with_group_key("slug")),
        EventSchema::new(
            sd("review.verdict_ready"),
            "A review verdict is ready",
            Workflow,
            SOFTWARE_DEVELOPMENT,
        )
        .with_lifecycle(
            NotificationLifecycle::updates()
                .with_group_key("slug")
                .with_meaningful_fields(["verdict"]),
        ),
        EventSchema::new(
            sd("review.needs_decision"),
            "A review needs a human decision",
            Business,
            SOFTWARE_DEVELOPMENT,
        )
        .with_lifecycle(
            NotificationLifecycle::updates()
                .with_group_key("slug")
                .with_meaningful_fields(["question", "options"]),
        )
        .with_actionable(true),
    ];
    schemas.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const SD: &str = "domain.software-development";

    #[test]
    fn builtin_catalog_has_exactly_the_seed_set() {
        let catalog = EventCatalog::builtin();
        let names: Vec<&str> = catalog
            .list_all()
            .iter()
            .map(|s| s.event_type.as_str())
            .collect();
        let mut expected = vec![
            "system.daemon.restarted".to_owned(),
            "system.worker.crashed".to_owned(),
            "system.webhook.disabled".to_owned(),
        ];
        for name in [
            "planning.todo_created",
            "planning.todo_dumped",
            "planning.todo_activated",
            "planning.artifact_changed",
            "planning.dependency_resolved",
            "planning.dor_assessed",
            "build.completed",
            "review.verdict_ready",
            "review.needs_decision",
        ] {
            expected.push(format!("{SD}.{name}"));
        }
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(catalog.len(), 12);
        // Building it goes through `register`: nothing was silently dropped.
        assert_eq!(builtin_schemas().len(), catalog.len());
    }

    #[test]
    fn builtin_levels_lifecycles_and_flags_follow_the_seed() {
        let catalog = EventCatalog::builtin();
        let get = |name: &str| {
            catalog
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };

        let restarted = get("system.daemon.restarted");
        assert_eq!(restarted.default_level, EventLevel::Infrastructure);
        assert_eq!(restarted.default_visibility, EventVisibility::Cluster);
        assert_eq!(restarted.idempotency_fields, ["computer", "pid"]);
        assert!(restarted.lifecycle.as_ref().is_some_and(|l| l.creates));
        assert!(!restarted.actionable);

        let crashed = get("system.worker.crashed");
        assert_eq!(crashed.default_level, EventLevel::Operational);
        assert_eq!(crashed.default_visibility, EventVisibility::Cluster);
        assert_eq!(crashed.idempotency_fields, ["worker_name", "timestamp"]);
        assert!(crashed.actionable);

        // (name, level, (creates, updates, resolves), actionable)
        type Case = (&'static str, EventLevel, (bool, bool, bool), bool);
        let cases: [Case; 9] = [
            (
                "planning.todo_created",
                EventLevel::Workflow,
                (true, false, false),
                false,
            ),
            (
                "planning.todo_dumped",
                EventLevel::Workflow,
                (true, false, false),
                false,
            ),
            (
                "planning.todo_activated",
                EventLevel::Workflow,
                (true, false, false),
                false,
            ),
            (
                "planning.artifact_changed",
                EventLevel::Operational,
                (false, true, false),
                false,
            ),
            (
                "planning.dependency_resolved",
                EventLevel::Workflow,
                (false, true, false),
                false,
            ),
            (
                "planning.dor_assessed",
                EventLevel::Workflow,
                (true, true, false),
                true,
            ),
            (
                "build.completed",
                EventLevel::Workflow,
                (false, false, true),
                false,
            ),
            (
                "review.verdict_ready",
                EventLevel::Workflow,
                (false, true, false),
                false,
            ),
            (
                "review.needs_decision",
                EventLevel::Business,
                (false, true, false),
                true,
            ),
        ];
        for (name, level, (creates, updates, resolves), actionable) in cases {
            let schema = get(&format!("{SD}.{name}"));
            assert_eq!(schema.default_level, level, "{name}");
            assert_eq!(schema.domain, "software-development", "{name}");
            assert_eq!(schema.actionable, actionable, "{name}");
            let lifecycle = schema.lifecycle.as_ref().expect("lifecycle");
            assert_eq!(
                (lifecycle.creates, lifecycle.updates, lifecycle.resolves),
                (creates, updates, resolves),
                "{name}"
            );
            assert_eq!(lifecycle.group_key.as_deref(), Some("slug"), "{name}");
            if updates {
                // "updates (silent)" has no meaningful fields; every other update type has some.
                let silent = name == "planning.artifact_changed";
                assert_eq!(lifecycle.meaningful_fields.is_empty(), silent, "{name}");
                assert_eq!(!lifecycle.silent_fields.is_empty(), silent, "{name}");
            }
        }
        assert_eq!(
            get(&format!("{SD}.planning.dor_assessed"))
                .lifecycle
                .as_ref()
                .map(|l| l.meaningful_fields.clone()),
            Some(vec!["score".to_owned()])
        );
    }

    #[test]
    fn duplicate_registration_is_an_error_naming_the_first_origin() {
        let mut catalog = EventCatalog::builtin();
        let err = catalog
            .register(EventSchema::new(
                "system.worker.crashed",
                "again",
                EventLevel::Business,
                "x",
            ))
            .expect_err("duplicate");
        assert!(
            matches!(&err, CatalogError::Duplicate { event_type, existing }
                if event_type == "system.worker.crashed" && existing == "built-in"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "duplicate event type `system.worker.crashed`: already registered from built-in"
        );
        // The original stays.
        assert_eq!(
            catalog
                .get("system.worker.crashed")
                .map(|s| s.default_level),
            Some(EventLevel::Operational)
        );

        let mut catalog = EventCatalog::new();
        let schema = EventSchema::new("acme.order.placed", "placed", EventLevel::Workflow, "acme");
        catalog.register(schema.clone()).expect("first");
        let err = catalog.register(schema).expect_err("second");
        assert!(
            err.to_string().contains("already registered from register"),
            "{err}"
        );
    }

    #[test]
    fn invalid_schemas_are_refused_naming_the_field() {
        let mut catalog = EventCatalog::new();
        for (schema, field) in [
            (
                EventSchema::new("Order Placed", "", EventLevel::Workflow, "acme"),
                "event_type",
            ),
            (
                EventSchema::new("single", "", EventLevel::Workflow, "acme"),
                "event_type",
            ),
            (
                EventSchema::new("acme.x", "", EventLevel::Workflow, "acme")
                    .with_idempotency_fields(["id", ""]),
                "idempotency_fields",
            ),
            (
                EventSchema::new("acme.y", "", EventLevel::Workflow, "acme")
                    .with_lifecycle(NotificationLifecycle::updates().with_group_key(" ")),
                "lifecycle.group_key",
            ),
        ] {
            let err = catalog.register(schema).expect_err(field);
            match &err {
                CatalogError::InvalidSchema { source, .. } => assert_eq!(source.field, field),
                other => panic!("unexpected {other:?}"),
            }
            assert!(err.to_string().contains(field), "{err}");
        }
        assert!(catalog.is_empty());
    }

    #[test]
    fn get_list_and_contains() {
        let mut catalog = EventCatalog::new();
        for name in ["b.two", "a.one", "c.three"] {
            catalog
                .register(EventSchema::new(
                    name,
                    name,
                    EventLevel::Operational,
                    "test",
                ))
                .expect("register");
        }
        let listed: Vec<_> = catalog
            .list_all()
            .iter()
            .map(|s| s.event_type.clone())
            .collect();
        assert_eq!(listed, ["a.one", "b.two", "c.three"]);
        assert!(catalog.contains("b.two"));
        assert_eq!(
            catalog.get("b.two").map(|s| s.description.as_str()),
            Some("b.two")
        );
        assert_eq!(catalog.get("d.four"), None);
    }

    fn keyed_catalog(fields: &[&str]) -> EventCatalog {
        let mut catalog = EventCatalog::new();
        catalog
            .register(
                EventSchema::new("acme.order.placed", "placed", EventLevel::Workflow, "acme")
                    .with_idempotency_fields(fields.iter().copied()),
            )
            .expect("register");
        catalog
    }

    #[test]
    fn idempotency_key_from_string_and_number_fields() {
        let catalog = keyed_catalog(&["order_id", "amount", "tags"]);
        let event = EventEnvelope::new("acme.order.placed", "shop")
            .with_field("order_id", "A-17")
            .with_field("amount", 12.5)
            .with_field("tags", json!(["x", 1]));
        assert_eq!(
            catalog
                .build_idempotency_key(&event)
                .expect("key")
                .as_deref(),
            Some(r#"acme.order.placed:A-17:12.5:["x",1]"#)
        );
        let event = EventEnvelope::new("acme.order.placed", "shop")
            .with_field("order_id", 17)
            .with_field("amount", json!(null))
            .with_field("tags", true);
        assert_eq!(
            catalog
                .build_idempotency_key(&event)
                .expect("key")
                .as_deref(),
            Some("acme.order.placed:17:null:true")
        );
    }

    #[test]
    fn idempotency_key_missing_field_is_an_error() {
        let catalog = keyed_catalog(&["order_id", "customer"]);
        let event = EventEnvelope::new("acme.order.placed", "shop").with_field("order_id", "A-17");
        let err = catalog.build_idempotency_key(&event).expect_err("missing");
        assert!(
            matches!(&err, CatalogError::MissingIdempotencyField { event_type, field }
                if event_type == "acme.order.placed" && field == "customer"),
            "{err:?}"
        );
        assert!(err.to_string().contains("`customer`"), "{err}");
    }

    #[test]
    fn idempotency_key_none_without_fields_or_schema() {
        let catalog = keyed_catalog(&[]);
        let event = EventEnvelope::new("acme.order.placed", "shop");
        assert_eq!(
            catalog.build_idempotency_key(&event).expect("no fields"),
            None
        );
        let unknown = EventEnvelope::new("acme.order.unknown", "shop");
        assert_eq!(
            catalog
                .build_idempotency_key(&unknown)
                .expect("unknown type"),
            None
        );
    }

    #[test]
    fn idempotency_key_falls_back_to_envelope_fields() {
        let catalog = EventCatalog::builtin();
        let event = EventEnvelope::new("system.worker.crashed", "supervisor")
            .with_timestamp(datetime!(2026-11-24 21:09:13.5 +01:00))
            .with_field("worker_name", "prepare");
        assert_eq!(
            catalog
                .build_idempotency_key(&event)
                .expect("key")
                .as_deref(),
            Some("system.worker.crashed:prepare:2026-11-24T20:09:13.500000Z")
        );
        // The payload wins over the envelope field of the same name.
        let event = event.with_field("timestamp", "2026-11-24T20:09:13Z");
        assert_eq!(
            catalog
                .build_idempotency_key(&event)
                .expect("key")
                .as_deref(),
            Some("system.worker.crashed:prepare:2026-11-24T20:09:13Z")
        );

        let catalog = keyed_catalog(&["source", "level", "visibility", "entity"]);
        let event = EventEnvelope::new("acme.order.placed", "shop")
            .with_level(EventLevel::Business)
            .with_entity("acme://order/1");
        assert_eq!(
            catalog
                .build_idempotency_key(&event)
                .expect("key")
                .as_deref(),
            Some("acme.order.placed:shop:3:local:acme://order/1")
        );
        // An absent optional envelope field counts as missing.
        let event = EventEnvelope::new("acme.order.placed", "shop");
        assert!(matches!(
            catalog.build_idempotency_key(&event),
            Err(CatalogError::MissingIdempotencyField { field, .. }) if field == "entity"
        ));
    }

    #[test]
    fn builtin_create_types_are_keyed_on_slug() {
        let catalog = EventCatalog::builtin();
        let event = EventEnvelope::new(format!("{SD}.planning.todo_created"), "prepare")
            .with_field("slug", "event-platform-core");
        assert_eq!(
            catalog
                .build_idempotency_key(&event)
                .expect("key")
                .as_deref(),
            Some("domain.software-development.planning.todo_created:event-platform-core")
        );
        let update = EventEnvelope::new(format!("{SD}.review.verdict_ready"), "review")
            .with_field("slug", "x");
        assert_eq!(
            catalog.build_idempotency_key(&update).expect("no key"),
            None
        );
    }

    #[test]
    fn schema_json_round_trip_and_defaults() {
        for schema in builtin_schemas() {
            let text = serde_json::to_string(&schema).expect("serialise");
            let back: EventSchema = serde_json::from_str(&text).expect("deserialise");
            assert_eq!(back, schema);
        }
        let minimal: EventSchema = serde_json::from_value(json!({
            "event_type": "a.b", "description": "d", "default_level": "business", "domain": "x"
        }))
        .expect("minimal");
        assert_eq!(
            minimal,
            EventSchema::new("a.b", "d", EventLevel::Business, "x")
        );
        let unknown = serde_json::from_value::<EventSchema>(json!({
            "event_type": "a.b", "description": "d", "default_level": 1, "domain": "x", "idempotency_field": []
        }));
        assert!(unknown.is_err());
    }
}
