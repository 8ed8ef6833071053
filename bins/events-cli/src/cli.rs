//! The command line, declared with clap's derive API.
//!
//! Everything a user can type lives here, with its help text; the `commands` modules only
//! receive the parsed values. Flags that every subcommand shares (`--url`, `--token`,
//! `--json`) are `global` so they may be written before or after the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit status and environment, shown at the bottom of `events --help`.
const AFTER_HELP: &str = "\
Exit status:
  0  success
  1  the daemon refused the request, failed, or could not be reached
  2  usage error or bad input (unknown flag, malformed JSON, invalid event)

Examples:
  events catalog list
  events emit build.finished --source ci --level workflow --payload '{\"ok\":true}'
  events tail --type 'system.*'
  events notifications list --human-status unseen --json
  events notifications claim 42 --agent bot-1";

/// Emit, watch and work on the events and notifications of an events-daemon.
///
/// Talks to the daemon's HTTP API at --url; `catalog list` and `emit --redis-url` also
/// work without a running daemon.
#[derive(Debug, Parser)]
#[command(name = "events", version, after_help = AFTER_HELP, propagate_version = true)]
pub(crate) struct Cli {
    /// Base URL of the events-daemon HTTP API.
    #[arg(
        long,
        global = true,
        env = "EVENTS_URL",
        hide_env_values = true,
        help_heading = "Global options",
        default_value = "http://127.0.0.1:7400",
        value_name = "URL"
    )]
    pub(crate) url: String,

    /// Bearer token for the daemon (needed when it has `[[auth.tokens]]` configured).
    #[arg(
        long,
        global = true,
        env = "EVENTS_TOKEN",
        hide_env_values = true,
        help_heading = "Global options",
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,

    /// Print the server's JSON instead of tables, for scripts and `jq`.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the event catalog: the known event types and their defaults.
    #[command(subcommand)]
    Catalog(CatalogCommand),

    /// Emit one event, to the daemon over HTTP or straight to Redis.
    Emit(EmitArgs),

    /// Print events live as the daemon stores them (Server-Sent Events); Ctrl-C stops.
    ///
    /// Reconnects by itself after a lost connection and resumes where it left off
    /// (Last-Event-ID), so no event is skipped across a daemon restart.
    Tail(TailArgs),

    /// List, read, claim and resolve notifications.
    #[command(subcommand, visible_alias = "n")]
    Notifications(NotificationsCommand),

    /// Inspect, replay and delete stream entries the processor could not handle.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),

    /// Manage webhook subscriptions and see their delivery attempts.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// Print every event type as a table (works without a daemon).
    ///
    /// Lists the built-in schemas plus those of `*.toml` files in --catalog-dir, i.e. what a
    /// daemon started with the same --catalog-dir would know.
    List {
        /// Also load every `*.toml` schema file of this directory.
        #[arg(long, value_name = "DIR")]
        catalog_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(after_help = "\
When --level, --domain or --visibility is not given, the catalog's default for the event type \
is used (INFRASTRUCTURE, \"\" and local for types the catalog does not know).")]
pub(crate) struct EmitArgs {
    /// Event type in dot notation, e.g. `build.finished`.
    #[arg(value_name = "TYPE")]
    pub(crate) event_type: String,

    /// Who emits the event, e.g. the application's name.
    #[arg(
        long,
        env = "EVENTS_SOURCE",
        hide_env_values = true,
        value_name = "SOURCE"
    )]
    pub(crate) source: String,

    /// Level: 0..3 or infrastructure, operational, workflow, business.
    #[arg(long, value_name = "LEVEL")]
    pub(crate) level: Option<String>,

    /// Payload as a JSON object, e.g. '{"job_id":"j-1"}'.
    #[arg(long, value_name = "JSON", conflicts_with = "payload_file")]
    pub(crate) payload: Option<String>,

    /// Read the payload JSON object from this file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub(crate) payload_file: Option<PathBuf>,

    /// Business domain, e.g. `software-development`.
    #[arg(long, value_name = "DOMAIN")]
    pub(crate) domain: Option<String>,

    /// What the event is about, e.g. `telec://todo/42`.
    #[arg(long, value_name = "ENTITY")]
    pub(crate) entity: Option<String>,

    /// One line for people.
    #[arg(long, value_name = "TEXT")]
    pub(crate) description: Option<String>,

    /// Visibility: local, cluster or public.
    #[arg(long, value_name = "VISIBILITY")]
    pub(crate) visibility: Option<String>,

    /// Explicit idempotency key (otherwise the daemon derives one from the catalog).
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,

    /// Correlation id tying this event to others of the same flow.
    #[arg(long, value_name = "ID")]
    pub(crate) correlation_id: Option<String>,

    /// Write to this Redis instead of the daemon (XADD to --stream); no daemon needed.
    #[arg(long, value_name = "URL")]
    pub(crate) redis_url: Option<String>,

    /// Stream key to write to with --redis-url.
    #[arg(
        long,
        value_name = "KEY",
        default_value = "events:stream",
        requires = "redis_url"
    )]
    pub(crate) stream: String,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Only events whose type matches this glob, e.g. `job.*` (`*` also matches dots).
    #[arg(long = "type", value_name = "GLOB")]
    pub(crate) event_type: Option<String>,

    /// Start after this sequence number instead of at the live end (0 = from the beginning).
    #[arg(long, value_name = "SEQ")]
    pub(crate) after_seq: Option<u64>,
}

/// Filters of `GET /api/notifications` (brief §9), shared by `list` and `seen --all`.
#[derive(Debug, Args, Default)]
pub(crate) struct NotificationFilter {
    /// Only this level (0..3 or a level name).
    #[arg(long, value_name = "LEVEL")]
    pub(crate) level: Option<String>,

