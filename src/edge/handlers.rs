//! The worker's requests: the public API, the admin API (with the scheduler's interface) and the
//! gate. Decisions come from the core; this file moves bytes between the request, the isolate's
//! cache and the Durable Objects.

use std::rc::Rc;

use subtle::ConstantTimeEq;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers, Method, Request, RequestInit, Response};

use super::batch;
use super::isolate::{self, call, Config, REGISTRY, REGISTRY_NAME, SHARDS};
use super::protocol::*;
use super::respond::{api_error, json, with_status};
use crate::api::{
    bearer_token, find_cookie, pass_cookie_name, ticket_cookie_name, wants_json, AdmitRequest,
    AdmitResponse, JoinRequest, LeaseRequest, RateRequest, RevokeRequest, RevokeResponse, RoomList,
    RoomStats, RoomView, ScheduleRequest, ScheduleResponse, VisitorResponse, MAX_BODY_BYTES,
};
use crate::controller::RoomLoad;
use crate::error::{ApiError, ErrorCode};
use crate::order::plan_fifo;
use crate::page::{demo_page, unavailable_page, waiting_page};
use crate::queue::{estimate_position, position_with_own};
use crate::room::{path_has_prefix, RoomConfig, RoomId};
use crate::shard::{user_hash, Standing, Timing};
use crate::token::{looks_like_pass, Pass, Place, Ticket};
use crate::visitor::{Answer, RoomContext, VisitorState};

type Outcome<T> = Result<T, ApiError>;

fn internal(e: worker::Error) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

pub async fn route(req: Request, env: &Env, now: u64) -> Outcome<Response> {
    let config = isolate::config(env)?;
    let path = req.path();
    if let Some(rest) = path.strip_prefix(config.prefix.as_str()) {
        if rest.is_empty() || rest.starts_with('/') {
            let rest = rest.to_owned();
            return api(req, env, &config, &rest, now).await;
        }
    }
    isolate::count_request("gate");
    gate(req, env, &config, now).await
}

// ---- plumbing ----

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    let header = header(req, "cookie")?;
    find_cookie([header.as_str()], name)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn bearer(req: &Request) -> Option<String> {
    header(req, "authorization").and_then(|h| bearer_token(&h).map(str::to_owned))
}

async fn body(req: &mut Request) -> Outcome<Vec<u8>> {
    let bytes = req
        .bytes()
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("the body: {e}")))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// A room id from a path segment, percent-decoded.
fn room_id(segment: &str) -> Outcome<RoomId> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidRoomId,
            "the room id is not valid percent-encoded UTF-8",
        )
    };
    let mut bytes = Vec::with_capacity(segment.len());
    let raw = segment.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = segment.get(i + 1..i + 3).ok_or_else(invalid)?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(bytes).map_err(|_| invalid())?;
    RoomId::parse(&decoded)
}

fn timing(config: &RoomConfig) -> Timing {
    Timing {
        session_ttl_ms: config.session_ttl_ms(),
        claim_window_ms: config.claim_window_ms(),
    }
}

fn shard_name(entry: &RoomEntry, shard: u16) -> String {
    format!("{}:{:08x}:{shard}", entry.record.id, entry.record.epoch)
}

/// Calls shard `shard` of the room with `op` (counted as `kind`).
fn call_shard<'e, Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    env: &'e Env,
    entry: &RoomEntry,
    shard: u16,
    kind: &'static str,
    op: &'static str,
    body: &Q,
) -> impl std::future::Future<Output = Outcome<A>> + 'e {
    call(env, SHARDS, &shard_name(entry, shard), kind, op, body)
}

/// Calls the registry with `op` (counted as `kind`).
fn call_registry<'e, Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    env: &'e Env,
    kind: &'static str,
    op: &'static str,
    body: &Q,
) -> impl std::future::Future<Output = Outcome<A>> + 'e {
    call(env, REGISTRY, REGISTRY_NAME, kind, op, body)
}

fn context<'a>(config: &'a Config, entry: &'a RoomEntry) -> RoomContext<'a> {
    RoomContext {
        room: &entry.record.id,
        config: &entry.record.config,
        paused: entry.record.paused,
        measured_rate: entry.record.measured_rate,
        keys: &config.keys,
        secure_cookies: config.secure_cookies,
    }
}

