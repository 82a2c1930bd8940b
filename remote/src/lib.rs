//! Loft's wire: the gRPC protocol, the content format and the typed client.

pub mod allocator;
pub mod binary;
pub mod client;
pub mod conflict_name;
pub mod content;
pub mod errors;
pub mod names;
pub mod transfer;
pub mod units;

pub use client::{RemoteClient, RemoteError, RemoteResult};

pub mod proto {
    //! Generated protobuf and tonic code for `proto/loft.proto`.
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("loft.v1");
}
