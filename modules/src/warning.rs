//! Smart warning module (5.1.5.2), consuming `petition.*` and `workorder.*`:
//!
//! - scans each record's text against the sensitive and hot word lists (`word_lists`) with one
//!   Aho-Corasick automaton over normalised text ([`crate::text::normalize`]) and tags the record
//!   with every matched word (`record_tags`);
//! - raises `alert.raised` for sensitive words and for key risk groups: group (5 or more
//!   people), beyond-level, threat (扬言: the flag, or a matched word of category `threat` /
//!   `扬言`);
//! - counts records per kind, division and day and raises a surge alert when a day's count
//!   passes the trailing baseline by the configured factor, with last month's and last year's
//!   same day where the data has them;
//! - arms a durable timer for every 12345 work order not concluded, which marks it a key risk
//!   item and raises an alert when it is still open after 10 days ([`sweep_timers`]).
//!
//! Every write is an effect committed with the ack: a redelivered message tags, counts and
//! alerts nothing twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use async_trait::async_trait;
use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use xfhub_routes::{Handler, HandlerError};
use xfhub_schemas::{Envelope, Petition, Record, WorkOrder};
use xfhub_store::{Effect, Stmt, Store, StoreError, Txn};

use crate::alerts::{raise, NewAlert};
use crate::clock::Clock;
use crate::text::normalize;

pub const WARNING_QUEUE: &str = "warning";

/// `[warning]`: settings of the warning module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarningConfig {
    /// Days of the trailing baseline of surge detection (the days before the day counted).
    pub surge_window_days: u32,
    /// A day is a surge when its count exceeds the baseline's daily mean times this factor.
    pub surge_factor: f64,
    /// ... and is at least this many records.
    pub surge_min_count: i64,
    /// Days after which a 12345 work order still not concluded is a key risk item.
    pub workorder_days: u32,
    /// How often the durable timers are checked, in seconds.
    pub timer_interval_secs: u64,
    /// How often the word lists are read again (to pick up changes made by other processes,
    /// e.g. an Excel import), in seconds. Changes through this hub's API apply at once.
    pub words_reload_secs: u64,
}

impl Default for WarningConfig {
    fn default() -> Self {
        WarningConfig {
            surge_window_days: 7,
            surge_factor: 2.0,
            surge_min_count: 10,
            workorder_days: 10,
            timer_interval_secs: 30,
            words_reload_secs: 5,
        }
    }
}

impl WarningConfig {
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut e = Vec::new();
        if !(1..=366).contains(&self.surge_window_days) {
            e.push("warning.surge_window_days: must be between 1 and 366".to_owned());
        }
        if !(self.surge_factor.is_finite() && self.surge_factor >= 1.0) {
            e.push("warning.surge_factor: must be at least 1.0".to_owned());
        }
        if self.surge_min_count < 1 {
            e.push("warning.surge_min_count: must be at least 1".to_owned());
        }
        if !(1..=365).contains(&self.workorder_days) {
            e.push("warning.workorder_days: must be between 1 and 365".to_owned());
        }
        if self.timer_interval_secs == 0 || self.words_reload_secs == 0 {
            e.push("warning.timer_interval_secs, words_reload_secs: must be at least 1".to_owned());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Word lists.

/// A word of a list.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct WordEntry {
    /// `sensitive` or `hot`.
    pub list: String,
    pub word: String,
    /// Free category; `threat` or `扬言` marks threat words.
    #[serde(default)]
    pub category: Option<String>,
}

/// The lists a word can belong to.
pub const LISTS: &[&str] = &["sensitive", "hot"];

/// The compiled word lists: one automaton over every normalised word.
#[derive(Debug, Default)]
pub struct Compiled {
    ac: Option<AhoCorasick>,
    /// Entries per pattern (several words can normalise to one pattern).
    entries: Vec<Vec<WordEntry>>,
}

impl Compiled {
    pub fn build(words: Vec<WordEntry>) -> Compiled {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut entries: Vec<Vec<WordEntry>> = Vec::new();
        for w in words {
            let n = normalize(&w.word);
            if n.is_empty() {
                continue;
            }
            let i = *index.entry(n.clone()).or_insert_with(|| {
                patterns.push(n);
                entries.push(Vec::new());
                patterns.len() - 1
            });
            entries[i].push(w);
        }
        if patterns.is_empty() {
            return Compiled::default();
        }
        // A DFA: larger to build (milliseconds for 10,000 words) but the fastest to search.
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .or_else(|_| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
            })
            .ok();
        Compiled { ac, entries }
    }