async fn room_entry(env: &Env, room: &RoomId, now: u64) -> Outcome<RoomEntry> {
    if let Some(entry) = isolate::rooms(env, now, false).await?.get(room.as_str()) {
        return Ok(entry.clone());
    }
    isolate::rooms(env, now, true)
        .await?
        .get(room.as_str())
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownRoom,
                format!("no room {:?}", room.as_str()),
            )
        })
}

fn visitor_response(answer: &Answer) -> Outcome<Response> {
    let mut response = json(&answer.body).map_err(internal)?;
    for cookie in &answer.set_cookies {
        response
            .headers_mut()
            .append("set-cookie", cookie)
            .map_err(internal)?;
    }
    Ok(response)
}

// ---- the public API ----

async fn api(
    mut req: Request,
    env: &Env,
    config: &Config,
    rest: &str,
    now: u64,
) -> Outcome<Response> {
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let method = req.method();
    let wrong_method = || {
        ApiError::new(
            ErrorCode::MethodNotAllowed,
            "that method is not allowed here",
        )
    };
    match segments.as_slice() {
        ["healthz"] => {
            isolate::count_request("healthz");
            if method != Method::Get && method != Method::Head {
                return Err(wrong_method());
            }
            healthz(env, now).await
        }
        ["metrics"] => {
            isolate::count_request("metrics");
            let mut response = Response::ok(isolate::render_metrics()).map_err(internal)?;
            response
                .headers_mut()
                .set(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .map_err(internal)?;
            Ok(response)
        }
        ["rooms", room, action @ ("join" | "status" | "leave")] => {
            let expected = if *action == "status" {
                Method::Get
            } else {
                Method::Post
            };
            if method != expected {
                return Err(wrong_method());
            }
            isolate::count_request(match *action {
                "join" => "join",
                "status" => "status",
                _ => "leave",
            });
            let room = room_id(room)?;
            match *action {
                "join" => join(&mut req, env, config, &room, now).await,
                "status" => status(&req, env, config, &room, now).await,
                _ => leave(&req, env, config, &room, now).await,
            }
        }
        ["admin", admin_path @ ..] => {
            isolate::count_request("admin");
            require_admin(&req, config)?;
            admin(&mut req, env, config, admin_path, now).await
        }
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such API route")),
    }
}

async fn healthz(env: &Env, now: u64) -> Outcome<Response> {
    match isolate::rooms(env, now, false).await {
        Ok(_) => {
            json(&serde_json::json!({"status": "ok", "store": "durable-objects"})).map_err(internal)
        }
        Err(err) => with_status(
            &serde_json::json!({
                "status": "unavailable",
                "store": "durable-objects",
                "gate": "closed",
                "error": err.to_body().error,
            }),
            503,
        )
        .map_err(internal),
    }
}

async fn join(
    req: &mut Request,
    env: &Env,
    config: &Config,
    room: &RoomId,
    now: u64,
) -> Outcome<Response> {
    let request = JoinRequest::from_body(&body(req).await?)?;
    let entry = room_entry(env, room, now).await?;
    let presented = bearer(req)
        .map(|t| (t, true))
        .or_else(|| cookie(req, &ticket_cookie_name(room)).map(|t| (t, false)));
    let answer = join_room(
        env,
        config,
        &entry,
        request.user_id.as_deref(),
        presented,
        now,
    )
    .await?;
    visitor_response(&answer)
}

/// Joins, keeping the place of a visitor with a live ticket; a bad bearer ticket is refused, a
/// bad cookie ignored.
async fn join_room(
    env: &Env,
    config: &Config,
    entry: &RoomEntry,
    user: Option<&str>,
    presented: Option<(String, bool)>,
    now: u64,
) -> Outcome<Answer> {
    let ctx = context(config, entry);
    if let Some((token, is_bearer)) = presented {
        match Ticket::decode(&token, &config.keys, &entry.record.id, now) {
            Ok(ticket) => {
                let state = visit(env, entry, &ticket, now).await?;
                if matches!(
                    state,
                    VisitorState::Waiting { .. } | VisitorState::Admitted { .. }
                ) {
                    return Ok(ctx.answer(&ticket, state, false, now));
                }
            }
            Err(e) if is_bearer => return Err(e.for_ticket()),
            Err(_) => {}
        }
    }
    let shards = entry.record.config.shards;
    let shard = match user {
        Some(user) => (user_hash(user) % u64::from(shards)) as u16,
        None => batch::busy_shard((0..shards).map(|s| shard_name(entry, s)))
            .unwrap_or_else(|| isolate::next_shard(shards)),
    };
    let job = JoinJob {
        user: user.map(str::to_owned),
        stamp: isolate::next_stamp(now),
    };
    let joined = &batch::join(
        env,
        &shard_name(entry, shard),
        job,
        now,
        timing(&entry.record.config),
    )
    .await?;
    let place = Place {
        epoch: entry.record.epoch,
        shard,
        seq: joined.joined.seq,
    };
    let state = match joined.joined.standing {
        Standing::Waiting => VisitorState::Waiting {
            position: position_with_own(
                &entry.summaries,
                usize::from(shard),
                joined.ahead,
                joined.joined.stamp,
            ),
        },
        Standing::Admitted { session_expires_at } => VisitorState::Admitted { session_expires_at },
        Standing::Left => VisitorState::Left,
        Standing::Expired => VisitorState::Expired,
    };
    let ticket = ctx.new_ticket(place, joined.joined.stamp, now);
    Ok(ctx.answer(&ticket, state, true, now))
}

/// Where a ticket's holder stands: from the published summary while waiting (no call), from the
/// shard once admission reached the place.
async fn visit(env: &Env, entry: &RoomEntry, ticket: &Ticket, now: u64) -> Outcome<VisitorState> {
    let place = ticket.place;
    if place.epoch != entry.record.epoch || place.shard >= entry.record.config.shards {
        return Ok(VisitorState::Expired);
    }
    let shard = usize::from(place.shard);
    if let Some(summary) = entry.summaries.get(shard) {
        if summary.left.contains(&place.seq) {
            return Ok(VisitorState::Left);
        }
        // A place beyond the summary's tail joined since it was read (or was never given
        // out): only the shard knows.
        if place.seq > summary.admitted_seq && place.seq <= summary.tail {
            return Ok(VisitorState::Waiting {
                position: estimate_position(&entry.summaries, shard, place.seq, ticket.joined_us),
            });
        }
    }
    let request = VisitReq {
        seq: place.seq,
        now,
        timing: timing(&entry.record.config),
    };
    let res: VisitRes = call_shard(env, entry, place.shard, "claim", "visit", &request).await?;
    Ok(match res.standing {
        Standing::Waiting => VisitorState::Waiting {
            position: position_with_own(&entry.summaries, shard, res.ahead, res.stamp),
        },
        Standing::Admitted { session_expires_at } => VisitorState::Admitted { session_expires_at },
        Standing::Left => VisitorState::Left,
        Standing::Expired => VisitorState::Expired,
    })
}

async fn status(
    req: &Request,
    env: &Env,
    config: &Config,
    room: &RoomId,
    now: u64,
) -> Outcome<Response> {
    let entry = room_entry(env, room, now).await?;
    let token = bearer(req)
        .or_else(|| cookie(req, &ticket_cookie_name(room)))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::TicketRequired,
                "send the ticket in the room's ticket cookie or as Authorization: Bearer",
            )
        })?;
    let ticket = Ticket::decode(&token, &config.keys, room, now).map_err(|e| e.for_ticket())?;
    let state = visit(env, &entry, &ticket, now).await?;
    visitor_response(&context(config, &entry).answer(&ticket, state, false, now))
}

