//! Python tools the tests check us with (implementations nobody here
//! wrote: an OpenAPI validator, an OAuth client...), each in a virtualenv
//! of its own under a directory the caller names (a test's
//! `CARGO_TARGET_TMPDIR`), installed from PyPI with pinned versions on
//! first use. `python3` with `venv` comes from `scripts/install-test-deps`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The virtualenv `dir/name` with `packages` (pinned `name==version`)
/// installed; returns its `bin` directory. Installed once: a marker file
/// names what is in it, so a changed pin reinstalls.
pub fn venv(dir: &Path, name: &str, packages: &[&str]) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = dir.join(name);
    let bin = venv.join("bin");
    let marker = venv.join(".installed");
    let want = packages.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
        return bin;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .unwrap_or_else(|e| panic!("python3 is needed (scripts/install-test-deps): {e}"))
        .success();
    assert!(ok, "python3 -m venv {} failed", venv.display());
    let out = Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .output()
        .unwrap_or_else(|e| panic!("pip: {e}"));
    assert!(
        out.status.success(),
        "pip install {packages:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&marker, want).unwrap_or_else(|e| panic!("{}: {e}", marker.display()));
    bin
}
