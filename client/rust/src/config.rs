//! Configuration: node URLs and API key (arguments, else `RATEQUEUE_URL` and
//! `RATEQUEUE_API_KEY`), every delay and bound the client uses (`Timing`), and the
//! client-side checks of names and numbers so that bad input fails before any I/O.
//!
//! Must never do I/O beyond reading those environment variables (and the TLS ones:
//! `RATEQUEUE_CA_FILE`, `RATEQUEUE_CLIENT_CERT`, `RATEQUEUE_CLIENT_KEY`, see `TlsFiles`;
//! and `RATEQUEUE_HOLDER`) and asking the OS for the host name (`holder`).

use std::time::Duration;

use crate::error::Error;

/// Comma-separated node URLs: `http://10.0.0.1:7700,http://10.0.0.2:7700`.
pub const ENV_URL: &str = "RATEQUEUE_URL";
/// The bearer token sent with every request.
pub const ENV_API_KEY: &str = "RATEQUEUE_API_KEY";
/// A label for the leases of this process (`celery`, `nightly-export`), shown in the
/// dashboard's lease list as `<label>@<host>:<pid>`.
pub const ENV_HOLDER: &str = "RATEQUEUE_HOLDER";
/// PEM bundle of the CAs that node certificates must chain to (`https://` URLs); without
/// it the system's trust store is used.
pub const ENV_CA_FILE: &str = "RATEQUEUE_CA_FILE";
/// PEM certificate and key presented to nodes that require client certificates.
pub const ENV_CLIENT_CERT: &str = "RATEQUEUE_CLIENT_CERT";
pub const ENV_CLIENT_KEY: &str = "RATEQUEUE_CLIENT_KEY";

/// TLS settings of a client: which CAs to trust and which certificate to present.
/// Paths only: the files are read when the client is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Trust only the CAs in this PEM bundle (else the system's trust store).
    pub ca_file: Option<std::path::PathBuf>,
    /// Present this certificate (PEM, leaf first) with `client_key`.
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// The three `RATEQUEUE_*` variables, where set and not empty.
    pub fn from_env() -> TlsFiles {
        let path = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
        };
        TlsFiles {
            ca_file: path(ENV_CA_FILE),
            client_cert: path(ENV_CLIENT_CERT),
            client_key: path(ENV_CLIENT_KEY),
        }
    }
}

/// Where `ratequeue dev` listens: used when no URL is given at all.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7700";

/// The server's bounds (`ratequeue-core`), checked here before any I/O.
pub const LOAD_MAX: u64 = 1_000_000_000_000;
pub const TTL_MS_MIN: u64 = 100;
pub const TTL_MS_MAX: u64 = 24 * 3_600_000;
pub const WAIT_MS_MAX: u64 = 3_600_000;
pub const REQUEST_ID_LEN_MAX: usize = 128;
pub const NAME_LEN_MAX: usize = 128;
/// The server's bound on an acquire's `holder`: 1–128 characters of printable ASCII.
pub const HOLDER_LEN_MAX: usize = 128;
/// The host name's share of a holder, so that a label and the pid always fit.
const HOLDER_HOST_LEN_MAX: usize = 64;

/// Every delay and bound of the client. The defaults suit production; tests shorten them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long an acquire waits in the cluster's queue unless told otherwise.
    pub wait_default: Duration,
    /// TCP connect timeout of every attempt.
    pub connect_timeout: Duration,
    /// Whole-attempt timeout of short calls (release, renew, reads, resource writes).
    pub request_timeout: Duration,
    /// An acquire attempt's timeout is its `wait_ms` plus this, so the client never cuts
    /// a long poll short. Exceeds the server's 10 s commit timeout.
    pub acquire_timeout_margin: Duration,
    /// Whole-attempt timeout of membership changes (the server waits up to 60 s for a
    /// learner to catch up).
    pub membership_timeout: Duration,
    /// How long transient failures are retried (on top of an acquire's own wait).
    pub retry_budget: Duration,
    /// How long a release is retried; after that the lease lapses at its TTL.
    pub release_budget: Duration,
    /// At most this many attempts per call, whatever the budget.
    pub attempts_max: u32,
    /// At most this many redirects followed within one attempt.
    pub redirects_max: u32,
    /// Exponential backoff with full jitter: attempt n (from 1) sleeps a uniform time in
    /// `[0, min(backoff_max, backoff_initial * 2^(n-1))]`, and at least a server's
    /// `retry_after`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A permit renews when `ttl / renew_divisor` has passed since its last confirmation.
    pub renew_divisor: u32,
    /// …but never more often than this.
    pub renew_interval_min: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            wait_default: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            acquire_timeout_margin: Duration::from_secs(15),
            membership_timeout: Duration::from_secs(75),
            retry_budget: Duration::from_secs(30),
            release_budget: Duration::from_secs(10),
            attempts_max: 50,
            redirects_max: 5,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            renew_divisor: 3,
            renew_interval_min: Duration::from_millis(20),
        }
    }
}

