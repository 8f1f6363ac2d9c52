//! An API request body (`[kind][JSON]`) or path parameter, as the handlers read it.
//! The harness is `ratequeue_node::fuzzing::json_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ratequeue_node::fuzzing::json_body(data);
});
