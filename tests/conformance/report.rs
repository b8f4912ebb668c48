//! The after-sale report: what the scheduler saw, minute by minute, as JSON and as CSV.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_error, futures_join, paused_room};
use crate::support::{Reply, Target};

async fn report(t: &Target, room: &str) -> Reply {
    t.send(t.admin(Method::GET, &format!("/rooms/{room}/report")))
        .await
}

/// Polls the report until `check` passes on it, or panics after `within`.
async fn wait_for_report(
    t: &Target,
    room: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let reply = report(t, room).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        if check(&reply.json) {
            return reply.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the report of {room} did not come to the expected state: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn the_report_counts_each_minute(t: &Target) {
    let room = paused_room(
        t,
        "report",
        // Nobody abandons: where the test moves the clock on, the waiting do not ask meanwhile.
        json!({"max_active": 100, "admit_per_minute": 6000, "shards": 2, "abandon_after_s": 0}),
    )
    .await;
    let settle = Duration::from_secs(20).max(t.tick * 20);
    // The scheduler's first look at the room only says where its totals start: what happens
    // from then on is counted.
    wait_for_report(t, &room, settle, |r| {
        r["minutes"].as_array().is_some_and(|m| !m.is_empty())
    })
    .await;

    let tickets = futures_join(t, &room, 6).await;
    let reply = t.leave(&room, &tickets[2]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let before = wait_for_report(t, &room, settle, |r| {
        r["totals"]["joins"] == 6 && r["totals"]["leaves"] == 1
    })
    .await;
    // A tick may have seen all six before one left.
    let peak = before["totals"]["peak_waiting"].as_u64();
    assert!(matches!(peak, Some(5 | 6)), "{before}");
    assert_eq!(before["room"], room.as_str());
    assert_eq!(before["totals"]["admissions"], 0, "{before}");

    // Where the test holds the clock, the five wait two minutes before they are let in.
    let held = t.clock.is_some();
    if held {
        t.advance(Duration::from_secs(120)).await;
    }
    t.resume(&room).await;
    let after = wait_for_report(t, &room, settle, |r| {
        r["totals"]["admissions"] == 5 && r["totals"]["waits_measured"] == 5
    })
    .await;
    let totals = &after["totals"];
    assert_eq!(
        (&totals["joins"], &totals["leaves"], &totals["abandonments"]),
        (&json!(6), &json!(1), &json!(0)),
        "{after}"
    );
    let minutes = after["minutes"].as_array().expect("minutes");
    let mut last = 0;
    for minute in minutes {
        let at = minute["minute_ms"].as_u64().expect("minute_ms");
        assert!(
            at % 60_000 == 0 && at > last,
            "one row a minute, in order: {after}"
        );
        last = at;
    }
    let measured: Vec<&Value> = minutes
        .iter()
        .filter(|m| m["waits_measured"].as_u64() > Some(0))
        .collect();
    assert!(!measured.is_empty(), "{after}");
    for minute in measured {
        let (p50, p99) = (
            minute["wait_p50_s"].as_f64().expect("a median"),
            minute["wait_p99_s"].as_f64().expect("a 99th percentile"),
        );
        assert!(p50 <= p99, "{minute}");
        if held {
            assert!(
                (120.0..=140.0).contains(&p50),
                "two minutes in the queue: {minute}"
            );
        } else {
            assert!(p99 < settle.as_secs_f64() * 3.0, "{minute}");
        }
    }

    // The same minutes as CSV: a header, then a line a minute.
    let csv = t
        .send(
            t.admin(Method::GET, &format!("/rooms/{room}/report"))
                .header("accept", "text/csv"),
        )
        .await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert!(
        csv.header("content-type")
            .is_some_and(|v| v.starts_with("text/csv")),
        "{:?}",
        csv.headers
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("minute_utc,minute_ms,joins,admissions,leaves,abandonments"));
    assert!(lines.len() > minutes.len(), "{}", csv.text);
    let joins: u64 = lines[1..]
        .iter()
        .map(|line| line.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(joins >= 6, "{}", csv.text);

    // Only the minutes from a time on; a time that is not one is refused.
    let since = last;
    let recent = t
        .send(t.admin(
            Method::GET,
            &format!("/rooms/{room}/report?since_ms={since}"),
        ))
        .await;
    assert_eq!(recent.status, 200, "{}", recent.text);
    let recent = recent.json["minutes"].as_array().expect("minutes").clone();
    assert!(!recent.is_empty(), "the last minute is kept");
    assert!(recent
        .iter()
        .all(|m| m["minute_ms"].as_u64() >= Some(since)));
    let bad = t
        .send(t.admin(
            Method::GET,
            &format!("/rooms/{room}/report?since_ms=yesterday"),
        ))
        .await;
    assert_error(
        &bad,
        400,
        "invalid_request",
        "a since_ms that is not a time",
    );

    let missing = report(t, "no-such-room").await;
    assert_error(
        &missing,
        404,
        "unknown_room",
        "the report of a room that is not there",
    );
    let anonymous = t
        .send(t.client.get(t.api(&format!("/admin/rooms/{room}/report"))))
        .await;
    assert_error(
        &anonymous,
        401,
        "unauthorized",
        "a report without the admin key",
    );
}