impl Timing {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.attempts_max == 0 {
            return Err(Error::InvalidArgument(
                "Timing.attempts_max must be >= 1".into(),
            ));
        }
        if self.renew_divisor < 2 {
            return Err(Error::InvalidArgument(
                "Timing.renew_divisor must be >= 2".into(),
            ));
        }
        if self.backoff_initial > self.backoff_max {
            return Err(Error::InvalidArgument(
                "Timing.backoff_initial must not exceed backoff_max".into(),
            ));
        }
        Ok(())
    }
}

/// Splits and normalises node URLs: trimmed, trailing `/` dropped, duplicates removed
/// (order kept), each `http://` or `https://`.
pub fn parse_urls<I, S>(urls: I) -> Result<Vec<String>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    for group in urls {
        for part in group.as_ref().split(',') {
            let u = part.trim().trim_end_matches('/');
            if u.is_empty() {
                continue;
            }
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(Error::InvalidArgument(format!(
                    "node URL {u:?} must start with http:// or https://"
                )));
            }
            if reqwest::Url::parse(u).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "node URL {u:?} is not a valid URL"
                )));
            }
            if !out.iter().any(|x| x == u) {
                out.push(u.to_owned());
            }
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument("no ratequeue node URL given".into()));
    }
    Ok(out)
}

/// The node URLs from `RATEQUEUE_URL`, else the dev default.
pub fn urls_from_env() -> Result<Vec<String>, Error> {
    match std::env::var(ENV_URL) {
        Ok(v) if !v.trim().is_empty() => parse_urls([v]),
        _ => parse_urls([DEFAULT_URL]),
    }
}

/// The API key from `RATEQUEUE_API_KEY`, if set and not empty.
pub fn api_key_from_env() -> Option<String> {
    std::env::var(ENV_API_KEY)
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
}

/// The holder label from `RATEQUEUE_HOLDER`, if set and not empty (checked).
pub fn holder_label_from_env() -> Result<Option<String>, Error> {
    match std::env::var(ENV_HOLDER) {
        Ok(v) if !v.trim().is_empty() => {
            check_holder_label(v.trim()).map(|()| Some(v.trim().to_owned()))
        }
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidArgument(format!(
            "{ENV_HOLDER} must be 1-{HOLDER_LEN_MAX} characters of printable ASCII"
        ))),
    }
}

/// A holder label: 1–128 characters of printable ASCII (space to `~`), as the server
/// requires of `holder`.
pub fn check_holder_label(label: &str) -> Result<(), Error> {
    if !label.is_empty()
        && label.len() <= HOLDER_LEN_MAX
        && label.bytes().all(|b| (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "holder label must be 1-{HOLDER_LEN_MAX} characters of printable ASCII, got {label:?}"
        )))
    }
}

/// What an acquire sends as `holder`: `<label>@<host>:<pid>`, or `<host>:<pid>` without
/// a label. The host name is cut to 64 characters (anything but printable ASCII becomes
/// `?`) and the label to what then fits in the server's 128, so host and pid always
/// show. `label` must have passed `check_holder_label`.
pub fn holder(label: Option<&str>, host: &str, pid: u32) -> String {
    let host: String = host
        .chars()
        .take(HOLDER_HOST_LEN_MAX)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    let host = if host.is_empty() {
        "unknown-host".to_owned()
    } else {
        host
    };
    let place = format!("{host}:{pid}");
    match label {
        Some(l) => {
            let room = HOLDER_LEN_MAX - place.len() - 1;
            // Printable ASCII: every byte is a char boundary.
            format!("{}@{place}", &l[..l.len().min(room)])
        }
        None => place,
    }
}

