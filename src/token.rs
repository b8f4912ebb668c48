//! Tickets and passes: compact, URL-safe, HMAC-SHA256 signed tokens.
//!
//! A ticket says where a visitor stands in a room's queue; a pass lets an admitted visitor through
//! the gate. Both are the same binary layout, base64url without padding:
//!
//! ```text
//! version(1) kind(1) kid_len(1) kid room_len(1) room epoch(4) shard(2) seq(8) time(8) expires_at(8) mac(16)
//! ```
//!
//! `time` is the join stamp in microseconds for a ticket and the issue time in milliseconds for
//! a pass. The MAC is HMAC-SHA256 over everything before it, truncated to 128 bits, and is
//! checked in constant time before any field is trusted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;

use crate::error::{ApiError, ErrorCode};
use crate::keys::SigningKeys;
use crate::room::RoomId;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
/// Tokens longer than this are refused before decoding: no real token comes near it.
pub const MAX_TOKEN_LEN: usize = 400;

/// A visitor's place in a room: the room's queue incarnation, the shard and the sequence number
/// in that shard. It identifies the visitor within the room.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Place {
    /// Changes when a room's queue is created anew, so that tickets of an earlier queue cannot
    /// claim a place in the new one.
    pub epoch: u32,
    pub shard: u16,
    /// 1-based sequence number within the shard.
    pub seq: u64,
}

impl Place {
    /// The visitor's id as the API shows it: `epoch-shard-seq`, epoch in hex.
    pub fn ticket_id(&self) -> String {
        format!("{:08x}-{}-{}", self.epoch, self.shard, self.seq)
    }

    pub fn parse_ticket_id(id: &str) -> Option<Place> {
        let mut parts = id.split('-');
        let epoch = parts.next()?;
        if epoch.len() != 8 {
            return None;
        }
        let epoch = u32::from_str_radix(epoch, 16).ok()?;
        let shard = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() || seq == 0 {
            return None;
        }
        Some(Place { epoch, shard, seq })
    }
}

/// A signed place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub room: RoomId,
    pub place: Place,
    /// Join stamp in microseconds; strictly increasing within a room's store, so it orders
    /// visitors across shards.
    pub joined_us: u64,
    /// Unix milliseconds after which the ticket is refused.
    pub expires_at: u64,
    /// A place in the infinite queue ([`crate::decoy`]), held by no store. Its MAC is made
    /// under a separate domain, so only the key holder can tell.
    pub decoy: bool,
}

/// What a decoy ticket's MAC covers before its bytes.
const DECOY_DOMAIN: &[u8] = b"queuegate decoy\0";

/// A signed permission to pass the gate, bound to a room and a ticket's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub room: RoomId,
    pub place: Place,
    /// Unix milliseconds when the pass was issued.
    pub issued_at: u64,
    /// Unix milliseconds after which the pass is refused.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ticket,
    Pass,
}

impl Kind {
    const fn byte(self) -> u8 {
        match self {
            Kind::Ticket => b'T',
            Kind::Pass => b'P',
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of ours: bad encoding, bad layout, unknown key, bad signature.
    Invalid,
    /// Genuine, but past its expiry.
    Expired,
    /// Genuine, but for another room.
    WrongRoom,
}

impl TokenError {
    pub fn for_ticket(self) -> ApiError {
        match self {
            TokenError::Invalid => ApiError::new(
                ErrorCode::InvalidTicket,
                "the ticket is malformed or its signature does not match",
            ),
            TokenError::Expired => ApiError::new(ErrorCode::TicketExpired, "the ticket expired"),
            TokenError::WrongRoom => ApiError::new(
                ErrorCode::TicketWrongRoom,
                "the ticket was issued for another room",
            ),
        }
    }

    pub fn for_pass(self) -> ApiError {
        match self {
            TokenError::Invalid => ApiError::new(
                ErrorCode::InvalidPass,
                "the pass is malformed or its signature does not match",
            ),
            TokenError::Expired => ApiError::new(ErrorCode::PassExpired, "the pass expired"),
            TokenError::WrongRoom => ApiError::new(
                ErrorCode::PassWrongRoom,
                "the pass was issued for another room",
            ),
        }
    }
}

/// The fields both token kinds share, in layout order.
struct Fields<'a> {
    kind: Kind,
    decoy: bool,
    room: &'a str,
    place: Place,
    time: u64,
    expires_at: u64,
}

impl Ticket {
    pub fn encode(&self, keys: &SigningKeys) -> String {
        encode(
            keys,
            &Fields {
                kind: Kind::Ticket,
                decoy: self.decoy,
                room: self.room.as_str(),
                place: self.place,
                time: self.joined_us,
                expires_at: self.expires_at,
            },
        )
    }

