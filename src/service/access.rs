//! Who may take a place: the room's invite rule, its challenge and its join limit, decided
//! before a join reaches the store, in that order, and what a suspicious client (over the limit,
//! or failing its challenge) gets: the error, or a place in the infinite queue
//! ([`crate::decoy`]), as the room says. A room's join limit can also take a client that keeps
//! knocking for a bot ([`crate::limit::record`]): the places it took are ended, here. Asking
//! for a challenge costs the server a MAC and keeps
//! nothing; only an accepted answer or invite is remembered, until it would have expired anyway.

use super::client::Client;
use super::error::AppError;
use super::metrics::JoinOutcome;
use super::state::Service;
use crate::challenge::{check_pow, Challenge, ChallengeAnswer, NoScript, PowChallenge, PowError};
use crate::error::{ApiError, ErrorCode};
use crate::limit::record::{LimitOp, Outcome as LimitOutcome};
use crate::limit::{ClientKey, Decision as LimitDecision};
use crate::room::{Access, Mode, RoomRecord, Suspicious};
use crate::token::Place;

/// What a join brings besides who it is for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub challenge: Option<&'a ChallengeAnswer>,
    pub invite: Option<&'a str>,
    /// A page navigation at the gate (which can bring no answer to a challenge).
    pub navigation: bool,
}

/// What becomes of a join that may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A real place.
    Join,
    /// A place in the infinite queue.
    Decoy,
}

/// Decides whether the join may take a place. Called only for a join that will take one: a
/// visitor presenting the ticket of a place it holds is answered for that place before.
pub async fn may_join(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    credentials: Credentials<'_>,
    now: u64,
) -> Result<Verdict, AppError> {
    if record.config.mode == Mode::Closed {
        return Err(ApiError::new(
            ErrorCode::RoomClosed,
            "this room is closed: it takes no new visitors",
        )
        .into());
    }
    let key = client.ip.map(ClientKey::of);
    let invite = match record.config.access {
        Access::Public => None,
        Access::Invite => {
            let token = credentials.invite.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InviteRequired,
                    "this room is invite-only: join with the invite the application gave you",
                )
            })?;
            Some(crate::invite::check(
                token,
                s.app_keys.as_ref(),
                &record.id,
                key,
                now,
            )?)
        }
    };
    let solved = match &record.config.challenge {
        None => None,
        // The room lets browsers that run no script in without the proof.
        Some(Challenge::Pow(pow)) if credentials.navigation && pow.noscript == NoScript::Join => {
            None
        }
        Some(challenge) => match passed(s, record, client, challenge, credentials, now).await? {
            Passed::Yes(solved) => solved,
            Passed::Failed(err) => return suspicious(s, record, err),
        },
    };
    if let Some(err) = over_join_limit(s, record, key, now).await? {
        return suspicious(s, record, err);
    }
    if let Some((once_key, until)) = solved {
        if !s.store.spend_once(record, &once_key, until, now).await? {
            let err = ApiError::new(
                ErrorCode::ChallengeFailed,
                "this challenge was solved and used before: ask for a new one",
            );
            return suspicious(s, record, err);
        }
    }
    if let Some(invite) = invite {
        let once_key = format!("invite:{}", invite.jti);
        if !s
            .store
            .spend_once(record, &once_key, invite.expires_at, now)
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::InviteUsed,
                "this invite has been used: each invite lets one visitor in line once",
            )
            .into());
        }
    }
    Ok(Verdict::Join)
}

/// What a challenge answer came to.
enum Passed {
    /// Passed; with what to remember so that it is accepted once.
    Yes(Option<(String, u64)>),
    /// Wrong, or not this client's: a suspicious client.
    Failed(ApiError),
}

async fn passed(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    challenge: &Challenge,
    credentials: Credentials<'_>,
    now: u64,
) -> Result<Passed, AppError> {
    let answer = credentials.challenge;
    match challenge {
        Challenge::Pow(pow) => {
            let (Some(token), Some(nonce)) = (
                answer.and_then(|a| a.token.as_deref()),
                answer.and_then(|a| a.nonce.as_deref()),
            ) else {
                s.metrics.join(&record.id, JoinOutcome::Challenged);
                return Err(challenge_required(s, record, client, pow.difficulty, now).into());
            };
            let key = client.ip.map(ClientKey::of);
            match check_pow(token, nonce, &s.keys, &record.id, key, pow.difficulty, now) {
                Ok(solved) => Ok(Passed::Yes(Some((
                    format!("pow:{}", solved.once_key),
                    solved.expires_at,
                )))),
                // Too slow is no sign of a bot: a plain refusal, and a new challenge beside it.
                Err(PowError::Expired) => Err(ApiError::new(
                    ErrorCode::ChallengeFailed,
                    PowError::Expired.reason(),
                )
                .with(
                    "challenge",
                    serde_json::to_value(issue(s, record, client, pow.difficulty, now))
                        .unwrap_or_default(),
                )
                .into()),
                Err(e) => Ok(Passed::Failed(ApiError::new(
                    ErrorCode::ChallengeFailed,
                    e.reason(),
                ))),
            }
        }
        Challenge::Siteverify(config) => {
            let Some(response) = answer.and_then(|a| a.response.as_deref()) else {
                s.metrics.join(&record.id, JoinOutcome::Challenged);
                return Err(ApiError::new(
                    ErrorCode::ChallengeRequired,
                    "this room asks you to pass a check first: join again with the widget's \
                     response as challenge.response",
                )
                .with(
                    "challenge",
                    serde_json::json!({
                        "kind": "siteverify",
                        "site_key": config.site_key,
                        "script_url": config.script_url,
                    }),
                )
                .into());
            };
            if super::siteverify::verify(s, config, response, client, now).await? {
                Ok(Passed::Yes(None))
            } else {
                Ok(Passed::Failed(ApiError::new(
                    ErrorCode::ChallengeFailed,
                    "the check's response was not accepted: pass the check again",
                )))
            }
        }
    }
}