/// This machine's host name (as `hostname` prints it), else `unknown-host`.
pub(crate) fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned())
    })
}

/// Names of resources, lanes and keys: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} name must be 1-{NAME_LEN_MAX} characters of [A-Za-z0-9._:-], got {name:?}"
        )))
    }
}

/// Lease ids are `{fencing_token}-{hex nonce}`; anything that would need escaping in a
/// path is refused here (the server would answer `lease_not_found`).
pub(crate) fn check_lease_id(id: &str) -> Result<(), Error> {
    if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("malformed lease id {id:?}")))
    }
}

pub(crate) fn check_load(what: &str, load: u64) -> Result<(), Error> {
    if load <= LOAD_MAX {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} must be at most {LOAD_MAX}, got {load}"
        )))
    }
}

/// A duration in whole milliseconds (rounded up), checked against `lo..=hi`.
pub(crate) fn duration_ms(what: &str, d: Duration, lo: u64, hi: u64) -> Result<u64, Error> {
    let ms = u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    if (lo..=hi).contains(&ms) {
        Ok(ms)
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} must be between {lo} ms and {hi} ms, got {ms} ms"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_normalised_and_checked() {
        let u = parse_urls(["http://a:1/, http://b:2 ,http://a:1", "https://c"]).unwrap();
        assert_eq!(u, ["http://a:1", "http://b:2", "https://c"]);
        assert!(parse_urls(["a:1"]).is_err());
        assert!(parse_urls([" , "]).is_err());
        assert!(parse_urls(Vec::<String>::new()).is_err());
    }

    #[test]
    fn names_and_numbers() {
        assert!(check_name("resource", "openai-gpt4:eu_1.x").is_ok());
        assert!(check_name("resource", "").is_err());
        assert!(check_name("resource", "a/b").is_err());
        assert!(check_name("resource", &"a".repeat(129)).is_err());
        assert!(check_lease_id("42-9f0c").is_ok());
        assert!(check_lease_id("../x").is_err());
        assert!(check_load("load", LOAD_MAX).is_ok());
        assert!(check_load("load", LOAD_MAX + 1).is_err());
        assert_eq!(
            duration_ms("ttl", Duration::from_micros(100_001), 100, 1000).unwrap(),
            101
        );
        assert!(duration_ms("ttl", Duration::from_millis(99), 100, 1000).is_err());
    }

    #[test]
    fn holder_is_label_at_host_and_pid_within_the_bound() {
        assert_eq!(holder(None, "worker-3", 4121), "worker-3:4121");
        assert_eq!(
            holder(Some("celery"), "worker-3", 4121),
            "celery@worker-3:4121"
        );
        // A long label is cut so that host and pid still show; a long host is cut to 64.
        let h = holder(Some(&"l".repeat(128)), &"h".repeat(100), u32::MAX);
        assert_eq!(h.len(), HOLDER_LEN_MAX);
        assert!(
            h.ends_with(&format!("@{}:{}", "h".repeat(64), u32::MAX)),
            "{h}"
        );
        assert_eq!(holder(None, "hôte\n", 7), "h?te?:7");
        assert_eq!(holder(None, "", 7), "unknown-host:7");
        for h in [holder(Some("x"), host_name(), std::process::id()), h] {
            check_holder_label(&h).unwrap();
        }
        assert!(check_holder_label("celery worker ~1").is_ok());
        assert!(check_holder_label("").is_err());
        assert!(check_holder_label("tab\there").is_err());
        assert!(check_holder_label("é").is_err());
        assert!(check_holder_label(&"a".repeat(129)).is_err());
    }

    #[test]
    fn default_timing_is_valid() {
        Timing::default().validate().unwrap();
        let t = Timing {
            attempts_max: 0,
            ..Timing::default()
        };
        assert!(t.validate().is_err());
        // The acquire margin must exceed the server's 10 s commit timeout.
        assert!(Timing::default().acquire_timeout_margin > Duration::from_secs(10));
    }
}