    /// Verifies the signature, the room and the expiry, in that order.
    pub fn decode(
        token: &str,
        keys: &SigningKeys,
        room: &RoomId,
        now: u64,
    ) -> Result<Ticket, TokenError> {
        let fields = decode(token, keys, Kind::Ticket, room, now)?;
        Ok(Ticket {
            room: room.clone(),
            place: fields.place,
            joined_us: fields.time,
            expires_at: fields.expires_at,
            decoy: fields.decoy,
        })
    }

    pub fn ticket_id(&self) -> String {
        self.place.ticket_id()
    }
}

impl Pass {
    pub fn encode(&self, keys: &SigningKeys) -> String {
        encode(
            keys,
            &Fields {
                kind: Kind::Pass,
                decoy: false,
                room: self.room.as_str(),
                place: self.place,
                time: self.issued_at,
                expires_at: self.expires_at,
            },
        )
    }

    /// Verifies the signature, the room and the expiry, in that order.
    pub fn decode(
        token: &str,
        keys: &SigningKeys,
        room: &RoomId,
        now: u64,
    ) -> Result<Pass, TokenError> {
        let fields = decode(token, keys, Kind::Pass, room, now)?;
        Ok(Pass {
            room: room.clone(),
            place: fields.place,
            issued_at: fields.time,
            expires_at: fields.expires_at,
        })
    }

