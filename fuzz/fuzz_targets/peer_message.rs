//! A peer body (`[kind][version][bincode]`), as the peer server or client decodes it.
//! The harness is `ratequeue_node::fuzzing::peer_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ratequeue_node::fuzzing::peer_message(data);
});
