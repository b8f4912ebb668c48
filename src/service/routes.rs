//! Which room protects a request: among the rooms for its host (rooms that name hosts) and the
//! rooms for every host, the longest matching prefix wins, and at equal length a room that names
//! the host. Stores keep the table; the gate reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::room::{path_has_prefix, RoomId, RoomRecord};

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Prefixes with their rooms and the hosts they are for (empty: every host), longest first.
    entries: Vec<(String, Vec<String>, RoomId)>,
}

impl RouteTable {
    pub fn build(records: &[RoomRecord]) -> RouteTable {
        let mut entries: Vec<(String, Vec<String>, RoomId)> = records
            .iter()
            .flat_map(|r| {
                r.config
                    .paths
                    .iter()
                    .map(|p| (p.clone(), r.config.hosts.clone(), r.id.clone()))
            })
            .collect();
        // Longest first; at equal length a room naming hosts first; then by room id.
        entries.sort_by(|a, b| {
            b.0.len()
                .cmp(&a.0.len())
                .then_with(|| b.1.is_empty().cmp(&a.1.is_empty()).reverse())
                .then_with(|| a.2.cmp(&b.2))
        });
        RouteTable { entries }
    }

    /// The room for `path` on `host` (lowercase, without a port; `None` when the request named
    /// none, which only rooms for every host match).
    pub fn room_for(&self, host: Option<&str>, path: &str) -> Option<&RoomId> {
        self.entries
            .iter()
            .find(|(prefix, hosts, _)| {
                let host_ok =
                    hosts.is_empty() || host.is_some_and(|h| hosts.iter().any(|x| x == h));
                host_ok && path_has_prefix(path, prefix)
            })
            .map(|(_, _, room)| room)
    }
}

/// The current table, swapped whole when rooms change. Builds are numbered when they start
/// reading the rooms, and a build never replaces one that started later: a slow read of the
/// rooms cannot bring back a table older than the one a room change just put in place.
#[derive(Default)]
pub struct Routes {
    table: RwLock<(u64, Arc<RouteTable>)>,
    started: AtomicU64,
}

/// A build in progress, from [`Routes::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Build(u64);

impl Routes {
    pub fn current(&self) -> Arc<RouteTable> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Call before reading the rooms the table will be built from.
    pub fn begin(&self) -> Build {
        Build(self.started.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Puts the table in place unless a build that started later already did.
    pub fn finish(&self, build: Build, table: RouteTable) {
        let mut current = self.table.write().unwrap_or_else(|e| e.into_inner());
        if build.0 > current.0 {
            *current = (build.0, Arc::new(table));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::RoomConfig;

    fn record(id: &str, paths: &[&str]) -> RoomRecord {
        hosted(id, &[], paths)
    }

    fn hosted(id: &str, hosts: &[&str], paths: &[&str]) -> RoomRecord {
        RoomRecord {
            id: RoomId::parse(id).unwrap(),
            config: RoomConfig {
                paths: paths.iter().map(|p| p.to_string()).collect(),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                ..RoomConfig::default()
            },
            paused: false,
            epoch: 1,
            measured_rate: None,
            events: Default::default(),
            template: None,
            opens_at: None,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let table =
            RouteTable::build(&[record("all", &["/"]), record("shop", &["/shop", "/cart/"])]);
        let room = |p| table.room_for(None, p).map(|r| r.as_str().to_owned());
        assert_eq!(room("/shop/x").as_deref(), Some("shop"));
        assert_eq!(room("/cart").as_deref(), Some("shop"));
        assert_eq!(room("/shopping").as_deref(), Some("all"));
        assert_eq!(room("/").as_deref(), Some("all"));
        let none = RouteTable::build(&[record("shop", &["/shop"])]);
        assert!(none.room_for(None, "/other").is_none());
    }

    #[test]
    fn a_room_for_a_host_wins_there_and_only_there() {
        let table = RouteTable::build(&[
            record("all", &["/"]),
            hosted("a-shop", &["a.example"], &["/shop"]),
            hosted("b-site", &["b.example", "www.b.example"], &["/"]),
            record("any-shop", &["/shop"]),
        ]);
        let room = |h, p| table.room_for(h, p).map(|r| r.as_str().to_owned());
        assert_eq!(
            room(Some("a.example"), "/shop/x").as_deref(),
            Some("a-shop")
        );
        assert_eq!(
            room(Some("c.example"), "/shop/x").as_deref(),
            Some("any-shop")
        );
        assert_eq!(room(None, "/shop").as_deref(), Some("any-shop"));
        assert_eq!(room(Some("www.b.example"), "/x").as_deref(), Some("b-site"));
        // A longer prefix for every host beats a shorter one for this host.
        assert_eq!(
            room(Some("b.example"), "/shop").as_deref(),
            Some("any-shop")
        );
        assert_eq!(room(Some("a.example"), "/other").as_deref(), Some("all"));
    }

    #[test]
    fn a_slow_build_does_not_undo_a_newer_one() {
        let routes = Routes::default();
        let slow = routes.begin();
        let fast = routes.begin();
        routes.finish(fast, RouteTable::build(&[record("new", &["/new"])]));
        routes.finish(slow, RouteTable::build(&[]));
        assert!(routes.current().room_for(None, "/new").is_some());
    }
}
