//! The workbooks the hub writes: staff templates (checked in under `contracts/excel/`), error
//! reports of import jobs, and (see `export.rs`) exports.
//!
//! A template has the data sheet (Chinese headers, required columns highlighted, text format on
//! identity, phone and code columns so Excel keeps leading zeros and all 18 digits, dropdowns on
//! code, flag and choice columns), the instructions sheet 填写说明, and a hidden sheet 代码表
//! holding the dropdown lists (`code 名称`, from the compiled-in code tables). The output is
//! deterministic (fixed document date), so a test can compare it with the checked-in file.

use rust_xlsxwriter::{
    DataValidation, DataValidationErrorStyle, DocProperties, ExcelDateTime, Format, FormatBorder,
    Formula, Workbook, Worksheet, XlsxError,
};
use xfhub_schemas::CodeTables;
use xfhub_transforms::excel::{ColType, Column, SheetKind};

/// Rows of the data sheet that carry dropdowns and formats (Excel's last row).
const LAST_ROW: u32 = 1_048_575;

pub fn header_format(required: bool) -> Format {
    let f = Format::new()
        .set_bold()
        .set_border(FormatBorder::Thin)
        .set_background_color(if required { 0xFCE4D6 } else { 0xDDEBF7 });
    if required {
        f.set_font_color(0xC00000)
    } else {
        f
    }
}

fn fixed_properties() -> Result<DocProperties, XlsxError> {
    let date = ExcelDateTime::from_ymd(2024, 1, 1)?;
    Ok(DocProperties::new()
        .set_author("xfhub")
        .set_creation_datetime(&date))
}

fn type_hint(ty: ColType) -> String {
    match ty {
        ColType::Text => "文本".to_owned(),
        ColType::Date => "日期".to_owned(),
        ColType::DateTime => "日期时间".to_owned(),
        ColType::Count => "整数".to_owned(),
        ColType::Code(_) => "代码（下拉选择）".to_owned(),
        ColType::IdNumber => "证件号码（文本）".to_owned(),
        ColType::Mobile => "手机号码（文本）".to_owned(),
        ColType::Phone => "电话号码（文本）".to_owned(),
        ColType::Flag => "是 / 否".to_owned(),
        ColType::Keywords => "多个词语".to_owned(),
        ColType::Choice(values) => values
            .iter()
            .map(|(l, _)| *l)
            .collect::<Vec<_>>()
            .join(" / "),
    }
}

fn is_text_column(ty: ColType) -> bool {
    matches!(
        ty,
        ColType::IdNumber | ColType::Mobile | ColType::Phone | ColType::Code(_) | ColType::Text
    )
}

/// The template of `kind` as .xlsx bytes.
pub fn template(kind: SheetKind, tables: &CodeTables) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    wb.set_properties(&fixed_properties()?);
    let columns = kind.columns();

    // The hidden code list sheet: one column per code table the template uses.
    let mut lists = Worksheet::new();
    lists.set_name("代码表")?;
    let mut list_ranges: Vec<(&'static str, String)> = Vec::new();
    let mut used: Vec<&'static str> = Vec::new();
    for c in columns {
        if let ColType::Code(t) = c.ty {
            if !used.contains(&t) {
                used.push(t);
            }
        }
    }
    for (i, name) in used.iter().enumerate() {
        let col = i as u16;
        let Some(table) = tables.table(name) else {
            continue;
        };
        lists.write_string_with_format(0, col, &table.description, &Format::new().set_bold())?;
        let mut n = 0u32;
        for e in table.entries.iter().filter(|e| e.active) {
            n += 1;
            lists.write_string(n, col, format!("{} {}", e.code, e.name_zh))?;
        }
        lists.set_column_width(col, 28)?;
        let letter = column_letter(col);
        list_ranges.push((name, format!("代码表!${letter}$2:${letter}${}", n + 1)));
    }
    lists.set_hidden(true);

    // The data sheet.
    let mut data = Worksheet::new();
    data.set_name(kind.title_zh())?;
    let text = Format::new().set_num_format("@");
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let datetime = Format::new().set_num_format("yyyy-mm-dd hh:mm");
    for (i, c) in columns.iter().enumerate() {
        let col = i as u16;
        data.write_string_with_format(0, col, c.header, &header_format(c.required))?;
        let width = (c.header.chars().count() as f64 * 2.2 + 2.0).max(12.0);
        data.set_column_width(col, width)?;
        match c.ty {
            ColType::Date => {
                data.set_column_format(col, &date)?;
            }
            ColType::DateTime => {
                data.set_column_format(col, &datetime)?;
                data.set_column_width(col, 18)?;
            }
            t if is_text_column(t) => {
                data.set_column_format(col, &text)?;
            }
            _ => {}
        }
        if let Some(v) = validation(c, &list_ranges)? {
            data.add_data_validation(1, col, LAST_ROW, col, &v)?;
        }
    }
    data.set_freeze_panes(1, 0)?;

    wb.push_worksheet(data);
    wb.push_worksheet(instructions(kind)?);
    wb.push_worksheet(lists);
    wb.save_to_buffer()
}

