//! Opening an uploaded workbook safely and reading its rows.
//!
//! Before calamine sees a file, [`open`] checks what the bytes are: an `.xlsx` (a zip) is
//! decompressed once into a counting sink, entry by entry, so a zip bomb is refused on what the
//! entries really inflate to (not on the sizes their headers declare); an OLE compound file is an
//! `.xls`, unless it carries an `EncryptedPackage` stream (a password-protected `.xlsx`).
//! Anything else is not a spreadsheet. Rows are then streamed cell by cell from `.xlsx` sheets
//! (calamine's cells reader), so a 100,000-row sheet is never held in memory whole; `.xls`
//! sheets (at most 65,536 rows by format) are read as one range.

use std::io::{Cursor, Read};
use std::ops::ControlFlow;

use axum::body::Bytes;
use calamine::{Data, DataRef, Reader, SheetType, SheetVisible, Xls, Xlsx};
use xfhub_transforms::excel::{Cell, LayoutError};

/// Limits applied to an uploaded file.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    pub max_bytes: usize,
    pub max_rows: usize,
    /// Largest total of the zip entries' inflated sizes.
    pub max_inflated_bytes: u64,
    /// Largest inflation ratio of one entry above 1 MiB.
    pub max_ratio: u64,
    /// Most entries a workbook zip may have.
    pub max_entries: usize,
}

/// Why a file cannot be imported. Each has a stable code and a Chinese message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the file is empty")]
    Empty,
    #[error("not a spreadsheet: upload an .xlsx or .xls file")]
    NotSpreadsheet,
    #[error("the workbook is password-protected: remove the password and upload it again")]
    Encrypted,
    #[error("the workbook inflates beyond the limits ({0}); it looks like a zip bomb")]
    ZipBomb(String),
    #[error("the workbook is damaged or not a valid spreadsheet: {0}")]
    Corrupt(String),
    #[error("the workbook has no visible worksheet")]
    NoSheet,
    #[error("{0}")]
    Layout(LayoutError),
    #[error("the sheet has {rows} data rows; at most {limit} are accepted per file")]
    TooManyRows { rows: usize, limit: usize },
    #[error("the sheet has no data rows below its header")]
    NoRows,
}

impl BookError {
    pub fn code(&self) -> &'static str {
        match self {
            BookError::TooLarge { .. } => "excel_too_large",
            BookError::Empty => "excel_empty",
            BookError::NotSpreadsheet => "excel_not_spreadsheet",
            BookError::Encrypted => "excel_encrypted",
            BookError::ZipBomb(_) => "excel_zip_bomb",
            BookError::Corrupt(_) => "excel_corrupt",
            BookError::NoSheet => "excel_no_sheet",
            BookError::Layout(LayoutError::NoHeaderRow { .. }) => "excel_no_header_row",
            BookError::Layout(LayoutError::MissingColumns(_)) => "excel_missing_columns",
            BookError::Layout(LayoutError::DuplicateColumn { .. }) => "excel_duplicate_column",
            BookError::TooManyRows { .. } => "excel_too_many_rows",
            BookError::NoRows => "excel_no_rows",
        }
    }

    pub fn message_zh(&self) -> String {
        match self {
            BookError::TooLarge { limit } => {
                format!("文件超过大小限制（{} MB）", limit / (1024 * 1024))
            }
            BookError::Empty => "文件为空".to_owned(),
            BookError::NotSpreadsheet => "不是 Excel 文件，请上传 .xlsx 或 .xls 文件".to_owned(),
            BookError::Encrypted => "文件设置了密码保护，请取消密码后重新上传".to_owned(),
            BookError::ZipBomb(_) => "文件解压后体积异常（疑似压缩炸弹），已拒绝".to_owned(),
            BookError::Corrupt(_) => "文件已损坏或不是有效的 Excel 文件".to_owned(),
            BookError::NoSheet => "工作簿中没有可见的工作表".to_owned(),
            BookError::Layout(e) => e.message_zh(),
            BookError::TooManyRows { rows, limit } => {
                format!("数据行数 {rows} 超过单个文件上限 {limit} 行，请拆分后上传")
            }
            BookError::NoRows => "表头下没有数据行".to_owned(),
        }
    }
}

