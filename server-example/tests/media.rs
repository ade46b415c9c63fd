//! Media over real HTTP: raw and multipart uploads, MIME sniffed from the bytes (a lying
//! Content-Type is ignored), identical bytes stored once, the size limit (413, streamed
//! uploads refused without buffering, a truncated upload leaves nothing), a tus upload cut off
//! and resumed to the right hash, thumbnails and previews of the right size, Range requests
//! (206, suffix, 416), caching headers, access through chat grants, and the retention sweep.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Session, TestServer, bounded};
use missive_server::media::{self, Media, MediaConfig};
use missive_server::time::{Clock, ManualClock};
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---- a binary-safe HTTP/1.1 client ------------------------------------------------------------

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.json()["error"]["code"], code, "{}", self.text());
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut data = &body[..];
        let mut out = Vec::new();
        while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
            data = &data[eol + 2 + size + 2..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn head_text(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, String)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// One request on a fresh connection; the body (if any) gets a Content-Length.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> Reply {
    let mut headers = headers.to_vec();
    if let Some(b) = body {
        headers.push(("content-length", b.len().to_string()));
    }
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(head_text(addr, method, path, &headers).as_bytes())
        .await
        .unwrap();
    if let Some(b) = body {
        let _ = stream.write_all(b).await;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse_reply(&raw)
}

/// Sends the head and only `sent` of the body, then closes the connection.
async fn cut_off(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    sent: &[u8],
) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(head_text(addr, method, path, headers).as_bytes())
        .await
        .unwrap();
    stream.write_all(sent).await.unwrap();
    stream.flush().await.unwrap();
    // Let the server read what was sent before the connection goes away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
}

fn bearer(who: &Session) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", who.token))
}

// ---- the world --------------------------------------------------------------------------------

struct World {
    server: TestServer,
    media: Media,
    clock: Arc<ManualClock>,
    /// (user, chat) pairs the membership checker answers `true` for.
    members: Arc<Mutex<HashSet<(u64, String)>>>,
}

