//! Compiles the XDP programs (bpf/steer.bpf.c, bpf/pktgen.bpf.c) with clang when the
//! `afxdp` feature is on. The headers are libbpf's (from libbpf-sys) and
//! the system's UAPI headers.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/steer.bpf.c");
    println!("cargo:rerun-if-changed=bpf/pktgen.bpf.c");
    if env::var_os("CARGO_FEATURE_AFXDP").is_none() {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let libbpf = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys exports its include dir");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        Ok(other) => panic!("no multiarch include dir known for {other}"),
        Err(_) => panic!("cargo sets CARGO_CFG_TARGET_ARCH"),
    };
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    for name in ["steer", "pktgen"] {
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-I{libbpf}"))
            .arg(format!("-I/usr/include/{arch}"))
            .arg("-c")
            .arg(format!("bpf/{name}.bpf.c"))
            .arg("-o")
            .arg(out.join(format!("{name}.bpf.o")))
            .status()
            .unwrap_or_else(|e| panic!("running {clang} (Debian package clang): {e}"));
        assert!(status.success(), "clang failed to compile bpf/{name}.bpf.c");
    }
}
