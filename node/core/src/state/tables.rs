//! The containers the state is made of: persistent (structurally shared) ordered maps,
//! sets and sequences from `imbl`, and their serde form.
//!
//! Why persistent: a copy of the whole state is O(1) (it shares every node with the
//! original; a later write copies only the path it touches), so a snapshot freezes a
//! copy under the applied-state lock in microseconds and serialises it with no lock
//! held, and the leader's speculative state starts as a copy of the applied one.
//!
//! Determinism: every table is ordered, and its serde form visits it in key order, so
//! equal states give equal bytes whatever the trees' shapes. The bytes are those of the
//! `BTreeMap` / `BTreeSet` / `VecDeque` these tables replaced (a map is a length and the
//! pairs in key order, a set or sequence a length and the elements in order).
//!
//! Decoding never trusts a length prefix for an allocation (imbl's own visitors call
//! `Vec::with_capacity(len)`, which a corrupted prefix turns into an abort): the
//! visitors here insert element by element, so memory grows only with bytes actually
//! decoded, and bincode's decode limit (`snapshot.rs`) bounds that.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

pub(crate) type Map<K, V> = imbl::OrdMap<K, V>;
pub(crate) type Set<T> = imbl::OrdSet<T>;
pub(crate) type Seq<T> = imbl::Vector<T>;

/// `#[serde(with = "tables::map")]` for a [`Map`].
pub(crate) mod map {
    use super::*;

    pub(crate) fn serialize<K, V, S>(m: &Map<K, V>, ser: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord + Clone,
        V: Serialize + Clone,
        S: Serializer,
    {
        let mut s = ser.serialize_map(Some(m.len()))?;
        for (k, v) in m.iter() {
            s.serialize_entry(k, v)?;
        }
        s.end()
    }

    pub(crate) fn deserialize<'de, K, V, D>(de: D) -> Result<Map<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord + Clone,
        V: Deserialize<'de> + Clone,
        D: Deserializer<'de>,
    {
        struct V_<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for V_<K, V>
        where
            K: Deserialize<'de> + Ord + Clone,
            V: Deserialize<'de> + Clone,
        {
            type Value = Map<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut m = Map::new();
                while let Some((k, v)) = access.next_entry()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        de.deserialize_map(V_(PhantomData))
    }
}

/// `#[serde(with = "tables::set")]` for a [`Set`].
pub(crate) mod set {
    use super::*;

    pub(crate) fn serialize<T, S>(set: &Set<T>, ser: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize + Ord + Clone,
        S: Serializer,
    {
        let mut s = ser.serialize_seq(Some(set.len()))?;
        for x in set.iter() {
            s.serialize_element(x)?;
        }
        s.end()
    }

    pub(crate) fn deserialize<'de, T, D>(de: D) -> Result<Set<T>, D::Error>
    where
        T: Deserialize<'de> + Ord + Clone,
        D: Deserializer<'de>,
    {
        struct V_<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Ord + Clone> Visitor<'de> for V_<T> {
            type Value = Set<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut set = Set::new();
                while let Some(x) = access.next_element()? {
                    set.insert(x);
                }
                Ok(set)
            }
        }
        de.deserialize_seq(V_(PhantomData))
    }
}

/// `#[serde(with = "tables::seq")]` for a [`Seq`].
pub(crate) mod seq {
    use super::*;

    pub(crate) fn serialize<T, S>(v: &Seq<T>, ser: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize + Clone,
        S: Serializer,
    {
        let mut s = ser.serialize_seq(Some(v.len()))?;
        for x in v.iter() {
            s.serialize_element(x)?;
        }
        s.end()
    }

    pub(crate) fn deserialize<'de, T, D>(de: D) -> Result<Seq<T>, D::Error>
    where
        T: Deserialize<'de> + Clone,
        D: Deserializer<'de>,
    {
        struct V_<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Clone> Visitor<'de> for V_<T> {
            type Value = Seq<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut v = Seq::new();
                while let Some(x) = access.next_element()? {
                    v.push_back(x);
                }
                Ok(v)
            }
        }
        de.deserialize_seq(V_(PhantomData))
    }
}
