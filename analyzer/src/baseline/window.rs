//! A sliding window of the last `capacity` values with its order statistics at hand.
//!
//! The robust estimates the detector needs on every point (medians of levels and of absolute
//! residuals) come from windows of a few dozen to a few hundred values.
//! Keeping a sorted copy beside the ring makes each of them O(1) to read, and a new value costs
//! one binary search and one shift of at most `capacity` floats — a few tens of nanoseconds at
//! these sizes, less than any quantile sketch would, and exact.

use serde::{Deserialize, Serialize};

/// The last `capacity` finite values, in arrival order and sorted.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "WindowWire", into = "WindowWire")]
pub(crate) struct Window {
    capacity: usize,
    /// Arrival order: `ring[head]` is the oldest once the window is full.
    ring: Vec<f64>,
    head: usize,
    sorted: Vec<f64>,
}

impl Window {
    pub(crate) fn new(capacity: usize) -> Window {
        let capacity = capacity.max(1);
        // Allocated on the first value: a candidate model that never runs costs nothing.
        Window { capacity, ring: Vec::new(), head: 0, sorted: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.ring.clear();
        self.sorted.clear();
        self.head = 0;
    }

    /// Adds `value` (finite: callers never pass NaN), dropping the oldest when full.
    pub(crate) fn push(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        if self.ring.capacity() == 0 {
            self.ring.reserve_exact(self.capacity);
            self.sorted.reserve_exact(self.capacity);
        }
        if self.ring.len() < self.capacity {
            self.ring.push(value);
        } else {
            let old = std::mem::replace(&mut self.ring[self.head], value);
            self.head = (self.head + 1) % self.capacity;
            let at = self.sorted.partition_point(|&v| v < old);
            // `old` is in `sorted` (same bits); the position found is its first copy.
            self.sorted.remove(at.min(self.sorted.len() - 1));
        }
        let at = self.sorted.partition_point(|&v| v < value);
        self.sorted.insert(at, value);
    }

    /// The values, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = f64> + Clone + '_ {
        let (newer, older) = self.ring.split_at(self.head);
        older.iter().chain(newer).copied()
    }

    /// The median (the mean of the two middle values for an even count); NaN when empty.
    pub(crate) fn median(&self) -> f64 {
        median_of_sorted(&self.sorted)
    }

    /// The newest value.
    pub(crate) fn last(&self) -> Option<f64> {
        match self.ring.len() {
            0 => None,
            n if n < self.capacity => Some(self.ring[n - 1]),
            _ => Some(self.ring[(self.head + self.capacity - 1) % self.capacity]),
        }
    }

    /// The median absolute deviation from the median, walking outwards from the median over the
    /// sorted values (O(n), nothing allocated); NaN when empty.
    pub(crate) fn mad(&self) -> f64 {
        let sorted = &self.sorted;
        let n = sorted.len();
        if n == 0 {
            return f64::NAN;
        }
        let center = median_of_sorted(sorted);
        // Values [left, right) are taken; the next candidates are left − 1 and right.
        let (mut left, mut right) = (n / 2, n / 2);
        let mut take = || {
            let below = if left > 0 { center - sorted[left - 1] } else { f64::INFINITY };
            let above = if right < n { sorted[right] - center } else { f64::INFINITY };
            if below <= above {
                left -= 1;
                below
            } else {
                right += 1;
                above
            }
        };
        let k = n.div_ceil(2);
        let mut d = 0.0;
        for _ in 0..k {
            d = take();
        }
        if n % 2 == 1 { d } else { 0.5 * (d + take()) }
    }

    /// Multiplies every value by `factor` (> 0, so the order is kept).
    pub(crate) fn scale_values(&mut self, factor: f64) {
        if factor > 0.0 && factor.is_finite() && factor != 1.0 {
            self.ring.iter_mut().for_each(|v| *v *= factor);
            self.sorted.iter_mut().for_each(|v| *v *= factor);
        }
    }

