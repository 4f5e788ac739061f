//! Several instances on one stream (issue #22, in progress): shard leases
//! in a DynamoDB table, as the Kinesis Client Library keeps them.
//!
//! What is here: the lease item and its errors ([`lease`]), the table with
//! every write fenced by the lease counter ([`dynamodb`]), when a lease
//! counts as expired ([`expiry`]), and which leases an instance takes
//! ([`balance`]), and `[coordination]`'s keys and their checks
//! ([`config`]). Not yet: wiring them into the Kinesis source and the
//! checkpointer, so `validate` and `run` still refuse `[coordination]` in
//! one line. The design, and why the new owner of a shard redoes its last
//! owner's intents: `docs/leases.md`.

pub mod balance;
pub mod config;
pub mod dynamodb;
pub mod expiry;
pub mod keeper;
pub mod lease;
pub mod store;

pub use lease::{Lease, LeaseError};
