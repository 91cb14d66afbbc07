//! The emulators as processes (kinesis-mock, moto server) on free loopback ports, and the
//! handle that stops a process when it drops.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder `scripts/setup-tools` installs into.
pub fn tools_dir() -> PathBuf {
    let dir = std::env::var_os("ENFORCER_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"));
    assert!(
        dir.join(".stamp-venv").exists() && dir.join(".stamp-node").exists(),
        "the emulators are not installed in {}: run scripts/setup-tools (scripts/test does)",
        dir.display()
    );
    dir
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    if let Err(why) = try_wait_for_port(port, child, what) {
        panic!("{why}");
    }
}

/// Waits until `port` listens; an error when the process exits first, or after 60 s.
pub(crate) fn try_wait_for_port(port: u16, child: &mut Child, what: &str) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited before listening: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on port {port} within 60 s"))
}

/// A child process killed on drop.
pub struct Process(
    pub(crate) Child,
    pub(crate) Option<std::thread::JoinHandle<Vec<u8>>>,
);

impl From<Child> for Process {
    fn from(child: Child) -> Self {
        Self(child, None)
    }
}

impl Process {
    /// The process id.
    #[allow(dead_code)] // the benchmark reads its memory
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// kinesis-mock with a CREATING phase of `create` and an UPDATING phase of `update`.
pub fn start_kinesis_mock(create: Duration, update: Duration) -> (Process, String) {
    let port = free_port();
    let process = start_kinesis_mock_on(port, create, update, None);
    (process, format!("http://127.0.0.1:{port}"))
}

/// kinesis-mock on `port`; with `persist`, its state is saved there every 100 ms and loaded
/// at start (so that it can be killed and restarted with its streams).
pub fn start_kinesis_mock_on(
    port: u16,
    create: Duration,
    update: Duration,
    persist: Option<&Path>,
) -> Process {
    // Its TLS port is one more free port, found free a moment before kinesis-mock binds it: a
    // process started meanwhile (another test's emulator) can take it, and kinesis-mock then
    // exits. So a start that exits before listening is tried again, on another TLS port.
    let mut failures = Vec::new();
    for _ in 0..3 {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut child = kinesis_mock_command(port, create, update, persist)
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .expect("node runs kinesis-mock");
        match try_wait_for_port(port, &mut child, "kinesis-mock") {
            Ok(()) => return Process(child, None),
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let said = std::fs::read_to_string(log.path()).unwrap_or_default();
                failures.push(format!("{why}: {}", said.trim()));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    panic!("kinesis-mock did not start: {failures:#?}");
}

fn kinesis_mock_command(
    port: u16,
    create: Duration,
    update: Duration,
    persist: Option<&Path>,
) -> Command {
    let pkg = tools_dir().join("node/node_modules/kinesis-local");
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut command = Command::new("node");
    // kinesis-mock 0.6.2 shifts the encryption durations by one variable: set all three alike.
    command
        .arg(pkg.join("main.js"))
        .env("KINESIS_MOCK_CERT_PATH", pkg.join("server.json"))
        .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
        .env("KINESIS_MOCK_TLS_PORT", free_port().to_string())
        .env("CREATE_STREAM_DURATION", ms(create))
        .env("DELETE_STREAM_DURATION", "0ms")
        .env("START_STREAM_ENCRYPTION_DURATION", ms(update))
        .env("STOP_STREAM_ENCRYPTION_DURATION", ms(update))
        .env("REGISTER_STREAM_CONSUMER_DURATION", ms(update))
        .env("SHARD_LIMIT", "1000")
        .env("LOG_LEVEL", "WARN")
        .stdout(Stdio::null());
    if let Some(dir) = persist {
        command
            .env("SHOULD_PERSIST_DATA", "true")
            .env("PERSIST_PATH", dir)
            .env("PERSIST_INTERVAL", "100ms");
    }
    command
}

/// moto server on loopback.
pub fn start_moto() -> (Process, String) {
    let port = free_port();
    let mut child = Command::new(tools_dir().join("venv/bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server runs");
    wait_for_port(port, &mut child, "moto server");
    (Process(child, None), format!("http://127.0.0.1:{port}"))
}

impl Process {
    /// Stops the process and returns what it wrote on stdout.
    pub fn stop_and_read_stdout(mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut out = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            use std::io::Read;
            let _ = stdout.read_to_string(&mut out);
        }
        if let Some(drain) = self.1.take() {
            // The drain ends at end-of-file, which the kill brings.
            out.push_str(&String::from_utf8_lossy(&drain.join().unwrap_or_default()));
        }
        out
    }
}
