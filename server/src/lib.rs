//! The Loft server: gRPC services over a metadata store and a chunk store, and the HTTP
//! gateway for public links.

pub mod auth;
pub mod background;
pub mod check;
pub mod chunk_store;
pub mod error;
pub mod gateway;
pub mod journal_hub;
pub mod link_secret;
pub mod meta;
pub mod metrics;
pub mod mount_name;
pub mod prune;
pub mod rate_limit;
pub mod search;
pub mod server;
pub mod services;
pub mod storage;

pub use error::{Result, ServerError};
pub use server::{Backend, Listen, ServerConfig, TlsFiles, add_user, add_user_to, serve};
pub use storage::{ChunkLocation, MetaLocation, StorageConfig};
