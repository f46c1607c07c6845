use std::io::Write;
use std::time::Duration;

use super::*;

fn spec() -> LaunchSpec {
    let mut s = LaunchSpec::new("/img/vmlinux", "/run/a,b/root.ext4", Path::new("/run/vm"));
    s.config_drive = Some("/run/vm/config.ext4".into());
    s.volumes.push(Drive {
        path: "/vol/data.ext4".into(),
        readonly: true,
    });
    s.net = Some(GuestNet {
        tap: "tap0".into(),
        mac: crate::network::mac_string(crate::network::guest_mac(Ipv4Addr::new(10, 0, 2, 7))),
        guest_ip: Ipv4Addr::new(10, 0, 2, 7),
        gateway: Ipv4Addr::new(10, 0, 2, 1),
        prefix_len: 24,
    });
    s
}

fn argv_strings(s: &LaunchSpec) -> Vec<String> {
    s.argv()
        .expect("argv")
        .into_iter()
        .map(|a| a.into_string().expect("utf-8"))
        .collect()
}

/// The value following `flag`, for every occurrence.
fn values<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
    argv.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn kernel_cmdline_has_root_init_ip_and_config() {
    let c = spec().kernel_cmdline();
    for part in [
        "console=ttyS0",
        "reboot=t",
        "panic=-1",
        "root=/dev/vda",
        "init=/usr/local/bin/lohar",
        "ip=10.0.2.7::10.0.2.1:255.255.255.0::eth0:off",
        "bhatti.config=/dev/vdb",
        "quiet",
    ] {
        assert!(c.split(' ').any(|a| a == part), "{part} missing in {c}");
    }
    let mut bare = LaunchSpec::new("k", "r", Path::new("/d"));
    bare.quiet = false;
    bare.extra_cmdline.push("loglevel=8".into());
    let c = bare.kernel_cmdline();
    assert!(!c.contains("ip=") && !c.contains("bhatti.config") && !c.contains("quiet"));
    assert!(c.ends_with("loglevel=8"), "{c}");
}

#[test]
fn argv_orders_drives_and_escapes_commas() {
    let a = argv_strings(&spec());
    assert_eq!(
        values(&a, "-drive"),
        vec![
            "id=vd0,file=/run/a,,b/root.ext4,format=raw,if=none",
            "id=vd1,file=/run/vm/config.ext4,format=raw,if=none,readonly=on",
            "id=vd2,file=/vol/data.ext4,format=raw,if=none,readonly=on",
        ]
    );
    assert_eq!(
        values(&a, "-device"),
        vec![
            "virtio-blk-device,drive=vd0",
            "virtio-blk-device,drive=vd1",
            "virtio-blk-device,drive=vd2",
            "virtio-net-device,netdev=net0,mac=06:00:0a:00:02:07",
        ]
    );
    assert_eq!(
        values(&a, "-netdev"),
        vec!["tap,id=net0,ifname=tap0,script=no,downscript=no"]
    );
    assert_eq!(
        values(&a, "-M"),
        vec!["microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off"]
    );
    assert_eq!(values(&a, "-accel"), vec!["tcg,tb-size=128"]);
    assert_eq!(values(&a, "-cpu"), vec!["max"]);
    assert_eq!(
        values(&a, "-qmp"),
        vec!["unix:/run/vm/qmp.sock,server=on,wait=off"]
    );
    assert_eq!(
        values(&a, "-chardev"),
        vec!["file,id=console,path=/run/vm/console.log,append=on"]
    );
    assert_eq!(
        values(&a, "-append"),
        vec![spec().kernel_cmdline().as_str()]
    );
    for flag in ["-nodefaults", "-no-user-config", "-no-reboot"] {
        assert!(a.iter().any(|x| x == flag), "{flag} missing");
    }
}

