#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashdir::engine::fuzz::image(data);
});
