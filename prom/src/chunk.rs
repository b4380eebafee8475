//! Compressed sample chunks: how the metric store keeps a series' samples, in time order, in one
//! or two bytes a sample instead of sixteen. Pure: samples in, bytes out, and back.
//!
//! The encoding is Gorilla's (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time Series
//! Database", VLDB 2015, section 4.1): timestamps as deltas of deltas, values XOR'd with the
//! previous value, both in one bit stream written most significant bit first. The timestamp
//! buckets are the wider ones Prometheus chose for millisecond timestamps (its XOR chunk,
//! `tsdb/chunkenc/xor.go`). The bucket layout is theirs; the header is ours, so a chunk is not
//! byte-compatible with a Prometheus chunk.
//!
//! ```text
//! count    uvarint         number of samples; nothing follows when it is 0
//! t0       zigzag varint   first timestamp (ms)
//! v0       8 bytes         first value's bits, big-endian
//! delta1   uvarint         t1 - t0, when count >= 2 (from 1 to 2^64 - 1)
//! stream   bits            sample 1: its value; each later sample: its timestamp, then its value;
//!                          zero bits pad the last byte
//!
//! timestamp i >= 2, dod = (t[i] - t[i-1]) - (t[i-1] - t[i-2]), modulo 2^64
//!   0                      dod = 0
//!   10   + 14 bits         dod in [-2^13, 2^13), two's complement of the width
//!   110  + 17 bits         dod in [-2^16, 2^16)
//!   1110 + 20 bits         dod in [-2^19, 2^19)
//!   1111 + 64 bits         any other dod
//!
//! value, x = bits(v[i]) XOR bits(v[i-1])
//!   0                      x = 0: the very same bits
//!   10 + m bits            x's meaningful bits, in the window of the last `11` (its leading and
//!                          trailing zeros): m = 64 - leading - trailing
//!   11 + 5 bits leading zeros (more than 31 written as 31) + 6 bits significant-bit count m
//!      (64 written as 0) + m bits: a new window
//! ```
//!
//! Values round-trip bit for bit: every NaN payload (so Prometheus's staleness marker stays
//! distinct from an ordinary NaN), infinities, `-0.0`. Timestamps are any `i64` in strictly
//! increasing order; a delta between two of them can exceed `i64::MAX`, so deltas are `u64` and
//! deltas of deltas are taken modulo 2^64, which restores every delta exactly. (Prometheus's
//! buckets take `[-(2^(n-1) - 1), 2^(n-1)]`; ours take the ordinary two's complement range.)
//!
//! Decoding trusts nothing: it never panics, reads each bit at most once, refuses a sample count
//! that the bytes after the header could not hold (sample 1 takes at least one bit, each later
//! sample at least two) before reserving anything, refuses timestamps that do not increase, and
//! says which sample and byte were wrong.

use crate::model::Sample;

/// What is wrong with a sample appended to a chunk, or with the bytes of one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A sample at or before the previous sample's time: a chunk holds one sample per timestamp,
    /// in increasing order. The writer is left as it was.
    #[error("sample {index} at t={t} is not after the previous sample at t={prev}")]
    OutOfOrder { index: usize, t: i64, prev: i64 },
    /// The bytes end before the samples their header counts.
    #[error("chunk ends at byte {len} while reading {field} of sample {sample}")]
    Truncated { sample: usize, field: &'static str, len: usize },
    /// The header counts more samples than the bytes after it could hold.
    #[error("header counts {count} samples but the {bits} bits after it hold at most {max}")]
    CountTooLarge { count: u64, bits: u64, max: u64 },
    /// Bytes no writer produces.
    #[error("corrupt chunk at byte {byte}, sample {sample}: {reason}")]
    Corrupt { sample: usize, byte: usize, reason: String },
}

/// Appends samples in strictly increasing time order and yields the encoded bytes.
#[derive(Debug, Clone, Default)]
pub struct ChunkWriter {
    count: usize,
    /// Timestamp and value bits of sample 0, once there is one.
    first: (i64, u64),
    /// `t1 - t0`, once there is a sample 1.
    delta1: u64,
    stream: BitWriter,
    /// The last sample's timestamp, delta from the one before, and value bits.
    t: i64,
    delta: u64,
    v: u64,
    window: Option<Window>,
}

