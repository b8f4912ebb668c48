//! Several origin instances behind a load balancer act as one: nginx (the README's
//! configuration, round robin, no stickiness) in front of three instances on a Redis Cluster of
//! three masters with a replica each, every request of a visitor landing on whichever instance
//! nginx picks.

mod conformance;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use queuegate_origin::config::StoreConfig;
use serde_json::json;
use support::nginx::{Nginx, PROXY_ADDR};
use support::process::OriginProcess;
use support::redis::{command, RedisCluster};
use support::{Embedded, Target};

/// Three instances on the cluster, trusting nginx's address, and nginx in front of them.
struct Balanced {
    instances: Vec<Embedded>,
    nginx: Nginx,
    /// The target as a visitor reaches it: through nginx.
    target: Target,
}

impl Balanced {
    async fn start(cluster: &RedisCluster) -> Balanced {
        let store = StoreConfig::RedisCluster {
            urls: cluster.urls(),
            timeout_ms: None,
            replicas: None,
        };
        let trusted = format!("{PROXY_ADDR}/32");
        let mut instances = Vec::new();
        for _ in 0..3 {
            instances.push(support::origin_behind(&store, &[trusted.as_str()]).await);
        }
        let ports: Vec<u16> = instances.iter().map(|i| port_of(&i.target)).collect();
        let nginx = Nginx::start(&ports);
        let one = &instances[0].target;
        let target = Target {
            base: nginx.url(),
            admin_key: one.admin_key.clone(),
            keys: one.keys.clone(),
            client: one.client.clone(),
            tick: one.tick,
            clock: None,
            behind_runtime_front: false,
            behind_nginx: true,
        };
        Balanced {
            instances,
            nginx,
            target,
        }
    }

    async fn stop(self) {
        for instance in self.instances {
            instance.stop().await;
        }
    }
}

fn port_of(t: &Target) -> u16 {
    t.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// The whole conformance suite through nginx: each request of a case may land on any of the
/// three instances, and every case passes as it does against one instance. (This is also the
/// suite's run on a Redis Cluster.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_behind_a_load_balancer() {
    let cluster = RedisCluster::start_with_replicas();
    let balanced = Balanced::start(&cluster).await;
    a_revocation_reaches_every_gate_at_once(&balanced).await;
    conformance::run_all(&balanced.target).await;
    // The rooms' shards spread over the cluster: every master holds keys.
    let keys = cluster.keys_per_node();
    assert!(keys.iter().all(|&n| n > 0), "keys per master: {keys:?}");
    // No instance broke a connection nginx was sending on, closed one before answering, or was
    // taken out of rotation. (The stalling upstream's answer, cut by the instance on purpose,
    // shows as closed "while reading upstream": that is the body, after the answer began.)
    let log = balanced.nginx.error_log();
    for broken in [
        "while sending request to upstream",
        "while reading response header from upstream",
        "broken pipe",
        "no live upstreams",
    ] {
        assert!(!log.contains(broken), "nginx: {broken}: {log}");
    }
    balanced.stop().await;
}

/// A pass every instance has just let through (so each holds the session in its cache) is
/// refused by every instance in the very next request once it is revoked through one, and the
/// same for a leave.
async fn a_revocation_reaches_every_gate_at_once(balanced: &Balanced) {
    let first = &balanced.instances[0].target;
    for how in ["revoke", "leave"] {
        // A room each: a page refused its pass takes a place in the line.
        let room = &format!("{how}-everywhere");
        first
            .put_room(
                room,
                json!({"max_active": 5, "paths": [format!("/{room}")]}),
            )
            .await;
        first.pause(room).await;
        let joined = first.join(room, None).await;
        let ticket = joined.json["ticket"].as_str().unwrap().to_owned();
        let id = joined.json["ticket_id"].as_str().unwrap().to_owned();
        assert_eq!(first.admit(room, 1).await, 1, "{how}");
        let status = first.status(room, &ticket).await;
        let pass = status.json["pass"]
            .as_str()
            .unwrap_or_else(|| panic!("{how}: a pass: {}", status.text))
            .to_owned();
        let cookies = [(format!("qg_pass_{room}"), pass.clone())];
        for instance in &balanced.instances {
            let page = instance
                .target
                .page(&format!("/{room}/x"), &cookies, true)
                .await;
            assert_eq!(
                page.header("x-upstream"),
                Some("yes"),
                "{how}: {}",
                page.text
            );
        }
        let ended = match how {
            "revoke" => {
                let req = first
                    .admin(reqwest::Method::POST, &format!("/rooms/{room}/revoke"))
                    .json(&json!({ "ticket_id": id }));
                first.send(req).await
            }
            _ => first.leave(room, &pass).await,
        };
        assert_eq!(ended.status, 200, "{how}: {}", ended.text);
        for (i, instance) in balanced.instances.iter().enumerate() {
            let page = instance
                .target
                .page(&format!("/{room}/x"), &cookies, true)
                .await;
            assert!(
                page.header("x-upstream").is_none(),
                "{how}: instance {i} let the pass through: {}",
                page.text
            );
        }
    }
}

