//! Search over names and text content, within what the caller can read (online-only
//! files included: the server reads the text, not the client).
//!
//! A search first waits, up to [`CATCH_UP`], for the indexer to cover every journal
//! entry of the caller's namespaces that existed when the search began, so that it sees
//! every version committed before it; then it queries the index in the metadata store
//! (which applies the caller's memberships) and cuts a snippet from each hit's text.

pub mod indexer;
pub mod text;

use futures::future::BoxFuture;
use std::time::Duration;

use loft_remote::proto::NodeKind;
use tokio::time::Instant;

use crate::error::{Result, ServerError};
use crate::meta::sql::search::words;
use crate::meta::{Caller, MetaStore};
use indexer::Indexer;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 256;
/// Most words in a query.
pub const MAX_TERMS: usize = 16;
/// Hits returned when the request names no limit.
pub const DEFAULT_LIMIT: u32 = 20;
/// Most hits one search returns.
pub const MAX_LIMIT: u32 = 200;
/// How long a search waits for the indexer before it answers from what is indexed.
pub const CATCH_UP: Duration = Duration::from_secs(5);
/// How often a waiting search looks again when no local pass ends (another server
/// process may hold the indexing lease).
const RECHECK: Duration = Duration::from_millis(100);

/// One search result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub node: u64,
    /// The path in the caller's drive.
    pub path: Vec<u8>,
    pub kind: NodeKind,
    pub snippet: String,
}

/// The words of a query, lower-case; every one must match (as a word prefix).
pub fn parse_query(query: &str) -> Result<Vec<String>> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ServerError::invalid(format!(
            "the search query is {} bytes long; at most {MAX_QUERY_BYTES} are allowed",
            query.len()
        )));
    }
    let terms: Vec<String> = words(query)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    if terms.is_empty() {
        return Err(ServerError::invalid(
            "the search query has no words to look for",
        ));
    }
    if terms.len() > MAX_TERMS {
        return Err(ServerError::invalid(format!(
            "the search query has {} words; at most {MAX_TERMS} are allowed",
            terms.len()
        )));
    }
    Ok(terms)
}

/// Searches the caller's drive for `query`; `limit` 0 means [`DEFAULT_LIMIT`].
pub fn search<'a>(
    meta: &'a dyn MetaStore,
    indexer: &'a Indexer,
    caller: &'a Caller,
    query: &'a str,
    limit: u32,
) -> BoxFuture<'a, Result<Vec<SearchHit>>> {
    Box::pin(async move {
        let terms = parse_query(query)?;
        let limit = match limit {
            0 => DEFAULT_LIMIT,
            limit => limit.min(MAX_LIMIT),
        };
        catch_up(meta, indexer, caller).await?;
        let rows = meta.search(caller, terms.clone(), limit).await?;
        Ok(rows
            .into_iter()
            .map(|row| SearchHit {
                node: row.node,
                path: row.path,
                kind: row.kind,
                snippet: text::snippet(&row.body, &terms),
            })
            .collect())
    })
}

/// Waits, at most [`CATCH_UP`], until the index covers the journals of the caller's
/// namespaces as they are now.
async fn catch_up(meta: &dyn MetaStore, indexer: &Indexer, caller: &Caller) -> Result<()> {
    let heads = meta.search_heads(caller).await?;
    let deadline = Instant::now() + CATCH_UP;
    let mut passes = indexer.passes();
    loop {
        if meta.search_covers(heads.clone()).await? {
            return Ok(());
        }
        indexer.wake();
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                user = caller.user_id,
                "search answered before the index caught up"
            );
            return Ok(());
        }
        let _ = tokio::time::timeout((deadline - now).min(RECHECK), passes.changed()).await;
    }
}
