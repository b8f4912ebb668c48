//! From a visitor's state in the store to what the API answers: the JSON body, a renewed ticket,
//! a pass once admitted, and the cookies to set or clear. Both deployments answer through here.

use crate::api::{
    pass_cookie_name, set_cookie, ticket_cookie_name, VisitorResponse, VisitorStatus,
};
use crate::estimate::{draw_poll_ms, estimate, WaitEstimate};
use crate::keys::SigningKeys;
use crate::room::{Mode, RoomConfig, RoomId};
use crate::token::{Pass, Place, Ticket};

/// Where a visitor stands, as a store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitorState {
    /// In the queue; `position` 1 is next. In random mode, where a place has no rank, how many
    /// wait in the room: a draw picks each of them as likely, so that many draws pass on
    /// average before the visitor's.
    Waiting { position: u64 },
    /// Admitted and arrived: the session lasts until `session_expires_at` unless renewed.
    Admitted { session_expires_at: u64 },
    /// Left the queue or the application, or was revoked.
    Left,
    /// The place is gone: never claimed within the claim window, the session timed out, or the
    /// queue the ticket belongs to no longer exists.
    Expired,
}

impl VisitorState {
    pub fn status(&self) -> VisitorStatus {
        match self {
            VisitorState::Waiting { .. } => VisitorStatus::Waiting,
            VisitorState::Admitted { .. } => VisitorStatus::Admitted,
            VisitorState::Left => VisitorStatus::Left,
            VisitorState::Expired => VisitorStatus::Expired,
        }
    }
}

/// What the shell sends back: a body and `Set-Cookie` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub body: VisitorResponse,
    pub set_cookies: Vec<String>,
    /// The pass minted for an admitted visitor, for a gate that lets the request through at once.
    pub pass: Option<Pass>,
}

/// How soon a visitor in a pre-queue at `position` asks again. Far from the opening, a quarter
/// of the time left (1 s to 30 s). Close to it, at the opening plus the time the line ahead
/// takes at the configured rate (at most 30 s more): the front asks first, and a crowd that
/// pre-queued does not ask all in the same second. Where the opening shuffles the pre-queue
/// (`shuffled`, with the place's seq), the line ahead is not known yet: everyone asks within
/// [`SHUFFLED_OPENING_SPREAD_MS`] after the opening, spread by seq, so that whoever the shuffle
/// puts first learns it at once.
fn prequeue_poll_ms(
    opens_at: u64,
    now: u64,
    position: u64,
    config: &RoomConfig,
    shuffled: Option<u64>,
) -> u64 {
    use crate::estimate::{max_poll_ms, MAX_POLL_MS, MIN_POLL_MS};
    let left = opens_at.saturating_sub(now);
    let max_poll = max_poll_ms(config);
    if left > 4 * MIN_POLL_MS {
        return (left / 4).clamp(MIN_POLL_MS, max_poll);
    }
    let after_opening = match shuffled {
        Some(seq) => (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % SHUFFLED_OPENING_SPREAD_MS,
        None => position
            .saturating_sub(1)
            .saturating_mul(60_000)
            .checked_div(config.admit_per_minute)
            .unwrap_or(MAX_POLL_MS)
            .min(MAX_POLL_MS),
    };
    // Never longer than a place may go unseen.
    let abandon = config.abandon_after_ms().map_or(u64::MAX, |ms| ms / 4);
    left.saturating_add(after_opening)
        .min(abandon.max(MIN_POLL_MS))
        .max(MIN_POLL_MS)
}

/// Pre-queued visitors of a shuffled opening ask again within this long after it.
pub const SHUFFLED_OPENING_SPREAD_MS: u64 = 3_000;

/// Everything about a room that shapes an answer.
#[derive(Debug, Clone, Copy)]
pub struct RoomContext<'a> {
    pub room: &'a RoomId,
    pub config: &'a RoomConfig,
    pub paused: bool,
    /// When the sale opens, while an event holds the room in its pre-queue: waiting visitors
    /// are told that instead of a position.
    pub opens_at: Option<u64>,
    /// Whether that opening shuffles the pre-queue.
    pub opening_shuffled: bool,
    /// Admissions per minute measured while visitors waited, if known.
    pub measured_rate: Option<f64>,
    pub keys: &'a SigningKeys,
    pub secure_cookies: bool,
}

