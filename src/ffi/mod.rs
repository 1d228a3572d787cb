//! The C ABI. See `include/kharbranth.h`.
