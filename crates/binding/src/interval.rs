//! One interval map for every "which range holds what" question lendvm
//! asks: bindings by guest address and by file offset (this crate), page
//! ownership runs (`gmem`), installed KVM slots and reserved guest ranges
//! (`vmm`). Ranges are half-open `[start, end)` over `u64` and never
//! overlap, so every lookup is one O(log n) B-tree search.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-empty half-open ranges, each mapped to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalMap<V> {
    /// Keyed by start; the value holds the end.
    map: BTreeMap<u64, (u64, V)>,
}

impl<V> Default for IntervalMap<V> {
    fn default() -> Self {
        IntervalMap::new()
    }
}

impl<V> IntervalMap<V> {
    /// An empty map.
    pub const fn new() -> Self {
        IntervalMap {
            map: BTreeMap::new(),
        }
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if no range is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every range with its value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Range<u64>, &V)> + '_ {
        self.map.iter().map(|(&s, (e, v))| (s..*e, v))
    }

    /// The range containing `point`, if any.
    pub fn get(&self, point: u64) -> Option<(Range<u64>, &V)> {
        let (&s, (e, v)) = self.map.range(..=point).next_back()?;
        (*e > point).then_some((s..*e, v))
    }

    /// The range containing `point`, with its value mutable.
    pub fn get_mut(&mut self, point: u64) -> Option<(Range<u64>, &mut V)> {
        let (&s, (e, v)) = self.map.range_mut(..=point).next_back()?;
        (*e > point).then_some((s..*e, v))
    }

    /// True if some range contains `point`.
    pub fn contains(&self, point: u64) -> bool {
        self.get(point).is_some()
    }

    /// The last range that starts before `r.end`, if it reaches into `r`.
    /// Ranges never overlap, so this finds whether anything intersects `r`
    /// with a single search.
    pub fn last_overlap(&self, r: &Range<u64>) -> Option<(Range<u64>, &V)> {
        if r.start >= r.end {
            return None;
        }
        let (&s, (e, v)) = self.map.range(..r.end).next_back()?;
        (*e > r.start).then_some((s..*e, v))
    }

    /// Every range intersecting `r`, in order.
    pub fn overlapping(&self, r: Range<u64>) -> impl Iterator<Item = (Range<u64>, &V)> + '_ {
        // The first candidate may start before `r.start` and reach into it.
        let empty = r.start >= r.end;
        let first = self
            .map
            .range(..r.start)
            .next_back()
            .filter(|(_, (e, _))| !empty && *e > r.start);
        let rest = if empty {
            self.map.range(0..0)
        } else {
            self.map.range(r.start..r.end)
        };
        first.into_iter().chain(rest).map(|(&s, (e, v))| (s..*e, v))
    }

    /// Insert `r` (non-empty) with `v`. Refused, with the map unchanged, if
    /// `r` is empty or intersects a stored range (returned).
    pub fn insert(&mut self, r: Range<u64>, v: V) -> Result<(), Range<u64>> {
        if r.start >= r.end {
            return Err(r);
        }
        if let Some((existing, _)) = self.last_overlap(&r) {
            return Err(existing);
        }
        self.map.insert(r.start, (r.end, v));
        Ok(())
    }

    /// Remove the range that starts exactly at `start`.
    pub fn remove(&mut self, start: u64) -> Option<(Range<u64>, V)> {
        self.map.remove(&start).map(|(e, v)| (start..e, v))
    }

    /// The largest range around `point` (itself not covered) inside
    /// `within` that no stored range intersects.
    pub fn gap_around(&self, point: u64, within: Range<u64>) -> Range<u64> {
        let lo = self
            .map
            .range(..=point)
            .next_back()
            .map_or(within.start, |(_, (e, _))| within.start.max(*e));
        let hi = self
            .map
            .range(point..)
            .next()
            .map_or(within.end, |(&s, _)| within.end.min(s));
        lo..hi
    }
}

impl<V: Clone> IntervalMap<V> {
    /// Take `r` out of the map: ranges inside it go, ranges that stick out
    /// of it are cut back to the part outside. Returns what was inside, as
    /// (range clipped to `r`, value), in order.
    pub fn carve(&mut self, r: Range<u64>) -> Vec<(Range<u64>, V)> {
        let hit: Vec<u64> = self.overlapping(r.clone()).map(|(x, _)| x.start).collect();
        let mut out = Vec::with_capacity(hit.len());
        for start in hit {
            let Some((end, v)) = self.map.remove(&start) else {
                continue;
            };
            if start < r.start {
                self.map.insert(start, (r.start, v.clone()));
            }
            if end > r.end {
                self.map.insert(r.end, (end, v.clone()));
            }
            out.push((start.max(r.start)..end.min(r.end), v));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookups_find_the_one_range_holding_a_point() {
        let mut m = IntervalMap::new();
        m.insert(10..20, 'a').unwrap();
        m.insert(20..25, 'b').unwrap();
        m.insert(40..50, 'c').unwrap();
        assert_eq!(m.get(9), None);
        assert_eq!(m.get(10), Some((10..20, &'a')));
        assert_eq!(m.get(20), Some((20..25, &'b')));
        assert_eq!(m.get(30), None);
        assert_eq!(m.insert(24..41, 'x'), Err(40..50));
        assert_eq!(m.insert(5..5, 'x'), Err(5..5));
        assert_eq!(m.gap_around(30, 0..100), 25..40);
        assert_eq!(m.gap_around(30, 28..35), 28..35);
        let hits: Vec<_> = m.overlapping(15..45).map(|(r, v)| (r, *v)).collect();
        assert_eq!(hits, vec![(10..20, 'a'), (20..25, 'b'), (40..50, 'c')]);
        assert_eq!(m.overlapping(25..40).count(), 0);
        assert_eq!(m.overlapping(12..12).count(), 0);
    }

    proptest! {
        /// The map against a page-by-page array: inserts are refused exactly
        /// on overlap, carving removes exactly the carved points.
        #[test]
        fn matches_a_point_array(
            ops in proptest::collection::vec((0u64..64, 0u64..64, any::<bool>()), 1..80),
        ) {
            let mut m = IntervalMap::new();
            let mut model: Vec<Option<u64>> = vec![None; 64];
            for (i, (a, b, carve)) in ops.into_iter().enumerate() {
                let r = a.min(b)..a.max(b);
                if carve {
                    let out = m.carve(r.clone());
                    for (x, _) in &out {
                        prop_assert!(x.start >= r.start && x.end <= r.end);
                    }
                    for p in r { model[p as usize] = None; }
                } else {
                    let free = !r.is_empty() && r.clone().all(|p| model[p as usize].is_none());
                    prop_assert_eq!(m.insert(r.clone(), i as u64).is_ok(), free);
                    if free { for p in r { model[p as usize] = Some(i as u64); } }
                }
                for p in 0..64u64 {
                    prop_assert_eq!(m.get(p).map(|(_, v)| *v), model[p as usize]);
                }
            }
        }
    }
}
