//! Several instances on one stream (issue #22, in progress): shard leases
//! in a DynamoDB table, as the Kinesis Client Library keeps them.
//!
//! What is here: the lease item and its errors ([`lease`]), the table with
//! every write fenced by the lease counter ([`dynamodb`]), when a lease
//! counts as expired ([`expiry`]), which leases an instance takes
//! ([`balance`]), one instance's lease loop ([`keeper`]), the checkpoint
//! store that keeps each held shard's state in its lease ([`store`]), and
//! `[coordination]`'s keys ([`config`]). The Kinesis source's side is
//! `crate::source::kinesis::leased`. Not yet: the pipeline running it and
//! the new owner redoing its last owner's intents, so `validate` and `run`
//! still refuse `[coordination]` in one line. The design, what is built and
//! what is left: `docs/leases.md`.

pub mod balance;
pub mod config;
pub mod dynamodb;
pub mod expiry;
pub mod keeper;
pub mod lease;
pub mod store;

pub use lease::{Lease, LeaseError};
