use super::*;

/// A superblock with the fields [`Ext4Size::parse`] reads.
fn superblock(log_block: u32, blocks: u64, bit64: bool) -> [u8; SUPERBLOCK_LEN] {
    let mut sb = [0u8; SUPERBLOCK_LEN];
    let mut put = |off: usize, v: u32| sb[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put(0x4, (blocks & 0xffff_ffff) as u32);
    put(0x18, log_block);
    put(0x60, if bit64 { INCOMPAT_64BIT } else { 0 });
    put(0x150, (blocks >> 32) as u32);
    sb[0x38..0x3a].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
    sb
}

#[test]
fn superblock_sizes_parse() {
    let s = Ext4Size::parse(&superblock(0, 65_536, true)).expect("parses");
    assert_eq!(
        (s.block_size, s.blocks, s.bytes()),
        (1024, 65_536, 64 << 20)
    );
    let s = Ext4Size::parse(&superblock(2, 524_288, false)).expect("parses");
    assert_eq!((s.block_size, s.bytes()), (4096, 2 << 30));
    // The high half counts only with the 64bit feature.
    let big = (1u64 << 32) + 5;
    assert_eq!(
        Ext4Size::parse(&superblock(2, big, true))
            .map(|s| s.blocks)
            .ok(),
        Some(big)
    );
    assert_eq!(
        Ext4Size::parse(&superblock(2, big, false))
            .map(|s| s.blocks)
            .ok(),
        Some(5)
    );
    let mut not = superblock(2, 1, true);
    not[0x38] = 0;
    assert!(matches!(
        Ext4Size::parse(&not),
        Err(GrowError::NotExt4(0xef00))
    ));
    assert!(matches!(
        Ext4Size::parse(&superblock(7, 1, true)),
        Err(GrowError::BlockSize(7))
    ));
}

#[test]
fn grows_only_into_whole_blocks_beyond_the_fs() {
    let fs = Ext4Size {
        block_size: 4096,
        blocks: 524_288,
    };
    assert_eq!(fs.grow_target(2 << 30), None, "equal: nothing to do");
    assert_eq!(fs.grow_target(1 << 30), None, "never shrinks");
    assert_eq!(fs.grow_target((2 << 30) + 4095), None, "less than a block");
    assert_eq!(fs.grow_target((2 << 30) + (256 << 20)), Some(589_824));
    let small = Ext4Size {
        block_size: 1024,
        blocks: 65_536,
    };
    assert_eq!(small.grow_target(320 << 20), Some(327_680));
}

#[test]
// `libc::Ioctl` is `c_ulong` on glibc (the conversion is then useless),
// `c_int` on musl.
#[allow(clippy::useless_conversion)]
fn resize_ioctl_number_is_iow_f_16_u64() {
    let iow = |ty: u8, nr: u8, size: u64| {
        (1u64 << 30) | (size << 16) | (u64::from(ty) << 8) | u64::from(nr)
    };
    assert_eq!(
        u64::try_from(EXT4_IOC_RESIZE_FS).ok(),
        Some(iow(b'f', 16, 8))
    );
}

#[test]
fn devname_comes_from_the_uevent() {
    let uevent = "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=1\n";
    assert_eq!(devname(uevent), Some("vda"));
    assert_eq!(devname("MAJOR=254\n"), None);
    assert_eq!(devname("DEVNAME=\n"), None);
    assert_eq!(devname("DEVNAME=../x\n"), None);
}

/// The superblock `mkfs.ext4` writes, as the images are made (`-d`).
#[test]
fn parses_what_mkfs_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staging = dir.path().join("root");
    std::fs::create_dir(&staging).expect("mkdir");
    std::fs::write(staging.join("hello"), b"hi").expect("write");
    let img = dir.path().join("fs.ext4");
    File::create(&img)
        .and_then(|f| f.set_len(24 << 20))
        .expect("image");
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-d"])
        .arg(&staging)
        .arg(&img)
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: no mkfs.ext4");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let disk = File::open(&img).expect("open");
    let fs = read_superblock(&disk, &img).expect("superblock");
    assert_eq!(fs.bytes(), 24 << 20, "{fs:?}");
    File::options()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(40 << 20))
        .expect("grow");
    assert_eq!(fs.grow_target(40 << 20), Some((40 << 20) / fs.block_size));
}