/// Ends a place for good; `None` when the room never gave it out.
async fn end_place(env: &Env, entry: &RoomEntry, place: Place, now: u64) -> Outcome<Option<bool>> {
    if place.epoch != entry.record.epoch || place.shard >= entry.record.config.shards {
        return Ok(None);
    }
    let res: EndRes = call_shard(
        env,
        entry,
        place.shard,
        "leave",
        "end",
        &EndReq {
            seq: place.seq,
            now,
        },
    )
    .await?;
    // Let every isolate learn of it within a second, not a tick.
    let publish = PublishShardReq {
        id: entry.record.id.clone(),
        shard: place.shard,
        summary: res
            .report
            .summary
            .observed(now, entry.summaries.get(usize::from(place.shard))),
    };
    let _: () = call_registry(env, "leave_publish", "publish_shard", &publish).await?;
    isolate::outdate_rooms();
    isolate::remember_session(session_key(entry, place), None, now);
    Ok(res.ended)
}

async fn leave(
    req: &Request,
    env: &Env,
    config: &Config,
    room: &RoomId,
    now: u64,
) -> Outcome<Response> {
    let entry = room_entry(env, room, now).await?;
    let from_ticket_cookie = cookie(req, &ticket_cookie_name(room));
    let token = bearer(req).or(from_ticket_cookie);
    let place =
        match token {
            Some(token) if looks_like_pass(&token) => {
                Pass::decode(&token, &config.keys, room, now)
                    .map_err(|e| e.for_pass())?
                    .place
            }
            Some(token) => {
                Ticket::decode(&token, &config.keys, room, now)
                    .map_err(|e| e.for_ticket())?
                    .place
            }
            None => match cookie(req, &pass_cookie_name(room)) {
                Some(token) => {
                    Pass::decode(&token, &config.keys, room, now)
                        .map_err(|e| e.for_pass())?
                        .place
                }
                None => return Err(ApiError::new(
                    ErrorCode::TicketRequired,
                    "send the ticket (or pass) in the room's cookie or as Authorization: Bearer",
                )),
            },
        };
    let state = match end_place(env, &entry, place, now).await? {
        Some(_) => VisitorState::Left,
        None => VisitorState::Expired,
    };
    let ctx = context(config, &entry);
    let mut body = VisitorResponse::new(room, state.status());
    body.ticket_id = Some(place.ticket_id());
    visitor_response(&Answer {
        body,
        set_cookies: ctx.clear_cookies().to_vec(),
        pass: None,
    })
}