impl World {
    async fn new(config: MediaConfig) -> World {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let members: Arc<Mutex<HashSet<(u64, String)>>> = Arc::default();
        let mut slot = None;
        let server = {
            let members = members.clone();
            let clock = clock.clone();
            TestServer::start_with(
                // The app's own media and story sweeps run by the system clock over the same
                // data directory as this test's `Media` (a hand-driven clock in 2023): they
                // would take the test's uploads for long expired and remove them.
                |c| {
                    c.media_sweep_interval = None;
                    c.story_sweep_interval = None;
                },
                |mut app| {
                    let access = move |user: u64, chat: &str| {
                        members.lock().contains(&(user, chat.to_owned()))
                    };
                    let media = Media::open(
                        &app.state().config.data_dir.clone(),
                        config,
                        Arc::new(access),
                        clock,
                    )
                    .unwrap();
                    app.set_routes(media::router(media.clone()));
                    slot = Some(media);
                    app
                },
            )
            .await
        };
        World {
            server,
            media: slot.unwrap(),
            clock,
            members,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    async fn upload(&self, who: &Session, content_type: &str, bytes: &[u8]) -> Value {
        self.upload_to(who, "/api/v1/media/upload", content_type, bytes)
            .await
    }

    async fn upload_to(
        &self,
        who: &Session,
        path: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Value {
        let r = http(
            self.addr(),
            "POST",
            path,
            &[bearer(who), ("content-type", content_type.to_owned())],
            Some(bytes),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    async fn get(&self, who: &Session, path: &str, extra: &[(&str, String)]) -> Reply {
        let mut headers = vec![bearer(who)];
        headers.extend_from_slice(extra);
        http(self.addr(), "GET", path, &headers, None).await
    }

    fn tmp_files(&self) -> usize {
        std::fs::read_dir(self.media.store().tmp_dir())
            .unwrap()
            .count()
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 99])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic bytes that no magic number matches.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i < 4 { 0 } else { x as u8 }
        })
        .collect()
}

fn decoded_size(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("a decodable image");
    (img.width(), img.height())
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn raw_and_multipart_uploads_sniff_the_type_and_store_identical_bytes_once() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        let image = png(64, 48);

        // The client says text/plain; the bytes say PNG.
        let a = w.upload(&alice, "text/plain", &image).await;
        assert_eq!(a["mime"], "image/png");
        assert_eq!(a["size"], image.len());
        assert_eq!(a["sha256"], sha256_hex(&image));
        assert_eq!(a["variants"], serde_json::json!(["original", "preview", "thumbnail"]));

        // The same bytes as multipart, with a file name and a metadata field.
        let boundary = "XyZzY";
        let mut form = Vec::new();
        form.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"duration_ms\"\r\n\r\n0\r\n")
                .as_bytes(),
        );
        form.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\n\
                 Content-Type: application/pdf\r\n\r\n"
            )
            .as_bytes(),
        );
        form.extend_from_slice(&image);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let b = w
            .upload(&alice, &format!("multipart/form-data; boundary={boundary}"), &form)
            .await;
        assert_eq!(b["mime"], "image/png");
        assert_eq!(b["sha256"], a["sha256"]);
        assert_eq!(b["file_name"], "cat.png");
        assert_ne!(b["media_id"], a["media_id"], "each upload is its own media item");
        assert_eq!(w.media.store().blob_files().unwrap(), 1, "one blob for both");

        // Bytes that claim to be an image but are not.
        let c = w.upload(&alice, "image/png", &noise(3000)).await;
        assert_eq!(c["mime"], "application/octet-stream");
        assert_eq!(c["variants"], serde_json::json!(["original"]));

        // A voice note with client metadata.
        let mut ogg = b"OggS\0\x02".to_vec();
        ogg.extend(noise(500));
        let d = w
            .upload_to(
                &alice,
                "/api/v1/media/upload?duration_ms=4200&file_name=voice.ogg",
                "audio/mpeg",
                &ogg,
            )
            .await;
        assert_eq!(d["mime"], "audio/ogg");
        assert_eq!(d["duration_ms"], 4200);
        assert_eq!(d["file_name"], "voice.ogg");
        assert_eq!(w.media.store().blob_files().unwrap(), 3);

        // Download: bytes, type and caching headers.
        let id = a["media_id"].as_str().unwrap();
        let r = w.get(&alice, &format!("/api/v1/media/{id}"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, image);
        assert_eq!(r.header("content-type"), Some("image/png"));
        let etag = format!("\"{}\"", sha256_hex(&image));
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        let cache = r.header("cache-control").unwrap();
        assert!(cache.contains("private") && cache.contains("immutable") && cache.contains("max-age="));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let r = w
            .get(&alice, &format!("/api/v1/media/{id}"), &[("if-none-match", etag.clone())])
            .await;
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        let r = w.get(&alice, &format!("/api/v1/media/{}", c["media_id"].as_str().unwrap()), &[]).await;
        assert_eq!(r.header("content-disposition"), Some("attachment"));

        // Bad requests.
        let r = http(w.addr(), "POST", "/api/v1/media/upload", &[bearer(&alice)], Some(b"")).await;
        r.assert_error(400, "invalid_request");
        let r = http(
            w.addr(),
            "POST",
            "/api/v1/media/upload",
            &[bearer(&alice), ("content-type", format!("multipart/form-data; boundary={boundary}"))],
            Some(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--{boundary}--\r\n").as_bytes()),
        )
        .await;
        r.assert_error(400, "invalid_request");
        let r = http(w.addr(), "POST", "/api/v1/media/upload", &[], Some(b"abc")).await;
        r.assert_error(401, "unauthorized");
        assert_eq!(w.tmp_files(), 0);
    })
    .await;
}

