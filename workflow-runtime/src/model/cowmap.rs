//! [`CowMap`]: the ordered map behind contexts and outputs.
//!
//! Cloning is a reference count, so every step gets a snapshot for free. Small maps
//! (most contexts) are one shared sorted vector, a few hundred bytes at most; past
//! [`SMALL`] keys the map becomes a persistent B-tree, so that merging outputs while
//! other steps hold snapshots copies only the touched path, never the whole map.

use std::borrow::Borrow;
use std::sync::Arc;

/// Above this many keys the map switches to a persistent B-tree.
const SMALL: usize = 32;

/// A copy-on-write ordered map.
#[derive(Clone)]
pub(crate) struct CowMap<K, V>(Repr<K, V>);

#[derive(Clone)]
enum Repr<K, V> {
    Empty,
    Small(Arc<Vec<(K, V)>>),
    Large(Box<imbl::OrdMap<K, V>>),
}

impl<K, V> Default for CowMap<K, V> {
    fn default() -> Self {
        CowMap(Repr::Empty)
    }
}

impl<K: Ord + Clone, V: Clone> CowMap<K, V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Repr::Empty => 0,
            Repr::Small(v) => v.len(),
            Repr::Large(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match &self.0 {
            Repr::Empty => None,
            Repr::Small(v) => v.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok().map(|i| &v[i].1),
            Repr::Large(m) => m.get(key),
        }
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Inserts, copying the shared part only if another snapshot still holds it.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match &mut self.0 {
            Repr::Empty => {
                self.0 = Repr::Small(Arc::new(vec![(key, value)]));
                None
            }
            Repr::Small(v) => {
                let vec = Arc::make_mut(v);
                match vec.binary_search_by(|(k, _)| k.cmp(&key)) {
                    Ok(i) => Some(std::mem::replace(&mut vec[i].1, value)),
                    Err(i) => {
                        vec.insert(i, (key, value));
                        if vec.len() > SMALL {
                            let large: imbl::OrdMap<K, V> = vec.iter().cloned().collect();
                            self.0 = Repr::Large(Box::new(large));
                        }
                        None
                    }
                }
            }
            Repr::Large(m) => m.insert(key, value),
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        match &self.0 {
            Repr::Empty => Iter::Small([].iter()),
            Repr::Small(v) => Iter::Small(v.iter()),
            Repr::Large(m) => Iter::Large(m.iter()),
        }
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }
}

impl<K: Ord + Clone + std::fmt::Debug, V: Clone + std::fmt::Debug> std::fmt::Debug for CowMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for CowMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for CowMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = CowMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

/// Iterator over a [`CowMap`], in key order.
pub(crate) enum Iter<'a, K, V> {
    Small(std::slice::Iter<'a, (K, V)>),
    Large(imbl::ordmap::Iter<'a, K, V, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a, K: Ord, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(it) => it.next().map(|(k, v)| (k, v)),
            Iter::Large(it) => it.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_an_ordered_map_across_the_switch() {
        let mut m: CowMap<String, u32> = CowMap::new();
        let mut reference = std::collections::BTreeMap::new();
        for i in (0..100u32).rev() {
            let k = format!("k{:03}", (i * 37) % 100);
            assert_eq!(m.insert(k.clone(), i), reference.insert(k.clone(), i));
            assert_eq!(m.len(), reference.len());
            assert_eq!(m.get(k.as_str()), Some(&i));
        }
        assert_eq!(
            m.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>(),
            reference.into_iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn snapshots_do_not_see_later_inserts() {
        for n in [1usize, 40] {
            let mut m: CowMap<u32, u32> = (0..n as u32).map(|i| (i, i)).collect();
            let snapshot = m.clone();
            m.insert(1000, 1);
            m.insert(0, 99);
            assert_eq!(snapshot.len(), n);
            assert_eq!(snapshot.get(&0), Some(&0));
            assert!(!snapshot.contains_key(&1000));
            assert_eq!(m.get(&0), Some(&99));
            assert!(m != snapshot);
        }
    }
}