impl ChunkWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Err([`ChunkError::OutOfOrder`]) when `t` is not after the previous sample's time; the
    /// sample is then not written and the writer can go on.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        let bits = v.to_bits();
        if self.count == 0 {
            self.first = (t, bits);
        } else {
            if t <= self.t {
                return Err(ChunkError::OutOfOrder { index: self.count, t, prev: self.t });
            }
            // t > self.t, so the difference is in [1, 2^64 - 1]: exact as a u64 even where it
            // does not fit an i64.
            let delta = t.wrapping_sub(self.t) as u64;
            if self.count == 1 {
                self.delta1 = delta;
            } else {
                self.write_dod(delta.wrapping_sub(self.delta));
            }
            self.write_value(bits);
            self.delta = delta;
        }
        self.t = t;
        self.v = bits;
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first sample's time.
    pub fn min_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first.0)
    }

    /// The last sample's time.
    pub fn max_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.t)
    }

    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 * MAX_VARINT_LEN + 8 + self.stream.bytes.len());
        put_uvarint(&mut out, self.count as u64);
        if self.count >= 1 {
            put_uvarint(&mut out, zigzag(self.first.0));
            out.extend_from_slice(&self.first.1.to_be_bytes());
        }
        if self.count >= 2 {
            put_uvarint(&mut out, self.delta1);
        }
        out.extend_from_slice(&self.stream.bytes);
        out
    }

    /// `dod` is the delta of deltas modulo 2^64; read as an i64 it is small for regular scrapes.
    fn write_dod(&mut self, dod: u64) {
        if dod == 0 {
            self.stream.write_bits(0, 1);
            return;
        }
        match DOD_BUCKETS.iter().find(|b| fits(dod as i64, b.width)) {
            Some(bucket) => {
                self.stream.write_bits(bucket.prefix, bucket.prefix_len);
                self.stream.write_bits(dod, bucket.width);
            }
            None => {
                self.stream.write_bits(0b1111, 4);
                self.stream.write_bits(dod, 64);
            }
        }
    }

    fn write_value(&mut self, bits: u64) {
        let x = bits ^ self.v;
        if x == 0 {
            self.stream.write_bits(0, 1);
            return;
        }
        let leading = x.leading_zeros().min(MAX_LEADING);
        let trailing = x.trailing_zeros();
        match self.window {
            Some(w) if leading >= w.leading && trailing >= w.trailing => {
                self.stream.write_bits(0b10, 2);
                self.stream.write_bits(x >> w.trailing, w.significant());
            }
            _ => {
                let w = Window { leading, trailing };
                self.stream.write_bits(0b11, 2);
                self.stream.write_bits(u64::from(leading), 5);
                // 64 significant bits do not fit 6 bits and are written as 0.
                self.stream.write_bits(u64::from(w.significant()), 6);
                self.stream.write_bits(x >> trailing, w.significant());
                self.window = Some(w);
            }
        }
    }
}

/// Encodes samples given in strictly increasing time order.
pub fn encode(samples: &[Sample]) -> Result<Vec<u8>, ChunkError> {
    let mut writer = ChunkWriter::new();
    for s in samples {
        writer.append(s.t, s.v)?;
    }
    Ok(writer.finish())
}

/// Decodes every sample, and refuses bytes after the last one.
pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let iter = ChunkIter::new(bytes)?;
    // The count was checked against the input's length: at most four samples a byte.
    let mut out = Vec::with_capacity(iter.sample_count());
    for sample in iter {
        out.push(sample?);
    }
    Ok(out)
}

/// Appends to `out` the samples with `min_t <= t <= max_t`, both ends included (as Prometheus
/// selects a range). Decoding stops at the first sample after `max_t`: nothing after it is
/// read, so a chunk damaged only past the range still answers. On an error `out` is left as it
/// was.
pub fn decode_range(bytes: &[u8], min_t: i64, max_t: i64, out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let mut iter = ChunkIter::new(bytes)?;
    let len = out.len();
    let result = collect_range(&mut iter, min_t, max_t, out);
    if result.is_err() {
        out.truncate(len);
    }
    result
}

fn collect_range(iter: &mut ChunkIter<'_>, min_t: i64, max_t: i64, out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    if min_t > max_t {
        return Ok(());
    }
    for sample in iter {
        let sample = sample?;
        if sample.t > max_t {
            break;
        }
        if sample.t >= min_t {
            out.push(sample);
        }
    }
    Ok(())
}

