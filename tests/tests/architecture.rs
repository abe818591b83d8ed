//! The workspace keeps the shape ARCHITECTURE.md gives it: dependencies
//! only point the way its crate table says (the datapath never depends on
//! the CLI or the CNI plugin, `control` never on the datapath), and every
//! crate but `hw` forbids `unsafe`. One departure from the table, on
//! purpose: `flowtable` uses `hw::mem` for cache prefetch and huge pages,
//! because those need `unsafe` and `hw` is where all of it lives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Workspace crate -> the workspace crates it depends on (normal deps).
fn internal_deps() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|n| names.contains(n))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn dependencies_point_the_way_the_architecture_says() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        // Only for hw::mem (prefetch, huge pages): the flow table must not
        // use `unsafe` itself, and those two hints need it.
        ("xvs-flowtable", &["xvs-hw"][..]),
        ("xvs-hw", &[][..]),
        ("xvs-control", &[][..]),
        (
            "xvs-vswitch",
            &["xvs-flowtable", "xvs-hw", "xvs-control"][..],
        ),
        ("xvs-cni", &["xvs-control"][..]),
        ("xvs-perf", &["xvs-hw", "xvs-vswitch", "xvs-control"][..]),
        (
            "xvs-tests",
            &[
                "xvs-flowtable",
                "xvs-hw",
                "xvs-control",
                "xvs-vswitch",
                "xvs-cni",
                "xvs-perf",
            ][..],
        ),
    ]);
    let deps = internal_deps();
    assert_eq!(
        deps.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        allowed.keys().copied().collect::<BTreeSet<_>>(),
        "the workspace's crates changed: update ARCHITECTURE.md's table and this test together"
    );
    for (krate, uses) in &deps {
        for dep in uses {
            assert!(
                allowed[krate.as_str()].contains(&dep.as_str()),
                "{krate} must not depend on {dep}"
            );
        }
    }
}

#[test]
fn every_crate_but_hw_forbids_unsafe() {
    for krate in ["flowtable", "control", "vswitch", "cni", "perf"] {
        let lib = workspace_root().join(krate).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        assert!(
            text.contains("#![forbid(unsafe_code)]"),
            "{} lacks #![forbid(unsafe_code)]",
            lib.display()
        );
        let manifest =
            std::fs::read_to_string(workspace_root().join(krate).join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{krate} does not use the workspace lints"
        );
    }
    let root = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    assert!(root.contains("unsafe_code = \"forbid\""));
    assert!(root.contains("undocumented_unsafe_blocks = \"deny\""));
}
