//! Real Redis servers for the tests: one node, or a cluster of three masters (with or without a
//! replica each), each on a free loopback port with its own directory, stopped when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "queuegate-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Sends one inline command and returns the raw reply (enough for PING and CLUSTER INFO).
pub fn command(port: u16, cmd: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> RedisServer {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A server with an append-only file fsynced every second (Redis's usual durable setting).
    pub fn start_durable() -> RedisServer {
        Self::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ])
    }

    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            port,
            dir: scratch_dir("redis"),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", self.dir.to_str().expect("utf-8 path")])
            .args([
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if command(self.port, "PING").is_some_and(|r| r.starts_with("+PONG")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (STOP, CONT) to the server.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
        }
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (so with the same append-only file).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn info(&self, section: &str) -> String {
        command(self.port, &format!("INFO {section}")).unwrap_or_default()
    }

    /// `used_memory` from INFO memory.
    pub fn used_memory(&self) -> u64 {
        self.info("memory")
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of CLUSTER NODES.
struct NodeLine {
    index: usize,
    id: String,
    flags: String,
    master: Option<String>,
    slots: Vec<(u16, u16)>,
}

/// A Redis Cluster of three masters on loopback, with or without a replica each.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters, no replicas.
    pub fn start() -> RedisCluster {
        Self::start_nodes(3, 0, 2000)
    }

    /// Three masters with one replica each, and a node timeout short enough that a failover
    /// takes a second or two.
    pub fn start_with_replicas() -> RedisCluster {
        Self::start_nodes(6, 1, 1000)
    }

    fn start_nodes(count: usize, replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes };
        let all: Vec<usize> = (0..count).collect();
        cluster.wait_ok(&all, Duration::from_secs(30));
        // Replicas that have not synced yet would acknowledge nothing.
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &cluster.nodes {
            loop {
                let info = node.info("replication");
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(Instant::now() < deadline, "a replica did not sync: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// Waits until every node in `live` says the cluster is ok.
    pub fn wait_ok(&self, live: &[usize], within: Duration) {
        let deadline = Instant::now() + within;
        for &i in live {
            loop {
                let info = command(self.nodes[i].port, "CLUSTER INFO").unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster is not ok on node {i}: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port == port)
    }

    /// CLUSTER NODES as node `live` sees it.
    fn topology(&self, live: usize) -> Vec<NodeLine> {
        let reply = command(self.nodes[live].port, "CLUSTER NODES").unwrap_or_default();
        reply
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 8 {
                    return None;
                }
                let address = fields[1].split(['@', ',']).next()?;
                let port: u16 = address.rsplit(':').next()?.parse().ok()?;
                let slots = fields[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|n| (n, n)),
                    })
                    .collect();
                Some(NodeLine {
                    index: self.index_of_port(port)?,
                    id: fields[0].to_owned(),
                    flags: fields[2].to_owned(),
                    master: (fields[3] != "-").then(|| fields[3].to_owned()),
                    slots,
                })
            })
            .collect()
    }

    /// The node that serves `key`'s slot, as node `live` sees the cluster.
    pub fn master_of(&self, key: &str, live: usize) -> usize {
        let slot: u16 = command(self.nodes[live].port, &format!("CLUSTER KEYSLOT {key}"))
            .and_then(|r| r.trim().trim_start_matches(':').parse().ok())
            .expect("CLUSTER KEYSLOT answers");
        self.topology(live)
            .into_iter()
            .find(|n| {
                n.flags.contains("master") && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .map(|n| n.index)
            .expect("a master serves every slot")
    }

    /// The replica of the master at `master`, as that master sees the cluster.
    pub fn replica_of(&self, master: usize) -> Option<usize> {
        let topology = self.topology(master);
        let id = &topology.iter().find(|n| n.index == master)?.id;
        topology
            .iter()
            .find(|n| n.master.as_ref() == Some(id))
            .map(|n| n.index)
    }

    /// Whether node `index` says of itself that it is a master.
    pub fn is_master(&self, index: usize) -> bool {
        self.topology(index)
            .iter()
            .any(|n| n.index == index && n.flags.contains("myself,master"))
    }

    /// The total number of keys each master holds.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                command(n.port, "DBSIZE")
                    .and_then(|r| r.trim().trim_start_matches(':').parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }
}
