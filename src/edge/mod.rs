//! The edge: queuegate as a Cloudflare Worker. The same public API, gate, waiting page and admin
//! API as the origin, with the queue in Durable Objects: one [`ShardObject`] per room shard (the
//! core's shard state machine, persisted as its operation log) and one [`Registry`] (rooms,
//! published shard summaries, the scheduler's lease). The origin's scheduler drives admission
//! through the admin API (`queuegate-origin schedule --edge URL`).
//!
//! Calls to Durable Objects, per request kind: a leave and a claim are one call to the visitor's
//! shard; a join is one call to its shard, shared with the other joins for that shard that
//! arrive while it is in flight ([`batch`]); a waiting visitor's poll is none (the isolate
//! answers from the signed ticket and the registry's summaries, read at most once a second per
//! isolate); a request through the gate with a live pass is none while the isolate checked the
//! session in the last second, else one.

mod batch;
mod handlers;
mod isolate;
mod protocol;
mod registry;
mod respond;
mod shard_object;

// The Durable Object classes, exported to the runtime by `#[durable_object]`.
pub use registry::Registry;
pub use shard_object::ShardObject;

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let now = worker::Date::now().as_millis();
    match handlers::route(req, &env, now).await {
        Ok(response) => Ok(response),
        Err(err) => {
            // What the server could not do is worth a line in the log (`wrangler tail`); what
            // the client did wrong is answered and forgotten.
            if err.status() >= 500 {
                worker::console_error!("{}: {}", err.code.as_str(), err.message);
            }
            respond::api_error(&err)
        }
    }
}
