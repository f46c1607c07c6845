//! OCI image import and creates from imported images, with real tools
//! and real microVMs (TCG here), each beside a baseline of the same run:
//!
//! | step                                        | baseline                               |
//! |---------------------------------------------|----------------------------------------|
//! | import (fetch + unpack + pack into store)   | `skopeo copy` to a layout + `umoci unpack` |
//! | create → agent ready, from that image       | create → agent ready, busybox tier     |
//!
//! and the host disk used by 10 sandboxes of that image against 10 whole
//! copies of it.
//!
//! The image (~500 MiB: busybox plus incompressible files in 4 layers) is
//! built by the bench with `umoci` and pushed with `skopeo` to Debian's
//! `docker-registry` on 127.0.0.1; both sides pull it from there.
//!
//! Run: `cargo bench -p bhatti-engine --bench images`
//! (`BHATTI_BENCH_ROUNDS=N`, default 3; `BHATTI_BENCH_IMAGE_MB`, default
//! 500). Root, QEMU, the images and the registry tools are needed; it
//! prints why it skips otherwise. VMs run in a network namespace the
//! bench creates, egress `none`.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchkit::Summary;
use bhatti_engine::engine::{Engine, SandboxId, SandboxSpec};
use bhatti_engine::image::{ImagePaths, ImageRef, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use bhatti_oci::fetch::{FetchOptions, fetch};
use bhatti_oci::{Limits, Source, no_progress};

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type Eng = Arc<VmEngine<QemuDriver>>;

/// Runs a command; its stderr is the error when it fails.
fn run(cmd: &mut Command) -> BenchResult {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)).into())
    }
}

fn skopeo_copy(from: &str, to: &str) -> BenchResult {
    run(Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        to,
    ]))
}

/// Debian's `docker-registry` on 127.0.0.1 and a free port; killed on drop.
struct Registry {
    addr: String,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    fn start() -> BenchResult<Self> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let conf = dir.path().join("config.yml");
        std::fs::write(
            &conf,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )?;
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err("the registry did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            addr,
            _dir: dir,
            child,
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> bool {
    Path::new(name).exists()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Adds a layer to `image` made by `add` on its unpacked root (`umoci
/// unpack` + `repack`: Debian's umoci 0.4.7 `insert` writes layers
/// without their tar padding).
fn add_layer(image: &str, bundle: &Path, add: impl FnOnce(&Path) -> BenchResult) -> BenchResult {
    let _ = std::fs::remove_dir_all(bundle);
    run(Command::new("umoci")
        .args(["unpack", "--image", image])
        .arg(bundle))?;
    add(&bundle.join("rootfs"))?;
    run(Command::new("umoci")
        .args(["repack", "--image", image])
        .arg(bundle))?;
    Ok(std::fs::remove_dir_all(bundle)?)
}

/// Builds the bench image (an OCI layout tagged `test`) in `dir`:
/// busybox, then four layers of incompressible files.
fn build_big_image(dir: &Path, mib: usize) -> BenchResult<PathBuf> {
    let layout = dir.join("layout");
    let image = format!("{}:test", layout.display());
    let bundle = dir.join("build-bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    add_layer(&image, &bundle, |root| {
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::copy("/bin/busybox", root.join("bin/sh"))?;
        Ok(())
    })?;
    let per_layer = mib / 4;
    for layer in 0..4 {
        add_layer(&image, &bundle, |root| {
            let d = root.join(format!("data/l{layer}"));
            std::fs::create_dir_all(&d)?;
            for f in 0..per_layer / 8 {
                let mut data = vec![0u8; 8 << 20];
                fill_random(&mut data, (layer * 1000 + f) as u64);
                std::fs::write(d.join(format!("f{f}.bin")), &data)?;
            }
            Ok(())
        })?;
    }
    Ok(layout)
}

/// Incompressible bytes (xorshift), cheap to make.
fn fill_random(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn report(step: &str, s: &[Duration], base: &str, b: &[Duration]) {
    let (Some(s), Some(b)) = (Summary::of(s), Summary::of(b)) else {
        return;
    };
    benchkit::report(base, &b, None);
    benchkit::report(step, &s, Some(&b));
}

/// skopeo copy to a fresh layout + umoci unpack, timed.
fn baseline_import(reference: &str, work: &Path) -> BenchResult<Duration> {
    let layout = work.join("skopeo-layout");
    let bundle = work.join("bundle");
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(&bundle);
    let started = Instant::now();
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!("oci:{}:x", layout.display()),
    )?;
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:x", layout.display()))
        .arg(&bundle))?;
    let took = started.elapsed();
    std::fs::remove_dir_all(&layout)?;
    std::fs::remove_dir_all(&bundle)?;
    Ok(took)
}

/// Our import into `e`'s store (a fresh blob dir each time), timed.
async fn our_import(e: &Eng, reference: &str, work: &Path) -> BenchResult<(Duration, String)> {
    let blobs = work.join("blobs");
    let _ = std::fs::remove_dir_all(&blobs);
    for img in e.list_images() {
        e.delete_image(&img.id).await?;
    }
    let started = Instant::now();
    let source = Source::parse(&format!("docker://{reference}"))?;
    let opts = FetchOptions {
        insecure: true,
        ..FetchOptions::default()
    };
    let fetched = fetch(&source, &opts, &blobs, Limits::default(), no_progress()).await?;
    let staging = e.image_staging()?;
    let root = staging.root();
    let layers = fetched.layers.clone();
    tokio::task::spawn_blocking(move || {
        bhatti_oci::unpack::unpack(&layers, &root, Limits::default(), &no_progress())
    })
    .await??;
    let stored = e.store_image(staging, &fetched.id, "bench").await?;
    Ok((started.elapsed(), stored.id))
}

async fn create_ready(e: &Eng, name: &str, image: ImageRef) -> BenchResult<Duration> {
    let spec = SandboxSpec {
        cpus: 1,
        memory_mb: 256,
        image,
        ..SandboxSpec::default()
    };
    let id: SandboxId = name.parse()?;
    let started = Instant::now();
    e.create(id, spec).await?;
    Ok(started.elapsed())
}

/// Allocated bytes of one file.
fn allocated_file(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.blocks() * 512)
}

/// Allocated bytes under `dir` (what it costs on the host's disk).
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                todo.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

async fn creates_and_disk(e: &Eng, data: &Path, image: &str, rounds: usize) -> BenchResult {
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        base.push(create_ready(e, &format!("bb{r}"), Tier::Busybox.into()).await?);
        ours.push(create_ready(e, &format!("im{r}"), ImageRef::stored(image)?).await?);
    }
    report(
        "create -> agent ready, imported image",
        &ours,
        "create -> agent ready, busybox tier",
        &base,
    );
    for r in rounds..10 {
        create_ready(e, &format!("im{r}"), ImageRef::stored(image)?).await?;
    }
    let info = e.image_info(image)?;
    let dirs = (0..10).map(|r| data.join("sandboxes").join(format!("im{r}")));
    let disks: u64 = dirs
        .clone()
        .map(|d| allocated_file(&d.join("rootfs.qcow2")))
        .sum();
    let all: u64 = dirs.map(|d| allocated(&d)).sum();
    println!(
        "root disks of 10 sandboxes of the image: {} MiB (image {} MiB once + 10 overlays {} KiB); \
         10 whole copies would be {} MiB. Their dirs in all (guest RAM files, logs): {} MiB",
        (info.used + disks) >> 20,
        info.used >> 20,
        disks >> 10,
        (info.used * 10) >> 20,
        all >> 20
    );
    Ok(())
}

