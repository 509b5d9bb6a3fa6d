//! Excel rows <-> canonical records: the column layout of each staff template, header matching
//! and cell coercion. Pure: the hub reads the workbook (calamine) and hands rows of [`Cell`]s
//! here; nothing in this module does I/O.
//!
//! - **Headers** are matched by name, in any order, with full-width characters folded, spaces
//!   and required-markers (`*`) removed and a parenthesized hint ignored (`投诉日期（必填）`).
//!   A header row may sit below title rows, and a header left empty because it is merged
//!   vertically with the row above takes that row's text ([`find_layout`]).
//! - **Cells** are coerced by column type: dates as Excel serials or as text (`2024年3月5日`,
//!   `2024/3/5`, `2024-03-05`, `2024.3.5`, `20240305`), identity numbers as text (an identity
//!   number that Excel turned into a number such as `4.30102E+17` has lost its last digits and is
//!   refused with `id_number_scientific`), codes as the code, the Chinese name, or the template's
//!   dropdown form `code 名称`.
//! - **Rows** map to canonical records ([`petition_from_row`], [`workorder_from_row`]), which are
//!   then validated exactly like the REST route (`validate_petition`, `validate_workorder`);
//!   every reason is reported, each with the column it belongs to.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use xfhub_schemas::validate::{check_id_number, normalize_mobile};
use xfhub_schemas::{
    validate_petition, validate_workorder, Acceptance, Appeal, CodeTables, Complainant, FieldError,
    Flags, Handling, Petition, SourceRef, Unit, WorkOrder,
};

/// One cell as read from a workbook.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    Bool(bool),
    /// An Excel date-time serial (days since 1899-12-30, fraction = time of day).
    DateTime(f64),
    /// An error value such as `#N/A`.
    Error(String),
}

impl Cell {
    pub fn is_blank(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(s) => s.trim().is_empty(),
            _ => false,
        }
    }

    /// The cell as staff typed it, for error reports and row fingerprints.
    pub fn display(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Number(n) => number_text(*n),
            Cell::Bool(b) => if *b { "是" } else { "否" }.to_owned(),
            Cell::DateTime(serial) => match serial_to_datetime(*serial) {
                Some(dt) if dt.time() == NaiveTime::MIN => dt.date().to_string(),
                Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
                None => number_text(*serial),
            },
            Cell::Error(e) => e.clone(),
        }
    }
}

/// A number without a trailing `.0` when it is integral.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// The kinds of sheet staff exchange with the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SheetKind {
    /// 诉求事项登记: petitions.
    Petition,
    /// 12345 工单.
    WorkOrder,
    /// 重点人员.
    KeyPerson,
    /// 敏感词 / 热点词库.
    WordList,
}

impl SheetKind {
    pub const ALL: [SheetKind; 4] = [
        SheetKind::Petition,
        SheetKind::WorkOrder,
        SheetKind::KeyPerson,
        SheetKind::WordList,
    ];

    /// The kind's name in URLs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SheetKind::Petition => "petition",
            SheetKind::WorkOrder => "workorder",
            SheetKind::KeyPerson => "key_person",
            SheetKind::WordList => "word_list",
        }
    }

    pub fn parse(s: &str) -> Option<SheetKind> {
        SheetKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The sheet's Chinese title (also the data sheet's name in the template).
    pub fn title_zh(self) -> &'static str {
        match self {
            SheetKind::Petition => "诉求事项登记",
            SheetKind::WorkOrder => "12345工单",
            SheetKind::KeyPerson => "重点人员",
            SheetKind::WordList => "敏感词热点词库",
        }
    }

    pub fn columns(self) -> &'static [Column] {
        match self {
            SheetKind::Petition => PETITION_COLUMNS,
            SheetKind::WorkOrder => WORKORDER_COLUMNS,
            SheetKind::KeyPerson => KEY_PERSON_COLUMNS,
            SheetKind::WordList => WORD_LIST_COLUMNS,
        }
    }
}

/// How a column's cells are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Text,
    /// A date: serial or text.
    Date,
    /// A date with an optional time of day (China time): serial or text.
    DateTime,
    /// A non-negative whole number.
    Count,
    /// A code of the named code table (code, Chinese name, or `code 名称`).
    Code(&'static str),
    /// An identity number, kept as text.
    IdNumber,
    /// A mainland mobile number.
    Mobile,
    /// A mobile or landline number.
    Phone,
    /// 是 / 否.
    Flag,
    /// Words separated by 、 , ， ; ； or spaces.
    Keywords,
    /// One of a fixed list of values (Chinese label -> stored value).
    Choice(&'static [(&'static str, &'static str)]),
}

/// One column of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Stable key of the column (English, snake_case).
    pub key: &'static str,
    /// The Chinese header of the template.
    pub header: &'static str,
    /// Other headers accepted for this column (older forms, national-system pinyin codes).
    pub aliases: &'static [&'static str],
    pub required: bool,
    pub ty: ColType,
    /// The canonical path whose validation errors belong to this column.
    pub path: &'static str,
    /// Filling hint for the instructions sheet.
    pub note: &'static str,
}

const fn col(
    key: &'static str,
    header: &'static str,
    aliases: &'static [&'static str],
    required: bool,
    ty: ColType,
    path: &'static str,
    note: &'static str,
) -> Column {
    Column {
        key,
        header,
        aliases,
        required,
        ty,
        path,
        note,
    }
}

use ColType as T;

/// Key persons' risk levels: label -> stored value.
pub const RISK_LEVELS: &[(&str, &str)] = &[("高", "high"), ("中", "medium"), ("低", "low")];
/// Word lists: label -> stored `word_lists.list` value.
pub const WORD_LIST_NAMES: &[(&str, &str)] = &[("敏感词", "sensitive"), ("热点词", "hot")];

