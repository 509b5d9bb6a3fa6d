//! Runs the Python checks under `hub/tests/py` (zeep, lxml) with the CI venv's interpreter:
//! `XFHUB_PYTHON`, else `<workspace>/.ci/venv/bin/python`. When neither can import zeep and
//! lxml the check is skipped with a loud message, unless `XFHUB_REQUIRE_PYTHON=1` (CI), where
//! it fails.

use std::path::PathBuf;
use std::process::Command;

/// The interpreter to use, or None (after the loud message) when the check is skipped.
pub fn python() -> Option<PathBuf> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = std::env::var_os("XFHUB_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace.join(".ci/venv/bin/python")]);
    for p in candidates {
        let ok = Command::new(&p)
            .args(["-c", "import zeep, lxml"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    let required = std::env::var("XFHUB_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "XFHUB_REQUIRE_PYTHON=1 but no Python with zeep and lxml (set XFHUB_PYTHON)"
    );
    eprintln!(
        "\n!!!!! SKIPPED: no Python with zeep and lxml (set XFHUB_PYTHON or create .ci/venv); \
         the external-client check did not run !!!!!\n"
    );
    None
}

/// Runs `hub/tests/py/<script>` with `args`; panics with its output when it fails. Returns
/// its stdout, or None when Python is not available (and not required).
pub async fn run(script: &str, args: Vec<String>) -> Option<String> {
    let py = python()?;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = tokio::process::Command::new(py)
        .arg(path)
        .args(args)
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    Some(stdout)
}
