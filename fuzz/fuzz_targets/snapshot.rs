//! State-machine snapshot bytes, restored as on start-up and install-snapshot.
//! The harness is `ratequeue_node::fuzzing::snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ratequeue_node::fuzzing::snapshot(data);
});
