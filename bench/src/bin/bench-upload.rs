//! Upload throughput through the whole stack, against the reference tus server in the same run.
//!
//! `./dev bench upload` runs it. The same client, tus-js-client under Node, uploads to vod (the
//! release binaries as separate processes, see `LocalStack`) and to `@tus/server` with
//! `@tus/file-store`, first one 64 MiB file to each as a warm-up that is not counted. It
//! prints, from one run:
//! - one 1 GiB upload in 8 MiB chunks against each server, in `BENCH_ROUNDS` (3) rounds taking
//!   turns (vod first in odd rounds, the reference first in even ones): MiB/s of each, the
//!   medians and vod ÷ reference;
//! - 20 concurrent uploads of 64 MiB against each: aggregate MiB/s and vod ÷ reference;
//! - CPU seconds per GiB of every process: each vod service, the ffprobe and ffmpeg fflow ran,
//!   RabbitMQ, PostgreSQL, Redis, the reference server and the client, and how busy the
//!   machine was;
//! - peak resident memory of the gateway, the uploaders and the reference server;
//! - that every upload stored the bytes sent: for vod, the SHA-256 fflow reports for the source
//!   it stitched (the bytes are noise, so the encodes fail at once; the digest is reported all
//!   the same); for the reference, the SHA-256 of the file it stored.
//!
//! Sizes can be changed with `BENCH_SINGLE_MIB`, `BENCH_CONCURRENT`, `BENCH_CONCURRENT_MIB`,
//! `BENCH_CHUNK_MIB` (8; `1024` is a client sending a whole file in one PATCH);
//! `BENCH_SINGLE_FILE` names a file (a video, say) the single rounds upload instead of noise.
//! The services' own settings pass through (`GATEWAY_CHUNK_SIZE_BYTES` and the like).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use sha2::{Digest, Sha256};
use vod_bench::cpu::{self, CpuSample, Watched};
use vod_bench::node::{node_dir, ClientUpload, ReferenceServer, TusClient};
use vod_bench::{release_bin_dir, LocalStack};
use vod_contracts::api::VideoView;
use vod_contracts::VideoStatus;

const MIB: u64 = 1024 * 1024;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    single_mib: u64,
    rounds: u64,
    concurrent: u64,
    concurrent_mib: u64,
    chunk_mib: u64,
    /// Uploaded in the single rounds instead of noise.
    single_file: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            single_mib: env_u64("BENCH_SINGLE_MIB", 1024),
            rounds: env_u64("BENCH_ROUNDS", 3).max(1),
            concurrent: env_u64("BENCH_CONCURRENT", 20),
            concurrent_mib: env_u64("BENCH_CONCURRENT_MIB", 64),
            chunk_mib: env_u64("BENCH_CHUNK_MIB", 8).max(1),
            single_file: std::env::var_os("BENCH_SINGLE_FILE").map(PathBuf::from),
        }
    }
}

/// Pseudo-random bytes (xorshift), so nothing on the way can profit from repetition.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buffer: &mut [u8]) {
        for word in buffer.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}

/// A file of noise the client uploads, and its SHA-256, made before any clock starts.
struct TestFile {
    path: PathBuf,
    len: u64,
    /// Hex.
    sha256: String,
}

