//! `rqctl resource put|get|list|delete`.
//!
//! `put` builds a `ResourceSpec` from shorthands (`--concurrency 10 --rpm 60 --tpm
//! 100000`), general `--rate PER:LIMIT/WINDOW_MS`, `--lane NAME=WEIGHT`, or takes the raw
//! body with `--json '<body>'` (`@FILE` reads a file, `-` stdin).

use std::io::Read as _;

use ratequeue_client::api::{self, Lane, Mode, Per, Rate, ResourceSpec};
use ratequeue_client::Client;

use super::{table, usage, window, Failure, OrFail, Out};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create or replace a resource.
    Put(PutArgs),
    /// Show one resource: config and live stats.
    Get {
        name: String,
        #[command(flatten)]
        out: Out,
    },
    /// List resources.
    List {
        #[command(flatten)]
        out: Out,
    },
    /// Delete a resource (its waiters get resource_not_found, its leases end).
    Delete {
        name: String,
        #[command(flatten)]
        out: Out,
    },
}

#[derive(clap::Args, Debug, Default)]
pub struct PutArgs {
    pub name: String,
    /// At most N leases held at once.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Requests per second (a per-request bucket of N per 1 s).
    #[arg(long, value_name = "N")]
    pub rps: Option<u64>,
    /// Requests per minute (a per-request bucket of N per 60 s).
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,
    /// Load (tokens) per second (a per-load bucket of N per 1 s).
    #[arg(long, value_name = "N")]
    pub tps: Option<u64>,
    /// Load (tokens) per minute (a per-load bucket of N per 60 s).
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,
    /// Any bucket: `request:100/1000` or `load:5000/60000` (LIMIT per WINDOW_MS).
    #[arg(long = "rate", value_name = "PER:LIMIT/WINDOW_MS")]
    pub rates: Vec<String>,
    /// Lane weight, repeatable: `--lane user-facing=3 --lane batch=1`.
    #[arg(long = "lane", value_name = "NAME=WEIGHT")]
    pub lanes: Vec<String>,
    /// TTL of leases that ask for none.
    #[arg(long, value_name = "MS")]
    pub default_ttl_ms: Option<u64>,
    /// Most waiters queued at once.
    #[arg(long, value_name = "N")]
    pub max_queue: Option<u32>,
    /// `enforce` (the default) or `dry_run`: grant every acquire at once and report what
    /// enforce would have done (docs/semantics.md, "Dry-run mode").
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// The raw JSON body instead of flags ('{"concurrency": 2}', @FILE or - for stdin).
    /// Alone, without a body: print the answer as JSON.
    #[arg(long, num_args = 0..=1, value_name = "BODY")]
    pub json: Option<Option<String>>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "enforce" => Ok(Mode::Enforce),
        "dry_run" | "dry-run" => Ok(Mode::DryRun),
        _ => Err(format!("mode must be enforce or dry_run, not {s:?}")),
    }
}

impl PutArgs {
    fn out(&self) -> Out {
        Out {
            json: self.json.is_some(),
        }
    }

    fn has_flags(&self) -> bool {
        self.concurrency.is_some()
            || self.rps.is_some()
            || self.rpm.is_some()
            || self.tps.is_some()
            || self.tpm.is_some()
            || !self.rates.is_empty()
            || !self.lanes.is_empty()
            || self.default_ttl_ms.is_some()
            || self.max_queue.is_some()
            || self.mode.is_some()
    }

    /// The body the flags (or `--json BODY`) describe.
    pub fn spec(&self) -> Result<ResourceSpec, String> {
        if let Some(Some(raw)) = &self.json {
            if self.has_flags() {
                return Err("give either --json BODY or limit flags, not both".into());
            }
            let text = read_body(raw)?;
            return serde_json::from_str(&text).map_err(|e| format!("--json body: {e}"));
        }
        let mut spec = ResourceSpec {
            concurrency: self.concurrency,
            default_ttl_ms: self.default_ttl_ms,
            max_queue: self.max_queue,
            mode: self.mode,
            ..ResourceSpec::default()
        };
        let shorthands = [
            (self.rps, Per::Request, 1_000),
            (self.rpm, Per::Request, 60_000),
            (self.tps, Per::Load, 1_000),
            (self.tpm, Per::Load, 60_000),
        ];
        for (limit, per, window_ms) in shorthands {
            if let Some(limit) = limit {
                spec.rate.push(Rate {
                    per,
                    limit,
                    window_ms,
                });
            }
        }
        for r in &self.rates {
            spec.rate.push(parse_rate(r)?);
        }
        for l in &self.lanes {
            let (name, weight) = l
                .split_once('=')
                .ok_or_else(|| format!("--lane {l:?}: want NAME=WEIGHT"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("--lane {l:?}: weight must be a number"))?;
            spec.lanes.insert(name.trim().to_owned(), Lane { weight });
        }
        if spec.concurrency.is_none() && spec.rate.is_empty() {
            return Err(
                "give at least one limit: --concurrency, --rps/--rpm/--tps/--tpm, \
                        --rate, or a raw --json body"
                    .into(),
            );
        }
        Ok(spec)
    }
}

fn read_body(raw: &str) -> Result<String, String> {
    if raw == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading stdin: {e}"))?;
        Ok(s)
    } else if let Some(path) = raw.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
    } else {
        Ok(raw.to_owned())
    }
}

