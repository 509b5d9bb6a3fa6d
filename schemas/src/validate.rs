//! Normalization and validation of canonical records (DOMAIN.md §4, §5).
//!
//! [`validate_petition`] and [`validate_workorder`] first normalize (trim text, drop blank
//! optional text, strip `+86` from mobile numbers, upper-case the identity check character, map
//! historical codes to their successors such as division `430122` -> `430112`), then check every
//! rule and report **every** error at once, each with the path of the field (`complainants[0].id_number`,
//! `appeal.materials[2].size_bytes`), a stable machine code from [`CODES`] and an English and a
//! Chinese message. On success they return the normalized record.
//!
//! Messages never repeat an identity number or a phone number (they are personal data); they do
//! name unknown codes and the table they were looked up in.
//!
//! Decisions:
//! - A group visit (集体访) is counted on `acceptance.complainant_count` (信访人数, the people who
//!   came), not on `people_involved` (涉及人数, which may be a whole village): `flags.group` must be
//!   true exactly when `complainant_count >= 5`.
//! - An identity number is checked against GB 11643-1999 when `id_type` is `01` or missing;
//!   numbers of other document types are only length-checked.
//! - Every coded field (not only divisions) follows `replaced_by` to the current code; an inactive
//!   code without successor is `inactive_code`.
//! - Instants may lie at most one day after `now` (clock skew between systems); deadlines are
//!   exempt, they lie in the future by nature.
//! - Keywords and evaluation reasons are trimmed, blanks dropped and repeats removed before their
//!   count and their indices in paths are taken.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::codes::CodeTables;
use crate::petition::{Petition, SourceRef};
use crate::workorder::WorkOrder;

/// Every error code, with its English and Chinese message.
pub const CODES: &[(&str, &str, &str)] = &[
    ("required", "a value is required", "必填项不能为空"),
    (
        "too_long",
        "the value is too long",
        "内容超出长度或数量限制",
    ),
    (
        "id_number_format",
        "identity number has the wrong format",
        "证件号码格式错误",
    ),
    (
        "id_number_checksum",
        "identity number check character is wrong",
        "证件号码校验位错误",
    ),
    (
        "id_number_birth_date",
        "identity number holds an impossible or future birth date",
        "证件号码中的出生日期无效",
    ),
    (
        "mobile_format",
        "not a valid mainland mobile number",
        "手机号码格式错误",
    ),
    (
        "phone_format",
        "neither a mobile nor a landline number",
        "电话号码格式错误",
    ),
    ("unknown_code", "unknown code", "代码不存在"),
    (
        "inactive_code",
        "the code is no longer in use",
        "代码已停用",
    ),
    ("date_order", "dates are out of order", "时间先后顺序错误"),
    (
        "date_future",
        "the time lies in the future",
        "时间不能晚于当前时间",
    ),
    ("count_min", "the number is too small", "数量不能小于下限"),
    (
        "count_range",
        "the number is implausibly large",
        "数量超出合理范围",
    ),
    (
        "group_inconsistent",
        "the group visit flag must be set exactly when 5 or more people came",
        "集体访标志与信访人数不符（5人及以上为集体访）",
    ),
    (
        "attachments_too_many",
        "at most 5 attachments are allowed",
        "附件不能超过5个",
    ),
    (
        "attachment_too_large",
        "an attachment may be at most 10 MB",
        "单个附件不能超过10MB",
    ),
    (
        "attachment_type",
        "only Word, Excel and PDF files are accepted, and the file extension must match the type",
        "附件仅支持Word、Excel、PDF格式，且扩展名须与文件类型一致",
    ),
    (
        "sha256_format",
        "a SHA-256 digest is 64 hexadecimal characters",
        "SHA-256摘要应为64位十六进制字符",
    ),
    (
        "anonymous_with_identity",
        "an anonymous petition carries no name, identity number or mobile number",
        "匿名信访不得填写姓名、证件号码或手机号码",
    ),
    (
        "complainant_missing",
        "a petition that is not anonymous needs at least one complainant",
        "非匿名信访至少需要一名信访人",
    ),
    (
        "source_system",
        "the source system must be one of provincial, hotline12345, app, api, excel, local",
        "来源系统应为 provincial、hotline12345、app、api、excel、local 之一",
    ),
    (
        "version_min",
        "the source version must not be negative",
        "来源版本号不能为负数",
    ),
    (
        "evaluation_reasons",
        "at most three dissatisfaction reasons are allowed",
        "不满意原因最多三项",
    ),
];