/// The instances as separate processes (so a test can kill or freeze one) on the cluster, each
/// trusting nginx's address, and nginx in front of them.
struct BalancedProcesses {
    origins: Vec<OriginProcess>,
    nginx: Nginx,
}

impl BalancedProcesses {
    /// `instances` instances ticking every `tick_ms`.
    fn start(cluster: &RedisCluster, instances: usize, tick_ms: u64) -> BalancedProcesses {
        let urls = cluster.urls().join(",");
        let trusted = format!("{PROXY_ADDR}/32");
        let tick_ms = tick_ms.to_string();
        let args = [
            "--redis-cluster",
            urls.as_str(),
            "--tick-ms",
            tick_ms.as_str(),
            "--trusted-proxies",
            trusted.as_str(),
        ];
        let origins: Vec<OriginProcess> = (0..instances)
            .map(|_| OriginProcess::start(&args))
            .collect();
        let ports: Vec<u16> = origins.iter().map(|o| o.port).collect();
        let nginx = Nginx::start(&ports);
        BalancedProcesses { origins, nginx }
    }

    /// The instances as a visitor reaches them: through nginx.
    fn target(&self) -> Target {
        let mut target = self.origins[0].target();
        target.base = self.nginx.url();
        target.behind_nginx = true;
        target
    }
}

/// The origin (by port) that holds the admission lease, as the cluster says.
fn lease_holder(cluster: &RedisCluster) -> Option<u16> {
    let master = cluster.master_of(LEASE_HOLDER, 0);
    let reply = command(cluster.nodes[master].port, &format!("GET {LEASE_HOLDER}"))?;
    // "$<len>\r\n127.0.0.1:PORT-xxxx\r\n"
    let holder = reply.lines().nth(1)?;
    holder.split(['-', ':']).nth(1)?.parse().ok()
}

const LEASE_HOLDER: &str = "{qg:lease}:holder";

/// What one visitor was told, in order: when the request was sent and answered, and the answer.
#[derive(Debug, Clone)]
struct Told {
    sent: Instant,
    answered: Instant,
    status: String,
    position: Option<u64>,
}