#[tokio::test]
async fn thumbnails_and_previews_fit_their_boxes() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        let wide = w.upload(&alice, "image/png", &png(1000, 500)).await;
        let id = wide["media_id"].as_str().unwrap();
        let r = w
            .get(
                &alice,
                &format!("/api/v1/media/{id}?variant=thumbnail"),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        assert_eq!(decoded_size(&r.body), (150, 75));
        let r = w
            .get(&alice, &format!("/api/v1/media/{id}?variant=preview"), &[])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(decoded_size(&r.body), (640, 320));
        let etag = r.header("etag").unwrap().to_owned();
        assert!(etag.contains("preview"), "{etag}");
        let info = w
            .get(&alice, &format!("/api/v1/media/{id}/info"), &[])
            .await
            .json();
        assert_eq!(
            (info["width"].as_u64(), info["height"].as_u64()),
            (Some(1000), Some(500))
        );

        let tall = w.upload(&alice, "image/png", &png(300, 900)).await;
        let id = tall["media_id"].as_str().unwrap();
        let r = w
            .get(
                &alice,
                &format!("/api/v1/media/{id}?variant=thumbnail"),
                &[],
            )
            .await;
        assert_eq!(decoded_size(&r.body), (50, 150));
        let r = w
            .get(&alice, &format!("/api/v1/media/{id}?variant=preview"), &[])
            .await;
        assert_eq!(decoded_size(&r.body), (213, 640));

        // Small images are not enlarged.
        let small = w.upload(&alice, "image/png", &png(100, 40)).await;
        let id = small["media_id"].as_str().unwrap();
        let r = w
            .get(&alice, &format!("/api/v1/media/{id}?variant=preview"), &[])
            .await;
        assert_eq!(decoded_size(&r.body), (100, 40));

        // Non-images have no variants; unknown variants are refused.
        let doc = w.upload(&alice, "application/pdf", &noise(100)).await;
        let id = doc["media_id"].as_str().unwrap();
        w.get(
            &alice,
            &format!("/api/v1/media/{id}?variant=thumbnail"),
            &[],
        )
        .await
        .assert_error(404, "not_found");
        w.get(&alice, &format!("/api/v1/media/{id}?variant=huge"), &[])
            .await
            .assert_error(400, "invalid_request");
    })
    .await;
}

#[tokio::test]
async fn range_requests() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        let data = noise(1000);
        let id = w.upload(&alice, "application/octet-stream", &data).await["media_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/api/v1/media/{id}");
        let range = |spec: &str| vec![("range", spec.to_owned())];

        let r = w.get(&alice, &path, &range("bytes=0-9")).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[..10]);
        assert_eq!(r.header("content-range"), Some("bytes 0-9/1000"));
        assert_eq!(r.header("content-length"), Some("10"));

        let r = w.get(&alice, &path, &range("bytes=-10")).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[990..]);
        assert_eq!(r.header("content-range"), Some("bytes 990-999/1000"));

        let r = w.get(&alice, &path, &range("bytes=500-")).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[500..]);

        let r = w.get(&alice, &path, &range("bytes=1000-")).await;
        r.assert_error(416, "range_not_satisfiable");
        assert_eq!(r.header("content-range"), Some("bytes */1000"));

        // Several ranges, or an If-Range for other bytes: the whole thing.
        let r = w.get(&alice, &path, &range("bytes=0-1,5-6")).await;
        assert_eq!((r.status, r.body.len()), (200, 1000));
        let mut headers = range("bytes=0-9");
        headers.push(("if-range", "\"stale\"".to_owned()));
        let r = w.get(&alice, &path, &headers).await;
        assert_eq!((r.status, r.body.len()), (200, 1000));
    })
    .await;
}

#[tokio::test]
async fn the_size_limit_is_enforced_while_streaming() {
    bounded(async {
        const LIMIT: u64 = 32 * 1024 * 1024;
        let w = World::new(MediaConfig {
            bytes_max: LIMIT,
            ..MediaConfig::default()
        })
        .await;
        let alice = w.server.login("+15550000001").await;

        // A declared length over the limit is refused before anything is read.
        let mut stream = TcpStream::connect(w.addr()).await.unwrap();
        let head = head_text(
            w.addr(),
            "POST",
            "/api/v1/media/upload",
            &[
                bearer(&alice),
                ("content-length", (200u64 << 20).to_string()),
            ],
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        let r = parse_reply(&raw);
        r.assert_error(413, "payload_too_large");

        // A chunked body of 64 MiB: streamed to disk until the limit, then refused, without
        // the server's memory growing by the size of the upload.
        let rss_before = rss_bytes();
        let stream = TcpStream::connect(w.addr()).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let head = head_text(
            w.addr(),
            "POST",
            "/api/v1/media/upload",
            &[bearer(&alice), ("transfer-encoding", "chunked".to_owned())],
        );
        let writer = tokio::spawn(async move {
            write.write_all(head.as_bytes()).await?;
            let chunk = vec![7u8; 64 * 1024];
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            for _ in 0..(64 * 1024 * 1024 / chunk.len()) {
                write.write_all(&framed).await?;
            }
            write.write_all(b"0\r\n\r\n").await
        });
        let mut raw = Vec::new();
        let _ = read.read_to_end(&mut raw).await;
        let _ = writer.await;
        if !raw.is_empty() {
            parse_reply(&raw).assert_error(413, "payload_too_large");
        }
        let grown = rss_bytes().saturating_sub(rss_before);
        assert!(
            grown < 16 * 1024 * 1024,
            "the server's memory grew by {grown} bytes"
        );
        wait_until(|| w.tmp_files() == 0).await;
        assert_eq!(w.media.store().blob_files().unwrap(), 0);

        // Exactly the limit is fine.
        let exact = vec![1u8; 1024];
        let small = World::new(MediaConfig {
            bytes_max: 1024,
            ..MediaConfig::default()
        })
        .await;
        let bob = small.server.login("+15550000002").await;
        small.upload(&bob, "application/octet-stream", &exact).await;
        let r = http(
            small.addr(),
            "POST",
            "/api/v1/media/upload",
            &[bearer(&bob)],
            Some(&[1u8; 1025]),
        )
        .await;
        r.assert_error(413, "payload_too_large");
    })
    .await;
}

/// Resident memory of this process (the server runs in it).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the condition did not hold within 5 s");
}

