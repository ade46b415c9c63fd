//! Accounts over real HTTP on 127.0.0.1: phone verification and tokens (required, forged,
//! revoked → 401; wrong codes → 429), devices, profiles, contact discovery, blocking, push
//! settings, and the JSON error shape for bad input (malformed JSON, wrong types, oversized
//! bodies, unknown routes).

mod common;

use common::{TestServer, bounded};
use serde_json::json;

#[tokio::test]
async fn verification_creates_the_user_and_each_verification_a_device() {
    bounded(async {
        let server = TestServer::default().await;
        let first = server.login("+15550000001").await;
        assert_eq!(first.user_id, "1");
        assert_eq!(first.device_id, 1);
        assert_eq!(first.token.len(), 64);
        // The SMS sink received the code too.
        assert_eq!(server.sms.sent().len(), 1);

        let second = server.login("+15550000001").await;
        assert_eq!(second.user_id, "1", "same phone, same user");
        assert_eq!(second.device_id, 2);
        let other = server.login("+15550000002").await;
        assert_eq!(other.user_id, "2");

        let me = server.get("/api/v1/users/me", &second.token).await;
        assert_eq!(me.status, 200);
        let me = me.json();
        assert_eq!(me["user_id"], "1");
        assert_eq!(me["phone_number"], "+15550000001");
        assert!(me["created_at"].as_str().unwrap().ends_with('Z'));

        let devices = server.get("/api/v1/devices", &first.token).await.json();
        let devices = devices["devices"].as_array().unwrap().clone();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0]["current"], true);
        assert_eq!(devices[1]["current"], false);
    })
    .await;
}

#[tokio::test]
async fn dev_code_only_in_dev_mode() {
    bounded(async {
        let server = TestServer::start(|c| c.dev = false).await;
        let r = server
            .post(
                "/api/v1/auth/verify-phone",
                None,
                r#"{"phone_number":"+15550000001"}"#,
            )
            .await;
        assert_eq!(r.status, 202);
        let v = r.json();
        assert!(v.get("dev_code").is_none());
        assert!(v["request_id"].is_string());
        assert_eq!(v["expires_in_s"], 300);
        let (_, text) = server.sms.sent().pop().unwrap();
        assert!(text.contains("code"));
    })
    .await;
}

#[tokio::test]
async fn tokens_required_forged_and_revoked_are_401() {
    bounded(async {
        let server = TestServer::default().await;
        let s = server.login("+15550000001").await;
        let other_device = server.login("+15550000001").await;

        server
            .request("GET", "/api/v1/users/me", None, None)
            .await
            .assert_error(401, "unauthorized");
        for forged in [
            "x",
            &"0".repeat(64),
            &s.token[..63],
            &format!("{}0", s.token),
        ] {
            server
                .get("/api/v1/users/me", forged)
                .await
                .assert_error(401, "unauthorized");
        }
        let basic = common::raw_request(
            server.addr,
            "GET",
            "/api/v1/users/me",
            &[("authorization".into(), format!("Basic {}", s.token))],
            None,
        )
        .await;
        basic.assert_error(401, "unauthorized");
        // `?token=` is for WebSocket upgrades only.
        server
            .request(
                "GET",
                &format!("/api/v1/users/me?token={}", s.token),
                None,
                None,
            )
            .await
            .assert_error(401, "unauthorized");

        // Log out this device.
        assert_eq!(
            server.delete("/api/v1/auth/token", &s.token).await.status,
            204
        );
        server
            .get("/api/v1/users/me", &s.token)
            .await
            .assert_error(401, "unauthorized");
        // The other device still works, and can revoke devices.
        assert_eq!(
            server
                .get("/api/v1/users/me", &other_device.token)
                .await
                .status,
            200
        );
        server
            .delete("/api/v1/devices/1", &other_device.token)
            .await
            .assert_error(404, "not_found");
        let third = server.login("+15550000001").await;
        assert_eq!(third.device_id, 3, "device ids are never reused");
        assert_eq!(
            server
                .delete("/api/v1/devices/3", &other_device.token)
                .await
                .status,
            204
        );
        server
            .get("/api/v1/users/me", &third.token)
            .await
            .assert_error(401, "unauthorized");
    })
    .await;
}

