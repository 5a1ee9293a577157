#![no_main]
//! Fuzz target: steplog::fuzzing::table (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| steplog::fuzzing::table(data));
