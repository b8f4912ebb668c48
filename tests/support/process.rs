//! The origin as a separate process (the real binary), for tests that kill and restart it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::redis::{command, free_port};
use super::{client, Target, ADMIN_KEY, SIGNING_KEYS};

/// The `queuegate-origin` binary, built once per test run.
pub fn origin_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "queuegate-origin"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "cargo build -p queuegate-origin failed");
            // target/<profile>/deps/<this test> -> target/<profile>/queuegate-origin
            let exe = std::env::current_exe().expect("the test's path");
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>")
                .join("queuegate-origin")
        })
        .clone()
}

pub struct OriginProcess {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// The process's file limit (`ulimit -n`), where the test sets one.
    file_limit: Option<u32>,
}

impl OriginProcess {
    /// Starts `queuegate-origin serve` on a free port with the test keys and `args`.
    pub fn start(args: &[&str]) -> OriginProcess {
        Self::start_with_file_limit(args, None)
    }

    /// Starts it with at most `file_limit` open files (through the shell's `ulimit -n`).
    pub fn start_with_file_limit(args: &[&str], file_limit: Option<u32>) -> OriginProcess {
        let port = free_port();
        let mut process = OriginProcess {
            port,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: std::env::temp_dir().join(format!("queuegate-origin-{port}.log")),
            file_limit,
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).expect("a log file");
        let mut process = match self.file_limit {
            Some(limit) => {
                let mut shell = Command::new("bash");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(origin_binary());
                shell
            }
            None => Command::new(origin_binary()),
        };
        let child = process
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.args)
            .env("QUEUEGATE_ADMIN_KEY", ADMIN_KEY)
            .env("QUEUEGATE_SIGNING_KEYS", SIGNING_KEYS)
            .env("QUEUEGATE_APP_KEYS", super::APP_KEYS)
            // QG_TEST_LOG (e.g. `debug`) for more of the origin's log in a failing test's output.
            .env(
                "QUEUEGATE_LOG",
                std::env::var("QG_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // The origin logs to stdout.
            .stdout(log.try_clone().expect("a second handle on the log"))
            .stderr(log)
            .spawn()
            .expect("the origin starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Any HTTP answer will do: /healthz says 503 while the store is away.
        while command(self.port, "GET /_qg/v1/healthz HTTP/1.0\r\n").is_none() {
            assert!(
                Instant::now() < deadline,
                "the origin on {} did not start: {}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn target(&self) -> Target {
        Target {
            base: format!("http://127.0.0.1:{}", self.port),
            admin_key: ADMIN_KEY.to_owned(),
            keys: queuegate::SigningKeys::parse(SIGNING_KEYS).unwrap(),
            client: client(),
            tick: Duration::from_millis(100),
            clock: None,
            behind_runtime_front: false,
            behind_nginx: false,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
        }
    }

    /// Waits up to `within` for the process to end by itself; its exit status if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        self.kill();
        // QG_KEEP_LOGS=1 keeps the logs (in the temporary directory) to read after a test.
        if std::env::var_os("QG_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
