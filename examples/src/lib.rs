//! Runnable examples of Kollect; see the `examples` targets of this package.
#![forbid(unsafe_code)]
