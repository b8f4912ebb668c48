//! Scheduled events: a sale that opens at a set time.
//!
//! An event has a pre-queue, `[prequeue_at, start_at)`, and a run, `[start_at, end_at)`. In the
//! pre-queue visitors join and keep their places, in join order, but nobody is admitted however
//! much capacity is free, and a waiting visitor is told when the sale opens (`opens_at`) rather
//! than a position. While it runs, its overrides of `max_active`, `admit_per_minute` and `mode`
//! apply. At `end_at` the room returns to its own settings. Events of one room never overlap, so
//! at most one is in effect at any moment; what it makes of the room is
//! [`crate::RoomRecord::in_effect`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::room::{check_range, Mode, RoomConfig, MAX_ACTIVE_LIMIT, MAX_ADMIT_PER_MINUTE};

/// The most events a room keeps (ended ones count until deleted).
pub const MAX_EVENTS: usize = 32;
/// The longest event id.
pub const MAX_EVENT_ID_LEN: usize = 64;
/// The scheduler opens no slot for direct entry this long before a pre-queue: a slot it opens
/// lasts until its next tick, which could fall inside the pre-queue and let an early clicker in
/// before the sale.
pub const ENTRY_LEAD_MS: u64 = 5_000;
/// A shuffled pre-queue lasts at least this long: the shuffle gives each place a stamp in its
/// microseconds, which must outnumber a shard's places.
const MIN_SHUFFLED_PREQUEUE_MS: u64 = 1_000;
/// Event times are Unix milliseconds before this (the year 9999): a bound, not a calendar.
const MAX_TIME_MS: u64 = 253_402_300_799_000;

/// A scheduled event, as `PUT /_qg/v1/admin/rooms/{room}/events/{event}` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct Event {
    /// When the pre-queue opens (Unix ms).
    pub prequeue_at: u64,
    /// When the sale opens and admission begins.
    pub start_at: u64,
    /// When the room returns to its own settings.
    pub end_at: u64,
    /// Whether the pre-queue takes a random order at the start ([`crate::shuffle`]).
    #[serde(default)]
    pub shuffle: bool,
    /// A shuffled event's secret seed (hex), drawn by the server when the event is created and
    /// shown from `start_at` on ([`Event::redacted`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// SHA-256 of the seed (hex), shown from the event's creation: the seed published at the
    /// opening can be checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admit_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// Where an event stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub enum EventState {
    Scheduled,
    Prequeue,
    Running,
    Ended,
}

/// A room's events, by id.
pub type Events = BTreeMap<String, Event>;

impl Event {
    /// Reads and checks an event; `now` refuses one that has already ended.
    pub fn from_json(body: &[u8], now: u64) -> Result<Event, ApiError> {
        let invalid = |msg: String| ApiError::new(ErrorCode::InvalidConfig, msg);
        let mut de = serde_json::Deserializer::from_slice(body);
        let event: Event = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::new(ErrorCode::InvalidJson, inner.to_string())
            } else {
                invalid(format!("{field}: {inner}"))
            }
        })?;
        de.end()
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))?;
        event.validate(now)?;
        Ok(event)
    }

    fn validate(&self, now: u64) -> Result<(), ApiError> {
        let invalid = |msg: &str| Err(ApiError::new(ErrorCode::InvalidConfig, msg));
        if self.end_at >= MAX_TIME_MS {
            return invalid("end_at: Unix milliseconds before the year 9999");
        }
        if self.prequeue_at > self.start_at {
            return invalid("prequeue_at: at or before start_at");
        }
        if self.start_at >= self.end_at {
            return invalid("end_at: after start_at");
        }
        if self.end_at <= now {
            return invalid("end_at: in the future (the event would be over)");
        }
        if self.seed.is_some() || self.seed_sha256.is_some() {
            return invalid("seed: the server draws a shuffled event's seed");
        }
        if self.shuffle && self.start_at - self.prequeue_at < MIN_SHUFFLED_PREQUEUE_MS {
            return invalid("start_at: a shuffled pre-queue lasts at least a second");
        }
        if let Some(max) = self.max_active {
            check_range("max_active", max, 1, MAX_ACTIVE_LIMIT)?;
        }
        if let Some(rate) = self.admit_per_minute {
            check_range("admit_per_minute", rate, 1, MAX_ADMIT_PER_MINUTE)?;
        }
        Ok(())
    }

    pub fn state(&self, now: u64) -> EventState {
        if now < self.prequeue_at {
            EventState::Scheduled
        } else if now < self.start_at {
            EventState::Prequeue
        } else if now < self.end_at {
            EventState::Running
        } else {
            EventState::Ended
        }
    }

    /// The event as the API shows it at `now`: the seed hidden before `start_at`.
    pub fn redacted(&self, now: u64) -> Event {
        let mut shown = self.clone();
        if now < self.start_at {
            shown.seed = None;
        }
        shown
    }

    /// This event, new or replacing `previous`, with its seed: a shuffled event keeps the seed
    /// it was given when created (its hash is published); a new one draws one with `draw`.
    pub fn with_seed(mut self, previous: Option<&Event>, draw: impl FnOnce() -> [u8; 32]) -> Event {
        let kept = previous.and_then(|p| Some((p.seed.clone()?, p.seed_sha256.clone()?)));
        if !self.shuffle {
            (self.seed, self.seed_sha256) = (None, None);
        } else if let Some((seed, hash)) = kept {
            (self.seed, self.seed_sha256) = (Some(seed), Some(hash));
        } else {
            let seed = draw();
            self.seed_sha256 = Some(crate::shuffle::seed_sha256(&seed));
            self.seed = Some(crate::shuffle::hex(&seed));
        }
        self
    }

    fn overlaps(&self, other: &Event) -> bool {
        self.prequeue_at < other.end_at && other.prequeue_at < self.end_at
    }
}

