//! Guessing the FTP password: every refused login waits before it is answered, and an address
//! that guessed wrong too often is locked out of every connection, right password included,
//! until the lockout ends.

#![allow(clippy::unwrap_used)] // tests fail loudly on anything unexpected

mod common;

use std::time::{Duration, Instant};

use common::{ftp_login, step, TestHolder, FTP_PASSWORD, FTP_USER};
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::{FtpError, Status};

async fn connect(holder: &TestHolder) -> AsyncFtpStream {
    step(AsyncFtpStream::connect(holder.ftp_addr))
        .await
        .unwrap()
}

async fn assert_refused(ftp: &mut AsyncFtpStream, password: &str) {
    match step(ftp.login(FTP_USER, password)).await {
        Err(FtpError::UnexpectedResponse(response)) => {
            assert_eq!(response.status, Status::NotLoggedIn)
        }
        other => panic!("login with {password:?} was not refused: {other:?}"),
    }
}

/// holder's `/metrics` sample named `name` (labels included), 0 when absent.
async fn metric(holder: &TestHolder, name: &str) -> u64 {
    let text = reqwest::get(holder.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn twenty_wrong_passwords_lock_the_address_out_of_every_connection() {
    let holder = TestHolder::spawn_with(|config| holder::Config {
        ftp_max_failed_logins: 5,
        ftp_lockout_ms: 600_000,
        ftp_failed_login_delay_ms: 10,
        ..config
    })
    .await;

    // Guesses on one connection, then on new ones, as a client would go on after a refusal.
    let mut ftp = connect(&holder).await;
    for attempt in 0..20 {
        if attempt % 4 == 3 {
            ftp = connect(&holder).await;
        }
        assert_refused(&mut ftp, &format!("guess-{attempt}")).await;
    }
    assert_refused(&mut ftp, FTP_PASSWORD).await;
    match ftp_login(holder.ftp_addr, FTP_USER, FTP_PASSWORD).await {
        Err(FtpError::UnexpectedResponse(response)) => {
            assert_eq!(response.status, Status::NotLoggedIn)
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the right password was taken while locked out"),
    }
    let mut fresh = connect(&holder).await;
    assert!(
        step(fresh.mkdir("intruder")).await.is_err(),
        "a locked-out client acts without logging in"
    );
    assert!(!holder.root.join("intruder").exists());

    assert_eq!(metric(&holder, "holder_ftp_lockouts_total").await, 1);
    assert_eq!(
        metric(
            &holder,
            "holder_ftp_logins_refused_total{reason=\"bad_credentials\"}"
        )
        .await,
        5
    );
    assert_eq!(
        metric(
            &holder,
            "holder_ftp_logins_refused_total{reason=\"locked_out\"}"
        )
        .await,
        17
    );
    assert_eq!(metric(&holder, "holder_ftp_logins_total").await, 0);
}

#[tokio::test]
async fn the_lockout_ends_after_its_time_and_the_right_password_works_again() {
    let holder = TestHolder::spawn_with(|config| holder::Config {
        ftp_max_failed_logins: 2,
        ftp_lockout_ms: 1_000,
        ftp_failed_login_delay_ms: 0,
        ..config
    })
    .await;
    let mut ftp = connect(&holder).await;
    assert_refused(&mut ftp, "wrong").await;
    assert_refused(&mut ftp, "wrong again").await;
    assert_refused(&mut ftp, FTP_PASSWORD).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ftp_login(holder.ftp_addr, FTP_USER, FTP_PASSWORD).await {
            Ok(mut ftp) => {
                step(ftp.mkdir("after-lockout")).await.unwrap();
                break;
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "still locked out long after the lockout: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(holder.root.join("after-lockout").is_dir());
    assert_eq!(metric(&holder, "holder_ftp_logins_total").await, 1);
}

#[tokio::test]
async fn a_refused_login_is_answered_only_after_the_delay() {
    let delay = Duration::from_millis(400);
    let holder = TestHolder::spawn_with(|config| holder::Config {
        ftp_failed_login_delay_ms: delay.as_millis() as u64,
        ..config
    })
    .await;
    let mut ftp = connect(&holder).await;
    let started = Instant::now();
    assert_refused(&mut ftp, "wrong").await;
    // A lower bound only: the server sleeps at least this long before it answers.
    assert!(
        started.elapsed() >= delay,
        "refused after {:?}",
        started.elapsed()
    );
    // The right password is not slowed down.
    holder.ftp().await;
}
