//! Keys verified against the database, remembered for `api_key_cache_ms` so that a request
//! (every PATCH of an upload) costs no database round trip for its key. A revoked key is
//! refused at the latest that long after its revocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vod_contracts::ApiKeyId;

use super::store::StoredKey;

pub struct KeyCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<ApiKeyId, (Instant, StoredKey)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The key as read less than the cache time ago.
    pub fn get(&self, key_id: ApiKeyId) -> Option<StoredKey> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&key_id)
            .filter(|(read_at, _)| read_at.elapsed() < self.ttl)
            .map(|(_, key)| key.clone())
    }

    /// Remembers a key just read. When full, the stale entries go first, then everything: the
    /// cache only saves round trips, it never decides.
    pub fn insert(&self, key_id: ApiKeyId, key: StoredKey) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (read_at, _)| read_at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key_id, (Instant::now(), key));
    }

    /// Forgets a key at once (revoked through this gateway).
    pub fn forget(&self, key_id: ApiKeyId) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vod_contracts::ProjectId;

    fn stored() -> StoredKey {
        StoredKey {
            project_id: ProjectId::new(),
            scopes: vec![],
            secret_sha256: vec![0; 32],
            revoked: false,
        }
    }

    #[test]
    fn a_key_is_remembered_for_the_cache_time_only() {
        let cache = KeyCache::new(Duration::from_millis(30), 10);
        let id = ApiKeyId::new();
        cache.insert(id, stored());
        assert!(cache.get(id).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn a_full_cache_stays_bounded_and_a_forgotten_key_is_read_again() {
        let cache = KeyCache::new(Duration::from_secs(60), 3);
        let ids: Vec<ApiKeyId> = (0..5).map(|_| ApiKeyId::new()).collect();
        for id in &ids {
            cache.insert(*id, stored());
        }
        let held = ids.iter().filter(|id| cache.get(**id).is_some()).count();
        assert!(held <= 3);
        assert!(cache.get(ids[4]).is_some());
        cache.forget(ids[4]);
        assert!(cache.get(ids[4]).is_none());
    }
}
