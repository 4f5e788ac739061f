//! Several instances on one stream (issue #22, in progress): shard leases
//! in a DynamoDB table, as the Kinesis Client Library keeps them.
//!
//! What is here: the lease item and its errors ([`lease`]), the table with
//! every write fenced by the lease counter ([`dynamodb`]), when a lease
//! counts as expired ([`expiry`]), which leases an instance takes
//! ([`balance`]), one instance's lease loop ([`keeper`]), the checkpoint
//! store that keeps each held shard's state in its lease ([`store`]),
//! `[coordination]`'s keys ([`config`]) and `spillway leases` ([`listing`]).
//! The Kinesis source's side is `crate::source::kinesis::leased`, and the
//! pipeline's `crate::pipeline::coordinated`. Not yet: the new owner
//! redoing its last owner's intents (a lease holding some is kept and its
//! shard not read). The design, what is built and what is left:
//! `docs/leases.md`.

pub mod balance;
pub mod config;
pub mod dynamodb;
pub mod expiry;
pub mod holds;
pub mod keeper;
pub mod lease;
pub mod listing;
pub mod store;

pub use lease::{Lease, LeaseError};

use crate::source::kinesis::api::StreamRef;

/// The partition key of a pipeline's leases in the table:
/// `"<pipeline>#<stream name>"`, the name taken from the ARN when the
/// configuration gives one, so that instances configured either way share
/// one set of leases, and `spillway leases` finds them without asking
/// Kinesis. (A table lives in one account and region; two streams of one
/// name elsewhere archived under one pipeline name would share leases:
/// name the pipelines apart.)
pub fn namespace(pipeline: &str, stream: &StreamRef) -> String {
    let stream = match stream {
        StreamRef::Name(name) => name.as_str(),
        StreamRef::Arn(arn) => arn.rsplit_once(":stream/").map_or(arn.as_str(), |(_, name)| name),
    };
    format!("{pipeline}#{stream}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_named_or_given_by_arn_has_one_namespace() {
        let by_name = namespace("orders", &StreamRef::Name("archive-stream".into()));
        let by_arn = namespace(
            "orders",
            &StreamRef::Arn("arn:aws:kinesis:eu-west-1:123456789012:stream/archive-stream".into()),
        );
        assert_eq!(by_name, "orders#archive-stream");
        assert_eq!(by_arn, by_name);
        assert_ne!(namespace("clicks", &StreamRef::Name("archive-stream".into())), by_name);
    }
}