#[test]
fn kvm_uses_host_cpu_and_vsock_is_optional() {
    let mut s = spec();
    s.accel = Accel::Kvm;
    s.vsock_cid = Some(42);
    let a = argv_strings(&s);
    assert_eq!(values(&a, "-accel"), vec!["kvm"]);
    assert_eq!(values(&a, "-cpu"), vec!["host"]);
    assert!(values(&a, "-device").contains(&"vhost-vsock-device,guest-cid=42"));
}

#[test]
fn seccomp_on_by_default_and_cgroup_named_after_the_run_dir() {
    let mut s = spec();
    assert_eq!(values(&argv_strings(&s), "-sandbox"), vec![SECCOMP]);
    // Snapshots fork an `exec:` helper: spawning must stay allowed.
    assert!(!SECCOMP.contains("spawn=deny"));
    s.seccomp = false;
    assert!(values(&argv_strings(&s), "-sandbox").is_empty());
    let n = LaunchSpec::new("k", "r", Path::new("/data/sandboxes/sb1")).cgroup;
    assert!(n.is_some_and(|n| n.starts_with("bhatti-vmm-sb1-")));
}

#[test]
fn non_utf8_paths_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let bad = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff.ext4"));
    let s = LaunchSpec::new("k", bad, Path::new("/d"));
    assert!(matches!(s.argv(), Err(LaunchError::NonUtf8Path(_))));
}

#[test]
fn netmask_from_prefix() {
    let mut n = spec().net.expect("net");
    for (p, m) in [
        (0, "0.0.0.0"),
        (8, "255.0.0.0"),
        (30, "255.255.255.252"),
        (40, "255.255.255.255"),
    ] {
        n.prefix_len = p;
        assert!(n.kernel_ip_arg().contains(&format!(":{m}:")), "{p}");
    }
}

#[test]
fn spawn_refuses_missing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = LaunchSpec::new(dir.path().join("nope"), dir.path().join("r"), dir.path());
    assert!(matches!(s.spawn(), Err(LaunchError::Missing(_))));
}

#[test]
fn tail_keeps_last_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.log");
    let mut f = fs::File::create(&p).expect("create");
    for i in 0..100 {
        write!(f, "line {i}\r\n").expect("write");
    }
    let t = tail_lines(&p, 3);
    assert_eq!(t, "line 97\nline 98\nline 99");
    assert_eq!(tail_lines(&dir.path().join("absent"), 3), "");
}

#[test]
fn tail_of_a_big_file_spans_blocks_and_stops_at_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.log");
    let mut f = std::io::BufWriter::new(fs::File::create(&p).expect("create"));
    // ~6 MiB: more than TAIL_MAX_BYTES, lines crossing 64 KiB blocks.
    let n = 120_000;
    for i in 0..n {
        writeln!(f, "console line {i:08} {}", "x".repeat(32)).expect("write");
    }
    drop(f);
    let t = tail_lines(&p, 5000);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 5000);
    assert!(lines[0].starts_with(&format!("console line {:08} ", n - 5000)));
    assert!(lines[4999].starts_with(&format!("console line {:08} ", n - 1)));
    // More lines than the cap holds: whole lines from the last 4 MiB.
    let t = tail_lines(&p, usize::MAX);
    let first = t.lines().next().expect("a line");
    assert!(first.starts_with("console line "), "{first}");
    assert!(t.len() as u64 <= super::process::TAIL_MAX_BYTES);
    assert_eq!(tail_lines(&p, 0), "");
}

#[test]
fn tail_does_not_follow_a_symlink_or_read_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    fs::write(&secret, "host secret\n").expect("write");
    let link = dir.path().join("console.log");
    std::os::unix::fs::symlink(&secret, &link).expect("symlink");
    assert_eq!(tail_lines(&link, 10), "");
    assert_eq!(tail_lines(dir.path(), 10), "");
}