async fn bench() -> BenchResult {
    let rounds = env_num("BHATTI_BENCH_ROUNDS", 3);
    let mib = env_num("BHATTI_BENCH_IMAGE_MB", 500);
    let work = tempfile::tempdir()?;
    let built = Instant::now();
    let layout = build_big_image(work.path(), mib)?;
    let registry = Registry::start()?;
    let reference = format!("{}/bench/big:1", registry.addr);
    skopeo_copy(
        &format!("oci:{}:test", layout.display()),
        &format!("docker://{reference}"),
    )?;
    println!(
        "bench image: ~{mib} MiB, built and pushed in {:.1?}",
        built.elapsed()
    );

    let ns = NetNs::create(&unique_name("bbim"))?;
    let data = tempfile::tempdir()?;
    let mut config = EngineConfig::new(data.path(), ImagePaths::from_env(), ns.name());
    config.restore_creates = false;
    let e: Eng = Arc::new(VmEngine::start(QemuDriver::default(), config).await?);

    let (mut ours, mut base) = (Vec::new(), Vec::new());
    let mut id = String::new();
    for _ in 0..rounds {
        base.push(baseline_import(&reference, work.path())?);
        let (took, stored) = our_import(&e, &reference, work.path()).await?;
        ours.push(took);
        id = stored;
    }
    report(
        "import (fetch + unpack + pack)",
        &ours,
        "skopeo copy + umoci unpack",
        &base,
    );
    creates_and_disk(&e, data.path(), &id, rounds).await?;
    e.release_all().await;
    Ok(())
}

fn main() {
    let ready = ["skopeo", "umoci", "/usr/bin/docker-registry", "qemu-img"]
        .into_iter()
        .all(tool)
        && rustix::process::geteuid().is_root();
    if !ready {
        println!("images bench skipped: needs root and skopeo, umoci, docker-registry, qemu-img");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(bench()) {
        eprintln!("images bench failed: {e}");
        std::process::exit(1);
    }
}