// ---- the admin API ----

fn require_admin(req: &Request, config: &Config) -> Outcome<()> {
    let presented = bearer(req).map(|k| isolate::digest(&k));
    let allowed = presented.is_some_and(|d| bool::from(d.ct_eq(&config.admin_digest)));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the admin API needs Authorization: Bearer <admin key>",
        ))
    }
}

fn view(entry: &RoomEntry) -> RoomView {
    let mut stats = entry.stats.clone();
    stats.admit_rate_per_min = entry.record.measured_rate;
    RoomView {
        id: entry.record.id.clone(),
        config: entry.record.config.clone(),
        paused: entry.record.paused,
        stats,
    }
}

async fn admin(
    req: &mut Request,
    env: &Env,
    config: &Config,
    path: &[&str],
    now: u64,
) -> Outcome<Response> {
    let method = req.method();
    let wrong_method = || {
        ApiError::new(
            ErrorCode::MethodNotAllowed,
            "that method is not allowed here",
        )
    };
    match path {
        ["lease"] => {
            if method != Method::Post {
                return Err(wrong_method());
            }
            let request: LeaseRequest = crate::api::parse_json(&body(req).await?)?;
            let lease: crate::api::LeaseResponse = call_registry(
                env,
                "lease",
                "lease",
                &LeaseReq {
                    holder: request.holder,
                    ttl_ms: request.ttl_ms,
                    now,
                },
            )
            .await?;
            json(&lease).map_err(internal)
        }
        ["rooms"] => {
            if method != Method::Get {
                return Err(wrong_method());
            }
            let rooms = isolate::rooms(env, now, true).await?;
            json(&RoomList {
                rooms: rooms.values().map(view).collect(),
            })
            .map_err(internal)
        }
        ["rooms", room] => {
            let room = room_id(room)?;
            match method {
                Method::Get => {
                    let entry = room_entry(env, &room, now).await?;
                    let entry = refresh(env, &entry, 0, 0, now).await?.0;
                    json(&view(&entry)).map_err(internal)
                }
                Method::Put => put_room(req, env, config, room, now).await,
                _ => Err(wrong_method()),
            }
        }
        ["rooms", room, action] => {
            if method != Method::Post {
                return Err(wrong_method());
            }
            let room = room_id(room)?;
            let bytes = body(req).await?;
            let entry = room_entry(env, &room, now).await?;
            room_action(env, &entry, action, &bytes, now).await
        }
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such admin route")),
    }
}