const PETITION_COLUMNS: &[Column] = &[
    col(
        "source_id",
        "来源编号",
        &["信访件编号", "xfjbh", "编号"],
        false,
        T::Text,
        "source.id",
        "本单位的登记编号；填写后重复导入同一编号不会重复登记，留空则按整行内容判重",
    ),
    col(
        "version",
        "版本号",
        &[],
        false,
        T::Count,
        "source.version",
        "同一来源编号更新内容时填写更大的版本号；默认 1",
    ),
    col(
        "anonymous",
        "是否匿名",
        &["匿名", "nmbz"],
        false,
        T::Flag,
        "anonymous",
        "是 / 否；匿名件不填写姓名、证件号码和手机号码",
    ),
    col(
        "name",
        "投诉人姓名",
        &["姓名", "信访人姓名", "信访人"],
        false,
        T::Text,
        "complainants[0].name",
        "非匿名件必填",
    ),
    col(
        "mobile",
        "手机号码",
        &["手机号", "联系电话", "sjh"],
        false,
        T::Mobile,
        "complainants[0].mobile",
        "11位手机号码；请将本列设为文本格式",
    ),
    col(
        "id_type",
        "证件类型",
        &["zjlx"],
        false,
        T::Code("id_types"),
        "complainants[0].id_type",
        "从下拉列表选择；留空按居民身份证校验",
    ),
    col(
        "id_number",
        "证件号码",
        &["身份证号码", "身份证号", "zjhm"],
        false,
        T::IdNumber,
        "complainants[0].id_number",
        "请将本列设为文本格式，否则 Excel 会把18位号码变成科学计数法并丢失末尾数字",
    ),
    col(
        "address",
        "地址",
        &["住址"],
        false,
        T::Text,
        "complainants[0].address",
        "",
    ),
    col(
        "detailed_address",
        "详细地址",
        &[],
        false,
        T::Text,
        "complainants[0].detailed_address",
        "",
    ),
    col(
        "division",
        "问题属地",
        &["问题属地代码", "wtsddm"],
        true,
        T::Code("divisions"),
        "appeal.division",
        "从下拉列表选择区县（市）",
    ),
    col(
        "content_class",
        "内容分类",
        &["内容分类代码", "nrfldm"],
        true,
        T::Code("content_classes"),
        "appeal.content_class",
        "从下拉列表选择，6位代码",
    ),
    col(
        "purpose",
        "信访目的",
        &["投诉目的", "信访目的代码", "xfmddm"],
        true,
        T::Code("purposes"),
        "appeal.purpose",
        "从下拉列表选择",
    ),
    col(
        "form",
        "信访形式",
        &["投诉形式", "xfxs"],
        true,
        T::Code("forms"),
        "appeal.form",
        "从下拉列表选择",
    ),
    col(
        "summary",
        "投诉概况",
        &["诉求内容", "信访事项", "概况"],
        true,
        T::Text,
        "appeal.summary",
        "不超过4000字",
    ),
    col(
        "keywords",
        "关键词",
        &[],
        false,
        T::Keywords,
        "appeal.keywords",
        "多个关键词用顿号或逗号分隔",
    ),
    col(
        "complainant_count",
        "投诉人数",
        &["信访人数", "xfrs"],
        false,
        T::Count,
        "acceptance.complainant_count",
        "默认 1；5人及以上为集体访",
    ),
    col(
        "people_involved",
        "涉及人数",
        &["sjrs"],
        false,
        T::Count,
        "acceptance.people_involved",
        "默认等于投诉人数",
    ),
    col(
        "complaint_date",
        "投诉日期",
        &["信访日期", "xfrq"],
        true,
        T::Date,
        "acceptance.complaint_date",
        "如 2024-03-05、2024/3/5、2024年3月5日 或 2024.3.5",
    ),
    col(
        "registered_at",
        "登记时间",
        &["登记日期", "djsj"],
        true,
        T::DateTime,
        "acceptance.registered_at",
        "如 2024-03-05 09:30；只填日期按当日 0 时",
    ),
    col(
        "remarks",
        "备注",
        &[],
        false,
        T::Text,
        "acceptance.remarks",
        "",
    ),
    col(
        "registering_org",
        "登记机构",
        &["登记机构代码", "djjgdm"],
        false,
        T::Text,
        "handling.registering_org",
        "",
    ),
    col(
        "handling_method",
        "办理方式",
        &[],
        false,
        T::Code("handling_methods"),
        "handling.method",
        "从下拉列表选择",
    ),
    col(
        "responsible_unit",
        "责任单位",
        &[],
        false,
        T::Text,
        "handling.responsible_unit",
        "",
    ),
    col(
        "deadline",
        "限办截止日期",
        &["限办截止时间", "xbjzrq"],
        false,
        T::Date,
        "handling.deadline",
        "",
    ),
    col(
        "concluded",
        "是否办结",
        &["办结", "bjbz"],
        false,
        T::Flag,
        "handling.concluded",
        "是 / 否",
    ),
    col(
        "repeat",
        "重复访",
        &["cfxfbz"],
        false,
        T::Flag,
        "flags.repeat",
        "是 / 否",
    ),
    col(
        "group",
        "集体访",
        &[],
        false,
        T::Flag,
        "flags.group",
        "是 / 否；留空按投诉人数自动判断",
    ),
    col(
        "beyond_level",
        "越级访",
        &[],
        false,
        T::Flag,
        "flags.beyond_level",
        "是 / 否",
    ),
    col(
        "threat",
        "扬言访",
        &["yybz"],
        false,
        T::Flag,
        "flags.threat",
        "是 / 否",
    ),
    col(
        "law_related",
        "涉法涉诉",
        &["sfssbz"],
        false,
        T::Flag,
        "flags.law_related",
        "是 / 否",
    ),
    col(
        "superior_assigned",
        "上级交办",
        &[],
        false,
        T::Flag,
        "flags.superior_assigned",
        "是 / 否",
    ),
];

const WORKORDER_COLUMNS: &[Column] = &[
    col(
        "order_no",
        "工单编号",
        &["工单号"],
        true,
        T::Text,
        "order_no",
        "12345 平台的工单编号；重复导入同一编号不会重复登记",
    ),
    col(
        "version",
        "版本号",
        &[],
        false,
        T::Count,
        "source.version",
        "同一工单更新内容时填写更大的版本号；默认 1",
    ),
    col(
        "call_time",
        "来电时间",
        &["受理时间"],
        true,
        T::DateTime,
        "call_time",
        "如 2024-03-05 09:30:00",
    ),
    col(
        "channel",
        "受理渠道",
        &[],
        false,
        T::Text,
        "channel",
        "如 电话、网站、微信",
    ),
    col(
        "caller_name",
        "来电人姓名",
        &["来电人", "诉求人"],
        false,
        T::Text,
        "caller_name",
        "",
    ),
    col(
        "caller_phone",
        "来电号码",
        &["联系电话", "诉求人电话"],
        false,
        T::Phone,
        "caller_phone",
        "手机或固定电话；请将本列设为文本格式",
    ),
    col(
        "order_type",
        "工单类型",
        &["诉求类型"],
        true,
        T::Code("order_types"),
        "order_type",
        "从下拉列表选择",
    ),
    col(
        "classification",
        "诉求分类",
        &["分类"],
        false,
        T::Text,
        "classification",
        "最多四级，用 / 分隔，如 城乡建设/物业管理",
    ),
    col(
        "division",
        "事发地",
        &["所属区县", "区划"],
        true,
        T::Code("divisions"),
        "division",
        "从下拉列表选择区县（市）",
    ),
    col(
        "address",
        "事发地址",
        &["地址"],
        false,
        T::Text,
        "address",
        "",
    ),
    col(
        "street",
        "街道",
        &["街道（乡镇）"],
        false,
        T::Text,
        "street",
        "",
    ),
    col(
        "community",
        "社区",
        &["社区（村）"],
        false,
        T::Text,
        "community",
        "",
    ),
    col("title", "标题", &["工单标题"], true, T::Text, "title", ""),
    col(
        "content",
        "诉求内容",
        &["内容"],
        true,
        T::Text,
        "content",
        "不超过4000字",
    ),
    col(
        "urgency",
        "紧急程度",
        &[],
        false,
        T::Code("urgencies"),
        "urgency",
        "从下拉列表选择",
    ),
    col(
        "unit_name",
        "承办单位",
        &[],
        false,
        T::Text,
        "handling_unit.name",
        "",
    ),
    col(
        "unit_code",
        "承办单位代码",
        &[],
        false,
        T::Text,
        "handling_unit.code",
        "",
    ),
    col(
        "time_limit_days",
        "处理时限",
        &["处理时限(天)"],
        false,
        T::Count,
        "time_limit_days",
        "天数",
    ),
    col(
        "deadline",
        "办理截止日期",
        &["截止日期"],
        false,
        T::Date,
        "deadline",
        "",
    ),
    col(
        "dispatched_at",
        "派单时间",
        &[],
        false,
        T::DateTime,
        "dispatched_at",
        "",
    ),
    col(
        "completed_at",
        "办结时间",
        &[],
        false,
        T::DateTime,
        "completed_at",
        "",
    ),
    col(
        "state",
        "工单状态",
        &["状态"],
        true,
        T::Code("order_states"),
        "state",
        "从下拉列表选择",
    ),
    col(
        "supervised",
        "是否督办",
        &["督办"],
        false,
        T::Flag,
        "supervised",
        "是 / 否",
    ),
    col(
        "overdue",
        "是否超期",
        &["超期"],
        false,
        T::Flag,
        "overdue",
        "是 / 否",
    ),
    col(
        "result",
        "办理结果",
        &[],
        false,
        T::Code("order_results"),
        "result",
        "从下拉列表选择",
    ),
];

const KEY_PERSON_COLUMNS: &[Column] = &[
    col("name", "姓名", &["人员姓名"], true, T::Text, "name", ""),
    col(
        "id_number",
        "证件号码",
        &["身份证号码", "身份证号"],
        true,
        T::IdNumber,
        "id_number",
        "居民身份证号码；同一号码再次导入时更新该人员",
    ),
    col(
        "mobile",
        "手机号码",
        &["手机号", "联系电话"],
        false,
        T::Mobile,
        "mobile",
        "",
    ),
    col(
        "division",
        "所属区划",
        &["区划", "属地"],
        true,
        T::Code("divisions"),
        "division",
        "从下拉列表选择",
    ),
    col(
        "category",
        "人员类别",
        &["类别"],
        false,
        T::Text,
        "category",
        "如 重复访、越级访、扬言访",
    ),
    col(
        "risk_level",
        "风险等级",
        &[],
        false,
        T::Choice(RISK_LEVELS),
        "risk_level",
        "高 / 中 / 低",
    ),
    col(
        "responsible_unit",
        "稳控责任单位",
        &["责任单位"],
        false,
        T::Text,
        "responsible_unit",
        "",
    ),
    col("remarks", "备注", &[], false, T::Text, "remarks", ""),
];

const WORD_LIST_COLUMNS: &[Column] = &[
    col(
        "list",
        "词库",
        &["词库类型"],
        true,
        T::Choice(WORD_LIST_NAMES),
        "list",
        "敏感词 / 热点词",
    ),
    col(
        "word",
        "词语",
        &["词", "关键词"],
        true,
        T::Text,
        "word",
        "每行一个词，不超过50字",
    ),
    col(
        "category",
        "类别",
        &["分类"],
        false,
        T::Text,
        "category",
        "如 群体性、安全生产",
    ),
];

