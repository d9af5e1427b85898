//! The fault proxy really cuts a dependency off and really lets it back.

use vod_infra::testsuite::{FaultProxy, TestWorld};

#[tokio::test]
async fn a_cut_proxy_makes_postgres_unreachable_until_restored() {
    let world = TestWorld::new().await;
    let (proxy, url) = FaultProxy::in_front_of(&world.postgres_url).await;
    let mut settings = world.postgres();
    settings.url = url.into();
    settings.timeout_ms = 1_000;
    let pool = vod_infra::postgres::pool(&settings).expect("pool");
    assert!(vod_infra::postgres::is_reachable(&pool).await);

    proxy.cut();
    assert!(
        !vod_infra::postgres::is_reachable(&pool).await,
        "a pooled connection opened before the cut is dropped"
    );
    assert!(!vod_infra::postgres::is_reachable(&pool).await);

    proxy.restore();
    assert!(vod_infra::postgres::is_reachable(&pool).await);
}