impl RoomContext<'_> {
    /// A new ticket for a place a store just handed out.
    pub fn new_ticket(&self, place: Place, joined_us: u64, now: u64) -> Ticket {
        Ticket {
            room: self.room.clone(),
            place,
            joined_us,
            expires_at: now.saturating_add(self.config.ticket_ttl_ms()),
            decoy: false,
        }
    }

    /// A ticket for a place in the infinite queue ([`crate::decoy`]).
    pub fn decoy_ticket(&self, place: Place, joined_us: u64, now: u64) -> Ticket {
        Ticket {
            decoy: true,
            ..self.new_ticket(place, joined_us, now)
        }
    }

    /// A pass for an admitted visitor, valid as long as the session.
    pub fn new_pass(&self, place: Place, session_expires_at: u64, now: u64) -> Pass {
        Pass {
            room: self.room.clone(),
            place,
            issued_at: now,
            expires_at: session_expires_at,
        }
    }

    pub fn wait_estimate(&self, position: u64) -> WaitEstimate {
        estimate(position, self.measured_rate, self.config, self.paused)
    }

    /// The answer for `ticket` in `state`. `fresh` says whether the ticket was just issued (it is
    /// then always sent as a cookie); otherwise it is renewed once past half its life.
    pub fn answer(&self, ticket: &Ticket, state: VisitorState, fresh: bool, now: u64) -> Answer {
        let mut body = VisitorResponse::new(self.room, state.status());
        let mut set_cookies = Vec::new();
        let mut pass = None;
        body.ticket_id = Some(ticket.ticket_id());
        match state {
            VisitorState::Waiting { position } => {
                let renewed = self.renewed(ticket, fresh, now);
                let token = renewed.encode(self.keys);
                if fresh || renewed.expires_at != ticket.expires_at {
                    set_cookies.push(self.ticket_cookie(&token, renewed.expires_at, now));
                }
                body.ticket = Some(token);
                if let Some(opens_at) = self.opens_at {
                    // Before the opening a place says nothing yet: with a shuffle it would not
                    // even say the order.
                    body.position = Some(None);
                    body.opens_at = Some(opens_at);
                    body.eta_seconds = Some(None);
                    let shuffled = self.opening_shuffled.then_some(ticket.place.seq);
                    body.poll_after_ms = Some(prequeue_poll_ms(
                        opens_at,
                        now,
                        position,
                        self.config,
                        shuffled,
                    ));
                } else if self.config.mode == Mode::Random {
                    // No place in line: `position` is how many wait in the room (see
                    // [`VisitorState::Waiting`]), each of whom a draw picks as likely.
                    let wait = self.wait_estimate(position);
                    body.position = Some(None);
                    body.random = Some(true);
                    body.eta_seconds = Some(wait.eta_seconds);
                    body.poll_after_ms = Some(draw_poll_ms(self.config, self.paused));
                } else {
                    let wait = self.wait_estimate(position);
                    body.position = Some(Some(position));
                    body.eta_seconds = Some(wait.eta_seconds);
                    body.poll_after_ms = Some(wait.poll_after_ms);
                }
            }
            VisitorState::Admitted { session_expires_at } => {
                let ticket = self.renewed(ticket, fresh, now);
                let token = ticket.encode(self.keys);
                set_cookies.push(self.ticket_cookie(&token, ticket.expires_at, now));
                let minted = self.new_pass(ticket.place, session_expires_at, now);
                let pass_token = minted.encode(self.keys);
                set_cookies.push(self.pass_cookie(&pass_token, minted.expires_at, now));
                body.ticket = Some(token);
                body.pass = Some(pass_token);
                body.pass_expires_at = Some(minted.expires_at);
                pass = Some(minted);
            }
            VisitorState::Left | VisitorState::Expired => {
                set_cookies.extend(self.clear_cookies());
            }
        }
        Answer {
            body,
            set_cookies,
            pass,
        }
    }

    /// The ticket with its expiry pushed out, if it was fresh or is past half its life.
    fn renewed(&self, ticket: &Ticket, fresh: bool, now: u64) -> Ticket {
        let ttl = self.config.ticket_ttl_ms();
        let half_life_left = ticket.expires_at.saturating_sub(now) < ttl / 2;
        let mut ticket = ticket.clone();
        if fresh || half_life_left {
            ticket.expires_at = now.saturating_add(ttl);
        }
        ticket
    }

    pub fn ticket_cookie(&self, token: &str, expires_at: u64, now: u64) -> String {
        set_cookie(
            &ticket_cookie_name(self.room),
            token,
            max_age_s(expires_at, now),
            self.secure_cookies,
        )
    }

    pub fn pass_cookie(&self, token: &str, expires_at: u64, now: u64) -> String {
        set_cookie(
            &pass_cookie_name(self.room),
            token,
            max_age_s(expires_at, now),
            self.secure_cookies,
        )
    }

    pub fn clear_cookies(&self) -> [String; 2] {
        [
            set_cookie(&ticket_cookie_name(self.room), "", 0, self.secure_cookies),
            set_cookie(&pass_cookie_name(self.room), "", 0, self.secure_cookies),
        ]
    }
}