    /// Every word found in `text` (normalised first), each once, in list and word order.
    pub fn find(&self, text: &str) -> Vec<&WordEntry> {
        let Some(ac) = &self.ac else {
            return Vec::new();
        };
        let text = normalize(text);
        let mut found = BTreeSet::new();
        for m in ac.find_overlapping_iter(&text) {
            for e in &self.entries[m.pattern().as_usize()] {
                found.insert(e);
            }
        }
        found.into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The word lists in force: read from `word_lists`, compiled, re-read every
/// `words_reload_secs` and at once after [`Words::invalidate`].
pub struct Words {
    store: Store,
    every: Duration,
    current: std::sync::RwLock<(Arc<Compiled>, Option<Instant>)>,
    reloading: tokio::sync::Mutex<()>,
}

impl Words {
    pub fn new(store: Store, every: Duration) -> Arc<Words> {
        Arc::new(Words {
            store,
            every,
            current: std::sync::RwLock::new((Arc::new(Compiled::default()), None)),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The next [`Words::get`] reads the lists again.
    pub fn invalidate(&self) {
        self.current.write().unwrap_or_else(|e| e.into_inner()).1 = None;
    }

    fn fresh(&self) -> Option<Arc<Compiled>> {
        let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
        match cur.1 {
            Some(at) if at.elapsed() < self.every => Some(cur.0.clone()),
            _ => None,
        }
    }

    /// The compiled lists, read again when stale.
    pub async fn get(&self) -> Result<Arc<Compiled>, StoreError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _guard = self.reloading.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let started = Instant::now();
        let words = list_words(&self.store, None).await?;
        let compiled = Arc::new(Compiled::build(words));
        tracing::debug!(
            words = compiled.len(),
            ms = started.elapsed().as_millis() as u64,
            "WordListsLoaded"
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            (compiled.clone(), Some(Instant::now()));
        Ok(compiled)
    }
}

/// Every word, optionally of one list, by list and word.
pub async fn list_words(store: &Store, list: Option<&str>) -> Result<Vec<WordEntry>, StoreError> {
    let stmt = match list {
        Some(l) => Stmt::new(
            "SELECT list, word, category FROM word_lists WHERE list = $1 ORDER BY list, word",
        )
        .bind(l),
        None => Stmt::new("SELECT list, word, category FROM word_lists ORDER BY list, word"),
    };
    let rows = stmt.query().fetch_all(store.reader()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(WordEntry {
            list: r.try_get("list")?,
            word: r.try_get("word")?,
            category: r.try_get("category")?,
        });
    }
    Ok(out)
}

/// The statement adding (or re-categorising) a word.
pub fn put_word_stmt(w: &WordEntry) -> Stmt {
    Stmt::new(
        "INSERT INTO word_lists (list, word, category) VALUES ($1, $2, $3) \
         ON CONFLICT (list, word) DO UPDATE SET category = $3",
    )
    .bind(&w.list)
    .bind(w.word.trim())
    .bind(w.category.clone())
}

pub fn delete_word_stmt(list: &str, word: &str) -> Stmt {
    Stmt::new("DELETE FROM word_lists WHERE list = $1 AND word = $2")
        .bind(list)
        .bind(word)
}

/// A tag of a record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tag {
    pub list: String,
    pub word: String,
    pub category: Option<String>,
    pub tagged_at: i64,
}

/// The tags of a record.
pub async fn tags_of(store: &Store, record_id: &str) -> Result<Vec<Tag>, StoreError> {
    let rows = Stmt::new(
        "SELECT list, word, category, tagged_at FROM record_tags WHERE record_id = $1 ORDER BY list, word",
    )
    .bind(record_id)
    .query()
    .fetch_all(store.reader())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Tag {
            list: r.try_get("list")?,
            word: r.try_get("word")?,
            category: r.try_get("category")?,
            tagged_at: r.try_get("tagged_at")?,
        });
    }
    Ok(out)
}

fn is_threat(category: Option<&str>) -> bool {
    matches!(category, Some("threat" | "扬言"))
}

// ---------------------------------------------------------------------------------------------
// The consumer.

/// What [`WarningModule::scan`] looks at: a record's id, its text and responsible unit.
#[derive(Clone, Copy)]
struct Subject<'a> {
    record_id: &'a str,
    text: &'a str,
    org: Option<&'a str>,
}

/// The warning module.
pub struct WarningModule {
    store: Store,
    words: Arc<Words>,
    config: WarningConfig,
    clock: Arc<dyn Clock>,
    /// Surge alerts raised by this process: dedup key -> the message that raised it.
    surges: std::sync::Mutex<HashMap<String, uuid::Uuid>>,
}

impl WarningModule {
    pub fn new(
        store: Store,
        words: Arc<Words>,
        config: WarningConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        WarningModule {
            store,
            words,
            config,
            clock,
            surges: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Tags and sensitive-word / key-risk-group alerts of one record.
    fn scan(
        &self,
        words: &Compiled,
        env: &Envelope<Value>,
        subject: &Subject<'_>,
        groups: &[(&'static str, &'static str, bool)],
        existing: &[String],
    ) -> Vec<Effect> {
        let Subject {
            record_id,
            text,
            org,
        } = *subject;
        let now = self.clock.now_ms();
        let found = words.find(text);
        let mut effects = Vec::with_capacity(found.len() + 4);
        for w in &found {
            effects.push(Effect::Sql(
                Stmt::new(
                    "INSERT INTO record_tags (record_id, list, word, category, tagged_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_id, list, word) DO NOTHING",
                )
                .bind(record_id)
                .bind(&w.list)
                .bind(&w.word)
                .bind(w.category.clone())
                .bind(now),
            ));
        }
        let mut alert = |kind: &str, sub: &str, title: String, detail: Value| {
            let dedup_key = format!("{kind}:{sub}:{record_id}");
            if existing.contains(&dedup_key) {
                return;
            }
            let a = NewAlert {
                kind: kind.to_owned(),
                dedup_key,
                record_id: Some(record_id.to_owned()),
                division: env.division.clone(),
                org: org.map(str::to_owned),
                title,
                detail,
                status: "received",
            };
            let (stmt, msg) = raise(&a, now, Some(env), "xfhub");
            effects.push(Effect::Sql(stmt));
            effects.push(Effect::Publish(msg));
            metrics::counter!("xfhub_alerts_raised_total", "kind" => kind.to_owned()).increment(1);
        };
        let sensitive: Vec<&str> = found
            .iter()
            .filter(|w| w.list == "sensitive")
            .map(|w| w.word.as_str())
            .collect();
        if !sensitive.is_empty() {
            alert(
                "sensitive_word",
                "words",
                format!("敏感词：{}", sensitive.join("、")),
                json!({"words": sensitive}),
            );
        }
        let threat_word = found.iter().any(|w| is_threat(w.category.as_deref()));
        for (sub, zh, hit) in groups {
            let hit = *hit || (*sub == "threat" && threat_word);
            if hit {
                alert(
                    "key_risk_group",
                    sub,
                    format!("重点风险群体：{zh}"),
                    json!({"group": sub}),
                );
            }
        }
        effects
    }

    /// Alert keys already raised for `record_id` (only updates can have any).
    async fn existing_alerts(
        &self,
        env: &Envelope<Value>,
        record_id: &str,
    ) -> Result<Vec<String>, HandlerError> {
        if env.message_type.ends_with(".received") {
            return Ok(Vec::new());
        }
        let rows = Stmt::new("SELECT dedup_key FROM alerts WHERE record_id = $1")
            .bind(record_id)
            .query()
            .fetch_all(self.store.reader())
            .await
            .map_err(transient)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("dedup_key").map_err(transient))
            .collect()
    }

    /// The count effect of a received record and, when the day is a surge, its alert.
    async fn surge(
        &self,
        env: &Envelope<Value>,
        kind: &str,
        day: NaiveDate,
    ) -> Result<Vec<Effect>, HandlerError> {
        let division = &env.division;
        let key = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let mut effects = vec![Effect::Sql(
            Stmt::new(
                "INSERT INTO warning_daily_counts (kind, division, day, count) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (kind, division, day) DO UPDATE SET count = warning_daily_counts.count + 1",
            )
            .bind(kind)
            .bind(division)
            .bind(key(day)),
        )];
        let window = self.config.surge_window_days;
        let last_month = day.checked_sub_months(Months::new(1));
        let last_year = day.checked_sub_months(Months::new(12));
        let mut days: Vec<String> = (0..=window)
            .filter_map(|i| day.checked_sub_days(chrono::Days::new(u64::from(i))))
            .map(key)
            .collect();
        days.extend(last_month.map(key));
        days.extend(last_year.map(key));
        let placeholders: Vec<String> = (0..days.len()).map(|i| format!("${}", i + 3)).collect();
        let mut stmt = Stmt::new(format!(
            "SELECT day, count FROM warning_daily_counts WHERE kind = $1 AND division = $2 AND day IN ({})",
            placeholders.join(", ")
        ))
        .bind(kind)
        .bind(division);
        for d in &days {
            stmt = stmt.bind(d);
        }
        let rows = stmt
            .query()
            .fetch_all(self.store.reader())
            .await
            .map_err(transient)?;
        let mut counts: HashMap<String, i64> = HashMap::new();
        for r in rows {
            counts.insert(
                r.try_get("day").map_err(transient)?,
                r.try_get("count").map_err(transient)?,
            );
        }
        let today = counts.get(&key(day)).copied().unwrap_or(0) + 1;
        let history: Vec<i64> = days[1..=window as usize]
            .iter()
            .filter_map(|d| counts.get(d).copied())
            .collect();
        // Only where the data allows: no baseline without any counted day in the window.
        if history.is_empty() || today < self.config.surge_min_count {
            return Ok(effects);
        }
        let baseline = history.iter().sum::<i64>() as f64 / f64::from(window);
        if (today as f64) <= baseline * self.config.surge_factor {
            return Ok(effects);
        }
        // One alert per kind, division and day: the first message past the threshold raises
        // it. Concurrent handlers are told apart by message id (a redelivery of the raising
        // message raises again; its first effects never committed), earlier runs by the table.
        let dedup_key = format!("surge:{kind}:{division}:{}", key(day));
        {
            let mut raised = self.surges.lock().unwrap_or_else(|e| e.into_inner());
            match raised.get(&dedup_key) {
                Some(by) if *by != env.message_id => return Ok(effects),
                _ => {
                    raised.insert(dedup_key.clone(), env.message_id);
                }
            }
        }
        let stored = Stmt::new("SELECT id FROM alerts WHERE dedup_key = $1")
            .bind(&dedup_key)
            .query()
            .fetch_optional(self.store.reader())
            .await
            .map_err(transient)?;
        if stored.is_some() {
            return Ok(effects);
        }
        let compare = |d: Option<NaiveDate>| {
            d.and_then(|d| {
                counts
                    .get(&key(d))
                    .map(|c| json!({"day": key(d), "count": c, "change": (today - c)}))
            })
        };
        let a = NewAlert {
            kind: "surge".into(),
            dedup_key,
            record_id: None,
            division: division.clone(),
            org: None,
            title: format!(
                "{} {} 信访量激增：{} 件（前{}日日均 {:.1} 件）",
                division,
                key(day),
                today,
                window,
                baseline
            ),
            detail: json!({
                "kind": kind, "day": key(day), "count": today, "baseline_daily_mean": baseline,
                "window_days": window, "factor": self.config.surge_factor,
                "same_day_last_month": compare(last_month), "same_day_last_year": compare(last_year),
            }),
            status: "received",
        };
        let (stmt, msg) = raise(&a, self.clock.now_ms(), Some(env), "xfhub");
        effects.push(Effect::Sql(stmt));
        effects.push(Effect::Publish(msg));
        metrics::counter!("xfhub_alerts_raised_total", "kind" => "surge").increment(1);
        Ok(effects)
    }

    async fn petition(&self, env: &Envelope<Value>) -> Result<Vec<Effect>, HandlerError> {
        let record: Record<Petition> = serde_json::from_value(env.payload.clone())
            .map_err(|e| HandlerError::Permanent(format!("not a petition record: {e}")))?;
        let p = &record.data;
        let id = record.id.to_string();
        let words = self.words.get().await.map_err(transient)?;
        let mut text = String::with_capacity(p.appeal.summary.len() + 64);
        text.push_str(&p.appeal.summary);
        for k in &p.appeal.keywords {
            text.push('\n');
            text.push_str(k);
        }
        if let Some(r) = &p.acceptance.remarks {
            text.push('\n');
            text.push_str(r);
        }
        let group = p.flags.group
            || p.acceptance.complainant_count >= 5
            || p.acceptance.people_involved >= 5;
        let beyond = p.flags.beyond_level
            || matches!(
                p.flags.level_reached,
                Some(xfhub_schemas::LevelReached::Beijing | xfhub_schemas::LevelReached::Province)
            );
        let groups = [
            ("group", "集体访", group),
            ("beyond_level", "越级访", beyond),
            ("threat", "扬言访", p.flags.threat),
        ];
        let existing = self.existing_alerts(env, &id).await?;
        let subject = Subject {
            record_id: &id,
            text: &text,
            org: p.handling.responsible_unit.as_deref(),
        };
        let mut effects = self.scan(&words, env, &subject, &groups, &existing);
        if env.message_type.ends_with(".received") {
            effects.extend(
                self.surge(env, "petition", p.acceptance.complaint_date)
                    .await?,
            );
        }
        Ok(effects)
    }

    async fn workorder(&self, env: &Envelope<Value>) -> Result<Vec<Effect>, HandlerError> {
        let record: Record<WorkOrder> = serde_json::from_value(env.payload.clone())
            .map_err(|e| HandlerError::Permanent(format!("not a work order record: {e}")))?;
        let w = &record.data;
        let id = record.id.to_string();
        let words = self.words.get().await.map_err(transient)?;
        let text = format!("{}\n{}", w.title, w.content);
        let existing = self.existing_alerts(env, &id).await?;
        let org = w.handling_unit.as_ref().map(|u| u.name.as_str());
        let subject = Subject {
            record_id: &id,
            text: &text,
            org,
        };
        let mut effects = self.scan(&words, env, &subject, &[], &existing);
        if w.completed_at.is_some() {
            effects.push(Effect::Sql(
                Stmt::new(
                    "UPDATE warning_timers SET state = 'cancelled' \
                     WHERE record_id = $1 AND kind = 'workorder_open' AND state = 'armed'",
                )
                .bind(&id),
            ));
        } else {
            let due =
                w.call_time.timestamp_millis() + i64::from(self.config.workorder_days) * 86_400_000;
            effects.push(Effect::Sql(
                Stmt::new(
                    "INSERT INTO warning_timers (record_id, kind, due_at, division, title, state) \
                     VALUES ($1, 'workorder_open', $2, $3, $4, 'armed') ON CONFLICT (record_id, kind) DO NOTHING",
                )
                .bind(&id)
                .bind(due)
                .bind(&w.division)
                .bind(format!("{} {}", w.order_no, w.title)),
            ));
        }
        if env.message_type.ends_with(".received") {
            effects.extend(
                self.surge(env, "workorder", w.call_time.date_naive())
                    .await?,
            );
        }
        Ok(effects)
    }
}

fn transient(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

#[async_trait]
impl Handler for WarningModule {
    fn name(&self) -> &str {
        WARNING_QUEUE
    }

    async fn handle(
        &self,
        env: &Envelope<Value>,
        _attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        match env.message_type.as_str() {
            "petition.received" | "petition.updated" => self.petition(env).await,
            "workorder.received" | "workorder.updated" => self.workorder(env).await,
            // Other petition.* / workorder.* messages (assigned, ...) carry no record to scan.
            _ => Ok(Vec::new()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Durable timers.

/// Fires every armed timer due at `clock`'s now: marks the work order a key risk item (tag
/// `risk/key_risk_item`) and raises its alert, with the timer's state change, in one
/// transaction. Returns how many fired. Timers are rows, so they survive restarts; a timer due
/// while the hub was down fires at the first sweep after the start.
pub async fn sweep_timers(
    store: &Store,
    clock: &dyn Clock,
    days: u32,
) -> Result<usize, StoreError> {
    let now = clock.now_ms();
    let rows = Stmt::new(
        "SELECT record_id, kind, due_at, division, title FROM warning_timers \
         WHERE state = 'armed' AND due_at <= $1 ORDER BY due_at LIMIT 500",
    )
    .bind(now)
    .query()
    .fetch_all(store.reader())
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut txn = Txn::default();
    for r in &rows {
        let record_id: String = r.try_get("record_id")?;
        let kind: String = r.try_get("kind")?;
        let due_at: i64 = r.try_get("due_at")?;
        let division: String = r.try_get("division")?;
        let title: String = r.try_get("title")?;
        txn.statements.push(
            Stmt::new(
                "UPDATE warning_timers SET state = 'fired', fired_at = $1 \
                 WHERE record_id = $2 AND kind = $3 AND state = 'armed'",
            )
            .bind(now)
            .bind(&record_id)
            .bind(&kind),
        );
        txn.statements.push(
            Stmt::new(
                "INSERT INTO record_tags (record_id, list, word, category, tagged_at) \
                 VALUES ($1, 'risk', 'key_risk_item', '重点风险事项', $2) \
                 ON CONFLICT (record_id, list, word) DO NOTHING",
            )
            .bind(&record_id)
            .bind(now),
        );
        let a = NewAlert {
            kind: "key_risk_item".into(),
            dedup_key: format!("key_risk_item:{kind}:{record_id}"),
            record_id: Some(record_id.clone()),
            division,
            org: None,
            title: format!("12345工单超过{days}天未办结：{title}"),
            detail: json!({"timer": kind, "due_at": due_at, "days": days}),
            status: "received",
        };
        let (stmt, msg) = raise(&a, now, None, "xfhub");
        txn.statements.push(stmt);
        txn.publish.push(msg);
    }
    store.transact(txn).await?;
    metrics::counter!("xfhub_alerts_raised_total", "kind" => "key_risk_item")
        .increment(rows.len() as u64);
    tracing::info!(fired = rows.len(), "WarningTimersFired");
    Ok(rows.len())
}

/// Sweeps the timers every `every` until `stop`. One sweeper per store: with several hubs on
/// one database, the lease of the connectors (issue 5) must elect it.
pub async fn run_timers(
    store: Store,
    clock: Arc<dyn Clock>,
    days: u32,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = sweep_timers(&store, clock.as_ref(), days).await {
                    tracing::warn!(error = %e, "WarningTimerSweepError");
                }
            }
        }
    }
}