/// Source systems a record may come from.
pub const SOURCE_SYSTEMS: &[&str] = &["provincial", "hotline12345", "app", "api", "excel", "local"];

/// Limits, in characters (not bytes), unless named otherwise.
pub const MAX_NAME_CHARS: usize = 50;
pub const MAX_ADDRESS_CHARS: usize = 200;
pub const MAX_SUMMARY_CHARS: usize = 4000;
pub const MAX_REMARKS_CHARS: usize = 1000;
pub const MAX_KEYWORD_CHARS: usize = 20;
pub const MAX_KEYWORDS: usize = 20;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_CONTENT_CHARS: usize = 4000;
pub const MAX_SOURCE_ID_CHARS: usize = 64;
pub const MAX_ORG_CHARS: usize = 100;
pub const MAX_FILE_NAME_CHARS: usize = 200;
/// Identity numbers of document types other than the resident identity card.
pub const MAX_ID_NUMBER_CHARS: usize = 32;
pub const MAX_CODE_CHARS: usize = 64;
pub const MAX_REASON_CHARS: usize = 200;
pub const MAX_CLASSIFICATION_LEVELS: usize = 4;
pub const MAX_ATTACHMENTS: usize = 5;
pub const MAX_ATTACHMENT_BYTES: u64 = 10 * 1024 * 1024;
pub const MAX_EVALUATION_REASONS: usize = 3;
/// Counts (people, extensions) above this are nonsense.
pub const MAX_COUNT: u32 = 100_000;
/// A 12345 time limit longer than a year is nonsense.
pub const MAX_TIME_LIMIT_DAYS: u32 = 365;
/// People from this many on make a group visit (集体访).
pub const GROUP_MIN_PEOPLE: u32 = 5;

/// MIME types accepted for attachments, with the file extensions each allows.
pub const ATTACHMENT_TYPES: &[(&str, &[&str])] = &[
    ("application/pdf", &["pdf"]),
    ("application/msword", &["doc"]),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        &["docx"],
    ),
    ("application/vnd.ms-excel", &["xls"]),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &["xlsx"],
    ),
];

/// One validation error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Path of the field: `complainants[0].id_number`, `appeal.division`.
    pub path: String,
    /// Stable machine code, one of [`CODES`].
    pub code: String,
    pub message: String,
    pub message_zh: String,
}

impl FieldError {
    /// An error with the standard messages of `code`.
    pub fn new(path: impl Into<String>, code: &str) -> Self {
        let (en, zh) = messages(code);
        FieldError {
            path: path.into(),
            code: code.to_owned(),
            message: en.to_owned(),
            message_zh: zh.to_owned(),
        }
    }