#[tokio::test]
async fn wrong_codes_are_limited_then_429() {
    bounded(async {
        let server = TestServer::start(|c| c.verify_attempts_max = 3).await;
        let phone = "+15550000009";
        let r = server
            .post(
                "/api/v1/auth/verify-phone",
                None,
                &json!({"phone_number": phone}).to_string(),
            )
            .await;
        let code = r.json()["dev_code"].as_str().unwrap().to_owned();
        let wrong = if code == "111111" { "222222" } else { "111111" };
        let attempt = |c: &str| json!({"phone_number": phone, "code": c}).to_string();
        for _ in 0..3 {
            server
                .post("/api/v1/auth/verify-code", None, &attempt(wrong))
                .await
                .assert_error(401, "unauthorized");
        }
        // Even the right code is refused now: the request is spent.
        server
            .post("/api/v1/auth/verify-code", None, &attempt(&code))
            .await
            .assert_error(429, "rate_limited");
        // Nothing was created.
        assert_eq!(server.state.accounts.store().user_count().unwrap(), 0);
        // A new code starts over.
        let s = server.login(phone).await;
        assert_eq!(s.user_id, "1");
        // Malformed input is a 400, not an attempt.
        server
            .post("/api/v1/auth/verify-code", None, &attempt("12ab56"))
            .await
            .assert_error(400, "invalid_request");
        server
            .post(
                "/api/v1/auth/verify-phone",
                None,
                r#"{"phone_number":"555-1234"}"#,
            )
            .await
            .assert_error(400, "invalid_request");
    })
    .await;
}

