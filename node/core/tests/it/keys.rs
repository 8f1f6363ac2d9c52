//! API key records: put/replace/delete, lookup by hash, resource globs.

use proptest::prelude::*;
use ratequeue_core::keys::glob_match;
use ratequeue_core::{ApiKey, Command, Outcome, Rejection, Role};

use crate::check::{check, invalid};

fn hash(c: char) -> String {
    c.to_string().repeat(64)
}

fn key(name: &str, h: char, role: Role, resources: &[&str]) -> ApiKey {
    ApiKey::new(
        name,
        &hash(h),
        role,
        resources.iter().map(|s| (*s).into()).collect(),
    )
}

fn create(k: &ApiKey) -> Command {
    Command::CreateKey {
        key: k.clone(),
        expires_in_ms: None,
    }
}

fn rotate(name: &str, h: char, expires_in_ms: Option<u64>) -> Command {
    Command::RotateKey {
        name: name.into(),
        hash: hash(h),
        expires_in_ms,
    }
}

/// Issue 15, observation 9: creating a key whose name exists is refused (it used to
/// replace the key, so a client key could become admin); an explicit rotate gives the
/// key a new secret and keeps its scope.
#[test]
fn create_refuses_a_taken_name_and_rotate_replaces_the_secret() {
    let mut c = check(&[]);
    let workers = key("workers", 'a', Role::Client, &["openai-*"]);
    assert_eq!(c.apply(create(&workers)), Outcome::KeyPut { created: true });
    assert_eq!(c.state.key_by_hash(&hash('a')), Some(&workers));
    assert_eq!(c.state.key_by_hash(&hash('b')), None);

    let takeover = key("workers", 'b', Role::Admin, &[]);
    assert_eq!(
        c.apply(create(&takeover)),
        Outcome::Rejected(Rejection::KeyExists)
    );
    assert_eq!(c.state.key("workers"), Some(&workers));
    assert_eq!(c.state.key_by_hash(&hash('b')), None);

    // Rotate: new hash, same scope; the old hash no longer authenticates.
    assert_eq!(
        c.apply(rotate("workers", 'b', None)),
        Outcome::KeyPut { created: false }
    );
    assert_eq!(c.state.key_by_hash(&hash('a')), None);
    let rotated = c.state.key_by_hash(&hash('b')).unwrap();
    assert_eq!(rotated.role, Role::Client);
    assert_eq!(rotated.resources, workers.resources);
    assert_eq!(
        c.apply(rotate("nobody", 'c', None)),
        Outcome::Rejected(Rejection::KeyNotFound)
    );

    // Another name may not take a hash in use, by create or by rotate.
    invalid(c.apply(create(&key("thief", 'b', Role::Admin, &[]))));
    let ops = key("ops", 'c', Role::Admin, &[]);
    c.apply(create(&ops));
    invalid(c.apply(rotate("ops", 'b', None)));
    assert_eq!(c.state.key_by_hash(&hash('c')), Some(&ops));
    let names: Vec<&str> = c.state.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(names, vec!["ops", "workers"]);

    assert_eq!(
        c.apply(Command::DeleteKey {
            name: "workers".into()
        }),
        Outcome::KeyDeleted { existed: true }
    );
    assert_eq!(c.state.key_by_hash(&hash('b')), None);
    assert_eq!(
        c.apply(Command::DeleteKey {
            name: "workers".into()
        }),
        Outcome::KeyDeleted { existed: false }
    );
    // The freed name and hash can be used again.
    assert_eq!(
        c.apply(create(&key("workers", 'b', Role::Client, &[]))),
        Outcome::KeyPut { created: true }
    );
    c.state.check_invariants().unwrap();
}

/// Keys expire in cluster time: `expires_in_ms` after the cluster time of the command
/// that created or rotated them, the same on every replica.
#[test]
fn keys_expire_in_cluster_time() {
    let mut c = check(&[]);
    c.at(5_000);
    let k = key("temp", 'a', Role::Client, &["*"]);
    c.apply(Command::CreateKey {
        key: ApiKey {
            // Whatever the command carries here is ignored.
            expires_at_ms: Some(1),
            ..k
        },
        expires_in_ms: Some(60_000),
    });
    let stored = c.state.key("temp").unwrap().clone();
    assert_eq!(stored.expires_at_ms, Some(65_000));
    assert!(!stored.expired(64_999));
    assert!(stored.expired(65_000));
    // A rotate sets the new secret's lifetime from its own cluster time; none: forever.
    c.at(10_000);
    c.apply(rotate("temp", 'b', Some(1_000)));
    assert_eq!(c.state.key("temp").unwrap().expires_at_ms, Some(11_000));
    c.apply(rotate("temp", 'c', None));
    assert_eq!(c.state.key("temp").unwrap().expires_at_ms, None);
    invalid(c.apply(rotate("temp", 'd', Some(0))));
    invalid(c.apply(Command::CreateKey {
        key: key("forever", 'e', Role::Client, &[]),
        expires_in_ms: Some(u64::MAX),
    }));
}

#[test]
fn bad_key_records_are_rejected() {
    let mut c = check(&[]);
    let mut k = key("workers", 'a', Role::Client, &[]);
    k.hash.pop();
    invalid(c.apply(create(&k)));
    invalid(c.apply(create(&key("bad name", 'a', Role::Client, &[]))));
    invalid(c.apply(create(&key("", 'a', Role::Client, &[]))));
    let mut k = key("w", 'a', Role::Client, &[]);
    k.waiters_max = 0;
    invalid(c.apply(create(&k)));
    let mut k = key("w", 'a', Role::Client, &[]);
    k.lanes = vec![String::new()];
    invalid(c.apply(create(&k)));
    let mut k = key("w", 'a', Role::Client, &[]);
    k.resources = vec!["*".into(); 65];
    invalid(c.apply(create(&k)));
    assert_eq!(c.state.keys().count(), 0);
}

#[test]
fn globs_name_resources_and_lanes() {
    let k = key("w", 'a', Role::Client, &["openai-*", "db-?", "exact"]);
    for (r, want) in [
        ("openai-gpt4", true),
        ("openai-", true),
        ("openai", false),
        ("db-1", true),
        ("db-12", false),
        ("exact", true),
        ("exact2", false),
        ("anthropic", false),
    ] {
        assert_eq!(k.names_resource(r), want, "{r}");
    }
    let none = key("w", 'a', Role::Client, &[]);
    assert!(!none.names_resource("anything"));
    assert!(none.names_lane("anything"), "no lane patterns: every lane");
    let lanes = ApiKey {
        lanes: vec!["batch-*".into()],
        ..none
    };
    assert!(lanes.names_lane("batch-1"));
    assert!(!lanes.names_lane("user-facing"));
}

/// Obviously-correct glob: recursion over the pattern.
fn glob_naive(p: &[u8], t: &[u8]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((b'*', rest)) => (0..=t.len()).any(|i| glob_naive(rest, &t[i..])),
        Some((&c, rest)) => !t.is_empty() && (c == b'?' || c == t[0]) && glob_naive(rest, &t[1..]),
    }
}

proptest! {
    #[test]
    fn glob_matches_the_naive_definition(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
        prop_assert_eq!(glob_match(&p, &t), glob_naive(p.as_bytes(), t.as_bytes()));
    }
}
