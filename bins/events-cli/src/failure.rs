//! Why a command failed, and which exit status that earns.
//!
//! Commands return `anyhow::Result`; the errors they construct on purpose are a [`Failure`],
//! which `main` finds again with `downcast_ref` to pick the exit status. Anything else
//! (an unexpected I/O error, say) exits 1.

use std::fmt;

/// A failure the user should read as one line on stderr.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user's input is wrong (bad JSON, unknown level, invalid event): exit 2.
    BadInput(String),
    /// The daemon answered with an error, or could not be reached: exit 1.
    Server(String),
}

impl Failure {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Failure::BadInput(message.into())
    }

    pub(crate) fn server(message: impl Into<String>) -> Self {
        Failure::Server(message.into())
    }

    /// Exit status per `events --help`: 2 for the user's mistakes, 1 for the daemon's.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => 2,
            Failure::Server(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::BadInput(message) | Failure::Server(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Failure {}

/// The exit status for any error a command returned.
pub(crate) fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<Failure>().map_or(1, Failure::exit_code)
}

/// Whether the error is stdout closing under us (`events catalog list | head`): not a failure.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_help_text() {
        assert_eq!(exit_code_of(&Failure::bad_input("x").into()), 2);
        assert_eq!(exit_code_of(&Failure::server("x").into()), 1);
        assert_eq!(exit_code_of(&anyhow::anyhow!("other")), 1);
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let err = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the table");
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("nope")));
    }
}