/// The samples of a chunk, decoded one at a time. An error ends the iteration. After the last
/// sample the iterator checks that nothing but zero padding follows.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    reader: BitReader<'a>,
    count: usize,
    /// How many samples have been decoded.
    decoded: usize,
    first: (i64, u64),
    delta1: u64,
    /// Where `delta1` starts, for errors about it.
    delta1_byte: usize,
    t: i64,
    delta: u64,
    v: u64,
    window: Option<Window>,
    done: bool,
}

impl<'a> ChunkIter<'a> {
    /// Reads the header; Err when it is cut short or counts more samples than the rest of the
    /// bytes could hold.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ChunkError> {
        let mut pos = 0;
        let count = read_uvarint(bytes, &mut pos, 0, "the sample count")?;
        let mut first = (0, 0);
        if count >= 1 {
            let t0 = unzigzag(read_uvarint(bytes, &mut pos, 0, "the first timestamp")?);
            let v0 = bytes
                .get(pos..pos + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .ok_or(ChunkError::Truncated { sample: 0, field: "the first value", len: bytes.len() })?;
            pos += 8;
            first = (t0, u64::from_be_bytes(v0));
        }
        let delta1_byte = pos;
        let delta1 = if count >= 2 { read_uvarint(bytes, &mut pos, 1, "the second timestamp's delta")? } else { 0 };
        let bits = (bytes.len() - pos) as u64 * 8;
        let max = if bits == 0 { 1 } else { 2 + (bits - 1) / 2 };
        let count = match usize::try_from(count) {
            Ok(n) if count <= max => n,
            _ => return Err(ChunkError::CountTooLarge { count, bits, max }),
        };
        Ok(ChunkIter {
            reader: BitReader { bytes, pos: pos as u64 * 8 },
            count,
            decoded: 0,
            first,
            delta1,
            delta1_byte,
            t: 0,
            delta: 0,
            v: 0,
            window: None,
            done: false,
        })
    }

    /// How many samples the header counts.
    pub fn sample_count(&self) -> usize {
        self.count
    }

    /// How many samples have been decoded so far.
    pub fn decoded(&self) -> usize {
        self.decoded
    }

    fn next_sample(&mut self) -> Result<Sample, ChunkError> {
        let index = self.decoded;
        if index == 0 {
            (self.t, self.v) = self.first;
        } else {
            let (delta, byte) = if index == 1 {
                (self.delta1, self.delta1_byte)
            } else {
                let byte = self.reader.byte();
                (self.delta.wrapping_add(self.read_dod(index)?), byte)
            };
            if delta == 0 {
                return Err(corrupt(index, byte, format!("timestamp does not increase after t={}", self.t)));
            }
            self.t = self.t.checked_add_unsigned(delta).ok_or_else(|| {
                corrupt(index, byte, format!("timestamp t={} + {delta} is past the largest i64", self.t))
            })?;
            self.delta = delta;
            self.read_value(index)?;
        }
        Ok(Sample { t: self.t, v: f64::from_bits(self.v) })
    }

    fn read_dod(&mut self, index: usize) -> Result<u64, ChunkError> {
        const FIELD: &str = "the timestamp";
        if !self.bit(index, FIELD)? {
            return Ok(0);
        }
        for bucket in &DOD_BUCKETS {
            if !self.bit(index, FIELD)? {
                let raw = self.bits(bucket.width, index, FIELD)?;
                // Sign-extend from the bucket's width.
                let shift = 64 - bucket.width;
                return Ok((((raw << shift) as i64) >> shift) as u64);
            }
        }
        self.bits(64, index, FIELD)
    }

    fn read_value(&mut self, index: usize) -> Result<(), ChunkError> {
        const FIELD: &str = "the value";
        if !self.bit(index, FIELD)? {
            return Ok(());
        }
        let byte = self.reader.byte();
        let window = if !self.bit(index, FIELD)? {
            self.window.ok_or_else(|| corrupt(index, byte, "value reuses a window before any was set".into()))?
        } else {
            let leading = self.bits(5, index, FIELD)? as u32;
            let significant = match self.bits(6, index, FIELD)? as u32 {
                0 => 64,
                n => n,
            };
            if leading + significant > 64 {
                let reason = format!("{leading} leading zeros and {significant} significant bits exceed 64");
                return Err(corrupt(index, byte, reason));
            }
            let w = Window { leading, trailing: 64 - leading - significant };
            self.window = Some(w);
            w
        };
        // At least one significant bit, so the shift is below 64.
        self.v ^= self.bits(window.significant(), index, FIELD)? << window.trailing;
        Ok(())
    }