/// `request:100/1000` or `load:5000/60000`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("--rate {s:?}: want PER:LIMIT/WINDOW_MS, e.g. request:60/60000");
    let (per, rest) = s.split_once(':').ok_or_else(bad)?;
    let (limit, window_ms) = rest.split_once('/').ok_or_else(bad)?;
    let per = match per.trim() {
        "request" | "requests" | "req" => Per::Request,
        "load" | "tokens" => Per::Load,
        _ => return Err(bad()),
    };
    let limit = limit.trim().parse().map_err(|_| bad())?;
    let window_ms = window_ms.trim().parse().map_err(|_| bad())?;
    Ok(Rate {
        per,
        limit,
        window_ms,
    })
}

pub async fn main(client: &Client, cmd: Cmd) -> Result<u8, Failure> {
    match cmd {
        Cmd::Put(args) => {
            let out = args.out();
            let spec = args.spec().map_err(|m| usage(m, &out))?;
            let r = client.put_resource(&args.name, &spec).await.or_fail(&out)?;
            if out.json {
                out.print_json(&r)?;
            } else {
                let verb = if r.created { "created" } else { "updated" };
                println!("{verb} resource {}: {}", r.name, limits_text(&spec));
            }
        }
        Cmd::Get { name, out } => {
            let r = client.get_resource(&name).await.or_fail(&out)?;
            if out.json {
                out.print_json(&r)?;
            } else {
                print!("{}", resource_text(&r));
            }
        }
        Cmd::List { out } => {
            let list = client.list_resources().await.or_fail(&out)?;
            if out.json {
                out.print_json(&api::ResourceList { resources: list })?;
            } else {
                print!("{}", list_text(&list));
            }
        }
        Cmd::Delete { name, out } => {
            client.delete_resource(&name).await.or_fail(&out)?;
            if out.json {
                out.print_json(&serde_json::json!({ "name": name, "deleted": true }))?;
            } else {
                println!("deleted resource {name}");
            }
        }
    }
    Ok(0)
}

fn rate_text(r: &Rate) -> String {
    let per = match r.per {
        Per::Request => "requests",
        Per::Load => "load",
    };
    format!("{} {per}/{}", r.limit, window(r.window_ms))
}

/// `concurrency 10, 60 requests/1m, 100000 load/1m`.
pub fn limits_text(spec: &ResourceSpec) -> String {
    let mut parts = Vec::new();
    if let Some(c) = spec.concurrency {
        parts.push(format!("concurrency {c}"));
    }
    parts.extend(spec.rate.iter().map(rate_text));
    if parts.is_empty() {
        "no limits".into()
    } else {
        parts.join(", ")
    }
}

fn lanes_text(spec: &ResourceSpec) -> String {
    if spec.lanes.is_empty() {
        return "-".into();
    }
    spec.lanes
        .iter()
        .map(|(n, l)| format!("{n}={}", l.weight))
        .collect::<Vec<_>>()
        .join(" ")
}

