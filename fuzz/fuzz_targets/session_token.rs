//! libFuzzer entry for `bunsan_fuzz::session_token` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bunsan_fuzz::session_token(data));