async fn put_room(
    req: &mut Request,
    env: &Env,
    config: &Config,
    room: RoomId,
    now: u64,
) -> Outcome<Response> {
    let room_config = RoomConfig::from_json(&body(req).await?, &config.prefix)?;
    let epoch = (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    let put: PutRes = call_registry(
        env,
        "admin",
        "put",
        &PutReq {
            id: room,
            config: room_config,
            epoch,
        },
    )
    .await?;
    isolate::forget_rooms();
    let entry = room_entry(env, &put.record.id, now).await?;
    if !put.created {
        // A new configuration (maybe a lower capacity) opens no credit until the next tick.
        pause_shards(env, &entry, entry.record.paused, true).await?;
    }
    with_status(&view(&entry), if put.created { 201 } else { 200 }).map_err(internal)
}

async fn pause_shards(
    env: &Env,
    entry: &RoomEntry,
    paused: bool,
    drop_credit: bool,
) -> Outcome<()> {
    let calls = (0..entry.record.config.shards).map(|shard| {
        call_shard::<_, ShardReport>(
            env,
            entry,
            shard,
            "admin",
            "pause",
            &PauseReq {
                paused,
                drop_credit,
            },
        )
    });
    for result in futures::future::join_all(calls).await {
        result?;
    }
    Ok(())
}

async fn room_action(
    env: &Env,
    entry: &RoomEntry,
    action: &str,
    bytes: &[u8],
    now: u64,
) -> Outcome<Response> {
    match action {
        "admit" => {
            let request = AdmitRequest::from_body(bytes)?;
            let fence: crate::api::LeaseResponse =
                call_registry(env, "admin", "fence", &()).await?;
            let (admitted, _) = admit(env, entry, request.count, fence.fence, true, now).await?;
            json(&AdmitResponse { admitted }).map_err(internal)
        }
        "schedule" => {
            let request: ScheduleRequest = crate::api::parse_json(bytes)?;
            let (from_queue, entry_credit) =
                admit(env, entry, request.grant, request.fence, false, now).await?;
            json(&ScheduleResponse {
                from_queue,
                entry_credit,
            })
            .map_err(internal)
        }
        "load" => {
            let (_, load) = refresh(env, entry, 0, 0, now).await?;
            json(&load).map_err(internal)
        }
        "pause" | "resume" => {
            let paused = action == "pause";
            let _: crate::room::RoomRecord = call_registry(
                env,
                "admin",
                "patch",
                &PatchReq {
                    id: entry.record.id.clone(),
                    paused: Some(paused),
                    rate: None,
                },
            )
            .await?;
            pause_shards(env, entry, paused, paused).await?;
            isolate::forget_rooms();
            let entry = room_entry(env, &entry.record.id, now).await?;
            let entry = refresh(env, &entry, 0, 0, now).await?.0;
            json(&view(&entry)).map_err(internal)
        }
        "rate" => {
            let request: RateRequest = crate::api::parse_json(bytes)?;
            let _: crate::room::RoomRecord = call_registry(
                env,
                "scheduler",
                "patch",
                &PatchReq {
                    id: entry.record.id.clone(),
                    paused: None,
                    rate: Some(request.admit_rate_per_min),
                },
            )
            .await?;
            let mut entry = entry.clone();
            entry.record.measured_rate = request.admit_rate_per_min;
            isolate::remember_room(&entry);
            json(&view(&entry)).map_err(internal)
        }
        "revoke" => {
            let request: RevokeRequest = crate::api::parse_json(bytes)?;
            let place = Place::parse_ticket_id(&request.ticket_id)
                .filter(|p| p.epoch == entry.record.epoch && p.shard < entry.record.config.shards)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::UnknownTicket,
                        format!(
                            "no visitor with ticket id {:?} in this room",
                            request.ticket_id
                        ),
                    )
                })?;
            let revoked = end_place(env, entry, place, now).await? == Some(true);
            json(&RevokeResponse {
                ticket_id: request.ticket_id,
                revoked,
            })
            .map_err(internal)
        }
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such admin route")),
    }
}