    fn bit(&mut self, sample: usize, field: &'static str) -> Result<bool, ChunkError> {
        Ok(self.bits(1, sample, field)? == 1)
    }

    fn bits(&mut self, n: u32, sample: usize, field: &'static str) -> Result<u64, ChunkError> {
        self.reader.read_bits(n).ok_or(ChunkError::Truncated { sample, field, len: self.reader.bytes.len() })
    }

    /// After the last sample: only the zero bits that pad its last byte may follow.
    fn check_end(&self) -> Result<(), ChunkError> {
        let end = self.reader.pos.div_ceil(8) as usize;
        let len = self.reader.bytes.len();
        if len > end {
            let reason = format!("bytes {end}..{len} follow the last sample");
            return Err(corrupt(self.count, end, reason));
        }
        let padding = (end as u64 * 8 - self.reader.pos) as u32;
        if padding > 0 && self.reader.bytes[end - 1] & ((1u8 << padding) - 1) != 0 {
            return Err(corrupt(self.count, end - 1, "padding after the last sample is not zero".into()));
        }
        Ok(())
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<Sample, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.decoded == self.count {
            self.done = true;
            return self.check_end().err().map(Err);
        }
        let result = self.next_sample();
        match &result {
            Ok(_) => self.decoded += 1,
            Err(_) => self.done = true,
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // An error can end the samples early, and a final error can follow them.
        if self.done { (0, Some(0)) } else { (0, Some(self.count - self.decoded + 1)) }
    }
}

impl std::iter::FusedIterator for ChunkIter<'_> {}

fn corrupt(sample: usize, byte: usize, reason: String) -> ChunkError {
    ChunkError::Corrupt { sample, byte, reason }
}

/// A timestamp bucket after the `0` of a zero delta of deltas: its prefix (starting with the
/// `1` that says "not zero") and the width of the two's complement value after it. A dod that
/// fits none of them takes `1111` and 64 bits.
struct DodBucket {
    prefix: u64,
    prefix_len: u32,
    width: u32,
}

/// Prometheus's buckets (`tsdb/chunkenc/xor.go`), wider than Gorilla's for milliseconds.
const DOD_BUCKETS: [DodBucket; 3] = [
    DodBucket { prefix: 0b10, prefix_len: 2, width: 14 },
    DodBucket { prefix: 0b110, prefix_len: 3, width: 17 },
    DodBucket { prefix: 0b1110, prefix_len: 4, width: 20 },
];

/// Whether `v` is in the two's complement range of `width` bits.
fn fits(v: i64, width: u32) -> bool {
    let half = 1i64 << (width - 1);
    (-half..half).contains(&v)
}

/// Leading zeros have 5 bits: a longer run is written as 31 and the rest count as significant.
const MAX_LEADING: u32 = 31;

/// The bits of a value's XOR that the encoding keeps: all but `leading` zeros at the top and
/// `trailing` zeros at the bottom.
#[derive(Debug, Clone, Copy)]
struct Window {
    leading: u32,
    trailing: u32,
}

impl Window {
    fn significant(self) -> u32 {
        64 - self.leading - self.trailing
    }
}

/// Bits appended most significant first.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Unwritten bits at the bottom of the last byte.
    free: u32,
}

impl BitWriter {
    /// Appends the low `n` bits of `v` (n <= 64).
    fn write_bits(&mut self, v: u64, n: u32) {
        let mut left = n;
        while left > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = left.min(self.free);
            left -= take;
            let chunk = ((v >> left) & ((1 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (self.free - take);
            }
            self.free -= take;
        }
    }
}

/// Bits read most significant first.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// The next bit to read, counted from the start of `bytes`.
    pos: u64,
}

