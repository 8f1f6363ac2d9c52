//! API key records: create (a name is taken once; a hash belongs to one name), rotate
//! (a new secret for the same name and scope), delete, look-up by hash. Expiry is a
//! cluster time fixed when the create or rotate is applied.

use super::{Outcome, Rejection, State, Table};
use crate::keys::ApiKey;
use crate::{KEYS_MAX, KEY_EXPIRES_IN_MS_MAX};

impl State {
    fn expiry_at(&self, expires_in_ms: Option<u64>) -> Result<Option<u64>, Rejection> {
        match expires_in_ms {
            None => Ok(None),
            Some(ms) if (1..=KEY_EXPIRES_IN_MS_MAX).contains(&ms) => {
                Ok(Some(self.now_ms.saturating_add(ms)))
            }
            Some(_) => Err(Rejection::Invalid(format!(
                "expires_in_ms must be in 1..={KEY_EXPIRES_IN_MS_MAX}"
            ))),
        }
    }

    fn hash_taken_by_other(&self, hash: &str, name: &str) -> bool {
        self.key_by_hash
            .get(hash)
            .is_some_and(|other| other != name)
    }

    pub(super) fn create_key(&mut self, key: &ApiKey, expires_in_ms: Option<u64>) -> Outcome {
        if let Err(e) = key.validate() {
            return Outcome::Rejected(Rejection::Invalid(e));
        }
        let expires_at_ms = match self.expiry_at(expires_in_ms) {
            Ok(at) => at,
            Err(r) => return Outcome::Rejected(r),
        };
        if self.keys.contains_key(&key.name) {
            return Outcome::Rejected(Rejection::KeyExists);
        }
        if self.key_by_hash.contains_key(&key.hash) {
            return Outcome::Rejected(Rejection::Invalid("duplicate key hash".into()));
        }
        if self.keys.len() >= KEYS_MAX {
            return Outcome::Rejected(Rejection::TableFull(Table::Keys));
        }
        let record = ApiKey {
            expires_at_ms,
            ..key.clone()
        };
        self.key_by_hash
            .insert(record.hash.clone(), record.name.clone());
        self.keys.insert(record.name.clone(), record);
        Outcome::KeyPut { created: true }
    }

    pub(super) fn rotate_key(
        &mut self,
        name: &str,
        hash: &str,
        expires_in_ms: Option<u64>,
    ) -> Outcome {
        let expires_at_ms = match self.expiry_at(expires_in_ms) {
            Ok(at) => at,
            Err(r) => return Outcome::Rejected(r),
        };
        let Some(old) = self.keys.get(name) else {
            return Outcome::Rejected(Rejection::KeyNotFound);
        };
        let record = ApiKey {
            hash: hash.to_owned(),
            expires_at_ms,
            ..old.clone()
        };
        if let Err(e) = record.validate() {
            return Outcome::Rejected(Rejection::Invalid(e));
        }
        if self.hash_taken_by_other(hash, name) {
            return Outcome::Rejected(Rejection::Invalid("duplicate key hash".into()));
        }
        self.key_by_hash.remove(&old.hash);
        self.key_by_hash.insert(hash.to_owned(), name.to_owned());
        self.keys.insert(name.to_owned(), record);
        Outcome::KeyPut { created: false }
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

    /// The API key whose hex SHA-256 is `hash`, expired or not (see `ApiKey::expired`).
    pub fn key_by_hash(&self, hash: &str) -> Option<&ApiKey> {
        self.key_by_hash.get(hash).and_then(|n| self.keys.get(n))
    }

    pub fn key(&self, name: &str) -> Option<&ApiKey> {
        self.keys.get(name)
    }

    pub fn keys(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.values()
    }
}
