//! [`EventQueue`] on sled: the de-duplicating inbox and the ordered outbox of one channel.
//! Intake is the webhook's hot path, so it uses one insert-if-absent per event, outside the
//! writer lock; finishing an event is an atomic operation because it spans both trees. The two
//! cannot undo each other: intake only creates absent keys, and finishing only rewrites a key
//! that intake (or a redelivery) had already created.

use chrono::{DateTime, Utc};

use super::records::{decode, encode, tx, Abort, Inbox};
use super::SledStore;
use crate::store::{keys, EventQueue, InboundEvent, OutboundMessage, StoreError};

impl EventQueue for SledStore {
    fn record_inbound(&self, events: Vec<InboundEvent>) -> Result<Vec<InboundEvent>, StoreError> {
        if events.is_empty() {
            return Ok(events);
        }
        let mut fresh = Vec::with_capacity(events.len());
        let writing = self.commit.writing();
        for event in events {
            let slot = encode("inbox entry", &Inbox::Pending { event: &event })?;
            // Insert-if-absent: the key alone de-duplicates, so no transaction is needed.
            let absent: Option<&[u8]> = None;
            if self
                .inbox
                .compare_and_swap(event.key.as_bytes(), absent, Some(slot))?
                .is_ok()
            {
                fresh.push(event);
            }
        }
        // Wait even when every event was a duplicate: the first copy may still be unflushed,
        // and acknowledging the redelivery would let a crash lose the event.
        writing.wait()?;
        Ok(fresh)
    }