impl BitReader<'_> {
    /// The next `n` bits (n <= 64) as the low bits of the result, or None when fewer are left.
    fn read_bits(&mut self, n: u32) -> Option<u64> {
        if self.pos + u64::from(n) > self.bytes.len() as u64 * 8 {
            return None;
        }
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[(self.pos / 8) as usize];
            let unread = 8 - (self.pos % 8) as u32;
            let take = left.min(unread);
            let chunk = (byte >> (unread - take)) & ((1u16 << take) - 1) as u8;
            // v holds at most n - left bits, so nothing is shifted out.
            v = (v << take) | u64::from(chunk);
            left -= take;
            self.pos += u64::from(take);
        }
        Some(v)
    }

    /// The byte holding the next bit.
    fn byte(&self) -> usize {
        (self.pos / 8) as usize
    }
}

const MAX_VARINT_LEN: usize = 10;

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_uvarint(bytes: &[u8], pos: &mut usize, sample: usize, field: &'static str) -> Result<u64, ChunkError> {
    let start = *pos;
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let &b = bytes.get(*pos).ok_or(ChunkError::Truncated { sample, field, len: bytes.len() })?;
        *pos += 1;
        // The tenth byte holds the 64th bit only.
        if shift == 63 && b > 1 {
            return Err(corrupt(sample, start, format!("{field} is a varint longer than 64 bits")));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
        shift += 7;
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;
    use proptest::prelude::*;

    /// Samples as (t, value bits): NaN compares equal to itself, -0.0 differs from 0.0.
    fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
        samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
    }

    fn samples(pairs: &[(i64, f64)]) -> Vec<Sample> {
        pairs.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    fn round_trip(input: &[Sample]) -> Vec<u8> {
        let bytes = encode(input).unwrap();
        assert_eq!(bits(&decode(&bytes).unwrap()), bits(input), "chunk {bytes:02x?}");
        bytes
    }

    /// A chunk worked out by hand from the format in the module doc: changing the format
    /// breaks this test.
    #[test]
    fn golden_bytes() {
        let input = samples(&[(1000, 1.0), (16_000, 1.0), (31_000, 2.0), (46_001, 2.0)]);
        let bytes = round_trip(&input);
        #[rustfmt::skip]
        let expected = [
            0x04,                                           // count 4
            0xd0, 0x0f,                                     // t0 1000, zigzag 2000
            0x3f, 0xf0, 0, 0, 0, 0, 0, 0,                   // v0 1.0
            0x98, 0x75,                                     // delta1 15000
            // 1: value 0 (same) | 2: dod 0, value 11 00001 001011 11111111111 (x = 0x7ff0...)
            // | 3: dod 10 00000000000001, value 0 | 5 zero bits of padding
            0b0011_0000, 0b1001_0111, 0b1111_1111, 0b1110_0000, 0b0000_0000, 0b0100_0000,
        ];
        assert_eq!(bytes, expected, "{bytes:02x?}");
    }

    #[test]
    fn empty_and_single_sample_chunks() {
        assert_eq!(round_trip(&[]), [0]);
        assert_eq!(round_trip(&samples(&[(-1, 0.5)])).len(), 1 + 1 + 8);
    }

    #[test]
    fn special_values_round_trip_bit_exact() {
        let specials = [
            f64::from_bits(STALE_NAN_BITS),
            f64::NAN,
            f64::from_bits(STALE_NAN_BITS),
            -f64::NAN,
            f64::from_bits(0x7ff8_dead_beef_0001),
            f64::from_bits(0xfff0_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            f64::from_bits(STALE_NAN_BITS),
        ];
        let input: Vec<Sample> =
            specials.iter().enumerate().map(|(i, &v)| Sample { t: i as i64 * 15_000, v }).collect();
        round_trip(&input);
        let decoded = decode(&encode(&input).unwrap()).unwrap();
        assert!(crate::model::is_stale_marker(decoded[0].v));
        assert!(decoded[1].v.is_nan() && !crate::model::is_stale_marker(decoded[1].v));
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        for ts in [
            vec![i64::MIN, i64::MAX],
            vec![i64::MIN, i64::MIN + 1, i64::MAX],
            vec![i64::MIN, i64::MAX - 1, i64::MAX],
            vec![i64::MIN, -1, 0, 1, i64::MAX],
            vec![i64::MIN + 5, i64::MIN + 6, i64::MIN + 8, 0, 1, i64::MAX - 1, i64::MAX],
            vec![-1_000_000, 0, 8191, 8191 * 2 + 1, 16_383 * 3, 100_000_000, 100_000_001],
        ] {
            let input: Vec<Sample> = ts.iter().map(|&t| Sample { t, v: t as f64 }).collect();
            round_trip(&input);
        }
    }

    /// Every bucket edge of the delta of deltas, both sides.
    #[test]
    fn dod_bucket_edges_round_trip() {
        let mut t = 0i64;
        let mut input = vec![Sample { t, v: 0.0 }];
        let mut delta = 1_000_000_000i64;
        for width in [14, 17, 20, 21] {
            let half = 1i64 << (width - 1);
            for dod in [half - 1, half, -half, -half - 1, 0] {
                delta += dod;
                t += delta;
                input.push(Sample { t, v: 1.0 });
            }
        }
        round_trip(&input);
    }

    #[test]
    fn out_of_order_and_duplicate_times_are_refused() {
        let mut w = ChunkWriter::new();
        assert!(w.is_empty());
        assert_eq!((w.min_t(), w.max_t()), (None, None));
        w.append(1000, 1.0).unwrap();
        w.append(2000, 2.0).unwrap();
        assert_eq!(w.append(2000, 3.0), Err(ChunkError::OutOfOrder { index: 2, t: 2000, prev: 2000 }));
        assert_eq!(w.append(1500, 3.0), Err(ChunkError::OutOfOrder { index: 2, t: 1500, prev: 2000 }));
        assert_eq!(
            w.append(i64::MIN, 3.0).unwrap_err().to_string(),
            "sample 2 at t=-9223372036854775808 is not after the previous sample at t=2000"
        );
        // A refused sample leaves the writer as it was.
        w.append(3000, 3.0).unwrap();
        assert_eq!((w.len(), w.min_t(), w.max_t()), (3, Some(1000), Some(3000)));
        assert_eq!(bits(&decode(&w.finish()).unwrap()), bits(&samples(&[(1000, 1.0), (2000, 2.0), (3000, 3.0)])));
        let unsorted = samples(&[(5, 1.0), (4, 1.0)]);
        assert_eq!(encode(&unsorted), Err(ChunkError::OutOfOrder { index: 1, t: 4, prev: 5 }));
    }

    /// Bad bytes and what the error says about them.
    #[test]
    fn bad_chunks_say_what_and_where() {
        fn check(bytes: &[u8], expect: &str) {
            let err = decode(bytes).expect_err("bad chunk decodes");
            assert_eq!(err.to_string(), expect, "{bytes:02x?}");
        }
        let one = [0x01, 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0];
        check(&[], "chunk ends at byte 0 while reading the sample count of sample 0");
        check(&[0x80], "chunk ends at byte 1 while reading the sample count of sample 0");
        check(&[0xff; 11], "corrupt chunk at byte 0, sample 0: the sample count is a varint longer than 64 bits");
        check(&[0x01], "chunk ends at byte 1 while reading the first timestamp of sample 0");
        check(&one[..9], "chunk ends at byte 9 while reading the first value of sample 0");
        check(
            &[0x02, 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            "chunk ends at byte 10 while reading the second timestamp's delta of sample 1",
        );
        check(
            &[0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00],
            "header counts 10 samples but the 8 bits after it hold at most 5",
        );
        check(
            &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01],
            "header counts 4294967295 samples but the 0 bits after it hold at most 1",
        );
        check(&[0x00, 0x00], "corrupt chunk at byte 1, sample 0: bytes 1..2 follow the last sample");
        check(
            &[one.as_slice(), &[0, 0]].concat(),
            "corrupt chunk at byte 10, sample 1: bytes 10..12 follow the last sample",
        );
        // delta1 = 0: sample 1 at the same time as sample 0.
        check(
            &[0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00],
            "corrupt chunk at byte 10, sample 1: timestamp does not increase after t=1",
        );
        // t0 = i64::MAX (zigzag u64::MAX - 1), delta1 = 1.
        let max = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let past = [&[0x02][..], &max, &[0; 8], &[0x01, 0x00]].concat();
        check(&past, "corrupt chunk at byte 19, sample 1: timestamp t=9223372036854775807 + 1 is past the largest i64");
        // Sample 1's value: `10` with no window yet.
        check(
            &[0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0b1000_0000],
            "corrupt chunk at byte 11, sample 1: value reuses a window before any was set",
        );
        // `11`, 31 leading zeros, 40 significant bits.
        check(
            &[0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0b1111_1111, 0b0100_0000, 0, 0, 0, 0, 0, 0],
            "corrupt chunk at byte 11, sample 1: 31 leading zeros and 40 significant bits exceed 64",
        );
        check(
            &[0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0b0100_0000],
            "corrupt chunk at byte 11, sample 2: padding after the last sample is not zero",
        );
        // Sample 2's dod `1111` and only 4 of its 64 bits.
        check(
            &[0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0b0111_1000],
            "chunk ends at byte 12 while reading the timestamp of sample 2",
        );
        // Sample 2's dod -1 cancels delta1 = 1.
        check(
            &[0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0b0101_1111, 0xff, 0b1100_0000],
            "corrupt chunk at byte 11, sample 2: timestamp does not increase after t=1",
        );
    }

    /// A 15 s scrape of a counter growing by small integers, and a constant gauge, over a day.
    #[test]
    fn compression_of_regular_scrapes() {
        let start = 1_700_000_000_000;
        let mut counter = Vec::new();
        let mut v = 1_000.0;
        let mut seed = 42u64;
        for i in 0..1440 {
            counter.push(Sample { t: start + i * 15_000, v });
            // xorshift64: increments of 0 to 9.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v += (seed % 10) as f64;
        }
        let gauge: Vec<Sample> = (0..1440).map(|i| Sample { t: start + i * 15_000, v: 0.75 }).collect();
        for (name, input, limit) in [("counter", &counter, 2.0), ("constant gauge", &gauge, 0.3)] {
            let size = round_trip(input).len();
            let per_sample = size as f64 / input.len() as f64;
            println!("{name}: {size} bytes for {} samples, {per_sample:.3} bytes/sample", input.len());
            assert!(
                per_sample < limit,
                "{name}: {size} bytes for {} samples, {per_sample:.3} bytes/sample (limit {limit})",
                input.len()
            );
        }
    }

    #[test]
    fn decode_range_stops_after_max_t() {
        let input: Vec<Sample> = (0..100).map(|i| Sample { t: i * 1000, v: i as f64 }).collect();
        let bytes = encode(&input).unwrap();
        let mut iter = ChunkIter::new(&bytes).unwrap();
        let mut out = Vec::new();
        collect_range(&mut iter, 10_000, 20_000, &mut out).unwrap();
        assert_eq!(bits(&out), bits(&input[10..=20]));
        // Samples 0 to 20, and sample 21 to see that the range is over.
        assert_eq!(iter.decoded(), 22);

        // Bytes past the range are not read: garbage after the chunk fails a full decode only.
        let damaged = [bytes.as_slice(), &[0xff; 4]].concat();
        assert!(decode(&damaged).is_err());
        let mut out = vec![Sample { t: -1, v: -1.0 }];
        decode_range(&damaged, 98_000, 98_500, &mut out).unwrap();
        assert_eq!(bits(&out), bits(&samples(&[(-1, -1.0), (98_000, 98.0)])));
        // On an error `out` keeps only what it had.
        assert!(decode_range(&damaged, 98_000, i64::MAX, &mut out).is_err());
        assert_eq!(out.len(), 2);
        // An empty range reads nothing past the header.
        decode_range(&damaged, 5, 4, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    /// Strictly increasing timestamps: mostly 15 s scrapes with jitter, with small steps and
    /// gaps of any size, from a start anywhere in the i64 range.
    fn timestamps() -> impl Strategy<Value = Vec<i64>> {
        let step = prop_oneof![
            6 => (-500i64..=500).prop_map(|jitter| (15_000 + jitter) as u64),
            2 => 1u64..=20,
            1 => any::<u64>().prop_map(|g| g.max(1)),
            1 => (0u64..4).prop_map(|k| u64::MAX - k),
        ];
        let start = prop_oneof![Just(i64::MIN), Just(1_700_000_000_000i64), any::<i64>()];
        (start, prop::collection::vec(step, 0..200)).prop_map(|(start, steps)| {
            let mut t = start;
            let mut out = vec![t];
            for step in steps {
                match t.checked_add_unsigned(step) {
                    Some(next) => t = next,
                    None => break,
                }
                out.push(t);
            }
            out
        })
    }

    /// Value bits: any pattern, repeats (the `0` path), small changes of the previous value (the
    /// reused-window path), and NaNs, infinities and signed zeros.
    fn values(n: usize) -> impl Strategy<Value = Vec<u64>> {
        #[derive(Debug, Clone)]
        enum Next {
            Any(u64),
            Same,
            Add(i8),
            Special(usize),
        }
        let next = prop_oneof![
            3 => any::<u64>().prop_map(Next::Any),
            2 => Just(Next::Same),
            3 => any::<i8>().prop_map(Next::Add),
            1 => (0usize..6).prop_map(Next::Special),
        ];
        prop::collection::vec(next, n).prop_map(|choices| {
            let specials = [STALE_NAN_BITS, f64::NAN.to_bits(), f64::INFINITY.to_bits(), (-0.0f64).to_bits(), 0, 1];
            let mut prev = 0u64;
            choices
                .into_iter()
                .map(|c| {
                    prev = match c {
                        Next::Any(b) => b,
                        Next::Same => prev,
                        Next::Add(d) => (f64::from_bits(prev) + f64::from(d)).to_bits(),
                        Next::Special(i) => specials[i],
                    };
                    prev
                })
                .collect()
        })
    }

    fn series() -> impl Strategy<Value = Vec<Sample>> {
        timestamps().prop_flat_map(|ts| {
            let n = ts.len();
            (Just(ts), values(n))
                .prop_map(|(ts, vs)| ts.into_iter().zip(vs).map(|(t, v)| Sample { t, v: f64::from_bits(v) }).collect())
        })
    }

    /// A range end: a sample's time, one either side of it, or any time.
    fn range_end() -> impl Strategy<Value = (prop::sample::Index, i64, Option<i64>)> {
        (any::<prop::sample::Index>(), -1i64..=1, prop::option::weighted(0.2, any::<i64>()))
    }

    fn pick(input: &[Sample], (index, offset, any): (prop::sample::Index, i64, Option<i64>)) -> i64 {
        any.unwrap_or_else(|| input[index.index(input.len())].t.saturating_add(offset))
    }

    proptest! {
        #[test]
        fn samples_round_trip_bit_exact(input in series(), a in range_end(), b in range_end()) {
            let bytes = encode(&input).unwrap();
            prop_assert_eq!(bits(&decode(&bytes).unwrap()), bits(&input));

            let (min_t, max_t) = (pick(&input, a), pick(&input, b));
            let mut out = Vec::new();
            decode_range(&bytes, min_t, max_t, &mut out).unwrap();
            let expected: Vec<Sample> = input.iter().copied().filter(|s| min_t <= s.t && s.t <= max_t).collect();
            prop_assert_eq!(bits(&out), bits(&expected), "range [{}, {}]", min_t, max_t);
        }

        #[test]
        fn arbitrary_bytes_decode_or_fail(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(samples) = decode(&bytes) {
                prop_assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
                prop_assert_eq!(bits(&decode(&encode(&samples).unwrap()).unwrap()), bits(&samples));
            }
        }

        /// Flipped bits deep in a real chunk reach the stream decoder, which random bytes rarely
        /// do past the header.
        #[test]
        fn damaged_chunks_decode_or_fail(input in series(), flips in prop::collection::vec(any::<prop::sample::Index>(), 1..4)) {
            let mut bytes = encode(&input).unwrap();
            let n = bytes.len() * 8;
            for flip in flips {
                let bit = flip.index(n);
                bytes[bit / 8] ^= 0x80 >> (bit % 8);
            }
            if let Ok(samples) = decode(&bytes) {
                prop_assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
                prop_assert_eq!(bits(&decode(&encode(&samples).unwrap()).unwrap()), bits(&samples));
            }
        }

        #[test]
        fn every_truncation_is_refused(input in series().prop_map(|mut s| { s.truncate(40); s })) {
            let bytes = encode(&input).unwrap();
            for len in 0..bytes.len() {
                prop_assert!(decode(&bytes[..len]).is_err(), "{} of {} bytes decode", len, bytes.len());
            }
            prop_assert_eq!(bits(&decode(&bytes).unwrap()), bits(&input));
        }
    }
}
