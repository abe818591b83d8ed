//! Concurrent allocation from separate processes, as concurrent ADDs from a
//! runtime are. The test binary runs itself once per "plugin process", with
//! `XVS_IPAM_CHILD_DIR` telling the child test where to allocate.

use std::collections::HashSet;
use std::net::IpAddr;
use std::process::Command;

use xvs_cni::ipam::{HostLocal, Pool};
use xvs_cni::Attachment;

const CHILD_DIR: &str = "XVS_IPAM_CHILD_DIR";
const CHILD_ID: &str = "XVS_IPAM_CHILD_ID";

fn allocator(dir: &str) -> HostLocal {
    let pool = Pool::new("10.244.1.0/24".parse().unwrap(), None, None).unwrap();
    HostLocal::new(dir, pool)
}

/// The child side: a no-op unless started by the parent below.
#[test]
fn child_allocate() {
    let (Ok(dir), Ok(id)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ID)) else {
        return;
    };
    let lease = allocator(&dir)
        .allocate(&Attachment::new(id, "eth0"))
        .unwrap();
    println!("LEASE {}", lease.ip);
}

#[test]
fn twenty_processes_get_twenty_distinct_addresses() {
    let dir = tempfile::TempDir::new().unwrap();
    let dir = dir.path().join("xvs");
    let dir = dir.to_str().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_allocate",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, dir)
                .env(CHILD_ID, format!("pod{i}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ips = HashSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let ip: IpAddr = stdout
            .lines()
            .find_map(|l| l.split_once("LEASE ").map(|(_, ip)| ip.trim()))
            .expect("child printed its lease")
            .parse()
            .unwrap();
        assert!(ips.insert(ip), "{ip} handed out twice");
    }
    assert_eq!(ips.len(), 20);
    let on_disk: HashSet<IpAddr> = allocator(dir)
        .leases()
        .unwrap()
        .iter()
        .map(|l| l.ip)
        .collect();
    assert_eq!(on_disk, ips);
}
