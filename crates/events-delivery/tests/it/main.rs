//! Acceptance tests of events-delivery against local receivers (brief §10, issue 6).

mod support;
mod telegram;
mod webhooks;
