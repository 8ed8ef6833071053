//! One module per subcommand; each takes parsed arguments and writes to `out`.

pub(crate) mod catalog;
pub(crate) mod dead_letters;
pub(crate) mod emit;
pub(crate) mod notifications;
pub(crate) mod tail;
pub(crate) mod webhooks;