#[tokio::test]
async fn a_truncated_upload_leaves_nothing_behind() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        cut_off(
            w.addr(),
            "POST",
            "/api/v1/media/upload",
            &[bearer(&alice), ("content-length", (1 << 20).to_string())],
            &noise(300 * 1024),
        )
        .await;
        wait_until(|| w.tmp_files() == 0).await;
        assert_eq!(w.media.store().blob_files().unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_tus_upload_resumes_after_a_dropped_connection() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        let mallory = w.server.login("+15550000009").await;
        let tus = || ("tus-resumable", "1.0.0".to_owned());

        let r = http(w.addr(), "OPTIONS", "/api/v1/media/tus", &[], None).await;
        assert_eq!(r.status, 204);
        assert_eq!(r.header("tus-version"), Some("1.0.0"));
        assert_eq!(
            r.header("tus-extension"),
            Some("creation,termination,checksum")
        );
        assert_eq!(r.header("tus-max-size"), Some("104857600"));

        let mut data = png(300, 200);
        data.extend(noise(3 * 1024 * 1024));
        let len = data.len();
        // "cat.png" and "1500" in base64.
        let r = http(
            w.addr(),
            "POST",
            "/api/v1/media/tus",
            &[
                bearer(&alice),
                tus(),
                ("upload-length", len.to_string()),
                (
                    "upload-metadata",
                    "filename Y2F0LnBuZw==,duration_ms MTUwMA==".to_owned(),
                ),
            ],
            None,
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
        let location = r.header("location").unwrap().to_owned();
        let upload_id = location.rsplit('/').next().unwrap().to_owned();

        // Refusals: no Tus-Resumable, another user, wrong content type, wrong offset.
        let r = http(w.addr(), "HEAD", &location, &[bearer(&alice)], None).await;
        assert_eq!(r.status, 412);
        let r = http(
            w.addr(),
            "HEAD",
            &location,
            &[bearer(&mallory), tus()],
            None,
        )
        .await;
        assert_eq!(r.status, 404);
        let patch_headers = |offset: usize| {
            vec![
                bearer(&alice),
                tus(),
                ("content-type", "application/offset+octet-stream".to_owned()),
                ("upload-offset", offset.to_string()),
            ]
        };
        let mut wrong_type = patch_headers(0);
        wrong_type[2].1 = "application/octet-stream".into();
        let r = http(w.addr(), "PATCH", &location, &wrong_type, Some(b"x")).await;
        r.assert_error(415, "unsupported_media_type");
        let r = http(w.addr(), "PATCH", &location, &patch_headers(5), Some(b"x")).await;
        r.assert_error(409, "conflict");

        // The first PATCH announces everything but the connection drops after 1 MiB + a bit.
        let sent = 1024 * 1024 + 12_345;
        let mut headers = patch_headers(0);
        headers.push(("content-length", len.to_string()));
        cut_off(w.addr(), "PATCH", &location, &headers, &data[..sent]).await;

        // Resume from wherever the server says, as a tus client does.
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 200, "the upload did not resume");
            let r = http(w.addr(), "HEAD", &location, &[bearer(&alice), tus()], None).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.header("upload-length"), Some(len.to_string().as_str()));
            assert_eq!(r.header("cache-control"), Some("no-store"));
            let offset: usize = r.header("upload-offset").unwrap().parse().unwrap();
            assert!(offset <= sent);
            if offset == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // A chunk with a wrong checksum is refused and changes nothing.
            let mut bad = patch_headers(offset);
            bad.push((
                "upload-checksum",
                "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
            ));
            let r = http(
                w.addr(),
                "PATCH",
                &location,
                &bad,
                Some(&data[offset..offset + 10]),
            )
            .await;
            if r.status == 409 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            assert_eq!(r.status, 460, "{}", r.text());
            let r = http(
                w.addr(),
                "PATCH",
                &location,
                &patch_headers(offset),
                Some(&data[offset..]),
            )
            .await;
            assert_eq!(r.status, 204, "{}", r.text());
            assert_eq!(r.header("upload-offset"), Some(len.to_string().as_str()));
            assert_eq!(r.header("media-id"), Some(upload_id.as_str()));
            break;
        }

        let info = w
            .get(&alice, &format!("/api/v1/media/{upload_id}/info"), &[])
            .await;
        assert_eq!(info.status, 200, "{}", info.text());
        let info = info.json();
        assert_eq!(info["sha256"], sha256_hex(&data));
        assert_eq!(info["size"], len);
        assert_eq!(info["mime"], "image/png");
        assert_eq!(info["file_name"], "cat.png");
        assert_eq!(info["duration_ms"], 1500);
        let r = w
            .get(&alice, &format!("/api/v1/media/{upload_id}"), &[])
            .await;
        assert!(r.body == data, "the downloaded bytes are the uploaded ones");
        let r = http(w.addr(), "HEAD", &location, &[bearer(&alice), tus()], None).await;
        assert_eq!(r.header("media-id"), Some(upload_id.as_str()));
        assert!(
            !w.media.store().tus_path(&upload_id).exists(),
            "moved into the blob store"
        );
    })
    .await;
}