/// Checks an event id: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, as room ids.
pub fn check_event_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_EVENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("event id {id:?}: 1 to {MAX_EVENT_ID_LEN} characters of a-z, 0-9, - and _"),
        ))
    }
}

/// `events` with `event` put under `id`: refused with 409 `conflict` when it overlaps another
/// event of the room, or changes the pre-queue or the shuffle of an event whose pre-queue has
/// opened by `now`, and 422 past [`MAX_EVENTS`]. Returns the new set and whether the id is new.
pub fn put(events: &Events, id: &str, event: Event, now: u64) -> Result<(Events, bool), ApiError> {
    if let Some(old) = events.get(id) {
        let moved = (old.prequeue_at, old.start_at, old.shuffle)
            != (event.prequeue_at, event.start_at, event.shuffle);
        if moved && old.state(now) != EventState::Scheduled {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the event's pre-queue has opened: its prequeue_at, start_at and shuffle stay",
            ));
        }
    }
    if let Some((other, _)) = events
        .iter()
        .find(|(other, e)| other.as_str() != id && e.overlaps(&event))
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the event overlaps event {other:?} of this room (from prequeue_at to end_at)"),
        ));
    }
    let created = !events.contains_key(id);
    if created && events.len() >= MAX_EVENTS {
        return Err(ApiError::new(
            ErrorCode::InvalidConfig,
            format!("a room keeps at most {MAX_EVENTS} events: delete ended ones first"),
        ));
    }
    let mut events = events.clone();
    events.insert(id.to_owned(), event);
    Ok((events, created))
}

/// What the event in effect at `now` makes of a room's configuration: the running event's
/// overrides applied to `config`. Returns when the sale opens while an event is in its
/// pre-queue.
pub fn apply(config: &mut RoomConfig, events: &Events, now: u64) -> Option<u64> {
    for event in events.values() {
        match event.state(now) {
            EventState::Prequeue => return Some(event.start_at),
            EventState::Running => {
                config.max_active = event.max_active.unwrap_or(config.max_active);
                config.admit_per_minute = event.admit_per_minute.unwrap_or(config.admit_per_minute);
                config.mode = event.mode.unwrap_or(config.mode);
                return None;
            }
            EventState::Scheduled | EventState::Ended => {}
        }
    }
    None
}

/// Whether the opening at `opens_at` (an event's `start_at`) shuffles its pre-queue.
pub fn opening_shuffles(events: &Events, opens_at: u64) -> bool {
    events.values().any(|e| e.shuffle && e.start_at == opens_at)
}