#[test]
fn console_log_is_kept_across_launches_until_it_is_big() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("console.log");
    fs::write(&p, "first boot\n").expect("write");
    super::console_log(&p).expect("open");
    assert_eq!(fs::read_to_string(&p).expect("read"), "first boot\n");
    let big = fs::File::options().write(true).open(&p).expect("open");
    big.set_len(super::CONSOLE_LOG_MAX).expect("grow");
    super::console_log(&p).expect("open");
    assert_eq!(fs::metadata(&p).expect("stat").len(), 0);
    let fresh = dir.path().join("new.log");
    super::console_log(&fresh).expect("create");
    assert!(fresh.is_file());
}

#[test]
fn boot_error_message_carries_console_tail() {
    let e = BootError {
        reason: BootFailure::Timeout(Duration::from_secs(3)),
        console_tail: "Kernel panic - not syncing: VFS".into(),
    };
    let msg = e.to_string();
    assert!(
        msg.contains("not ready after 3s") && msg.contains("Kernel panic"),
        "{msg}"
    );
}

#[test]
fn pvm_is_detected_from_the_module_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("kvm")).expect("kvm");
    assert!(!kvm_is_pvm(dir.path()));
    fs::create_dir(dir.path().join("kvm_pvm")).expect("kvm_pvm");
    assert!(kvm_is_pvm(dir.path()));
}

#[test]
fn tcg_guests_get_the_tsc_frequency_and_kvm_guests_do_not() {
    let mut s = spec();
    assert!(!s.kernel_cmdline().contains("tsc"));
    s.guest_tsc_khz = Some(2_100_000);
    let c = s.kernel_cmdline();
    assert!(c.split(' ').any(|a| a == "tsc_early_khz=2100000"), "{c}");
    assert!(c.split(' ').any(|a| a == "tsc=reliable"), "{c}");
    s.accel = Accel::Kvm;
    assert!(!s.kernel_cmdline().contains("tsc"));
}

#[test]
fn one_vcpu_tcg_guests_skip_the_apic_timer_calibration_unless_told_not_to() {
    let mut s = spec();
    let has = |s: &LaunchSpec| s.kernel_cmdline().split(' ').any(|a| a == "noapictimer");
    assert!(has(&s));
    s.tcg_fast_timer = false;
    assert!(!has(&s));
    s.tcg_fast_timer = true;
    s.vcpus = 2;
    assert!(!has(&s), "SMP guests keep calibrated APIC timers");
    s.vcpus = 1;
    s.accel = Accel::Kvm;
    assert!(!has(&s));
}

#[test]
fn tsc_must_be_constant_and_nonstop() {
    let cpu =
        |flags: &str| format!("processor\t: 0\nflags\t\t: fpu {flags} sse\n\nflags\t: none\n");
    assert!(clock::tsc_is_invariant(&cpu(
        "tsc constant_tsc nonstop_tsc"
    )));
    assert!(!clock::tsc_is_invariant(&cpu("tsc constant_tsc")));
    assert!(!clock::tsc_is_invariant(&cpu("tsc nonstop_tsc")));
    assert!(!clock::tsc_is_invariant("processor\t: 0\n"));
}

#[test]
fn host_tsc_measurement_is_plausible_or_absent() {
    if let Some(khz) = clock::host_tsc_khz() {
        assert!((100_000..=10_000_000).contains(&khz), "{khz}");
        // Cached: the second call is the same value.
        assert_eq!(clock::host_tsc_khz(), Some(khz));
    }
}

#[test]
fn a_memory_file_backs_guest_ram_shared() {
    let mut s = spec();
    s.memory_file = Some("/run/a,b/ram".into());
    let a = argv_strings(&s);
    assert_eq!(
        values(&a, "-object"),
        vec![format!(
            "memory-backend-file,id=microvm.ram,size={}M,mem-path=/run/a,,b/ram,share=on",
            s.memory_mib
        )]
    );
    assert_eq!(
        values(&a, "-M"),
        vec!["microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off,memory-backend=microvm.ram"]
    );
}