/// An opened workbook.
pub enum Book {
    Xlsx(Box<Xlsx<Cursor<Bytes>>>),
    Xls(Box<Xls<Cursor<Bytes>>>),
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Checks the bytes and opens the workbook.
pub fn open(bytes: Bytes, limits: &FileLimits) -> Result<Book, BookError> {
    if bytes.len() > limits.max_bytes {
        return Err(BookError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(BookError::Empty);
    }
    if bytes.starts_with(ZIP_MAGIC) {
        check_zip(&bytes, limits)?;
        let book = Xlsx::new(Cursor::new(bytes)).map_err(|e| BookError::Corrupt(e.to_string()))?;
        Ok(Book::Xlsx(Box::new(book)))
    } else if bytes.starts_with(OLE_MAGIC) {
        // A password-protected .xlsx is an OLE file holding EncryptionInfo and EncryptedPackage
        // streams; directory entry names are UTF-16LE.
        if contains_utf16(&bytes, "EncryptedPackage") {
            return Err(BookError::Encrypted);
        }
        match Xls::new(Cursor::new(bytes)) {
            Ok(book) => Ok(Book::Xls(Box::new(book))),
            Err(calamine::XlsError::Password) => Err(BookError::Encrypted),
            Err(e) => Err(BookError::Corrupt(e.to_string())),
        }
    } else {
        Err(BookError::NotSpreadsheet)
    }
}

fn contains_utf16(bytes: &[u8], needle: &str) -> bool {
    let pattern: Vec<u8> = needle.encode_utf16().flat_map(u16::to_le_bytes).collect();
    bytes
        .windows(pattern.len())
        .any(|w| w == pattern.as_slice())
}

/// Inflates every entry into a counting sink: refuses too many entries, a total beyond the
/// limit, and an entry above 1 MiB that inflates more than `max_ratio` times.
fn check_zip(bytes: &Bytes, limits: &FileLimits) -> Result<(), BookError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes.clone()))
        .map_err(|e| BookError::Corrupt(e.to_string()))?;
    if zip.len() > limits.max_entries {
        return Err(BookError::ZipBomb(format!(
            "{} entries, at most {}",
            zip.len(),
            limits.max_entries
        )));
    }
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| BookError::Corrupt(e.to_string()))?;
        let compressed = entry.compressed_size().max(1);
        let mut inflated: u64 = 0;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n as u64,
                Err(e) => return Err(BookError::Corrupt(e.to_string())),
            };
            inflated += n;
            total += n;
            if total > limits.max_inflated_bytes {
                return Err(BookError::ZipBomb(format!(
                    "more than {} bytes inflated",
                    limits.max_inflated_bytes
                )));
            }
            if inflated > 1024 * 1024 && inflated / compressed > limits.max_ratio {
                return Err(BookError::ZipBomb(format!(
                    "entry {} inflates more than {} times",
                    entry.name(),
                    limits.max_ratio
                )));
            }
        }
    }
    Ok(())
}

/// Names of the sheets the hub's templates add beside the data sheet.
pub const HELPER_SHEETS: &[&str] = &["填写说明", "代码表"];

/// The sheet to import: the one named like the template's data sheet, else the first visible
/// worksheet that is not a helper sheet of the template.
pub fn pick_sheet(book: &Book, preferred: &str) -> Result<String, BookError> {
    let sheets = match book {
        Book::Xlsx(b) => b.sheets_metadata().to_vec(),
        Book::Xls(b) => b.sheets_metadata().to_vec(),
    };
    let usable: Vec<&calamine::Sheet> = sheets
        .iter()
        .filter(|s| s.typ == SheetType::WorkSheet && s.visible == SheetVisible::Visible)
        .collect();
    if let Some(s) = usable.iter().find(|s| s.name.trim() == preferred) {
        return Ok(s.name.clone());
    }
    usable
        .iter()
        .find(|s| !HELPER_SHEETS.contains(&s.name.trim()))
        .map(|s| s.name.clone())
        .ok_or(BookError::NoSheet)
}

