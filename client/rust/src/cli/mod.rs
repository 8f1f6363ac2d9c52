//! What every `rqctl` subcommand shares: the global flags, `--json` output, error
//! reporting with the API's error code, exit codes, and plain-text tables.
//!
//! Exit codes: 0 success; 1 an error (printed with its API code); 2 bad usage (clap);
//! `rqctl run`: the command's own status, 128+N if a signal N ended it, 75 when no slot
//! could be had for a temporary reason (a rejection, an unavailable cluster), 126/127
//! when the command could not be started.

pub mod key;
pub mod members;
pub mod progress;
pub mod resource;
pub mod run;
pub mod status;

use std::fmt::Write as _;

use ratequeue_client::{Client, Error};
use serde::Serialize;

pub const EXIT_ERROR: u8 = 1;
/// How long rqctl retries an unreachable or leaderless cluster.
pub const RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(15);
/// `EX_TEMPFAIL` (sysexits.h): try again later.
pub const EXIT_TEMPFAIL: u8 = 75;

#[derive(clap::Args)]
pub struct Global {
    /// Node URLs, comma-separated (any node: followers redirect to the leader).
    #[arg(long, global = true, env = "RATEQUEUE_URL", value_name = "URLS")]
    pub url: Option<String>,
    /// API key or admin token (sent as a bearer token).
    #[arg(long, global = true, env = "RATEQUEUE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CA bundle (PEM) that nodes' certificates must chain to, for https:// URLs
    /// (default: the system's trust store).
    #[arg(long, global = true, env = "RATEQUEUE_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for nodes that require one; needs --client-key.
    #[arg(
        long,
        global = true,
        env = "RATEQUEUE_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(
        long,
        global = true,
        env = "RATEQUEUE_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,
}

impl Global {
    pub fn client(&self) -> Result<Client, Failure> {
        // Interactive and scripted use: give up on an unreachable cluster sooner than a
        // service would (an election takes a few seconds).
        let timing = ratequeue_client::Timing {
            retry_budget: RETRY_BUDGET,
            ..ratequeue_client::Timing::default()
        };
        let mut b = Client::builder().timing(timing);
        if let Some(u) = self.url.as_ref().filter(|u| !u.trim().is_empty()) {
            b = b.url(u.clone());
        }
        if let Some(k) = self.api_key.as_ref().filter(|k| !k.trim().is_empty()) {
            b = b.api_key(k.clone());
        }
        b = b.tls(self.tls());
        b.build().or_fail(&Out::default())
    }

    /// The TLS flags (each also from its environment variable).
    pub fn tls(&self) -> ratequeue_client::TlsFiles {
        ratequeue_client::TlsFiles {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

/// `--json`: machine-readable output (and errors as JSON on stdout).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Out {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Out {
    pub fn print_json<T: Serialize + ?Sized>(&self, v: &T) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(v).or_fail(self)?;
        println!("{text}");
        Ok(())
    }
}

/// A failed subcommand: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub error: anyhow::Error,
    pub json: bool,
    pub exit: u8,
}

impl Failure {
    pub fn new(error: impl Into<anyhow::Error>, out: &Out) -> Failure {
        Failure {
            error: error.into(),
            json: out.json,
            exit: EXIT_ERROR,
        }
    }

    /// Prints the error (JSON on stdout with `--json`, text on stderr otherwise) and
    /// returns the exit code.
    pub fn report(&self) -> u8 {
        let api = self.error.downcast_ref::<Error>();
        if self.json {
            let v = error_json(api, &self.error);
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            );
        } else {
            eprintln!("rqctl: error: {}", describe(api, &self.error));
        }
        self.exit
    }
}

/// `code: message (HTTP status)` for API errors, the error chain otherwise.
pub fn describe(api: Option<&Error>, e: &anyhow::Error) -> String {
    match api {
        Some(Error::Api(a)) => a.to_string(),
        Some(Error::Unavailable { message }) => format!("unavailable: {message}"),
        Some(Error::Ambiguous {
            message,
            request_id,
        }) => match request_id {
            Some(id) => format!("ambiguous (request_id {id}): {message}"),
            None => format!("ambiguous: {message}"),
        },
        Some(Error::InvalidArgument(m)) => format!("invalid_argument: {m}"),
        _ => format!("{e:#}"),
    }
}

/// The API's error format, with the client's own codes for errors without an answer.
pub fn error_json(api: Option<&Error>, e: &anyhow::Error) -> serde_json::Value {
    let mut detail = serde_json::Map::new();
    let code = match api {
        Some(Error::Api(a)) => {
            detail.insert("status".into(), a.status.into());
            if let Some(d) = a.retry_after {
                detail.insert("retry_after_ms".into(), (d.as_millis() as u64).into());
            }
            if let Some(l) = a.limit {
                detail.insert("limit".into(), serde_json::to_value(l).unwrap_or_default());
            }
            if let Some(b) = a.bucket {
                detail.insert("bucket".into(), b.into());
            }
            a.code.as_str()
        }
        Some(Error::Unavailable { .. }) => "unavailable",
        Some(Error::Ambiguous { request_id, .. }) => {
            if let Some(id) = request_id {
                detail.insert("request_id".into(), id.clone().into());
            }
            "ambiguous"
        }
        Some(Error::InvalidArgument(_)) => "invalid_argument",
        Some(Error::Protocol(_)) => "protocol",
        _ => "error",
    };
    let message = match api {
        Some(Error::Api(a)) => a.message.clone(),
        Some(Error::Unavailable { message })
        | Some(Error::Ambiguous { message, .. })
        | Some(Error::InvalidArgument(message))
        | Some(Error::Protocol(message)) => message.clone(),
        _ => format!("{e:#}"),
    };
    detail.insert("code".into(), code.into());
    detail.insert("message".into(), message.into());
    serde_json::json!({ "error": detail })
}

pub trait OrFail<T> {
    fn or_fail(self, out: &Out) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrFail<T> for Result<T, E> {
    fn or_fail(self, out: &Out) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(e, out))
    }
}

/// A usage error found after parsing (e.g. conflicting flags).
pub fn usage(message: impl Into<String>, out: &Out) -> Failure {
    Failure::new(Error::InvalidArgument(message.into()), out)
}

/// A plain table: left-aligned columns two spaces apart, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<pad$}  ");
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `60000` -> `1m`, `1000` -> `1s`, `1500` -> `1500ms`.
pub fn window(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (unit, name) in UNITS {
        if ms >= unit && ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "ROLE"],
            &[
                vec!["1".into(), "leader".into()],
                vec!["10".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID  ROLE\n1   leader\n10  x\n");
    }

    #[test]
    fn windows_and_sizes() {
        assert_eq!(window(60_000), "1m");
        assert_eq!(window(1_000), "1s");
        assert_eq!(window(1_500), "1500ms");
        assert_eq!(window(7_200_000), "2h");
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn api_errors_print_their_code() {
        let e = Error::Api(ratequeue_client::ApiError {
            status: 404,
            code: ratequeue_client::ErrorCode::ResourceNotFound,
            message: "no such resource".into(),
            retry_after: None,
            limit: None,
            bucket: None,
        });
        let any = anyhow::Error::new(e.clone());
        assert_eq!(
            describe(Some(&e), &any),
            "resource_not_found: no such resource (HTTP 404)"
        );
        let j = error_json(Some(&e), &any);
        assert_eq!(j["error"]["code"], "resource_not_found");
        assert_eq!(j["error"]["status"], 404);
    }
}