#[tokio::test]
async fn tus_checksums_and_termination() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        let tus = || ("tus-resumable", "1.0.0".to_owned());
        let create = || async {
            let r = http(
                w.addr(),
                "POST",
                "/api/v1/media/tus",
                &[bearer(&alice), tus(), ("upload-length", "10".to_owned())],
                None,
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());
            r.header("location").unwrap().to_owned()
        };
        let location = create().await;
        let patch = |offset: usize, checksum: Option<&str>| {
            let mut h = vec![
                bearer(&alice),
                tus(),
                ("content-type", "application/offset+octet-stream".to_owned()),
                ("upload-offset", offset.to_string()),
            ];
            if let Some(c) = checksum {
                h.push(("upload-checksum", c.to_owned()));
            }
            h
        };
        // sha256 of "hello" is LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=.
        let r = http(
            w.addr(),
            "PATCH",
            &location,
            &patch(
                0,
                Some("sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="),
            ),
            Some(b"hello"),
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.text());
        assert_eq!(r.header("upload-offset"), Some("5"));
        let r = http(
            w.addr(),
            "PATCH",
            &location,
            &patch(5, Some("md5 AAAA")),
            Some(b"world"),
        )
        .await;
        r.assert_error(400, "invalid_request");
        let r = http(
            w.addr(),
            "PATCH",
            &location,
            &patch(5, None),
            Some(b"world!"),
        )
        .await;
        r.assert_error(413, "payload_too_large");

        let r = http(
            w.addr(),
            "DELETE",
            &location,
            &[bearer(&alice), tus()],
            None,
        )
        .await;
        assert_eq!(r.status, 204);
        let r = http(w.addr(), "HEAD", &location, &[bearer(&alice), tus()], None).await;
        assert_eq!(r.status, 404);

        // The declared length is checked against the limit, and unfinished uploads expire.
        let r = http(
            w.addr(),
            "POST",
            "/api/v1/media/tus",
            &[
                bearer(&alice),
                tus(),
                ("upload-length", (101u64 << 20).to_string()),
            ],
            None,
        )
        .await;
        r.assert_error(413, "payload_too_large");
        let location = create().await;
        w.clock.advance_ms(w.media.config().tus_expiry_ms);
        let report = w.media.sweep(w.clock.now_ms()).unwrap();
        assert_eq!(report.uploads_expired, 1);
        let r = http(w.addr(), "HEAD", &location, &[bearer(&alice), tus()], None).await;
        assert_eq!(r.status, 404);
        assert_eq!(
            std::fs::read_dir(w.media.store().tus_dir())
                .unwrap()
                .count(),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn only_the_uploader_and_members_of_granted_chats_read_media() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        let bob = w.server.login("+15550000002").await;
        let carol = w.server.login("+15550000003").await;
        let data = noise(2048);
        let id = w.upload(&alice, "application/octet-stream", &data).await["media_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/api/v1/media/{id}");

        w.get(&bob, &path, &[]).await.assert_error(403, "forbidden");
        w.get(&bob, &format!("{path}/info"), &[])
            .await
            .assert_error(403, "forbidden");
        w.get(&bob, "/api/v1/media/0123456789abcdef0123456789abcdef", &[])
            .await
            .assert_error(404, "not_found");
        http(w.addr(), "GET", &path, &[], None)
            .await
            .assert_error(401, "unauthorized");

        // The message carrying the media is sent in chat "c1", where bob is a member.
        let bob_id: u64 = bob.user_id.parse().unwrap();
        w.members.lock().insert((bob_id, "c1".into()));
        let expires = w.clock.now_ms() + 3_600_000;
        w.media.grant_until(&id, "c1", Some(expires)).unwrap();
        let r = w.get(&bob, &path, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, data);
        w.get(&carol, &path, &[])
            .await
            .assert_error(403, "forbidden");

        // Leaving the chat ends access; so does the message's expiry.
        w.members.lock().clear();
        w.get(&bob, &path, &[]).await.assert_error(403, "forbidden");
        w.members.lock().insert((bob_id, "c1".into()));
        w.clock.advance_ms(3_600_000);
        w.get(&bob, &path, &[]).await.assert_error(403, "forbidden");
        assert_eq!(w.get(&alice, &path, &[]).await.status, 200);

        // A grant for an unknown media id is an error; revoking works.
        assert!(
            w.media
                .grant("ffffffffffffffffffffffffffffffff", "c1")
                .is_err()
        );
        w.media.grant(&id, "c1").unwrap();
        assert_eq!(w.get(&bob, &path, &[]).await.status, 200);
        w.media.revoke(&id, "c1").unwrap();
        w.get(&bob, &path, &[]).await.assert_error(403, "forbidden");
    })
    .await;
}

