//! The admin API and the scheduler: keys, rooms, the configured rate.

use super::*;

pub async fn rooms_are_created_read_and_updated(t: &Target) {
    let room = unique("crud");
    let config = json!({
        "paths": [format!("/{room}"), format!("/{room}-b/")],
        "max_active": 7, "admit_per_minute": 90, "session_ttl_s": 300,
        "claim_window_s": 45, "mode": "fifo", "shards": 3
    });
    let created = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{room}"))
                .json(&config),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let view = t.room(&room).await;
    for (key, value) in config.as_object().unwrap() {
        assert_eq!(&view[key], value, "{key}");
    }
    assert_eq!(view["id"], room.as_str());
    assert_eq!(view["paused"], false);
    for key in ["waiting", "admitted", "active", "admitted_total"] {
        assert!(view["stats"][key].is_u64(), "stats.{key} in {view}");
    }
    let mut updated = config.clone();
    updated["max_active"] = json!(9);
    let reply = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{room}"))
                .json(&updated),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(t.room(&room).await["max_active"], 9);

    // The shard count is fixed for life.
    updated["shards"] = json!(5);
    let reply = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{room}"))
                .json(&updated),
        )
        .await;
    assert_error(&reply, 409, "conflict", "shards change");

    // Pause and resume show in the view.
    t.pause(&room).await;
    assert_eq!(t.room(&room).await["paused"], true);
    t.resume(&room).await;
    assert_eq!(t.room(&room).await["paused"], false);

    let list = t.send(t.admin(Method::GET, "/rooms")).await;
    assert_eq!(list.status, 200);
    assert!(list.json["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == room.as_str()));
}

pub async fn the_scheduler_admits_at_the_configured_rate(t: &Target) {
    let room = paused_room(
        t,
        "rate",
        json!({"max_active": 1000, "admit_per_minute": 600, "shards": 2}),
    )
    .await;
    futures_join(t, &room, 40).await;
    t.resume(&room).await;
    // 600 a minute is 10 a second; the bucket starts with two ticks' worth.
    let view = t
        .wait_for_room(&room, Duration::from_secs(20), |v| {
            v["stats"]["admitted_total"].as_u64().unwrap() >= 30
        })
        .await;
    assert!(view["stats"]["waiting"].as_u64().unwrap() <= 10, "{view}");
    // The estimate given to a visitor who joins now follows the rate measured while people
    // waited (never above the configured one): on a slow server it is slower, and says so.
    let measured = |view: &serde_json::Value| {
        view["stats"]["admit_rate_per_min"]
            .as_f64()
            .map_or(600.0, |r| r.min(600.0))
    };
    let before = measured(&t.room(&room).await);
    let late = t.join(&room, None).await;
    let after = measured(&t.room(&room).await);
    let position = late.json["position"].as_u64().unwrap();
    let eta = late.json["eta_seconds"].as_u64().unwrap();
    let eta_at = |rate: f64| (position as f64 * 60.0 / rate).ceil() as u64;
    let (low, high) = (eta_at(before.max(after)), eta_at(before.min(after)));
    assert!(
        eta + 1 >= low && eta <= high + 1,
        "eta {eta} for position {position}, at {before:.0}-{after:.0} a minute: {low}-{high}"
    );
}
