//! [`Db`] on a rusqlite transaction.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ToSql, Transaction};

use crate::error::{Result, ServerError};
use crate::meta::sql::db::{Db, Dialect, Row, Value};

/// One open SQLite transaction.
pub struct SqliteDb<'a, 'c>(pub &'a Transaction<'c>);

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(value) => ToSqlOutput::Borrowed(ValueRef::Integer(*value)),
            Value::Blob(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}

fn value(column: ValueRef<'_>) -> Result<Value> {
    Ok(match column {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(value) => Value::Int(value),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        ValueRef::Text(text) => Value::Text(
            String::from_utf8(text.to_vec())
                .map_err(|_| ServerError::internal("metadata store: text is not UTF-8"))?,
        ),
        ValueRef::Real(_) => {
            return Err(ServerError::internal(
                "metadata store: unexpected floating-point column",
            ));
        }
    })
}

impl Db for SqliteDb<'_, '_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut statement = self.0.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|index| value(row.get_ref(index)?))
                .collect::<Result<Vec<_>>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut statement = self.0.prepare_cached(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(params))? as u64)
    }
}
