//! The edge worker under real `wrangler dev` (workerd, local Durable Object storage), with the
//! origin's scheduler driving it, both as processes on free loopback ports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::origin_binary;
use super::redis::{command, free_port};
use super::{client, Target, ADMIN_KEY, SIGNING_KEYS};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the worker once per test run (scripts/edge.sh build: worker-build, offline).
pub fn build_worker() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(root().join("scripts/edge.sh"))
            .arg("build")
            .status()
            .expect("bash runs");
        assert!(status.success(), "scripts/edge.sh build failed");
    });
}

/// A process group we started; stopped (with all its children) when dropped.
struct Group {
    child: Option<Child>,
}

impl Group {
    fn spawn(mut command: Command) -> Group {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        Group {
            child: Some(command.spawn().expect("the process starts")),
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `kill -TERM -PID` is read by this procps as a signal to the group of PID's first
            // digit (that is, everything for a PID starting with 1): `-s SIG -- -PID` is not.
            let group = format!("-{}", child.id());
            let signal = |name: &str| {
                let _ = Command::new("kill")
                    .args(["-s", name, "--", &group])
                    .status();
            };
            signal("TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            signal("KILL");
            let _ = child.wait();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct WranglerDev {
    pub port: u16,
    pub persist: PathBuf,
    upstream: Option<String>,
    group: Group,
    log: PathBuf,
    /// Set by `stop`, whose caller takes the persistence directory over.
    handed_over: bool,
}

/// Every run leaves a persistence directory and a log in the temporary directory; a passing
/// test removes them (hundreds of runs filled a disk once), a failing one keeps them to read.
impl Drop for WranglerDev {
    fn drop(&mut self) {
        self.group.stop();
        if std::thread::panicking() {
            return;
        }
        let _ = std::fs::remove_file(&self.log);
        if !self.handed_over {
            let _ = std::fs::remove_dir_all(&self.persist);
        }
    }
}

impl WranglerDev {
    /// Starts `wrangler dev` on free ports with the test keys, the given upstream and a fresh
    /// persistence directory.
    pub fn start(upstream: Option<&str>) -> WranglerDev {
        let persist = std::env::temp_dir().join(format!(
            "queuegate-wrangler-{}-{}",
            std::process::id(),
            free_port()
        ));
        Self::start_in(upstream, persist)
    }

    /// Starts it on the persistence directory of an earlier run.
    pub fn start_in(upstream: Option<&str>, persist: PathBuf) -> WranglerDev {
        Self::launch(upstream, persist, None, &[])
    }

    /// Starts it with another wrangler configuration (`config`) and more vars, ready once it
    /// answers at all (a broken store answers /healthz with 503).
    pub fn start_with(upstream: Option<&str>, config: &Path, vars: &[(&str, &str)]) -> WranglerDev {
        let persist = std::env::temp_dir().join(format!(
            "queuegate-wrangler-{}-{}",
            std::process::id(),
            free_port()
        ));
        Self::launch(upstream, persist, Some(config), vars)
    }

    fn launch(
        upstream: Option<&str>,
        persist: PathBuf,
        config: Option<&Path>,
        vars: &[(&str, &str)],
    ) -> WranglerDev {
        build_worker();
        let port = free_port();
        let log = persist.with_extension("log");
        let mut command = Command::new(root().join("node_modules/.bin/wrangler"));
        command
            .current_dir(root())
            .args(["dev", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .arg("--persist-to")
            .arg(&persist)
            .args(["--var", &format!("QUEUEGATE_ADMIN_KEY:{ADMIN_KEY}")])
            .args(["--var", &format!("QUEUEGATE_SIGNING_KEYS:{SIGNING_KEYS}")])
            .args(["--var", &format!("QUEUEGATE_APP_KEYS:{}", super::APP_KEYS)])
            .args([
                "--var",
                &format!("QUEUEGATE_UPSTREAM:{}", upstream.unwrap_or("")),
            ])
            .args([
                "--var",
                &format!(
                    "QUEUEGATE_UPSTREAM_TIMEOUT_MS:{}",
                    super::UPSTREAM_TIMEOUT_MS
                ),
            ])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("a log"))
            .stderr(Stdio::null());
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        for (name, value) in vars {
            command.args(["--var", &format!("{name}:{value}")]);
        }
        let group = Group::spawn(command);
        let dev = WranglerDev {
            port,
            persist,
            upstream: upstream.map(str::to_owned),
            group,
            log,
            handed_over: false,
        };
        let ready = if config.is_some() {
            "HTTP/1.1 "
        } else {
            "HTTP/1.1 200"
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let reply = command_http(port, "/_qg/v1/healthz");
            if reply.is_some_and(|r| r.starts_with(ready)) {
                return dev;
            }
            assert!(
                Instant::now() < deadline,
                "wrangler dev did not come up: {}",
                std::fs::read_to_string(&dev.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn target(&self) -> Target {
        Target {
            base: self.url(),
            admin_key: ADMIN_KEY.to_owned(),
            keys: queuegate::SigningKeys::parse(SIGNING_KEYS).unwrap(),
            client: client(),
            tick: Duration::from_millis(100),
            clock: None,
            behind_runtime_front: true,
            behind_nginx: false,
        }
    }

    /// Stops it, keeping the persisted Durable Object storage.
    pub fn stop(mut self) -> PathBuf {
        self.group.stop();
        self.handed_over = true;
        self.persist.clone()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn command_http(port: u16, path: &str) -> Option<String> {
    command(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"),
    )
}

/// `queuegate-origin schedule --edge URL`: the origin's scheduler driving the edge.
pub struct EdgeScheduler {
    group: Group,
}

impl EdgeScheduler {
    pub fn start(edge: &str, tick_ms: u64) -> EdgeScheduler {
        let mut command = Command::new(origin_binary());
        command
            .args([
                "schedule",
                "--edge",
                edge,
                "--tick-ms",
                &tick_ms.to_string(),
            ])
            .env("QUEUEGATE_ADMIN_KEY", ADMIN_KEY)
            .env("QUEUEGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        EdgeScheduler {
            group: Group::spawn(command),
        }
    }
}

/// The storage of the Durable Object whose name starts with `name_prefix` (a shard object is
/// `{room}:{epoch}:{shard}`), read from the SQLite files of a stopped `wrangler dev`'s
/// persistence directory with python3's sqlite3 module: each table's rows and the bytes of its
/// values, the `meta` table, the keys of the `snapshot` table's blobs and the lowest log id.
pub fn object_storage(persist: &Path, name_prefix: &str) -> serde_json::Value {
    const SCRIPT: &str = r#"
import glob, json, sqlite3, sys
persist, prefix = sys.argv[1], sys.argv[2]
found = []
for path in glob.glob(f"{persist}/v3/do/*/*.sqlite"):
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM __miniflare_do_name")]
    except sqlite3.OperationalError:
        continue
    if not any(n.startswith(prefix) for n in names):
        continue
    tables = {}
    for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        if t.startswith("__") or t.startswith("sqlite_"):
            continue
        rows = list(db.execute(f'SELECT * FROM "{t}"'))
        size = sum(8 if isinstance(v, (int, float)) else len(v or b"") for r in rows for v in r)
        tables[t] = {"rows": len(rows), "bytes": size}
    out = {"name": names[0], "tables": tables}
    if "meta" in tables:
        out["meta"] = dict(db.execute("SELECT k, v FROM meta"))
    if "snapshot" in tables:
        out["snapshot_blobs"] = [r[0] for r in db.execute("SELECT DISTINCT blob FROM snapshot ORDER BY blob")]
    if "ops" in tables:
        out["ops_min_id"] = db.execute("SELECT MIN(id) FROM ops").fetchone()[0]
    found.append(out)
print(json.dumps(found))
"#;
    let output = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(persist)
        .arg(name_prefix)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "reading the storage: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("the script's JSON");
    assert_eq!(found.len(), 1, "objects named {name_prefix}*: {found:?}");
    found.into_iter().next().unwrap()
}
