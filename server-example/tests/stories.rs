//! Stories over real HTTP with a hand-driven clock: visible to the author's contacts and to
//! nobody else (blocks included), view receipts for the author only, gone after 24 hours, and
//! media stories readable by the audience only while they live.

mod common;

use std::sync::Arc;

use common::{Session, TestServer, bounded, raw_request};
use missive_server::media::{self, Media, MediaConfig, NoChats};
use missive_server::stories::{self, Stories, StoriesConfig, StoryStore};
use missive_server::time::ManualClock;
use serde_json::{Value, json};

const DAY_MS: u64 = 24 * 3600 * 1000;

struct World {
    server: TestServer,
    clock: Arc<ManualClock>,
    stories: Stories,
}

async fn world() -> World {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut slot = None;
    let server = TestServer::start_with(
        // The app's own media and story sweeps run by the system clock over the same data
        // directory as this test's `Media` and `Stories` (a hand-driven clock in 2023): they
        // would take the test's stories and uploads for long expired and remove them.
        |c| {
            c.media_sweep_interval = None;
            c.story_sweep_interval = None;
        },
        |mut app| {
            let dir = app.state().config.data_dir.clone();
            let media = Media::open(
                &dir,
                MediaConfig::default(),
                Arc::new(NoChats),
                clock.clone(),
            )
            .unwrap();
            let stories = Stories::new(
                StoryStore::open(&dir.join(stories::STORIES_FILE)).unwrap(),
                clock.clone(),
                StoriesConfig::default(),
                Some(media.clone()),
            );
            app.set_routes(media::router(media));
            app.add_routes(stories::router(stories.clone()));
            slot = Some(stories);
            app
        },
    )
    .await;
    World {
        server,
        clock,
        stories: slot.unwrap(),
    }
}

