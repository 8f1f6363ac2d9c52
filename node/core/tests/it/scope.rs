//! The scope rules (`ratequeue_core::scope`): who may manage, read, see, acquire and
//! touch leases.

use ratequeue_core::{ApiKey, Caller, Denied, Role};

fn key(role: Role, resources: &[&str]) -> ApiKey {
    ApiKey::new(
        "k",
        &"a".repeat(64),
        role,
        resources.iter().map(|s| (*s).into()).collect(),
    )
}

#[test]
fn admins_may_do_everything() {
    for c in [Caller::AdminToken, Caller::Key(key(Role::Admin, &[]))] {
        assert!(c.is_admin());
        assert_eq!(c.may_manage(), Ok(()));
        assert_eq!(c.may_read_cluster(), Ok(()));
        assert!(c.may_see("anything") && c.sees_any());
        assert_eq!(c.may_acquire("anything", "any-lane", i32::MAX), Ok(()));
        assert_eq!(c.may_touch_lease(Some("someone-else")), Ok(()));
        assert_eq!(c.may_touch_lease(None), Ok(()));
        assert!(c.may_see_lease(Some("someone-else")) && c.may_see_lease(None));
        assert!(c.may_see_every_resource() && c.may_see_every_lease());
    }
    assert_eq!(Caller::AdminToken.owner(), None);
    assert_eq!(Caller::Key(key(Role::Admin, &[])).owner(), Some("k".into()));
}

/// Issue 15, observations 4 and 10: a client key sees and uses only the resources its
/// patterns name (nothing at all if they name nothing), only in its lanes, up to its
/// priority, touches only its own leases, and may not read the cluster.
#[test]
fn client_keys_are_confined_to_their_scope() {
    let k = ApiKey {
        lanes: vec!["batch-*".into()],
        priority_max: Some(20),
        ..key(Role::Client, &["demo", "openai-*"])
    };
    let c = Caller::Key(k);
    assert!(matches!(c.may_manage(), Err(Denied::NotAdmin { .. })));
    assert!(matches!(
        c.may_read_cluster(),
        Err(Denied::NoReadScope { .. })
    ));
    assert!(c.may_see("demo") && c.may_see("openai-gpt4") && !c.may_see("other"));
    assert!(c.may_read("other").is_err());
    assert_eq!(c.may_acquire("demo", "batch-1", 20), Ok(()));
    assert!(matches!(
        c.may_acquire("other", "batch-1", 1),
        Err(Denied::Resource { .. })
    ));
    assert!(matches!(
        c.may_acquire("demo", "user-facing", 1),
        Err(Denied::Lane { .. })
    ));
    let e = c.may_acquire("demo", "batch-1", i32::MAX).unwrap_err();
    assert_eq!(
        e,
        Denied::Priority {
            key: "k".into(),
            max: 20
        }
    );
    assert!(e.to_string().contains("at most 20"), "{e}");
    assert_eq!(c.may_touch_lease(Some("k")), Ok(()));
    assert!(matches!(
        c.may_touch_lease(Some("other")),
        Err(Denied::Lease { .. })
    ));
    assert!(matches!(c.may_touch_lease(None), Err(Denied::Lease { .. })));
    assert!(c.may_see_lease(Some("k")));
    assert!(!c.may_see_lease(Some("other")) && !c.may_see_lease(None));
    assert!(!c.may_see_every_resource() && !c.may_see_every_lease());

    let nothing = Caller::Key(key(Role::Client, &[]));
    assert!(!nothing.sees_any());
    assert!(!nothing.may_see("demo"));
}

#[test]
fn monitor_keys_read_everything_and_do_nothing() {
    let c = Caller::Key(key(Role::Monitor, &[]));
    assert_eq!(c.may_read_cluster(), Ok(()));
    assert!(c.may_see("anything") && c.sees_any());
    assert!(c.may_manage().is_err());
    assert!(matches!(
        c.may_acquire("anything", "default", 1),
        Err(Denied::ReadOnly { .. })
    ));
    assert!(matches!(
        c.may_touch_lease(Some("k")),
        Err(Denied::ReadOnly { .. })
    ));
    assert!(c.may_see_lease(Some("someone-else")) && c.may_see_lease(None));
    assert!(c.may_see_every_resource() && c.may_see_every_lease());
}
