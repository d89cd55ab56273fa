//! Replicas starting together apply migrations one after the other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use migrations::Service;
use sea_orm_migration::sea_orm::Database;

#[tokio::test]
async fn concurrent_up_on_one_database() {
    let mut env = testkit::TestEnv::new();
    let url = env.database("migrate").await;
    let (a, b) = (
        Database::connect(&url).await.unwrap(),
        Database::connect(&url).await.unwrap(),
    );
    for service in Service::ALL {
        let (x, y) = tokio::join!(migrations::up(service, &a), migrations::up(service, &b));
        x.unwrap();
        y.unwrap();
    }
    for service in Service::ALL {
        let status = migrations::status(service, &a).await.unwrap();
        assert!(
            status.iter().all(|(_, applied)| *applied),
            "{service}: {status:?}"
        );
    }
    // Idempotent.
    migrations::up(Service::Users, &a).await.unwrap();
    assert_eq!("users".parse::<Service>().ok(), Some(Service::Users));
    assert!("nope".parse::<Service>().is_err());
}
