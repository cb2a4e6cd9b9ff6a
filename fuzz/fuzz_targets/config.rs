//! libFuzzer entry of the `config` target; the check is `baobab_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baobab_fuzz::config(data));
