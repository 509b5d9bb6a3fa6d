//! Extension points for the crates above the store (connectors, modules, gateway features) that
//! own tables of their own: plain SQL statements applied by the group-commit writer, either
//! together with records and messages in one atomic [`Txn`], or as consumer effects committed
//! with an ack ([`crate::Effect::Sql`]). Reads of such tables go through [`Store::reader`].
//!
//! Statements are written once for both backends with `$N` placeholders. Keep to the types
//! both backends share: `BIGINT` / `INTEGER` (bound as `i64`), `DOUBLE PRECISION` / `REAL`,
//! `TEXT`.

use serde_json::Value;
use sqlx::AnyPool;
use xfhub_schemas::Envelope;

use crate::security::AuditDraft;
use crate::writer::{ImportErrorItem, IngestItem, IngestOutcome};
use crate::{Result, Store};

/// A bind value. Nulls are typed, because PostgreSQL checks a parameter's type against its
/// column even when the value is NULL.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(Some(v))
    }
}
impl From<i32> for SqlValue {
    fn from(v: i32) -> Self {
        SqlValue::Int(Some(i64::from(v)))
    }
}
impl From<u32> for SqlValue {
    fn from(v: u32) -> Self {
        SqlValue::Int(Some(i64::from(v)))
    }
}
/// Flags are stored as 0 / 1 integers on both backends.
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(Some(i64::from(v)))
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(Some(v))
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(Some(v))
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(Some(v.to_owned()))
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(Some(v.clone()))
    }
}
impl From<Option<i64>> for SqlValue {
    fn from(v: Option<i64>) -> Self {
        SqlValue::Int(v)
    }
}
impl From<Option<f64>> for SqlValue {
    fn from(v: Option<f64>) -> Self {
        SqlValue::Real(v)
    }
}
impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        SqlValue::Text(v)
    }
}
impl From<Option<&str>> for SqlValue {
    fn from(v: Option<&str>) -> Self {
        SqlValue::Text(v.map(str::to_owned))
    }
}

/// One SQL statement with `$N` placeholders and its bind values, in order.
///
/// ```
/// # use xfhub_store::Stmt;
/// let s = Stmt::new("UPDATE connector_cursors SET cursor = $1 WHERE name = $2")
///     .bind("2024-03-05T10:00:00Z")
///     .bind("provincial");
/// assert_eq!(s.args().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    sql: String,
    args: Vec<SqlValue>,
    single_use: bool,
}

impl Stmt {
    pub fn new(sql: impl Into<String>) -> Self {
        Stmt {
            sql: sql.into(),
            args: Vec::new(),
            single_use: false,
        }
    }

    /// Marks a statement whose text is used once (values formatted into it, such as a list of
    /// row ids): it is not kept prepared in the connection's statement cache, where it would
    /// only push out statements that are used again.
    pub fn single_use(mut self) -> Self {
        self.single_use = true;
        self
    }

    /// Appends the value of the next placeholder.
    pub fn bind(mut self, v: impl Into<SqlValue>) -> Self {
        self.args.push(v.into());
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn args(&self) -> &[SqlValue] {
        &self.args
    }

    /// The statement as an sqlx query, for reads through [`Store::reader`].
    pub fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        self.args.iter().fold(
            sqlx::query(&self.sql).persistent(!self.single_use),
            |q, a| a.bind_to(q),
        )
    }
}

impl SqlValue {
    /// Binds this value as the query's next argument.
    pub(crate) fn bind_to<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        match self {
            SqlValue::Int(v) => q.bind(*v),
            SqlValue::Real(v) => q.bind(*v),
            SqlValue::Text(v) => q.bind(v.as_deref()),
        }
    }
}

/// Writes applied atomically: all of them commit in one transaction, or none does. The writer
/// applies them in the order of the fields: ingests, import errors, published messages,
/// statements, audit entries. A pull connector puts the records of a page, the page's rejects
/// and its cursor update in one `Txn`, so the cursor never runs ahead of what it covers.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    /// Records to store; each answers as [`Store::ingest`] would (a repeat is a
    /// [`IngestOutcome::Duplicate`] and publishes nothing).
    pub ingests: Vec<IngestItem>,
    /// Records that failed mapping or validation.
    pub import_errors: Vec<ImportErrorItem>,
    /// Messages to publish through the outbox; one whose message id is in the outbox already is
    /// not published again.
    pub publish: Vec<Envelope<Value>>,
    /// Writes to the caller's own tables.
    pub statements: Vec<Stmt>,
    /// Entries for the audit chain.
    pub audit: Vec<AuditDraft>,
}

impl Txn {
    pub fn is_empty(&self) -> bool {
        self.ingests.is_empty()
            && self.import_errors.is_empty()
            && self.publish.is_empty()
            && self.statements.is_empty()
            && self.audit.is_empty()
    }
}

/// What a [`Txn`] did, each list in the order of its input.
#[derive(Debug, Clone, Default)]
pub struct TxnOutcome {
    pub ingests: Vec<IngestOutcome>,
    /// Ids of the stored import errors.
    pub import_errors: Vec<i64>,
    /// Rows affected by each statement.
    pub rows_affected: Vec<u64>,
    /// Sequence numbers of the audit entries.
    pub audit: Vec<i64>,
}

impl Store {
    /// Applies `txn` atomically in the writer's next group commit; durable when it returns.
    pub async fn transact(&self, txn: Txn) -> Result<TxnOutcome> {
        if txn.is_empty() {
            return Ok(TxnOutcome::default());
        }
        self.submit(|r| crate::writer::Job::Txn(Box::new(txn), r))
            .await
    }

    /// The read pool, for queries on tables a feature owns. Never write through it: writes
    /// go through the writer ([`Store::transact`], [`crate::Effect::Sql`]), which keeps one
    /// writer per database and commits in groups.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }
}