/// Reads every shard (ending what expired, raising the fence when given, listing `heads`
/// waiting visitors of each), publishes what it read, and returns it.
async fn refresh(
    env: &Env,
    entry: &RoomEntry,
    fence: u64,
    heads: u64,
    now: u64,
) -> Outcome<(RoomEntry, RoomLoad)> {
    let reports = read_shards(env, entry, fence, heads, now).await?;
    let entry = publish(env, entry, &reports, now).await?;
    let load = RoomLoad {
        waiting: entry.stats.waiting,
        active: entry.stats.active,
        admitted: entry.stats.admitted,
        admitted_total: entry.stats.admitted_total,
    };
    Ok((entry, load))
}

async fn read_shards(
    env: &Env,
    entry: &RoomEntry,
    fence: u64,
    heads: u64,
    now: u64,
) -> Outcome<Vec<ShardReport>> {
    let request = SummaryReq {
        now,
        timing: timing(&entry.record.config),
        fence,
        heads,
    };
    let calls = (0..entry.record.config.shards).map(|shard| {
        call_shard::<_, ShardReport>(env, entry, shard, "scheduler", "summary", &request)
    });
    futures::future::join_all(calls).await.into_iter().collect()
}

async fn publish(
    env: &Env,
    entry: &RoomEntry,
    reports: &[ShardReport],
    now: u64,
) -> Outcome<RoomEntry> {
    let stats = RoomStats {
        waiting: reports.iter().map(|r| r.summary.waiting).sum(),
        admitted: reports.iter().map(|r| r.unclaimed).sum(),
        active: reports.iter().map(|r| r.active).sum(),
        admitted_total: reports.iter().map(|r| r.admitted_total).sum(),
        admit_rate_per_min: entry.record.measured_rate,
        entry_credit: reports.iter().map(|r| r.credit).sum(),
    };
    let summaries: Vec<_> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| r.summary.clone().observed(now, entry.summaries.get(i)))
        .collect();
    let request = PublishReq {
        id: entry.record.id.clone(),
        summaries: summaries.clone(),
        stats: stats.clone(),
    };
    let _: () = call_registry(env, "scheduler", "publish", &request).await?;
    let mut entry = entry.clone();
    entry.summaries = summaries;
    entry.stats = stats;
    isolate::remember_room(&entry);
    Ok(entry)
}

/// Admits up to `count` of the oldest waiting across shards within free capacity. The
/// scheduler's batch (`operator` false) opens what is left of its grant as entry credit when
/// nobody waits; an operator's leaves the credit alone and keeps clear of it. Returns the
/// admissions and the credit opened.
async fn admit(
    env: &Env,
    entry: &RoomEntry,
    count: u64,
    fence: u64,
    operator: bool,
    now: u64,
) -> Outcome<(u64, u64)> {
    let reports = read_shards(env, entry, fence, count.min(100_000), now).await?;
    let active: u64 = reports.iter().map(|r| r.active).sum();
    let unclaimed: u64 = reports.iter().map(|r| r.unclaimed).sum();
    let credit_now: u64 = reports.iter().map(|r| r.credit).sum();
    let waiting: u64 = reports.iter().map(|r| r.summary.waiting).sum();
    let reserved = if operator { credit_now } else { 0 };
    let free = entry
        .record
        .config
        .max_active
        .saturating_sub(active + unclaimed + reserved);
    let wanted = count.min(free);
    let plan = plan_fifo(
        reports
            .iter()
            .map(|r| r.heads.iter().map(|&(_, stamp)| stamp))
            .collect(),
        wanted,
    );
    let planned: u64 = plan.iter().sum();
    let shards = u64::from(entry.record.config.shards);
    let credits: Vec<u64> = if operator {
        reports.iter().map(|r| r.credit).collect()
    } else if entry.record.paused || (planned < wanted && waiting > planned) {
        vec![0; reports.len()]
    } else {
        let open = (count - planned).min(free - planned);
        (0..shards)
            .map(|s| open / shards + u64::from(s < open % shards))
            .collect()
    };
    let t = timing(&entry.record.config);
    let calls = reports.iter().enumerate().map(|(i, report)| {
        let n = plan[i] as usize;
        let upto = if n == 0 { 0 } else { report.heads[n - 1].0 };
        let request = AdmitReq {
            fence,
            upto,
            credit: credits[i],
            operator,
            now,
            timing: t,
        };
        call_shard::<_, AdmitRes>(env, entry, i as u16, "scheduler", "admit", &request)
    });
    let results: Vec<AdmitRes> = futures::future::join_all(calls)
        .await
        .into_iter()
        .collect::<Outcome<_>>()?;
    let admitted = results.iter().map(|r| r.admitted).sum();
    let after: Vec<ShardReport> = results.into_iter().map(|r| r.report).collect();
    publish(env, entry, &after, now).await?;
    Ok((admitted, if operator { 0 } else { credits.iter().sum() }))
}

