//! Integration tests of `events-testkit` against a real `redis-server`.

mod commands;
mod lifecycle;
mod persistence;