    /// An error whose standard messages are followed by a detail.
    pub fn with_detail(path: impl Into<String>, code: &str, detail: &str, detail_zh: &str) -> Self {
        let (en, zh) = messages(code);
        FieldError {
            path: path.into(),
            code: code.to_owned(),
            message: format!("{en}: {detail}"),
            message_zh: format!("{zh}：{detail_zh}"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.message, self.code)
    }
}

/// English and Chinese message of `code`; the code itself when it is not in [`CODES`].
pub fn messages(code: &str) -> (&str, &str) {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or((code, code), |(_, en, zh)| (*en, *zh))
}

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// Maps full-width digits and letters (common in Excel sheets) to ASCII.
fn ascii_fold(c: char) -> char {
    match c {
        '\u{FF10}'..='\u{FF19}'
        | '\u{FF21}'..='\u{FF3A}'
        | '\u{FF41}'..='\u{FF5A}'
        | '\u{FF0B}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// Checks a resident identity number (GB 11643-1999) and returns it normalized (trimmed,
/// upper-case `X`). Legacy 15-digit numbers (6-digit address, `YYMMDD` of 19YY, 3-digit sequence)
/// are accepted as they are. The birth date may not lie after today (China time).
///
/// Errors: `id_number_format`, `id_number_birth_date`, `id_number_checksum`.
pub fn check_id_number(s: &str) -> Result<String, &'static str> {
    check_id_number_at(s, Utc::now().with_timezone(&china()).date_naive())
}

/// [`check_id_number`] with an explicit `today`.
pub fn check_id_number_at(s: &str, today: NaiveDate) -> Result<String, &'static str> {
    let n: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| ascii_fold(c).to_ascii_uppercase())
        .collect();
    let b = n.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| -> u32 {
        b[r].iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    match b.len() {
        18 => {
            if !digits(0..17) || !(b[17].is_ascii_digit() || b[17] == b'X') {
                return Err("id_number_format");
            }
            let birth = NaiveDate::from_ymd_opt(num(6..10) as i32, num(10..12), num(12..14));
            match birth {
                Some(d) if d <= today && d.year() >= 1850 => {}
                _ => return Err("id_number_birth_date"),
            }
            if b[17] != id_check_char(&n[..17]) {
                return Err("id_number_checksum");
            }
            Ok(n)
        }
        15 => {
            if !digits(0..15) {
                return Err("id_number_format");
            }
            let birth = NaiveDate::from_ymd_opt(1900 + num(6..8) as i32, num(8..10), num(10..12));
            match birth {
                Some(d) if d <= today => Ok(n),
                _ => Err("id_number_birth_date"),
            }
        }
        _ => Err("id_number_format"),
    }
}

/// The GB 11643-1999 check character of the first 17 digits of an identity number
/// (`b'0'..=b'9'` or `b'X'`).
///
/// # Panics
///
/// If `first17` is not 17 ASCII digits.
pub fn id_check_char(first17: &str) -> u8 {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    assert!(
        first17.len() == 17 && first17.bytes().all(|d| d.is_ascii_digit()),
        "id_check_char needs 17 digits"
    );
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize]
}

/// Strips spaces, dashes, brackets and a `+86` / `0086` / `86` prefix; maps full-width digits.
fn phone_digits(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(ascii_fold)
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '(' | ')' | '（' | '）' | '.'))
        .collect();
    if let Some(rest) = cleaned.strip_prefix("+86") {
        rest.to_owned()
    } else if let Some(rest) = cleaned.strip_prefix("0086") {
        rest.to_owned()
    } else if cleaned.len() == 13 && cleaned.starts_with("86") {
        cleaned[2..].to_owned()
    } else {
        cleaned
    }
}

/// Normalizes a mainland mobile number: strips `+86` / `0086` / `86`, spaces and dashes, then
/// requires `1[3-9]` followed by 9 digits. Returns the 11 digits.
pub fn normalize_mobile(s: &str) -> Option<String> {
    let d = phone_digits(s);
    let b = d.as_bytes();
    let ok = b.len() == 11
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1]);
    ok.then_some(d)
}

/// Normalizes a phone number that may be a mobile ([`normalize_mobile`]) or a landline: with area
/// code (`0731-88888888` -> `073188888888`, 10 to 12 digits from a leading 0) or local (7 or 8
/// digits). Returns the digits.
pub fn normalize_phone(s: &str) -> Option<String> {
    if let Some(m) = normalize_mobile(s) {
        return Some(m);
    }
    let d = phone_digits(s);
    let b = d.as_bytes();
    let all_digits = !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    let landline = all_digits
        && ((b[0] == b'0' && (10..=12).contains(&b.len()))
            || ((b'2'..=b'9').contains(&b[0]) && (7..=8).contains(&b.len())));
    landline.then_some(d)
}

