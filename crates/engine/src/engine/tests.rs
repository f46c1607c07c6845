use super::*;

#[test]
fn ids_are_checked() {
    for good in ["a", "sb-1", "0abc", &"x".repeat(MAX_ID_LEN)] {
        assert!(good.parse::<SandboxId>().is_ok(), "{good}");
    }
    for bad in [
        "",
        "-a",
        "A",
        "a_b",
        "a/b",
        "a b",
        &"x".repeat(MAX_ID_LEN + 1),
    ] {
        assert!(
            matches!(bad.parse::<SandboxId>(), Err(SpecError::Id(_))),
            "{bad}"
        );
    }
    let json = serde_json::to_string(&"sb-1".parse::<SandboxId>().ok()).ok();
    assert_eq!(json.as_deref(), Some("\"sb-1\""));
    assert!(serde_json::from_str::<SandboxId>("\"../x\"").is_err());
}

#[test]
fn default_spec_is_valid() {
    assert_eq!(SandboxSpec::default().validate(), Ok(()));
}

#[test]
#[allow(clippy::too_many_lines)] // TODO(issue 10): split
fn bad_specs_name_the_problem() {
    let base = SandboxSpec::default;
    let vol = |name: &str, mount: &str, size_mb| VolumeSpec {
        name: name.into(),
        mount: mount.into(),
        size_mb,
        readonly: false,
    };
    let cases: Vec<(SandboxSpec, SpecError)> = vec![
        (SandboxSpec { cpus: 0, ..base() }, SpecError::Cpus(0)),
        (
            SandboxSpec {
                memory_mb: 8,
                ..base()
            },
            SpecError::Memory(8),
        ),
        (
            SandboxSpec {
                env: [("1X".to_owned(), String::new())].into(),
                ..base()
            },
            SpecError::EnvKey("1X".into()),
        ),
        (
            SandboxSpec {
                hostname: Some("a.b".into()),
                ..base()
            },
            SpecError::Hostname("a.b".into()),
        ),
        (
            SandboxSpec {
                volumes: vec![vol("Data", "/data", 10)],
                ..base()
            },
            SpecError::VolumeName("Data".into()),
        ),
        (
            SandboxSpec {
                volumes: vec![vol("d", "data", 10)],
                ..base()
            },
            SpecError::Path("data".into()),
        ),
        (
            SandboxSpec {
                volumes: vec![vol("a", "/data", 10), vol("b", "/data", 10)],
                ..base()
            },
            SpecError::DuplicateMount("/data".into()),
        ),
        (
            SandboxSpec {
                volumes: vec![vol("a", "/data", 0)],
                ..base()
            },
            SpecError::VolumeSize("a".into()),
        ),
        (
            SandboxSpec {
                files: vec![FileSpec {
                    path: "/etc/../x".into(),
                    content: vec![],
                    mode: 0o644,
                }],
                ..base()
            },
            SpecError::Path("/etc/../x".into()),
        ),
        (
            SandboxSpec {
                files: vec![FileSpec {
                    path: "/x".into(),
                    content: vec![],
                    mode: 0o17777,
                }],
                ..base()
            },
            SpecError::Mode(0o17777),
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(spec.validate(), Err(want));
    }
}

#[test]
fn exec_user_is_a_name_or_a_uid() {
    for ok in ["lohar", "root", "1000", "0", "www-data", "a.b_c"] {
        let spec = SandboxSpec {
            exec_user: Some(ok.into()),
            ..SandboxSpec::default()
        };
        assert_eq!(spec.validate(), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "-x",
        "a b",
        "a:b",
        "ab/c",
        "99999999999",
        &"x".repeat(33),
    ] {
        let spec = SandboxSpec {
            exec_user: Some(bad.to_owned()),
            ..SandboxSpec::default()
        };
        assert_eq!(
            spec.validate(),
            Err(SpecError::User(bad.to_owned())),
            "{bad:?}"
        );
    }
}

#[test]
fn disk_size_is_checked_against_the_cap_and_the_image() {
    const MIB: u64 = 1 << 20;
    let disk = |mb| SandboxSpec {
        disk_mb: mb,
        image: Tier::Busybox.into(),
        ..SandboxSpec::default()
    };
    assert_eq!(disk(Some(0)).validate(), Err(SpecError::DiskSize(0)));
    assert_eq!(
        disk(Some(MAX_DISK_MB + 1)).validate(),
        Err(SpecError::DiskSize(MAX_DISK_MB + 1))
    );
    assert_eq!(disk(Some(MAX_DISK_MB)).validate(), Ok(()));
    // Against a 64 MiB image that grows to 1 GiB at most.
    let limits = crate::image::DiskLimits {
        min: 64 * MIB,
        max: 1024 * MIB,
    };
    assert_eq!(disk(None).disk_bytes(limits), Ok(None));
    assert_eq!(disk(Some(64)).disk_bytes(limits), Ok(None));
    assert_eq!(disk(Some(320)).disk_bytes(limits), Ok(Some(320 * MIB)));
    assert_eq!(disk(Some(1024)).disk_bytes(limits), Ok(Some(1024 * MIB)));
    let small = disk(Some(63)).disk_bytes(limits);
    assert_eq!(
        small,
        Err(SpecError::DiskTooSmall {
            asked_mb: 63,
            image: Tier::Busybox.into(),
            image_mb: 64
        })
    );
    let msg = small.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("63 MB") && msg.contains("busybox") && msg.contains("64 MB"),
        "{msg}"
    );
    assert_eq!(
        disk(Some(1025)).disk_bytes(limits),
        Err(SpecError::DiskTooLarge {
            asked_mb: 1025,
            image: Tier::Busybox.into(),
            max_mb: 1024
        })
    );
    // An image of a size that is not whole MiB: rounded up in the message.
    let odd = crate::image::DiskLimits {
        min: 64 * MIB + 1,
        ..limits
    };
    assert!(matches!(
        disk(Some(64)).disk_bytes(odd),
        Err(SpecError::DiskTooSmall { image_mb: 65, .. })
    ));
}
