//! fflow's sessions with holder: over FTPS when configured (trusting only the configured
//! authority), and a readiness check that does not log in on every probe.

#![allow(clippy::unwrap_used)]

mod common;

use common::{ftps_fixture, make_clip, upload, TestEnv};
use reqwest::StatusCode;
use vod_contracts::layout;
use vod_contracts::outcome::EncodeResult;

fn holder_with_ftps(config: &mut holder::Config) {
    config.ftps_cert_file = Some(ftps_fixture("holder.pem"));
    config.ftps_key_file = Some(ftps_fixture("holder.key"));
}

/// holder's count of FTP logins taken, from its `/metrics`.
async fn holder_logins(env: &TestEnv) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", env.holder_http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("holder_ftp_logins_total "))
        .unwrap_or_else(|| panic!("no login count in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `/readyz` of a replica: its status and whether it found holder reachable.
async fn readyz(replica: &common::Replica) -> (StatusCode, bool) {
    let response = reqwest::get(format!("{}/readyz", replica.base))
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    let holder = body["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|dependency| dependency["name"] == "holder")
        .unwrap()["reachable"]
        .as_bool()
        .unwrap();
    (status, holder)
}

#[tokio::test]
async fn a_presentation_is_stored_over_ftps_when_holder_requires_it() {
    let env = TestEnv::start_with_holder(holder_with_ftps).await;
    let mut config = env.fflow_config("r1");
    config.holder.tls_ca_file = Some(ftps_fixture("ca.pem"));
    config.holder.tls_domain = "localhost".to_owned();
    let replica = env.start_replica_with(config).await;
    assert_eq!(readyz(&replica).await, (StatusCode::OK, true));

    let clip = make_clip(env.dir.path());
    let request = upload(&env, &replica, &clip).await;
    let outcome = env.next_outcome().await;
    let EncodeResult::Ready(facts) = outcome.result else {
        panic!("encode over ftps failed: {:?}", outcome.result);
    };
    let target = request.target.unwrap();
    let dir = layout::presentation_dir(target.video_id, target.flow_id);
    assert_eq!(facts.hls_path, format!("{dir}/master.m3u8"));
    let stored = env.holder_root.join(&dir);
    for name in ["master.m3u8", "manifest.mpd", "init-stream0.m4s"] {
        assert!(stored.join(name).is_file(), "{name} not stored on holder");
    }

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn holder_refuses_plain_ftp_and_fflow_refuses_a_certificate_it_does_not_trust() {
    let env = TestEnv::start_with_holder(holder_with_ftps).await;
    let plain = env.start_replica("r1").await;
    let (status, holder) = readyz(&plain).await;
    assert_eq!(
        (status, holder),
        (StatusCode::SERVICE_UNAVAILABLE, false),
        "a plain login was taken by a holder that requires tls"
    );

    let mut config = env.fflow_config("r2");
    config.holder.tls_ca_file = Some(ftps_fixture("other-ca.pem"));
    config.holder.tls_domain = "localhost".to_owned();
    let untrusting = env.start_replica_with(config).await;
    let (status, holder) = readyz(&untrusting).await;
    assert_eq!(
        (status, holder),
        (StatusCode::SERVICE_UNAVAILABLE, false),
        "holder's certificate was trusted without its authority"
    );
    assert_eq!(holder_logins(&env).await, 0);

    plain.stop().await;
    untrusting.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn readiness_checks_holder_greeting_every_time_and_logs_in_only_now_and_then() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    for _ in 0..5 {
        assert_eq!(readyz(&replica).await, (StatusCode::OK, true));
    }
    assert_eq!(
        holder_logins(&env).await,
        1,
        "one login within the login check interval"
    );

    // A replica told to check the login each time does log in each time: the count above
    // would have shown every login.
    let mut config = env.fflow_config("r2");
    config.holder.login_check_interval_ms = 0;
    let eager = env.start_replica_with(config).await;
    for _ in 0..3 {
        assert_eq!(readyz(&eager).await, (StatusCode::OK, true));
    }
    assert_eq!(holder_logins(&env).await, 4);

    replica.stop().await;
    eager.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn readiness_follows_holder_going_away_without_waiting_for_the_next_login_check() {
    let env = TestEnv::start().await;
    let proxy = vod_infra::testsuite::FaultProxy::start(&env.holder_ftp.to_string()).await;
    let mut config = env.fflow_config("r1");
    config.holder.addr = proxy.addr().to_string();
    let replica = env.start_replica_with(config).await;
    assert_eq!(readyz(&replica).await, (StatusCode::OK, true));

    proxy.cut();
    assert_eq!(
        readyz(&replica).await,
        (StatusCode::SERVICE_UNAVAILABLE, false),
        "a holder that does not greet is unreachable, whatever the last login said"
    );
    proxy.restore();
    assert_eq!(readyz(&replica).await, (StatusCode::OK, true));
    assert_eq!(
        holder_logins(&env).await,
        1,
        "the login was not checked again"
    );

    replica.stop().await;
    env.stop().await;
}