/// Collects errors; holds what every check needs.
struct Checker<'a> {
    tables: &'a CodeTables,
    now: DateTime<Utc>,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    fn push(&mut self, path: impl Into<String>, code: &str) {
        self.errors.push(FieldError::new(path, code));
    }

    fn detail(&mut self, path: impl Into<String>, code: &str, en: &str, zh: &str) {
        self.errors
            .push(FieldError::with_detail(path, code, en, zh));
    }

    fn too_long(&mut self, path: impl Into<String>, max: usize, unit_en: &str, unit_zh: &str) {
        self.detail(
            path,
            "too_long",
            &format!("at most {max} {unit_en}"),
            &format!("不能超过{max}{unit_zh}"),
        );
    }

    /// Trims a required text and checks its length.
    fn required_text(&mut self, path: &str, value: &mut String, max: usize) {
        trim_in_place(value);
        if value.is_empty() {
            self.push(path, "required");
        } else {
            self.max_chars(path, value, max);
        }
    }

    /// Trims an optional text (blank becomes None) and checks its length.
    fn optional_text(&mut self, path: &str, value: &mut Option<String>, max: usize) {
        normalize_opt(value);
        if let Some(v) = value {
            self.max_chars(path, v, max);
        }
    }

    fn max_chars(&mut self, path: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.too_long(path, max, "characters", "个字符");
        }
    }

    /// Trims a required code, maps a historical code to its successor and checks it is active.
    fn code(&mut self, path: &str, table: &str, value: &mut String) {
        trim_in_place(value);
        if value.is_empty() {
            self.push(path, "required");
            return;
        }
        if let Some(current) = self.tables.current_code(table, value) {
            *value = current;
            return;
        }
        match self.tables.lookup(table, value) {
            Some(e) => {
                let (en, zh) = (
                    format!("`{value}` ({}) of table `{table}` is withdrawn", e.name_en),
                    format!("代码表“{table}”中的“{value}”（{}）已停用", e.name_zh),
                );
                self.detail(path, "inactive_code", &en, &zh);
            }
            None => {
                let chars: String = value.chars().take(MAX_CODE_CHARS).collect();
                self.detail(
                    path,
                    "unknown_code",
                    &format!("`{chars}` is not in table `{table}`"),
                    &format!("代码表“{table}”中没有“{chars}”"),
                );
            }
        }
    }

    fn optional_code(&mut self, path: &str, table: &str, value: &mut Option<String>) {
        normalize_opt(value);
        if let Some(v) = value {
            self.code(path, table, v);
        }
    }

    /// An instant may lie at most one day after `now`.
    fn not_future(&mut self, path: &str, t: DateTime<FixedOffset>) {
        if t.with_timezone(&Utc) > self.now + Duration::days(1) {
            self.push(path, "date_future");
        }
    }

    fn date_not_future(&mut self, path: &str, d: NaiveDate) {
        let limit = (self.now + Duration::days(1))
            .with_timezone(&china())
            .date_naive();
        if d > limit {
            self.push(path, "date_future");
        }
    }

    /// `later` (at `path`) may not lie before `earlier` (named by `what`).
    fn not_before<T: PartialOrd>(&mut self, path: &str, later: T, earlier: T, what: (&str, &str)) {
        if later < earlier {
            self.detail(
                path,
                "date_order",
                &format!("lies before {}", what.0),
                &format!("早于{}", what.1),
            );
        }
    }

    fn count(&mut self, path: &str, n: u32, min: u32, max: u32) {
        if n < min {
            self.detail(
                path,
                "count_min",
                &format!("at least {min}"),
                &format!("不能小于{min}"),
            );
        } else if n > max {
            self.detail(
                path,
                "count_range",
                &format!("at most {max}"),
                &format!("不能大于{max}"),
            );
        }
    }

    fn source(&mut self, s: &mut SourceRef) {
        s.system = s.system.trim().to_ascii_lowercase();
        if s.system.is_empty() {
            self.push("source.system", "required");
        } else if !SOURCE_SYSTEMS.contains(&s.system.as_str()) {
            self.push("source.system", "source_system");
        }
        self.required_text("source.id", &mut s.id, MAX_SOURCE_ID_CHARS);
        if s.version < 0 {
            self.push("source.version", "version_min");
        }
    }

    /// A division code: historical codes are remapped (`430122` -> `430112`).
    fn division(&mut self, path: &str, value: &mut String) {
        self.code(path, "divisions", value);
    }

    fn mobile(&mut self, path: &str, value: &mut Option<String>) {
        normalize_opt(value);
        if let Some(m) = value {
            match normalize_mobile(m) {
                Some(n) => *m = n,
                None => self.push(path, "mobile_format"),
            }
        }
    }

    fn today(&self) -> NaiveDate {
        self.now.with_timezone(&china()).date_naive()
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

fn trim_in_place(s: &mut String) {
    let t = s.trim();
    if t.len() != s.len() {
        *s = t.to_owned();
    }
}

fn normalize_opt(value: &mut Option<String>) {
    if let Some(v) = value {
        trim_in_place(v);
        if v.is_empty() {
            *value = None;
        }
    }
}

/// Trims every item, drops blanks and repeats, keeps the order.
fn normalize_list(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain_mut(|k| {
        trim_in_place(k);
        !k.is_empty() && seen.insert(k.clone())
    });
}

/// Normalizes and validates a petition; every error is reported. Returns the normalized petition.
pub fn validate_petition(
    mut p: Petition,
    tables: &CodeTables,
    now: DateTime<Utc>,
) -> Result<Petition, Vec<FieldError>> {
    let mut c = Checker {
        tables,
        now,
        errors: Vec::new(),
    };
    let today = c.today();
    c.source(&mut p.source);

    // 投诉人
    if !p.anonymous && p.complainants.is_empty() {
        c.push("complainants", "complainant_missing");
    }
    for (i, person) in p.complainants.iter_mut().enumerate() {
        let at = |f: &str| format!("complainants[{i}].{f}");
        c.optional_text(&at("name"), &mut person.name, MAX_NAME_CHARS);
        if !p.anonymous && person.name.is_none() {
            c.push(at("name"), "required");
        }
        c.mobile(&at("mobile"), &mut person.mobile);
        c.optional_code(&at("id_type"), "id_types", &mut person.id_type);
        normalize_opt(&mut person.id_number);
        if let Some(n) = &mut person.id_number {
            if matches!(person.id_type.as_deref(), None | Some("01")) {
                match check_id_number_at(n, today) {
                    Ok(v) => *n = v,
                    Err(code) => c.push(at("id_number"), code),
                }
            } else {
                c.max_chars(&at("id_number"), n, MAX_ID_NUMBER_CHARS);
            }
        }
        c.optional_text(&at("address"), &mut person.address, MAX_ADDRESS_CHARS);
        c.optional_text(
            &at("detailed_address"),
            &mut person.detailed_address,
            MAX_ADDRESS_CHARS,
        );
        if p.anonymous {
            for (field, present) in [
                ("name", person.name.is_some()),
                ("id_number", person.id_number.is_some()),
                ("mobile", person.mobile.is_some()),
            ] {
                if present {
                    c.push(at(field), "anonymous_with_identity");
                }
            }
        }
    }

    // 诉求信息
    let a = &mut p.appeal;
    c.division("appeal.division", &mut a.division);
    c.code(
        "appeal.content_class",
        "content_classes",
        &mut a.content_class,
    );
    c.code("appeal.purpose", "purposes", &mut a.purpose);
    c.code("appeal.form", "forms", &mut a.form);
    c.required_text("appeal.summary", &mut a.summary, MAX_SUMMARY_CHARS);
    normalize_list(&mut a.keywords);
    if a.keywords.len() > MAX_KEYWORDS {
        c.too_long("appeal.keywords", MAX_KEYWORDS, "keywords", "个关键词");
    }
    for (i, k) in a.keywords.iter().enumerate() {
        c.max_chars(&format!("appeal.keywords[{i}]"), k, MAX_KEYWORD_CHARS);
    }
    if a.materials.len() > MAX_ATTACHMENTS {
        c.push("appeal.materials", "attachments_too_many");
    }
    for (i, m) in a.materials.iter_mut().enumerate() {
        let at = |f: &str| format!("appeal.materials[{i}].{f}");
        c.required_text(&at("file_name"), &mut m.file_name, MAX_FILE_NAME_CHARS);
        m.content_type = m
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match ATTACHMENT_TYPES.iter().find(|(t, _)| *t == m.content_type) {
            None => c.push(at("content_type"), "attachment_type"),
            Some((_, exts)) => {
                let ext = m
                    .file_name
                    .rsplit_once('.')
                    .map(|(_, e)| e.to_ascii_lowercase())
                    .unwrap_or_default();
                if !m.file_name.is_empty() && !exts.contains(&ext.as_str()) {
                    c.detail(
                        at("file_name"),
                        "attachment_type",
                        &format!("the extension must be .{}", exts.join(" or .")),
                        &format!("扩展名应为 .{}", exts.join(" 或 .")),
                    );
                }
            }
        }
        if m.size_bytes > MAX_ATTACHMENT_BYTES {
            c.push(at("size_bytes"), "attachment_too_large");
        }
        normalize_opt(&mut m.sha256);
        if let Some(h) = &mut m.sha256 {
            h.make_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                c.push(at("sha256"), "sha256_format");
            }
        }
    }

    // 受理情况
    let acc = &mut p.acceptance;
    c.count(
        "acceptance.complainant_count",
        acc.complainant_count,
        1,
        MAX_COUNT,
    );
    c.count(
        "acceptance.people_involved",
        acc.people_involved,
        1,
        MAX_COUNT,
    );
    if acc.complainant_count >= 1 && p.flags.group != (acc.complainant_count >= GROUP_MIN_PEOPLE) {
        let n = acc.complainant_count;
        c.detail(
            "flags.group",
            "group_inconsistent",
            &format!("complainant_count is {n}"),
            &format!("信访人数为{n}"),
        );
    }
    c.date_not_future("acceptance.complaint_date", acc.complaint_date);
    c.not_future("acceptance.registered_at", acc.registered_at);
    c.not_before(
        "acceptance.registered_at",
        acc.registered_at.date_naive(),
        acc.complaint_date,
        ("the complaint date", "投诉日期"),
    );
    c.optional_text("acceptance.remarks", &mut acc.remarks, MAX_REMARKS_CHARS);
    let registered = acc.registered_at;

    // 办理
    let h = &mut p.handling;
    c.optional_text(
        "handling.registering_org",
        &mut h.registering_org,
        MAX_ORG_CHARS,
    );
    c.optional_code("handling.method", "handling_methods", &mut h.method);
    c.optional_text(
        "handling.responsible_unit",
        &mut h.responsible_unit,
        MAX_ORG_CHARS,
    );
    if let Some(t) = h.accepted_at {
        c.not_future("handling.accepted_at", t);
        c.not_before(
            "handling.accepted_at",
            t,
            registered,
            ("the registration time", "登记时间"),
        );
    }
    if let Some(t) = h.replied_at {
        c.not_future("handling.replied_at", t);
        match h.accepted_at {
            Some(acc_t) => {
                c.not_before(
                    "handling.replied_at",
                    t,
                    acc_t,
                    ("the acceptance time", "受理时间"),
                );
            }
            None => c.not_before(
                "handling.replied_at",
                t,
                registered,
                ("the registration time", "登记时间"),
            ),
        }
    }
    if let Some(d) = h.deadline {
        c.not_before(
            "handling.deadline",
            d,
            registered.date_naive(),
            ("the registration date", "登记日期"),
        );
    }

    // 满意度评价
    if let Some(e) = &mut p.evaluation {
        c.code("evaluation.result", "evaluations", &mut e.result);
        normalize_list(&mut e.reasons);
        if e.reasons.len() > MAX_EVALUATION_REASONS {
            c.push("evaluation.reasons", "evaluation_reasons");
        }
        for (i, r) in e.reasons.iter().enumerate() {
            c.max_chars(&format!("evaluation.reasons[{i}]"), r, MAX_REASON_CHARS);
        }
        c.optional_text(
            "evaluation.responsible_department",
            &mut e.responsible_department,
            MAX_ORG_CHARS,
        );
        normalize_list(&mut e.unsatisfied_departments);
        for (i, d) in e.unsatisfied_departments.iter().enumerate() {
            c.max_chars(
                &format!("evaluation.unsatisfied_departments[{i}]"),
                d,
                MAX_ORG_CHARS,
            );
        }
        c.not_future("evaluation.evaluated_at", e.evaluated_at);
        c.not_before(
            "evaluation.evaluated_at",
            e.evaluated_at,
            registered,
            ("the registration time", "登记时间"),
        );
    }

    c.finish(p)
}

