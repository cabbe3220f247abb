//! `proto/quicrpc/options.proto`, the copy for users and other languages' tools, is the same
//! file as the one `quicrpc-build` compiles in (`codegen/proto/quicrpc/options.proto`, the
//! source of truth: it must live inside that crate for the crate to package).

use std::path::Path;

#[test]
fn repository_copy_equals_the_quicrpc_build_copy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = "codegen/proto/quicrpc/options.proto";
    let copy = "proto/quicrpc/options.proto";
    let read = |path: &str| {
        std::fs::read(root.join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    };
    let (source_bytes, copy_bytes) = (read(source), read(copy));
    if source_bytes != copy_bytes {
        let line = source_bytes
            .iter()
            .zip(&copy_bytes)
            .take_while(|(a, b)| a == b)
            .filter(|(a, _)| **a == b'\n')
            .count()
            + 1;
        panic!(
            "{copy} differs from {source} from line {line} on. {source} is the one to edit \
             (quicrpc-build compiles it in); then copy it over: cp {source} {copy}"
        );
    }
}
