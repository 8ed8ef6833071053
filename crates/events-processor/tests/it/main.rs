//! Integration tests of events-processor: the same bodies run against the embedded
//! transport and a private redis-server (events-testkit) where the contract is shared.

mod claims;
mod common;
mod crash;
mod end_to_end;
mod fixtures;
mod outage;
mod poison;
mod pushes;
mod queued;