fn resource_text(r: &api::Resource) -> String {
    let c = &r.config;
    let queued: u64 = r.stats.queued.values().sum();
    let per_lane = r
        .stats
        .queued
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(l, n)| format!("{l}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let remaining = r
        .stats
        .limits
        .iter()
        .map(|l| format!("{} {}/{}", limit_kind(l.kind), l.remaining, l.limit))
        .collect::<Vec<_>>()
        .join(", ");
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let rows = vec![
        vec!["resource".into(), r.name.clone()],
        vec!["limits".into(), limits_text(c)],
        vec!["lanes".into(), lanes_text(c)],
        vec![
            "default ttl".into(),
            format!("{} ms", opt(c.default_ttl_ms)),
        ],
        vec!["max queue".into(), opt(c.max_queue.map(u64::from))],
        vec![
            "mode".into(),
            match c.mode {
                Some(Mode::DryRun) => "dry_run".into(),
                _ => "enforce".into(),
            },
        ],
        vec!["held".into(), r.stats.held.to_string()],
        vec![
            "queued".into(),
            if per_lane.is_empty() {
                queued.to_string()
            } else {
                format!("{queued} ({per_lane})")
            },
        ],
        vec!["grants".into(), r.stats.grants_total.to_string()],
        vec![
            "remaining".into(),
            if remaining.is_empty() {
                "-".into()
            } else {
                remaining
            },
        ],
    ];
    // Key/value lines: a table without its header row.
    table(&["", ""], &rows)
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}

fn limit_kind(k: api::LimitKind) -> &'static str {
    match k {
        api::LimitKind::Concurrency => "concurrency",
        api::LimitKind::Request => "requests",
        api::LimitKind::Load => "load",
        api::LimitKind::Provider => "provider",
    }
}

fn list_text(list: &[api::Resource]) -> String {
    if list.is_empty() {
        return "no resources\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                limits_text(&r.config),
                lanes_text(&r.config),
                r.stats.held.to_string(),
                r.stats.queued.values().sum::<u64>().to_string(),
                r.stats.grants_total.to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "LIMITS", "LANES", "HELD", "QUEUED", "GRANTS"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_build_buckets() {
        let a = PutArgs {
            name: "openai".into(),
            concurrency: Some(10),
            rpm: Some(60),
            tpm: Some(100_000),
            rps: Some(5),
            tps: Some(7),
            lanes: vec!["user-facing=3".into(), "batch=1".into()],
            rates: vec!["load:5000/1500".into()],
            default_ttl_ms: Some(10_000),
            max_queue: Some(50),
            ..PutArgs::default()
        };
        let s = a.spec().unwrap();
        assert_eq!(s.concurrency, Some(10));
        assert_eq!(
            s.rate,
            vec![
                Rate {
                    per: Per::Request,
                    limit: 5,
                    window_ms: 1_000
                },
                Rate {
                    per: Per::Request,
                    limit: 60,
                    window_ms: 60_000
                },
                Rate {
                    per: Per::Load,
                    limit: 7,
                    window_ms: 1_000
                },
                Rate {
                    per: Per::Load,
                    limit: 100_000,
                    window_ms: 60_000
                },
                Rate {
                    per: Per::Load,
                    limit: 5000,
                    window_ms: 1500
                },
            ]
        );
        assert_eq!(s.lanes["user-facing"].weight, 3);
        assert_eq!(s.default_ttl_ms, Some(10_000));
        assert_eq!(s.max_queue, Some(50));
        assert_eq!(
            limits_text(&s),
            "concurrency 10, 5 requests/1s, 60 requests/1m, 7 load/1s, 100000 load/1m, 5000 load/1500ms"
        );
    }

    #[test]
    fn raw_json_body() {
        let a = PutArgs {
            name: "x".into(),
            json: Some(Some(
                r#"{"concurrency": 2, "lanes": {"a": {"weight": 2}}}"#.into(),
            )),
            ..PutArgs::default()
        };
        let s = a.spec().unwrap();
        assert_eq!(s.concurrency, Some(2));
        let both = PutArgs {
            concurrency: Some(1),
            ..a
        };
        assert!(both.spec().is_err());
        let typo = PutArgs {
            name: "x".into(),
            json: Some(Some(r#"{"concurency": 2}"#.into())),
            ..PutArgs::default()
        };
        assert!(typo.spec().unwrap_err().contains("concurency"));
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(PutArgs {
            name: "x".into(),
            ..PutArgs::default()
        }
        .spec()
        .is_err());
        assert!(parse_rate("request:60").is_err());
        assert!(parse_rate("bytes:1/2").is_err());
        assert_eq!(parse_rate("req:60/60000").unwrap().limit, 60);
        let a = PutArgs {
            name: "x".into(),
            lanes: vec!["a".into()],
            concurrency: Some(1),
            ..PutArgs::default()
        };
        assert!(a.spec().is_err());
    }
}
