//! API key records: role, scope (resource and lane globs, highest priority), quotas
//! and expiry, and the glob patterns that scope them.
//!
//! Only the key's hash is ever stored (hashing happens in the shell); this module
//! never sees the key text. What a caller may do with a key is decided in `scope`.

use serde::{Deserialize, Serialize};

use crate::{KEY_IN_FLIGHT_MAX, KEY_PATTERNS_MAX, KEY_PATTERN_LEN_MAX, WAITERS_MAX};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including resources, keys and membership.
    Admin,
    /// Acquire, release and renew on resources matching the key's patterns, and read
    /// those resources.
    Client,
    /// Read only: cluster status, metrics and every resource's view. No leases.
    Monitor,
}

/// Waiters a key may have queued on the leader at once, unless it says otherwise.
pub const KEY_WAITERS_DEFAULT: u32 = 1_000;
/// Requests a key may have in flight on one node at once, unless it says otherwise.
pub const KEY_IN_FLIGHT_DEFAULT: u32 = 2_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub name: String,
    /// Hex SHA-256 of the key text.
    pub hash: String,
    pub role: Role,
    /// Glob patterns (`*` any run, `?` one character) over resource names.
    pub resources: Vec<String>,
    /// Glob patterns over lane names the key may queue in; empty: every lane.
    pub lanes: Vec<String>,
    /// The highest `priority` the key may ask for; `None`: any.
    pub priority_max: Option<i32>,
    /// Waiters the key may have queued on the leader at once, all resources together.
    pub waiters_max: u32,
    /// Requests the key may have in flight on one node at once.
    pub in_flight_max: u32,
    /// Cluster time at which the key stops authenticating; `None`: never. Set when the
    /// create or rotate command is applied (`now + expires_in_ms`), so every replica
    /// agrees on it.
    pub expires_at_ms: Option<u64>,
}

impl ApiKey {
    /// A key with the default lanes (all), priority (any), quotas and no expiry.
    pub fn new(name: &str, hash: &str, role: Role, resources: Vec<String>) -> ApiKey {
        ApiKey {
            name: name.to_owned(),
            hash: hash.to_owned(),
            role,
            resources,
            lanes: Vec::new(),
            priority_max: None,
            waiters_max: KEY_WAITERS_DEFAULT,
            in_flight_max: KEY_IN_FLIGHT_DEFAULT,
            expires_at_ms: None,
        }
    }

    /// Whether the key's patterns name `resource` (the role is not considered).
    pub fn names_resource(&self, resource: &str) -> bool {
        self.resources.iter().any(|p| glob_match(p, resource))
    }

    /// Whether the key may queue in `lane` (the role is not considered).
    pub fn names_lane(&self, lane: &str) -> bool {
        self.lanes.is_empty() || self.lanes.iter().any(|p| glob_match(p, lane))
    }

    /// Whether the key has expired at cluster time `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// Checks the record's fields against their bounds.
    pub fn validate(&self) -> Result<(), String> {
        crate::config::validate_name(&self.name).map_err(|e| format!("key {e}"))?;
        if self.hash.len() != 64 || !self.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("key hash must be 64 hex digits".into());
        }
        for (what, patterns) in [("resources", &self.resources), ("lanes", &self.lanes)] {
            if patterns.len() > KEY_PATTERNS_MAX
                || patterns
                    .iter()
                    .any(|p| p.is_empty() || p.len() > KEY_PATTERN_LEN_MAX)
            {
                return Err(format!(
                    "{what}: at most {KEY_PATTERNS_MAX} patterns of 1..={KEY_PATTERN_LEN_MAX} bytes"
                ));
            }
        }
        if self.waiters_max == 0 || self.waiters_max as usize > WAITERS_MAX {
            return Err(format!("max_waiters must be in 1..={WAITERS_MAX}"));
        }
        if self.in_flight_max == 0 || self.in_flight_max > KEY_IN_FLIGHT_MAX {
            return Err(format!("max_in_flight must be in 1..={KEY_IN_FLIGHT_MAX}"));
        }
        Ok(())
    }
}

/// Glob match with `*` (any run, possibly empty) and `?` (exactly one byte).
/// Iterative with single backtrack point: linear in practice, no recursion.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        let cases = [
            ("openai-*", "openai-gpt4", true),
            ("openai-*", "openai-", true),
            ("openai-*", "anthropic", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-gpt*", "openai-gpt4", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }
}
