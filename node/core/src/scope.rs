//! Who may see and do what: the one place the API's permission and visibility rules
//! live. Every handler (API, dashboard, metrics) asks a `Caller` here; none decides
//! on its own.
//!
//! - The bootstrap admin token and `admin` keys may do everything.
//! - `client` keys may acquire on resources their patterns name, in the lanes their
//!   lane patterns name (all, if none), up to their `priority_max`; they see only
//!   those resources (nothing at all if their patterns name nothing), and touch only
//!   leases they acquired themselves (and see only those in listings). They may not
//!   read the cluster status or metrics.
//! - `monitor` keys may read the cluster status, the metrics and every resource's
//!   view, and nothing else.
//!
//! Pure: no I/O, no clock. Expiry is decided by the caller's lookup (`State::key_for`).

use std::fmt;

use crate::keys::{ApiKey, Role};

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The bootstrap admin token (from the node's configuration).
    AdminToken,
    Key(ApiKey),
}

/// Why a caller may not do something; the message names the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    NotAdmin {
        key: String,
    },
    /// Status and metrics need an admin or monitor key.
    NoReadScope {
        key: String,
    },
    Resource {
        key: String,
        resource: String,
    },
    Lane {
        key: String,
        lane: String,
    },
    Priority {
        key: String,
        max: i32,
    },
    /// The lease was acquired by another key.
    Lease {
        key: String,
    },
    /// Monitor keys hold no leases.
    ReadOnly {
        key: String,
    },
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::NotAdmin { key } => write!(f, "key {key:?} is not admin"),
            Denied::NoReadScope { key } => {
                write!(
                    f,
                    "key {key:?} may not read the cluster (needs role admin or monitor)"
                )
            }
            Denied::Resource { key, resource } => {
                write!(f, "key {key:?} may not use resource {resource:?}")
            }
            Denied::Lane { key, lane } => write!(f, "key {key:?} may not use lane {lane:?}"),
            Denied::Priority { key, max } => {
                write!(f, "key {key:?} may ask for priority at most {max}")
            }
            Denied::Lease { key } => {
                write!(f, "the lease was acquired by another key than {key:?}")
            }
            Denied::ReadOnly { key } => write!(f, "key {key:?} is read-only (role monitor)"),
        }
    }
}

impl Caller {
    /// The key's name; `None` for the admin token.
    pub fn key_name(&self) -> Option<&str> {
        match self {
            Caller::AdminToken => None,
            Caller::Key(k) => Some(&k.name),
        }
    }

    /// Whose a lease or a `request_id` is, as recorded in the replicated state: the key's
    /// name, or `None` for the admin token.
    pub fn owner(&self) -> Option<String> {
        self.key_name().map(str::to_owned)
    }

    /// A label for logs (never the token).
    pub fn label(&self) -> &str {
        self.key_name().unwrap_or("<admin-token>")
    }

    pub fn is_admin(&self) -> bool {
        match self {
            Caller::AdminToken => true,
            Caller::Key(k) => k.role == Role::Admin,
        }
    }

    fn role(&self) -> Role {
        match self {
            Caller::AdminToken => Role::Admin,
            Caller::Key(k) => k.role,
        }
    }

    fn denied_key(&self) -> String {
        self.label().to_owned()
    }

    /// Resources, keys and membership: admins only.
    pub fn may_manage(&self) -> Result<(), Denied> {
        if self.is_admin() {
            return Ok(());
        }
        Err(Denied::NotAdmin {
            key: self.denied_key(),
        })
    }

    /// `/v1/cluster/status` and `/metrics`: admins and monitors.
    pub fn may_read_cluster(&self) -> Result<(), Denied> {
        match self.role() {
            Role::Admin | Role::Monitor => Ok(()),
            Role::Client => Err(Denied::NoReadScope {
                key: self.denied_key(),
            }),
        }
    }