async fn add_contacts(server: &TestServer, owner: &Session, phones: &[&str]) {
    let r = server
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            &json!({ "phone_numbers": phones }).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn post_story(server: &TestServer, who: &Session, body: Value) -> Value {
    let r = server
        .post("/api/v1/stories", Some(&who.token), &body.to_string())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

async fn story_ids(server: &TestServer, who: &Session) -> Vec<String> {
    let r = server.get("/api/v1/stories", &who.token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["stories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["story_id"].as_str().unwrap().to_owned())
        .collect()
}

/// alice (author) has bob and carol in her contacts; dave has alice in his, not the reverse.
async fn cast(server: &TestServer) -> [Session; 4] {
    let alice = server.login("+15550000001").await;
    let bob = server.login("+15550000002").await;
    let carol = server.login("+15550000003").await;
    let dave = server.login("+15550000004").await;
    add_contacts(server, &alice, &["+15550000002", "+15550000003"]).await;
    add_contacts(server, &dave, &["+15550000001"]).await;
    [alice, bob, carol, dave]
}

#[tokio::test]
async fn stories_are_visible_to_the_authors_contacts_only() {
    bounded(async {
        let w = world().await;
        let server = &w.server;
        let [alice, bob, carol, dave] = cast(server).await;
        let story = post_story(
            server,
            &alice,
            json!({"message_type": "text", "content": "b64-ciphertext"}),
        )
        .await;
        let id = story["story_id"].as_str().unwrap().to_owned();
        assert_eq!(story["author_id"], alice.user_id.as_str());
        assert_eq!(story["content"], "b64-ciphertext");
        assert!(story["expires_at"].as_str().unwrap().ends_with('Z'));

        assert_eq!(
            story_ids(server, &alice).await,
            vec![id.clone()],
            "own stories"
        );
        assert_eq!(story_ids(server, &bob).await, vec![id.clone()]);
        assert_eq!(story_ids(server, &carol).await, vec![id.clone()]);
        assert!(
            story_ids(server, &dave).await.is_empty(),
            "not in alice's contacts"
        );
        let r = server.get("/api/v1/stories", &bob.token).await.json();
        assert_eq!(r["stories"][0]["viewed"], false);
        assert_eq!(r["stories"][0]["message_type"], "text");

        // Dave cannot view it or even see that it exists.
        server
            .post(
                &format!("/api/v1/stories/{id}/views"),
                Some(&dave.token),
                "",
            )
            .await
            .assert_error(404, "not_found");

        // A block either way hides it.
        let r = server
            .put(
                &format!("/api/v1/contacts/{}/block", alice.user_id),
                &carol.token,
                "",
            )
            .await;
        assert!(r.status < 300, "{}", r.body);
        assert!(story_ids(server, &carol).await.is_empty());
        let r = server
            .put(
                &format!("/api/v1/contacts/{}/block", bob.user_id),
                &alice.token,
                "",
            )
            .await;
        assert!(r.status < 300, "{}", r.body);
        assert!(story_ids(server, &bob).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn view_receipts_are_for_the_author_only() {
    bounded(async {
        let w = world().await;
        let server = &w.server;
        let [alice, bob, carol, dave] = cast(server).await;
        let id = post_story(
            server,
            &alice,
            json!({"message_type": "text", "content": "x"}),
        )
        .await["story_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let views = format!("/api/v1/stories/{id}/views");
        for who in [&bob, &bob, &carol, &alice] {
            let r = server.post(&views, Some(&who.token), "").await;
            assert_eq!(r.status, 204, "{}", r.body);
            w.clock.advance_ms(1000);
        }
        let r = server.get(&views, &alice.token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(
            v["count"], 2,
            "a viewer counts once; the author not at all: {v}"
        );
        assert_eq!(v["views"][0]["user_id"], bob.user_id.as_str());
        assert_eq!(v["views"][1]["user_id"], carol.user_id.as_str());
        assert!(v["views"][0]["viewed_at"].as_str().unwrap().ends_with('Z'));

        server
            .get(&views, &bob.token)
            .await
            .assert_error(403, "forbidden");
        server
            .get(&views, &dave.token)
            .await
            .assert_error(404, "not_found");
        let r = server.get("/api/v1/stories", &bob.token).await.json();
        assert_eq!(r["stories"][0]["viewed"], true);
        let r = server.get("/api/v1/stories", &carol.token).await.json();
        assert_eq!(r["stories"][0]["viewed"], true);
    })
    .await;
}

#[tokio::test]
async fn stories_are_gone_after_24_hours() {
    bounded(async {
        let w = world().await;
        let server = &w.server;
        let [alice, bob, ..] = cast(server).await;
        let id = post_story(
            server,
            &alice,
            json!({"message_type": "text", "content": "x"}),
        )
        .await["story_id"]
            .as_str()
            .unwrap()
            .to_owned();
        w.clock.advance_ms(DAY_MS - 1);
        assert_eq!(story_ids(server, &bob).await, vec![id.clone()]);
        w.clock.advance_ms(1);
        assert!(story_ids(server, &bob).await.is_empty());
        assert!(story_ids(server, &alice).await.is_empty());
        let views = format!("/api/v1/stories/{id}/views");
        server
            .post(&views, Some(&bob.token), "")
            .await
            .assert_error(404, "not_found");
        server
            .get(&views, &alice.token)
            .await
            .assert_error(404, "not_found");
        // The sweep deletes what expired (and only that).
        post_story(
            server,
            &alice,
            json!({"message_type": "text", "content": "new"}),
        )
        .await;
        use missive_server::time::Clock;
        assert_eq!(w.stories.sweep(w.clock.now_ms()).unwrap(), 1);
        assert_eq!(story_ids(server, &bob).await.len(), 1);
    })
    .await;
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(server: &TestServer, who: &Session, bytes: &[u8]) -> String {
    let headers = [
        ("authorization".to_string(), format!("Bearer {}", who.token)),
        (
            "content-type".to_string(),
            "application/octet-stream".to_string(),
        ),
    ];
    let r = raw_request(
        server.addr,
        "POST",
        "/api/v1/media/upload",
        &headers,
        Some(bytes),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["media_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn media_stories_are_readable_by_the_audience_while_they_live() {
    bounded(async {
        let w = world().await;
        let server = &w.server;
        let [alice, bob, _carol, dave] = cast(server).await;
        let media_id = upload(server, &alice, &png(40, 30)).await;
        let info = format!("/api/v1/media/{media_id}/info");
        server
            .get(&info, &bob.token)
            .await
            .assert_error(403, "forbidden");

        // Refusals first: wrong kind, missing or foreign media, bad types.
        for (body, status) in [
            (json!({"message_type": "video", "media_id": media_id}), 400),
            (json!({"message_type": "image"}), 400),
            (
                json!({"message_type": "text", "content": "x", "media_id": media_id}),
                400,
            ),
            (json!({"message_type": "text", "content": ""}), 400),
            (
                json!({"message_type": "document", "media_id": media_id}),
                400,
            ),
            (json!({"message_type": "image", "media_id": "00"}), 404),
        ] {
            let r = server
                .post("/api/v1/stories", Some(&alice.token), &body.to_string())
                .await;
            assert_eq!(r.status, status, "{body}: {}", r.body);
        }
        let r = server
            .post(
                "/api/v1/stories",
                Some(&bob.token),
                &json!({"message_type": "image", "media_id": media_id}).to_string(),
            )
            .await;
        r.assert_error(403, "forbidden");

        let story = post_story(
            server,
            &alice,
            json!({"message_type": "image", "media_id": media_id, "content": "caption"}),
        )
        .await;
        assert_eq!(story["media_id"], media_id.as_str());
        let r = server.get(&info, &bob.token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["mime"], "image/png");
        server
            .get(&info, &dave.token)
            .await
            .assert_error(403, "forbidden");

        w.clock.advance_ms(DAY_MS);
        server
            .get(&info, &bob.token)
            .await
            .assert_error(403, "forbidden");
        assert_eq!(
            server.get(&info, &alice.token).await.status,
            200,
            "the uploader"
        );
    })
    .await;
}
