//! CPU time and memory of processes, read from `/proc`. Two samples of the CPU tell where the
//! time of the work between them went, and whether the machine had any left.

/// A process whose CPU time and memory a benchmark reads.
#[derive(Clone, Debug)]
pub struct Watched {
    /// Its own name, for its memory.
    pub name: String,
    /// The name its CPU time is counted under, with the other replicas of the same service.
    pub group: String,
    pub pid: u32,
}

/// CPU seconds (user and system) by process or group of processes, with the machine's busy and
/// total time.
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    /// In the order the names were first seen.
    pub by_process: Vec<(String, f64)>,
    /// Seconds any core was busy (neither idle nor waiting for the disk).
    pub machine_busy: f64,
    /// Seconds of all cores together.
    pub machine_total: f64,
}

/// The other processes a run loads, by the command name `/proc` gives them.
const SERVICES: [(&str, &str); 3] = [
    ("RabbitMQ", "beam.smp"),
    ("PostgreSQL", "postgres"),
    ("Redis", "redis-server"),
];

/// Clock ticks a second in `/proc`'s figures (`getconf CLK_TCK`, 100 on Linux).
const TICKS: f64 = 100.0;

impl CpuSample {
    /// CPU used so far by `processes` (by group), by the children they have waited for (fflow's
    /// ffprobe and ffmpeg), by RabbitMQ, PostgreSQL and Redis (all their processes), and by the
    /// machine.
    pub fn take(processes: &[Watched]) -> Self {
        let mut sample = Self::default();
        for process in processes {
            let Some(times) = ProcessTimes::read(process.pid) else {
                continue;
            };
            sample.add(&process.group, times.own);
            if times.children > 0.0 {
                sample.add(&format!("{}'s children", process.group), times.children);
            }
        }
        for (name, seconds) in service_seconds() {
            sample.add(name, seconds);
        }
        (sample.machine_busy, sample.machine_total) = machine_cpu_seconds().unwrap_or_default();
        sample
    }

    /// What was used from `earlier` to `self`.
    pub fn since(&self, earlier: &CpuSample) -> CpuSample {
        let by_process = self
            .by_process
            .iter()
            .map(|(name, seconds)| (name.clone(), (seconds - earlier.seconds(name)).max(0.0)))
            .collect();
        CpuSample {
            by_process,
            machine_busy: self.machine_busy - earlier.machine_busy,
            machine_total: self.machine_total - earlier.machine_total,
        }
    }

    /// Adds `seconds` to `name`'s figure.
    pub fn add(&mut self, name: &str, seconds: f64) {
        match self.by_process.iter_mut().find(|(known, _)| known == name) {
            Some((_, total)) => *total += seconds,
            None => self.by_process.push((name.to_owned(), seconds)),
        }
    }

    /// Adds every figure of `other` to this one's.
    pub fn accumulate(&mut self, other: &CpuSample) {
        for (name, seconds) in &other.by_process {
            self.add(name, *seconds);
        }
        self.machine_busy += other.machine_busy;
        self.machine_total += other.machine_total;
    }

    pub fn seconds(&self, name: &str) -> f64 {
        self.by_process
            .iter()
            .find(|(known, _)| known == name)
            .map_or(0.0, |(_, seconds)| *seconds)
    }

    pub fn total(&self) -> f64 {
        self.by_process.iter().map(|(_, seconds)| seconds).sum()
    }

    /// Percentage of the machine's cores that were busy.
    pub fn machine_busy_percent(&self) -> f64 {
        100.0 * self.machine_busy / self.machine_total.max(f64::EPSILON)
    }
}

/// Leaves out the processes that used less than a hundredth of a second.
impl std::fmt::Display for CpuSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shares: Vec<String> = self
            .by_process
            .iter()
            .filter(|(_, seconds)| *seconds >= 0.01)
            .map(|(name, seconds)| format!("{name} {seconds:.2}"))
            .collect();
        write!(
            f,
            "CPU seconds: {}; machine busy {:.1} of {:.1} core-seconds ({:.0}%)",
            shares.join(", "),
            self.machine_busy,
            self.machine_total,
            self.machine_busy_percent()
        )
    }
}

/// Prints CPU seconds per GiB, one row per process and one column per `(title, CPU, GiB)`.
pub fn print_per_gib(columns: &[(String, CpuSample, f64)]) {
    let mut names: Vec<&str> = Vec::new();
    for (_, sample, _) in columns {
        for (name, _) in &sample.by_process {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let width = names
        .iter()
        .map(|name| name.len())
        .max()
        .unwrap_or(0)
        .max(20);
    let header: Vec<String> = columns
        .iter()
        .map(|(title, _, _)| format!("{title:>14}"))
        .collect();
    println!("  {:width$} {}", "CPU s per GiB", header.join(" "));
    let row = |label: &str, figure: &dyn Fn(&CpuSample, f64) -> String| {
        let cells: Vec<String> = columns
            .iter()
            .map(|(_, sample, gib)| format!("{:>14}", figure(sample, *gib)))
            .collect();
        println!("  {label:width$} {}", cells.join(" "));
    };
    for name in &names {
        row(name, &|sample, gib| {
            format!("{:.2}", sample.seconds(name) / gib.max(f64::EPSILON))
        });
    }
    row("all of them", &|sample, gib| {
        format!("{:.2}", sample.total() / gib.max(f64::EPSILON))
    });
    row("machine busy", &|sample, _| {
        format!("{:.0}%", sample.machine_busy_percent())
    });
}

/// A process's own CPU seconds and those of the children it has waited for.
struct ProcessTimes {
    own: f64,
    children: f64,
}

impl ProcessTimes {
    fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may hold spaces: state is the first of them,
        // utime, stime, cutime and cstime the 12th to the 15th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok();
        Some(Self {
            own: (ticks(11)? + ticks(12)?) / TICKS,
            children: (ticks(13)? + ticks(14)?) / TICKS,
        })
    }
}

/// CPU seconds of every process of each of [`SERVICES`], added up.
fn service_seconds() -> Vec<(&'static str, f64)> {
    let mut seconds = [0.0; SERVICES.len()];
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
            seconds[index] += ProcessTimes::read(pid).map_or(0.0, |times| times.own);
        }
    }
    SERVICES
        .iter()
        .zip(seconds)
        .map(|((name, _), seconds)| (*name, seconds))
        .collect()
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

/// Peak resident memory of a process (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
