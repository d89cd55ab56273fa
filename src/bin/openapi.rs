//! `cargo run --bin openapi`: regenerate the committed OpenAPI documents in
//! `openapi/` (the merged public API and each service's).
//! `cargo run --bin openapi -- --check`: exit 1 if any differs from the code.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi");
    if std::env::args().any(|a| a == "--check") {
        let stale = gatehouse::stale_documents(&dir)?;
        if stale.is_empty() {
            println!("openapi/ is up to date");
            return Ok(());
        }
        eprintln!(
            "openapi/ differs from the code: {}; run `cargo run --bin openapi`",
            stale.join(", ")
        );
        std::process::exit(1);
    }
    for name in gatehouse::write_documents(&dir)? {
        println!("wrote openapi/{name}");
    }
    Ok(())
}