    /// Whether the pass is past the half of its life, when activity should renew the session.
    pub fn wants_renewal(&self, now: u64) -> bool {
        let life = self.expires_at.saturating_sub(self.issued_at);
        now >= self.issued_at.saturating_add(life / 2)
    }
}

/// Whether a token is a pass rather than a ticket, judged from its kind byte alone (before any
/// verification): used only to route a bearer token to the right decoder.
pub fn looks_like_pass(token: &str) -> bool {
    let mut head = [0u8; 3];
    // Three base64 characters hold the first two bytes.
    token.len() >= 4
        && URL_SAFE_NO_PAD
            .decode_slice(&token.as_bytes()[..4], &mut head)
            .is_ok()
        && head[1] == Kind::Pass.byte()
}

fn encode(keys: &SigningKeys, f: &Fields<'_>) -> String {
    let key = keys.signer();
    let kid = key.kid().as_bytes();
    let mut buf = Vec::with_capacity(3 + kid.len() + 1 + f.room.len() + 30 + MAC_LEN);
    buf.push(VERSION);
    buf.push(f.kind.byte());
    buf.push(kid.len() as u8);
    buf.extend_from_slice(kid);
    buf.push(f.room.len() as u8);
    buf.extend_from_slice(f.room.as_bytes());
    buf.extend_from_slice(&f.place.epoch.to_be_bytes());
    buf.extend_from_slice(&f.place.shard.to_be_bytes());
    buf.extend_from_slice(&f.place.seq.to_be_bytes());
    buf.extend_from_slice(&f.time.to_be_bytes());
    buf.extend_from_slice(&f.expires_at.to_be_bytes());
    let mut mac = key.mac();
    if f.decoy {
        mac.update(DECOY_DOMAIN);
    }
    mac.update(&buf);
    let tag = mac.finalize().into_bytes();
    buf.extend_from_slice(&tag[..MAC_LEN]);
    URL_SAFE_NO_PAD.encode(buf)
}

fn decode<'r>(
    token: &str,
    keys: &SigningKeys,
    kind: Kind,
    room: &'r RoomId,
    now: u64,
) -> Result<Fields<'r>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TokenError::Invalid)?;
    if raw.len() < MAC_LEN {
        return Err(TokenError::Invalid);
    }
    let (signed, tag) = raw.split_at(raw.len() - MAC_LEN);
    let mut r = Reader(signed);
    if r.u8()? != VERSION {
        return Err(TokenError::Invalid);
    }
    let kind_byte = r.u8()?;
    let kid_len = r.u8()? as usize;
    let kid = r.bytes(kid_len)?;
    let key = keys.find(kid).ok_or(TokenError::Invalid)?;
    let mut mac = key.mac();
    mac.update(signed);
    let decoy = match mac.verify_truncated_left(tag) {
        Ok(()) => false,
        // Only tickets are ever decoys: a pass under the decoy domain is no pass.
        Err(_) if kind == Kind::Ticket => {
            let mut mac = key.mac();
            mac.update(DECOY_DOMAIN);
            mac.update(signed);
            mac.verify_truncated_left(tag)
                .map_err(|_| TokenError::Invalid)?;
            true
        }
        Err(_) => return Err(TokenError::Invalid),
    };
    // From here on the bytes are ours; a layout error now means a bug or a key compromise.
    if kind_byte != kind.byte() {
        return Err(TokenError::Invalid);
    }
    let room_len = r.u8()? as usize;
    let token_room = r.bytes(room_len)?;
    let place = Place {
        epoch: r.u32()?,
        shard: r.u16()?,
        seq: r.u64()?,
    };
    let time = r.u64()?;
    let expires_at = r.u64()?;
    if !r.0.is_empty() {
        return Err(TokenError::Invalid);
    }
    if token_room != room.as_str().as_bytes() {
        return Err(TokenError::WrongRoom);
    }
    if now >= expires_at {
        return Err(TokenError::Expired);
    }
    Ok(Fields {
        kind,
        decoy,
        room: room.as_str(),
        place,
        time,
        expires_at,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Invalid);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        let bytes = self.bytes(N)?;
        Ok(bytes.try_into().expect("length checked"))
    }

    fn u8(&mut self) -> Result<u8, TokenError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, TokenError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, TokenError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, TokenError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> SigningKeys {
        SigningKeys::parse("k1:0123456789abcdef0123456789abcdef").unwrap()
    }

    fn other_keys() -> SigningKeys {
        SigningKeys::parse("k1:ffffffffffffffffffffffffffffffff").unwrap()
    }

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }

    fn ticket(r: &str, epoch: u32, shard: u16, seq: u64, joined_us: u64, exp: u64) -> Ticket {
        Ticket {
            room: room(r),
            place: Place { epoch, shard, seq },
            joined_us,
            expires_at: exp,
            decoy: false,
        }
    }

    #[test]
    fn a_decoy_ticket_decodes_as_a_decoy_and_is_no_pass() {
        let mut t = ticket("demo", 1, 2, 3, 4, 1_000);
        t.decoy = true;
        let token = t.encode(&keys());
        assert_eq!(
            Ticket::decode(&token, &keys(), &room("demo"), 0),
            Ok(t.clone())
        );
        // The same fields without the flag make another MAC: nothing in the bytes tells.
        let plain = Ticket { decoy: false, ..t }.encode(&keys());
        assert_eq!(plain.len(), token.len());
        assert_ne!(plain, token);
        assert!(
            !Ticket::decode(&plain, &keys(), &room("demo"), 0)
                .unwrap()
                .decoy
        );
    }

    fn room_id_strategy() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_-]{0,63}"
    }

    proptest! {
        #[test]
        fn ticket_round_trips(r in room_id_strategy(), epoch: u32, shard: u16, seq in 1u64.., joined: u64, exp in 1u64.., now in 0u64..) {
            prop_assume!(now < exp);
            let t = ticket(&r, epoch, shard, seq, joined, exp);
            let token = t.encode(&keys());
            prop_assert!(token.len() <= MAX_TOKEN_LEN);
            prop_assert_eq!(Ticket::decode(&token, &keys(), &room(&r), now), Ok(t));
        }

        #[test]
        fn pass_round_trips(r in room_id_strategy(), epoch: u32, shard: u16, seq in 1u64.., issued: u64, exp in 1u64.., now in 0u64..) {
            prop_assume!(now < exp);
            let p = Pass { room: room(&r), place: Place { epoch, shard, seq }, issued_at: issued, expires_at: exp };
            let token = p.encode(&keys());
            prop_assert!(looks_like_pass(&token));
            prop_assert_eq!(Pass::decode(&token, &keys(), &room(&r), now), Ok(p));
        }

        #[test]
        fn any_changed_byte_is_refused(seq in 1u64..1_000_000, index in 0usize..1000, flip in 1u8..=255) {
            let token = ticket("demo", 7, 1, seq, 5_000, 10_000).encode(&keys());
            let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
            let i = index % raw.len();
            raw[i] ^= flip;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert_eq!(Ticket::decode(&tampered, &keys(), &room("demo"), 0), Err(TokenError::Invalid));
        }

        #[test]
        fn any_changed_character_is_refused(index in 0usize..1000, replacement in "[A-Za-z0-9_-]") {
            let token = ticket("demo", 7, 1, 42, 5_000, 10_000).encode(&keys());
            let i = index % token.len();
            let mut chars: Vec<char> = token.chars().collect();
            let new = replacement.chars().next().unwrap();
            prop_assume!(chars[i] != new);
            chars[i] = new;
            let tampered: String = chars.into_iter().collect();
            // A change in the last character may only touch base64 padding bits, which decode
            // to the same bytes; the strict decoder refuses those too.
            prop_assert!(Ticket::decode(&tampered, &keys(), &room("demo"), 0).is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic_and_are_refused(s in ".{0,500}") {
            prop_assert!(Ticket::decode(&s, &keys(), &room("demo"), 0).is_err());
            prop_assert!(Pass::decode(&s, &keys(), &room("demo"), 0).is_err());
        }

        #[test]
        fn expiry_is_enforced(exp in 1u64..u64::MAX, after in 0u64..1_000_000) {
            let token = ticket("demo", 1, 0, 1, 0, exp).encode(&keys());
            let now = exp.saturating_add(after);
            prop_assert_eq!(Ticket::decode(&token, &keys(), &room("demo"), now), Err(TokenError::Expired));
            prop_assert!(Ticket::decode(&token, &keys(), &room("demo"), exp - 1).is_ok());
        }
    }

    #[test]
    fn another_key_is_refused() {
        let token = ticket("demo", 1, 0, 1, 0, 10).encode(&other_keys());
        assert_eq!(
            Ticket::decode(&token, &keys(), &room("demo"), 0),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn another_room_is_refused() {
        let token = ticket("a", 1, 0, 1, 0, 10).encode(&keys());
        assert_eq!(
            Ticket::decode(&token, &keys(), &room("b"), 0),
            Err(TokenError::WrongRoom)
        );
    }

    #[test]
    fn a_pass_is_not_a_ticket_and_back() {
        let keys = keys();
        let p = Pass {
            room: room("demo"),
            place: Place {
                epoch: 1,
                shard: 0,
                seq: 1,
            },
            issued_at: 0,
            expires_at: 10,
        };
        let pass = p.encode(&keys);
        let t = ticket("demo", 1, 0, 1, 0, 10).encode(&keys);
        assert!(!looks_like_pass(&t));
        assert_eq!(
            Ticket::decode(&pass, &keys, &room("demo"), 0),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            Pass::decode(&t, &keys, &room("demo"), 0),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn rotated_keys_still_verify_old_tokens() {
        let old = SigningKeys::parse("old:0123456789abcdef0123").unwrap();
        let rotated =
            SigningKeys::parse("new:aaaaaaaaaaaaaaaaaaaa,old:0123456789abcdef0123").unwrap();
        let token = ticket("demo", 1, 0, 1, 0, 10).encode(&old);
        assert!(Ticket::decode(&token, &rotated, &room("demo"), 0).is_ok());
        let retired = SigningKeys::parse("new:aaaaaaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(
            Ticket::decode(&token, &retired, &room("demo"), 0),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn ticket_ids_round_trip() {
        let place = Place {
            epoch: 0xdeadbeef,
            shard: 3,
            seq: 1234,
        };
        assert_eq!(place.ticket_id(), "deadbeef-3-1234");
        assert_eq!(Place::parse_ticket_id("deadbeef-3-1234"), Some(place));
        for bad in [
            "",
            "x",
            "deadbeef-3",
            "deadbeef-3-0",
            "beef-3-1",
            "deadbeef-3-1-1",
        ] {
            assert_eq!(Place::parse_ticket_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn renewal_after_half_life() {
        let p = Pass {
            room: room("demo"),
            place: Place {
                epoch: 1,
                shard: 0,
                seq: 1,
            },
            issued_at: 1000,
            expires_at: 3000,
        };
        assert!(!p.wants_renewal(1999));
        assert!(p.wants_renewal(2000));
    }
}
