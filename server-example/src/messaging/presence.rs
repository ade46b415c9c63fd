//! Who is online, as contacts see it: [`PresenceTracker`].
//!
//! A user is online while they have a WebSocket connection, or for one heartbeat timeout after
//! each `PUT /api/v1/presence/online` (for clients without a WebSocket; repeat it to stay
//! online). `PUT /api/v1/presence/offline` ends the REST part at once. The tracker reports each
//! transition so that the caller can tell the user's contacts; it is a pure state machine (time
//! is an argument), and it forgets nothing but the REST deadline: `last_seen` is kept for every
//! user seen since the server started (it is not persisted: after a restart it is `null`
//! until the user is next seen).

use std::collections::HashMap;

use parking_lot::Mutex;

/// A user's presence as the tracker knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceState {
    /// Online now.
    pub online: bool,
    /// When the user was last online (ms since the epoch); `None` if not seen since start.
    pub last_seen_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// Open WebSocket connections.
    connections: u32,
    /// Online through REST until then (0: not).
    rest_until_ms: u64,
    /// Bumped by every REST change, so a stale expiry check does nothing.
    rest_generation: u64,
    /// When the user was last online.
    last_seen_ms: Option<u64>,
}

impl Entry {
    fn online(&self, now_ms: u64) -> bool {
        self.connections > 0 || self.rest_until_ms > now_ms
    }
}

/// What a call changed: whether the user went online or offline with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing visible changed.
    None,
    /// The user came online.
    Online,
    /// The user went offline at this time.
    Offline {
        /// ms since the epoch.
        last_seen_ms: u64,
    },
}

/// Presence of every user. All methods take `&self`.
#[derive(Debug, Default)]
pub struct PresenceTracker {
    users: Mutex<HashMap<u64, Entry>>,
}

impl PresenceTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn change(&self, user: u64, now_ms: u64, f: impl FnOnce(&mut Entry)) -> Transition {
        let mut users = self.users.lock();
        let entry = users.entry(user).or_default();
        let before = entry.online(now_ms);
        f(entry);
        let after = entry.online(now_ms);
        match (before, after) {
            (false, true) => Transition::Online,
            (true, false) => {
                entry.last_seen_ms = Some(now_ms);
                Transition::Offline {
                    last_seen_ms: now_ms,
                }
            }
            _ => Transition::None,
        }
    }

    /// A WebSocket connection of `user` opened.
    pub fn connect(&self, user: u64, now_ms: u64) -> Transition {
        self.change(user, now_ms, |e| e.connections += 1)
    }

    /// A WebSocket connection of `user` closed.
    ///
    /// # Panics
    /// If `user` has no open connection (a connect/disconnect mismatch is a bug).
    pub fn disconnect(&self, user: u64, now_ms: u64) -> Transition {
        self.change(user, now_ms, |e| {
            assert!(e.connections > 0, "disconnect without connect");
            e.connections -= 1;
        })
    }

    /// `PUT /presence/online`: online until `until_ms`. Returns the transition and the
    /// generation to pass to [`PresenceTracker::rest_expire`] at `until_ms`.
    pub fn rest_online(&self, user: u64, now_ms: u64, until_ms: u64) -> (Transition, u64) {
        let mut generation = 0;
        let transition = self.change(user, now_ms, |e| {
            e.rest_until_ms = until_ms;
            e.rest_generation += 1;
            generation = e.rest_generation;
        });
        (transition, generation)
    }

    /// `PUT /presence/offline`: the REST part ends now.
    pub fn rest_offline(&self, user: u64, now_ms: u64) -> Transition {
        self.change(user, now_ms, |e| {
            e.rest_until_ms = 0;
            e.rest_generation += 1;
        })
    }

    /// The REST deadline set by the call that returned `generation` has passed (no-op if a
    /// later call replaced it, or a WebSocket keeps the user online).
    pub fn rest_expire(&self, user: u64, generation: u64, now_ms: u64) -> Transition {
        let mut users = self.users.lock();
        let Some(e) = users.get_mut(&user) else {
            return Transition::None;
        };
        if e.rest_generation != generation || e.rest_until_ms == 0 {
            return Transition::None;
        }
        e.rest_until_ms = 0;
        if e.connections > 0 {
            return Transition::None;
        }
        e.last_seen_ms = Some(now_ms);
        Transition::Offline {
            last_seen_ms: now_ms,
        }
    }

    /// `user`'s presence at `now_ms`.
    pub fn state(&self, user: u64, now_ms: u64) -> PresenceState {
        let users = self.users.lock();
        match users.get(&user) {
            None => PresenceState {
                online: false,
                last_seen_ms: None,
            },
            Some(e) => {
                let online = e.online(now_ms);
                PresenceState {
                    online,
                    // A lapsed REST deadline is the last time they were seen.
                    last_seen_ms: if online {
                        Some(now_ms)
                    } else if e.rest_until_ms > 0 {
                        Some(e.rest_until_ms.max(e.last_seen_ms.unwrap_or(0)))
                    } else {
                        e.last_seen_ms
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_count_and_last_seen() {
        let p = PresenceTracker::new();
        assert_eq!(p.state(1, 0).last_seen_ms, None);
        assert_eq!(p.connect(1, 10), Transition::Online);
        assert_eq!(p.connect(1, 11), Transition::None);
        assert!(p.state(1, 12).online);
        assert_eq!(p.disconnect(1, 20), Transition::None);
        assert_eq!(
            p.disconnect(1, 30),
            Transition::Offline { last_seen_ms: 30 }
        );
        assert_eq!(
            p.state(1, 40),
            PresenceState {
                online: false,
                last_seen_ms: Some(30)
            }
        );
    }

    #[test]
    fn rest_presence_lapses_unless_renewed() {
        let p = PresenceTracker::new();
        let (t, first) = p.rest_online(1, 0, 100);
        assert_eq!(t, Transition::Online);
        let (t, second) = p.rest_online(1, 50, 150);
        assert_eq!(t, Transition::None);
        // The first deadline's check is stale.
        assert_eq!(p.rest_expire(1, first, 100), Transition::None);
        assert!(p.state(1, 120).online);
        assert_eq!(
            p.rest_expire(1, second, 150),
            Transition::Offline { last_seen_ms: 150 }
        );
        // A WebSocket keeps the user online through REST offline.
        p.connect(1, 200);
        p.rest_online(1, 200, 300);
        assert_eq!(p.rest_offline(1, 210), Transition::None);
        assert!(p.state(1, 220).online);
        assert_eq!(
            p.disconnect(1, 230),
            Transition::Offline { last_seen_ms: 230 }
        );
    }
}
