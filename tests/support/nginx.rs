//! nginx (Debian's package) as the load balancer in front of several origin instances: round
//! robin, no stickiness, keepalive upstream connections, the configuration the README's
//! operator section gives. Started by the test on a free loopback port with its own
//! configuration and prefix directory, stopped when dropped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::redis::{command, free_port};

/// The address nginx connects to the instances from: the instances trust it as their proxy
/// (`--trusted-proxies 127.0.0.9/32`), and the test's clients (on 127.0.0.1, and "another
/// client" on 127.0.0.2) stay strangers.
pub const PROXY_ADDR: &str = "127.0.0.9";

pub struct Nginx {
    pub port: u16,
    child: Child,
    prefix: PathBuf,
}

fn binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// The README's nginx configuration (between its markers) with the test's addresses, as
/// `scripts/nginx-conf.py` (which the benchmarks use too) writes it, connecting to the
/// instances from [`PROXY_ADDR`].
pub fn config(listen: u16, instances: &[u16], prefix: &std::path::Path) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/nginx-conf.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(listen.to_string())
        .arg(prefix)
        .args(instances.iter().map(u16::to_string))
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "nginx-conf.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let conf = String::from_utf8(output.stdout).expect("a UTF-8 configuration");
    let bound = conf.replace(
        "proxy_pass http://queuegate;",
        &format!("proxy_pass http://queuegate;\n            proxy_bind {PROXY_ADDR};"),
    );
    assert_ne!(bound, conf, "the README's configuration has no proxy_pass");
    bound
}

impl Nginx {
    /// nginx on a free port in front of the instances listening on `instances`.
    pub fn start(instances: &[u16]) -> Nginx {
        Self::start_with(instances, |conf| conf)
    }

    /// The same, with the configuration changed by `edit` first (a test's own timeout, a line
    /// left out to show what it is for).
    pub fn start_with(instances: &[u16], edit: impl FnOnce(String) -> String) -> Nginx {
        let port = free_port();
        let prefix = std::env::temp_dir().join(format!("queuegate-nginx-{port}"));
        std::fs::create_dir_all(&prefix).expect("nginx's prefix directory");
        // nginx's workers run as nobody when started as root: they write bodies they buffer
        // into the prefix.
        Command::new("chmod")
            .arg("777")
            .arg(&prefix)
            .status()
            .expect("chmod runs");
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, edit(config(port, instances, &prefix))).expect("nginx.conf");
        let child = Command::new(binary())
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts (scripts/lib.sh ensure_nginx installs it)");
        let nginx = Nginx {
            port,
            child,
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while command(port, "GET /_qg/v1/healthz HTTP/1.0\r\n").is_none() {
            assert!(
                Instant::now() < deadline,
                "nginx on {port} did not start: {}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What nginx logged (warnings and errors): a broken upstream connection shows here.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}
