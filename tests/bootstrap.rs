//! `scripts/find-libclang.sh`, which decides whether `scripts/bootstrap.sh` installs `libclang-dev`,
//! counts only a libclang that bindgen can load: on a Debian machine with `libclang-cpp14` (the C++
//! interface) but no `libclang`, it must say "none", or RocksDB's build dies minutes later.

use std::path::Path;
use std::process::Command;

/// Runs the detection on a fake file system root holding `files`; the path found, if any.
fn detect(files: &[&str]) -> Option<String> {
    let root = tempfile::tempdir().unwrap();
    for file in files {
        let path = root.path().join(file.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/find-libclang.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("IDGRAPH_LIBCLANG_ROOT", root.path())
        .env_remove("LIBCLANG_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let found = stdout.trim().strip_prefix(root.path().to_str().unwrap()).map(str::to_owned);
    assert_eq!(output.status.success(), found.is_some(), "{output:?}");
    found
}

#[test]
fn the_cpp_interface_alone_is_not_a_libclang() {
    assert_eq!(detect(&["/usr/lib/llvm-14/lib/libclang-cpp.so.14"]), None);
    assert_eq!(detect(&["/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14"]), None);
    assert_eq!(detect(&[]), None);
}

#[test]
fn the_names_bindgen_loads_are_found() {
    for file in [
        "/usr/lib/llvm-14/lib/libclang.so",
        "/usr/lib/llvm-14/lib/libclang-14.so.1",
        "/usr/lib/llvm-16/lib/libclang.so.16",
        "/usr/lib/llvm-14/lib/libclang-14.0.6.so",
        "/usr/lib/x86_64-linux-gnu/libclang-14.so.14.0.6",
    ] {
        assert_eq!(
            detect(&["/usr/lib/llvm-14/lib/libclang-cpp.so.14", file]).as_deref(),
            Some(file)
        );
    }
}
