//! The OpenAPI document at `/openapi.json` says what the gateway really does: schemathesis
//! (pinned, installed from PyPI by `./dev test` into `tests/schemathesis/.venv`) sends
//! requests generated from the document, valid and invalid ones, to the whole stack with every
//! check on, and finds no answer the document does not allow, no valid request refused and no
//! invalid one accepted. Its settings (a fixed seed, examples per operation, the statuses tus
//! adds to the expected ones) are in `tests/schemathesis/schemathesis.toml`; what tus ties
//! together that OpenAPI cannot say is in `tests/schemathesis/hooks.py`.

use std::path::{Path, PathBuf};

use vod_tests::{Stack, StackOptions, TestEnv};

fn schemathesis_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_the_gateway_true_to_its_openapi_document() {
    let dir = schemathesis_dir();
    let schemathesis = dir.join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "schemathesis is not installed: run ./dev test, which installs it into {}",
        dir.display()
    );
    let env = TestEnv::new().await;
    // Webhook URLs valid by the document point at this machine (`hooks.py`).
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_gateway: vod_tests::receiver::local_targets,
            configure_uploader: vod_tests::receiver::local_delivery,
            ..StackOptions::default()
        },
    )
    .await;

    let output = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(stack.url("/openapi.json"))
        // The credentials, by security scheme (`schemathesis.toml`): every route is tested
        // past its authentication.
        .env("VOD_API_KEY", &stack.api_key)
        // Direct upload URLs are made for the requests to them (`hooks.py`).
        .env("VOD_GATEWAY_URL", &stack.gateway_url)
        .env("VOD_ADMIN_TOKEN", &stack.admin_token)
        .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
        .current_dir(env.dir.path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found the gateway and its OpenAPI document disagreeing ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // A run that skipped operations or links would pass as well.
    let operations = documented_operations(&stack).await;
    assert_eq!(
        figure_after(&stdout, "Tested:"),
        Some(operations),
        "schemathesis did not test every operation:\n{stdout}"
    );
    let links = figure_after(&stdout, "API Links:").filter(|&covered| covered > 0);
    assert_eq!(
        links,
        figure_after(&stdout, "covered /"),
        "schemathesis did not follow every link:\n{stdout}"
    );
    stack.assert_running();
    stack.shutdown().await;
}

/// How many operations `/openapi.json` lists, its own aside: schemathesis loads the document
/// from it and does not test it.
async fn documented_operations(stack: &Stack) -> u64 {
    let document: serde_json::Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("the document is JSON");
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| path.as_str() != "/openapi.json")
        .flat_map(|(_, item)| methods.iter().filter(|method| item.get(**method).is_some()))
        .count() as u64
}

/// The number right after `label` in schemathesis's report, e.g. `Tested: 14`.
fn figure_after(report: &str, label: &str) -> Option<u64> {
    let (_, after) = report.split_once(label)?;
    after
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
