//! The small SQL surface the shared metadata logic runs on: statements with `?N`
//! placeholders, dynamically typed values and rows. SQLite and PostgreSQL each implement
//! [`Db`] for one open transaction.
//!
//! Statements are written in the SQL both databases accept (upserts with `ON CONFLICT`,
//! `RETURNING`, `CAST(? AS BIGINT)` where a bare parameter has no type); the few places
//! where they differ ask [`Db::dialect`].

use crate::error::{Result, ServerError};

/// Which database a [`Db`] talks to, for the few statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter or column value. Integers of every width travel as `Int`; PostgreSQL
/// booleans are read as 0/1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Blob(Vec<u8>),
    Text(String),
}

/// One open transaction.
pub trait Db {
    fn dialect(&self) -> Dialect;
    /// Runs a statement and returns every row it yields.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs a statement and returns the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64>;

    /// The first row, if any.
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row, which must exist.
    fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| ServerError::internal(format!("no row from: {sql}")))
    }
}

/// A result row.
#[derive(Clone, Debug, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, index: usize) -> Result<&Value> {
        self.0
            .get(index)
            .ok_or_else(|| ServerError::internal(format!("row has no column {index}")))
    }

    fn mismatch(&self, index: usize, wanted: &str) -> ServerError {
        ServerError::internal(format!(
            "metadata store: column {index} is {:?}, wanted {wanted}",
            self.0.get(index)
        ))
    }

    pub fn opt_i64(&self, index: usize) -> Result<Option<i64>> {
        match self.at(index)? {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(*value)),
            _ => Err(self.mismatch(index, "an integer")),
        }
    }

    pub fn i64(&self, index: usize) -> Result<i64> {
        self.opt_i64(index)?
            .ok_or_else(|| self.mismatch(index, "an integer"))
    }

    /// An id or size stored as a signed 64-bit integer.
    pub fn u64(&self, index: usize) -> Result<u64> {
        Ok(self.i64(index)? as u64)
    }

    pub fn u32(&self, index: usize) -> Result<u32> {
        u32::try_from(self.i64(index)?).map_err(|_| self.mismatch(index, "a 32-bit value"))
    }

    pub fn bool(&self, index: usize) -> Result<bool> {
        Ok(self.i64(index)? != 0)
    }

    pub fn opt_blob(&self, index: usize) -> Result<Option<Vec<u8>>> {
        match self.at(index)? {
            Value::Null => Ok(None),
            Value::Blob(bytes) => Ok(Some(bytes.clone())),
            Value::Text(text) => Ok(Some(text.as_bytes().to_vec())),
            _ => Err(self.mismatch(index, "bytes")),
        }
    }

    pub fn blob(&self, index: usize) -> Result<Vec<u8>> {
        self.opt_blob(index)?
            .ok_or_else(|| self.mismatch(index, "bytes"))
    }

    pub fn text(&self, index: usize) -> Result<String> {
        match self.at(index)? {
            Value::Text(text) => Ok(text.clone()),
            Value::Blob(bytes) => {
                String::from_utf8(bytes.clone()).map_err(|_| self.mismatch(index, "UTF-8 text"))
            }
            _ => Err(self.mismatch(index, "text")),
        }
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

/// Ids and sizes are stored as the signed 64-bit integers both databases have.
impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::Int(value as i64)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Blob(value.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(value: &[u8; N]) -> Self {
        Value::Blob(value.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Value::Blob(value)
    }
}

impl From<&Vec<u8>> for Value {
    fn from(value: &Vec<u8>) -> Self {
        Value::Blob(value.clone())
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_string())
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `args![a, b]` is `&[Value::from(a), Value::from(b)]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::meta::sql::db::Value::from($value)),*][..]
    };
}
pub(crate) use args;

/// Rewrites `?N` placeholders as PostgreSQL's `$N`. The shared statements hold no `?`
/// inside string literals.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|next| next.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollar_numbers() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?12)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $12)"
        );
    }

    #[test]
    fn rows_convert_between_integer_widths_and_bytes() {
        let row = Row(vec![Value::Int(7), Value::Null, Value::Text("x".into())]);
        assert_eq!(row.u32(0).unwrap(), 7);
        assert_eq!(row.opt_i64(1).unwrap(), None);
        assert!(row.i64(1).is_err());
        assert_eq!(row.blob(2).unwrap(), b"x");
    }
}