    fn pending_inbound(&self) -> Result<Vec<InboundEvent>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inbox.iter() {
            if let Inbox::Pending { event } = decode::<Inbox>("inbox entry", &kv?.1)? {
                out.push(event);
            }
        }
        out.sort_by(|a, b| {
            a.sender
                .cmp(&b.sender)
                .then(a.timestamp_ms.cmp(&b.timestamp_ms))
        });
        Ok(out)
    }

    /// Marks the event done and queues its replies in one atomic operation. An event already done
    /// queues nothing (a replayed processing step cannot send twice); an unknown key is recorded
    /// as done with its replies queued.
    fn finish_inbound(
        &self,
        key: &str,
        replies: Vec<OutboundMessage>,
    ) -> Result<Vec<u64>, StoreError> {
        // Ids and time are taken outside the closure, which must stay pure. Ids from sled's
        // persistent counter only grow, also across restarts, so outbox order is queue order.
        // (Two finishes racing for one recipient could commit out of id order; the processor
        // handles one sender's events one at a time, which rules that out.)
        let ids = replies
            .iter()
            .map(|_| self.db.generate_id())
            .collect::<Result<Vec<u64>, _>>()?;
        let done = encode("inbox entry", &Inbox::<()>::Done { at: Utc::now() })?;
        let bodies = replies
            .iter()
            .map(|r| encode("outbound message", r))
            .collect::<Result<Vec<_>, _>>()?;
        let writing = self.commit.writing();
        let queued = self
            .atomic
            .run([&self.inbox, &self.outbox], |[inbox, outbox]| {
                if let Some(raw) = inbox.get(key)? {
                    if let Inbox::Done { .. } = tx(decode::<Inbox>("inbox entry", &raw))? {
                        return Ok(Vec::new());
                    }
                }
                inbox.insert(key, done.as_slice())?;
                for (id, body) in ids.iter().zip(&bodies) {
                    outbox.insert(keys::outbox(*id), body.as_slice())?;
                }
                Ok(ids.clone())
            })?;
        writing.wait()?;
        Ok(queued)
    }

    fn pending_outbound(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id =
                    keys::read_u64(&k).ok_or_else(|| Abort::Corrupt("outbox key".into(), None))?;
                Ok((id, decode("outbound message", &v)?))
            })
            .collect()
    }

    fn finish_outbound(&self, id: u64) -> Result<(), StoreError> {
        let writing = self.commit.writing();
        self.outbox.remove(keys::outbox(id))?;
        writing.wait()
    }

    fn prune_inbound(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for kv in self.inbox.iter() {
            let (k, v) = kv?;
            if let Inbox::Done { at } = decode::<Inbox>("inbox entry", &v)? {
                // Compare-and-swap so a slot rewritten since we read it is left alone.
                if at < before
                    && self
                        .inbox
                        .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)?
                        .is_ok()
                {
                    pruned += 1;
                }
            }
        }
        if pruned > 0 {
            self.commit.wait()?;
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        (dir, store)
    }

    fn event(key: &str, sender: &str, ts: i64) -> InboundEvent {
        InboundEvent {
            key: key.into(),
            sender: sender.into(),
            timestamp_ms: ts,
            payload: serde_json::json!({"text": key}).into(),
        }
    }

    fn reply(to: &str, n: u32) -> OutboundMessage {
        OutboundMessage {
            recipient: "p1".into(),
            body: serde_json::json!({ "n": n }),
            in_reply_to: to.into(),
            attempts: 0,
        }
    }

    fn keys_of(events: &[InboundEvent]) -> Vec<&str> {
        events.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn inbox_slots_written_by_earlier_versions_still_read() {
        let pending = br#"{"state":"pending","event":{"key":"p:m1","sender":"7","timestamp_ms":3,"payload":{"message":{"mid":"m1","text":"hi"}}}}"#;
        let Inbox::Pending { event } = decode::<Inbox>("inbox entry", pending).unwrap() else {
            panic!("a pending slot reads as pending");
        };
        assert_eq!(
            event.payload.get(),
            r#"{"message":{"mid":"m1","text":"hi"}}"#
        );
        let done = br#"{"state":"done","at":"2026-11-01T10:00:00Z"}"#;
        assert!(matches!(
            decode::<Inbox>("inbox entry", done).unwrap(),
            Inbox::Done { .. }
        ));
        assert!(decode::<Inbox>("inbox entry", br#"{"state":"pending"}"#).is_err());
    }

    #[test]
    fn recording_skips_keys_seen_before_even_within_one_batch() {
        let (_d, store) = open();
        let new = store
            .record_inbound(vec![event("m1", "a", 1), event("m1", "a", 1)])
            .unwrap();
        assert_eq!(keys_of(&new), ["m1"]);
        let new = store
            .record_inbound(vec![event("m1", "a", 1), event("m2", "a", 2)])
            .unwrap();
        assert_eq!(keys_of(&new), ["m2"]);
    }

    #[test]
    fn pending_events_come_by_sender_then_time() {
        let (_d, store) = open();
        let batch = vec![
            event("x", "b", 5),
            event("y", "a", 9),
            event("z", "a", 3),
            event("w", "b", 1),
        ];
        store.record_inbound(batch).unwrap();
        assert_eq!(
            keys_of(&store.pending_inbound().unwrap()),
            ["z", "y", "w", "x"]
        );
    }

    #[test]
    fn finishing_an_event_queues_its_replies_in_order_once() {
        let (_d, store) = open();
        store.record_inbound(vec![event("m1", "a", 1)]).unwrap();
        let ids = store
            .finish_inbound("m1", vec![reply("m1", 0), reply("m1", 1)])
            .unwrap();
        assert!(ids[0] < ids[1]);
        assert!(store.pending_inbound().unwrap().is_empty());
        // A replayed processing step must not send the replies twice.
        assert!(store
            .finish_inbound("m1", vec![reply("m1", 2)])
            .unwrap()
            .is_empty());
        let queued = store.pending_outbound().unwrap();
        let order: Vec<_> = queued
            .iter()
            .map(|(id, m)| (*id, m.body["n"].as_u64()))
            .collect();
        assert_eq!(order, [(ids[0], Some(0)), (ids[1], Some(1))]);
        // A done event is still a duplicate for redeliveries.
        assert!(store
            .record_inbound(vec![event("m1", "a", 1)])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_delivered_reply_leaves_the_outbox() {
        let (_d, store) = open();
        let ids = store
            .finish_inbound("m1", vec![reply("m1", 0), reply("m1", 1)])
            .unwrap();
        store.finish_outbound(ids[0]).unwrap();
        let left: Vec<_> = store
            .pending_outbound()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(left, [ids[1]]);
    }

    #[test]
    fn pruning_forgets_only_done_events_older_than_the_cutoff() {
        let (_d, store) = open();
        store
            .record_inbound(vec![event("done", "a", 1), event("waiting", "a", 2)])
            .unwrap();
        store.finish_inbound("done", Vec::new()).unwrap();
        assert_eq!(
            store
                .prune_inbound(Utc::now() - Duration::hours(1))
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .prune_inbound(Utc::now() + Duration::seconds(1))
                .unwrap(),
            1
        );
        assert_eq!(keys_of(&store.pending_inbound().unwrap()), ["waiting"]);
        // Once pruned, the key counts as new again (Meta has stopped redelivering by then).
        assert_eq!(
            store
                .record_inbound(vec![event("done", "a", 1)])
                .unwrap()
                .len(),
            1
        );
    }
}
