//! Seeded random numbers (the same data on every run), OTLP attribute values, and the
//! nearest-rank percentile of measured durations.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        key_strindex: 0,
    }
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(Value::IntValue(value)) }), key_strindex: 0 }
}

/// One step of SplitMix64 over `state`.
pub fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in [0, 1), from [`next`].
pub fn uniform(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// xorshift64* (the seed must not be 0).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (with the small modulo bias a benchmark's data can carry).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The nearest-rank `p` percentile of ascending `sorted` durations (not empty).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        assert_eq!(percentile(&ms(&[7]), 0.99), Duration::from_millis(7));
        assert_eq!(percentile(&ms(&[1, 2, 3, 4]), 0.5), Duration::from_millis(2));
        assert_eq!(percentile(&ms(&[1, 2, 3, 4]), 0.95), Duration::from_millis(4));
    }

    #[test]
    fn generators_are_seeded_and_in_range() {
        let (mut a, mut b) = (1u64, 1u64);
        assert_eq!(next(&mut a), next(&mut b));
        assert!((0..1000).all(|_| (0.0..1.0).contains(&uniform(&mut a))));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
