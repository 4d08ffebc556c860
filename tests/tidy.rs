//! Tidy checks, run with the tests (in the spirit of rust-analyzer's `tidy.rs`): rules about the
//! code base itself that no compiler checks.
//!
//! - Every source file starts with a `//!` comment saying what it is for.
//! - No crate depends on a crate above it (the layering of `docs/ARCHITECTURE.md`, "Code map",
//!   read from `cargo metadata`).
//! - No `*_for_tests` function outside test code: `#[cfg(test)]` items and modules, items behind a
//!   `test-support` feature, test and bench files.
//!
//! Each check lists every offender, with what to do, and fails once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folders whose `.rs` files the checks read.
const SOURCE_DIRS: &[&str] = &["crates", "src", "tests", "benches"];

/// Every `.rs` file under [`SOURCE_DIRS`], relative to the root, sorted. Skips build output,
/// `node_modules` and hidden folders.
fn source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = SOURCE_DIRS.iter().map(|dir| root().join(dir)).collect();
    while let Some(dir) = dirs.pop() {
        let Ok(read_dir) = std::fs::read_dir(&dir) else { continue };
        for item in read_dir {
            let path = item.unwrap().path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if path.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path.strip_prefix(root()).unwrap().to_owned());
            }
        }
    }
    files.sort();
    files
}

fn display(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Files known to lack their `//!` comment. A ratchet: it may only shrink. Write the comment and
/// delete the line.
const MISSING_MODULE_DOCS_ALLOWED: &[&str] = &[];

/// Every source file starts with a `//!` comment (before any `#![...]` attribute or code), which
/// says what the file is for and how it fits in.
#[test]
fn every_source_file_starts_with_a_module_doc_comment() {
    let mut missing = BTreeSet::new();
    for path in source_files() {
        let text = std::fs::read_to_string(root().join(&path)).unwrap();
        if !text.starts_with("//!") {
            missing.insert(display(&path));
        }
    }
    let allowed: BTreeSet<String> =
        MISSING_MODULE_DOCS_ALLOWED.iter().map(|path| (*path).to_owned()).collect();
    let new: Vec<&String> = missing.difference(&allowed).collect();
    assert!(
        new.is_empty(),
        "these files do not start with a `//!` comment saying what they are for (the first line, \
         before any `#![...]` attribute):\n  {}",
        join(&new)
    );
    let fixed: Vec<&String> = allowed.difference(&missing).collect();
    assert!(
        fixed.is_empty(),
        "these files now have their `//!` comment: delete them from MISSING_MODULE_DOCS_ALLOWED in \
         tests/tidy.rs:\n  {}",
        join(&fixed)
    );
}

fn join(items: &[impl std::fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
}

/// The layering, from `docs/ARCHITECTURE.md` ("Code map"): `model ← log`,
/// `model ← projection ← query`, `{log, projection, query} ← engine ← server ← cli`,
/// `model ← workload ← cli`; the root package `idgraph` over every library; `test-support`
/// (dev-only) over everything below `cli`. Each crate with the workspace crates it may depend on:
/// what is below it, directly or not.
const LAYERS: &[(&str, &[&str])] = &[
    ("idgraph-model", &[]),
    // The NATS side of cluster mode: knows nothing of entries (a group is opaque bytes).
    ("idgraph-cluster", &[]),
    ("idgraph-log", &["idgraph-model"]),
    ("idgraph-projection", &["idgraph-model"]),
    ("idgraph-query", &["idgraph-model", "idgraph-projection"]),
    ("idgraph-engine", &["idgraph-model", "idgraph-log", "idgraph-projection", "idgraph-query"]),
    (
        "idgraph-server",
        &[
            "idgraph-model",
            "idgraph-log",
            "idgraph-projection",
            "idgraph-query",
            "idgraph-engine",
            "idgraph-cluster",
        ],
    ),
    ("idgraph-workload", &["idgraph-model"]),
    (
        "idgraph-cli",
        &[
            "idgraph-model",
            "idgraph-log",
            "idgraph-projection",
            "idgraph-query",
            "idgraph-engine",
            "idgraph-server",
            "idgraph-cluster",
            "idgraph-workload",
        ],
    ),
    (
        TEST_SUPPORT,
        &[
            "idgraph-model",
            "idgraph-log",
            "idgraph-projection",
            "idgraph-query",
            "idgraph-engine",
            "idgraph-server",
            "idgraph-workload",
        ],
    ),
    (
        "idgraph",
        &[
            "idgraph-model",
            "idgraph-log",
            "idgraph-projection",
            "idgraph-query",
            "idgraph-engine",
            "idgraph-server",
            "idgraph-cluster",
            "idgraph-workload",
        ],
    ),
];

/// The dev-only crate of shared test helpers.
const TEST_SUPPORT: &str = "idgraph-test-support";

/// The crates that may have [`TEST_SUPPORT`] as a dev-dependency: those above it. (A crate below
/// it would build a second copy of itself for its tests.)
const TEST_SUPPORT_USERS: &[&str] = &["idgraph", "idgraph-cli"];

/// A dependency of a workspace crate on another one.
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    /// `normal`, `dev` or `build`.
    kind: String,
    manifest: String,
}

/// The edges between workspace crates, and each crate's `publish` setting, from
/// `cargo metadata --no-deps`.
fn workspace_edges() -> (Vec<Edge>, BTreeMap<String, serde_json::Value>) {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut edges = Vec::new();
    let mut publish = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().unwrap().to_owned();
        let manifest = package["manifest_path"].as_str().unwrap_or_default();
        let manifest = Path::new(manifest).strip_prefix(root()).map(display).unwrap_or_default();
        publish.insert(name.clone(), package["publish"].clone());
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let to = dependency["name"].as_str().unwrap();
            if members.contains(to) {
                edges.push(Edge {
                    from: name.clone(),
                    to: to.to_owned(),
                    kind: dependency["kind"].as_str().unwrap_or("normal").to_owned(),
                    manifest: manifest.clone(),
                });
            }
        }
    }
    (edges, publish)
}