/// Normalizes and validates a 12345 work order; every error is reported. Returns the normalized
/// work order.
pub fn validate_workorder(
    mut w: WorkOrder,
    tables: &CodeTables,
    now: DateTime<Utc>,
) -> Result<WorkOrder, Vec<FieldError>> {
    let mut c = Checker {
        tables,
        now,
        errors: Vec::new(),
    };
    c.source(&mut w.source);
    c.required_text("order_no", &mut w.order_no, MAX_SOURCE_ID_CHARS);
    c.not_future("call_time", w.call_time);
    let call = w.call_time;
    c.optional_text("channel", &mut w.channel, MAX_ORG_CHARS);
    c.optional_text("caller_name", &mut w.caller_name, MAX_NAME_CHARS);
    normalize_opt(&mut w.caller_phone);
    if let Some(phone) = &mut w.caller_phone {
        match normalize_phone(phone) {
            Some(n) => *phone = n,
            None => c.push("caller_phone", "phone_format"),
        }
    }
    c.code("order_type", "order_types", &mut w.order_type);
    if w.classification.len() > MAX_CLASSIFICATION_LEVELS {
        c.too_long("classification", MAX_CLASSIFICATION_LEVELS, "levels", "级");
    }
    for (i, level) in w.classification.iter_mut().enumerate() {
        c.required_text(&format!("classification[{i}]"), level, MAX_NAME_CHARS);
    }
    c.division("division", &mut w.division);
    c.optional_text("address", &mut w.address, MAX_ADDRESS_CHARS);
    c.optional_text("street", &mut w.street, MAX_ORG_CHARS);
    c.optional_text("community", &mut w.community, MAX_ORG_CHARS);
    c.required_text("title", &mut w.title, MAX_TITLE_CHARS);
    c.required_text("content", &mut w.content, MAX_CONTENT_CHARS);
    c.optional_code("urgency", "urgencies", &mut w.urgency);
    if let Some(u) = &mut w.handling_unit {
        c.required_text("handling_unit.name", &mut u.name, MAX_ORG_CHARS);
        c.optional_text("handling_unit.code", &mut u.code, MAX_CODE_CHARS);
    }
    if let Some(days) = w.time_limit_days {
        c.count("time_limit_days", days, 1, MAX_TIME_LIMIT_DAYS);
    }
    if let Some(d) = w.deadline {
        c.not_before(
            "deadline",
            d,
            call.date_naive(),
            ("the call date", "来电日期"),
        );
    }
    if let Some(t) = w.dispatched_at {
        c.not_future("dispatched_at", t);
        c.not_before("dispatched_at", t, call, ("the call time", "来电时间"));
    }
    if let Some(t) = w.completed_at {
        c.not_future("completed_at", t);
        match w.dispatched_at {
            Some(d) => c.not_before("completed_at", t, d, ("the dispatch time", "派单时间")),
            None => c.not_before("completed_at", t, call, ("the call time", "来电时间")),
        }
    }
    c.code("state", "order_states", &mut w.state);
    for (i, r) in w.returns.iter_mut().enumerate() {
        c.required_text(
            &format!("returns[{i}].reason"),
            &mut r.reason,
            MAX_REMARKS_CHARS,
        );
        let path = format!("returns[{i}].returned_at");
        c.not_future(&path, r.returned_at);
        c.not_before(&path, r.returned_at, call, ("the call time", "来电时间"));
    }
    c.count("extensions", w.extensions, 0, MAX_COUNT);
    if let Some(f) = &mut w.follow_up {
        c.not_future("follow_up.visited_at", f.visited_at);
        c.not_before(
            "follow_up.visited_at",
            f.visited_at,
            call,
            ("the call time", "来电时间"),
        );
        c.optional_text("follow_up.opinion", &mut f.opinion, MAX_REMARKS_CHARS);
    }
    c.optional_code("result", "order_results", &mut w.result);
    c.finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_messages_in_both_languages() {
        let mut seen = std::collections::HashSet::new();
        for (code, en, zh) in CODES {
            assert!(seen.insert(code), "{code} twice");
            assert!(!en.is_empty() && !zh.is_empty(), "{code}");
        }
    }

    #[test]
    fn check_char() {
        assert_eq!(id_check_char("11010519491231002"), b'X');
    }
}
