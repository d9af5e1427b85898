//! Running `vod` against a test stack, and reading what it printed.

use std::process::Output;

use vod_tests::Stack;

/// `vod` against the stack with `key` in `VOD_API_KEY`, and nothing else from this process's
/// environment that names a key or a server.
pub fn vod(stack: &Stack, key: Option<&str>, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vod"));
    command
        .env_remove("VOD_API_KEY")
        .env_remove("VOD_SERVER")
        .arg("--server")
        .arg(&stack.gateway_url)
        .args(args);
    if let Some(key) = key {
        command.env("VOD_API_KEY", key);
    }
    command
}

pub async fn run(mut command: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("vod runs"))
        .await
        .expect("vod finished")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Neither stream of `output` holds any of `keys`.
pub fn shows_no_key(output: &Output, keys: &[&str]) {
    for key in keys {
        for (name, text) in [("stdout", stdout(output)), ("stderr", stderr(output))] {
            assert!(!text.contains(key), "a key on {name}: {text}");
        }
    }
}