impl TestFile {
    /// Writes `len` bytes of noise and syncs them, so that no write-back of them is left for
    /// the uploads to compete with.
    fn write(path: PathBuf, len: u64, seed: u64) -> anyhow::Result<Self> {
        let mut file = std::fs::File::create(&path)?;
        let mut noise = Noise(seed | 1);
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; MIB as usize];
        let mut left = len;
        while left > 0 {
            let block = &mut buffer[..left.min(MIB) as usize];
            noise.fill(block);
            hasher.update(&*block);
            file.write_all(block)?;
            left -= block.len() as u64;
        }
        file.sync_all()?;
        Ok(Self {
            path,
            len,
            sha256: hex(&hasher.finalize()),
        })
    }

    /// A file of the caller's, a video say, hashed here.
    fn existing(path: PathBuf) -> anyhow::Result<Self> {
        Ok(Self {
            len: std::fs::metadata(&path)
                .with_context(|| format!("no file {}", path.display()))?
                .len(),
            sha256: sha256_of_file(&path)?,
            path,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn sha256_of_file(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// A server the client uploads to, and how to check what it stored.
#[derive(Clone, Copy)]
enum Target<'a> {
    Vod(&'a LocalStack),
    Reference(&'a ReferenceServer),
}

impl Target<'_> {
    fn name(self) -> &'static str {
        match self {
            Target::Vod(_) => "vod",
            Target::Reference(_) => "reference",
        }
    }

    fn endpoint(self) -> String {
        match self {
            Target::Vod(stack) => format!("{}/v1/uploads", stack.gateway_url),
            Target::Reference(server) => server.endpoint.clone(),
        }
    }

    /// What the client sends besides tus's own headers: vod's API key; nothing to the
    /// reference, which has no keys.
    fn headers(self) -> BTreeMap<&'static str, String> {
        match self {
            Target::Vod(stack) => {
                BTreeMap::from([("Authorization", format!("Bearer {}", stack.api_key))])
            }
            Target::Reference(_) => BTreeMap::new(),
        }
    }

    /// Checks that the upload stored `file`'s bytes, then lets the server forget them where it
    /// can.
    async fn check_stored(
        self,
        http: &reqwest::Client,
        upload: &ClientUpload,
        file: &TestFile,
    ) -> anyhow::Result<()> {
        match self {
            Target::Vod(stack) => {
                let video_id = upload.video_id.as_deref().context("no Video-Id")?;
                let reported = stitched_sha256(http, &stack.gateway_url, video_id).await?;
                ensure!(
                    reported.as_deref() == Some(file.sha256.as_str()),
                    "video {video_id}: stitched source {reported:?}, sent {}",
                    file.sha256
                );
            }
            Target::Reference(server) => {
                let stored = server.stored_file(&upload.url);
                let digest = tokio::task::spawn_blocking(move || sha256_of_file(&stored)).await??;
                ensure!(
                    digest == file.sha256,
                    "{}: stored {digest}, sent {}",
                    upload.url,
                    file.sha256
                );
                server.forget(&upload.url)?;
            }
        }
        Ok(())
    }
}

/// Waits until the video's encode ended and returns the SHA-256 fflow reported for the source
/// it stitched.
async fn stitched_sha256(
    http: &reqwest::Client,
    gateway: &str,
    video_id: &str,
) -> anyhow::Result<Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let video: VideoView = http
            .get(format!("{gateway}/v1/videos/{video_id}"))
            .send()
            .await?
            .json()
            .await?;
        if matches!(video.status, VideoStatus::Ready | VideoStatus::Failed) {
            return Ok(video
                .flows
                .first()
                .and_then(|flow| flow.source_sha256.clone()));
        }
        ensure!(Instant::now() < deadline, "video {video_id} never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One run of the client against one server.
struct Run {
    bytes: u64,
    seconds: f64,
    /// From the first request to the last answer, the client's own included.
    cpu: CpuSample,
    /// From the last answer until the stored bytes were checked (for vod: fflow's digest
    /// catching up, and the encode of the noise failing).
    after: CpuSample,
    uploads: usize,
    stored_right: usize,
}

impl Run {
    fn mib_per_second(&self) -> f64 {
        self.bytes as f64 / MIB as f64 / self.seconds
    }
}

/// What a run needs besides its target and files.
struct Bench {
    client: TusClient,
    /// Sends vod's API key.
    http: reqwest::Client,
    watched: Vec<Watched>,
}

impl Bench {
    /// Uploads `files` at once to `target`, measures, and checks what was stored.
    async fn run(&self, target: Target<'_>, files: &[TestFile]) -> anyhow::Result<Run> {
        sync_disks();
        let paths: Vec<&Path> = files.iter().map(|file| file.path.as_path()).collect();
        let before = CpuSample::take(&self.watched);
        let client = self
            .client
            .upload(&target.endpoint(), &paths, &target.headers())
            .await?;
        let answered = CpuSample::take(&self.watched);
        let mut cpu = answered.since(&before);
        cpu.add("client (tus-js-client)", client.cpu_seconds);

        let checks = client.uploads.iter().map(|upload| async move {
            let file = files
                .iter()
                .find(|file| file.path == upload.file)
                .context("the client reported a file it was not given")?;
            target.check_stored(&self.http, upload, file).await
        });
        let mut stored_right = 0;
        for checked in futures_util::future::join_all(checks).await {
            match checked {
                Ok(()) => stored_right += 1,
                Err(error) => println!("  {} stored wrong bytes: {error:#}", target.name()),
            }
        }
        Ok(Run {
            bytes: files.iter().map(|file| file.len).sum(),
            seconds: client.seconds,
            cpu,
            after: CpuSample::take(&self.watched).since(&answered),
            uploads: files.len(),
            stored_right,
        })
    }

    /// One upload to each server, not counted: the first requests of a process (Node's
    /// compiler, connection pools) should not weigh on the first round.
    async fn warm_up(&self, targets: &[Target<'_>; 2], files: &[TestFile]) -> anyhow::Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        for target in targets {
            let run = self.run(*target, files).await?;
            ensure!(
                run.stored_right == run.uploads,
                "{}: the warm-up upload stored other bytes",
                target.name()
            );
        }
        Ok(())
    }

    /// The single upload to each server, `rounds` times, taking turns.
    async fn single_rounds(
        &self,
        targets: &[Target<'_>; 2],
        single: &[TestFile; 1],
        settings: &Settings,
    ) -> anyhow::Result<[Series; 2]> {
        let label = |round| {
            format!(
                "round {round}, one {} MiB upload in {} MiB chunks,",
                single[0].len / MIB,
                settings.chunk_mib
            )
        };
        let mut singles: [Series; 2] = Default::default();
        for round in 1..=settings.rounds {
            // Each server goes first in every other round, so that a drift of the machine's
            // speed does not always favour the same one.
            let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
            for index in order {
                let run = self.run(targets[index], single).await?;
                print_run(&label(round), targets[index].name(), &run);
                singles[index].runs.push(run);
            }
        }
        let [vod, reference] = singles.each_ref().map(|series| median(&series.speeds()));
        println!(
            "median of {}: vod {vod:.1} MiB/s, reference {reference:.1} MiB/s, vod ÷ reference {:.2}",
            settings.rounds,
            vod / reference
        );
        Ok(singles)
    }

    /// All of `many` at once to each server.
    async fn concurrent_runs(
        &self,
        targets: &[Target<'_>; 2],
        many: &[TestFile],
        settings: &Settings,
    ) -> anyhow::Result<[Series; 2]> {
        if many.is_empty() {
            return Ok(Default::default());
        }
        let label = format!(
            "{} concurrent uploads of {} MiB, aggregate,",
            settings.concurrent, settings.concurrent_mib
        );
        let mut concurrents: [Series; 2] = Default::default();
        for (index, target) in targets.iter().enumerate() {
            let run = self.run(*target, many).await?;
            print_run(&label, target.name(), &run);
            concurrents[index].runs.push(run);
        }
        let [vod, reference] = concurrents
            .each_ref()
            .map(|series| median(&series.speeds()));
        println!(
            "concurrent: vod {vod:.1} MiB/s, reference {reference:.1} MiB/s, vod ÷ reference {:.2}",
            vod / reference
        );
        Ok(concurrents)
    }
}

/// Writes dirty pages back, so that a run does not pay for the one before it.
fn sync_disks() {
    let _ = Command::new("sync").status();
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The runs of one kind (single or concurrent) against one server.
#[derive(Default)]
struct Series {
    runs: Vec<Run>,
}

impl Series {
    fn speeds(&self) -> Vec<f64> {
        self.runs.iter().map(Run::mib_per_second).collect()
    }

    fn cpu(&self) -> CpuSample {
        let mut total = CpuSample::default();
        self.runs.iter().for_each(|run| total.accumulate(&run.cpu));
        total
    }

    fn gib(&self) -> f64 {
        self.runs.iter().map(|run| run.bytes as f64).sum::<f64>() / GIB
    }

    fn stored_right(&self) -> (usize, usize) {
        (
            self.runs.iter().map(|run| run.stored_right).sum(),
            self.runs.iter().map(|run| run.uploads).sum(),
        )
    }
}

fn print_run(label: &str, name: &str, run: &Run) {
    println!(
        "{label} {name:>9}: {:7.1} MiB/s ({:.1} s)",
        run.mib_per_second(),
        run.seconds
    );
    println!("    {}", run.cpu);
    if run.after.total() >= 0.01 {
        println!("    then until checked: {}", run.after);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let stack = LocalStack::start(&release_bin_dir()).await?;
    let reference = ReferenceServer::start(&node_dir())?;
    let mut watched = stack.watched();
    watched.push(reference.watched());
    let bench = Bench {
        client: TusClient {
            node_dir: node_dir(),
            chunk_bytes: settings.chunk_mib * MIB,
        },
        http: stack.http()?,
        watched,
    };
    let cores = std::thread::available_parallelism()?.get();
    println!("machine: {cores} cores, load average {}", load_average());

    let files = tempfile::tempdir()?;
    let single = [match &settings.single_file {
        Some(path) => TestFile::existing(path.clone())?,
        None => TestFile::write(
            files.path().join("single.bin"),
            settings.single_mib * MIB,
            1,
        )?,
    }];
    let many: Vec<TestFile> = (0..settings.concurrent)
        .map(|index| {
            TestFile::write(
                files.path().join(format!("concurrent-{index}.bin")),
                settings.concurrent_mib * MIB,
                100 + index,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let targets = [Target::Vod(&stack), Target::Reference(&reference)];
    bench.warm_up(&targets, &many[..many.len().min(1)]).await?;
    let singles = bench.single_rounds(&targets, &single, &settings).await?;
    drop(single);
    let concurrents = bench.concurrent_runs(&targets, &many, &settings).await?;
    drop(many);

    println!("CPU seconds per GiB uploaded, while the uploads ran:");
    let column = |title: &str, series: &Series| (title.to_owned(), series.cpu(), series.gib());
    cpu::print_per_gib(&[
        column("vod single", &singles[0]),
        column("ref single", &singles[1]),
        column("vod concurrent", &concurrents[0]),
        column("ref concurrent", &concurrents[1]),
    ]);
    for process in bench.watched.iter().filter(|process| {
        ["gateway", "uploader", "reference"]
            .iter()
            .any(|prefix| process.name.starts_with(prefix))
    }) {
        if let Some(mib) = cpu::peak_rss_mib(process.pid) {
            println!("peak RSS {}: {mib:.0} MiB", process.name);
        }
    }
    println!("load average at the end: {}", load_average());
    report_stored(&targets, &singles, &concurrents)
}

/// Prints how many uploads stored the bytes sent, and fails unless all did.
fn report_stored(
    targets: &[Target<'_>; 2],
    singles: &[Series; 2],
    concurrents: &[Series; 2],
) -> anyhow::Result<()> {
    let mut all_right = true;
    for (index, target) in targets.iter().enumerate() {
        let (single_right, single_all) = singles[index].stored_right();
        let (many_right, many_all) = concurrents[index].stored_right();
        let (right, all) = (single_right + many_right, single_all + many_all);
        let how = match target {
            Target::Vod(_) => "SHA-256 fflow reports for the source it stitched",
            Target::Reference(_) => "SHA-256 of the file it stored",
        };
        println!(
            "{}: {right}/{all} uploads stored the bytes sent ({how})",
            target.name()
        );
        all_right &= right == all;
    }
    ensure!(all_right, "an upload stored other bytes than those sent");
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
