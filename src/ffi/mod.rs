//! The C ABI (`include/kharbranth.h`, every symbol prefixed `kh_`).
//!
//! This layer is thin on purpose: each exported function checks and converts its arguments,
//! calls the Rust API, and converts the result. How it is built:
//!
//! - `boundary`: the one panic boundary (`guard` and its variants; every exported body runs
//!   inside one) and every helper that reads a C pointer: required and optional objects and
//!   strings, pointer + length, out-parameters written only on success, `_free`. No other
//!   module checks a pointer for NULL or catches a panic.
//! - `result`: `kh_result`, its strings, and the per-thread `kh_last_error`.
//! - `config`, `hooks`, `manager`: the exports of each C type; `poll`: the event queue of
//!   polled connections (`kh_manager_poll`, `kh_event`). The `kh_config` setters refuse a
//!   bad value at once, by the rule and in the words of `ConfigBuilder::build` (both call
//!   `limits`).
//! - `runtime`: the runtime each `kh_manager` owns, and how calls wait and shut down from
//!   callbacks, foreign runtimes and plain threads.
//! - `version`: `kh_version` and `kh_log_init`.
//! - `log`: `kh_log_set_callback`, the library's log delivered to the host's logger.
//!
//! cbindgen (`sort_by = "None"`) writes the declarations of each kind in the order of the
//! modules below: reordering them reorders the header.

#![allow(non_camel_case_types)] // C names: `kh_result`, `kh_config`.
#![allow(clippy::missing_safety_doc)] // The safety contract of each function is in the header.

mod boundary;
mod config;
mod hooks;
mod manager;
mod poll;
mod result;
mod runtime;
mod version;
pub(crate) mod window;
// Last: its declarations follow kh_log_init's in the header.
mod log;

pub use config::*;
pub use hooks::*;
pub use log::*;
pub use manager::*;
pub use poll::*;
pub use result::*;
pub use runtime::kh_manager;
pub use version::*;