// ---- the gate ----

fn session_key(entry: &RoomEntry, place: Place) -> (String, u32, u16, u64) {
    (
        entry.record.id.as_str().to_owned(),
        place.epoch,
        place.shard,
        place.seq,
    )
}

/// Whether the session at `place` is live (renewed when asked).
async fn session(
    env: &Env,
    entry: &RoomEntry,
    place: Place,
    renew: bool,
    now: u64,
) -> Outcome<Option<u64>> {
    if place.epoch != entry.record.epoch || place.shard >= entry.record.config.shards {
        return Ok(None);
    }
    let key = session_key(entry, place);
    if !renew {
        if let Some(expires_at) = isolate::cached_session(&key, now) {
            return Ok(Some(expires_at));
        }
    }
    let request = SessionReq {
        seq: place.seq,
        renew,
        now,
        timing: timing(&entry.record.config),
    };
    let res: SessionRes =
        call_shard(env, entry, place.shard, "gate_session", "session", &request).await?;
    isolate::remember_session(key, res.expires_at, now);
    Ok(res.expires_at)
}

enum Decision {
    Through {
        place: Option<Place>,
        cookies: Vec<String>,
    },
    Wait(Answer),
}

async fn decide(
    req: &Request,
    env: &Env,
    config: &Config,
    entry: &RoomEntry,
    now: u64,
) -> Outcome<Decision> {
    let room = &entry.record.id;
    let ctx = context(config, entry);
    if let Some(pass) = cookie(req, &pass_cookie_name(room))
        .and_then(|token| Pass::decode(&token, &config.keys, room, now).ok())
    {
        let renew = pass.wants_renewal(now);
        if let Some(expires_at) = session(env, entry, pass.place, renew, now).await? {
            let cookies = if renew {
                let renewed = ctx.new_pass(pass.place, expires_at, now);
                vec![ctx.pass_cookie(&renewed.encode(&config.keys), expires_at, now)]
            } else {
                Vec::new()
            };
            return Ok(Decision::Through {
                place: Some(pass.place),
                cookies,
            });
        }
    }
    let ticket = cookie(req, &ticket_cookie_name(room)).map(|t| (t, false));
    let answer = join_room(env, config, entry, None, ticket, now).await?;
    if let Some(pass) = &answer.pass {
        return Ok(Decision::Through {
            place: Some(pass.place),
            cookies: answer.set_cookies.clone(),
        });
    }
    Ok(Decision::Wait(answer))
}

async fn gate(req: Request, env: &Env, config: &Rc<Config>, now: u64) -> Outcome<Response> {
    let rooms = isolate::rooms(env, now, false).await;
    let path = req.path();
    let entry = match &rooms {
        Ok(rooms) => rooms
            .values()
            .flat_map(|e| e.record.config.paths.iter().map(move |p| (p, e)))
            .filter(|(prefix, _)| path_has_prefix(&path, prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, e)| e.clone()),
        Err(_) => None,
    };
    let json = wants_json(header(&req, "accept").as_deref());
    let Some(entry) = entry else {
        if let Err(err) = rooms {
            return unavailable(err, json);
        }
        return forward(req, config, None, &[]).await;
    };
    match decide(&req, env, config, &entry, now).await {
        Ok(Decision::Through { place, cookies }) => {
            let visitor = place.map(|p| (entry.record.id.clone(), p));
            forward(req, config, visitor, &cookies).await
        }
        Ok(Decision::Wait(answer)) => waiting(config, &entry.record.id, &answer, json),
        Err(err) if err.code == ErrorCode::StoreUnavailable => unavailable(err, json),
        Err(err) => Err(err),
    }
}

