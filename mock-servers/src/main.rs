//! `xfhub-mocks`: runs the mock partner systems.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("sms") {
        std::process::exit(xfhub_mocks::sms::cli(&args[1..]));
    }
    eprintln!("xfhub-mocks: no mock server is built yet");
    std::process::exit(2);
}
