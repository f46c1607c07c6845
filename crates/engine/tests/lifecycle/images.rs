//! Stored images with real VMs: an image root made here (busybox-static
//! and a marker file, nothing else: the engine adds lohar, the mount
//! points and the sandbox user) packed into the store, booted, saved from
//! a sandbox, and refused deletion while in use.

use std::os::unix::fs::symlink;

use bhatti_engine::image::ImageRef;

use super::*;

pub(crate) fn trials(vm: &[Need]) -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "stored_image_boots_saves_and_is_kept_while_used",
        vm,
        stored_image,
    )]
}

/// A bare image root: busybox with a few applets and `/hello`.
fn bare_root(root: &Path) -> TestResult {
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    for applet in ["sh", "cat", "echo", "ls", "id", "pwd", "sync", "stat"] {
        symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("hello"), "from the image\n")?;
    Ok(())
}

const IMAGE_ID: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000aa";

fn stored_image() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let staging = e.image_staging()?;
        bare_root(&staging.root())?;
        let stored = e.store_image(staging, IMAGE_ID, "test:bare").await?;
        ensure(stored.id == IMAGE_ID && stored.size >= 1 << 30, || {
            format!("stored {stored:?}")
        })?;
        ensure(e.list_images().len() == 1, || "list_images".to_owned())?;

        let spec = SandboxSpec {
            image: ImageRef::stored(IMAGE_ID)?,
            ..small()
        };
        let a = id("img-a")?;
        e.create(a.clone(), spec.clone()).await?;
        let out = sh(e, &a, "cat /hello; id -u lohar; stat -c %U /workspace").await?;
        ensure(out == "from the image\n1000\nlohar\n", || {
            format!("in the guest: {out:?}")
        })?;
        // The disk is an overlay: the image's blocks are not copied.
        let overlay = std::fs::metadata(t.sandbox_dir(&a).join("rootfs.qcow2"))?;
        ensure(overlay.len() < 8 << 20, || {
            format!("overlay is {} bytes", overlay.len())
        })?;

        sh(e, &a, "echo saved > /workspace/note; sync").await?;
        let saved = e.save_image(&a).await?;
        // Saving pauses the sandbox and it runs on.
        sh(e, &a, "echo still running").await?;
        let b = id("img-b")?;
        let from_saved = SandboxSpec {
            image: ImageRef::stored(&saved.id)?,
            ..small()
        };
        e.create(b.clone(), from_saved).await?;
        let out = sh(e, &b, "cat /workspace/note /hello").await?;
        ensure(out == "saved\nfrom the image\n", || {
            format!("sandbox of the saved image: {out:?}")
        })?;

        let refused = e.delete_image(IMAGE_ID).await;
        ensure(
            matches!(&refused, Err(EngineError::ImageInUse { users, .. }) if users.len() == 1),
            || format!("delete of a used image: {refused:?}"),
        )?;
        e.destroy(&a).await?;
        e.delete_image(IMAGE_ID).await?;
        ensure(e.image_info(IMAGE_ID).is_err(), || "still there".to_owned())?;
        // The saved image is whole on its own: b still runs from it.
        e.destroy(&b).await?;
        e.delete_image(&saved.id).await?;
        ensure(e.list_images().is_empty(), || "images left".to_owned())
    })
}