    /// Whether `resource` appears in this caller's listings and views.
    pub fn may_see(&self, resource: &str) -> bool {
        match self {
            Caller::AdminToken => true,
            Caller::Key(k) => match k.role {
                Role::Admin | Role::Monitor => true,
                Role::Client => k.names_resource(resource),
            },
        }
    }

    /// A resource's view: like `may_see`, with the reason when not.
    pub fn may_read(&self, resource: &str) -> Result<(), Denied> {
        if self.may_see(resource) {
            return Ok(());
        }
        Err(Denied::Resource {
            key: self.denied_key(),
            resource: resource.to_owned(),
        })
    }

    /// Whether every resource is in this caller's listings (admins and monitors), not
    /// only those its patterns name.
    pub fn may_see_every_resource(&self) -> bool {
        self.role() != Role::Client
    }

    /// Whether every lease is listed to this caller with its details (admins and
    /// monitors); a client key sees only its own (`may_see_lease`).
    pub fn may_see_every_lease(&self) -> bool {
        self.role() != Role::Client
    }

    /// Whether a lease acquired by `owner` (see `owner`) is listed to this caller with
    /// its details (holder label, lane, load, times); the others are counted, not shown.
    pub fn may_see_lease(&self, owner: Option<&str>) -> bool {
        self.may_see_every_lease() || (owner.is_some() && owner == self.key_name())
    }

    /// Whether this caller may see any resource at all (a client key whose patterns
    /// name nothing sees none).
    pub fn sees_any(&self) -> bool {
        match self {
            Caller::AdminToken => true,
            Caller::Key(k) => k.role != Role::Client || !k.resources.is_empty(),
        }
    }

    /// Whether this caller may acquire, release or renew leases at all (monitor keys
    /// may not).
    pub fn may_hold_leases(&self) -> Result<(), Denied> {
        match self {
            Caller::Key(k) if k.role == Role::Monitor => Err(Denied::ReadOnly {
                key: k.name.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// An acquire of `resource` in `lane` at `priority`.
    pub fn may_acquire(&self, resource: &str, lane: &str, priority: i32) -> Result<(), Denied> {
        let k = match self {
            Caller::AdminToken => return Ok(()),
            Caller::Key(k) => k,
        };
        self.may_hold_leases()?;
        let key = || k.name.clone();
        match k.role {
            Role::Admin | Role::Monitor => {}
            Role::Client if k.names_resource(resource) => {}
            Role::Client => {
                return Err(Denied::Resource {
                    key: key(),
                    resource: resource.to_owned(),
                })
            }
        }
        if !k.names_lane(lane) {
            return Err(Denied::Lane {
                key: key(),
                lane: lane.to_owned(),
            });
        }
        if let Some(max) = k.priority_max {
            if priority > max {
                return Err(Denied::Priority { key: key(), max });
            }
        }
        Ok(())
    }

    /// A release or renew of a lease acquired by `owner` (see `owner`): its own key,
    /// or an admin.
    pub fn may_touch_lease(&self, owner: Option<&str>) -> Result<(), Denied> {
        self.may_hold_leases()?;
        if self.is_admin() {
            return Ok(());
        }
        match self {
            Caller::Key(k) if owner == Some(k.name.as_str()) => Ok(()),
            _ => Err(Denied::Lease {
                key: self.denied_key(),
            }),
        }
    }

    /// Waiters this caller may have queued at once; `None` (the admin token): no quota
    /// beyond the cluster's bounds.
    pub fn waiters_max(&self) -> Option<u32> {
        match self {
            Caller::AdminToken => None,
            Caller::Key(k) => Some(k.waiters_max),
        }
    }

    /// Requests this caller may have in flight on one node; `None`: no quota.
    pub fn in_flight_max(&self) -> Option<u32> {
        match self {
            Caller::AdminToken => None,
            Caller::Key(k) => Some(k.in_flight_max),
        }
    }
}
