//! `slo_gate_fuzz::remote_write`: what it feeds and asserts is documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slo_gate_fuzz::remote_write(data));
