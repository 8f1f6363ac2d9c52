//! jepsen-style-tests: process-level fault injection for ratequeue with Jepsen-style
//! history checkers (DESIGN.md §7, issue 7).
//!
//! The shape follows Jepsen: real `ratequeue` processes (`ratequeue-testkit`'s
//! `Cluster`, the same kit every crate's tests use), faults from a seeded
//! schedule (`nemesis`, `net`), clients that record what they saw (`client`,
//! `workload`, `history`), and checkers that are pure functions of the history
//! (`checker`). `run` ties one run together; `report` writes what a human reads.
//!
//! Nothing here is linked into the server: the harness only speaks HTTP to it and
//! signals its processes.

pub mod blocks;
pub mod checker;
pub mod cleanup;
pub mod client;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod run;
pub mod workload;

/// Parses `90s`, `5m`, `1500ms`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    if !(0.0..=86_400.0 * 7.0).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        assert_eq!(super::parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(
            super::parse_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(super::parse_duration("20"), Ok(Duration::from_secs(20)));
        assert!(super::parse_duration("3 parsecs").is_err());
    }
}
