//! Migrations written on parallel branches land in any order: one whose version is below an
//! applied one is still applied, once.

use vod_infra::postgres::{apply_migrations, Migration};
use vod_tests::TestEnv;

fn migration(name: &str, sql: &str) -> Migration {
    Migration::unapplied(name, sql).expect("a valid migration name")
}

#[tokio::test]
async fn a_migration_that_lands_after_a_newer_one_is_applied_once() {
    let env = TestEnv::new().await;
    let mut db = env.db().await;
    let history = "late_history";
    let first = migration("V1__first", "CREATE TABLE late_first (id int)");
    let second = migration("V2__second", "CREATE TABLE late_second (id int)");
    let third = migration("V3__third", "CREATE TABLE late_third (id int)");

    let applied = apply_migrations(&mut db, &[first.clone(), third.clone()], history)
        .await
        .expect("first and third apply");
    let versions: Vec<i32> = applied.iter().map(|(version, _)| *version).collect();
    assert_eq!(versions, [1, 3]);

    let all = [first, second, third];
    let applied = apply_migrations(&mut db, &all, history)
        .await
        .expect("the late one applies");
    assert_eq!(applied, [(2, "second".to_owned())]);
    db.execute("INSERT INTO late_second VALUES (1)", &[])
        .await
        .expect("the late migration's table exists");

    let applied = apply_migrations(&mut db, &all, history)
        .await
        .expect("nothing left");
    assert!(applied.is_empty(), "{applied:?}");
    let recorded: i64 = db
        .query_one(&format!("SELECT count(*) FROM {history}"), &[])
        .await
        .expect("history")
        .get(0);
    assert_eq!(recorded, 3);
}