/// Folds full-width ASCII and the ideographic space, removes spaces, `*` markers and a
/// parenthesized hint, and lower-cases ASCII: the form headers are compared in.
pub fn normalize_header(s: &str) -> String {
    let folded: String = s.chars().map(fold_width).collect();
    let mut out = String::with_capacity(folded.len());
    let mut depth = 0u32;
    for c in folded.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_whitespace() || c == '*' => {}
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// Full-width ASCII (U+FF01..U+FF5E) to ASCII, the ideographic space to a space.
pub fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

/// Where each template column sits in a sheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub kind: SheetKind,
    /// 0-based index of the header row; data starts on the next row.
    pub header_row: usize,
    /// The sheet's header texts, by sheet column (as they read, after merged-cell filling).
    pub headers: Vec<String>,
    /// For each of `kind.columns()`, the sheet column holding it.
    pub positions: Vec<Option<usize>>,
}

/// Why a sheet's header row cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("no header row of the {kind} template in the first {rows} rows")]
    NoHeaderRow { kind: &'static str, rows: usize },
    #[error("required columns missing: {}", .0.join(", "))]
    MissingColumns(Vec<&'static str>),
    #[error("column {header} appears twice (sheet columns {first} and {second})")]
    DuplicateColumn {
        header: &'static str,
        first: usize,
        second: usize,
    },
}

impl LayoutError {
    /// A message for staff, in Chinese.
    pub fn message_zh(&self) -> String {
        match self {
            LayoutError::NoHeaderRow { rows, .. } => {
                format!("前{rows}行中没有找到模板的表头行，请使用下载的模板填写")
            }
            LayoutError::MissingColumns(cols) => format!("缺少必填列：{}", cols.join("、")),
            LayoutError::DuplicateColumn { header, .. } => format!("列“{header}”出现了两次"),
        }
    }
}

/// How many rows from the top are searched for the header row.
pub const HEADER_SEARCH_ROWS: usize = 10;

/// Finds the header row among the first rows of a sheet: the row matching the most template
/// columns, where an empty header cell takes the text of the cell above it (a header merged
/// vertically over two rows). Columns the template does not know are ignored (kept in error
/// reports).
pub fn find_layout(kind: SheetKind, rows: &[Vec<Cell>]) -> Result<Layout, LayoutError> {
    let columns = kind.columns();
    let wanted: Vec<Vec<String>> = columns
        .iter()
        .map(|c| {
            std::iter::once(c.header)
                .chain(c.aliases.iter().copied())
                .map(normalize_header)
                .collect()
        })
        .collect();
    let mut best: Option<(usize, Layout)> = None;
    for r in 0..rows.len().min(HEADER_SEARCH_ROWS) {
        let width = rows[r]
            .len()
            .max(r.checked_sub(1).map_or(0, |p| rows[p].len()));
        let headers: Vec<String> = (0..width)
            .map(|c| {
                let own = rows[r].get(c).map(Cell::display).unwrap_or_default();
                if own.trim().is_empty() && r > 0 {
                    rows[r - 1].get(c).map(Cell::display).unwrap_or_default()
                } else {
                    own
                }
            })
            .collect();
        let mut positions = vec![None; columns.len()];
        let mut matched = 0;
        let mut duplicate = None;
        for (sc, h) in headers.iter().enumerate() {
            let n = normalize_header(h);
            if n.is_empty() {
                continue;
            }
            if let Some(i) = wanted.iter().position(|w| w.contains(&n)) {
                match positions[i] {
                    None => {
                        positions[i] = Some(sc);
                        matched += 1;
                    }
                    Some(first) => duplicate = duplicate.or(Some((i, first, sc))),
                }
            }
        }
        if matched == 0 {
            continue;
        }
        if let Some((i, first, second)) = duplicate {
            if best.as_ref().is_none_or(|(m, _)| matched > *m) {
                return Err(LayoutError::DuplicateColumn {
                    header: columns[i].header,
                    first: first + 1,
                    second: second + 1,
                });
            }
        }
        if best.as_ref().is_none_or(|(m, _)| matched > *m) {
            best = Some((
                matched,
                Layout {
                    kind,
                    header_row: r,
                    headers,
                    positions,
                },
            ));
        }
    }
    let Some((_, layout)) = best else {
        return Err(LayoutError::NoHeaderRow {
            kind: kind.as_str(),
            rows: HEADER_SEARCH_ROWS,
        });
    };
    let missing: Vec<&'static str> = columns
        .iter()
        .zip(&layout.positions)
        .filter(|(c, p)| c.required && p.is_none())
        .map(|(c, _)| c.header)
        .collect();
    if !missing.is_empty() {
        return Err(LayoutError::MissingColumns(missing));
    }
    Ok(layout)
}

/// One reason a row was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The template header of the column it concerns, when it concerns one.
    pub column: Option<&'static str>,
    pub error: FieldError,
}

impl RowError {
    /// `列名：中文原因` for the error column of a report.
    pub fn text_zh(&self) -> String {
        match self.column {
            Some(c) => format!("{c}：{}", self.error.message_zh),
            None => self.error.message_zh.clone(),
        }
    }
}

/// Codes of the errors cell coercion adds to the validation codes, with English and Chinese
/// messages.
pub const CELL_CODES: &[(&str, &str, &str)] = &[
    (
        "date_format",
        "not a date: use 2024-03-05, 2024/3/5, 2024年3月5日 or 2024.3.5",
        "日期格式无法识别，请填写如 2024-03-05、2024/3/5、2024年3月5日 或 2024.3.5",
    ),
    (
        "datetime_format",
        "not a date and time: use 2024-03-05 09:30 (a date alone means midnight)",
        "时间格式无法识别，请填写如 2024-03-05 09:30",
    ),
    ("number_format", "not a whole number", "应填写整数"),
    (
        "id_number_scientific",
        "the identity number was turned into a number in scientific notation (such as 4.30102E+17) and lost its last digits; format the column as text and type the number again",
        "证件号码被 Excel 转成了科学计数法（如 4.30102E+17），末尾数字已丢失；请将该列设置为文本格式后重新填写",
    ),
    ("flag_format", "use 是 or 否", "应填写“是”或“否”"),
    ("choice", "not one of the allowed values", "不是允许的取值"),
    ("cell_error", "the cell holds an Excel error value", "单元格是 Excel 错误值（如 #N/A），请改为实际内容"),
];

fn cell_error(path: &str, code: &str, detail_zh: Option<&str>) -> FieldError {
    let (en, zh) = CELL_CODES.iter().find(|(c, _, _)| *c == code).map_or_else(
        || xfhub_schemas::validate::messages(code),
        |(_, en, zh)| (*en, *zh),
    );
    FieldError {
        path: path.to_owned(),
        code: code.to_owned(),
        message: en.to_owned(),
        message_zh: match detail_zh {
            Some(d) => format!("{zh}：{d}"),
            None => zh.to_owned(),
        },
    }
}

/// A data row with its sheet layout.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub layout: &'a Layout,
    pub cells: &'a [Cell],
}

static EMPTY: Cell = Cell::Empty;

impl<'a> Row<'a> {
    pub fn new(layout: &'a Layout, cells: &'a [Cell]) -> Self {
        Row { layout, cells }
    }

    /// True when no cell of the row holds anything (such rows are skipped, not rejected).
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(Cell::is_blank)
    }

    fn column(&self, key: &str) -> Option<(usize, &'static Column)> {
        self.layout
            .kind
            .columns()
            .iter()
            .enumerate()
            .find(|(_, c)| c.key == key)
    }

    /// The cell of a template column (empty when the sheet lacks the column).
    pub fn cell(&self, key: &str) -> &'a Cell {
        self.column(key)
            .and_then(|(i, _)| self.layout.positions[i])
            .and_then(|sc| self.cells.get(sc))
            .unwrap_or(&EMPTY)
    }

    /// The bytes that identify the row's content: every template column's key and value in
    /// template order, without the columns named in `skip` (the source id). Used to derive a
    /// stable source id for rows without one, so that uploading the same row twice is a
    /// repeat, wherever the row sits in the sheet.
    pub fn fingerprint(&self, skip: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in self.layout.kind.columns() {
            if skip.contains(&c.key) {
                continue;
            }
            out.extend_from_slice(c.key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(self.cell(c.key).display().trim().as_bytes());
            out.push(0x1f);
        }
        out
    }
}

