//! A store's records, validated as a node opens its log store on start-up.
//! The harness is `ratequeue_node::fuzzing::log_store`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ratequeue_node::fuzzing::log_store(data);
});