/// No crate depends on a crate above it; `test-support` is a dev-dependency only, of the crates
/// above it, and is never published.
#[test]
fn no_crate_depends_on_a_crate_above_it() {
    let (edges, publish) = workspace_edges();
    let problems = layering_problems(&edges, &publish);
    assert!(problems.is_empty(), "layering violations:\n  {}", join(&problems));
}

/// What is wrong with the workspace's dependency edges, one line per offending edge or crate.
fn layering_problems(edges: &[Edge], publish: &BTreeMap<String, serde_json::Value>) -> Vec<String> {
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    for crate_name in publish.keys() {
        if !layers.contains_key(crate_name.as_str()) {
            problems.push(format!(
                "{crate_name} is not in the layering: add it to LAYERS in tests/tidy.rs and to the \
                 code map of docs/ARCHITECTURE.md"
            ));
        }
    }
    for edge in edges {
        let Some(allowed) = layers.get(edge.from.as_str()) else { continue };
        let is_dev = edge.kind == "dev";
        let ok = allowed.contains(&edge.to.as_str())
            || (is_dev && edge.to == edge.from)
            || (is_dev && edge.to == TEST_SUPPORT && TEST_SUPPORT_USERS.contains(&&*edge.from));
        if !ok {
            let why = if edge.to == TEST_SUPPORT {
                format!("{TEST_SUPPORT} is a dev-dependency of {TEST_SUPPORT_USERS:?} only")
            } else {
                format!("{} is not below {} in the layering", edge.to, edge.from)
            };
            problems.push(format!(
                "{}: {} has a {} dependency on {}: {why} (docs/ARCHITECTURE.md, \"Code map\"; \
                 LAYERS in tests/tidy.rs)",
                edge.manifest, edge.from, edge.kind, edge.to
            ));
        }
    }
    if publish.get(TEST_SUPPORT).is_some_and(|publish| *publish != serde_json::json!([])) {
        problems.push(format!("{TEST_SUPPORT} must say `publish = false`"));
    }
    problems
}

#[test]
fn the_layering_check_names_each_upward_edge() {
    let edge = |from: &str, to: &str, kind: &str| Edge {
        from: from.to_owned(),
        to: to.to_owned(),
        kind: kind.to_owned(),
        manifest: format!("crates/{from}/Cargo.toml"),
    };
    let edges = [
        edge("idgraph-engine", "idgraph-log", "normal"),
        edge("idgraph-log", "idgraph-projection", "normal"),
        edge("idgraph-projection", "idgraph-projection", "dev"),
        edge("idgraph", TEST_SUPPORT, "dev"),
        edge("idgraph-engine", TEST_SUPPORT, "dev"),
        edge("idgraph", TEST_SUPPORT, "normal"),
    ];
    let publish: BTreeMap<String, serde_json::Value> =
        [("idgraph-new", serde_json::json!(null)), (TEST_SUPPORT, serde_json::json!(null))]
            .into_iter()
            .map(|(name, publish)| (name.to_owned(), publish))
            .collect();
    let problems = layering_problems(&edges, &publish);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(problems[0].starts_with("idgraph-new is not in the layering"));
    assert!(problems[1].contains("idgraph-log has a normal dependency on idgraph-projection"));
    assert!(problems[2].contains("idgraph-engine has a dev dependency on idgraph-test-support"));
    assert!(problems[3].contains("idgraph has a normal dependency on idgraph-test-support"));
    assert!(problems[4].contains("must say `publish = false`"));
}