#[tokio::test]
async fn profiles() {
    bounded(async {
        let server = TestServer::default().await;
        let a = server.login("+15550000001").await;
        let b = server.login("+15550000002").await;
        let r = server
            .put(
                "/api/v1/users/me",
                &a.token,
                r#"{"name":"Ann","status_message":"hi"}"#,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["name"], "Ann");
        server
            .put(
                "/api/v1/users/me",
                &a.token,
                &json!({"name": "x".repeat(65)}).to_string(),
            )
            .await
            .assert_error(400, "invalid_request");
        server
            .put(
                "/api/v1/users/me",
                &a.token,
                r#"{"user_id":"2","name":"spoof"}"#,
            )
            .await
            .assert_error(400, "invalid_request");
        // Others see the profile, without the phone number until they have it as a contact.
        let seen = server.get("/api/v1/users/1", &b.token).await.json();
        assert_eq!(seen["name"], "Ann");
        assert!(seen.get("phone_number").is_none());
        server
            .post(
                "/api/v1/contacts",
                Some(&b.token),
                r#"{"phone_numbers":["+15550000001"]}"#,
            )
            .await;
        let seen = server.get("/api/v1/users/1", &b.token).await.json();
        assert_eq!(seen["phone_number"], "+15550000001");
        server
            .get("/api/v1/users/99", &b.token)
            .await
            .assert_error(404, "not_found");
        server
            .get("/api/v1/users/abc", &b.token)
            .await
            .assert_error(400, "invalid_request");
    })
    .await;
}

#[tokio::test]
async fn contact_discovery_and_blocking() {
    bounded(async {
        let server = TestServer::default().await;
        let a = server.login("+15550000001").await;
        server.login("+15550000002").await;
        server.login("+15550000003").await;
        let r = server
            .post(
                "/api/v1/contacts",
                Some(&a.token),
                r#"{"phone_numbers":["+15550000003","+15550000002","+15559999999","+15550000001","+15550000002"]}"#,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let found: Vec<String> = r.json()["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["user_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(found, vec!["2", "3"], "registered ones, not oneself, no duplicates");
        server
            .post("/api/v1/contacts", Some(&a.token), r#"{"phone_numbers":["nope"]}"#)
            .await
            .assert_error(400, "invalid_request");

        assert_eq!(server.put("/api/v1/contacts/2/block", &a.token, "").await.status, 204);
        assert!(server.state.accounts.store().is_blocked(1, 2));
        assert!(!server.state.accounts.store().is_blocked(2, 1));
        let list = server.get("/api/v1/contacts", &a.token).await.json();
        let blocked: Vec<bool> = list["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["blocked"].as_bool().unwrap())
            .collect();
        assert_eq!(blocked, vec![true, false]);
        assert_eq!(
            server.get("/api/v1/contacts/blocked", &a.token).await.json()["user_ids"],
            json!(["2"])
        );
        server
            .put("/api/v1/contacts/1/block", &a.token, "")
            .await
            .assert_error(400, "invalid_request");
        server
            .put("/api/v1/contacts/42/block", &a.token, "")
            .await
            .assert_error(404, "not_found");
        assert_eq!(server.delete("/api/v1/contacts/2/block", &a.token).await.status, 204);
        assert!(!server.state.accounts.store().is_blocked(1, 2));
        assert_eq!(server.state.accounts.store().contacts_of(1).unwrap(), vec![2, 3]);
        assert_eq!(server.state.accounts.store().contacted_by(2).unwrap(), vec![1]);
    })
    .await;
}

#[tokio::test]
async fn push_token_and_notification_settings() {
    bounded(async {
        let server = TestServer::default().await;
        let a = server.login("+15550000001").await;
        assert_eq!(
            server
                .put(
                    "/api/v1/push/token",
                    &a.token,
                    r#"{"platform":"fcm","token":"abc"}"#
                )
                .await
                .status,
            204
        );
        server
            .put(
                "/api/v1/push/token",
                &a.token,
                r#"{"platform":"pager","token":"abc"}"#,
            )
            .await
            .assert_error(400, "invalid_request");
        let targets = server.state.accounts.store().push_targets(1).unwrap();
        assert_eq!(targets[0].token, "abc");

        let r = server
            .put(
                "/api/v1/settings/notifications",
                &a.token,
                r#"{"muted_chats":["c2","c1"],"do_not_disturb":true}"#,
            )
            .await;
        assert_eq!(
            r.json(),
            json!({"muted_chats": ["c1", "c2"], "do_not_disturb": true})
        );
        let r = server
            .put(
                "/api/v1/settings/notifications",
                &a.token,
                r#"{"do_not_disturb":false}"#,
            )
            .await;
        assert_eq!(
            r.json(),
            json!({"muted_chats": ["c1", "c2"], "do_not_disturb": false})
        );
        assert!(!server.state.accounts.store().notifications_allowed(1, "c1"));
        assert!(server.state.accounts.store().notifications_allowed(1, "c3"));
        assert_eq!(
            server
                .get("/api/v1/settings/notifications", &a.token)
                .await
                .json()["muted_chats"],
            json!(["c1", "c2"])
        );
        server
            .put(
                "/api/v1/settings/notifications",
                &a.token,
                r#"{"do_not_disturb":"yes"}"#,
            )
            .await
            .assert_error(400, "invalid_request");
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_the_json_error_shape() {
    bounded(async {
        let server = TestServer::start(|c| c.body_bytes_max = 70 * 1024).await;
        let a = server.login("+15550000001").await;
        for body in [
            "{",
            "[]",
            r#"{"phone_numbers":"+15550000001"}"#,
            r#"{"phone_numbers":[1]}"#,
            "",
        ] {
            server
                .post("/api/v1/contacts", Some(&a.token), body)
                .await
                .assert_error(400, "invalid_request");
        }
        // Missing content type.
        let r = common::raw_request(
            server.addr,
            "POST",
            "/api/v1/auth/verify-phone",
            &[],
            Some(br#"{"phone_number":"+15550000001"}"#),
        )
        .await;
        r.assert_error(400, "invalid_request");
        // Over the body limit.
        let big =
            json!({"phone_numbers": ["+15550000001"], "pad": "x".repeat(80 * 1024)}).to_string();
        server
            .post("/api/v1/contacts", Some(&a.token), &big)
            .await
            .assert_error(413, "payload_too_large");
        server
            .get("/api/v1/no/such/thing", &a.token)
            .await
            .assert_error(404, "not_found");
        server
            .request("PATCH", "/api/v1/users/me", Some(&a.token), None)
            .await
            .assert_error(405, "method_not_allowed");
        // The server keeps serving.
        assert_eq!(server.get("/api/v1/users/me", &a.token).await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn healthz_and_metrics() {
    bounded(async {
        let server = TestServer::default().await;
        let r = server.request("GET", "/healthz", None, None).await;
        assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
        server.login("+15550000001").await;
        let r = server.request("GET", "/metrics", None, None).await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        assert!(
            r.body
                .contains("# TYPE missive_http_responses_total counter")
        );
        assert!(
            r.body
                .contains("missive_http_responses_total{class=\"2xx\"}")
        );
        assert!(r.body.contains("missive_users_registered 1"));
        assert!(r.body.contains("missive_ws_connections 0"));
    })
    .await;
}
