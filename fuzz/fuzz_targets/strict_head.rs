//! libFuzzer entry for `bunsan_fuzz::strict_head` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bunsan_fuzz::strict_head(data));