/// Collects coercion errors of one row.
struct Coercer<'r, 'a> {
    row: &'r Row<'a>,
    errors: Vec<RowError>,
    tables: &'a CodeTables,
}

impl<'r, 'a> Coercer<'r, 'a> {
    fn spec(&self, key: &str) -> &'static Column {
        self.row
            .column(key)
            .map(|(_, c)| c)
            .expect("column keys are those of the template")
    }

    fn fail(&mut self, key: &str, code: &str, detail_zh: Option<&str>) {
        let c = self.spec(key);
        self.errors.push(RowError {
            column: Some(c.header),
            error: cell_error(c.path, code, detail_zh),
        });
    }

    /// The cell as trimmed text with full-width ASCII folded where the type wants it; None
    /// when blank; an error value is reported.
    fn raw(&mut self, key: &str) -> Option<&'a Cell> {
        let cell = self.row.cell(key);
        match cell {
            Cell::Error(_) => {
                self.fail(key, "cell_error", None);
                None
            }
            c if c.is_blank() => None,
            c => Some(c),
        }
    }

    fn text(&mut self, key: &str) -> Option<String> {
        self.raw(key).map(|c| c.display().trim().to_owned())
    }

    fn required_text(&mut self, key: &str) -> String {
        self.text(key).unwrap_or_default()
    }

    fn date(&mut self, key: &str) -> Option<NaiveDate> {
        let cell = self.raw(key)?;
        let parsed = match cell {
            Cell::Number(n) | Cell::DateTime(n) => serial_to_datetime(*n).map(|d| d.date()),
            Cell::Text(s) => parse_date_text(s).map(|d| d.date()),
            _ => None,
        };
        if parsed.is_none() {
            self.fail(key, "date_format", None);
        }
        parsed
    }

    fn datetime(&mut self, key: &str) -> Option<DateTime<FixedOffset>> {
        let cell = self.raw(key)?;
        let parsed = match cell {
            Cell::Number(n) | Cell::DateTime(n) => serial_to_datetime(*n),
            Cell::Text(s) => parse_date_text(s),
            _ => None,
        };
        let china = FixedOffset::east_opt(8 * 3600).expect("+08:00");
        match parsed.and_then(|d| china.from_local_datetime(&d).single()) {
            Some(d) => Some(d),
            None => {
                self.fail(key, "datetime_format", None);
                None
            }
        }
    }

    fn count(&mut self, key: &str) -> Option<u32> {
        let cell = self.raw(key)?;
        let parsed = match cell {
            Cell::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n <= f64::from(u32::MAX) => {
                Some(*n as u32)
            }
            Cell::Text(s) => fold(s).trim().parse::<u32>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.fail(key, "number_format", None);
        }
        parsed
    }

    fn flag(&mut self, key: &str) -> Option<bool> {
        let cell = self.raw(key)?;
        let parsed = match cell {
            Cell::Bool(b) => Some(*b),
            Cell::Number(n) if *n == 1.0 => Some(true),
            Cell::Number(n) if *n == 0.0 => Some(false),
            Cell::Text(s) => match fold(s).trim().to_ascii_lowercase().as_str() {
                "是" | "y" | "yes" | "true" | "1" | "√" | "有" => Some(true),
                "否" | "n" | "no" | "false" | "0" | "×" | "无" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.fail(key, "flag_format", None);
        }
        parsed
    }

    fn choice(&mut self, key: &str) -> Option<&'static str> {
        let ColType::Choice(values) = self.spec(key).ty else {
            return None;
        };
        let text = self.text(key)?;
        let t = fold(&text).trim().to_owned();
        let found = values.iter().find(|(label, value)| {
            t == *label || t == *value || t.trim_end_matches('库') == *label
        });
        match found {
            Some((_, v)) => Some(v),
            None => {
                let allowed: Vec<&str> = values.iter().map(|(l, _)| *l).collect();
                self.fail(key, "choice", Some(&format!("可填 {}", allowed.join("、"))));
                None
            }
        }
    }

    /// A code: the code itself, its Chinese name, or the dropdown form `code 名称`. A number
    /// cell is zero-padded to the table's code widths (Excel drops the leading zeros of `0001`).
    /// An unknown value is passed on for validation, which names it.
    fn code(&mut self, key: &str) -> Option<String> {
        let ColType::Code(table) = self.spec(key).ty else {
            return self.text(key);
        };
        let cell = self.raw(key)?;
        Some(match cell {
            Cell::Number(n) if n.fract() == 0.0 && *n >= 0.0 => {
                code_from_number(self.tables, table, *n as u64)
            }
            other => code_from_text(self.tables, table, &other.display()),
        })
    }

    fn id_number(&mut self, key: &str) -> Option<String> {
        let cell = self.raw(key)?;
        match cell {
            // Up to 15 digits survive as a number (legacy 15-digit numbers); 18 digits do not.
            Cell::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n < 1e15 => {
                Some(format!("{}", *n as u64))
            }
            Cell::Number(_) => {
                self.fail(key, "id_number_scientific", None);
                None
            }
            other => {
                let t: String = fold(&other.display())
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '\'')
                    .collect();
                if looks_scientific(&t) {
                    self.fail(key, "id_number_scientific", None);
                    None
                } else {
                    Some(t)
                }
            }
        }
    }

    fn phone(&mut self, key: &str) -> Option<String> {
        let cell = self.raw(key)?;
        match cell {
            Cell::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n < 1e15 => {
                Some(format!("{}", *n as u64))
            }
            other => Some(fold(&other.display()).trim().to_owned()),
        }
    }

    fn keywords(&mut self, key: &str) -> Vec<String> {
        self.text(key)
            .map(|t| {
                t.split(|c: char| matches!(c, '、' | ',' | '，' | ';' | '；') || c.is_whitespace())
                    .map(str::trim)
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn fold(s: &str) -> String {
    s.chars().map(fold_width).collect()
}

/// `4.30102E+17`, `4.30102e17`: a number in scientific notation.
fn looks_scientific(s: &str) -> bool {
    let Some((mantissa, exp)) = s.split_once(['e', 'E']) else {
        return false;
    };
    let exp = exp.strip_prefix('+').unwrap_or(exp);
    !mantissa.is_empty()
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !exp.is_empty()
        && exp.chars().all(|c| c.is_ascii_digit())
}

fn code_from_number(tables: &CodeTables, table: &str, n: u64) -> String {
    let plain = n.to_string();
    if let Some(t) = tables.table(table) {
        for e in &t.entries {
            if e.code.len() >= plain.len()
                && e.code.bytes().all(|b| b.is_ascii_digit())
                && format!("{n:0width$}", width = e.code.len()) == e.code
            {
                return e.code.clone();
            }
        }
    }
    plain
}

fn code_from_text(tables: &CodeTables, table: &str, text: &str) -> String {
    let t = fold(text).trim().to_owned();
    let Some(tab) = tables.table(table) else {
        return t;
    };
    if tab.get(&t).is_some() {
        return t;
    }
    // The dropdown form `code 名称` (also `code-名称`, `code|名称`).
    if let Some((code, _)) = t.split_once([' ', '-', '|']) {
        if tab.get(code.trim()).is_some() {
            return code.trim().to_owned();
        }
    }
    // A Chinese name, when exactly one active entry has it.
    let mut named = tab.entries.iter().filter(|e| e.active && e.name_zh == t);
    if let (Some(e), None) = (named.next(), named.next()) {
        return e.code.clone();
    }
    t
}

/// The date and time of an Excel serial (1900 date system; serials before 1900-03-01 follow
/// Excel's phantom 1900-02-29). Rounded to the second.
pub fn serial_to_datetime(serial: f64) -> Option<NaiveDateTime> {
    if !serial.is_finite() || !(1.0..2_958_466.0).contains(&serial) {
        return None;
    }
    let base = if serial < 61.0 {
        NaiveDate::from_ymd_opt(1899, 12, 31)?
    } else {
        NaiveDate::from_ymd_opt(1899, 12, 30)?
    };
    let days = serial.floor();
    let secs = ((serial - days) * 86_400.0).round() as i64;
    let dt = base.and_time(NaiveTime::MIN) + Duration::days(days as i64) + Duration::seconds(secs);
    Some(dt)
}

/// Parses a date with an optional time as staff type it: `2024年3月5日`, `2024/3/5`,
/// `2024-03-05`, `2024.3.5`, `20240305`, each optionally followed by a time `9:30`,
/// `09:30:15` or `9时30分`, or an RFC 3339 instant (converted to China time).
pub fn parse_date_text(s: &str) -> Option<NaiveDateTime> {
    let s = fold(s);
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        let china = FixedOffset::east_opt(8 * 3600)?;
        return Some(dt.with_timezone(&china).naive_local());
    }
    let (date_part, time_part) = split_date_time(s);
    let date = parse_date_only(date_part)?;
    let time = match time_part.trim() {
        "" => NaiveTime::MIN,
        t => parse_time(t)?,
    };
    Some(date.and_time(time))
}

fn split_date_time(s: &str) -> (&str, &str) {
    if let Some(i) = s.find('日') {
        let end = i + '日'.len_utf8();
        return (&s[..end], &s[end..]);
    }
    match s.find([' ', 'T']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn parse_date_only(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::from_ymd_opt(
            s[..4].parse().ok()?,
            s[4..6].parse().ok()?,
            s[6..].parse().ok()?,
        );
    }
    let parts: Vec<&str> = s
        .trim_end_matches('日')
        .split(['年', '月', '/', '-', '.'])
        .collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || p.len() > 4) {
        return None;
    }
    let y: i32 = parts[0].parse().ok()?;
    if parts[0].len() != 4 {
        return None;
    }
    NaiveDate::from_ymd_opt(y, parts[1].parse().ok()?, parts[2].parse().ok()?)
}

fn parse_time(t: &str) -> Option<NaiveTime> {
    let t = t.trim().trim_end_matches('秒');
    let parts: Vec<&str> = t
        .split([':', '时', '分', '点'])
        .filter(|p| !p.is_empty())
        .collect();
    let num = |i: usize| -> Option<u32> {
        parts.get(i).map_or(Some(0), |p| {
            let p = p.split('.').next().unwrap_or(p);
            p.parse().ok()
        })
    };
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    NaiveTime::from_hms_opt(num(0)?, num(1)?, num(2)?)
}

/// Splits validation errors onto columns and drops those on a path whose cell already failed
/// to read (its value was a placeholder).
fn merge(
    kind: SheetKind,
    mut cell_errors: Vec<RowError>,
    validation: Vec<FieldError>,
) -> Vec<RowError> {
    let failed: Vec<String> = cell_errors.iter().map(|e| e.error.path.clone()).collect();
    for e in validation {
        if failed.contains(&e.path) {
            continue;
        }
        let column = kind
            .columns()
            .iter()
            .filter(|c| {
                e.path == c.path
                    || e.path.starts_with(&format!("{}[", c.path))
                    || e.path.starts_with(&format!("{}.", c.path))
            })
            .max_by_key(|c| c.path.len())
            .map(|c| c.header);
        cell_errors.push(RowError { column, error: e });
    }
    cell_errors
}

/// Maps one row of the petition template to a validated petition. `source_id_of` turns the
/// row's fingerprint into a source id for rows without a 来源编号 (the hub uses a keyed digest:
/// the row holds personal data). Every reason is returned when the row is not valid.
pub fn petition_from_row(
    row: &Row<'_>,
    tables: &CodeTables,
    now: DateTime<Utc>,
    source_id_of: &dyn Fn(&[u8]) -> String,
) -> Result<Petition, Vec<RowError>> {
    let mut c = Coercer {
        row,
        errors: Vec::new(),
        tables,
    };
    let source_id = c
        .text("source_id")
        .unwrap_or_else(|| source_id_of(&row.fingerprint(&["source_id", "version"])));
    let version = c.count("version").map_or(1, i64::from);
    let anonymous = c.flag("anonymous").unwrap_or(false);
    let person = Complainant {
        name: c.text("name"),
        mobile: c.phone("mobile"),
        id_type: c.code("id_type"),
        id_number: c.id_number("id_number"),
        address: c.text("address"),
        detailed_address: c.text("detailed_address"),
    };
    let has_person = person != Complainant::default();
    let division = c.code("division").unwrap_or_default();
    let content_class = c.code("content_class").unwrap_or_default();
    let purpose = c.code("purpose").unwrap_or_default();
    let form = c.code("form").unwrap_or_default();
    let summary = c.required_text("summary");
    let keywords = c.keywords("keywords");
    let complainant_count = c.count("complainant_count").unwrap_or(1);
    let people_involved = c.count("people_involved").unwrap_or(complainant_count);
    let complaint_date = c.date("complaint_date");
    let registered_at = c.datetime("registered_at");
    let china = FixedOffset::east_opt(8 * 3600).expect("+08:00");
    let today = now.with_timezone(&china);
    // Placeholders for cells that failed to read; their errors are already reported and
    // validation errors on the same path are dropped.
    let complaint_date = complaint_date
        .or(registered_at.map(|r| r.date_naive()))
        .unwrap_or(today.date_naive());
    let registered_at = registered_at.unwrap_or_else(|| {
        china
            .from_local_datetime(&complaint_date.and_time(NaiveTime::MIN))
            .single()
            .unwrap_or(today)
    });
    let group = c
        .flag("group")
        .unwrap_or(complainant_count >= xfhub_schemas::validate::GROUP_MIN_PEOPLE);
    let petition = Petition {
        source: SourceRef {
            system: "excel".to_owned(),
            id: source_id,
            version,
        },
        anonymous,
        complainants: if has_person { vec![person] } else { Vec::new() },
        appeal: Appeal {
            division,
            content_class,
            purpose,
            form,
            summary,
            keywords,
            materials: Vec::new(),
        },
        acceptance: Acceptance {
            complainant_count,
            people_involved,
            complaint_date,
            registered_at,
            remarks: c.text("remarks"),
        },
        handling: Handling {
            registering_org: c.text("registering_org"),
            accepted_at: None,
            method: c.code("handling_method"),
            responsible_unit: c.text("responsible_unit"),
            deadline: c.date("deadline"),
            replied_at: None,
            concluded: c.flag("concluded").unwrap_or(false),
        },
        flags: Flags {
            repeat: c.flag("repeat").unwrap_or(false),
            group,
            beyond_level: c.flag("beyond_level").unwrap_or(false),
            threat: c.flag("threat").unwrap_or(false),
            law_related: c.flag("law_related").unwrap_or(false),
            superior_assigned: c.flag("superior_assigned").unwrap_or(false),
            level_reached: None,
        },
        evaluation: None,
    };
    let cell_errors = c.errors;
    match validate_petition(petition, tables, now) {
        Ok(p) if cell_errors.is_empty() => Ok(p),
        Ok(_) => Err(cell_errors),
        Err(v) => Err(merge(SheetKind::Petition, cell_errors, v)),
    }
}

/// Maps one row of the 12345 work order template to a validated work order; the source id is
/// the 工单编号.
pub fn workorder_from_row(
    row: &Row<'_>,
    tables: &CodeTables,
    now: DateTime<Utc>,
) -> Result<WorkOrder, Vec<RowError>> {
    let mut c = Coercer {
        row,
        errors: Vec::new(),
        tables,
    };
    let china = FixedOffset::east_opt(8 * 3600).expect("+08:00");
    let order_no = c.required_text("order_no");
    let version = c.count("version").map_or(1, i64::from);
    let call_time = c.datetime("call_time");
    let unit_name = c.text("unit_name");
    let unit_code = c.text("unit_code");
    let w = WorkOrder {
        source: SourceRef {
            system: "excel".to_owned(),
            id: order_no.clone(),
            version,
        },
        order_no,
        call_time: call_time.unwrap_or_else(|| now.with_timezone(&china)),
        channel: c.text("channel"),
        caller_name: c.text("caller_name"),
        caller_phone: c.phone("caller_phone"),
        order_type: c.code("order_type").unwrap_or_default(),
        classification: c
            .text("classification")
            .map(|t| {
                t.split(['/', '／', '>', '-'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        division: c.code("division").unwrap_or_default(),
        address: c.text("address"),
        street: c.text("street"),
        community: c.text("community"),
        title: c.required_text("title"),
        content: c.required_text("content"),
        urgency: c.code("urgency"),
        handling_unit: match (unit_name, unit_code) {
            (None, None) => None,
            (name, code) => Some(Unit {
                name: name.unwrap_or_default(),
                code,
            }),
        },
        time_limit_days: c.count("time_limit_days"),
        deadline: c.date("deadline"),
        dispatched_at: c.datetime("dispatched_at"),
        completed_at: c.datetime("completed_at"),
        state: c.code("state").unwrap_or_default(),
        returns: Vec::new(),
        extensions: 0,
        supervised: c.flag("supervised").unwrap_or(false),
        overdue: c.flag("overdue").unwrap_or(false),
        follow_up: None,
        result: c.code("result"),
    };
    let cell_errors = c.errors;
    match validate_workorder(w, tables, now) {
        Ok(w) if cell_errors.is_empty() => Ok(w),
        Ok(_) => Err(cell_errors),
        Err(v) => Err(merge(SheetKind::WorkOrder, cell_errors, v)),
    }
}

/// A key person (重点人员) row, validated. The identity and mobile numbers are personal data:
/// the hub seals them before storing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPersonRow {
    pub name: String,
    /// Normalized (upper-case `X`) resident identity number.
    pub id_number: String,
    pub mobile: Option<String>,
    pub division: String,
    pub category: Option<String>,
    /// `high` | `medium` | `low`.
    pub risk_level: Option<String>,
    pub responsible_unit: Option<String>,
    pub remarks: Option<String>,
}

/// Maps and validates a key person row.
pub fn key_person_from_row(
    row: &Row<'_>,
    tables: &CodeTables,
) -> Result<KeyPersonRow, Vec<RowError>> {
    let mut c = Coercer {
        row,
        errors: Vec::new(),
        tables,
    };
    let name = c.text("name");
    let id_number = c.id_number("id_number");
    let mobile = c.phone("mobile");
    let division = c.code("division");
    let person = KeyPersonRow {
        name: name.clone().unwrap_or_default(),
        id_number: id_number.clone().unwrap_or_default(),
        mobile: None,
        division: String::new(),
        category: c.text("category"),
        risk_level: c.choice("risk_level").map(str::to_owned),
        responsible_unit: c.text("responsible_unit"),
        remarks: c.text("remarks"),
    };
    let mut errors = c.errors;
    let mut push = |key: &str, code: &str| {
        let spec = KEY_PERSON_COLUMNS
            .iter()
            .find(|c| c.key == key)
            .expect("key person column");
        if !errors.iter().any(|e| e.error.path == spec.path) {
            errors.push(RowError {
                column: Some(spec.header),
                error: FieldError::new(spec.path, code),
            });
        }
    };
    match name.as_deref() {
        None => push("name", "required"),
        Some(n) if n.chars().count() > xfhub_schemas::validate::MAX_NAME_CHARS => {
            push("name", "too_long")
        }
        _ => {}
    }
    let id_number = match id_number {
        None => {
            push("id_number", "required");
            None
        }
        Some(n) => match check_id_number(&n) {
            Ok(n) => Some(n),
            Err(code) => {
                push("id_number", code);
                None
            }
        },
    };
    let mobile = match mobile {
        None => None,
        Some(m) => match normalize_mobile(&m) {
            Some(m) => Some(m),
            None => {
                push("mobile", "mobile_format");
                None
            }
        },
    };
    let division = match division {
        None => {
            push("division", "required");
            None
        }
        Some(d) => match tables.current_division(&d) {
            Some(d) => Some(d),
            None => {
                push("division", "unknown_code");
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(KeyPersonRow {
        id_number: id_number.unwrap_or_default(),
        mobile,
        division: division.unwrap_or_default(),
        ..person
    })
}

/// A word list row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordRow {
    /// `sensitive` | `hot` (the `word_lists.list` column).
    pub list: String,
    pub word: String,
    pub category: Option<String>,
}

/// Longest word a list accepts, in characters.
pub const MAX_WORD_CHARS: usize = 50;

/// Maps and validates a word list row.
pub fn word_from_row(row: &Row<'_>, tables: &CodeTables) -> Result<WordRow, Vec<RowError>> {
    let mut c = Coercer {
        row,
        errors: Vec::new(),
        tables,
    };
    let list_cell_blank = row.cell("list").is_blank();
    let list = c.choice("list");
    let word = c.text("word");
    let category = c.text("category");
    let mut errors = c.errors;
    let spec = |key: &str| {
        WORD_LIST_COLUMNS
            .iter()
            .find(|c| c.key == key)
            .expect("word list column")
    };
    if list_cell_blank {
        let s = spec("list");
        errors.push(RowError {
            column: Some(s.header),
            error: FieldError::new(s.path, "required"),
        });
    }
    match &word {
        None => {
            let s = spec("word");
            errors.push(RowError {
                column: Some(s.header),
                error: FieldError::new(s.path, "required"),
            });
        }
        Some(w) if w.chars().count() > MAX_WORD_CHARS => {
            let s = spec("word");
            errors.push(RowError {
                column: Some(s.header),
                error: FieldError::new(s.path, "too_long"),
            });
        }
        _ => {}
    }
    match (list, word) {
        (Some(list), Some(word)) if errors.is_empty() => Ok(WordRow {
            list: list.to_owned(),
            word,
            category,
        }),
        _ => Err(errors),
    }
}

/// `code 名称`, the dropdown form of a code (the code alone when the table does not know it).
pub fn code_label(tables: &CodeTables, table: &str, code: &str) -> String {
    match tables.lookup(table, code) {
        Some(e) => format!("{} {}", e.code, e.name_zh),
        None => code.to_owned(),
    }
}

fn opt_text(v: &Option<String>) -> Cell {
    v.as_ref().map_or(Cell::Empty, |s| Cell::Text(s.clone()))
}

fn flag_cell(b: bool) -> Cell {
    Cell::Text(if b { "是" } else { "否" }.to_owned())
}

fn datetime_cell(d: &DateTime<FixedOffset>) -> Cell {
    Cell::Text(d.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A petition as a row of the petition template (its columns in template order), so that an
/// export can be edited and imported again. Codes are written as `code 名称`. Personal numbers
/// are written as the petition holds them: mask them first when the reader may not see them.
pub fn petition_to_cells(p: &Petition, tables: &CodeTables) -> Vec<Cell> {
    let person = p.complainants.first();
    let pf =
        |f: fn(&Complainant) -> &Option<String>| person.map_or(Cell::Empty, |c| opt_text(f(c)));
    PETITION_COLUMNS
        .iter()
        .map(|c| match c.key {
            "source_id" => Cell::Text(p.source.id.clone()),
            "version" => Cell::Number(p.source.version as f64),
            "anonymous" => flag_cell(p.anonymous),
            "name" => pf(|c| &c.name),
            "mobile" => pf(|c| &c.mobile),
            "id_type" => person
                .and_then(|c| c.id_type.as_ref())
                .map_or(Cell::Empty, |t| {
                    Cell::Text(code_label(tables, "id_types", t))
                }),
            "id_number" => pf(|c| &c.id_number),
            "address" => pf(|c| &c.address),
            "detailed_address" => pf(|c| &c.detailed_address),
            "division" => Cell::Text(code_label(tables, "divisions", &p.appeal.division)),
            "content_class" => Cell::Text(code_label(
                tables,
                "content_classes",
                &p.appeal.content_class,
            )),
            "purpose" => Cell::Text(code_label(tables, "purposes", &p.appeal.purpose)),
            "form" => Cell::Text(code_label(tables, "forms", &p.appeal.form)),
            "summary" => Cell::Text(p.appeal.summary.clone()),
            "keywords" => Cell::Text(p.appeal.keywords.join("、")),
            "complainant_count" => Cell::Number(f64::from(p.acceptance.complainant_count)),
            "people_involved" => Cell::Number(f64::from(p.acceptance.people_involved)),
            "complaint_date" => Cell::Text(p.acceptance.complaint_date.to_string()),
            "registered_at" => datetime_cell(&p.acceptance.registered_at),
            "remarks" => opt_text(&p.acceptance.remarks),
            "registering_org" => opt_text(&p.handling.registering_org),
            "handling_method" => p.handling.method.as_ref().map_or(Cell::Empty, |m| {
                Cell::Text(code_label(tables, "handling_methods", m))
            }),
            "responsible_unit" => opt_text(&p.handling.responsible_unit),
            "deadline" => p
                .handling
                .deadline
                .map_or(Cell::Empty, |d| Cell::Text(d.to_string())),
            "concluded" => flag_cell(p.handling.concluded),
            "repeat" => flag_cell(p.flags.repeat),
            "group" => flag_cell(p.flags.group),
            "beyond_level" => flag_cell(p.flags.beyond_level),
            "threat" => flag_cell(p.flags.threat),
            "law_related" => flag_cell(p.flags.law_related),
            "superior_assigned" => flag_cell(p.flags.superior_assigned),
            _ => Cell::Empty,
        })
        .collect()
}

/// A work order as a row of the work order template (see [`petition_to_cells`]).
pub fn workorder_to_cells(w: &WorkOrder, tables: &CodeTables) -> Vec<Cell> {
    let code = |table: &str, v: &Option<String>| {
        v.as_ref()
            .map_or(Cell::Empty, |c| Cell::Text(code_label(tables, table, c)))
    };
    WORKORDER_COLUMNS
        .iter()
        .map(|c| match c.key {
            "order_no" => Cell::Text(w.order_no.clone()),
            "version" => Cell::Number(w.source.version as f64),
            "call_time" => datetime_cell(&w.call_time),
            "channel" => opt_text(&w.channel),
            "caller_name" => opt_text(&w.caller_name),
            "caller_phone" => opt_text(&w.caller_phone),
            "order_type" => Cell::Text(code_label(tables, "order_types", &w.order_type)),
            "classification" => Cell::Text(w.classification.join("/")),
            "division" => Cell::Text(code_label(tables, "divisions", &w.division)),
            "address" => opt_text(&w.address),
            "street" => opt_text(&w.street),
            "community" => opt_text(&w.community),
            "title" => Cell::Text(w.title.clone()),
            "content" => Cell::Text(w.content.clone()),
            "urgency" => code("urgencies", &w.urgency),
            "unit_name" => w
                .handling_unit
                .as_ref()
                .map_or(Cell::Empty, |u| Cell::Text(u.name.clone())),
            "unit_code" => w
                .handling_unit
                .as_ref()
                .map_or(Cell::Empty, |u| opt_text(&u.code)),
            "time_limit_days" => w
                .time_limit_days
                .map_or(Cell::Empty, |d| Cell::Number(f64::from(d))),
            "deadline" => w
                .deadline
                .map_or(Cell::Empty, |d| Cell::Text(d.to_string())),
            "dispatched_at" => w.dispatched_at.as_ref().map_or(Cell::Empty, datetime_cell),
            "completed_at" => w.completed_at.as_ref().map_or(Cell::Empty, datetime_cell),
            "state" => Cell::Text(code_label(tables, "order_states", &w.state)),
            "supervised" => flag_cell(w.supervised),
            "overdue" => flag_cell(w.overdue),
            "result" => code("order_results", &w.result),
            _ => Cell::Empty,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    fn layout_of(kind: SheetKind, headers: &[&str]) -> Layout {
        find_layout(kind, &[headers.iter().map(|h| text(h)).collect()]).expect("layout")
    }

    /// One check helper, table-driven: a date cell and the date it must read as.
    fn check_date(cell: Cell, expected: Option<&str>) {
        let got = match &cell {
            Cell::Number(n) | Cell::DateTime(n) => serial_to_datetime(*n).map(|d| d.date()),
            Cell::Text(s) => parse_date_text(s).map(|d| d.date()),
            _ => None,
        };
        assert_eq!(
            got.map(|d| d.to_string()),
            expected.map(str::to_owned),
            "{cell:?}"
        );
    }

    #[test]
    fn dates_as_serials_and_text() {
        for (cell, expected) in [
            (Cell::Number(45356.0), Some("2024-03-05")),
            (Cell::DateTime(45356.75), Some("2024-03-05")),
            (Cell::Number(61.0), Some("1900-03-01")),
            (Cell::Number(59.0), Some("1900-02-28")),
            (text("2024年3月5日"), Some("2024-03-05")),
            (text("2024/3/5"), Some("2024-03-05")),
            (text("2024-03-05"), Some("2024-03-05")),
            (text("2024.3.5"), Some("2024-03-05")),
            (text("20240305"), Some("2024-03-05")),
            (text(" ２０２４－０３－０５ "), Some("2024-03-05")),
            (text("2024年3月5日 9时30分"), Some("2024-03-05")),
            (text("2024-02-30"), None),
            (text("24/3/5"), None),
            (text("3/5/2024"), None),
            (text("明天"), None),
            (Cell::Number(-3.0), None),
        ] {
            check_date(cell, expected);
        }
    }

    #[test]
    fn times_of_day() {
        for (s, expected) in [
            ("2024-03-05 09:30", "2024-03-05 09:30:00"),
            ("2024/3/5 9:30:15", "2024-03-05 09:30:15"),
            ("2024年3月5日 14时05分", "2024-03-05 14:05:00"),
            ("2024-03-05T01:00:00Z", "2024-03-05 09:00:00"),
            ("2024-03-05", "2024-03-05 00:00:00"),
        ] {
            assert_eq!(
                parse_date_text(s).map(|d| d.to_string()),
                Some(expected.to_owned()),
                "{s}"
            );
        }
        assert_eq!(parse_date_text("2024-03-05 25:00"), None);
        let noon = serial_to_datetime(45356.5).unwrap();
        assert_eq!(noon.to_string(), "2024-03-05 12:00:00");
    }

    #[test]
    fn headers_match_in_any_order_with_full_width_and_spaces() {
        assert_eq!(normalize_header(" 投诉 日期（必填）"), "投诉日期");
        assert_eq!(normalize_header("*问题属地"), "问题属地");
        assert_eq!(normalize_header("ＸＦＪＢＨ"), "xfjbh");
        let l = layout_of(
            SheetKind::WordList,
            &["类　别", "ＸＹＺ", " 词语 ", "词库（必填）"],
        );
        assert_eq!(l.positions, vec![Some(3), Some(2), Some(0)]);
    }

    #[test]
    fn header_row_below_a_title_and_merged_over_two_rows() {
        let rows = vec![
            vec![text("敏感词热点词库导入"), Cell::Empty, Cell::Empty],
            vec![text("词库"), text("词语信息"), Cell::Empty],
            vec![Cell::Empty, text("词语"), text("类别")],
        ];
        let l = find_layout(SheetKind::WordList, &rows).unwrap();
        assert_eq!(l.header_row, 2);
        assert_eq!(l.positions, vec![Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn missing_and_duplicate_columns() {
        let err =
            find_layout(SheetKind::WordList, &[vec![text("类别"), text("词库")]]).unwrap_err();
        assert_eq!(err, LayoutError::MissingColumns(vec!["词语"]));
        assert_eq!(err.message_zh(), "缺少必填列：词语");
        let err = find_layout(
            SheetKind::WordList,
            &[vec![text("词库"), text("词语"), text("词")]],
        )
        .unwrap_err();
        assert!(matches!(
            err,
            LayoutError::DuplicateColumn {
                header: "词语", ..
            }
        ));
        let err = find_layout(SheetKind::WordList, &[vec![text("a")]]).unwrap_err();
        assert!(matches!(err, LayoutError::NoHeaderRow { .. }));
    }

    fn petition_headers() -> Vec<&'static str> {
        PETITION_COLUMNS.iter().map(|c| c.header).collect()
    }

    fn petition_row(values: &[(&str, Cell)]) -> Vec<Cell> {
        PETITION_COLUMNS
            .iter()
            .map(|c| {
                values
                    .iter()
                    .find(|(k, _)| *k == c.key)
                    .map_or(Cell::Empty, |(_, v)| v.clone())
            })
            .collect()
    }

    fn good_values() -> Vec<(&'static str, Cell)> {
        vec![
            ("name", text("张三")),
            ("mobile", Cell::Number(13812345678.0)),
            ("id_number", text("430102199003071234")),
            ("division", text("430102 芙蓉区")),
            ("content_class", text("010101")),
            ("purpose", Cell::Number(2.0)),
            ("form", text("来访")),
            ("summary", text("小区噪音扰民")),
            ("keywords", text("噪音、扰民")),
            ("complaint_date", text("2024年3月5日")),
            ("registered_at", Cell::DateTime(45356.375)),
        ]
    }

    fn now() -> DateTime<Utc> {
        "2024-06-01T00:00:00Z".parse().unwrap()
    }

    fn fixed_id(_: &[u8]) -> String {
        "digest".to_owned()
    }

    fn valid_id() -> String {
        let first17 = "43010219900307123";
        format!("{first17}{}", id_check_char(first17) as char)
    }

    use xfhub_schemas::validate::id_check_char;

    #[test]
    fn a_good_petition_row_maps_and_validates() {
        let layout = layout_of(SheetKind::Petition, &petition_headers());
        let mut values = good_values();
        values[2] = ("id_number", text(&valid_id()));
        let cells = petition_row(&values);
        let p = petition_from_row(
            &Row::new(&layout, &cells),
            CodeTables::embedded(),
            now(),
            &fixed_id,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.source.id, "digest");
        assert_eq!(p.source.system, "excel");
        assert_eq!(p.appeal.division, "430102");
        assert_eq!(p.appeal.purpose, "02");
        assert_eq!(p.appeal.form, "0003");
        assert_eq!(p.appeal.keywords, vec!["噪音", "扰民"]);
        assert_eq!(p.acceptance.complaint_date.to_string(), "2024-03-05");
        assert_eq!(
            p.acceptance.registered_at.to_rfc3339(),
            "2024-03-05T09:00:00+08:00"
        );
        assert_eq!(p.complainants[0].mobile.as_deref(), Some("13812345678"));
        assert!(!p.flags.group);
    }

    #[test]
    fn every_reason_is_reported_with_its_column() {
        let layout = layout_of(SheetKind::Petition, &petition_headers());
        let mut values = good_values();
        values[2] = ("id_number", Cell::Number(4.30102199003071e17));
        values[3] = ("division", text("999999"));
        values[9] = ("complaint_date", text("2024-13-01"));
        values.push(("group", text("也许")));
        let cells = petition_row(&values);
        let errors = petition_from_row(
            &Row::new(&layout, &cells),
            CodeTables::embedded(),
            now(),
            &fixed_id,
        )
        .unwrap_err();
        let got: Vec<(Option<&str>, &str)> = errors
            .iter()
            .map(|e| (e.column, e.error.code.as_str()))
            .collect();
        assert!(
            got.contains(&(Some("证件号码"), "id_number_scientific")),
            "{got:?}"
        );
        assert!(got.contains(&(Some("问题属地"), "unknown_code")), "{got:?}");
        assert!(got.contains(&(Some("投诉日期"), "date_format")), "{got:?}");
        assert!(got.contains(&(Some("集体访"), "flag_format")), "{got:?}");
        assert_eq!(errors.len(), 4, "{got:?}");
        let text = errors[0].text_zh();
        assert!(
            text.starts_with("证件号码：证件号码被 Excel 转成了科学计数法"),
            "{text}"
        );
        // No personal number in any message.
        assert!(errors
            .iter()
            .all(|e| !e.error.message_zh.contains("430102")));
    }

    #[test]
    fn scientific_text_is_caught_and_legacy_numbers_survive() {
        let layout = layout_of(SheetKind::Petition, &petition_headers());
        for (cell, code) in [
            (text("4.30102E+17"), Some("id_number_scientific")),
            (text("4.30102e17"), Some("id_number_scientific")),
            (Cell::Number(430102900307123.0), None),
        ] {
            let mut values = good_values();
            values[2] = ("id_number", cell.clone());
            let cells = petition_row(&values);
            let r = petition_from_row(
                &Row::new(&layout, &cells),
                CodeTables::embedded(),
                now(),
                &fixed_id,
            );
            match code {
                Some(code) => assert_eq!(r.unwrap_err()[0].error.code, code, "{cell:?}"),
                None => assert_eq!(
                    r.unwrap().complainants[0].id_number.as_deref(),
                    Some("430102900307123")
                ),
            }
        }
    }

    #[test]
    fn group_flag_follows_the_count_when_left_blank() {
        let layout = layout_of(SheetKind::Petition, &petition_headers());
        let mut values = good_values();
        values[2] = ("id_number", text(&valid_id()));
        values.push(("complainant_count", text("6")));
        let cells = petition_row(&values);
        let p = petition_from_row(
            &Row::new(&layout, &cells),
            CodeTables::embedded(),
            now(),
            &fixed_id,
        )
        .unwrap();
        assert!(p.flags.group);
        assert_eq!(p.acceptance.people_involved, 6);
    }

    #[test]
    fn the_fingerprint_ignores_the_source_id_and_the_position() {
        let layout = layout_of(SheetKind::Petition, &petition_headers());
        let cells = petition_row(&good_values());
        let mut with_id = good_values();
        with_id.push(("source_id", text("X-1")));
        let cells2 = petition_row(&with_id);
        let skip = ["source_id", "version"];
        assert_eq!(
            Row::new(&layout, &cells).fingerprint(&skip),
            Row::new(&layout, &cells2).fingerprint(&skip)
        );
        let mut other = good_values();
        other[7] = ("summary", text("别的事"));
        let cells3 = petition_row(&other);
        assert_ne!(
            Row::new(&layout, &cells).fingerprint(&skip),
            Row::new(&layout, &cells3).fingerprint(&skip)
        );
    }

    #[test]
    fn key_persons_and_words() {
        let tables = CodeTables::embedded();
        let layout = layout_of(
            SheetKind::KeyPerson,
            &["姓名", "证件号码", "手机号码", "所属区划", "风险等级"],
        );
        let id = valid_id();
        let cells = vec![
            text("李四"),
            text(&id),
            text("+86 138 1234 5678"),
            text("望城县"),
            text("高"),
        ];
        let p = key_person_from_row(&Row::new(&layout, &cells), tables);
        // 望城县 is historical and inactive: the name is not offered, so the code is required.
        assert!(p.is_err());
        let cells = vec![
            text("李四"),
            text(&id),
            text("+86 138 1234 5678"),
            text("430122"),
            text("高"),
        ];
        let p = key_person_from_row(&Row::new(&layout, &cells), tables).unwrap();
        assert_eq!(p.division, "430112");
        assert_eq!(p.mobile.as_deref(), Some("13812345678"));
        assert_eq!(p.risk_level.as_deref(), Some("high"));
        let bad = vec![
            Cell::Empty,
            text("123"),
            text("12"),
            Cell::Empty,
            text("极高"),
        ];
        let codes: Vec<String> = key_person_from_row(&Row::new(&layout, &bad), tables)
            .unwrap_err()
            .into_iter()
            .map(|e| e.error.code)
            .collect();
        assert_eq!(
            codes,
            [
                "choice",
                "required",
                "id_number_format",
                "mobile_format",
                "required"
            ]
        );

        let layout = layout_of(SheetKind::WordList, &["词库", "词语", "类别"]);
        let w = word_from_row(
            &Row::new(&layout, &[text("敏感词库"), text(" 上访 "), Cell::Empty]),
            tables,
        )
        .unwrap();
        assert_eq!(
            (w.list.as_str(), w.word.as_str(), w.category),
            ("sensitive", "上访", None)
        );
        let e =
            word_from_row(&Row::new(&layout, &[text("其它"), Cell::Empty]), tables).unwrap_err();
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn codes_from_numbers_names_and_dropdown_text() {
        let t = CodeTables::embedded();
        assert_eq!(code_from_number(t, "forms", 3), "0003");
        assert_eq!(code_from_number(t, "divisions", 430102), "430102");
        assert_eq!(code_from_text(t, "forms", "0003 来访"), "0003");
        assert_eq!(code_from_text(t, "forms", "网上信访"), "0004");
        assert_eq!(code_from_text(t, "order_types", "help 求助"), "help");
        assert_eq!(code_from_text(t, "forms", "传真"), "传真");
    }

    #[test]
    fn an_exported_row_imports_back_to_the_same_petition() {
        let tables = CodeTables::embedded();
        let now = Utc::now();
        for i in 0..20 {
            let p = validate_petition(xfhub_schemas::sample_petition(i), tables, now).unwrap();
            let cells = petition_to_cells(&p, tables);
            let layout = layout_of(SheetKind::Petition, &petition_headers());
            let back = petition_from_row(&Row::new(&layout, &cells), tables, now, &fixed_id)
                .unwrap_or_else(|e| panic!("sample {i}: {e:?}"));
            let mut expected = p.clone();
            expected.source.system = "excel".to_owned();
            // One complainant per row; attachments, evaluation, process times are not columns.
            expected.complainants.truncate(1);
            expected.appeal.materials.clear();
            expected.evaluation = None;
            expected.flags.level_reached = None;
            expected.handling.accepted_at = None;
            expected.handling.replied_at = None;
            assert_eq!(back, expected, "sample {i}");
        }
    }

    #[test]
    fn an_exported_work_order_imports_back() {
        let tables = CodeTables::embedded();
        let now = Utc::now();
        let headers: Vec<&str> = WORKORDER_COLUMNS.iter().map(|c| c.header).collect();
        let layout = layout_of(SheetKind::WorkOrder, &headers);
        for i in 0..20 {
            let w = validate_workorder(xfhub_schemas::sample_workorder(i), tables, now).unwrap();
            let cells = workorder_to_cells(&w, tables);
            let back = workorder_from_row(&Row::new(&layout, &cells), tables, now)
                .unwrap_or_else(|e| panic!("sample {i}: {e:?}"));
            assert_eq!(back.order_no, w.order_no);
            assert_eq!(back.call_time, w.call_time);
            assert_eq!(back.division, w.division);
            assert_eq!(back.state, w.state);
            assert_eq!(back.caller_phone, w.caller_phone);
            assert_eq!(back.classification, w.classification);
        }
    }
}
