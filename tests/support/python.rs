//! A Python `websockets` server as a child process: the second implementation the interop tests
//! check the library against (installed into target/venv by scripts/deps.sh).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

/// A running server script and the lines it prints; killed and reaped when dropped, also when
/// the test fails.
pub struct PythonServer {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// The port the script printed first (`port N`).
    pub port: u16,
}

impl PythonServer {
    /// Starts `script`, which must print `port N` as its first line. `None`, after a SKIPPED
    /// line naming `test`, when `python3` cannot import `websockets`.
    pub async fn start(test: &str, script: &str) -> Option<Self> {
        let available = Command::new("python3")
            .args(["-c", "import websockets.asyncio.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            eprintln!(
                "SKIPPED {test}: `python3 -c \"import websockets\"` failed (run scripts/deps.sh)"
            );
            return None;
        }
        let mut child = Command::new("python3")
            .args(["-u", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            lines,
            port: 0,
        };
        let first = server.next_line("the port").await;
        server.port = first
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Some(server)
    }

    /// The next line the script prints; `what` names it in the failure.
    pub async fn next_line(&mut self, what: &str) -> String {
        // Python may start slowly on a loaded machine.
        match tokio::time::timeout(Duration::from_secs(30), self.lines.recv()).await {
            Ok(Some(l)) => l,
            Ok(None) => panic!("the Python server exited while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what} from the Python server"),
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