fn cell_of_ref(v: &DataRef<'_>) -> Cell {
    match v {
        DataRef::Int(i) => Cell::Number(*i as f64),
        DataRef::Float(f) => Cell::Number(*f),
        DataRef::String(s) => Cell::Text(s.clone()),
        DataRef::SharedString(s) => Cell::Text((*s).to_owned()),
        DataRef::Bool(b) => Cell::Bool(*b),
        DataRef::DateTime(d) => Cell::DateTime(d.as_f64()),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::Text(s.clone()),
        DataRef::Error(e) => Cell::Error(format!("{e}")),
        DataRef::Empty => Cell::Empty,
    }
}

fn cell_of(v: &Data) -> Cell {
    match v {
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Float(f) => Cell::Number(*f),
        Data::String(s) => Cell::Text(s.clone()),
        Data::Bool(b) => Cell::Bool(*b),
        Data::DateTime(d) => Cell::DateTime(d.as_f64()),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(e) => Cell::Error(format!("{e}")),
        Data::Empty => Cell::Empty,
    }
}

/// Streams the non-empty rows of a sheet to `f` as (0-based sheet row, cells from column A),
/// until `f` breaks. Returns the number of rows the sheet's dimension announces, if it does.
pub fn rows(
    book: &mut Book,
    sheet: &str,
    mut f: impl FnMut(usize, Vec<Cell>) -> ControlFlow<()>,
) -> Result<Option<usize>, BookError> {
    match book {
        Book::Xlsx(b) => {
            let mut reader = b
                .worksheet_cells_reader(sheet)
                .map_err(|e| BookError::Corrupt(e.to_string()))?;
            let d = reader.dimensions();
            let announced = (d.end.0 > 0 || d.end.1 > 0).then(|| (d.end.0 + 1) as usize);
            let mut current: Option<(u32, Vec<Cell>)> = None;
            // Each row's cells start at the widest row's size so far: growing every row's
            // vector cell by cell was 4 % of an import.
            let mut width = 0;
            loop {
                let next = reader
                    .next_cell()
                    .map_err(|e| BookError::Corrupt(e.to_string()))?;
                let Some(cell) = next else { break };
                let (r, c) = cell.get_position();
                let value = cell_of_ref(cell.get_value());
                if matches!(&current, Some((cr, _)) if *cr != r) {
                    let (cr, cells) = current.take().expect("current row");
                    width = width.max(cells.len());
                    if emit(cr, cells, &mut f).is_break() {
                        return Ok(announced);
                    }
                }
                let (_, cells) = current.get_or_insert_with(|| (r, Vec::with_capacity(width)));
                let c = c as usize;
                if c >= 16_384 {
                    continue; // beyond Excel's last column: ignore
                }
                if cells.len() <= c {
                    cells.resize(c + 1, Cell::Empty);
                }
                cells[c] = value;
            }
            if let Some((cr, cells)) = current {
                let _ = emit(cr, cells, &mut f);
            }
            Ok(announced)
        }
        Book::Xls(b) => {
            let range = b
                .worksheet_range(sheet)
                .map_err(|e| BookError::Corrupt(e.to_string()))?;
            let Some((r0, c0)) = range.start() else {
                return Ok(Some(0));
            };
            let announced = range.end().map(|(r, _)| (r + 1) as usize);
            for (i, row) in range.rows().enumerate() {
                let mut cells = vec![Cell::Empty; c0 as usize];
                cells.extend(row.iter().map(cell_of));
                if emit(r0 + i as u32, cells, &mut f).is_break() {
                    break;
                }
            }
            Ok(announced)
        }
    }
}

fn emit(
    r: u32,
    cells: Vec<Cell>,
    f: &mut impl FnMut(usize, Vec<Cell>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    if cells.iter().all(Cell::is_blank) {
        return ControlFlow::Continue(());
    }
    f(r as usize, cells)
}

/// Reads a whole byte stream up to `limit` bytes (for the CLI, which reads files).
pub fn read_file(path: &std::path::Path, limit: usize) -> Result<Bytes, std::io::Error> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}
