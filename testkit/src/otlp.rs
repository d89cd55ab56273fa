//! An OTLP trace receiver for the tests: `testkit/python/otlp_receiver.py`,
//! which decodes with the official OpenTelemetry protobuf definitions
//! (PyPI `opentelemetry-proto`) behind Python's HTTP server and Google's
//! gRPC server, so what our exporter sends is read by code nobody here
//! wrote. Every span it receives comes back as a JSON object (`service`,
//! `trace_id`, `span_id`, `parent_span_id`, `name`, `kind`, `attributes`,
//! `links`, `status`, `protocol`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Pinned: the receiver's decoding is only as fixed as these.
const PACKAGES: &[&str] = &[
    "opentelemetry-proto==1.45.0",
    "protobuf==7.36.2",
    "grpcio==1.85.3",
];

pub struct Receiver {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:<port>` for OTLP/HTTP (`/v1/traces` is added by the
    /// exporter's settings).
    pub http: String,
    /// `http://127.0.0.1:<port>` for OTLP/gRPC.
    pub grpc: String,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// Start one (its virtualenv under `dir`, made on first use). Blocks
    /// until it listens.
    pub fn start(dir: &Path) -> Receiver {
        let bin = crate::python::venv(dir, "otlp-venv", PACKAGES);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/otlp_receiver.py");
        let mut child = Command::new(bin.join("python"))
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let ports: Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("the receiver said {first:?}: {e}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Receiver {
            child,
            stdin,
            http: format!("http://127.0.0.1:{}", ports["http"]),
            grpc: format!("http://127.0.0.1:{}", ports["grpc"]),
            spans,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Value> {
        self.spans()
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id)
            .collect()
    }

    /// Wait (up to 30 s) until `done` holds for the spans received, and
    /// return them; panics naming `what` otherwise.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received; got {}",
                serde_json::to_string_pretty(&spans).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
