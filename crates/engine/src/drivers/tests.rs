use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::driver::VmNet;
use crate::qemu::launch::{Accel, DEFAULT_INIT, QEMU_BINARY};

/// A QEMU driver without the KVM probe and clock measurement of `default`.
fn qemu(binary: &str) -> AnyDriver {
    AnyDriver::Qemu(QemuDriver {
        qemu: PathBuf::from(binary),
        accel: Accel::Tcg,
        guest_tsc_khz: None,
        tcg_fast_timer: true,
        start_timeout: Duration::from_secs(1),
        snapshot_timeout: Duration::from_secs(1),
        shared_ram: false,
    })
}

fn vm_config(run_dir: &Path, net: bool) -> VmConfig {
    VmConfig {
        vcpus: 1,
        memory_mib: 128,
        kernel: "/k".into(),
        rootfs: "/r".into(),
        config_drive: None,
        volumes: Vec::new(),
        net: net.then(|| VmNet {
            tap: "tap0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            guest_ip: Ipv4Addr::new(10, 0, 0, 2),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 24,
        }),
        init: DEFAULT_INIT.into(),
        run_dir: run_dir.to_owned(),
        netns: None,
    }
}

#[test]
fn names_select_drivers() {
    assert_eq!(AnyDriver::NAMES, &["qemu"]);
    assert!(matches!(AnyDriver::named("qemu"), Ok(AnyDriver::Qemu(_))));
    match AnyDriver::named("firecracker") {
        Err(e @ SelectError::Unknown { .. }) => {
            assert!(e.to_string().contains("available: qemu"), "{e}");
        }
        other => panic!("firecracker selected {other:?}"),
    }
}

#[test]
fn dispatches_to_the_driver_it_holds() {
    let d = qemu(QEMU_BINARY);
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(d.name(), "qemu");
    assert_eq!(d.guest_init(), DEFAULT_INIT);
    assert_eq!(
        d.agent_transport(&vm_config(dir.path(), true)),
        Some(AgentTransport::Tcp(Ipv4Addr::new(10, 0, 0, 2)))
    );
    assert_eq!(d.agent_transport(&vm_config(dir.path(), false)), None);
    assert!(d.console_tail(&vm_config(dir.path(), true), 5).is_empty());
}

#[test]
fn finds_the_snapshot_a_stopped_vm_left() {
    let d = qemu(QEMU_BINARY);
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(d.saved_snapshot(dir.path()), None);
    // An interrupted snapshot's temporary file is not a snapshot.
    std::fs::write(dir.path().join("mem.snap.tmp"), b"partial").expect("write");
    assert_eq!(d.saved_snapshot(dir.path()), None);
    let file = dir.path().join(crate::qemu::driver::SNAPSHOT_FILE);
    std::fs::write(&file, b"state").expect("write");
    let snap = d.saved_snapshot(dir.path()).expect("a snapshot");
    assert_eq!((snap.files, snap.size_bytes), (vec![file], 5));
}

#[test]
fn host_check_passes_here_and_names_what_is_missing() {
    let runnable = std::process::Command::new(QEMU_BINARY)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let res = qemu(QEMU_BINARY).check_host();
    assert_eq!(res.is_ok(), runnable, "{res:?}");
    if runnable {
        assert!(matches!(AnyDriver::select("auto"), Ok(AnyDriver::Qemu(_))));
    }
    let err = qemu("/nonexistent/qemu-system-x86_64")
        .check_host()
        .expect_err("a missing binary");
    let text = err.to_string();
    assert!(
        text.starts_with("qemu: /nonexistent/qemu-system-x86_64 is not runnable")
            && text.contains("qemu-system-x86"),
        "{text}"
    );
}
