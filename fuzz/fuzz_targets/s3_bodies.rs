//! libFuzzer entry of the `s3_bodies` target; the check is `baobab_fuzz::s3_bodies`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baobab_fuzz::s3_bodies(data));
