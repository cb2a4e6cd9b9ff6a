//! libFuzzer entry of the `shard_format` target; the check is `baobab_fuzz::shard_format`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baobab_fuzz::shard_format(data));