    /// Only this domain.
    #[arg(long, value_name = "DOMAIN")]
    pub(crate) domain: Option<String>,

    /// Only notifications people have (not) seen.
    #[arg(long, value_enum, value_name = "STATUS")]
    pub(crate) human_status: Option<HumanStatus>,

    /// Only this agent status.
    #[arg(long, value_enum, value_name = "STATUS")]
    pub(crate) agent_status: Option<AgentStatus>,

    /// Only this visibility.
    #[arg(long, value_name = "VISIBILITY")]
    pub(crate) visibility: Option<String>,

    /// Only notifications created at or after this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum HumanStatus {
    Unseen,
    Seen,
}

impl HumanStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HumanStatus::Unseen => "unseen",
            HumanStatus::Seen => "seen",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AgentStatus {
    None,
    Claimed,
    #[value(name = "in_progress", alias = "in-progress")]
    InProgress,
    Resolved,
}

impl AgentStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AgentStatus::None => "none",
            AgentStatus::Claimed => "claimed",
            AgentStatus::InProgress => "in_progress",
            AgentStatus::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum NotificationsCommand {
    /// List notifications, newest first.
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        filter: NotificationFilter,
        /// How many to return (the daemon allows at most 200).
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// How many to skip, for paging.
        #[arg(long, default_value_t = 0, value_name = "N")]
        offset: u64,
    },

    /// Show every field of one notification.
    Show {
        /// Notification id.
        id: i64,
    },

    /// Mark a notification seen, or with --all every one matching the filters.
    Seen {
        /// Notification id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Mark all notifications matching the filters seen.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: NotificationFilter,
    },

    /// Mark a notification unseen again.
    Unseen {
        /// Notification id.
        id: i64,
    },

    /// Claim a notification for an agent; fails (exit 1) if another agent holds it.
    Claim {
        /// Notification id.
        id: i64,
        /// Who claims it.
        #[arg(
            long,
            env = "EVENTS_AGENT_ID",
            hide_env_values = true,
            value_name = "AGENT"
        )]
        agent: String,
    },

    /// Set the agent status: in_progress while working, none to release a claim.
    Status {
        /// Notification id.
        id: i64,
        /// New agent status.
        #[arg(value_enum)]
        status: AgentStatus,
        /// The agent holding the claim.
        #[arg(
            long,
            env = "EVENTS_AGENT_ID",
            hide_env_values = true,
            value_name = "AGENT"
        )]
        agent: String,
    },

    /// Resolve a notification with a summary of what was done.
    Resolve {
        /// Notification id.
        id: i64,
        /// What was done.
        #[arg(long, value_name = "TEXT")]
        summary: String,
        /// A link to the result (pull request, report, ...).
        #[arg(long, value_name = "URL")]
        link: Option<String>,
        /// Who resolved it.
        #[arg(
            long,
            env = "EVENTS_AGENT_ID",
            hide_env_values = true,
            value_name = "AGENT"
        )]
        agent: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadLettersCommand {
    /// List dead letters with the reason each one failed.
    #[command(visible_alias = "ls")]
    List {
        /// How many to return.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
    },
    /// Put a dead letter back on the stream to be processed again.
    Replay {
        /// Dead letter id.
        id: String,
    },
    /// Delete a dead letter for good.
    #[command(visible_alias = "rm")]
    Delete {
        /// Dead letter id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Subscribe a URL to event types; prints the signing secret once.
    Add {
        /// Destination URL (https://...).
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Event type glob to deliver, e.g. `job.*`; repeat for several (default: all types).
        #[arg(long = "event-type", value_name = "GLOB")]
        event_types: Vec<String>,
        /// What the subscription is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Signing secret (`whsec_` + base64); generated by the daemon when absent.
        #[arg(long, value_name = "SECRET")]
        secret: Option<String>,
    },
    /// List webhook subscriptions.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a webhook subscription.
    #[command(visible_alias = "delete")]
    Rm {
        /// Webhook id.
        id: String,
    },
    /// Show the delivery attempts of one webhook.
    Deliveries {
        /// Webhook id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "events",
            "notifications",
            "list",
            "--json",
            "--url",
            "http://x:1",
        ])
        .expect("parses");
        assert!(cli.json);
        assert_eq!(cli.url, "http://x:1");
    }

    #[test]
    fn payload_and_payload_file_exclude_each_other() {
        let err = Cli::try_parse_from([
            "events",
            "emit",
            "a.b",
            "--source",
            "s",
            "--payload",
            "{}",
            "--payload-file",
            "f",
        ])
        .expect_err("conflict");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn seen_needs_an_id_or_all() {
        assert!(Cli::try_parse_from(["events", "notifications", "seen"]).is_err());
        assert!(
            Cli::try_parse_from(["events", "notifications", "seen", "--all", "--domain", "d"])
                .is_ok()
        );
        assert!(Cli::try_parse_from(["events", "notifications", "seen", "3"]).is_ok());
    }

    #[test]
    fn webhook_destination_does_not_clobber_the_global_url() {
        let cli = Cli::try_parse_from([
            "events",
            "--url",
            "http://daemon:1",
            "webhooks",
            "add",
            "http://hook:2/x",
        ])
        .expect("parses");
        assert_eq!(cli.url, "http://daemon:1");
        match cli.command {
            Command::Webhooks(WebhooksCommand::Add { endpoint, .. }) => {
                assert_eq!(endpoint, "http://hook:2/x")
            }
            other => panic!("expected webhooks add, got {other:?}"),
        }
    }
}
