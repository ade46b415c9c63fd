//! Rate limits over real HTTP: per IP address, per user, and for phone verification per IP —
//! each refusal is `429 rate_limited` with `Retry-After`, and other keys are unaffected.

mod common;

use common::{TestServer, bounded};

#[tokio::test]
async fn per_ip_limit() {
    bounded(async {
        let server = TestServer::start(|c| {
            c.ip_requests_per_s = 1;
            c.ip_requests_burst = 5;
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..7 {
            let r = server.request("GET", "/api/v1/users/me", None, None).await;
            statuses.push(r.status);
            if r.status == 429 {
                r.assert_error(429, "rate_limited");
                let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=2).contains(&after));
            }
        }
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
        // Unknown paths count too (no free scanning)...
        server
            .request("GET", "/no/such/path", None, None)
            .await
            .assert_error(429, "rate_limited");
        // ...but health checks and metrics scrapes do not.
        assert_eq!(
            server.request("GET", "/healthz", None, None).await.status,
            200
        );
    })
    .await;
}

#[tokio::test]
async fn per_user_limit() {
    bounded(async {
        let server = TestServer::start(|c| {
            c.user_requests_per_s = 1;
            c.user_requests_burst = 3;
        })
        .await;
        let a = server.login("+15550000001").await;
        let b = server.login("+15550000002").await;
        let statuses: Vec<u16> = {
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(server.get("/api/v1/users/me", &a.token).await.status);
            }
            v
        };
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
        server
            .get("/api/v1/users/me", &a.token)
            .await
            .assert_error(429, "rate_limited");
        // Another user (same IP) is unaffected.
        assert_eq!(server.get("/api/v1/users/me", &b.token).await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn verification_calls_are_limited_per_ip() {
    bounded(async {
        let server = TestServer::start(|c| c.verify_per_ip_per_min = 3).await;
        let mut statuses = Vec::new();
        for i in 0..5 {
            let body = format!(r#"{{"phone_number":"+1555000000{i}"}}"#);
            statuses.push(
                server
                    .post("/api/v1/auth/verify-phone", None, &body)
                    .await
                    .status,
            );
        }
        assert_eq!(statuses, [202, 202, 202, 429, 429]);
    })
    .await;
}
