//! libFuzzer entry of the `meta_records` target; the check is `baobab_fuzz::meta_records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baobab_fuzz::meta_records(data));
