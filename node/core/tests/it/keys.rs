//! API key records: put/replace/delete, lookup by hash, resource globs.

use proptest::prelude::*;
use ratequeue_core::keys::glob_match;
use ratequeue_core::{ApiKey, Command, Outcome, Role};

use crate::check::{check, invalid};

fn hash(c: char) -> String {
    c.to_string().repeat(64)
}

fn key(name: &str, h: char, role: Role, resources: &[&str]) -> ApiKey {
    ApiKey {
        name: name.into(),
        hash: hash(h),
        role,
        resources: resources.iter().map(|s| (*s).into()).collect(),
    }
}

#[test]
fn put_replace_delete_and_lookup_by_hash() {
    let mut c = check(&[]);
    let workers = key("workers", 'a', Role::Client, &["openai-*"]);
    assert_eq!(
        c.apply(Command::PutKey(workers.clone())),
        Outcome::KeyPut { created: true }
    );
    assert_eq!(c.state.key_by_hash(&hash('a')), Some(&workers));
    assert_eq!(c.state.key_by_hash(&hash('b')), None);

    // Replace: new hash and scope; the old hash no longer authenticates.
    let rotated = key("workers", 'b', Role::Client, &["anthropic-*"]);
    assert_eq!(
        c.apply(Command::PutKey(rotated.clone())),
        Outcome::KeyPut { created: false }
    );
    assert_eq!(c.state.key_by_hash(&hash('a')), None);
    assert_eq!(c.state.key_by_hash(&hash('b')), Some(&rotated));
    // Replace keeping the hash (a scope change).
    let rescoped = key("workers", 'b', Role::Admin, &[]);
    assert_eq!(
        c.apply(Command::PutKey(rescoped.clone())),
        Outcome::KeyPut { created: false }
    );
    assert_eq!(c.state.key_by_hash(&hash('b')), Some(&rescoped));

    // Another name may not take a hash in use.
    invalid(c.apply(Command::PutKey(key("thief", 'b', Role::Admin, &[]))));
    assert_eq!(c.state.key_by_hash(&hash('b')), Some(&rescoped));

    let ops = key("ops", 'c', Role::Admin, &[]);
    c.apply(Command::PutKey(ops.clone()));
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
    // The freed hash can be used by another name now.
    assert_eq!(
        c.apply(Command::PutKey(key("thief", 'b', Role::Client, &[]))),
        Outcome::KeyPut { created: true }
    );
    assert_eq!(c.state.key_by_hash(&hash('c')), Some(&ops));
}

#[test]
fn bad_key_records_are_rejected() {
    let mut c = check(&[]);
    let mut k = key("workers", 'a', Role::Client, &[]);
    k.hash.pop();
    invalid(c.apply(Command::PutKey(k)));
    invalid(c.apply(Command::PutKey(key("bad name", 'a', Role::Client, &[]))));
    invalid(c.apply(Command::PutKey(key("", 'a', Role::Client, &[]))));
    assert_eq!(c.state.keys().count(), 0);
}

#[test]
fn globs_scope_client_keys_and_admins_see_everything() {
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
        assert_eq!(k.allows(r), want, "{r}");
    }
    let none = key("w", 'a', Role::Client, &[]);
    assert!(!none.allows("anything"));
    let admin = key("w", 'a', Role::Admin, &[]);
    assert!(admin.allows("anything"));
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
