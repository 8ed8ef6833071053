//! The daemon's configuration (brief §11): defaults → TOML file → `EVENTS_*` environment →
//! command-line flags, then one [`Config::validate`].
//!
//! Unknown keys are errors that name the key, in the file (with its line) and in the
//! environment (`EVENTS_REDIS__URLL`). Environment variables map to keys by lowercasing and
//! splitting on `__`: `EVENTS_REDIS__URL` → `redis.url`, `EVENTS_BIND` → `bind`; values are
//! read as TOML when they parse as a TOML value (`5`, `true`, `["a"]`) and as strings
//! otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use events_api::AuthConfig;
use events_delivery::{TelegramConfig, WebhookConfig};
use serde::Deserialize;

/// Where the daemon's config came from went wrong; the message names the key or file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// `events-delivery` names the key (`webhooks.lease_ms`); keep it at the front.
fn delivery_config_error(err: events_delivery::Error) -> ConfigError {
    match err {
        events_delivery::Error::Config { key, message } => invalid(key, message),
        other => invalid("webhooks", other.to_string()),
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Address the HTTP API listens on.
    pub(crate) bind: String,
    /// Directory of `events.db`.
    pub(crate) data_dir: PathBuf,
    /// Directory of extra catalog `*.toml` files.
    pub(crate) catalog_dir: Option<PathBuf>,
    /// Refuse event types the catalog does not know.
    pub(crate) strict_catalog: bool,
    /// `text` or `json` logs on stderr.
    pub(crate) log_format: LogFormat,
    /// Redis transport; absent = embedded.
    pub(crate) redis: Option<RedisConfig>,
    /// Tokens and roles.
    pub(crate) auth: AuthConfig,
    /// Request limits.
    pub(crate) limits: LimitsConfig,
    /// Event-log retention.
    pub(crate) retention: RetentionConfig,
    /// Webhook delivery: the `[webhooks]` table as `events-delivery` reads it (brief §11
    /// keys plus its tuning knobs, unknown keys refused).
    pub(crate) webhooks: WebhookConfig,
    /// Telegram delivery; absent = off.
    pub(crate) telegram: Option<TelegramConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:7400".into(),
            data_dir: PathBuf::from("./events-data"),
            catalog_dir: None,
            strict_catalog: false,
            log_format: LogFormat::Text,
            redis: None,
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            retention: RetentionConfig::default(),
            webhooks: WebhookConfig::default(),
            telegram: None,
        }
    }
}

/// `[redis]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RedisConfig {
    pub(crate) url: String,
    pub(crate) stream: String,
    pub(crate) dead_letter_stream: String,
    pub(crate) group: String,
    pub(crate) claim_idle_ms: u64,
    pub(crate) max_deliveries: u64,
    /// Approximate stream cap (`MAXLEN ~`); 0 = never trim.
    pub(crate) maxlen: u64,
    /// Run the storage writer real-time (`SCHED_RR`) and the processor on its own threads at
    /// `nice` −5, where permitted, so consuming keeps up with producers sharing the host.
    pub(crate) favour_processing: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            stream: "events:stream".into(),
            dead_letter_stream: "events:dead".into(),
            group: "event-processor".into(),
            claim_idle_ms: 30_000,
            max_deliveries: 5,
            maxlen: 1_000_000,
            favour_processing: true,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LimitsConfig {
    pub(crate) requests_per_second: u32,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_payload_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 1000,
            max_body_bytes: 1_048_576,
            max_payload_bytes: 262_144,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RetentionConfig {
    /// Days of event log kept; 0 = forever.
    pub(crate) events_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { events_days: 30 }
    }
}

/// Command-line overrides (highest precedence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    pub(crate) bind: Option<String>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) redis_url: Option<String>,
    pub(crate) catalog_dir: Option<PathBuf>,
    pub(crate) log_format: Option<LogFormat>,
}

/// Top-level keys; `EVENTS_*` variables naming anything else (e.g. the CLI's own
/// `EVENTS_URL`, `EVENTS_TOKEN`) are not daemon config and are ignored.
const TOP_LEVEL_KEYS: &[&str] = &[
    "bind",
    "data_dir",
    "catalog_dir",
    "strict_catalog",
    "log_format",
    "redis",
    "auth",
    "limits",
    "retention",
    "webhooks",
    "telegram",
];

fn env_value(text: &str) -> toml::Value {
    // `5`, `true`, `["a","b"]`, `[{name="x"}]` are TOML; anything else is a string.
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn apply_env(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix("EVENTS_") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) || !TOP_LEVEL_KEYS.contains(&path[0].as_str()) {
            continue;
        }
        let mut node = &mut *table;
        for key in &path[..path.len() - 1] {
            let entry = node
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                var: var.clone(),
                message: format!("{key} is not a table, cannot set a key inside it"),
            })?;
        }
        node.insert(path[path.len() - 1].clone(), env_value(&value));
    }
    Ok(())
}

