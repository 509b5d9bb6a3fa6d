//! `xfhub-mocks`: runs the mock partner systems.

fn main() {
    eprintln!("xfhub-mocks: no mock server is built yet");
    std::process::exit(2);
}
