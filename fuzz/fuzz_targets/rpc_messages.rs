//! libFuzzer entry of the `rpc_messages` target; the check is `baobab_fuzz::rpc_messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| baobab_fuzz::rpc_messages(data));
