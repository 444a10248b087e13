//! sparsekit's Node-API addon: glue only. Arguments are converted here, work runs in the core
//! crates on the libuv thread pool ([`job::Job`]), and errors become JS errors in one place
//! ([`error::Failure`]). No domain logic lives in this crate.
#![deny(clippy::all)]
// Under `cargo test` napi-derive registers nothing, so the exported glue looks unused.
#![cfg_attr(test, allow(dead_code))]

#[macro_use]
extern crate napi_derive;

mod blocksync;
mod bmap;
mod copy;
mod digest;
mod error;
mod extents;
mod job;
mod qcow2;

pub use job::CancelToken;
