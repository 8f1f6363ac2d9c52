//! Tests of the peer transport.
