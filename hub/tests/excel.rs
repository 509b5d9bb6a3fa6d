//! Excel templates, imports and exports, through the signed router, with workbooks written and
//! read by other tools (openpyxl, xlwt, msoffcrypto-tool: `hub/tests/py/excel_tool.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::http::{header, Method, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub_schemas::validate::id_check_char;
use xfhub_schemas::CodeTables;
use xfhub_store::RecordKind;
use xfhub_transforms::excel::SheetKind;

use common::{assert_error_body, send, Reply, TestClient};

/// A hub on its own temporary directory, its router and a client holding every scope.
struct T {
    hub: Hub,
    app: Router,
    client: TestClient,
    dir: tempfile::TempDir,
}

impl T {
    async fn start(tune: impl FnOnce(&mut Config)) -> T {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        tune(&mut config);
        let hub = Hub::start(config).await.expect("the hub starts");
        let app = hub.router();
        let client = TestClient::full(&hub, "excel tests").await;
        T {
            hub,
            app,
            client,
            dir,
        }
    }

    async fn get(&self, c: &TestClient, uri: &str) -> Reply {
        send(&self.app, c.get(uri)).await
    }

    async fn upload(&self, c: &TestClient, kind: &str, name: &str, bytes: &[u8]) -> Reply {
        let boundary = "xfhub-test-boundary-7d3f0c2a";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n{kind}\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        send(
            &self.app,
            c.signed_raw(Method::POST, "/api/v1/imports", Some(&ct), body),
        )
        .await
    }

    /// Uploads and waits for the job to end; returns the finished job.
    async fn import(&self, c: &TestClient, kind: &str, name: &str, bytes: &[u8]) -> Value {
        let r = self.upload(c, kind, name, bytes).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let id = r.json()["id"].as_str().expect("job id").to_owned();
        assert_eq!(
            r.headers[header::LOCATION],
            format!("/api/v1/imports/{id}").as_str()
        );
        self.wait(c, &id).await
    }

