//! API key records: put (a hash is unique to one name), delete, look-up by hash.

use super::{Outcome, Rejection, State, Table};
use crate::keys::ApiKey;
use crate::KEYS_MAX;

impl State {
    pub(super) fn put_key(&mut self, key: &ApiKey) -> Outcome {
        if crate::config::validate_name(&key.name).is_err() || key.hash.len() != 64 {
            return Outcome::Rejected(Rejection::Invalid("bad key name or hash".into()));
        }
        if let Some(other) = self.key_by_hash.get(&key.hash) {
            if other != &key.name {
                return Outcome::Rejected(Rejection::Invalid("duplicate key hash".into()));
            }
        }
        let created = !self.keys.contains_key(&key.name);
        if created && self.keys.len() >= KEYS_MAX {
            return Outcome::Rejected(Rejection::TableFull(Table::Keys));
        }
        if let Some(old) = self.keys.insert(key.name.clone(), key.clone()) {
            self.key_by_hash.remove(&old.hash);
        }
        self.key_by_hash.insert(key.hash.clone(), key.name.clone());
        Outcome::KeyPut { created }
    }

    pub(super) fn delete_key(&mut self, name: &str) -> Outcome {
        let existed = self.keys.remove(name);
        if let Some(k) = &existed {
            self.key_by_hash.remove(&k.hash);
        }
        Outcome::KeyDeleted {
            existed: existed.is_some(),
        }
    }

    /// The API key whose hex SHA-256 is `hash`.
    pub fn key_by_hash(&self, hash: &str) -> Option<&ApiKey> {
        self.key_by_hash.get(hash).and_then(|n| self.keys.get(n))
    }

    pub fn keys(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.values()
    }
}
