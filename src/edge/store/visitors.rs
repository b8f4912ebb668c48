//! A visitor's operations over the Durable Objects: join (through the shard's join batching),
//! where a ticket stands, leave, and the session the gate checks.

use super::{session_key, shard_name, state_of, timing, DurableStore, Outcome};
use crate::edge::protocol::{
    EndReq, EndRes, JoinJob, LimitClientReq, LimitClientRes, PublishShardReq, RoomEntry, SeenReq,
    SessionReq, SessionRes, SpendReq, SpendRes, VisitReq, VisitRes,
};
use crate::edge::{batch, isolate};
use crate::limit::record::{LimitOp, Outcome as LimitOutcome};
use crate::limit::{ClientKey, JoinLimit};
use crate::queue::estimate_position;
use crate::service::Joined;
use crate::shard::user_hash;
use crate::shuffle::ShuffleSpec;
use crate::token::{Place, Ticket};
use crate::visitor::VisitorState;

/// The shard a key (a user id, a client, a single-use key) belongs to: the one Durable Object
/// that decides for it.
fn shard_of(entry: &RoomEntry, key: &str) -> u16 {
    (user_hash(key) % u64::from(entry.record.config.shards.max(1))) as u16
}

impl DurableStore {
    /// In the shard the client hashes to: one Durable Object keeps a client's allowance, so
    /// every isolate shares it.
    pub(super) async fn do_limit_client(
        &self,
        entry: &RoomEntry,
        client: ClientKey,
        limit: &JoinLimit,
        op: LimitOp,
        now: u64,
    ) -> Outcome<LimitOutcome> {
        let client = client.to_string();
        let shard = shard_of(entry, &client);
        let request = LimitClientReq {
            client,
            limit: *limit,
            op,
            now,
        };
        let res: LimitClientRes = self
            .call_shard(entry, shard, "limit_client", "limit_client", &request)
            .await?;
        Ok(res.outcome)
    }

    /// In the shard the key hashes to: one Durable Object decides, so a key is first once.
    pub(super) async fn do_spend_once(
        &self,
        entry: &RoomEntry,
        key: &str,
        until: u64,
        now: u64,
    ) -> Outcome<bool> {
        let shard = shard_of(entry, key);
        let request = SpendReq {
            key: key.to_owned(),
            until,
            now,
        };
        let res: SpendRes = self
            .call_shard(entry, shard, "spend", "spend", &request)
            .await?;
        Ok(res.first)
    }

    pub(super) async fn do_join(
        &self,
        entry: &RoomEntry,
        user: Option<&str>,
        hold: bool,
        now: u64,
    ) -> Outcome<Joined> {
        let shards = entry.record.config.shards;
        let shard = match user {
            Some(user) => shard_of(entry, user),
            None => batch::busy_shard((0..shards).map(|s| shard_name(entry, s)))
                .unwrap_or_else(|| isolate::next_shard(shards)),
        };
        let job = JoinJob {
            user: user.map(str::to_owned),
            stamp: isolate::next_stamp(now),
            hold,
        };
        let joined = batch::join(
            self.env(),
            &*self.platform,
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
        let state = state_of(
            entry,
            shard,
            joined.joined.standing,
            joined.ahead,
            joined.joined.stamp,
        );
        Ok(Joined {
            place,
            joined_us: joined.joined.stamp,
            state,
            existing: joined.joined.existing,
        })
    }

    /// Where a ticket's holder stands: from the published summary while waiting (no call), from
    /// the shard once admission reached the place.
    pub(super) async fn do_visit(
        &self,
        entry: &RoomEntry,
        ticket: &Ticket,
        now: u64,
    ) -> Outcome<VisitorState> {
        let place = ticket.place;
        let shard = usize::from(place.shard);
        // A place a shuffle or a draw moved is not where its ticket says: only the shard knows.
        let moved = ShuffleSpec::moved(&entry.record.events, ticket.joined_us, now);
        let summary = entry.summaries.get(shard);
        if let Some(summary) = summary.filter(|s| !moved && !s.moved_ahead) {
            if summary.left.contains(&place.seq) {
                return Ok(VisitorState::Left);
            }
            // A place beyond the summary's tail joined since it was read (or was never given
            // out): only the shard knows.
            if place.seq > summary.admitted_seq && place.seq <= summary.tail {
                let position =
                    estimate_position(&entry.summaries, shard, place.seq, ticket.joined_us);
                // The shard learns who was seen waiting a batch at a time, not a call a poll.
                let record = &entry.record;
                if let Some(seqs) =
                    isolate::note_seen(&record.id, record.epoch, place.shard, place.seq, now)
                {
                    let _: () = self
                        .call_shard(entry, place.shard, "seen", "seen", &SeenReq { seqs, now })
                        .await?;
                }
                return Ok(VisitorState::Waiting { position });
            }
        }
        let request = VisitReq {
            seq: place.seq,
            now,
            timing: timing(&entry.record.config),
        };
        let res: VisitRes = self
            .call_shard(entry, place.shard, "claim", "visit", &request)
            .await?;
        Ok(state_of(
            entry,
            place.shard,
            res.standing,
            res.ahead,
            res.stamp,
        ))
    }

    pub(super) async fn do_end(
        &self,
        entry: &RoomEntry,
        place: Place,
        now: u64,
    ) -> Outcome<Option<bool>> {
        let res: EndRes = self
            .call_shard(
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
        let _: () = self
            .call_registry("leave_publish", "publish_shard", &publish)
            .await?;
        isolate::outdate_rooms();
        isolate::remember_session(session_key(entry, place), None, now);
        Ok(res.ended)
    }

    pub(super) async fn do_session(
        &self,
        entry: &RoomEntry,
        place: Place,
        renew: bool,
        now: u64,
    ) -> Outcome<Option<u64>> {
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
        let res: SessionRes = self
            .call_shard(entry, place.shard, "gate_session", "session", &request)
            .await?;
        isolate::remember_session(key, res.expires_at, now);
        Ok(res.expires_at)
    }
}
