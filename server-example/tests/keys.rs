//! The key server over real HTTP: devices upload keys, peers fetch bundles that consume each
//! one-time prekey exactly once (also under 20 concurrent fetches), the pool count, the
//! fallback to the signed prekey, several and revoked devices, blocks and bad input.

mod common;

use std::collections::HashSet;

use common::{Session, TestServer, bounded, raw_request};
use missive_server::keys::{self, KeyStore, Keys};
use serde_json::{Value, json};

async fn server() -> TestServer {
    TestServer::start_with(
        |_| {},
        |mut app| {
            app.set_routes(keys::router(Keys::new(KeyStore::open_in_memory().unwrap())));
            app
        },
    )
    .await
}

fn upload_body(identity: &str, key_ids: std::ops::Range<u32>) -> Value {
    json!({
        "identity_key": identity,
        "signing_key": format!("{identity}Sign"),
        "signed_prekey": {"key_id": "AAAAAAAAAAE", "key": format!("{identity}Spk"), "signature": "c2lnbmF0dXJl"},
        "one_time_prekeys": key_ids.map(|i| json!({"key_id": format!("id{i}"), "key": format!("{identity}Otk{i}")})).collect::<Vec<_>>(),
    })
}

async fn upload(server: &TestServer, who: &Session, body: &Value) -> Value {
    let r = server
        .put("/api/v1/keys", &who.token, &body.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn count(server: &TestServer, who: &Session) -> u64 {
    let r = server.get("/api/v1/keys/count", &who.token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["count"].as_u64().unwrap()
}

#[tokio::test]
async fn upload_fetch_and_count() {
    bounded(async {
        let server = server().await;
        let alice = server.login("+15550000001").await;
        let bob = server.login("+15550000002").await;
        let r = upload(&server, &alice, &upload_body("alice", 0..3)).await;
        assert_eq!(r, json!({"added": 3, "count": 3}));
        assert_eq!(count(&server, &alice).await, 3);
        assert_eq!(count(&server, &bob).await, 0);

        let r = server
            .get(&format!("/api/v1/keys/{}", alice.user_id), &bob.token)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let devices = v["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(d["user_id"], alice.user_id.as_str());
        assert_eq!(
            d["device_id"], "1",
            "ids are strings, as the client library expects"
        );
        assert_eq!(d["identity_key"], "alice");
        assert_eq!(d["signing_key"], "aliceSign");
        assert_eq!(
            d["signed_prekey"],
            json!({"key_id": "AAAAAAAAAAE", "key": "aliceSpk", "signature": "c2lnbmF0dXJl"})
        );
        assert_eq!(
            d["one_time_prekey"],
            json!({"key_id": "id0", "key": "aliceOtk0"})
        );
        assert_eq!(count(&server, &alice).await, 2);

        // Re-sending the same upload (a retry) does not put the consumed key back.
        let r = upload(&server, &alice, &upload_body("alice", 0..3)).await;
        assert_eq!(r, json!({"added": 0, "count": 2}));
        // A top-up adds only new ids; a new signed prekey replaces the old one.
        let mut body = upload_body("alice", 2..5);
        body["signed_prekey"]["key"] = json!("aliceSpk2");
        let r = upload(&server, &alice, &body).await;
        assert_eq!(r, json!({"added": 2, "count": 4}));
        let v = server
            .get(&format!("/api/v1/keys/{}", alice.user_id), &bob.token)
            .await
            .json();
        assert_eq!(v["devices"][0]["signed_prekey"]["key"], "aliceSpk2");
        assert_eq!(v["devices"][0]["one_time_prekey"]["key_id"], "id1");

        // A user without keys has no bundles.
        let v = server
            .get(&format!("/api/v1/keys/{}", bob.user_id), &alice.token)
            .await
            .json();
        assert_eq!(v, json!({"devices": []}));
    })
    .await;
}

#[tokio::test]
async fn concurrent_fetches_hand_out_each_key_once_then_fall_back() {
    bounded(async {
        let server = server().await;
        let alice = server.login("+15550000001").await;
        let mut fetchers = Vec::new();
        for n in 0..4 {
            fetchers.push(server.login(&format!("+1555000010{n}")).await);
        }
        upload(&server, &alice, &upload_body("alice", 0..10)).await;

        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let token = fetchers[i % fetchers.len()].token.clone();
            let path = format!("/api/v1/keys/{}", alice.user_id);
            let addr = server.addr;
            tasks.spawn(async move {
                let headers = [("authorization".to_string(), format!("Bearer {token}"))];
                raw_request(addr, "GET", &path, &headers, None).await
            });
        }
        let mut keys = Vec::new();
        let mut nulls = 0;
        while let Some(r) = tasks.join_next().await {
            let r = r.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            let device = &v["devices"][0];
            assert_eq!(
                device["signed_prekey"]["key"], "aliceSpk",
                "the fallback is always there"
            );
            match &device["one_time_prekey"] {
                Value::Null => nulls += 1,
                key => keys.push(key["key_id"].as_str().unwrap().to_owned()),
            }
        }
        let distinct: HashSet<_> = keys.iter().cloned().collect();
        assert_eq!(keys.len(), 10, "{keys:?}");
        assert_eq!(distinct.len(), 10, "no key handed out twice: {keys:?}");
        assert_eq!(nulls, 10);
        assert_eq!(count(&server, &alice).await, 0);
    })
    .await;
}

#[tokio::test]
async fn every_live_device_gets_a_bundle() {
    bounded(async {
        let server = server().await;
        let phone = server.login("+15550000001").await;
        let laptop = server.login("+15550000001").await;
        let bob = server.login("+15550000002").await;
        upload(&server, &phone, &upload_body("phone", 0..2)).await;
        upload(&server, &laptop, &upload_body("laptop", 0..2)).await;
        let v = server
            .get(&format!("/api/v1/keys/{}", phone.user_id), &bob.token)
            .await
            .json();
        let devices = v["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0]["device_id"], "1");
        assert_eq!(devices[0]["one_time_prekey"]["key"], "phoneOtk0");
        assert_eq!(devices[1]["device_id"], "2");
        assert_eq!(devices[1]["one_time_prekey"]["key"], "laptopOtk0");
        assert_eq!(count(&server, &phone).await, 1);
        assert_eq!(count(&server, &laptop).await, 1);

        // A revoked device is never handed out.
        let r = server
            .delete(
                &format!("/api/v1/devices/{}", laptop.device_id),
                &phone.token,
            )
            .await;
        assert!(r.status == 204 || r.status == 200, "{}", r.body);
        let v = server
            .get(&format!("/api/v1/keys/{}", phone.user_id), &bob.token)
            .await
            .json();
        assert_eq!(v["devices"].as_array().unwrap().len(), 1);
        assert_eq!(v["devices"][0]["device_id"], "1");
    })
    .await;
}

#[tokio::test]
async fn blocks_unknown_users_and_bad_uploads_are_refused() {
    bounded(async {
        let server = server().await;
        let alice = server.login("+15550000001").await;
        let bob = server.login("+15550000002").await;
        upload(&server, &alice, &upload_body("alice", 0..2)).await;

        server
            .request("GET", "/api/v1/keys/1", None, None)
            .await
            .assert_error(401, "unauthorized");
        server
            .get("/api/v1/keys/999", &bob.token)
            .await
            .assert_error(404, "not_found");
        server
            .get("/api/v1/keys/abc", &bob.token)
            .await
            .assert_error(400, "invalid_request");

        let r = server
            .put(
                &format!("/api/v1/contacts/{}/block", bob.user_id),
                &alice.token,
                "",
            )
            .await;
        assert!(r.status == 204 || r.status == 200, "{}", r.body);
        server
            .get(&format!("/api/v1/keys/{}", alice.user_id), &bob.token)
            .await
            .assert_error(403, "forbidden");
        assert_eq!(
            count(&server, &alice).await,
            2,
            "a refused fetch consumes nothing"
        );
        // The blocker may still fetch the blocked user's keys.
        let r = server
            .get(&format!("/api/v1/keys/{}", bob.user_id), &alice.token)
            .await;
        assert_eq!(r.status, 200);

        let mut bad = upload_body("alice", 0..1);
        bad["identity_key"] = json!("not base64!");
        server
            .put("/api/v1/keys", &alice.token, &bad.to_string())
            .await
            .assert_error(400, "invalid_request");
        let too_many = upload_body("alice", 0..(keys::UPLOAD_PREKEYS_MAX as u32 + 1));
        server
            .put("/api/v1/keys", &alice.token, &too_many.to_string())
            .await
            .assert_error(400, "invalid_request");
        server
            .put("/api/v1/keys", &alice.token, r#"{"identity_key": "x"}"#)
            .await
            .assert_error(400, "invalid_request");
        // The pool is capped.
        upload(&server, &alice, &upload_body("alice", 100..200)).await;
        upload(&server, &alice, &upload_body("alice", 200..298)).await;
        server
            .put(
                "/api/v1/keys",
                &alice.token,
                &upload_body("alice", 300..301).to_string(),
            )
            .await
            .assert_error(409, "conflict");
        assert_eq!(count(&server, &alice).await, keys::POOL_PREKEYS_MAX as u64);
    })
    .await;
}
