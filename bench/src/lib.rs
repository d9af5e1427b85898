//! The whole stack as separate processes started from the release binaries, in a world of its
//! own (database, queues, Redis keys, directories), so that benchmarks measure what a deployment
//! runs and can read each service's memory. `BENCH_RUST_LOG` sets the services' log filter
//! (default `warn`), and `BENCH_LOG_DIR` names a directory their logs are copied to at the end.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vod_infra::testsuite::{self, TestWorld};

pub struct LocalStack {
    pub gateway_url: String,
    pub holder_url: String,
    pub dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    _world: TestWorld,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalStack {
    /// Starts holder, two fflow replicas, two uploaders and the gateway from `bin_dir`.
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Self> {
        let world = TestWorld::new().await;
        let dir = tempfile::tempdir()?;
        let ftp_password = format!("bench-{}", world.id);
        let holder_http = free_port()?;
        let holder_ftp = free_port()?;
        let fflow_ports = [free_port()?, free_port()?];
        let gateway_port = free_port()?;
        let amqp_url = testsuite::amqp_url();

        let mut stack = Self {
            gateway_url: format!("http://127.0.0.1:{gateway_port}"),
            holder_url: format!("http://127.0.0.1:{holder_http}"),
            dir,
            children: Vec::new(),
            _world: world,
        };
        let (postgres_url, queue_prefix, redis_prefix) = (
            stack._world.postgres_url.clone(),
            stack._world.queue_prefix.clone(),
            stack._world.redis_prefix.clone(),
        );
        let holder_env = HashMap::from([
            ("HOLDER_HTTP_ADDR", format!("127.0.0.1:{holder_http}")),
            ("HOLDER_FTP_ADDR", format!("127.0.0.1:{holder_ftp}")),
            ("HOLDER_ROOT", path_text(&stack.dir.path().join("holder"))),
            ("HOLDER_FTP_PASSWORD", ftp_password.clone()),
        ]);
        stack.spawn(bin_dir, "holder", "holder", holder_env)?;
        let mut fflow_urls = Vec::new();
        for (index, port) in fflow_ports.iter().enumerate() {
            let replica = format!("r{}", index + 1);
            let env = HashMap::from([
                ("FFLOW_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("FFLOW_REPLICA_ID", replica.clone()),
                (
                    "FFLOW_SPOOL_DIR",
                    path_text(&stack.dir.path().join("fflow")),
                ),
                ("FFLOW_HOLDER__ADDR", format!("127.0.0.1:{holder_ftp}")),
                ("FFLOW_HOLDER__PASSWORD", ftp_password.clone()),
                ("FFLOW_AMQP__URL", amqp_url.clone()),
                ("FFLOW_AMQP__QUEUE_PREFIX", queue_prefix.clone()),
            ]);
            stack.spawn(bin_dir, &format!("fflow-{replica}"), "fflow", env)?;
            fflow_urls.push(format!("http://127.0.0.1:{port}"));
        }
        for index in 1..=2 {
            let env = HashMap::from([
                ("UPLOADER_POSTGRES__URL", postgres_url.clone()),
                ("UPLOADER_REDIS__URL", testsuite::redis_url()),
                ("UPLOADER_REDIS__KEY_PREFIX", redis_prefix.clone()),
                ("UPLOADER_AMQP__URL", amqp_url.clone()),
                ("UPLOADER_AMQP__QUEUE_PREFIX", queue_prefix.clone()),
                ("UPLOADER_FFLOW_URLS", fflow_urls.join(",")),
                ("UPLOADER_REPLICA_NAME", format!("uploader-{index}")),
                // Port 0: the replicas share the machine; nothing here scrapes them.
                ("UPLOADER_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ]);
            stack.spawn(bin_dir, &format!("uploader-{index}"), "uploader", env)?;
        }
        let gateway_env = HashMap::from([
            ("GATEWAY_LISTEN_ADDR", format!("127.0.0.1:{gateway_port}")),
            ("GATEWAY_POSTGRES__URL", postgres_url.clone()),
            ("GATEWAY_AMQP__URL", amqp_url.clone()),
            ("GATEWAY_AMQP__QUEUE_PREFIX", queue_prefix.clone()),
            ("GATEWAY_HOLDER_PUBLIC_URL", stack.holder_url.clone()),
        ]);
        stack.spawn(bin_dir, "gateway", "gateway", gateway_env)?;

        let mut health = vec![
            format!("{}/healthz", stack.holder_url),
            format!("{}/healthz", stack.gateway_url),
        ];
        health.extend(fflow_urls.iter().map(|url| format!("{url}/healthz")));
        let http = reqwest::Client::new();
        for url in health {
            stack
                .wait_until(&format!("{url} answers"), || async {
                    http.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                })
                .await?;
        }
        Ok(stack)
    }

    fn spawn(
        &mut self,
        bin_dir: &Path,
        name: &str,
        binary: &str,
        env: HashMap<&str, String>,
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let child = Command::new(bin_dir.join(binary))
            .envs(env)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {binary} from {}", bin_dir.display()))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    async fn wait_until<F, Fut>(&mut self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check().await {
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{name} exited with {status}; see {}",
                        self.dir.path().display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("timed out waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Peak resident memory of the named processes (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self, name_prefix: &str) -> Vec<(String, f64)> {
        self.children
            .iter()
            .filter(|(name, _)| name.starts_with(name_prefix))
            .filter_map(|(name, child)| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
                let kib: f64 = status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some((name.clone(), kib / 1024.0))
            })
            .collect()
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if let Ok(keep) = std::env::var("BENCH_LOG_DIR") {
            let copied = std::fs::create_dir_all(&keep).and_then(|()| {
                for entry in std::fs::read_dir(self.dir.path())? {
                    let path = entry?.path();
                    if path.extension().is_some_and(|ext| ext == "log") {
                        if let Some(name) = path.file_name() {
                            std::fs::copy(&path, Path::new(&keep).join(name))?;
                        }
                    }
                }
                Ok(())
            });
            if let Err(error) = copied {
                eprintln!("logs not copied to {keep}: {error}");
            }
        }
        for (_, child) in &mut self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for (_, child) in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Where `cargo build --release` put the binaries.
pub fn release_bin_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

/// CPU time used so far by the stack's processes and by the services it runs on, with the
/// machine's busy and total time, all in seconds. Two samples tell where the CPU of the work
/// between them went, and whether the machine had any left.
pub struct CpuSample {
    /// Process (or group of processes), seconds of user and system time.
    pub by_process: Vec<(String, f64)>,
    /// Seconds any core was busy (neither idle nor waiting for the disk).
    pub machine_busy: f64,
    /// Seconds of all cores together.
    pub machine_total: f64,
}

/// The other processes a run loads, by the command name `/proc` gives them.
const SERVICES: [(&str, &str); 3] = [
    ("rabbitmq", "beam.smp"),
    ("postgres", "postgres"),
    ("redis", "redis-server"),
];

impl CpuSample {
    /// What was used from `earlier` to `self`, process by process.
    pub fn since(&self, earlier: &CpuSample) -> CpuSample {
        let by_process = self
            .by_process
            .iter()
            .map(|(name, seconds)| {
                let before = earlier
                    .by_process
                    .iter()
                    .find(|(earlier_name, _)| earlier_name == name)
                    .map_or(0.0, |(_, seconds)| *seconds);
                (name.clone(), (seconds - before).max(0.0))
            })
            .collect();
        CpuSample {
            by_process,
            machine_busy: self.machine_busy - earlier.machine_busy,
            machine_total: self.machine_total - earlier.machine_total,
        }
    }
}

impl std::fmt::Display for CpuSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shares: Vec<String> = self
            .by_process
            .iter()
            .map(|(name, seconds)| format!("{name} {seconds:.2}"))
            .collect();
        write!(
            f,
            "CPU seconds: {}; machine busy {:.1} of {:.1} core-seconds ({:.0}%)",
            shares.join(", "),
            self.machine_busy,
            self.machine_total,
            100.0 * self.machine_busy / self.machine_total.max(f64::EPSILON)
        )
    }
}

impl LocalStack {
    /// CPU used so far by every process of the stack, the benchmark's own client, and RabbitMQ, PostgreSQL and Redis.
    pub fn cpu_sample(&self) -> CpuSample {
        let mut by_process: Vec<(String, f64)> = self
            .children
            .iter()
            .map(|(name, child)| (name.clone(), process_cpu_seconds(child.id()).unwrap_or(0.0)))
            .collect();
        by_process.push((
            "client".to_owned(),
            process_cpu_seconds(std::process::id()).unwrap_or(0.0),
        ));
        let mut services = [0.0; SERVICES.len()];
        for pid in std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        {
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            if let Some(index) = SERVICES.iter().position(|(_, name)| *name == comm.trim()) {
                services[index] += process_cpu_seconds(pid).unwrap_or(0.0);
            }
        }
        by_process.extend(
            SERVICES
                .iter()
                .zip(services)
                .map(|((name, _), seconds)| ((*name).to_owned(), seconds)),
        );
        let (machine_busy, machine_total) = machine_cpu_seconds().unwrap_or((0.0, 0.0));
        CpuSample {
            by_process,
            machine_busy,
            machine_total,
        }
    }
}

/// Clock ticks a second in `/proc`'s figures (`getconf CLK_TCK`, 100 on Linux).
const TICKS: f64 = 100.0;

/// User and system time of one process, in seconds.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the first of them, utime
    // and stime the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// Busy and total time of all cores together, in seconds.
fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some(((total - idle) / TICKS, total / TICKS))
}