fn waiting(config: &Config, room: &RoomId, answer: &Answer, json: bool) -> Outcome<Response> {
    let mut response = if json {
        crate::edge::respond::json(&answer.body).map_err(internal)?
    } else {
        let mut r = Response::from_html(waiting_page(room, &answer.body, &config.prefix))
            .map_err(internal)?;
        r.headers_mut()
            .set("cache-control", "no-store")
            .map_err(internal)?;
        r
    };
    let headers = response.headers_mut();
    headers
        .set("x-queuegate-status", "waiting")
        .map_err(internal)?;
    for cookie in &answer.set_cookies {
        headers.append("set-cookie", cookie).map_err(internal)?;
    }
    Ok(response)
}

fn unavailable(err: ApiError, json: bool) -> Outcome<Response> {
    worker::console_error!("the gate is closed: {}", err.message);
    if json {
        return api_error(&err).map_err(internal);
    }
    let mut response = Response::from_html(unavailable_page(2))
        .map_err(internal)?
        .with_status(503);
    let headers = response.headers_mut();
    headers.set("cache-control", "no-store").map_err(internal)?;
    headers.set("retry-after", "2").map_err(internal)?;
    headers
        .set("x-queuegate-status", "unavailable")
        .map_err(internal)?;
    Ok(response)
}

/// Forwards the request to the upstream (or answers with a small demo page without one).
async fn forward(
    mut req: Request,
    config: &Config,
    visitor: Option<(RoomId, Place)>,
    set_cookies: &[String],
) -> Outcome<Response> {
    let mut response = match &config.upstream {
        None => {
            let ticket_id = visitor.as_ref().map(|(_, place)| place.ticket_id());
            let visitor = visitor
                .as_ref()
                .zip(ticket_id.as_deref())
                .map(|((room, _), id)| (room, id));
            let mut page =
                Response::from_html(demo_page(&config.prefix, visitor)).map_err(internal)?;
            page.headers_mut()
                .set("cache-control", "no-store")
                .map_err(internal)?;
            page
        }
        Some(upstream) => {
            let url = req.url().map_err(internal)?;
            let target = match url.query() {
                Some(q) => format!("{upstream}{}?{q}", url.path()),
                None => format!("{upstream}{}", url.path()),
            };
            let headers = Headers::new();
            for (name, value) in req.headers().entries() {
                match name.as_str() {
                    "cookie" => {
                        let kept: Vec<&str> = value
                            .split(';')
                            .map(str::trim)
                            .filter(|p| !p.is_empty() && !p.starts_with("qg_"))
                            .collect();
                        if !kept.is_empty() {
                            headers.set("cookie", &kept.join("; ")).map_err(internal)?;
                        }
                    }
                    "host" | "x-queuegate-room" | "x-queuegate-visitor" => {}
                    _ => headers.append(&name, &value).map_err(internal)?,
                }
            }
            if let Some((room, place)) = &visitor {
                headers
                    .set("x-queuegate-room", room.as_str())
                    .map_err(internal)?;
                headers
                    .set("x-queuegate-visitor", &place.ticket_id())
                    .map_err(internal)?;
            }
            let method = req.method();
            let mut init = RequestInit::new();
            init.with_method(method.clone()).with_headers(headers);
            if method != Method::Get && method != Method::Head {
                let bytes = req.bytes().await.map_err(internal)?;
                init.with_body(Some(JsValue::from(worker::js_sys::Uint8Array::from(
                    bytes.as_slice(),
                ))));
            }
            let upstream_req = Request::new_with_init(&target, &init).map_err(internal)?;
            let fetched = Fetch::Request(upstream_req).send().await.map_err(|e| {
                ApiError::new(
                    ErrorCode::UpstreamUnavailable,
                    format!("the upstream could not be reached: {e}"),
                )
            })?;
            // A fetched response's headers are immutable: copy them into a new response.
            let status = fetched.status_code();
            let copied = Headers::new();
            for (name, value) in fetched.headers().entries() {
                copied.append(&name, &value).map_err(internal)?;
            }
            let (_, body) = fetched.into_parts();
            Response::builder()
                .with_status(status)
                .with_headers(copied)
                .body(body)
        }
    };
    if !set_cookies.is_empty() {
        let headers = response.headers_mut();
        headers.set("cache-control", "no-store").map_err(internal)?;
        for cookie in set_cookies {
            headers.append("set-cookie", cookie).map_err(internal)?;
        }
    }
    Ok(response)
}
