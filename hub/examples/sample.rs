//! Prints a valid sample petition or work order as JSON: `cargo run --example sample -- petition 1`.

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "petition".to_owned());
    let i: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let json = match kind.as_str() {
        "petition" => serde_json::to_string_pretty(&xfhub_schemas::sample_petition(i)),
        "workorder" => serde_json::to_string_pretty(&xfhub_schemas::sample_workorder(i)),
        other => {
            eprintln!("unknown kind {other:?}: petition or workorder");
            std::process::exit(2);
        }
    };
    println!("{}", json.expect("samples serialize"));
}
