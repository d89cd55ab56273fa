//! Node.js programs the tests check us with (implementations nobody here
//! wrote: an OpenID provider...), each in a folder of its own under a
//! directory the caller names (a test's `CARGO_TARGET_TMPDIR`), its npm
//! packages installed with `npm ci` from a committed `package.json` and
//! `package-lock.json` (pinned versions and integrity hashes) on first use.
//! Node.js and npm come from `scripts/install-test-deps`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// The program folder `dir/name`: `source`'s `package.json`,
/// `package-lock.json` and `.mjs` files, with its packages installed.
/// Installed once: a changed lock file reinstalls.
pub fn install(dir: &Path, name: &str, source: &Path) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let lock = std::fs::read_to_string(source.join("package-lock.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    for entry in std::fs::read_dir(source).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "package.json" || name == "package-lock.json" || name.ends_with(".mjs") {
            // Replaced only when changed, and by a rename: another test's
            // `node` may be reading this very file as it starts (a copy in
            // place truncates it first, and node runs the empty file and
            // exits 0 before it is ready).
            let content = std::fs::read(&path).unwrap();
            let dest = folder.join(name);
            if std::fs::read(&dest).ok().as_deref() != Some(content.as_slice()) {
                let tmp = folder.join(format!(".{name}.{}.tmp", std::process::id()));
                std::fs::write(&tmp, &content).unwrap();
                std::fs::rename(&tmp, &dest).unwrap();
            }
        }
    }
    let marker = folder.join(".installed");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(lock.as_str()) {
        return folder;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&folder)
        .output()
        .unwrap_or_else(|e| panic!("npm is needed (scripts/install-test-deps): {e}"));
    assert!(
        out.status.success(),
        "npm ci in {}: {}",
        folder.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&marker, lock).unwrap();
    folder
}

/// A running Node.js program that printed `READY <port>` (killed on drop).
pub struct Program {
    child: Child,
    pub port: u16,
    _stdout: BufReader<ChildStdout>,
}

impl Program {
    /// Run `script` in `folder` and wait for its `READY <port>` line.
    // The child is waited for by `stop`, which `Drop` calls.
    #[allow(clippy::zombie_processes)]
    pub fn start(folder: &Path, script: &str) -> Program {
        let mut child = Command::new("node")
            .arg(script)
            .current_dir(folder)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("node is needed (scripts/install-test-deps): {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let status = child.wait();
                panic!("{script} exited before it was ready: {status:?}");
            }
            if let Some(port) = line.trim().strip_prefix("READY ") {
                let port = port.parse().unwrap();
                return Program {
                    child,
                    port,
                    _stdout: stdout,
                };
            }
        }
    }

    /// Stop it now.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.stop();
    }
}
