use super::layout::{Version, own_path, sweep, v1_mount};
use super::*;

#[test]
fn limits_follow_the_spec() {
    let l = Limits {
        cpus: 2,
        memory_mib: 512,
    };
    assert_eq!(l.quota_us(), 200_000);
    assert_eq!(l.memory_bytes(), (512 + OVERHEAD_MIB) << 20);
    assert_eq!(
        l.files(Version::V2),
        vec![
            ("cpu.max", "200000 100000".to_owned()),
            ("cpu.weight", "300".to_owned()),
            ("memory.max", ((512 + OVERHEAD_MIB) << 20).to_string()),
        ]
    );
    assert_eq!(
        l.files(Version::V1Cpu)[2],
        ("cpu.shares", "3072".to_owned())
    );
}

#[test]
fn finds_own_groups_and_v1_mounts() {
    let own = "9:name=systemd:/\n4:memory:/jobs/7\n1:cpu,cpuacct:/\n0::/user.slice\n";
    assert_eq!(own_path(own, "memory"), Some("/jobs/7"));
    assert_eq!(own_path(own, "cpu"), Some("/"));
    assert_eq!(own_path(own, "cpuacct"), Some("/"));
    assert_eq!(own_path(own, ""), Some("/user.slice"));
    assert_eq!(own_path(own, "pids"), None);
    let mi = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
              31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
              32 25 0:28 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n";
    assert_eq!(
        v1_mount(mi, "cpu"),
        Some(("/sys/fs/cgroup/cpu,cpuacct".into(), "/".into()))
    );
    assert_eq!(
        v1_mount(mi, "memory"),
        Some(("/sys/fs/cgroup/memory".into(), "/".into()))
    );
    assert_eq!(v1_mount(mi, "pids"), None);
}

#[test]
fn sweep_removes_only_old_empty_vmm_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = std::time::SystemTime::now() - LEFTOVER_AGE * 2;
    let make = |name: &str, age: Option<std::time::SystemTime>| {
        let d = dir.path().join(name);
        fs::create_dir(&d).expect("mkdir");
        if let Some(t) = age {
            fs::File::open(&d)
                .and_then(|f| f.set_modified(t))
                .expect("set mtime");
        }
        d
    };
    let leftover = make(&format!("{PREFIX}a-1"), Some(old));
    let fresh = make(&format!("{PREFIX}b-2"), None);
    let foreign = make("system.slice", Some(old));
    // Stands for a group with a process: rmdir fails.
    let busy = make(&format!("{PREFIX}c-3"), None);
    fs::write(busy.join("cgroup.procs"), "42").expect("write");
    fs::File::open(&busy)
        .and_then(|f| f.set_modified(old))
        .expect("set mtime");
    sweep(dir.path());
    assert!(!leftover.exists());
    assert!(fresh.exists() && foreign.exists() && busy.exists());
}

#[test]
fn names_are_stable_and_per_path() {
    let a = name_for(Path::new("/data/sandboxes/sb1"));
    assert_eq!(a, name_for(Path::new("/data/sandboxes/sb1")));
    assert!(
        a.starts_with("bhatti-vmm-sb1-") && a.len() == 15 + 16,
        "{a}"
    );
    assert_ne!(a, name_for(Path::new("/other/sandboxes/sb1")));
}
