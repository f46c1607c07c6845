//! A root disk larger than its image ([`SandboxSpec::disk_mb`]): the host
//! grows the sandbox's copy, lohar grows the root file system into it at
//! boot, and it stays grown across a stop/start and a boot from disk. A
//! size below the image's, or above what it grows to, is refused.

use super::*;
use bhatti_engine::engine::SpecError;

/// What lohar prints when it grew the root file system, and when it
/// could not.
const GROWN: &str = "root file system grown";
const FAILED: &str = "growing the root file system:";

/// `df -k /` in the guest: (size, available) in KiB.
async fn df_root(e: &VmEngine<AnyDriver>, id: &SandboxId) -> Result<(u64, u64), Failed> {
    let out = sh(e, id, "df -k / | awk 'NR==2 {print $2, $4}'").await?;
    let mut it = out.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(size)), Some(Ok(avail))) => Ok((size, avail)),
        _ => Err(format!("df printed {out:?}").into()),
    }
}

/// Fails unless the guest's root is at least `min_kib` and the big file is
/// still `big_mb` MiB.
async fn ensure_grown(
    e: &VmEngine<AnyDriver>,
    id: &SandboxId,
    min_kib: u64,
    big_mb: u64,
    when: &str,
) -> TestResult {
    let (size, _) = df_root(e, id).await?;
    ensure(size >= min_kib, || {
        format!("{when}: root is {size} KiB, expected at least {min_kib}")
    })?;
    let len = sh(e, id, "wc -c < /workspace/big").await?;
    ensure(len.trim() == (big_mb << 20).to_string(), || {
        format!("{when}: the big file has {len:?} bytes")
    })
}

/// Below the image's size, or above what its file system grows to in a
/// boot: refused before anything is made.
async fn refuses_sizes_the_image_cannot_have(t: &TestEngine) -> TestResult {
    let limits = bhatti_engine::image::disk_limits(&ImagePaths::from_env().rootfs(Tier::Busybox)?)?;
    let tiny = id("tiny")?;
    for (mb, too_small) in [
        ((limits.min >> 20) - 1, true),
        ((limits.max >> 20) + 1, false),
    ] {
        let spec = SandboxSpec {
            disk_mb: Some(mb),
            ..small()
        };
        let res = t.engine.create(tiny.clone(), spec).await;
        let refused = match &res {
            Err(EngineError::Spec(SpecError::DiskTooSmall { .. })) => too_small,
            Err(EngineError::Spec(SpecError::DiskTooLarge { .. })) => !too_small,
            _ => false,
        };
        ensure(refused, || format!("a disk of {mb} MiB: {res:?}"))?;
        ensure(!t.sandbox_dir(&tiny).exists(), || "dir left".into())?;
    }
    Ok(())
}

pub(crate) fn larger_disk_grows_the_root_file_system() -> TestResult {
    run(async {
        let images = ImagePaths::from_env();
        let image_mb = std::fs::metadata(images.rootfs(Tier::Busybox)?)?.len() >> 20;
        let t = TestEngine::start(images).await?;
        let e = &t.engine;

        refuses_sizes_the_image_cannot_have(&t).await?;

        // A disk of the image's size: nothing to grow, nothing said.
        let plain = id("plain-disk")?;
        e.create(plain.clone(), small()).await?;
        let log = std::fs::read_to_string(t.sandbox_dir(&plain).join("console.log"))?;
        ensure(!log.contains(GROWN) && !log.contains(FAILED), || {
            format!("console of a sandbox without disk_mb: {log}")
        })?;
        e.destroy(&plain).await?;

        let sb = id("big-disk")?;
        let disk_mb = image_mb + 256;
        let spec = SandboxSpec {
            disk_mb: Some(disk_mb),
            ..small()
        };
        e.create(sb.clone(), spec).await?;
        let console = t.sandbox_dir(&sb).join("console.log");
        let grown = || {
            let log = std::fs::read_to_string(&console).unwrap_or_default();
            (log.matches(GROWN).count(), log.contains(FAILED))
        };
        ensure(grown() == (1, false), || {
            format!("console after create: {:?}", grown())
        })?;
        // The root disk is a qcow2 overlay: its size is in the header.
        let rootfs = t.sandbox_dir(&sb).join("rootfs.qcow2");
        let header = std::fs::read(&rootfs)?;
        let len = u64::from_be_bytes(header[24..32].try_into()?);
        ensure(
            header.starts_with(b"QFI\xfb") && len == disk_mb << 20,
            || format!("rootfs.qcow2 is {len} bytes"),
        )?;
        let meta = std::fs::read_to_string(t.sandbox_dir(&sb).join("sandbox.json"))?;
        ensure(meta.contains(&format!("\"disk_mb\": {disk_mb}")), || {
            format!("disk_mb not in sandbox.json: {meta}")
        })?;
        // The file system fills the disk, less its own metadata (the new
        // groups' inode tables: about a tenth with the busybox tier's
        // 1 KiB blocks).
        let min_kib = (image_mb + 200) << 10;
        let (size, avail) = df_root(e, &sb).await?;
        ensure(size >= min_kib, || {
            format!("root is {size} KiB after create, expected at least {min_kib}")
        })?;
        // A file larger than the whole image (so larger than its free
        // space) fits.
        let big_mb = image_mb + 32;
        ensure(avail > big_mb << 10, || format!("only {avail} KiB free"))?;
        sh(
            e,
            &sb,
            &format!("dd if=/dev/zero of=/workspace/big bs=1M count={big_mb} 2>/dev/null; sync"),
        )
        .await?;
        ensure_grown(e, &sb, min_kib, big_mb, "after the write").await?;

        e.stop(&sb).await?;
        e.start(&sb).await?;
        ensure_grown(e, &sb, min_kib, big_mb, "after stop/start").await?;

        // A boot from its disk: lohar finds the file system grown already.
        e.stop(&sb).await?;
        std::fs::write(t.sandbox_dir(&sb).join("mem.snap"), b"junk")?;
        e.start(&sb).await?;
        let info = e.status(&sb).await?;
        ensure(info.state == SandboxState::Hot, || {
            format!("after the boot from disk: {info:?}")
        })?;
        ensure_grown(e, &sb, min_kib, big_mb, "after a boot from disk").await?;
        // Nothing grown the second time (the console is kept or emptied
        // per boot: one line at most).
        ensure(grown().0 <= 1 && !grown().1, || {
            format!("console after the boot from disk: {:?}", grown())
        })?;
        e.destroy(&sb).await?;
        Ok(())
    })
}