    /// Mean absolute deviation from `center`; NaN when empty.
    pub(crate) fn mean_abs_dev(&self, center: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        self.sorted.iter().map(|v| (v - center).abs()).sum::<f64>() / self.sorted.len() as f64
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.ring.capacity() + self.sorted.capacity()) * std::mem::size_of::<f64>()
    }
}

/// Two windows are equal when they hold the same values in the same order (wherever the ring
/// happens to start).
impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.capacity == other.capacity && self.iter().eq(other.iter())
    }
}

pub(crate) fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// The median of a small unsorted slice, reordering it in place (selection, not a sort); NaN
/// when empty.
pub(crate) fn median_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n <= 32 {
        // The detector's medians are mostly of a handful of values, where an insertion sort
        // beats the general selection several times over.
        insertion_sort(values);
        return median_of_sorted(values);
    }
    let (lower, &mut upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return upper;
    }
    let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    0.5 * (below + upper)
}

/// Sorts a short slice in place (callers never pass NaN; one would be misplaced, not loop).
pub(crate) fn insertion_sort<T: Copy + PartialOrd>(values: &mut [T]) {
    for i in 1..values.len() {
        let v = values[i];
        let mut j = i;
        while j > 0 && values[j - 1] > v {
            values[j] = values[j - 1];
            j -= 1;
        }
        values[j] = v;
    }
}

#[derive(Serialize, Deserialize)]
struct WindowWire {
    capacity: usize,
    /// Oldest first.
    values: Vec<f64>,
}

impl From<Window> for WindowWire {
    fn from(w: Window) -> WindowWire {
        WindowWire { capacity: w.capacity, values: w.iter().collect() }
    }
}

impl TryFrom<WindowWire> for Window {
    type Error = String;
    fn try_from(wire: WindowWire) -> Result<Window, String> {
        if wire.capacity == 0 || wire.values.len() > wire.capacity || wire.capacity > 1 << 16 {
            return Err(format!("a window of capacity {} cannot hold {} values", wire.capacity, wire.values.len()));
        }
        if wire.values.iter().any(|v| !v.is_finite()) {
            return Err("a window holds a value that is not finite".into());
        }
        let mut w = Window::new(wire.capacity);
        for v in wire.values {
            w.push(v);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_follow_the_window() {
        let mut w = Window::new(5);
        assert!(w.median().is_nan());
        let mut state = 7u64;
        let mut all = Vec::new();
        for i in 0..200 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = ((state >> 33) % 11) as f64 - 5.0; // ties on purpose
            w.push(v);
            all.push(v);
            let recent: Vec<f64> = all[all.len().saturating_sub(5)..].to_vec();
            assert_eq!(w.iter().collect::<Vec<_>>(), recent, "at {i}");
            let mut s = recent.clone();
            let med = median_in_place(&mut s);
            assert_eq!(w.median(), med);
            let mean_ad = recent.iter().map(|x| (x - 1.5).abs()).sum::<f64>() / recent.len() as f64;
            assert_eq!(w.mean_abs_dev(1.5), mean_ad);
            let mut deviations: Vec<f64> = recent.iter().map(|x| (x - med).abs()).collect();
            assert_eq!(w.mad(), median_in_place(&mut deviations), "at {i}");
            assert_eq!(w.last(), Some(v));
        }
    }

    #[test]
    fn serde_keeps_the_order_and_refuses_damage() {
        let mut w = Window::new(4);
        for v in [3.0, 1.0, 4.0, 1.0, 5.0, 9.0] {
            w.push(v);
        }
        let json = serde_json::to_string(&w).unwrap();
        let back: Window = serde_json::from_str(&json).unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), vec![4.0, 1.0, 5.0, 9.0]);
        assert_eq!(back.sorted, w.sorted);
        assert!(serde_json::from_str::<Window>(r#"{"capacity":1,"values":[1,2]}"#).is_err());
        assert!(serde_json::from_str::<Window>(r#"{"capacity":0,"values":[]}"#).is_err());
    }
}
