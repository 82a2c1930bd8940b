//! The Loft server: gRPC services over a metadata store and a chunk store.

pub mod auth;
pub mod check;
pub mod chunk_store;
pub mod conflict_name;
pub mod connection_gauge;
pub mod error;
pub mod journal_hub;
pub mod meta;
pub mod mount_name;
pub mod server;
pub mod services;
pub mod storage;

pub use error::{Result, ServerError};
pub use server::{Backend, Listen, ServerConfig, TlsFiles, add_user, add_user_to, serve};
pub use storage::{ChunkLocation, MetaLocation, StorageConfig};
