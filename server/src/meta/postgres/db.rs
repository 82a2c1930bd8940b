//! [`Db`] on a PostgreSQL transaction.
//!
//! The shared metadata logic is synchronous; it runs on tokio's blocking pool, and each
//! statement is driven to completion there with [`Handle::block_on`].

use std::cell::Cell;
use std::error::Error;

use bytes::BytesMut;
use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::{Result, ServerError};
use crate::meta::sql::db::{Db, Dialect, Row, Value, to_postgres};

/// One open PostgreSQL transaction.
pub struct PgDb<'a> {
    pub tx: &'a deadpool_postgres::Transaction<'a>,
    pub runtime: &'a Handle,
    /// The SQLSTATE of the last failed statement, so the engine can tell a lost
    /// serialization race (retry) from a real error.
    pub failed: Cell<Option<SqlState>>,
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(value) => match *ty {
                Type::INT8 => value.to_sql(ty, out),
                Type::INT4 => i32::try_from(*value)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*value)?.to_sql(ty, out),
                Type::BOOL => (*value != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => value.to_string().to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Value::Blob(bytes) => bytes.as_slice().to_sql(ty, out),
            Value::Text(text) => text.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn row_values(row: &tokio_postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(index)?
                .map(|v| Value::Int(i64::from(v))),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(index)?
                .map(|v| Value::Int(i64::from(v))),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(index)?
                .map(|v| Value::Int(i64::from(v))),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(index)?.map(Value::Blob),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(index)?.map(Value::Text)
            }
            Type::VOID => None,
            ref other => {
                return Err(ServerError::internal(format!(
                    "metadata store: unexpected column type {other}"
                )));
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl PgDb<'_> {
    fn note<T>(&self, result: std::result::Result<T, tokio_postgres::Error>) -> Result<T> {
        result.map_err(|error| {
            // The first failure counts: after it, PostgreSQL fails every statement of the
            // transaction with "current transaction is aborted", which says nothing about
            // whether a retry would succeed (the logic ignores a few errors on purpose).
            let first = self.failed.take().or_else(|| error.code().cloned());
            self.failed.set(first);
            ServerError::from(error)
        })
    }
}

impl Db for PgDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let sql = to_postgres(sql);
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = self.runtime.block_on(async {
            let statement = self.tx.prepare_cached(&sql).await?;
            self.tx.query(&statement, &params).await
        });
        self.note(rows)?.iter().map(row_values).collect()
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let sql = to_postgres(sql);
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let changed = self.runtime.block_on(async {
            let statement = self.tx.prepare_cached(&sql).await?;
            self.tx.execute(&statement, &params).await
        });
        self.note(changed)
    }
}