/// A new proof-of-work challenge for the client.
pub fn issue(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    difficulty: u8,
    now: u64,
) -> PowChallenge {
    let mut salt = [0u8; 8];
    s.platform.random(&mut salt);
    let key = client.ip.map(ClientKey::of);
    PowChallenge::issue(&s.keys, &record.id, key, difficulty, salt, now)
}

fn challenge_required(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    difficulty: u8,
    now: u64,
) -> ApiError {
    let challenge = issue(s, record, client, difficulty, now);
    ApiError::new(
        ErrorCode::ChallengeRequired,
        format!(
            "this room asks for a proof of work first: find a nonce for which SHA-256(token \
             \":\" nonce) starts with {difficulty} zero bits, and join again with \
             {{\"challenge\": {{\"token\": ..., \"nonce\": ...}}}}"
        ),
    )
    .with(
        "challenge",
        serde_json::to_value(challenge).unwrap_or_default(),
    )
}

/// Takes this join from the client's allowance under the room's join limit; the refusal if it
/// is over (429 `too_many_joins` and when to try again), or has been taken for a bot, in which
/// case the places it took lately are ended first. A room without a limit, or a client whose
/// address the shell does not know, is not limited.
async fn over_join_limit(
    s: &Service,
    record: &RoomRecord,
    key: Option<ClientKey>,
    now: u64,
) -> Result<Option<ApiError>, AppError> {
    let (Some(limit), Some(key)) = (&record.config.join_limit, key) else {
        return Ok(None);
    };
    match s
        .store
        .limit_client(record, key, limit, LimitOp::Take, now)
        .await?
    {
        LimitOutcome::Allowed => Ok(None),
        LimitOutcome::Refused { retry_after_ms } => {
            let seconds = LimitDecision::retry_after_s(retry_after_ms);
            s.metrics.join(&record.id, JoinOutcome::Limited);
            Ok(Some(
                ApiError::new(
                    ErrorCode::TooManyJoins,
                    format!(
                        "too many joins from this client ({} a minute, {} at once, per IPv4 \
                         address or IPv6 /64): try again in {seconds} s",
                        limit.per_client_per_min, limit.burst
                    ),
                )
                .with("retry_after_s", seconds),
            ))
        }
        LimitOutcome::Penalized { until, end } => {
            end_places(s, record, &end, now).await?;
            Ok(Some(penalized(s, record, until, now)))
        }
    }
}

/// Records the place a join just took against its client, in a room whose join limit
/// penalizes, so that a penalty can end it. A client taken for a bot since its allowance was
/// taken loses the place at once and is suspicious.
pub async fn record_place(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    place: Place,
    now: u64,
) -> Result<Verdict, AppError> {
    let Some(limit) = record
        .config
        .join_limit
        .filter(|l| l.penalize_after.is_some())
    else {
        return Ok(Verdict::Join);
    };
    let Some(key) = client.ip.map(ClientKey::of) else {
        return Ok(Verdict::Join);
    };
    match s
        .store
        .limit_client(record, key, &limit, LimitOp::Record(place), now)
        .await?
    {
        LimitOutcome::Penalized { until, end } => {
            end_places(s, record, &end, now).await?;
            suspicious(s, record, penalized(s, record, until, now))
        }
        LimitOutcome::Allowed | LimitOutcome::Refused { .. } => Ok(Verdict::Join),
    }
}

/// Ends what a client taken for a bot held: a place still waiting, an admission or a session.
async fn end_places(
    s: &Service,
    record: &RoomRecord,
    places: &[Place],
    now: u64,
) -> Result<(), AppError> {
    for &place in places {
        if s.store.end(record, place, now).await? == Some(true) {
            s.metrics.penalized_place(&record.id);
        }
    }
    Ok(())
}

/// The refusal of a client taken for a bot: 429 `too_many_joins` until the penalty ends.
fn penalized(s: &Service, record: &RoomRecord, until: u64, now: u64) -> ApiError {
    s.metrics.join(&record.id, JoinOutcome::Penalized);
    let seconds = LimitDecision::retry_after_s(until.saturating_sub(now));
    ApiError::new(
        ErrorCode::TooManyJoins,
        format!(
            "too many joins from this client, again and again: it is taken for a bot, the \
             places it took were given up, and it may join again in {seconds} s"
        ),
    )
    .with("retry_after_s", seconds)
}

/// A suspicious client: refused with `err`, or sent to the infinite queue.
fn suspicious(s: &Service, record: &RoomRecord, err: ApiError) -> Result<Verdict, AppError> {
    if err.code == ErrorCode::ChallengeFailed {
        s.metrics.join(&record.id, JoinOutcome::Failed);
    }
    match record.config.suspicious {
        Suspicious::Refuse => Err(err.into()),
        Suspicious::InfiniteQueue => Ok(Verdict::Decoy),
    }
}
