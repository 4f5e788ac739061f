//! The label sets of spillway's metrics: every series is one pipeline's
//! (`stream`), some also one shard's, destination's or reason's. Apart
//! from the registry so that the health state can name its pipeline
//! without the registry and the health state importing each other.

use prometheus_client::encoding::EncodeLabelSet;

/// Every series is one pipeline's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

/// A Kinesis shard of a pipeline.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub stream: String,
    pub shard: String,
}

/// What a destination received: `destination` is `local`, `s3` or `http`;
/// `output` is `data` or an error output type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub stream: String,
    pub destination: String,
    pub output: String,
}

/// One attempt at a put or a request: `result` is `success` or `failure`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub stream: String,
    pub destination: String,
    pub result: String,
}

/// A destination of a pipeline.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub stream: String,
    pub destination: String,
}

/// A buffer flush, by reason (`size`, `interval`, `shutdown`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlushLabels {
    pub stream: String,
    pub reason: String,
}

/// Error records, by error output type (`processing-failed`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub stream: String,
    pub output_type: String,
}

/// A lease this instance lost, by why: `taken` (another instance wrote
/// it) or `unproven` (not renewed for a lease duration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LossLabels {
    pub stream: String,
    pub reason: String,
}

/// A retry: which operation (`put`, `http_request`, `checkpoint_save`,
/// `get_records`, `get_shard_iterator`) and what kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub stream: String,
    pub operation: String,
    pub kind: String,
}
