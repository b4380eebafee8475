//! `slo_gate_fuzz::wal_segment`: what it feeds and asserts is documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slo_gate_fuzz::wal_segment(data));