impl Config {
    /// Loads the layers: defaults, `file` (if any), the `EVENTS_*` variables in `env`, then
    /// `overrides`; validates the result.
    pub(crate) fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            // Parse as Config first: its error carries the line and names the unknown key.
            toml::from_str::<Config>(&text).map_err(|err| ConfigError::File {
                path: path.to_owned(),
                message: err.to_string().trim_end().to_owned(),
            })?;
            table = toml::from_str(&text).map_err(|err: toml::de::Error| ConfigError::File {
                path: path.to_owned(),
                message: err.to_string(),
            })?;
        }
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("EVENTS_"))
            .collect();
        apply_env(&mut table, vars.iter().cloned())?;
        let mut config = Config::deserialize(toml::Value::Table(table)).map_err(|err| {
            let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
            ConfigError::Env {
                var: names.join(", "),
                message: err.to_string().trim_end().to_owned(),
            }
        })?;
        if let Some(bind) = &overrides.bind {
            config.bind = bind.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(dir) = &overrides.catalog_dir {
            config.catalog_dir = Some(dir.clone());
        }
        if let Some(format) = overrides.log_format {
            config.log_format = format;
        }
        if let Some(url) = &overrides.redis_url {
            config.redis.get_or_insert_with(RedisConfig::default).url = url.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// The bind address (valid after [`Config::validate`]).
    pub(crate) fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind.parse().map_err(|err| {
            invalid(
                "bind",
                format!(
                    "{:?} is not an address like 127.0.0.1:7400 ({err})",
                    self.bind
                ),
            )
        })
    }

    /// Checks every rule; the error names the key.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let addr = self.bind_addr()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        events_api::Authenticator::new(&self.auth).map_err(|err| match err {
            events_api::AuthConfigError::Token {
                index,
                key,
                message,
            } => invalid(&format!("auth.tokens[{index}].{key}"), message),
            other => invalid("auth", other.to_string()),
        })?;
        if self.auth.tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(invalid(
                "auth.tokens",
                format!(
                    "no tokens configured, so auth would be off, which is only allowed on a loopback bind \
                     (bind is {addr}); add [[auth.tokens]] or bind to 127.0.0.1"
                ),
            ));
        }
        if let Some(redis) = &self.redis {
            if !(redis.url.starts_with("redis://") || redis.url.starts_with("rediss://")) {
                return Err(invalid(
                    "redis.url",
                    format!("{:?} must start with redis:// or rediss://", redis.url),
                ));
            }
            for (key, value) in [
                ("redis.stream", &redis.stream),
                ("redis.dead_letter_stream", &redis.dead_letter_stream),
                ("redis.group", &redis.group),
            ] {
                if value.is_empty() {
                    return Err(invalid(key, "must not be empty"));
                }
            }
            if redis.claim_idle_ms == 0 {
                return Err(invalid("redis.claim_idle_ms", "must be at least 1"));
            }
            if redis.max_deliveries == 0 {
                return Err(invalid("redis.max_deliveries", "must be at least 1"));
            }
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        if self.limits.max_payload_bytes == 0
            || self.limits.max_payload_bytes > self.limits.max_body_bytes
        {
            return Err(invalid(
                "limits.max_payload_bytes",
                "must be between 1 and limits.max_body_bytes",
            ));
        }
        // The CIDRs and the level are checked while parsing (the error names the key and
        // the line); the rest by the delivery crate's own rules.
        self.webhooks.validate().map_err(delivery_config_error)?;
        if let Some(telegram) = &self.telegram {
            telegram.validate().map_err(delivery_config_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn load_str(
        text: &str,
        env: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::load(Some(file.path()), env, overrides)
    }

    #[test]
    fn no_config_at_all_gives_the_documented_defaults() {
        let config = Config::load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(config.bind, "127.0.0.1:7400");
        assert_eq!(config.data_dir, PathBuf::from("./events-data"));
        assert!(config.redis.is_none(), "embedded transport by default");
        assert!(config.auth.tokens.is_empty());
        assert_eq!(config.limits.max_body_bytes, 1_048_576);
        assert_eq!(config.retention.events_days, 30);
    }

    #[test]
    fn the_checked_in_example_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events.example.toml");
        let config = Config::load(Some(&path), Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(config.redis.as_ref().unwrap().stream, "events:stream");
        assert_eq!(config.auth.tokens.len(), 2);
        assert!(config.telegram.is_some());
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = load_str(
            "bind = \"127.0.0.1:1\"\n\n[limits]\nrequests_per_secnd = 5\n",
            &[],
            &Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("requests_per_secnd"), "{text}");
        assert!(text.contains("line 4"), "{text}");
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let file = "bind = \"127.0.0.1:1000\"\ndata_dir = \"/from/file\"\n[limits]\nrequests_per_second = 7\n";
        let env = [
            ("EVENTS_BIND", "127.0.0.1:2000"),
            ("EVENTS_LIMITS__REQUESTS_PER_SECOND", "9"),
            ("EVENTS_REDIS__URL", "redis://127.0.0.1:7777"),
            ("EVENTS_TOKEN", "the CLI's variable, not daemon config"),
            ("PATH", "/usr/bin"),
        ];
        let flags = Overrides {
            bind: Some("127.0.0.1:3000".into()),
            ..Overrides::default()
        };
        let config = load_str(file, &env, &flags).unwrap();
        assert_eq!(config.bind, "127.0.0.1:3000", "flags beat env");
        assert_eq!(config.limits.requests_per_second, 9, "env beats file");
        assert_eq!(
            config.data_dir,
            PathBuf::from("/from/file"),
            "file beats defaults"
        );
        assert_eq!(config.redis.unwrap().url, "redis://127.0.0.1:7777");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = Config::load(
            None,
            vec![("EVENTS_REDIS__URLL".into(), "x".into())],
            &Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("EVENTS_REDIS__URLL") && text.contains("urll"),
            "{text}"
        );
    }

    #[test]
    fn redis_url_flag_switches_to_redis() {
        let flags = Overrides {
            redis_url: Some("redis://127.0.0.1:1234".into()),
            ..Overrides::default()
        };
        let config = Config::load(None, Vec::new(), &flags).unwrap();
        let redis = config.redis.unwrap();
        assert_eq!(redis.url, "redis://127.0.0.1:1234");
        assert_eq!(redis.group, "event-processor");
    }

    #[test]
    fn auth_off_is_refused_on_a_public_bind_and_says_why() {
        let flags = Overrides {
            bind: Some("0.0.0.0:7400".into()),
            ..Overrides::default()
        };
        let err = Config::load(None, Vec::new(), &flags)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("auth.tokens:") && err.contains("loopback"),
            "{err}"
        );
        let with_token = "bind = \"0.0.0.0:7400\"\n[[auth.tokens]]\nname = \"ops\"\ntoken = \"t\"\nroles = [\"admin\"]\n";
        assert!(load_str(with_token, &[], &Overrides::default()).is_ok());
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("bind = \"nowhere\"", "bind:"),
            ("[redis]\nurl = \"http://x\"", "redis.url:"),
            (
                "[limits]\nmax_payload_bytes = 0",
                "limits.max_payload_bytes:",
            ),
            (
                "[webhooks]\ntimeout_ms = 20000\nlease_ms = 10000",
                "webhooks.lease_ms:",
            ),
            (
                "[webhooks]\nretry_schedule_secs = []",
                "webhooks.retry_schedule_secs:",
            ),
            (
                "[telegram]\nbot_token = \"b\"\nchat_id = \"c\"\napi_base = \"ftp://x\"",
                "telegram.api_base:",
            ),
            (
                "[[auth.tokens]]\nname = \"a\"\nroles = [\"admin\"]",
                "auth.tokens[0].token:",
            ),
        ];
        for (text, prefix) in cases {
            let err = load_str(text, &[], &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(prefix), "{text:?} gave {err:?}");
        }
        let err = load_str(
            "[[auth.tokens]]\nname = \"a\"\ntoken = \"t\"\nroles = [\"boss\"]",
            &[],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("boss"), "{err}");
    }

    #[test]
    fn delivery_values_refused_while_parsing_name_the_key_and_line() {
        for (text, key) in [
            (
                "[webhooks]\nallow_destinations = [\"10.0.0.0/99\"]",
                "allow_destinations",
            ),
            (
                "[telegram]\nbot_token = \"b\"\nchat_id = \"c\"\nmin_level = 7",
                "min_level",
            ),
            ("[webhooks]\nretries = 3", "retries"),
            (
                "[telegram]\nbot_token = \"b\"\nchat_id = \"c\"\nchat = 1",
                "chat",
            ),
        ] {
            let err = load_str(text, &[], &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains("line"),
                "{text:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn webhooks_and_telegram_sections_become_the_delivery_configs() {
        let file = "[webhooks]\nallow_destinations = [\"127.0.0.0/8\"]\nretry_schedule_secs = [0, 0.5, 2]\n\
                    disable_after_failures = 3\ntimeout_ms = 2000\nlease_ms = 4000\n\
                    [telegram]\nbot_token = \"1:SECRET\"\nchat_id = \"42\"\nmin_level = \"business\"\n";
        let env = [("EVENTS_TELEGRAM__BATCH_WINDOW_MS", "100")];
        let config = load_str(file, &env, &Overrides::default()).unwrap();
        assert_eq!(config.webhooks.retry_schedule_secs, vec![0.0, 0.5, 2.0]);
        assert_eq!(config.webhooks.schedule().max_attempts(), 3);
        assert_eq!(config.webhooks.disable_after_failures, 3);
        assert_eq!(config.webhooks.lease_ms, 4000);
        assert!(
            config
                .webhooks
                .guard()
                .check_addr("127.0.0.1".parse().unwrap())
                .is_ok()
        );
        let telegram = config.telegram.unwrap();
        assert_eq!(telegram.min_level, events_envelope::EventLevel::Business);
        assert_eq!(telegram.batch_window_ms, 100, "env overrides the file");
        assert_eq!(
            Config::default().webhooks.schedule().max_attempts(),
            8,
            "the Svix schedule by default"
        );
    }
}
