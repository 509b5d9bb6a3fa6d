//! Test helpers of the bus suite: the store suite's helpers (one file, included by path, so the
//! two suites create and drop their databases alike) and the `backend_tests!` macro.
#![allow(dead_code)] // reason: shared helpers, not every one is used here

#[macro_use]
#[path = "../../../store/tests/common/mod.rs"]
mod shared;

pub use shared::*;
