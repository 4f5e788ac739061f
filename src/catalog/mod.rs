//! Catalogs that hold a table's columns: where a Parquet pipeline's
//! schema comes from when it is neither a schema file nor inferred.
//!
//! Today an AWS Glue table ([`glue`]), as Firehose's record format
//! conversion takes one. The client lives here, in the binary crate, not
//! beside the Parquet format in `spillway-transforms`: the format only
//! ever sees a [`spillway_transforms::format::parquet::Schema`], and AWS
//! stays out of the crate that encodes.

pub mod glue;