/// One visitor of the crowd: polls through nginx until admitted, holds the slot a moment, and
/// leaves. Returns what it was told.
async fn visit(t: Arc<Target>, room: String, ticket: String) -> Vec<Told> {
    let mut told = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let pass = loop {
        assert!(Instant::now() < deadline, "never admitted: {told:?}");
        let sent = Instant::now();
        let req = t
            .client
            .get(t.api(&format!("/rooms/{room}/status")))
            .bearer_auth(&ticket)
            .timeout(Duration::from_secs(15));
        let Ok(reply) = t.try_send(req).await else {
            told.push(Told {
                sent,
                answered: Instant::now(),
                status: "no answer".into(),
                position: None,
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if matches!(reply.status, 502 | 503) {
            told.push(Told {
                sent,
                answered: Instant::now(),
                status: reply.status.to_string(),
                position: None,
            });
            // The store changing hands (503), or an instance killed under a request nginx had
            // sent it (502): asked again, as the waiting page does.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
        let status = reply.json["status"].as_str().unwrap_or("").to_owned();
        told.push(Told {
            sent,
            answered: Instant::now(),
            status: status.clone(),
            position: reply.json["position"].as_u64(),
        });
        match status.as_str() {
            "admitted" => break reply.json["pass"].as_str().unwrap().to_owned(),
            "waiting" => tokio::time::sleep(Duration::from_millis(300)).await,
            other => panic!("told {other}: {}", reply.text),
        }
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    loop {
        assert!(Instant::now() < deadline, "never left");
        let req = t
            .client
            .post(t.api(&format!("/rooms/{room}/leave")))
            .bearer_auth(&pass)
            .timeout(Duration::from_secs(15));
        match t.try_send(req).await {
            Ok(reply) if reply.json["status"] == "left" => break,
            // As above; nginx does not send a POST it may have delivered to another instance.
            Ok(reply) if matches!(reply.status, 502 | 503) => {}
            Err(_) => {}
            Ok(reply) => panic!("a leave: {} {}", reply.status, reply.text),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    told
}

/// A crowd through nginx in front of three instances, while one instance is killed and the
/// lease holder is frozen for longer than its lease: everyone who joined is admitted exactly
/// once, the room never holds more than `max_active`, no visitor's position ever rises, and no
/// visitor is told "waiting" after a later joiner was told "admitted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_behind_the_balancer_keeps_its_order_through_faults() {
    const WAVES: usize = 8;
    const PER_WAVE: usize = 25;
    const MAX_ACTIVE: u64 = 20;
    let cluster = RedisCluster::start_with_replicas();
    // The default tick (1 s): an instance's mirror is up to a second behind Redis between
    // ticks, which is what the order checks below would catch.
    let mut balanced = BalancedProcesses::start(&cluster, 3, 1000);
    let t = Arc::new(balanced.target());
    let room = "crowd".to_owned();
    t.put_room(
        &room,
        json!({"max_active": MAX_ACTIVE, "admit_per_minute": 6000, "shards": 3,
               "claim_window_s": 600, "session_ttl_s": 600, "paths": ["/crowd"]}),
    )
    .await;
    t.pause(&room).await;
    // Waves one after another: everyone in a wave joined after everyone in the waves before.
    let mut tickets: Vec<(usize, String)> = Vec::new();
    for wave in 0..WAVES {
        let joins = (0..PER_WAVE).map(|_| t.join(&room, None));
        for reply in futures::future::join_all(joins).await {
            assert_eq!(reply.status, 200, "{}", reply.text);
            tickets.push((wave, reply.json["ticket"].as_str().unwrap().to_owned()));
            // Whichever instance answered, the join counts everyone of the waves before (all
            // answered before it was sent, through any instance); of its own wave, those whose
            // joins had landed (in flight at the same moment, a join can land after this
            // answer: the polls, below, never show a position rise from then on).
            let position = reply.json["position"].as_u64().expect("a position");
            let before = (wave * PER_WAVE) as u64;
            assert!(
                (before + 1..=before + PER_WAVE as u64).contains(&position),
                "wave {wave} joined at position {position}: {}",
                reply.text
            );
        }
    }
    let crowd = tickets.len() as u64;

    // The room's load, watched through nginx, and the faults.
    let stop = Arc::new(AtomicBool::new(false));
    let most_held = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (t, stop, most_held) = (t.clone(), stop.clone(), most_held.clone());
        let room = room.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let req = t
                    .admin(reqwest::Method::GET, &format!("/rooms/{room}"))
                    .timeout(Duration::from_secs(5));
                if let Ok(reply) = t.try_send(req).await {
                    let s = &reply.json["stats"];
                    if let (Some(a), Some(b), Some(c)) = (
                        s["active"].as_u64(),
                        s["admitted"].as_u64(),
                        s["entry_credit"].as_u64(),
                    ) {
                        most_held.fetch_max(a + b + c, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    t.resume(&room).await;
    let started = Instant::now();
    let mut faults = Vec::new();
    let visitors: Vec<_> = tickets
        .iter()
        .map(|(_, ticket)| tokio::spawn(visit(t.clone(), room.clone(), ticket.clone())))
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // One instance dies (nginx sends its share elsewhere)...
    let holder = lease_holder(&cluster).expect("a lease holder");
    let victim = balanced
        .origins
        .iter()
        .position(|o| o.port != holder)
        .unwrap();
    balanced.origins[victim].kill();
    faults.push(("kill", started.elapsed().as_millis()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ... and the lease holder freezes for longer than its lease (three ticks): another takes
    // over.
    let holder = lease_holder(&cluster).expect("a lease holder");
    let frozen = balanced
        .origins
        .iter()
        .position(|o| o.port == holder)
        .unwrap();
    balanced.origins[frozen].signal("STOP");
    faults.push(("stop", started.elapsed().as_millis()));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_ne!(
        lease_holder(&cluster),
        Some(holder),
        "nobody took the lease over"
    );
    balanced.origins[frozen].signal("CONT");
    faults.push(("cont", started.elapsed().as_millis()));

    let mut told = Vec::new();
    for visitor in visitors {
        told.push(visitor.await.expect("a visitor"));
    }
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();

    // What the faults cost the visitors: polls answered 502 (nginx, an instance killed under
    // the request) or 503 (the store changing hands), and the longest a poll waited.
    let mut by_status = std::collections::BTreeMap::<&str, usize>::new();
    let mut longest = Duration::ZERO;
    for a in told.iter().flatten() {
        *by_status.entry(a.status.as_str()).or_default() += 1;
        longest = longest.max(a.answered - a.sent);
    }
    eprintln!("polls by answer: {by_status:?}; the longest took {longest:?}");
    let view = t.room(&room).await;
    assert_eq!(
        view["stats"]["admitted_total"].as_u64(),
        Some(crowd),
        "each visitor admitted once: {view}"
    );
    let most = most_held.load(Ordering::SeqCst);
    assert!(most <= MAX_ACTIVE, "the room held {most} of {MAX_ACTIVE}");
    for answers in &told {
        let positions: Vec<u64> = answers.iter().filter_map(|a| a.position).collect();
        let timeline: Vec<_> = answers
            .iter()
            .map(|a| {
                (
                    (a.sent - started).as_millis(),
                    (a.answered - started).as_millis(),
                    a.position,
                )
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[1] <= w[0]),
            "a position rose: {timeline:?} (faults at {faults:?} ms)"
        );
    }
    // For each wave, the last time one of it was told "waiting" (the request's sending), and
    // the first time one of it was told "admitted" (the answer's arrival).
    let mut last_waiting = [None::<Instant>; WAVES];
    let mut first_admitted = [None::<Instant>; WAVES];
    for ((wave, _), answers) in tickets.iter().zip(&told) {
        for a in answers {
            if a.status == "waiting" {
                last_waiting[*wave] = last_waiting[*wave].max(Some(a.sent));
            } else if a.status == "admitted" {
                let first = &mut first_admitted[*wave];
                *first = Some(first.map_or(a.answered, |f| f.min(a.answered)));
            }
        }
    }
    for (earlier, waiting) in last_waiting.iter().enumerate() {
        for (later, admitted) in first_admitted.iter().enumerate().skip(earlier + 1) {
            if let (Some(waiting), Some(admitted)) = (*waiting, *admitted) {
                assert!(
                    waiting < admitted,
                    "wave {earlier} was told waiting {:?} after wave {later} was told admitted",
                    waiting - admitted
                );
            }
        }
    }
}

/// A join that reached a frozen instance through nginx, which gave up on it, changes nothing
/// when the instance wakes: the visitor, who joined again through another instance, holds one
/// place.
///
/// Then what `X-Request-Start` adds, shown on a connection from nginx's address kept open
/// across the freeze (nginx itself closes its connection when it gives up, and the instance
/// then drops the request unread): a join the proxy received before the freeze is refused
/// when the instance gets to it past the deadline (503, no place), where the same join without
/// the header makes a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_left_at_a_frozen_instance_changes_nothing() {
    let cluster = RedisCluster::start();
    let balanced = BalancedProcesses::start(&cluster, 2, 100);
    let (frozen, awake) = (&balanced.origins[0], balanced.origins[1].target());
    // nginx in front of the instance about to freeze alone, giving up on it after a second (the
    // README's 10 s, shortened to keep the test short).
    let nginx = Nginx::start_with(&[frozen.port], |conf| {
        conf.replace("proxy_read_timeout 10s;", "proxy_read_timeout 1s;")
    });
    let room = "frozen";
    awake
        .put_room(room, json!({"max_active": 5, "paths": ["/frozen"]}))
        .await;
    awake.pause(room).await;
    frozen.signal("STOP");
    let stale = awake
        .client
        .post(format!("{}/_qg/v1/rooms/{room}/join", nginx.url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        stale.as_ref().is_ok_and(|r| r.status() == 504),
        "nginx gave up on the frozen instance: {stale:?}"
    );
    // The visitor joins again, elsewhere; the frozen instance wakes past the deadline.
    let again = awake.join(room, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    frozen.signal("CONT");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = awake.room(room).await["stats"]["waiting"].as_u64();
    assert_eq!(waiting, Some(1), "one place for the visitor");

    for (header, status, places) in [(true, 503, 1), (false, 200, 2)] {
        let sent_at = queuegate_origin::clock::system_now();
        let start = match header {
            true => format!(
                "X-Request-Start: t={}.{:03}\r\n",
                sent_at / 1000,
                sent_at % 1000
            ),
            false => String::new(),
        };
        let head = format!(
            "POST /_qg/v1/rooms/{room}/join HTTP/1.1\r\nHost: gate.example\r\n\
             X-Forwarded-For: 127.0.0.1\r\n{start}Content-Length: 0\r\n\r\n"
        );
        frozen.signal("STOP");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("{PROXY_ADDR}:0").parse().unwrap())
            .unwrap();
        let mut conn = socket
            .connect(format!("127.0.0.1:{}", frozen.port).parse().unwrap())
            .await
            .expect("the kernel takes the connection of a frozen process");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        conn.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3500)).await;
        frozen.signal("CONT");
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "header {header}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waiting = awake.room(room).await["stats"]["waiting"].as_u64();
        assert_eq!(waiting, Some(places), "header {header}");
    }
}

/// What the crowd of the failover test was told: the joins and leaves acknowledged, and when
/// a request failed.
#[derive(Default)]
struct Acknowledged {
    joined: Vec<String>,
    left: Vec<String>,
    /// Leaves answered with an error: done or not (a write can stand that its replica never
    /// acknowledged, on a master that lives on).
    unsure: Vec<String>,
    failed_joins: u64,
    failures: Vec<Instant>,
}

/// Visitors join through nginx, one after another, and every third leaves at once, until
/// `stop`; what was acknowledged goes into `acked`.
async fn join_and_leave(
    t: Arc<Target>,
    room: String,
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::Mutex<Acknowledged>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let req = t
            .client
            .post(t.api(&format!("/rooms/{room}/join")))
            .timeout(Duration::from_secs(5));
        let ticket = match t.try_send(req).await {
            Ok(reply) if reply.status == 200 => reply.json["ticket"].as_str().unwrap().to_owned(),
            Ok(reply) if matches!(reply.status, 502..=504) => {
                let mut acked = acked.lock().unwrap();
                acked.failed_joins += 1;
                acked.failures.push(Instant::now());
                continue;
            }
            Ok(reply) => panic!("a join: {} {}", reply.status, reply.text),
            Err(_) => continue,
        };
        acked.lock().unwrap().joined.push(ticket.clone());
        if n % 3 == 0 {
            let req = t
                .client
                .post(t.api(&format!("/rooms/{room}/leave")))
                .bearer_auth(&ticket)
                .timeout(Duration::from_secs(5));
            match t.try_send(req).await {
                Ok(reply) if reply.json["status"] == "left" => {
                    acked.lock().unwrap().left.push(ticket)
                }
                Ok(reply) if matches!(reply.status, 502..=504) => {
                    let mut acked = acked.lock().unwrap();
                    acked.failures.push(Instant::now());
                    acked.unsure.push(ticket);
                }
                Ok(reply) => panic!("a leave: {} {}", reply.status, reply.text),
                Err(_) => {}
            }
        }
    }
}

/// A Redis master dies while a crowd joins and leaves through nginx, at the worst moment: its
/// replica has stopped taking the replication stream (stopped, its link cut), so what the
/// master acknowledges from then on exists on the master alone; the replica then takes over.
/// Joins and leaves wait for the replicas (`WAIT`) before they are acknowledged, so every join
/// a visitor was answered still holds its place after the failover and every acknowledged
/// leave stays left; what fails meanwhile fails with a 503 (the window is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_behind_the_balancer_loses_nothing_acknowledged() {
    let mut cluster = RedisCluster::start_with_replicas();
    let balanced = BalancedProcesses::start(&cluster, 3, 200);
    let t = Arc::new(balanced.target());
    let room = "failover".to_owned();
    t.put_room(
        &room,
        json!({"max_active": 5, "shards": 6, "claim_window_s": 600, "session_ttl_s": 600,
               "paths": ["/failover"]}),
    )
    .await;
    // Paused: everyone acknowledged stays waiting, so each place can be checked afterwards.
    t.pause(&room).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Acknowledged::default()));
    let crowd: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(join_and_leave(
                t.clone(),
                room.clone(),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The master with the most keys holds shards of the room.
    let keys = cluster.keys_per_node();
    let master = (0..cluster.nodes.len())
        .filter(|&i| cluster.is_master(i))
        .max_by_key(|&i| keys[i])
        .unwrap();
    let replica = cluster.replica_of(master).expect("a replica");
    let (master_port, replica_port) = (cluster.nodes[master].port, cluster.nodes[replica].port);
    let fault = Instant::now();
    cluster.nodes[replica].signal("STOP");
    command(master_port, "CLIENT KILL TYPE replica");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes[master].kill();
    cluster.nodes[replica].signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.is_master(replica) {
        command(replica_port, "CLUSTER FAILOVER TAKEOVER");
        assert!(Instant::now() < deadline, "the replica was not promoted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != master).collect();
    cluster.wait_ok(&live, Duration::from_secs(20));
    let promoted = fault.elapsed();
    // The crowd goes on until joins succeed again for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for visitor in crowd {
        visitor.await.unwrap();
    }

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let failures: Vec<u128> = acked
        .failures
        .iter()
        .filter(|&&at| at >= fault)
        .map(|&at| (at - fault).as_millis())
        .collect();
    eprintln!(
        "{} joins and {} leaves acknowledged; {} joins and {} leaves failed; the replica was promoted {} ms \
         after the fault; failures from {:?} to {:?} ms after it",
        acked.joined.len(),
        acked.left.len(),
        acked.failed_joins,
        acked.unsure.len(),
        promoted.as_millis(),
        failures.first(),
        failures.last()
    );
    assert!(acked.joined.len() > 30, "the crowd joined");
    let left: std::collections::HashSet<&String> = acked.left.iter().collect();
    let unsure: std::collections::HashSet<&String> = acked.unsure.iter().collect();
    let mut lost = Vec::new();
    for ticket in &acked.joined {
        let expected: &[&str] = if left.contains(ticket) {
            &["left"]
        } else if unsure.contains(ticket) {
            &["left", "waiting"]
        } else {
            &["waiting"]
        };
        let reply = t.status(&room, ticket).await;
        if !expected.iter().any(|&e| reply.json["status"] == e) {
            lost.push((expected, reply.text));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged joins and leaves lost: {lost:?}",
        lost.len(),
        acked.joined.len()
    );
    // Joins written but not acknowledged (their replicas never had them) may hold places too,
    // unless their master died with them: never more than the failed joins.
    let still = (acked.joined.len() - acked.left.len()) as u64;
    let unsure = acked.unsure.len() as u64;
    let waiting = t.room(&room).await["stats"]["waiting"].as_u64().unwrap();
    assert!(
        (still - unsure..=still + acked.failed_joins).contains(&waiting),
        "{waiting} waiting, {still} acknowledged"
    );
}
