//! API key records and the resource glob patterns that scope them.
//!
//! Only the key's hash is ever stored (hashing happens in the shell); this module
//! decides what a key may do. It never sees the key text.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including resources, keys and membership.
    Admin,
    /// Acquire, release and renew on resources matching the key's patterns.
    Client,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub name: String,
    /// Hex SHA-256 of the key text.
    pub hash: String,
    pub role: Role,
    /// Glob patterns (`*` any run, `?` one character) over resource names.
    pub resources: Vec<String>,
}

impl ApiKey {
    /// Whether this key may use `resource` (admins may use every resource).
    pub fn allows(&self, resource: &str) -> bool {
        self.role == Role::Admin || self.resources.iter().any(|p| glob_match(p, resource))
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