fn validation(
    c: &Column,
    list_ranges: &[(&'static str, String)],
) -> Result<Option<DataValidation>, XlsxError> {
    let v = match c.ty {
        ColType::Code(t) => {
            let Some((_, range)) = list_ranges.iter().find(|(n, _)| *n == t) else {
                return Ok(None);
            };
            // Warning style: a code typed by hand (or pasted from another system) may still be
            // valid; the import checks it.
            DataValidation::new()
                .allow_list_formula(Formula::new(format!("={range}")))
                .set_error_style(DataValidationErrorStyle::Warning)
        }
        ColType::Flag => DataValidation::new().allow_list_strings(&["是", "否"])?,
        ColType::Choice(values) => {
            let labels: Vec<&str> = values.iter().map(|(l, _)| *l).collect();
            DataValidation::new().allow_list_strings(&labels)?
        }
        _ => return Ok(None),
    };
    Ok(Some(v.set_input_title(c.header)?.set_input_message(
        if c.note.is_empty() {
            "从下拉列表选择"
        } else {
            c.note
        },
    )?))
}

fn instructions(kind: SheetKind) -> Result<Worksheet, XlsxError> {
    let mut ws = Worksheet::new();
    ws.set_name("填写说明")?;
    let bold = Format::new().set_bold();
    let wrap = Format::new().set_text_wrap();
    ws.write_string_with_format(0, 0, format!("{}导入模板 填写说明", kind.title_zh()), &bold)?;
    let general = [
        "1. 请在“{sheet}”工作表中从第 2 行起逐行填写，不要修改或删除表头；列的顺序可以调整，多余的列会被忽略。",
        "2. 红色表头为必填列。代码列请从下拉列表选择（也可填写代码或名称）。",
        "3. 日期可填写 2024-03-05、2024/3/5、2024年3月5日 或 2024.3.5；时间如 2024-03-05 09:30。",
        "4. 证件号码、手机号码请保持文本格式：若 Excel 显示为 4.30102E+17，说明末尾数字已丢失，必须重新填写。",
        "5. 单个文件默认不超过 10 MB、不超过 200,000 行；不要设置打开密码。",
        "6. 导入后可下载错误报告：报告保留原始各列，并在“错误原因”“错误代码”列说明每一处问题；修改后可直接重新上传，已导入的行不会重复登记。",
    ];
    for (i, line) in general.iter().enumerate() {
        ws.write_string(2 + i as u32, 0, line.replace("{sheet}", kind.title_zh()))?;
    }
    let top = 2 + general.len() as u32 + 1;
    for (c, h) in ["列名", "是否必填", "填写格式", "说明"].iter().enumerate() {
        ws.write_string_with_format(top, c as u16, *h, &header_format(false))?;
    }
    for (i, c) in kind.columns().iter().enumerate() {
        let r = top + 1 + i as u32;
        ws.write_string(r, 0, c.header)?;
        ws.write_string(r, 1, if c.required { "必填" } else { "选填" })?;
        ws.write_string(r, 2, type_hint(c.ty))?;
        ws.write_string_with_format(r, 3, c.note, &wrap)?;
    }
    ws.set_column_width(0, 18)?;
    ws.set_column_width(1, 10)?;
    ws.set_column_width(2, 22)?;
    ws.set_column_width(3, 80)?;
    Ok(ws)
}

/// `A`, `B`, ..., `Z`, `AA`, ...
pub fn column_letter(col: u16) -> String {
    let mut n = u32::from(col) + 1;
    let mut s = Vec::new();
    while n > 0 {
        let r = ((n - 1) % 26) as u8;
        s.push(b'A' + r);
        n = (n - 1) / 26;
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII letters")
}

/// One rejected row of an error report.
#[derive(Debug, Clone)]
pub struct ReportRow {
    pub row_no: i64,
    /// The original cells, by sheet column (texts as the sheet held them).
    pub cells: Vec<String>,
    /// `列名：原因` lines.
    pub reasons_zh: Vec<String>,
    pub codes: Vec<String>,
}

/// The error report of a job: the original header and cells, then 错误原因 (Chinese) and 错误代码
/// (stable codes) and 原行号. Staff fix the cells and upload the report as it is: the importer
/// ignores the three added columns.
pub fn error_report(
    kind: SheetKind,
    headers: &[String],
    rows: &[ReportRow],
) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    wb.set_properties(&fixed_properties()?);
    let ws = wb.add_worksheet();
    ws.set_name(kind.title_zh())?;
    let text = Format::new().set_num_format("@");
    let err = Format::new().set_font_color(0xC00000).set_text_wrap();
    let n = headers.len() as u16;
    for (c, h) in headers.iter().enumerate() {
        let required = kind.columns().iter().any(|col| {
            col.required
                && xfhub_transforms::excel::normalize_header(col.header)
                    == xfhub_transforms::excel::normalize_header(h)
        });
        ws.write_string_with_format(0, c as u16, h, &header_format(required))?;
        ws.set_column_format(c as u16, &text)?;
        ws.set_column_width(c as u16, 16)?;
    }
    for (i, h) in [REPORT_REASON, REPORT_CODES, REPORT_ROW].iter().enumerate() {
        ws.write_string_with_format(0, n + i as u16, *h, &header_format(true))?;
    }
    ws.set_column_width(n, 60)?;
    ws.set_column_width(n + 1, 30)?;
    for (i, row) in rows.iter().enumerate() {
        let r = 1 + i as u32;
        for (c, v) in row.cells.iter().enumerate().take(headers.len()) {
            if !v.is_empty() {
                ws.write_string(r, c as u16, v)?;
            }
        }
        ws.write_string_with_format(r, n, row.reasons_zh.join("\n"), &err)?;
        ws.write_string(r, n + 1, row.codes.join(","))?;
        ws.write_number(r, n + 2, row.row_no as f64)?;
    }
    ws.set_freeze_panes(1, 0)?;
    wb.save_to_buffer()
}

/// Headers of the columns an error report adds.
pub const REPORT_REASON: &str = "错误原因";
pub const REPORT_CODES: &str = "错误代码";
pub const REPORT_ROW: &str = "原行号";
