//! holder's log stays quiet through ordinary FTP sessions: libunftp logs every command at info,
//! so it logs at `HOLDER_FTP_LOG_LEVEL` (warn by default) even when `RUST_LOG=info`, as
//! `./dev up` sets it. The real binary is run, so its own logging setup is what is tested.

#![allow(clippy::unwrap_used)] // tests fail loudly on anything unexpected

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::{ftp_login, mkdir_all, step, upload, FTP_PASSWORD, FTP_USER};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

struct RunningHolder {
    child: Child,
    /// What holder logs, read as it comes so that it never waits for its output pipe.
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line received so far.
    logged: Vec<String>,
    ftp_addr: SocketAddr,
    _root: tempfile::TempDir,
}

impl RunningHolder {
    /// Starts the binary with `RUST_LOG=info` and JSON logs, plus `extra` variables, and waits
    /// for it to tell where it listens.
    async fn start(extra: &[(&str, &str)]) -> RunningHolder {
        let root = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_holder"))
            .env_clear()
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .env("HOLDER_HTTP_ADDR", "127.0.0.1:0")
            .env("HOLDER_FTP_ADDR", "127.0.0.1:0")
            .env("HOLDER_ROOT", root.path())
            .env("HOLDER_FTP_PASSWORD", FTP_PASSWORD)
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap()).lines();
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = output.next_line().await {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut holder = RunningHolder {
            child,
            lines,
            logged: Vec::new(),
            ftp_addr: "127.0.0.1:0".parse().unwrap(),
            _root: root,
        };
        loop {
            let line = holder
                .next_line()
                .await
                .expect("holder logs where it listens");
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            if entry["fields"]["message"] == "holder listening" {
                holder.ftp_addr = entry["fields"]["ftp_addr"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                return holder;
            }
        }
    }

    async fn next_line(&mut self) -> Option<String> {
        let line = step(self.lines.recv()).await?;
        self.logged.push(line.clone());
        Some(line)
    }

    /// Stops holder as an orchestrator does and returns everything it logged.
    async fn stop(mut self) -> Vec<String> {
        let pid = rustix::process::Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        while self.next_line().await.is_some() {}
        let status = step(self.child.wait()).await.unwrap();
        assert!(status.success(), "holder exited with {status}");
        self.logged
    }
}

/// What fflow does in a publish: log in, create directories, upload and rename, list, quit.
async fn ordinary_session(ftp_addr: SocketAddr) {
    let mut ftp = ftp_login(ftp_addr, FTP_USER, FTP_PASSWORD).await.unwrap();
    mkdir_all(&mut ftp, "videos/v/f").await;
    upload(&mut ftp, "videos/v/f/segment.m4s", &[7u8; 4096]).await;
    upload(&mut ftp, "videos/v/f/master.m3u8", b"#EXTM3U\n").await;
    step(ftp.nlst(Some("videos/v/f"))).await.unwrap();
    step(ftp.quit()).await.unwrap();
}

fn from_libunftp(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|line| line.contains("\"target\":\"libunftp"))
        .collect()
}

#[tokio::test]
async fn ordinary_ftp_sessions_log_nothing_at_the_default_level_even_with_rust_log_info() {
    let holder = RunningHolder::start(&[]).await;
    let before = holder.logged.len();
    for _ in 0..3 {
        ordinary_session(holder.ftp_addr).await;
    }
    let logged = holder.stop().await;
    let from_libunftp = from_libunftp(&logged);
    assert!(
        from_libunftp.is_empty(),
        "libunftp logged at the default level: {from_libunftp:#?}"
    );
    // Starting and stopping say a few lines; the sessions themselves none.
    let after_start = &logged[before..];
    assert!(
        after_start.len() <= 4,
        "three ordinary sessions logged: {after_start:#?}"
    );
    assert!(
        logged.iter().all(|line| !line.contains(FTP_PASSWORD)),
        "the password reached the log"
    );
}

#[tokio::test]
async fn libunftp_logs_each_session_when_its_level_is_raised() {
    let holder = RunningHolder::start(&[("HOLDER_FTP_LOG_LEVEL", "info")]).await;
    ordinary_session(holder.ftp_addr).await;
    let logged = holder.stop().await;
    assert!(
        !from_libunftp(&logged).is_empty(),
        "nothing of libunftp came through at info: {logged:#?}"
    );
}
