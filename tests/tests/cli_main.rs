//! The real `events` binary against the real `events-daemon` (issue 7 acceptance), plus the
//! check that docs/operations.md documents exactly the daemon's configuration keys.
//!
//! Both binaries are found next to the test executable (`target/<profile>/`); `cargo test
//! --workspace` builds them. `EVENTS_CLI_BIN` points at another `events` binary.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use events_e2e::{DaemonProcess, daemon_binary, free_port};
use serde_json::Value;

/// Generous bound for anything asynchronous to become visible (shared, noisy 2-core machine).
const DEADLINE: Duration = Duration::from_secs(30);

/// The `events` binary under test.
fn events_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EVENTS_CLI_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/events
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable inside target/<profile>/deps");
    let path = profile_dir.join(format!("events{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not found: build it with `cargo build -p events-cli` (or run the tests with `cargo test --workspace`), \
         or point EVENTS_CLI_BIN at a binary",
        path.display()
    );
    path
}

/// `events` with a clean environment: no EVENTS_* of the developer's shell leaks in.
fn events_command(args: &[&str]) -> Command {
    let mut command = Command::new(events_binary());
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EVENTS_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    command
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn events(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = events_command(args)
        .output()
        .unwrap_or_else(|err| panic!("running events {args:?}: {err}"));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `events --url <daemon> ARGS...`, asserting exit 0.
fn events_ok(daemon: &DaemonProcess, args: &[&str]) -> Run {
    let url = daemon.url();
    let mut all = vec!["--url", url.as_str()];
    all.extend_from_slice(args);
    let run = events(&all);
    assert_eq!(
        run.code,
        0,
        "events {all:?} failed: {run:?}\ndaemon log:\n{}",
        daemon.log()
    );
    run
}

/// Polls `notifications list --json` until a row matches.
fn wait_for_notification(daemon: &DaemonProcess, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let run = events_ok(
            daemon,
            &["notifications", "list", "--json", "--limit", "200"],
        );
        let page: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|err| panic!("--json output is not JSON ({err}): {}", run.stdout));
        if let Some(found) = page["notifications"]
            .as_array()
            .expect("notifications array")
            .iter()
            .find(|n| matches(n))
        {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "notification not listed within {DEADLINE:?}: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The built-in schemas of brief §5 (the seed's `system.*` and software-development set).
const BUILTIN_TYPES: &[&str] = &[
    "system.daemon.restarted",
    "system.worker.crashed",
    "domain.software-development.planning.todo_created",
    "domain.software-development.planning.todo_dumped",
    "domain.software-development.planning.todo_activated",
    "domain.software-development.planning.artifact_changed",
    "domain.software-development.planning.dependency_resolved",
    "domain.software-development.planning.dor_assessed",
    "domain.software-development.build.completed",
    "domain.software-development.review.verdict_ready",
    "domain.software-development.review.needs_decision",
];

#[test]
fn catalog_list_shows_every_builtin_type_without_a_daemon() {
    // A URL where nothing listens: the catalog must not need the daemon.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let run = events(&["--url", &unreachable, "catalog", "list"]);
    assert_eq!(run.code, 0, "{run:?}");
    let header = run.stdout.lines().next().expect("a header line");
    for column in [
        "EVENT TYPE",
        "LEVEL",
        "DOMAIN",
        "VISIBILITY",
        "ACTIONABLE",
        "DESCRIPTION",
    ] {
        assert!(
            header.contains(column),
            "{column} missing from header {header:?}"
        );
    }
    let listed: BTreeSet<&str> = run
        .stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for event_type in BUILTIN_TYPES {
        assert!(
            listed.contains(event_type),
            "{event_type} missing from\n{}",
            run.stdout
        );
    }
    let crashed = run
        .stdout
        .lines()
        .find(|l| l.starts_with("system.worker.crashed "))
        .expect("worker.crashed row");
    assert!(
        crashed.contains("OPERATIONAL") && crashed.contains("cluster") && crashed.contains("yes"),
        "{crashed}"
    );

    // --json lists the same types.
    let json = events(&["catalog", "list", "--json"]);
    let value: Value = serde_json::from_str(&json.stdout).expect("catalog --json is JSON");
    let json_types: BTreeSet<&str> = value["schemas"]
        .as_array()
        .expect("schemas array")
        .iter()
        .filter_map(|s| s["event_type"].as_str())
        .collect();
    assert_eq!(json_types, listed);
}

#[test]
fn emit_then_notifications_list_json_shows_it() {
    let daemon = DaemonProcess::start();
    let run = events_ok(
        &daemon,
        &[
            "emit",
            "domain.software-development.planning.todo_created",
            "--source",
            "cli-test",
            "--level",
            "workflow",
            "--description",
            "todo cli-emit created",
            "--payload",
            r#"{"slug":"cli-emit"}"#,
        ],
    );
    assert!(
        run.stdout
            .starts_with("emitted domain.software-development.planning.todo_created id="),
        "{run:?}"
    );

    let row = wait_for_notification(&daemon, |n| n["payload"]["slug"] == "cli-emit");
    assert_eq!(
        row["event_type"],
        "domain.software-development.planning.todo_created"
    );
    assert_eq!(row["source"], "cli-test");
    assert_eq!(row["level"], 2);
    assert_eq!(row["human_status"], "unseen");

    // The table shows the same row with the level by name.
    let table = events_ok(
        &daemon,
        &["notifications", "list", "--domain", "software-development"],
    );
    let line = table
        .stdout
        .lines()
        .find(|l| l.contains("todo cli-emit created"))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(
        line.contains("WORKFLOW") && line.contains("unseen"),
        "{line}"
    );

    // seen / show round trip.
    let id = row["id"].to_string();
    events_ok(&daemon, &["notifications", "seen", &id]);
    let shown = events_ok(&daemon, &["notifications", "show", &id, "--json"]);
    let shown: Value = serde_json::from_str(&shown.stdout).expect("show --json is JSON");
    assert_eq!(shown["human_status"], "seen");
}

#[test]
fn second_claim_by_another_agent_exits_1_with_the_conflict() {
    let daemon = DaemonProcess::start();
    events_ok(
        &daemon,
        &[
            "emit",
            "system.worker.crashed",
            "--source",
            "cli-test",
            "--payload",
            r#"{"worker_name":"w-claim"}"#,
        ],
    );
    let row = wait_for_notification(&daemon, |n| n["payload"]["worker_name"] == "w-claim");
    assert_eq!(row["actionable"], true);
    let id = row["id"].to_string();

    let first = events_ok(
        &daemon,
        &["notifications", "claim", &id, "--agent", "agent-a"],
    );
    assert!(
        first.stdout.contains("claimed") && first.stdout.contains("agent-a"),
        "{first:?}"
    );

    let url = daemon.url();
    let second = events(&[
        "--url",
        &url,
        "notifications",
        "claim",
        &id,
        "--agent",
        "agent-b",
    ]);
    assert_eq!(second.code, 1, "{second:?}");
    assert!(second.stderr.starts_with("error: conflict: "), "{second:?}");
    assert_eq!(second.stderr.lines().count(), 1, "one line: {second:?}");
    assert!(second.stdout.is_empty(), "{second:?}");

    // The holder can carry on: in_progress, then resolve.
    events_ok(
        &daemon,
        &[
            "notifications",
            "status",
            &id,
            "in_progress",
            "--agent",
            "agent-a",
        ],
    );
    let resolved = events_ok(
        &daemon,
        &[
            "notifications",
            "resolve",
            &id,
            "--summary",
            "restarted the worker",
            "--agent",
            "agent-a",
            "--json",
        ],
    );
    let resolved: Value = serde_json::from_str(&resolved.stdout).expect("resolve --json is JSON");
    assert_eq!(resolved["agent_status"], "resolved", "{resolved}");
}

/// A running `events tail` whose stdout lines arrive on a channel; killed on drop.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tail_prints_events_emitted_after_it_started() {
    let daemon = DaemonProcess::start();
    let url = daemon.url();
    let mut child = events_command(&["--url", &url, "tail", "--type", "cli.tail.*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning events tail");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let tail = Tail { child, lines };

    // Tail subscribes asynchronously, so keep emitting (numbered) until one shows up; events
    // of other types must never be printed.
    events_ok(
        &daemon,
        &["emit", "other.tail.ignored", "--source", "cli-test"],
    );
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0;
    let line = loop {
        n += 1;
        let payload = format!(r#"{{"n":{n}}}"#);
        events_ok(
            &daemon,
            &[
                "emit",
                "cli.tail.ping",
                "--source",
                "cli-test",
                "--payload",
                &payload,
            ],
        );
        match tail.lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => break line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    Instant::now() < deadline,
                    "tail printed nothing within {DEADLINE:?}; log:\n{}",
                    daemon.log()
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("events tail exited early; daemon log:\n{}", daemon.log())
            }
        }
    };
    assert!(
        line.contains("cli.tail.ping") && line.contains("source=cli-test"),
        "{line}"
    );
    assert!(!line.contains("other.tail.ignored"), "{line}");
}

#[test]
fn unreachable_daemon_exits_1_saying_what_to_do() {
    let url = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["notifications", "list"],
        vec!["emit", "cli.test.ping", "--source", "t"],
        vec!["tail"],
    ] {
        let mut all = vec!["--url", url.as_str()];
        all.extend(args.iter().copied());
        let run = events(&all);
        assert_eq!(run.code, 1, "{all:?}: {run:?}");
        assert_eq!(
            run.stderr.trim_end(),
            format!(
                "error: cannot reach the daemon at {url}: connection refused — is events-daemon running?"
            ),
            "{all:?}"
        );
    }
}

#[test]
fn bad_payload_json_exits_2_naming_the_problem() {
    // Never reaches the network: the URL is unreachable on purpose.
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = events(&[
        "--url",
        &url,
        "emit",
        "cli.test.bad",
        "--source",
        "t",
        "--payload",
        "{\"a\": 1,\n \"b\": }",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: --payload is not valid JSON: "),
        "{run:?}"
    );
    assert!(run.stderr.contains("line 2 column 7"), "{run:?}");

    let run = events(&[
        "--url",
        &url,
        "emit",
        "cli.test.bad",
        "--source",
        "t",
        "--payload",
        "[1, 2]",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("must be a JSON object"), "{run:?}");

    // Usage errors are clap's: also exit 2.
    let run = events(&["emit", "cli.test.bad"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--source"), "{run:?}");
}

// ---- docs/operations.md ⇄ the daemon's configuration ----

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// Keys of the configuration reference table in docs/operations.md: the first cell of every
/// row of the form ``| `redis.url` | ...``, between "## Configuration reference" and the
/// next `## ` heading. `auth.tokens[].name` is written with `[]` for arrays of tables.
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Configuration reference"))
        .expect("docs/operations.md has a `## Configuration reference` section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(key, _)| key.replace("[]", "")))
        .collect()
}

/// Keys set in events.example.toml (`[section]` / `[[section]]` headers + `key =` lines).
fn example_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("events.example.toml"))
        .expect("events.example.toml");
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            keys.insert(if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    keys
}

/// The keys the daemon's config struct accepts in `section` (`""` = top level), read from
/// the daemon itself: a config with an unknown key `zz_probe` there makes it refuse to start
/// with serde's "unknown field `zz_probe`, expected one of `a`, `b`, ...".
fn daemon_keys(section: &str, array_of_tables: bool) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = match (section, array_of_tables) {
        ("", _) => "zz_probe = 1\n".to_owned(),
        // Array entries need their required keys to reach the unknown-field check.
        (s, true) => format!("[[{s}]]\nname = \"probe\"\nzz_probe = 1\n"),
        (s, false) => format!("[{s}]\nzz_probe = 1\n"),
    };
    let config = dir.path().join("probe.toml");
    std::fs::write(&config, text).expect("write probe config");
    let mut child = Command::new(daemon_binary())
        .arg("--config")
        .arg(&config)
        .arg("--bind")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning events-daemon");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("waiting for the daemon").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "events-daemon started with an unknown key in [{section}]: it must refuse unknown keys"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("daemon output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "daemon accepted zz_probe in [{section}]"
    );
    let expected = stderr
        .split_once("unknown field `zz_probe`, expected ")
        .map(|(_, rest)| rest.lines().next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no unknown-field message for [{section}] in:\n{stderr}"));
    let prefix = if section.is_empty() {
        String::new()
    } else {
        format!("{section}.")
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|key| format!("{prefix}{key}"))
        .collect()
}

#[test]
fn operations_doc_lists_exactly_the_daemons_config_keys() {
    let documented = documented_keys();
    assert!(
        documented.len() > 20,
        "suspiciously few documented keys: {documented:?}"
    );

    // The daemon's own key lists, section by section: the top level, every section the
    // docs name and their parents (`auth` holds `auth.tokens`). A key that names a probed
    // section is a table, not a leaf.
    let mut sections: BTreeSet<String> = BTreeSet::from([String::new()]);
    for key in &documented {
        let mut path = key.as_str();
        while let Some((parent, _)) = path.rsplit_once('.') {
            sections.insert(parent.to_owned());
            path = parent;
        }
    }
    let mut actual = BTreeSet::new();
    for section in &sections {
        // `[[auth.tokens]]` is the one array of tables.
        for key in daemon_keys(section, section == "auth.tokens") {
            if !sections.contains(&key) {
                actual.insert(key);
            }
        }
    }
    let undocumented: Vec<_> = actual.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&actual).collect();
    assert!(
        undocumented.is_empty(),
        "config keys missing from docs/operations.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/operations.md documents keys the daemon does not have: {unknown:?}"
    );
}

/// `events.example.toml` promises "every key, with its default or an example value".
#[test]
fn example_config_shows_every_documented_key() {
    let documented = documented_keys();
    let example = example_keys();
    let missing_from_example: Vec<_> = documented.difference(&example).collect();
    let extra_in_example: Vec<_> = example.difference(&documented).collect();
    assert!(
        missing_from_example.is_empty(),
        "keys missing from events.example.toml: {missing_from_example:?}"
    );
    assert!(
        extra_in_example.is_empty(),
        "events.example.toml keys missing from the docs: {extra_in_example:?}"
    );
}
