#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashdir::testing::fuzz::wal(data);
});
