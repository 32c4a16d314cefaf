//! A password from `password_env`, and a source that goes away mid-read. One test in its own
//! binary, since it sets an environment variable.

mod common;

use std::sync::Arc;

use common::{TestDb, TestUser, admin, admin_rows, ints, stored, with_user};
use dossier_connector::{Batch, Connector, ErrorOrigin, ReadRequest};
use dossier_connector_mysql::{Config, MySqlConnector, Stream};
use futures::{StreamExt as _, TryStreamExt as _};

#[tokio::test]
#[allow(unsafe_code)] // the only test of this binary sets the variable before any thread reads it
async fn a_source_going_away_mid_read_fails_and_resumes_from_the_last_state() {
    let db = TestDb::sakila().await;
    let name = format!("{}_s", db.name);
    let _user = TestUser::new(&name, "s3cret-pw", &[format!("`{}`.*", db.name)]).await;
    unsafe { std::env::set_var("DOSSIER_TEST_MYSQL_PASSWORD", "s3cret-pw") };
    unsafe { std::env::set_var("DOSSIER_TEST_MYSQL_WRONG", "not-it") };
    let config = |var: &str| Config {
        password_env: Some(var.into()),
        connect_timeout_secs: Some(2),
        ..Config::url(with_user(&db.url, &name, None))
    };

    let e = MySqlConnector::connect(config("DOSSIER_TEST_MYSQL_WRONG"))
        .await
        .unwrap_err();
    assert_eq!(e.origin(), ErrorOrigin::Config, "{e}");
    assert!(
        e.to_string().contains(&format!("as user \"{name}\"")),
        "{e}"
    );
    assert!(!e.to_string().contains("not-it"), "{e}");

    let config = config("DOSSIER_TEST_MYSQL_PASSWORD");
    assert!(!format!("{config:?}").contains("s3cret"));
    let c = Arc::new(MySqlConnector::connect(config).await.unwrap());
    let stream = Stream::table("rental").with_cursor("last_update");
    let read = |state, batch_size| {
        c.clone()
            .read(ReadRequest {
                name: "rental".into(),
                stream: stream.clone(),
                state,
                batch_size,
            })
            .try_collect::<Vec<Batch>>()
    };
    let all = ints(&read(None, 5000).await.unwrap(), "rental_id");
    assert_eq!(all.len(), 16044);

    let mut reading = c.clone().read(ReadRequest {
        name: "rental".into(),
        stream: stream.clone(),
        state: None,
        batch_size: 1000,
    });
    let mut got = vec![];
    for _ in 0..3 {
        got.push(reading.next().await.unwrap().unwrap());
    }
    // The server throws the connector out and refuses it back.
    admin(&format!("ALTER USER '{name}'@'%' ACCOUNT LOCK")).await;
    for row in admin_rows(&format!(
        "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST WHERE USER = '{name}'"
    ))
    .await
    {
        admin(&format!("KILL CONNECTION {}", row[0].as_deref().unwrap())).await;
    }
    let e = reading.next().await.unwrap().unwrap_err();
    assert!(e.to_string().contains("stream \"rental\""), "{e}");
    assert!(
        reading.next().await.is_none(),
        "the stream ends after an error"
    );

    admin(&format!("ALTER USER '{name}'@'%' ACCOUNT UNLOCK")).await;
    let rest = read(Some(stored(got.last().unwrap())), 1000).await.unwrap();
    let mut ids = ints(&got, "rental_id");
    ids.extend(ints(&rest, "rental_id"));
    assert_eq!(ids, all, "nothing lost or duplicated");
}
