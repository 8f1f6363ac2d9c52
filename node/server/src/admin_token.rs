//! The bootstrap admin token(s): kept only as SHA-256 digests, compared in constant
//! time, and — when they come from a file — reloaded without a restart.
//!
//! The file holds one token per line (blank lines and `#` comments ignored, at most
//! `ADMIN_TOKENS_MAX`), so a rotation can accept the old and the new token for a while:
//! write both, move the operators over, then write only the new one. The file is
//! re-read on SIGHUP and whenever its contents change (looked at every
//! `RELOAD_POLL`; a Kubernetes Secret mounted as a volume is updated in place by the
//! kubelet). A file that fails to read or parse keeps the tokens in force and logs why.
//! A token given in the environment (`RATEQUEUE_ADMIN_TOKEN`) is fixed for the
//! process's life.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Tokens accepted at once (a rotation needs two).
pub const ADMIN_TOKENS_MAX: usize = 4;
/// Shortest accepted token.
pub const ADMIN_TOKEN_LEN_MIN: usize = 8;
/// How often the token file is looked at for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(5);

type Digest32 = [u8; 32];

pub struct AdminTokens {
    digests: RwLock<Vec<Digest32>>,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTokens")
            .field("tokens", &self.count())
            .field("file", &self.file)
            .finish()
    }
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens in a token file's text.
pub fn parse(text: &str) -> anyhow::Result<Vec<String>> {
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        bail!("no admin token in it");
    }
    if tokens.len() > ADMIN_TOKENS_MAX {
        bail!("at most {ADMIN_TOKENS_MAX} admin tokens");
    }
    if tokens.iter().any(|t| t.len() < ADMIN_TOKEN_LEN_MIN) {
        bail!("admin tokens must be at least {ADMIN_TOKEN_LEN_MIN} characters");
    }
    Ok(tokens)
}

impl AdminTokens {
    /// One fixed token (from the environment, or a test).
    pub fn fixed(token: &str) -> anyhow::Result<AdminTokens> {
        let tokens = parse(token).context("admin token")?;
        Ok(AdminTokens {
            digests: RwLock::new(tokens.iter().map(|t| digest(t)).collect()),
            file: None,
        })
    }

    /// The tokens of `path`, reloaded by `watch`.
    pub fn from_file(path: &Path) -> anyhow::Result<AdminTokens> {
        let t = AdminTokens {
            digests: RwLock::new(Vec::new()),
            file: Some(path.to_owned()),
        };
        t.reload()?;
        Ok(t)
    }

    /// Whether `token` is one of the admin tokens. Compares digests, so neither the
    /// tokens' lengths nor their contents leak through timing.
    pub fn verify(&self, token: &str) -> bool {
        let d = digest(token);
        self.digests
            .read()
            .iter()
            .fold(0u8, |hit, known| hit | known.ct_eq(&d).unwrap_u8())
            == 1
    }

    /// How many tokens are accepted now.
    pub fn count(&self) -> usize {
        self.digests.read().len()
    }

    /// Re-reads the token file. `Ok(true)` if the tokens changed; an error keeps them.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading admin token file {}", path.display()))?;
        let tokens =
            parse(&text).with_context(|| format!("admin token file {}", path.display()))?;
        let new: Vec<Digest32> = tokens.iter().map(|t| digest(t)).collect();
        let mut cur = self.digests.write();
        if *cur == new {
            return Ok(false);
        }
        *cur = new;
        Ok(true)
    }

    /// Reloads the file on SIGHUP and when its contents change, until `stop`.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.file.is_none() {
            return;
        }
        #[cfg(unix)]
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; the admin token file is still polled");
                None
            }
        };
        let mut poll = tokio::time::interval(RELOAD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let sighup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<()>();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = sighup => {}
                _ = poll.tick() => {}
            }
            match self.reload() {
                Ok(true) => tracing::info!(tokens = self.count(), "admin token file reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "admin token file not reloaded; the current tokens stay in force")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_reload_from_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "old-token-123\n").unwrap();
        let t = AdminTokens::from_file(&path).unwrap();
        assert!(t.verify("old-token-123"));
        assert!(!t.verify("old-token-12"));
        // Rotation: both for a while, then only the new one.
        std::fs::write(&path, "# rotating\nold-token-123\nnew-token-456\n").unwrap();
        assert!(t.reload().unwrap());
        assert!(t.verify("old-token-123") && t.verify("new-token-456"));
        assert!(!t.reload().unwrap(), "unchanged contents");
        std::fs::write(&path, "new-token-456").unwrap();
        assert!(t.reload().unwrap());
        assert!(!t.verify("old-token-123") && t.verify("new-token-456"));
        // A broken file keeps what is in force.
        std::fs::write(&path, "short").unwrap();
        assert!(t.reload().is_err());
        assert!(t.verify("new-token-456"));
        std::fs::remove_file(&path).unwrap();
        assert!(t.reload().is_err());
        assert!(t.verify("new-token-456"));
    }

    #[test]
    fn a_fixed_token_is_checked_like_a_file() {
        assert!(AdminTokens::fixed("short").is_err());
        let t = AdminTokens::fixed("  padded-token  ").unwrap();
        assert!(t.verify("padded-token"));
        assert!(parse("a-token-1\na-token-2\na-token-3\na-token-4\na-token-5").is_err());
    }
}
