//! Inputs and baseline of the Excel benchmark (BENCHMARKS.md, "Excel import and export").
//!
//! ```sh
//! cargo run --release -p xfhub --example excel_bench -- make petitions.xlsx 100000
//! cargo run --release -p xfhub --example excel_bench -- parse petitions.xlsx
//! ```
//!
//! `make` writes N realistic petition rows (`sample_petition(i)`, the template's columns, shared
//! strings as Excel writes them); `parse` is the baseline: calamine reading every cell of the
//! sheet, with no mapping, validation or storage.

use std::time::Instant;

use rust_xlsxwriter::Workbook;
use xfhub_schemas::{validate_petition, CodeTables};
use xfhub_transforms::excel::{petition_to_cells, Cell, SheetKind};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("make") => {
            let path = args.get(2).ok_or_else(|| anyhow::anyhow!("make FILE N"))?;
            let n: u64 = args.get(3).map_or(Ok(100_000), |s| s.parse())?;
            make(path, n)
        }
        Some("parse") => {
            let path = args.get(2).ok_or_else(|| anyhow::anyhow!("parse FILE"))?;
            parse(path)
        }
        _ => anyhow::bail!("usage: excel_bench make FILE N | parse FILE"),
    }
}

fn make(path: &str, n: u64) -> anyhow::Result<()> {
    let tables = CodeTables::embedded();
    let now = chrono::Utc::now();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(SheetKind::Petition.title_zh())?;
    for (c, col) in SheetKind::Petition.columns().iter().enumerate() {
        ws.write_string(0, c as u16, col.header)?;
    }
    for i in 0..n {
        let p = validate_petition(xfhub_schemas::sample_petition(i), tables, now)
            .map_err(|e| anyhow::anyhow!("sample {i}: {e:?}"))?;
        for (c, cell) in petition_to_cells(&p, tables).iter().enumerate() {
            let r = (i + 1) as u32;
            match cell {
                Cell::Text(s) if !s.is_empty() => {
                    ws.write_string(r, c as u16, s)?;
                }
                Cell::Number(x) => {
                    ws.write_number(r, c as u16, *x)?;
                }
                _ => {}
            }
        }
    }
    wb.save(path)?;
    let size = std::fs::metadata(path)?.len();
    println!("{path}: {n} petition rows, {size} bytes");
    Ok(())
}

fn parse(path: &str) -> anyhow::Result<()> {
    use calamine::{Reader, Xlsx};
    let started = Instant::now();
    let mut book: Xlsx<_> = calamine::open_workbook(path)?;
    let sheet = book.sheet_names()[0].clone();
    let mut reader = book.worksheet_cells_reader(&sheet)?;
    let (mut cells, mut last_row) = (0u64, 0u32);
    while let Some(c) = reader.next_cell()? {
        cells += 1;
        last_row = c.get_position().0;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "baseline parse: {last_row} rows, {cells} cells in {secs:.2} s ({:.0} rows/s)",
        f64::from(last_row) / secs
    );
    Ok(())
}
