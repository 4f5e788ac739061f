//! What the delivery asks of coordination before a put: whether this
//! instance still holds a shard's lease. A trait of its own, below both the
//! pipeline (which asks) and the keeper (which answers), so that neither
//! depends on the other.

use spillway_transforms::SourceId;

/// Which shards' leases this instance holds (with coordination, the
/// keeper: [`super::keeper::Keeper`]).
pub trait Leases: Send + Sync {
    fn holds(&self, shard: &SourceId) -> bool;
}
