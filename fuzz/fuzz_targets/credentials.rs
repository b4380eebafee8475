//! `slo_gate_fuzz::credentials`: what it feeds and asserts is documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slo_gate_fuzz::credentials(data));
