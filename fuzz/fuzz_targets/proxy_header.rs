//! libFuzzer entry for `bunsan_fuzz::proxy_header` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bunsan_fuzz::proxy_header(data));
