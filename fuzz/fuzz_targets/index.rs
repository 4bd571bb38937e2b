#![no_main]
//! Fuzz target: `cairn_engine::fuzz::index`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cairn_engine::fuzz::index(data);
});