/// Whether a pre-queue opens within [`ENTRY_LEAD_MS`] of `now` (or is open): the scheduler then
/// admits only those already waiting, opening no slot for direct entry.
pub fn prequeue_near(events: &Events, now: u64) -> bool {
    events
        .values()
        .any(|e| e.prequeue_at <= now.saturating_add(ENTRY_LEAD_MS) && now < e.start_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn event(prequeue_at: u64, start_at: u64, end_at: u64) -> Event {
        Event {
            prequeue_at,
            start_at,
            end_at,
            shuffle: false,
            seed: None,
            seed_sha256: None,
            max_active: None,
            admit_per_minute: None,
            mode: None,
        }
    }

    #[test]
    fn reads_and_checks_an_event() {
        let body = br#"{"prequeue_at":1800000060000,"start_at":1800000120000,"end_at":1800003600000,"max_active":5,"mode":"fifo"}"#;
        let e = Event::from_json(body, NOW).unwrap();
        assert_eq!(e.max_active, Some(5));
        assert_eq!(e.mode, Some(Mode::Fifo));
        for (bad, code) in [
            (
                &br#"{"prequeue_at":3,"start_at":2,"end_at":1800003600000}"#[..],
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":2}"#,
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":3}"#,
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":1800003600000,"max_active":0}"#,
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":1800003600000,"mode":"lifo"}"#,
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":1800003600000,"shuffle":true}"#,
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":1,"start_at":2000,"end_at":1800003600000,"shuffle":true,"seed":"00"}"#,
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":1800003600000,"colour":1}"#,
                "invalid_config",
            ),
            (br#"{"prequeue_at":1,"start_at":2}"#, "invalid_config"),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":99999999999999999}"#,
                "invalid_config",
            ),
            (
                br#"{"prequeue_at":-1,"start_at":2,"end_at":1800003600000}"#,
                "invalid_config",
            ),
            (br#"{"prequeue_at":1,"#, "invalid_json"),
            (
                br#"{"prequeue_at":1,"start_at":2,"end_at":1800003600000} x"#,
                "invalid_json",
            ),
        ] {
            let err = Event::from_json(bad, NOW).unwrap_err();
            assert_eq!(err.code.as_str(), code, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn an_event_goes_through_its_states() {
        let e = event(NOW + 10, NOW + 20, NOW + 30);
        assert_eq!(e.state(NOW), EventState::Scheduled);
        assert_eq!(e.state(NOW + 10), EventState::Prequeue);
        assert_eq!(e.state(NOW + 19), EventState::Prequeue);
        assert_eq!(e.state(NOW + 20), EventState::Running);
        assert_eq!(e.state(NOW + 30), EventState::Ended);
    }

    #[test]
    fn events_of_a_room_do_not_overlap() {
        let (events, created) = put(&Events::new(), "a", event(10, 20, 30), 0).unwrap();
        assert!(created);
        // Touching is not overlapping: one ends as the next pre-queue opens.
        let (events, _) = put(&events, "b", event(30, 40, 50), 0).unwrap();
        let err = put(&events, "c", event(25, 26, 27), 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        // An event may move over its own old times.
        let (events, created) = put(&events, "a", event(15, 20, 29), 0).unwrap();
        assert!(!created);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn a_room_keeps_a_bounded_number_of_events() {
        let mut events = Events::new();
        for i in 0..MAX_EVENTS as u64 {
            events = put(
                &events,
                &format!("e{i}"),
                event(i * 10, i * 10 + 1, i * 10 + 2),
                0,
            )
            .unwrap()
            .0;
        }
        let err = put(&events, "one-more", event(10_000, 10_001, 10_002), 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidConfig);
    }

    #[test]
    fn the_event_in_effect_shapes_the_room() {
        let mut e = event(NOW + 10, NOW + 20, NOW + 30);
        e.max_active = Some(7);
        e.admit_per_minute = Some(70);
        e.mode = Some(Mode::Closed);
        let events = Events::from([("sale".to_owned(), e)]);
        let base = RoomConfig::default();
        let at = |now| {
            let mut config = base.clone();
            let opens_at = apply(&mut config, &events, now);
            (config, opens_at)
        };
        assert_eq!(at(NOW), (base.clone(), None));
        assert_eq!(at(NOW + 10), (base.clone(), Some(NOW + 20)));
        let (running, opens_at) = at(NOW + 20);
        assert_eq!(opens_at, None);
        assert_eq!(
            (running.max_active, running.admit_per_minute, running.mode),
            (7, 70, Mode::Closed)
        );
        assert_eq!(at(NOW + 30), (base, None));
    }

    #[test]
    fn direct_entry_stops_just_before_a_prequeue() {
        let events = Events::from([(
            "sale".to_owned(),
            event(NOW + 60_000, NOW + 120_000, NOW + 180_000),
        )]);
        assert!(!prequeue_near(&events, NOW));
        assert!(prequeue_near(&events, NOW + 60_000 - ENTRY_LEAD_MS));
        assert!(prequeue_near(&events, NOW + 119_999));
        assert!(!prequeue_near(&events, NOW + 120_000));
    }

    #[test]
    fn a_shuffled_event_keeps_its_seed_and_shows_it_from_the_opening() {
        let mut e = event(NOW + 10, NOW + 2_000, NOW + 3_000);
        e.shuffle = true;
        let e = e.with_seed(None, || [9; 32]);
        let hash = crate::shuffle::seed_sha256(&[9; 32]);
        assert_eq!(e.seed_sha256.as_deref(), Some(hash.as_str()));
        assert_eq!(e.redacted(NOW + 1_999).seed, None);
        assert_eq!(e.redacted(NOW + 2_000).seed, Some("09".repeat(32)));
        // A change keeps the seed whose hash is out.
        let mut changed = event(NOW + 10, NOW + 2_000, NOW + 4_000);
        changed.shuffle = true;
        let changed = changed.with_seed(Some(&e), || [1; 32]);
        assert_eq!(changed.seed, e.seed);
        // Once the pre-queue opened, its times and the shuffle stay.
        let events = Events::from([("sale".to_owned(), e.clone())]);
        let mut later = e.clone();
        later.start_at += 1;
        assert_eq!(
            put(&events, "sale", later.clone(), NOW + 10)
                .unwrap_err()
                .code,
            ErrorCode::Conflict
        );
        assert!(put(&events, "sale", later, NOW + 9).is_ok());
        assert!(put(&events, "sale", changed, NOW + 10).is_ok());
    }

    #[test]
    fn event_ids_are_checked() {
        assert!(check_event_id("summer-sale_2").is_ok());
        for bad in ["", "Sale", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_event_id(bad).is_err(), "{bad}");
        }
    }
}