fn max_age_s(expires_at: u64, now: u64) -> u64 {
    expires_at.saturating_sub(now).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prequeue_asks_again_in_line_order_at_the_opening() {
        let config = RoomConfig {
            admit_per_minute: 600,
            ..RoomConfig::default()
        };
        let opens_at = 1_800_000_000_000;
        // An hour out: every 30 s; a minute out: every 15 s.
        assert_eq!(
            prequeue_poll_ms(opens_at, opens_at - 3_600_000, 1, &config, None),
            30_000
        );
        assert_eq!(
            prequeue_poll_ms(opens_at, opens_at - 60_000, 1, &config, None),
            15_000
        );
        // Three seconds out: at the opening for the front, 10 a second behind it, 30 s at most.
        assert_eq!(
            prequeue_poll_ms(opens_at, opens_at - 3_000, 1, &config, None),
            3_000
        );
        assert_eq!(
            prequeue_poll_ms(opens_at, opens_at - 3_000, 11, &config, None),
            4_000
        );
        // Never longer than a quarter of the time a place may go unseen (120 s by default).
        assert_eq!(
            prequeue_poll_ms(opens_at, opens_at - 3_000, 100_000, &config, None),
            30_000
        );
        let never_abandoned = RoomConfig {
            abandon_after_s: 0,
            ..config.clone()
        };
        assert_eq!(
            prequeue_poll_ms(opens_at, opens_at - 3_000, 100_000, &never_abandoned, None),
            33_000
        );
        // At the opening, never sooner than a second.
        assert_eq!(
            prequeue_poll_ms(opens_at, opens_at, 1, &config, None),
            1_000
        );
        // A shuffled opening: everyone within three seconds of it, whatever the place in line.
        let asks: Vec<u64> = (1..=1000)
            .map(|seq| prequeue_poll_ms(opens_at, opens_at - 3_000, 100_000, &config, Some(seq)))
            .collect();
        assert!(
            asks.iter().all(|&ms| (3_000..6_000).contains(&ms)),
            "{asks:?}"
        );
        assert!(asks.iter().any(|&ms| ms < 3_500) && asks.iter().any(|&ms| ms > 5_500));
    }

    fn fixture() -> (RoomId, RoomConfig, SigningKeys) {
        (
            RoomId::parse("demo").unwrap(),
            RoomConfig::default(),
            SigningKeys::parse("k:0123456789abcdef0123").unwrap(),
        )
    }

    fn context<'a>(
        room: &'a RoomId,
        config: &'a RoomConfig,
        keys: &'a SigningKeys,
        measured_rate: Option<f64>,
        secure_cookies: bool,
    ) -> RoomContext<'a> {
        RoomContext {
            room,
            config,
            paused: false,
            opens_at: None,
            opening_shuffled: false,
            measured_rate,
            keys,
            secure_cookies,
        }
    }

    const PLACE: Place = Place {
        epoch: 1,
        shard: 0,
        seq: 9,
    };

    #[test]
    fn waiting_answers_carry_position_estimate_and_ticket() {
        let (room, config, keys) = fixture();
        let ctx = context(&room, &config, &keys, Some(30.0), false);
        let ticket = ctx.new_ticket(PLACE, 5, 1_000);
        let answer = ctx.answer(&ticket, VisitorState::Waiting { position: 3 }, true, 1_000);
        assert_eq!(answer.body.position, Some(Some(3)));
        assert_eq!(answer.body.eta_seconds, Some(Some(6)));
        assert_eq!(answer.body.ticket_id.as_deref(), Some("00000001-0-9"));
        let token = answer.body.ticket.clone().unwrap();
        assert_eq!(
            Ticket::decode(&token, &keys, &room, 1_000),
            Ok(ticket.clone())
        );
        assert_eq!(answer.set_cookies.len(), 1);
        assert!(answer.set_cookies[0].starts_with(&format!("qg_ticket_demo={token};")));

        // A poll early in the ticket's life sets no cookie; one late in its life renews it.
        let early = ctx.answer(&ticket, VisitorState::Waiting { position: 2 }, false, 2_000);
        assert!(early.set_cookies.is_empty());
        let late_now = ticket.expires_at - 1_000;
        let late = ctx.answer(
            &ticket,
            VisitorState::Waiting { position: 1 },
            false,
            late_now,
        );
        let renewed =
            Ticket::decode(late.body.ticket.as_deref().unwrap(), &keys, &room, late_now).unwrap();
        assert_eq!(renewed.expires_at, late_now + config.ticket_ttl_ms());
        assert_eq!(renewed.place, ticket.place);
        assert_eq!(late.set_cookies.len(), 1);
    }

    #[test]
    fn admitted_answers_carry_a_pass_bound_to_the_place() {
        let (room, config, keys) = fixture();
        let ctx = context(&room, &config, &keys, None, true);
        let ticket = ctx.new_ticket(PLACE, 5, 1_000);
        let answer = ctx.answer(
            &ticket,
            VisitorState::Admitted {
                session_expires_at: 61_000,
            },
            false,
            1_000,
        );
        let pass = Pass::decode(answer.body.pass.as_deref().unwrap(), &keys, &room, 1_000).unwrap();
        assert_eq!(pass.place, PLACE);
        assert_eq!(pass.expires_at, 61_000);
        assert!(answer
            .set_cookies
            .iter()
            .any(|c| c.starts_with("qg_pass_demo=")
                && c.contains("Max-Age=60;")
                && c.ends_with("; Secure")));
        assert_eq!(answer.body.position, None);
    }

    #[test]
    fn gone_visitors_get_their_cookies_cleared() {
        let (room, config, keys) = fixture();
        let ctx = context(&room, &config, &keys, None, false);
        let ticket = ctx.new_ticket(PLACE, 5, 1_000);
        for state in [VisitorState::Left, VisitorState::Expired] {
            let answer = ctx.answer(&ticket, state, false, 1_000);
            assert_eq!(answer.body.ticket, None);
            assert_eq!(answer.set_cookies.len(), 2);
            assert!(answer.set_cookies.iter().all(|c| c.contains("Max-Age=0;")));
        }
    }
}
