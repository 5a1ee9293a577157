#![no_main]
//! Fuzz target: steplog_import::fuzzing::import (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| steplog_import::fuzzing::import(data));
