//! sparsekit's Node-API addon: glue only. Arguments are converted here, work runs in the core
//! crates on the libuv thread pool ([`job::Job`]), and errors become JS errors in one place
//! ([`error::Failure`]). No domain logic lives in this crate.
#![deny(clippy::all)]
// `Failure` (code, message, path, offset, syscall, range) is only built on the error path of
// a job that did I/O; boxing it would cost an allocation for nothing measurable.
#![allow(clippy::result_large_err)]
// Under `cargo test` napi-derive registers nothing, so the exported glue looks unused.
#![cfg_attr(test, allow(dead_code))]

#[macro_use]
extern crate napi_derive;

mod backup;
mod blocksync;
mod bmap;
mod copy;
mod customize;
mod destinations;
mod digest;
mod error;
mod extents;
mod flash;
mod job;
mod layout;
mod qcow2;

pub use job::CancelToken;