/// `*_for_tests` functions exist only in test code: a `#[cfg(test)]` item or module, an item
/// behind the `test-support` feature (`#[cfg(feature = "test-support")]` or
/// `#[cfg(any(test, feature = "test-support"))]`), or a test or bench file.
#[test]
fn for_tests_functions_exist_only_in_test_code() {
    let mut offenders = Vec::new();
    for path in source_files() {
        if is_test_file(&path) {
            continue;
        }
        let text = std::fs::read_to_string(root().join(&path)).unwrap();
        for line in for_tests_fns_outside_test_code(&text) {
            offenders.push(format!("{}:{line}", display(&path)));
        }
    }
    assert!(
        offenders.is_empty(),
        "`*_for_tests` functions compiled into production code; put them under #[cfg(test)] or \
         behind the crate's `test-support` feature (enabled by dev-dependencies only):\n  {}",
        join(&offenders)
    );
}

/// Test and bench files: under a `tests` or `benches` folder, or a `tests.rs` module (declared
/// `#[cfg(test)] mod tests;`).
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name == "tests.rs")
        || path.components().any(|part| {
            let part = part.as_os_str();
            part == "tests" || part == "benches"
        })
}

/// The lines (1-based) of `fn *_for_tests` definitions outside test-only items. Textual: an
/// attribute that gates on tests applies to the item after it, which is exempt to its closing
/// brace (braces are counted outside `//` comments).
fn for_tests_fns_outside_test_code(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut depth: i64 = 0;
    // Inside a test-only item while `depth` is above this.
    let mut exempt_above: Option<i64> = None;
    // A test-gating attribute was seen; the item it applies to has not started its body yet.
    let mut test_cfg_pending = false;
    for (idx, raw) in text.lines().enumerate() {
        let code = raw.split("//").next().unwrap_or_default().trim();
        if code.is_empty() {
            continue;
        }
        let attribute_only = code.starts_with("#[") && code.ends_with(']');
        if code.starts_with("#[") && gates_on_tests(code) {
            test_cfg_pending = true;
        }
        if exempt_above.is_none() && !test_cfg_pending && defines_for_tests_fn(code) {
            lines.push(idx + 1);
        }
        let opens = code.matches('{').count() as i64;
        let closes = code.matches('}').count() as i64;
        if test_cfg_pending && !attribute_only && (code.contains('{') || code.contains(';')) {
            if exempt_above.is_none() && opens > closes {
                exempt_above = Some(depth);
            }
            test_cfg_pending = false;
        }
        depth += opens - closes;
        if exempt_above.is_some_and(|level| depth <= level) {
            exempt_above = None;
        }
    }
    lines
}

/// Whether an attribute compiles its item only for tests.
fn gates_on_tests(attribute: &str) -> bool {
    attribute.starts_with("#[cfg(")
        && !attribute.contains("not(")
        && (attribute.contains("(test")
            || attribute.contains(" test")
            || attribute.contains("test-support"))
}

fn defines_for_tests_fn(code: &str) -> bool {
    code.match_indices("fn ").any(|(at, _)| {
        let word_start =
            at == 0 || !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let name: String =
            code[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        word_start && name.ends_with("_for_tests")
    })
}

#[test]
fn the_for_tests_scanner_sees_through_test_gates() {
    let text = r#"
pub fn open() {}
pub fn damage_for_tests() {}
#[cfg(test)]
fn helper_for_tests() {}
#[cfg(any(test, feature = "test-support"))]
pub fn raw_for_tests(
    seq: u64,
) -> u8 {
    0
}
#[cfg(test)]
mod tests {
    fn inner_for_tests() {}
}
trait Storage {
    #[cfg(feature = "test-support")]
    fn overwrite_for_tests(&self);
    fn close_for_tests(&self);
}
#[cfg(not(test))]
fn sneaky_for_tests() {}
"#;
    assert_eq!(for_tests_fns_outside_test_code(text), [3, 19, 22]);
}