#[tokio::test]
async fn the_sweep_removes_media_no_live_message_references() {
    bounded(async {
        let w = World::new(MediaConfig::default()).await;
        let alice = w.server.login("+15550000001").await;
        let grace = w.media.config().orphan_grace_ms;
        let never_sent = w.upload(&alice, "x/y", &noise(100)).await;
        let expiring = w.upload(&alice, "x/y", &noise(200)).await;
        let kept = w.upload(&alice, "x/y", &noise(300)).await;
        let same_bytes = w.upload(&alice, "x/y", &noise(300)).await;
        let id = |v: &Value| v["media_id"].as_str().unwrap().to_owned();
        w.media
            .grant_until(
                &id(&expiring),
                "c1",
                Some(w.clock.now_ms() + grace + 3_600_000),
            )
            .unwrap();
        w.media.grant(&id(&kept), "c2").unwrap();
        assert_eq!(w.media.store().blob_files().unwrap(), 3);

        // Within the grace period an unsent upload survives.
        let report = w.media.sweep(w.clock.now_ms()).unwrap();
        assert_eq!(report.media_removed, 0);

        w.clock.advance_ms(grace);
        let report = w.media.sweep(w.clock.now_ms()).unwrap();
        assert_eq!((report.media_removed, report.blobs_removed), (2, 1));
        assert_eq!(report.bytes_freed, 100);
        let status = |v: &Value| {
            let path = format!("/api/v1/media/{}/info", id(v));
            let w = &w;
            let alice = &alice;
            async move { w.get(alice, &path, &[]).await.status }
        };
        assert_eq!(status(&never_sent).await, 404);
        assert_eq!(status(&same_bytes).await, 404);
        assert_eq!(
            status(&kept).await,
            200,
            "its blob is shared and still referenced"
        );
        assert_eq!(status(&expiring).await, 200);
        assert_eq!(w.media.store().blob_files().unwrap(), 2);

        w.clock.advance_ms(3_600_000);
        let report = w.media.sweep(w.clock.now_ms()).unwrap();
        assert_eq!(
            (
                report.grants_expired,
                report.media_removed,
                report.blobs_removed
            ),
            (1, 1, 1)
        );
        assert_eq!(status(&expiring).await, 404);
        assert_eq!(status(&kept).await, 200);
        assert_eq!(w.media.store().blob_files().unwrap(), 1);
    })
    .await;
}
