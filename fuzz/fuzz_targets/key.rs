#![no_main]
//! Fuzz target: `cairn_engine::fuzz::key`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cairn_engine::fuzz::key(data);
});
