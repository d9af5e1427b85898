//! Serving speed of holder, against nginx in the same run, from both of holder's stores.
//!
//! `./dev bench serve` runs it. One presentation's files (a 1.5 MB segment and a small master
//! playlist) are served by three origins at once: nginx (`sendfile` on, as many workers as
//! cores) from a directory, holder from the same directory (`HOLDER_STORE=fs`), and holder
//! from a bucket of a local S3 server (`s3s-fs`, `HOLDER_STORE=s3`) holding the same files.
//! `wrk` loads each in turn, `BENCH_ROUNDS` (3) rounds of `BENCH_SECONDS` (10) seconds per
//! file, the origins taking turns in a different order each round. It prints each run's
//! requests per second, the medians, holder ÷ nginx for the `fs` store and `s3` ÷ `fs` for
//! holder, and checks first that every origin serves the same bytes.
//!
//! `BENCH_CONNECTIONS` (32) and `BENCH_THREADS` (2) are wrk's; `BENCH_SEGMENT_BYTES` the
//! segment's size.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use vod_bench::release_bin_dir;
use vod_infra::testsuite::{S3Server, S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY};

const BUCKET: &str = "vod";
const DIR: &str =
    "videos/0190c1e2-0000-7000-8000-000000000001/0190c1e3-0000-7000-8000-000000000001";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process stopped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The files served: their paths under the root, and their bytes.
fn presentation(segment_bytes: usize) -> Vec<(String, Vec<u8>)> {
    let segment: Vec<u8> = (0..segment_bytes)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let master = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
                  #EXT-X-STREAM-INF:BANDWIDTH=2500000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720\n\
                  720p/playlist.m3u8\n\
                  #EXT-X-STREAM-INF:BANDWIDTH=1200000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=854x480\n\
                  480p/playlist.m3u8\n";
    vec![
        (format!("{DIR}/720p/segment_00001.m4s"), segment),
        (format!("{DIR}/master.m3u8"), master.as_bytes().to_vec()),
    ]
}

fn write_files(root: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    for (path, bytes) in files {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
    }
    Ok(())
}

fn start_holder(
    dir: &Path,
    name: &str,
    env: &[(&str, String)],
    log_dir: &Path,
) -> anyhow::Result<(Running, String)> {
    let http = free_port()?;
    let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
    let child = Command::new(release_bin_dir().join("holder"))
        .env("HOLDER_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("HOLDER_FTP_ADDR", format!("127.0.0.1:{}", free_port()?))
        .env(
            "HOLDER_FTP_PASSWORD",
            format!("bench-{}", uuid::Uuid::new_v4().simple()),
        )
        .env("HOLDER_ROOT", dir.join(name))
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("failed to start holder; `./dev bench serve` builds it")?;
    Ok((Running(child), format!("http://127.0.0.1:{http}")))
}

fn start_nginx(dir: &Path, root: &Path) -> anyhow::Result<(Running, String)> {
    let port = free_port()?;
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\n\
             error_log {prefix}/logs/error.log warn;\n\
             pid {prefix}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off;\n\
               sendfile on; tcp_nopush on; tcp_nodelay on;\n\
               keepalive_requests 100000;\n\
               types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }}\n\
               client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;\n\
               fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi;\n\
               scgi_temp_path {prefix}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 root {root};\n\
                 location / {{ add_header Access-Control-Allow-Origin *; }}\n\
               }}\n\
             }}\n",
            prefix = prefix.display(),
            root = root.display(),
        ),
    )?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("failed to start nginx; `./dev bench serve` installs it")?;
    Ok((Running(child), format!("http://127.0.0.1:{port}")))
}

async fn wait_until_served(url: &str, expected: &[u8]) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                let body = response.bytes().await?;
                ensure!(
                    body == expected,
                    "{url} serves other bytes than were stored"
                );
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} was not served within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests per second `wrk` measured.
fn wrk(url: &str, seconds: u64, threads: u64, connections: u64) -> anyhow::Result<f64> {
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", url])
        .output()
        .context("failed to run wrk; `./dev bench serve` installs it")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "wrk failed: {text}");
    ensure!(
        !text.contains("Non-2xx"),
        "{url} answered errors under load: {text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1);
    let seconds = env_u64("BENCH_SECONDS", 10).max(1);
    let connections = env_u64("BENCH_CONNECTIONS", 32).max(1);
    let threads = env_u64("BENCH_THREADS", 2).max(1);
    let segment_bytes = usize::try_from(env_u64("BENCH_SEGMENT_BYTES", 1_500_000))?;

    let dir = tempfile::tempdir()?;
    let files = presentation(segment_bytes);
    let root = dir.path().join("holder-fs");
    write_files(&root, &files)?;
    let s3 = S3Server::start(BUCKET);
    write_files(&s3.data_dir.join(BUCKET), &files)?;

    let (_nginx, nginx_url) = start_nginx(dir.path(), &root)?;
    let (_holder_fs, fs_url) = start_holder(dir.path(), "holder-fs", &[], dir.path())?;
    let s3_env = [
        ("HOLDER_STORE", "s3".to_owned()),
        ("HOLDER_S3__ENDPOINT", s3.endpoint.clone()),
        ("HOLDER_S3__REGION", S3_REGION.to_owned()),
        ("HOLDER_S3__BUCKET", BUCKET.to_owned()),
        ("HOLDER_S3__ACCESS_KEY_ID", S3_ACCESS_KEY_ID.to_owned()),
        (
            "HOLDER_S3__SECRET_ACCESS_KEY",
            S3_SECRET_ACCESS_KEY.to_owned(),
        ),
        ("HOLDER_S3__PATH_STYLE", "true".to_owned()),
    ];
    let (_holder_s3, s3_url) = start_holder(dir.path(), "holder-s3", &s3_env, dir.path())?;
    let origins = [
        ("nginx", nginx_url),
        ("holder fs", fs_url),
        ("holder s3", s3_url),
    ];
    for (path, bytes) in &files {
        for (_, base) in &origins {
            wait_until_served(&format!("{base}/{path}"), bytes).await?;
        }
    }
    println!(
        "machine: {} cores; wrk {threads} threads, {connections} connections, {seconds} s a run",
        std::thread::available_parallelism().map_or(1, |cores| cores.get())
    );
    for (path, bytes) in &files {
        let name = path.rsplit('/').next().unwrap_or(path);
        let mut figures: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for round in 0..rounds {
            for turn in 0..origins.len() {
                let (origin, base) = &origins[(turn + round as usize) % origins.len()];
                let per_second = wrk(&format!("{base}/{path}"), seconds, threads, connections)?;
                println!(
                    "round {}, {name} ({} bytes), {origin:>9}: {per_second:>10.1} requests/s",
                    round + 1,
                    bytes.len()
                );
                figures.entry(origin).or_default().push(per_second);
            }
        }
        let mut medians = BTreeMap::new();
        for (origin, values) in &mut figures {
            medians.insert(*origin, median(values));
        }
        let (nginx, fs, s3) = (medians["nginx"], medians["holder fs"], medians["holder s3"]);
        println!(
            "{name}: medians nginx {nginx:.1}, holder fs {fs:.1}, holder s3 {s3:.1} requests/s; \
             holder fs ÷ nginx {:.2}, holder s3 ÷ holder fs {:.2}",
            fs / nginx,
            s3 / fs
        );
    }
    Ok(())
}
