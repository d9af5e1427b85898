use std::ops::Deref;

use vod_infra::testsuite::TestWorld;

/// One test's isolated world: a database, queues and Redis keys of its own (see
/// [`TestWorld`]), and a directory for holder's root and fflow's spools. Dropping it removes
/// them all.
pub struct TestEnv {
    world: TestWorld,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self {
            world: TestWorld::new().await,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A connection to this test's Redis, for tests that inspect or disturb routing.
    pub async fn redis_connection(&self) -> deadpool_redis::Connection {
        let pool = vod_infra::redis::pool(&self.redis()).expect("redis pool");
        pool.get().await.expect("redis is reachable")
    }
}

impl Deref for TestEnv {
    type Target = TestWorld;

    fn deref(&self) -> &TestWorld {
        &self.world
    }
}
