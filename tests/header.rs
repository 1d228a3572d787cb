//! The committed header must be exactly what build.rs generates from src/ffi/.

#[test]
fn committed_header_equals_generated_header() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/kharbranth.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/kharbranth.h");
    let committed = std::fs::read_to_string(path).expect("include/kharbranth.h exists");
    assert!(
        committed == generated,
        "include/kharbranth.h differs from what src/ffi/ generates: \
         run `bash scripts/gen_header.sh` and commit include/kharbranth.h"
    );
}
