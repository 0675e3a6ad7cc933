//! Who wrote on each chat channel lately ([`RecentSenders`]): one JSON list per channel under
//! `recent_senders:<channel>` in `meta`, written at a graceful stop (whose final flush puts it
//! on disk) and read at the next start. It is no one's data: not exported, and left as it is
//! by an import.

use super::records::{decode, encode};
use super::SledStore;
use crate::domain::Channel;
use crate::store::{RecentSenders, StoreError};
use chrono::{DateTime, Utc};

fn key(channel: Channel) -> String {
    format!("recent_senders:{}", channel.as_str())
}

impl RecentSenders for SledStore {
    fn keep_recent_senders(
        &self,
        channel: Channel,
        seen: &[(String, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        let meta = self.db.open_tree("meta")?;
        meta.insert(key(channel), encode("recent senders", &seen)?)?;
        Ok(())
    }

    fn recent_senders(&self, channel: Channel) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let meta = self.db.open_tree("meta")?;
        match meta.get(key(channel))? {
            Some(raw) => Ok(decode("recent senders", &raw)?),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn what_is_kept_for_a_channel_is_read_back_after_a_reopen_and_stays_apart_from_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let seen = vec![("6915800000000077".to_owned(), at), ("2".to_owned(), at)];
        {
            let store = SledStore::open(dir.path(), 8 << 20).unwrap();
            assert!(store.recent_senders(Channel::Messenger).unwrap().is_empty());
            store
                .keep_recent_senders(Channel::Messenger, &seen)
                .unwrap();
            store.close().unwrap();
        }
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.recent_senders(Channel::Messenger).unwrap(), seen);
        assert!(store.recent_senders(Channel::Manychat).unwrap().is_empty());
    }
}
