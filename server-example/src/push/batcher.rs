//! Batching of push notices: at most one notification per user per window.
//!
//! A pure state machine (time is an argument, as in `quinn-proto`): the first notice for a user
//! opens a window of `window` length; notices during the window only add to its count; when the
//! window ends, [`PushBatcher::take_due`] hands out one [`Batch`] ("N new messages") and the next
//! notice opens a new window.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Distinct chats remembered per batch (the count keeps counting past it).
pub const BATCH_CHATS_MAX: usize = 16;

/// What one user gets at the end of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The recipient.
    pub user_id: u64,
    /// New messages in the window.
    pub count: u32,
    /// Their chats, in order of first notice, at most [`BATCH_CHATS_MAX`].
    pub chat_ids: Vec<String>,
}

#[derive(Debug)]
struct Pending {
    deadline_ms: u64,
    count: u32,
    chat_ids: Vec<String>,
}

/// Pending notices by user.
#[derive(Debug)]
pub struct PushBatcher {
    window_ms: u64,
    pending: HashMap<u64, Pending>,
    /// (deadline, user) for every pending user.
    deadlines: BTreeSet<(u64, u64)>,
}

impl PushBatcher {
    /// A batcher with windows of `window`.
    ///
    /// # Panics
    /// If `window` is zero.
    pub fn new(window: Duration) -> Self {
        assert!(!window.is_zero(), "a push window has a length");
        Self {
            window_ms: window.as_millis() as u64,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// Records a new message for `user_id` in `chat_id` at `now_ms`. Returns `true` if this
    /// opened a window (so the earliest deadline may have changed).
    pub fn add(&mut self, now_ms: u64, user_id: u64, chat_id: &str) -> bool {
        if let Some(p) = self.pending.get_mut(&user_id) {
            p.count = p.count.saturating_add(1);
            if p.chat_ids.len() < BATCH_CHATS_MAX && !p.chat_ids.iter().any(|c| c == chat_id) {
                p.chat_ids.push(chat_id.to_owned());
            }
            return false;
        }
        let deadline_ms = now_ms.saturating_add(self.window_ms);
        self.pending.insert(
            user_id,
            Pending {
                deadline_ms,
                count: 1,
                chat_ids: vec![chat_id.to_owned()],
            },
        );
        self.deadlines.insert((deadline_ms, user_id));
        assert_eq!(self.pending.len(), self.deadlines.len());
        true
    }

    /// When the earliest window ends.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// The batches whose window has ended by `now_ms`, earliest first.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<Batch> {
        let mut due = Vec::new();
        while let Some(&(deadline_ms, user_id)) = self.deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.deadlines.pop_first();
            due.push(self.batch(user_id));
        }
        due
    }

    /// Every pending batch, whatever its deadline (at shutdown).
    pub fn take_all(&mut self) -> Vec<Batch> {
        self.take_due(u64::MAX)
    }

    /// Drops `user_id`'s pending batch (they came online and got the messages live). Returns
    /// whether there was one.
    pub fn discard(&mut self, user_id: u64) -> bool {
        match self.pending.remove(&user_id) {
            Some(p) => {
                self.deadlines.remove(&(p.deadline_ms, user_id));
                true
            }
            None => false,
        }
    }

    /// Users with a pending batch.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn batch(&mut self, user_id: u64) -> Batch {
        let p = self
            .pending
            .remove(&user_id)
            .expect("every deadline has a pending batch");
        Batch {
            user_id,
            count: p.count,
            chat_ids: p.chat_ids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_batch_per_user_per_window() {
        let mut b = PushBatcher::new(Duration::from_secs(30));
        assert!(b.add(1_000, 7, "a"));
        assert!(!b.add(2_000, 7, "b"));
        assert!(!b.add(3_000, 7, "a"));
        assert!(b.add(10_000, 8, "c"));
        assert_eq!(b.next_deadline_ms(), Some(31_000));
        assert!(b.take_due(30_999).is_empty());
        assert_eq!(
            b.take_due(31_000),
            vec![Batch {
                user_id: 7,
                count: 3,
                chat_ids: vec!["a".into(), "b".into()]
            }]
        );
        // A notice after the window opens a new one.
        assert!(b.add(31_500, 7, "z"));
        let due = b.take_due(100_000);
        assert_eq!(
            due.iter().map(|x| x.user_id).collect::<Vec<_>>(),
            vec![8, 7]
        );
        assert!(b.is_empty());
    }

    #[test]
    fn discard_and_take_all() {
        let mut b = PushBatcher::new(Duration::from_secs(30));
        b.add(0, 1, "a");
        b.add(0, 2, "a");
        assert!(b.discard(1));
        assert!(!b.discard(1));
        assert_eq!(b.take_all().len(), 1);
        assert_eq!(b.next_deadline_ms(), None);
    }

    #[test]
    fn chats_are_capped_but_counted() {
        let mut b = PushBatcher::new(Duration::from_secs(1));
        for i in 0..100 {
            b.add(0, 1, &format!("c{i}"));
        }
        let batch = b.take_all().pop().unwrap();
        assert_eq!(batch.count, 100);
        assert_eq!(batch.chat_ids.len(), BATCH_CHATS_MAX);
    }
}
