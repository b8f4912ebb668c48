//! Which room protects a path: the longest matching prefix wins. Stores keep the table; the gate
//! reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::room::{path_has_prefix, RoomId, RoomRecord};

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Prefixes with their rooms, longest first.
    entries: Vec<(String, RoomId)>,
}

impl RouteTable {
    pub fn build(records: &[RoomRecord]) -> RouteTable {
        let mut entries: Vec<(String, RoomId)> = records
            .iter()
            .flat_map(|r| r.config.paths.iter().map(|p| (p.clone(), r.id.clone())))
            .collect();
        // Longest first; equal prefixes in two rooms go to the room first by id.
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.1.cmp(&b.1)));
        RouteTable { entries }
    }

    pub fn room_for(&self, path: &str) -> Option<&RoomId> {
        self.entries
            .iter()
            .find(|(prefix, _)| path_has_prefix(path, prefix))
            .map(|(_, room)| room)
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
        RoomRecord {
            id: RoomId::parse(id).unwrap(),
            config: RoomConfig {
                paths: paths.iter().map(|p| p.to_string()).collect(),
                ..RoomConfig::default()
            },
            paused: false,
            epoch: 1,
            measured_rate: None,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let table =
            RouteTable::build(&[record("all", &["/"]), record("shop", &["/shop", "/cart/"])]);
        let room = |p| table.room_for(p).map(|r| r.as_str().to_owned());
        assert_eq!(room("/shop/x").as_deref(), Some("shop"));
        assert_eq!(room("/cart").as_deref(), Some("shop"));
        assert_eq!(room("/shopping").as_deref(), Some("all"));
        assert_eq!(room("/").as_deref(), Some("all"));
        let none = RouteTable::build(&[record("shop", &["/shop"])]);
        assert!(none.room_for("/other").is_none());
    }

    #[test]
    fn a_slow_build_does_not_undo_a_newer_one() {
        let routes = Routes::default();
        let slow = routes.begin();
        let fast = routes.begin();
        routes.finish(fast, RouteTable::build(&[record("new", &["/new"])]));
        routes.finish(slow, RouteTable::build(&[]));
        assert!(routes.current().room_for("/new").is_some());
    }
}