    async fn wait(&self, c: &TestClient, id: &str) -> Value {
        for _ in 0..600 {
            let r = self.get(c, &format!("/api/v1/imports/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            let job = r.json();
            if job["status"] != "running" {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish in 30 s");
    }

    async fn count(&self, kind: RecordKind) -> usize {
        let mut n = 0;
        let mut q = xfhub_store::ListQuery {
            limit: 500,
            ..Default::default()
        };
        loop {
            let page = self.hub.state.store.list_records(kind, &q).await.unwrap();
            n += page.items.len();
            match page.next {
                Some(next) => q.before = Some(next),
                None => return n,
            }
        }
    }

    async fn import_error_count(&self) -> usize {
        self.hub
            .state
            .store
            .import_errors(1000)
            .await
            .unwrap()
            .len()
    }
}

/// The Python with openpyxl, xlwt and msoffcrypto-tool: `XFHUB_PYTHON`, else the workspace
/// venv. None (the test skips loudly) when neither works, unless `XFHUB_REQUIRE_PYTHON=1`.
fn python() -> Option<PathBuf> {
    let candidates = std::env::var_os("XFHUB_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv/bin/python"),
        ));
    for p in candidates {
        let ok = Command::new(&p)
            .args(["-c", "import openpyxl, xlwt, msoffcrypto"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(p);
        }
    }
    if std::env::var("XFHUB_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("XFHUB_REQUIRE_PYTHON=1 but no Python with openpyxl, xlwt and msoffcrypto-tool");
    }
    eprintln!(
        "\n*** SKIPPED: no Python with openpyxl, xlwt and msoffcrypto-tool (set XFHUB_PYTHON or run .ci/run) ***\n"
    );
    None
}

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/excel_tool.py")
}

/// Writes a workbook from a spec (see excel_tool.py) and returns its bytes.
fn make(py: &Path, dir: &Path, name: &str, mut spec: Value) -> Vec<u8> {
    let out = dir.join(name);
    spec["out"] = json!(out);
    let spec_path = dir.join(format!("{name}.json"));
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let o = Command::new(py)
        .arg(tool())
        .arg("make")
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

/// Reads a workbook with openpyxl.
fn read(py: &Path, dir: &Path, bytes: &[u8]) -> Value {
    let path = dir.join(format!("read-{}.xlsx", uuid::Uuid::now_v7()));
    std::fs::write(&path, bytes).unwrap();
    let o = Command::new(py)
        .arg(tool())
        .arg("read")
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Edits cells of a workbook with openpyxl: (1-based row, 1-based column, value).
fn fix(py: &Path, dir: &Path, bytes: &[u8], set: Value) -> Vec<u8> {
    let path = dir.join(format!("fix-{}.xlsx", uuid::Uuid::now_v7()));
    std::fs::write(&path, bytes).unwrap();
    let spec_path = dir.join("fix.json");
    std::fs::write(&spec_path, json!({"path": path, "set": set}).to_string()).unwrap();
    let o = Command::new(py)
        .arg(tool())
        .arg("fix")
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(path).unwrap()
}

/// A valid resident identity number (born 1990-03-07, sequence `seq`).
fn id_number(seq: u32) -> String {
    let first17 = format!("43010219900307{:03}", seq % 1000);
    format!("{first17}{}", id_check_char(&first17) as char)
}

const HEADER: [&str; 12] = [
    "问题属地",
    "投诉人 姓名",
    "证件号码",
    "手机号码",
    "内容分类",
    "信访目的",
    "信访形式",
    "投诉概况",
    "投诉日期",
    "登记时间",
    "投诉人数",
    "来源编号",
];

/// A valid petition row in HEADER's order.
fn petition_row(i: u32, date: Value) -> Vec<Value> {
    vec![
        json!("430102 芙蓉区"),
        json!(format!("张{i}")),
        json!(id_number(i)),
        json!(format!("138{:08}", i)),
        json!("010101"),
        json!("02 求决"),
        json!("来访"),
        json!(format!("第{i}件诉求：小区噪音扰民")),
        date,
        json!("2024-03-05 09:30"),
        json!(1),
        Value::Null,
    ]
}

fn sheet<'a>(book: &'a Value, name: &str) -> &'a Value {
    book["sheets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sheet {name} in {book}"))
}

#[tokio::test]
async fn templates_match_contracts() {
    let tables = CodeTables::embedded();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/excel");
    let bless = std::env::var("XFHUB_BLESS").as_deref() == Ok("1");
    for kind in SheetKind::ALL {
        let generated = xfhub::excel::templates::template(kind, tables).unwrap();
        let again = xfhub::excel::templates::template(kind, tables).unwrap();
        assert_eq!(
            generated,
            again,
            "{}: the template is deterministic",
            kind.as_str()
        );
        if bless {
            std::fs::write(dir.join(format!("{}.xlsx", kind.as_str())), &generated).unwrap();
            continue;
        }
        let checked_in = xfhub_contracts::excel_template(kind.as_str()).unwrap();
        assert!(
            checked_in == generated.as_slice(),
            "contracts/excel/{}.xlsx drifted from the generator: run XFHUB_BLESS=1 cargo test -p xfhub --test excel templates_match_contracts",
            kind.as_str()
        );
    }
}

#[tokio::test]
async fn templates_are_served_and_read_by_openpyxl() {
    let t = T::start(|_| {}).await;
    let r = t.get(&t.client, "/api/v1/excel/templates/petition").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(r.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("filename*=UTF-8''"));
    assert_eq!(
        r.body.as_ref(),
        xfhub_contracts::excel_template("petition").unwrap()
    );
    let bad = t.get(&t.client, "/api/v1/excel/templates/nope").await;
    assert_error_body(
        "unknown kind",
        &bad.json(),
        "invalid_parameter",
        &[("kind", "invalid_parameter")],
    );

    let Some(py) = python() else { return };
    for kind in SheetKind::ALL {
        let r = t
            .get(
                &t.client,
                &format!("/api/v1/excel/templates/{}", kind.as_str()),
            )
            .await;
        let book = read(&py, t.dir.path(), &r.body);
        let names: Vec<&str> = book["sheets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [kind.title_zh(), "填写说明", "代码表"]);
        assert_eq!(sheet(&book, "代码表")["state"], "hidden");
        let data = sheet(&book, kind.title_zh());
        let headers: Vec<&str> = data["rows"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        let expected: Vec<&str> = kind.columns().iter().map(|c| c.header).collect();
        assert_eq!(headers, expected);
        let instructions = sheet(&book, "填写说明")["rows"].to_string();
        for c in kind.columns() {
            assert!(
                instructions.contains(c.header),
                "{} not explained",
                c.header
            );
        }
        // Every code column has a dropdown from the code list sheet.
        let validations = data["validations"].as_array().unwrap();
        for (i, c) in kind.columns().iter().enumerate() {
            if let xfhub_transforms::excel::ColType::Code(_) = c.ty {
                let letter = xfhub::excel::templates::column_letter(i as u16);
                let v = validations
                    .iter()
                    .find(|v| {
                        v["sqref"]
                            .as_str()
                            .unwrap()
                            .starts_with(&format!("{letter}2:"))
                    })
                    .unwrap_or_else(|| panic!("no dropdown on {}", c.header));
                assert_eq!(v["type"], "list");
                assert!(v["formula1"].as_str().unwrap().contains("代码表!"), "{v}");
            }
        }
    }
    // The petition code list holds the division names.
    let r = t.get(&t.client, "/api/v1/excel/templates/petition").await;
    let lists = read(&py, t.dir.path(), &r.body);
    assert!(sheet(&lists, "代码表")["rows"]
        .to_string()
        .contains("430102 芙蓉区"));
}

#[tokio::test]
async fn an_openpyxl_sheet_imports_with_every_shape_and_its_error_report_round_trips() {
    let Some(py) = python() else { return };
    let t = T::start(|_| {}).await;
    // A title row merged across the sheet, headers in their own order (one with a space), shared
    // strings, dates as numbers (date cells) and as text in four forms, a hidden row, empty
    // trailing rows, and three bad rows.
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    let dates = [
        json!({"date": "2024-03-05"}),
        json!("2024年3月5日"),
        json!("2024/3/5"),
        json!("2024-03-05"),
        json!("2024.3.5"),
        json!(45356),
    ];
    for i in 0..30u32 {
        rows.push(petition_row(i, dates[i as usize % dates.len()].clone()));
    }
    let mut scientific = petition_row(100, json!("2024-03-05"));
    scientific[2] = json!(4.30102199003071e17);
    let mut bad_division_and_date = petition_row(101, json!("2024-02-30"));
    bad_division_and_date[0] = json!("999999");
    let mut missing_summary = petition_row(102, json!("2024-03-05"));
    missing_summary[7] = Value::Null;
    rows.push(scientific);
    rows.push(bad_division_and_date);
    rows.push(missing_summary);
    let spec = json!({
        "sheet": "诉求事项登记",
        "title": "2024年3月诉求事项登记表",
        "rows": rows,
        "hidden_rows": [5, 6],
        "trailing_empty": 20,
    });
    let file = make(&py, t.dir.path(), "march.xlsx", spec);
    let job = t.import(&t.client, "petition", "march.xlsx", &file).await;
    assert_eq!(job["status"], "partial", "{job:#}");
    assert_eq!(
        job["rows_total"], 53,
        "the dimension includes the styled empty rows"
    );
    assert_eq!(job["rows_read"], 33, "{job:#}");
    assert_eq!(job["imported"], 30, "{job:#}");
    assert_eq!(job["duplicates"], 0);
    assert_eq!(job["rejected"], 3);
    assert_eq!(t.count(RecordKind::Petition).await, 30);
    assert_eq!(t.import_error_count().await, 3);
    let report_url = job["error_report"].as_str().unwrap().to_owned();

    // Every record went out as a message.
    let unsent = t.hub.state.store.outbox_unsent(1000).await.unwrap().len();
    let outbox_total: i64 = sqlx_count(&t, "SELECT COUNT(*) AS n FROM outbox").await;
    assert_eq!(
        outbox_total, 30,
        "one message per record ({unsent} not yet relayed)"
    );

    // The error report: original columns, then the reasons in Chinese, the codes, the row.
    let r = t.get(&t.client, &report_url).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let report = read(&py, t.dir.path(), &r.body);
    let rows = sheet(&report, "诉求事项登记")["rows"]
        .as_array()
        .unwrap()
        .clone();
    let mut header: Vec<Value> = HEADER.iter().map(|h| json!(h)).collect();
    header.extend([json!("错误原因"), json!("错误代码"), json!("原行号")]);
    assert_eq!(rows[0], Value::Array(header));
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1][12].as_str().unwrap(), "证件号码：证件号码被 Excel 转成了科学计数法（如 4.30102E+17），末尾数字已丢失；请将该列设置为文本格式后重新填写");
    assert_eq!(rows[1][13], "id_number_scientific");
    assert_eq!(
        rows[1][14], "33",
        "sheet row: title, header, 30 rows, then this"
    );
    assert_eq!(rows[2][13], "date_format,unknown_code");
    assert!(
        rows[2][12]
            .as_str()
            .unwrap()
            .contains("问题属地：代码不存在"),
        "{}",
        rows[2][12]
    );
    assert!(rows[2][12]
        .as_str()
        .unwrap()
        .contains("投诉日期：日期格式无法识别"));
    assert_eq!(rows[3][13], "required");
    assert!(rows[3][12].as_str().unwrap().starts_with("投诉概况："));
    // The uploader sees its own cells in clear, so it can fix them.
    assert_eq!(rows[2][2].as_str().unwrap(), id_number(101));

    // Fix the three rows in the report and upload it as it is.
    let fixed = fix(
        &py,
        t.dir.path(),
        &r.body,
        json!([
            [2, 3, id_number(100)],
            [3, 1, "430103"],
            [3, 9, "2024-02-28"],
            [4, 8, "补填的诉求内容"],
        ]),
    );
    let job = t.import(&t.client, "petition", "fixed.xlsx", &fixed).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(
        (job["imported"].clone(), job["rejected"].clone()),
        (json!(3), json!(0))
    );
    assert_eq!(t.count(RecordKind::Petition).await, 33);

    // The original file again: every good row is a repeat, the bad rows are rejected again.
    let job = t.import(&t.client, "petition", "march.xlsx", &file).await;
    assert_eq!(job["imported"], 0, "{job:#}");
    assert_eq!(job["duplicates"], 30);
    assert_eq!(job["rejected"], 3);
    assert_eq!(t.count(RecordKind::Petition).await, 33);
    assert_eq!(sqlx_count(&t, "SELECT COUNT(*) AS n FROM outbox").await, 33);

    // Another client does not see the job; an admin does.
    let other = TestClient::create(&t.hub, "other", &["import"], &["*"], &["*"]).await;
    let id = job["id"].as_str().unwrap();
    let r = t.get(&other, &format!("/api/v1/imports/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // An admin that did not upload sees the report with numbers masked.
    let admin = TestClient::create(&t.hub, "admin", &["import", "admin"], &["*"], &["*"]).await;
    let r = t
        .get(&admin, &format!("/api/v1/imports/{id}/errors.xlsx"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let masked = read(&py, t.dir.path(), &r.body);
    let cell = sheet(&masked, "诉求事项登记")["rows"][2][2]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(cell, format!("430102********{}", &id_number(101)[14..]));
}

async fn sqlx_count(t: &T, sql: &str) -> i64 {
    use sqlx::Row;
    xfhub_store::Stmt::new(sql)
        .query()
        .fetch_one(t.hub.state.store.reader())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap()
}

#[tokio::test]
async fn inline_strings_merged_two_row_headers_and_xls_files_import() {
    let Some(py) = python() else { return };
    let t = T::start(|_| {}).await;
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    for i in 0..5u32 {
        rows.push(petition_row(i, json!({"date": "2024-03-05"})));
    }
    // Inline strings.
    let inline = make(
        &py,
        t.dir.path(),
        "inline.xlsx",
        json!({"sheet": "登记", "rows": rows, "inline_strings": true}),
    );
    let job = t
        .import(&t.client, "petition", "inline.xlsx", &inline)
        .await;
    assert_eq!(
        (job["status"].clone(), job["imported"].clone()),
        (json!("completed"), json!(5)),
        "{job:#}"
    );

    // A two-row header: group cells merged across, some headers merged down over both rows.
    let mut rows2 = rows.clone();
    for (i, r) in rows2.iter_mut().enumerate().skip(1) {
        r[11] = json!(format!("MERGED-{i}"));
    }
    let merged = make(
        &py,
        t.dir.path(),
        "merged.xlsx",
        json!({
            "sheet": "登记",
            "rows": rows2,
            "group_header": [[2, 4, "投诉人信息"], [5, 8, "诉求信息"]],
            "merge_down": [1, 9, 10, 11, 12],
        }),
    );
    let job = t
        .import(&t.client, "petition", "merged.xlsx", &merged)
        .await;
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["imported"], 5, "source ids MERGED-n are new records");

    // The same rows as .xls (BIFF8, xlwt): the same content, so repeats of the inline upload.
    let xls = make(
        &py,
        t.dir.path(),
        "old.xls",
        json!({"format": "xls", "rows": rows}),
    );
    let job = t.import(&t.client, "petition", "old.xls", &xls).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["duplicates"], 5, "{job:#}");
    assert_eq!(t.count(RecordKind::Petition).await, 10);
}

#[tokio::test]
async fn bad_files_are_refused_whole_with_a_clear_error() {
    let Some(py) = python() else { return };
    let t = T::start(|c| {
        c.excel.max_rows = 40;
        c.excel.max_upload_bytes = 200_000;
    })
    .await;
    let dir = t.dir.path();
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    for i in 0..41u32 {
        rows.push(petition_row(i, json!("2024-03-05")));
    }
    let too_many = make(&py, dir, "many.xlsx", json!({"rows": rows}));
    let encrypted = make(
        &py,
        dir,
        "locked.xlsx",
        json!({"rows": &rows[..3], "password": "secret"}),
    );
    let bomb = make(
        &py,
        dir,
        "bomb.xlsx",
        json!({"format": "zipbomb", "bomb_mb": 64}),
    );
    let text = make(
        &py,
        dir,
        "notes.xlsx",
        json!({"format": "text", "text": "姓名,证件号码\n"}),
    );
    let mut no_summary: Vec<Vec<Value>> = rows[..3].to_vec();
    for r in &mut no_summary {
        r.remove(7);
    }
    let missing = make(&py, dir, "missing.xlsx", json!({"rows": no_summary}));
    let big: Vec<u8> = {
        // Over 200,000 bytes but under the upload body's framing allowance.
        let mut b = too_many.clone();
        b.resize(200_100, b' ');
        b
    };
    let header_only = make(&py, dir, "empty.xlsx", json!({"rows": [HEADER.to_vec()]}));
    let cases: Vec<(&str, &[u8], StatusCode, &str)> = vec![
        (
            "too many rows",
            &too_many,
            StatusCode::UNPROCESSABLE_ENTITY,
            "excel_too_many_rows",
        ),
        (
            "password",
            &encrypted,
            StatusCode::UNPROCESSABLE_ENTITY,
            "excel_encrypted",
        ),
        (
            "zip bomb",
            &bomb,
            StatusCode::UNPROCESSABLE_ENTITY,
            "excel_zip_bomb",
        ),
        (
            "not a spreadsheet",
            &text,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "excel_not_spreadsheet",
        ),
        (
            "missing column",
            &missing,
            StatusCode::UNPROCESSABLE_ENTITY,
            "excel_missing_columns",
        ),
        (
            "over the size limit",
            &big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "excel_too_large",
        ),
        (
            "no data rows",
            &header_only,
            StatusCode::UNPROCESSABLE_ENTITY,
            "excel_no_rows",
        ),
    ];
    for (what, bytes, status, code) in cases {
        let r = t.upload(&t.client, "petition", "f.xlsx", bytes).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let body = r.json();
        assert_eq!(body["code"], code, "{what}: {body:#}");
        assert!(!body["message_zh"].as_str().unwrap().is_empty());
    }
    // Far over the limit: refused before the body is read whole.
    let huge = vec![b'x'; 400_000];
    let r = t.upload(&t.client, "petition", "huge.xlsx", &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    // Nothing was imported, no job was created, no row was kept as an error.
    assert_eq!(t.count(RecordKind::Petition).await, 0);
    assert_eq!(t.import_error_count().await, 0);
    assert_eq!(
        sqlx_count(&t, "SELECT COUNT(*) AS n FROM excel_jobs").await,
        0
    );
    // Not a multipart form, missing form fields and unknown kinds.
    let r = send(
        &t.app,
        t.client
            .post_json("/api/v1/imports", &json!({"kind": "petition"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.json()["code"], "unsupported_media_type");
    let r = t.upload(&t.client, "letters", "f.xlsx", &too_many).await;
    assert_error_body(
        "kind",
        &r.json(),
        "invalid_parameter",
        &[("kind", "invalid_parameter")],
    );
}

#[tokio::test]
async fn scopes_info_sets_and_divisions_are_enforced() {
    let Some(py) = python() else { return };
    let t = T::start(|_| {}).await;
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    rows.push(petition_row(1, json!("2024-03-05")));
    let mut other_division = petition_row(2, json!("2024-03-05"));
    other_division[0] = json!("430103");
    rows.push(other_division);
    let file = make(&py, t.dir.path(), "two.xlsx", json!({"rows": rows}));

    let reader = TestClient::create(&t.hub, "reader", &["read", "export"], &["*"], &["*"]).await;
    let r = t.upload(&reader, "petition", "two.xlsx", &file).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["code"], "auth_scope_denied");
    let r = t.get(&reader, "/api/v1/excel/templates/petition").await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "templates belong to importers"
    );

    let words_only = TestClient::create(&t.hub, "words", &["import"], &["workorder"], &["*"]).await;
    let r = t.upload(&words_only, "petition", "two.xlsx", &file).await;
    assert_eq!(r.json()["code"], "auth_info_set_denied");

    let furong = TestClient::create(&t.hub, "furong", &["import"], &["*"], &["430102"]).await;
    let job = t.import(&furong, "petition", "two.xlsx", &file).await;
    assert_eq!(
        (job["imported"].clone(), job["rejected"].clone()),
        (json!(1), json!(1)),
        "{job:#}"
    );
    let id = job["id"].as_str().unwrap();
    let r = t
        .get(&furong, &format!("/api/v1/imports/{id}/errors.xlsx"))
        .await;
    let report = read(&py, t.dir.path(), &r.body);
    let row = &sheet(&report, "诉求事项登记")["rows"][1];
    assert_eq!(row[13], "auth_division_denied");

    let importer = TestClient::create(&t.hub, "importer", &["import"], &["*"], &["*"]).await;
    let r = t.get(&importer, "/api/v1/exports?kind=petition").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn exports_mask_numbers_without_pii_read_filter_by_scope_and_are_audited() {
    let Some(py) = python() else { return };
    let t = T::start(|_| {}).await;
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    for i in 0..12u32 {
        let mut r = petition_row(i, json!(format!("2024-03-{:02}", 1 + i)));
        r[9] = json!(format!("2024-03-{:02} 09:30", 1 + i));
        if i % 3 == 0 {
            r[0] = json!("430104");
        }
        rows.push(r);
    }
    let file = make(&py, t.dir.path(), "export-src.xlsx", json!({"rows": rows}));
    let job = t.import(&t.client, "petition", "src.xlsx", &file).await;
    assert_eq!(job["imported"], 12, "{job:#}");

    // With pii:read: clear numbers, every row, template columns plus three.
    let r = t.get(&t.client, "/api/v1/exports?kind=petition").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["x-export-rows"], "12");
    let book = read(&py, t.dir.path(), &r.body);
    let data = sheet(&book, "诉求事项登记")["rows"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(data.len(), 13);
    let headers: Vec<&str> = data[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    let id_col = headers.iter().position(|h| *h == "证件号码").unwrap();
    let phone_col = headers.iter().position(|h| *h == "手机号码").unwrap();
    assert_eq!(
        &headers[headers.len() - 3..],
        ["平台编号", "状态", "接收时间"]
    );
    let ids: Vec<&str> = data[1..]
        .iter()
        .map(|r| r[id_col].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id_number(4).as_str()), "{ids:?}");

    // The export imports back: every row is a repeat.
    let job = t
        .import(&t.client, "petition", "export.xlsx", &r.body)
        .await;
    assert_eq!(
        (job["duplicates"].clone(), job["rejected"].clone()),
        (json!(12), json!(0)),
        "{job:#}"
    );

    // Without pii:read: masked; a date range and a division narrow it.
    let exporter = TestClient::create(&t.hub, "exporter", &["export"], &["petition"], &["*"]).await;
    let r = t
        .get(
            &exporter,
            "/api/v1/exports?kind=petition&from=2024-03-02&to=2024-03-07&division=430102",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let book = read(&py, t.dir.path(), &r.body);
    let data = sheet(&book, "诉求事项登记")["rows"]
        .as_array()
        .unwrap()
        .clone();
    // Days 2..=7 are rows 1..=6; rows 3 and 6 are in 430104.
    assert_eq!(data.len() - 1, 4, "{data:?}");
    for row in &data[1..] {
        let id = row[id_col].as_str().unwrap();
        assert!(id.contains("********"), "{id}");
        assert!(row[phone_col].as_str().unwrap().contains("****"));
    }
    let text = serde_json::to_string(&data).unwrap();
    assert!(
        !text.contains(&id_number(4)),
        "a clear identity number leaked"
    );

    // A client of one division exports only it, and may not ask for another.
    let yuelu = TestClient::create(&t.hub, "yuelu", &["export"], &["*"], &["430104"]).await;
    let r = t.get(&yuelu, "/api/v1/exports?kind=petition").await;
    assert_eq!(r.headers["x-export-rows"], "4");
    let r = t
        .get(&yuelu, "/api/v1/exports?kind=petition&division=430102")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .get(&yuelu, "/api/v1/exports?kind=petition&from=2024-3-1")
        .await;
    assert_error_body(
        "date",
        &r.json(),
        "invalid_parameter",
        &[("from", "invalid_parameter")],
    );
    let r = t
        .get(&yuelu, "/api/v1/exports?kind=petition&colour=red")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Every export is audited, with its filters, count and masking.
    let audit = t.hub.state.store.audit_page(0, 1000).await.unwrap();
    let exports: Vec<String> = audit
        .iter()
        .filter(|a| a.entry.action == "excel.export")
        .map(|a| format!("{} {}", a.entry.actor, a.entry.detail))
        .collect();
    assert_eq!(exports.len(), 3, "{exports:?}");
    assert!(exports[0].ends_with("rows=12 pii=clear"), "{exports:?}");
    assert!(
        exports[1].contains("from=2024-03-02 to=2024-03-07 division=430102"),
        "{exports:?}"
    );
    assert!(exports[1].ends_with("rows=4 pii=masked"), "{exports:?}");
    assert!(audit.iter().any(|a| a.entry.action == "excel.import"));
}

#[tokio::test]
async fn export_limit_refuses_too_large_a_range() {
    let Some(py) = python() else { return };
    let t = T::start(|c| c.excel.max_export_rows = 2).await;
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    for i in 0..3u32 {
        rows.push(petition_row(i, json!("2024-03-05")));
    }
    let file = make(&py, t.dir.path(), "three.xlsx", json!({"rows": rows}));
    t.import(&t.client, "petition", "three.xlsx", &file).await;
    let r = t.get(&t.client, "/api/v1/exports?kind=petition").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["code"], "export_too_large");
}

#[tokio::test]
async fn key_persons_word_lists_and_work_orders_import() {
    let Some(py) = python() else { return };
    let t = T::start(|_| {}).await;
    let words = make(
        &py,
        t.dir.path(),
        "words.xlsx",
        json!({"sheet": "敏感词热点词库", "rows": [
            ["词库", "词语", "类别"],
            ["敏感词", "群体上访", "群体性"],
            ["热点词", "拆迁", null],
            ["热点词库", "物业", "城乡建设"],
            ["敏感词", null, null],
            ["别的词库", "x", null],
        ]}),
    );
    let job = t.import(&t.client, "word_list", "words.xlsx", &words).await;
    assert_eq!(
        (job["imported"].clone(), job["rejected"].clone()),
        (json!(3), json!(2)),
        "{job:#}"
    );
    let job = t.import(&t.client, "word_list", "words.xlsx", &words).await;
    assert_eq!(job["duplicates"], 3, "the same words again change nothing");
    assert_eq!(
        sqlx_count(
            &t,
            "SELECT COUNT(*) AS n FROM word_lists WHERE list = 'hot'"
        )
        .await,
        2
    );

    let people = make(
        &py,
        t.dir.path(),
        "people.xlsx",
        json!({"rows": [
            ["姓名", "证件号码", "手机号码", "所属区划", "人员类别", "风险等级"],
            ["李四", id_number(7), "13912345678", "430104 岳麓区", "重复访", "高"],
            ["王五", 4.30102e17, null, "430104", null, "中"],
        ]}),
    );
    let job = t
        .import(&t.client, "key_person", "people.xlsx", &people)
        .await;
    assert_eq!(
        (job["imported"].clone(), job["rejected"].clone()),
        (json!(1), json!(1)),
        "{job:#}"
    );
    let job = t
        .import(&t.client, "key_person", "people.xlsx", &people)
        .await;
    assert_eq!(job["duplicates"], 1);
    // Sealed at rest, keyed by the blind index petitions use too.
    use sqlx::Row;
    let row = xfhub_store::Stmt::new(
        "SELECT id_digest, id_number_sealed, mobile_sealed FROM key_persons",
    )
    .query()
    .fetch_one(t.hub.state.store.reader())
    .await
    .unwrap();
    let ring = t.hub.state.keys.current();
    let sealed: String = row.try_get("id_number_sealed").unwrap();
    assert!(!sealed.contains(&id_number(7)));
    assert_eq!(ring.open(&sealed).unwrap(), id_number(7));
    assert_eq!(
        row.try_get::<String, _>("id_digest").unwrap(),
        ring.blind_index("id_number", &id_number(7))
    );

    let orders = make(
        &py,
        t.dir.path(),
        "orders.xlsx",
        json!({"sheet": "12345工单", "rows": [
            ["工单编号", "来电时间", "来电号码", "工单类型", "事发地", "标题", "诉求内容", "工单状态", "诉求分类"],
            ["GD2024030500001", {"datetime": "2024-03-05 09:30:00"}, 13812345678u64, "投诉举报", "430102", "噪音", "夜间施工噪音", "已派单", "城乡建设/噪音"],
            ["GD2024030500002", "2024-03-05 10:00", "0731-84561234", "help 求助", "430103 天心区", "路灯", "路灯不亮", "registered", null],
            ["GD2024030500003", "昨天", null, "咨询", "430103", "x", "y", "已登记", null],
        ]}),
    );
    let job = t
        .import(&t.client, "workorder", "orders.xlsx", &orders)
        .await;
    assert_eq!(
        (job["imported"].clone(), job["rejected"].clone()),
        (json!(2), json!(1)),
        "{job:#}"
    );
    assert_eq!(t.count(RecordKind::Workorder).await, 2);
    let r = t.get(&t.client, "/api/v1/exports?kind=workorder").await;
    let book = read(&py, t.dir.path(), &r.body);
    assert_eq!(
        sheet(&book, "12345工单")["rows"].as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn a_job_left_running_by_a_stopped_hub_ends_failed_with_its_rows_counted() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let hub = Hub::start(config.clone()).await.unwrap();
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    rows.push(petition_row(1, json!("2024-03-05")));
    let file = make(&py, dir.path(), "one.xlsx", json!({"rows": rows}));
    let prepared = xfhub::excel::jobs::prepare(
        axum::body::Bytes::from(file),
        SheetKind::Petition,
        &config.excel,
    )
    .unwrap();
    let ctx = xfhub::excel::api::context(&hub.state);
    let meta = xfhub::excel::jobs::JobMeta {
        id: uuid::Uuid::now_v7(),
        kind: SheetKind::Petition,
        actor: "cli".to_owned(),
        remote: "local".to_owned(),
        file_name: "one.xlsx".to_owned(),
        file_sha256: "0".repeat(64),
        divisions: None,
    };
    // Created, then the process stops before the job runs.
    xfhub::excel::jobs::create(&ctx, &meta, &prepared)
        .await
        .unwrap();
    hub.shutdown(Duration::from_secs(5)).await;
    let hub = Hub::start(config).await.unwrap();
    let job = xfhub::excel::jobs::get(&hub.state.store, &hub.state.excel.live, meta.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, "failed");
    assert_eq!(job.error_code.as_deref(), Some("job_interrupted"));
    assert!(job.error_message_zh.unwrap().contains("重新上传"));
    hub.shutdown(Duration::from_secs(5)).await;
}

/// A fresh PostgreSQL database for one test (dropped at the end, best effort).
async fn pg_database() -> (String, String) {
    use sqlx::{Connection, Executor};
    let admin = std::env::var("XFHUB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("xfhub_excel_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL at {admin}: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create the database");
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    (name.clone(), format!("{base}/{name}"))
}

async fn pg_drop(name: &str) {
    use sqlx::{Connection, Executor};
    let admin = std::env::var("XFHUB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}

#[tokio::test]
async fn imports_and_exports_on_postgresql() {
    let Some(py) = python() else { return };
    let (name, url) = pg_database().await;
    let t = T::start(|c| {
        c.database_url = Some(url);
        c.excel.batch_rows = 4;
    })
    .await;
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    for i in 0..10u32 {
        rows.push(petition_row(i, json!("2024-03-05")));
    }
    let mut bad = petition_row(50, json!("2024-03-05"));
    bad[2] = json!("4.30102E+17");
    rows.push(bad);
    // The same 来源编号 twice with other content: the second is a version conflict.
    rows[1][11] = json!("PG-1");
    let mut conflict = petition_row(60, json!("2024-03-05"));
    conflict[11] = json!("PG-1");
    rows.push(conflict);
    let file = make(&py, t.dir.path(), "pg.xlsx", json!({"rows": rows}));
    let job = t.import(&t.client, "petition", "pg.xlsx", &file).await;
    assert_eq!(job["status"], "partial", "{job:#}");
    assert_eq!(
        (
            job["rows_read"].clone(),
            job["imported"].clone(),
            job["duplicates"].clone(),
            job["rejected"].clone()
        ),
        (json!(12), json!(10), json!(0), json!(2)),
        "{job:#}"
    );
    let id = job["id"].as_str().unwrap();
    let r = t
        .get(&t.client, &format!("/api/v1/imports/{id}/errors.xlsx"))
        .await;
    let report = read(&py, t.dir.path(), &r.body);
    let codes: Vec<String> = sheet(&report, "诉求事项登记")["rows"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|r| r[13].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, ["id_number_scientific", "version_conflict"]);
    let job = t.import(&t.client, "petition", "pg.xlsx", &file).await;
    assert_eq!(
        (job["duplicates"].clone(), job["rejected"].clone()),
        (json!(10), json!(2)),
        "{job:#}"
    );

    let words = make(
        &py,
        t.dir.path(),
        "w.xlsx",
        json!({"rows": [["词库", "词语", "类别"], ["敏感词", "群体上访", "群体性"], ["热点词", "拆迁", null]]}),
    );
    let job = t.import(&t.client, "word_list", "w.xlsx", &words).await;
    assert_eq!(job["imported"], 2, "{job:#}");
    let job = t.import(&t.client, "word_list", "w.xlsx", &words).await;
    assert_eq!(job["duplicates"], 2, "{job:#}");
    let people = make(
        &py,
        t.dir.path(),
        "p.xlsx",
        json!({"rows": [["姓名", "证件号码", "所属区划"], ["李四", id_number(7), "430104"]]}),
    );
    let job = t.import(&t.client, "key_person", "p.xlsx", &people).await;
    assert_eq!(job["imported"], 1, "{job:#}");
    let job = t.import(&t.client, "key_person", "p.xlsx", &people).await;
    assert_eq!(job["duplicates"], 1, "{job:#}");

    let r = t
        .get(&t.client, "/api/v1/exports?kind=petition&division=430102")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["x-export-rows"], "10");
    let T { hub, .. } = t;
    hub.shutdown(Duration::from_secs(5)).await;
    pg_drop(&name).await;
}

#[tokio::test]
async fn the_cli_imports_with_a_summary_and_writes_the_error_report() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<Vec<Value>> = vec![HEADER.iter().map(|h| json!(h)).collect()];
    for i in 0..6u32 {
        rows.push(petition_row(i, json!("2024-03-05")));
    }
    let mut bad = petition_row(9, json!("2024-03-05"));
    bad[0] = json!("888888");
    rows.push(bad);
    let file = dir.path().join("cli.xlsx");
    make(&py, dir.path(), "cli.xlsx", json!({"rows": rows}));
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xfhub"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let o = run(&[
        "import",
        file.to_str().unwrap(),
        "--kind",
        "petition",
        "--quiet",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("rows read 7  imported 6  repeats 0  rejected 1"),
        "{out}"
    );
    let report = dir.path().join("cli.errors.xlsx");
    assert!(out.contains("error report:"), "{out}");
    let book = read(&py, dir.path(), &std::fs::read(&report).unwrap());
    assert_eq!(sheet(&book, "诉求事项登记")["rows"][1][13], "unknown_code");
    // Again: every good row is a repeat.
    let o = run(&[
        "import",
        file.to_str().unwrap(),
        "--kind",
        "petition",
        "--quiet",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("imported 0  repeats 6  rejected 1"), "{out}");
    // A file that is not a spreadsheet: refused, exit 1, nothing imported.
    let notes = dir.path().join("notes.xlsx");
    std::fs::write(&notes, "姓名,证件号码\n").unwrap();
    let o = run(&["import", notes.to_str().unwrap(), "--kind", "petition"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("excel_not_spreadsheet"));
    // Export: masked by default.
    let out_file = dir.path().join("out.xlsx");
    let o = run(&[
        "export",
        "--kind",
        "petition",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("exported 6 petition rows"));
    let book = read(&py, dir.path(), &std::fs::read(&out_file).unwrap());
    let text = sheet(&book, "诉求事项登记")["rows"].to_string();
    assert!(!text.contains(&id_number(1)) && text.contains("********"));
}
