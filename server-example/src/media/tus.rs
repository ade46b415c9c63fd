//! Resumable uploads: the tus 1.0.0 protocol (core, creation, termination, checksum).
//!
//! ```text
//! POST   /api/v1/media/tus              Upload-Length, Upload-Metadata? → 201 Location: …/tus/{id}
//! HEAD   /api/v1/media/tus/{id}         → Upload-Offset, Upload-Length (Media-Id once complete)
//! PATCH  /api/v1/media/tus/{id}         Upload-Offset, Content-Type: application/offset+octet-stream,
//!                                       Upload-Checksum? → 204 Upload-Offset (Media-Id once complete)
//! DELETE /api/v1/media/tus/{id}         → 204
//! OPTIONS /api/v1/media/tus[/{id}]      → Tus-Version, Tus-Extension, Tus-Max-Size, …
//! ```
//!
//! Every request but `OPTIONS` carries `Tus-Resumable: 1.0.0` (else `412`) and a bearer
//! token; an upload is visible to its creator only (others get `404`). The bytes of a `PATCH`
//! are appended to `media/tus/{id}` as they arrive, in a task of its own: when the connection
//! drops, what arrived is flushed and fsynced and the offset recorded, so `HEAD` tells the
//! client where to resume. A `PATCH` with `Upload-Checksum` (`sha1` or `sha256`, base64) is
//! all or nothing: a mismatch (`460`) or a cut-short body leaves the offset where it was. One
//! `PATCH` per upload at a time (`409` otherwise). When the offset reaches `Upload-Length` the
//! file is hashed, sniffed and moved into the blob store exactly like a direct upload; the
//! media id is the upload id (also sent as `Media-Id`). Unfinished uploads expire after
//! `MediaConfig::tus_expiry_ms` (swept).
//!
//! `Upload-Metadata` keys understood: `filename` (or `file_name`, `name`) and `duration_ms`.

use std::io::{Seek, SeekFrom};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{head, post};
use axum::{Extension, Router};
use futures_util::StreamExt;

use super::routes::{ClientMeta, commit_file};
use super::store::{BlobWriter, Hasher, NewMedia, TusUpload, hash_file, sniff};
use super::{Media, new_id};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Path;

/// The protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";

/// The extensions served.
pub const TUS_EXTENSIONS: &str = "creation,termination,checksum";

/// The checksum algorithms accepted in `Upload-Checksum`.
pub const TUS_CHECKSUM_ALGORITHMS: &str = "sha1,sha256";

/// Longest `Upload-Metadata` header, in bytes.
const METADATA_BYTES_MAX: usize = 4096;

type TusResult = Result<Response, TusError>;

/// A refusal: boxed, since a `Response` is large and travels through every `?`.
struct TusError(Box<Response>);

impl From<Response> for TusError {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        *self.0
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/media/tus", post(create).options(options))
        .route(
            "/api/v1/media/tus/{upload_id}",
            head(offset)
                .patch(append)
                .delete(terminate)
                .options(options),
        )
        .layer(middleware::map_response(with_tus_resumable))
}

async fn with_tus_resumable(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

/// An error in the protocol's JSON shape with a status `ApiError` does not have.
fn tus_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

fn api(error: ApiError) -> TusError {
    error.into_response().into()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn number_header(headers: &HeaderMap, name: &str) -> Result<Option<u64>, TusError> {
    match header_str(headers, name) {
        None => Ok(None),
        Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse()
            .map(Some)
            .map_err(|_| api(ApiError::InvalidRequest(format!("{name} is too large")))),
        Some(_) => Err(api(ApiError::InvalidRequest(format!(
            "{name} must be a non-negative integer"
        )))),
    }
}

fn check_resumable(headers: &HeaderMap) -> Result<(), TusError> {
    if header_str(headers, "tus-resumable") == Some(TUS_VERSION) {
        return Ok(());
    }
    let mut response = tus_error(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!("send `Tus-Resumable: {TUS_VERSION}`"),
    );
    response
        .headers_mut()
        .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    Err(response.into())
}

/// Standard base64 (padding optional) to bytes.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Parses `Upload-Metadata`: `key base64value,key2 base64value2,flag`.
fn parse_metadata(text: &str) -> Result<ClientMeta, ApiError> {
    let bad = || ApiError::InvalidRequest("malformed Upload-Metadata".into());
    let mut meta = ClientMeta::default();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = match pair.split_once(' ') {
            Some((k, v)) => (k, base64_decode(v.trim()).ok_or_else(bad)?),
            None => (pair, Vec::new()),
        };
        let value = String::from_utf8(value).map_err(|_| bad())?;
        match key {
            "filename" | "file_name" | "name" => meta.file_name = Some(value),
            "duration_ms" => {
                meta.duration_ms = Some(value.trim().parse().map_err(|_| {
                    ApiError::InvalidRequest("duration_ms is a whole number".into())
                })?);
            }
            _ => {}
        }
    }
    meta.check()?;
    Ok(meta)
}

async fn options(Extension(media): Extension<Media>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(TUS_CHECKSUM_ALGORITHMS),
    );
    headers.insert("tus-max-size", HeaderValue::from(media.config().bytes_max));
    response
}

async fn create(Extension(media): Extension<Media>, auth: Auth, headers: HeaderMap) -> TusResult {
    check_resumable(&headers)?;
    if headers.contains_key("upload-defer-length") {
        return Err(api(ApiError::InvalidRequest(
            "Upload-Defer-Length is not supported: send Upload-Length".into(),
        )));
    }
    let length = number_header(&headers, "upload-length")?
        .ok_or_else(|| api(ApiError::InvalidRequest("Upload-Length is required".into())))?;
    let limit = media.config().bytes_max;
    if length > limit {
        return Err(api(ApiError::too_large("the upload", limit)));
    }
    if length == 0 {
        return Err(api(ApiError::InvalidRequest("the upload is empty".into())));
    }
    let metadata = header_str(&headers, "upload-metadata")
        .unwrap_or("")
        .to_owned();
    if metadata.len() > METADATA_BYTES_MAX {
        return Err(api(ApiError::InvalidRequest(format!(
            "Upload-Metadata is longer than {METADATA_BYTES_MAX} bytes"
        ))));
    }
    let meta = parse_metadata(&metadata).map_err(api)?;
    let store = media.store();
    let open = store.tus_open_count(auth.user_id).map_err(internal)?;
    let open_max = media.config().tus_uploads_per_user_max;
    if open >= open_max {
        return Err(api(ApiError::rate_limited(
            format!("at most {open_max} unfinished uploads; finish or delete one"),
            None,
        )));
    }
    let now = media.now_ms();
    let upload = TusUpload {
        upload_id: new_id(),
        owner_id: auth.user_id,
        length,
        offset: 0,
        metadata,
        file_name: meta.file_name,
        duration_ms: meta.duration_ms,
        created_at_ms: now,
        expires_at_ms: now + media.config().tus_expiry_ms,
        completed: false,
    };
    store.tus_create(&upload).map_err(internal)?;
    let location = format!("/api/v1/media/tus/{}", upload.upload_id);
    let mut response = StatusCode::CREATED.into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("hex ids are valid in a header"),
    );
    Ok(response)
}

fn internal(error: impl std::fmt::Display) -> TusError {
    api(ApiError::internal(error))
}

/// The caller's upload `upload_id`, or 404.
fn owned(media: &Media, auth: Auth, upload_id: &str) -> Result<TusUpload, TusError> {
    let not_found = || api(ApiError::NotFound("no such upload".into()));
    if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    match media.store().tus_upload(upload_id).map_err(internal)? {
        Some(upload) if upload.owner_id == auth.user_id => Ok(upload),
        _ => Err(not_found()),
    }
}

fn offset_response(status: StatusCode, upload: &TusUpload, offset: u64, done: bool) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert("upload-offset", HeaderValue::from(offset));
    headers.insert("upload-length", HeaderValue::from(upload.length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if done {
        headers.insert(
            "media-id",
            HeaderValue::from_str(&upload.upload_id).expect("hex ids are valid in a header"),
        );
    }
    response
}

async fn offset(
    Extension(media): Extension<Media>,
    auth: Auth,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
) -> TusResult {
    check_resumable(&headers)?;
    let upload = owned(&media, auth, &upload_id)?;
    let mut response = offset_response(StatusCode::OK, &upload, upload.offset, upload.completed);
    if !upload.metadata.is_empty()
        && let Ok(value) = HeaderValue::from_str(&upload.metadata)
    {
        response.headers_mut().insert("upload-metadata", value);
    }
    Ok(response)
}

/// Marks an upload as having a PATCH in progress; released on drop.
struct Busy {
    media: Media,
    upload_id: String,
}

impl Busy {
    fn take(media: &Media, upload_id: &str) -> Option<Self> {
        media
            .inner
            .tus_busy
            .lock()
            .insert(upload_id.to_owned())
            .then(|| Self {
                media: media.clone(),
                upload_id: upload_id.to_owned(),
            })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.media.inner.tus_busy.lock().remove(&self.upload_id);
    }
}

fn parse_checksum(headers: &HeaderMap) -> Result<Option<(Hasher, Vec<u8>)>, TusError> {
    let Some(text) = header_str(headers, "upload-checksum") else {
        return Ok(None);
    };
    let bad = |m: &str| api(ApiError::InvalidRequest(m.to_owned()));
    let (algorithm, value) = text
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum is `<algorithm> <base64 digest>`"))?;
    let expected =
        base64_decode(value.trim()).ok_or_else(|| bad("Upload-Checksum digest is not base64"))?;
    let hasher = match algorithm {
        "sha1" => Hasher::Sha1(sha1::Sha1::default()),
        "sha256" => Hasher::Sha256(sha2::Sha256::default()),
        _ => {
            return Err(bad(&format!(
                "unsupported checksum algorithm (use one of {TUS_CHECKSUM_ALGORITHMS})"
            )));
        }
    };
    Ok(Some((hasher, expected)))
}

async fn append(
    Extension(media): Extension<Media>,
    auth: Auth,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> TusResult {
    check_resumable(&headers)?;
    if header_str(&headers, "content-type") != Some("application/offset+octet-stream") {
        return Err(tus_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a PATCH carries Content-Type: application/offset+octet-stream",
        )
        .into());
    }
    let offset = number_header(&headers, "upload-offset")?
        .ok_or_else(|| api(ApiError::InvalidRequest("Upload-Offset is required".into())))?;
    let upload = owned(&media, auth, &upload_id)?;
    if upload.completed {
        return if offset == upload.length {
            Ok(offset_response(
                StatusCode::NO_CONTENT,
                &upload,
                upload.length,
                true,
            ))
        } else {
            Err(api(ApiError::Conflict("the upload is complete".into())))
        };
    }
    if offset != upload.offset {
        return Err(api(ApiError::Conflict(format!(
            "Upload-Offset {offset} does not match the server's {}",
            upload.offset
        ))));
    }
    let checksum = parse_checksum(&headers)?;
    let room = upload.length - upload.offset;
    if number_header(&headers, "content-length")?.is_some_and(|n| n > room) {
        return Err(api(ApiError::too_large("the rest of the upload", room)));
    }
    let busy = Busy::take(&media, &upload_id).ok_or_else(|| {
        api(ApiError::Conflict(
            "another PATCH of this upload is in progress".into(),
        ))
    })?;
    // A task of its own: if the client goes away, the handler is dropped, but the task still
    // records how far the upload got.
    let task = tokio::spawn(async move {
        let _busy = busy;
        receive(&media, upload, checksum, body).await
    });
    task.await.map_err(internal)?
}

async fn truncate(path: std::path::PathBuf, len: u64) -> Result<(), TusError> {
    tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_len(len)?;
                f.sync_all()
            })
    })
    .await
    .map_err(internal)?
    .map_err(internal)
}

async fn receive(
    media: &Media,
    upload: TusUpload,
    checksum: Option<(Hasher, Vec<u8>)>,
    body: Body,
) -> TusResult {
    let store = media.store();
    let path = store.tus_path(&upload.upload_id);
    if upload.offset == upload.length {
        // A crash came between the last byte and the completion.
        return finish(media, upload).await;
    }
    let start = upload.offset;
    let file = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
            // Bytes past the recorded offset were never acknowledged: drop them.
            file.set_len(start)?;
            file.seek(SeekFrom::End(0))?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?
    };
    let (hasher, expected) = match checksum {
        Some((h, e)) => (Some(h), Some(e)),
        None => (None, None),
    };
    let mut writer = BlobWriter::new(file, hasher);
    let room = upload.length - start;
    let mut stream = body.into_data_stream();
    let mut refused: Option<TusError> = None;
    let mut cut = false;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            cut = true;
            break;
        };
        if writer.bytes() + chunk.len() as u64 > room {
            refused = Some(api(ApiError::too_large("the rest of the upload", room)));
            break;
        }
        if let Err(e) = writer.write(&chunk).await {
            refused = Some(internal(e));
            break;
        }
    }
    let written = match writer.finish().await {
        Ok(w) => w,
        Err(e) => {
            truncate(path, start).await?;
            return Err(internal(e));
        }
    };
    if let Some(response) = refused {
        truncate(path, start).await?;
        return Err(response);
    }
    if let Some(expected) = expected
        && (cut || written.digest.as_deref() != Some(expected.as_slice()))
    {
        truncate(path, start).await?;
        return Err(tus_error(
            StatusCode::from_u16(460).expect("460 is a valid status"),
            "checksum_mismatch",
            "Upload-Checksum does not match the bytes received; resend them",
        )
        .into());
    }
    let offset = start + written.bytes;
    store
        .tus_set_offset(&upload.upload_id, offset)
        .map_err(internal)?;
    if cut {
        return Err(api(ApiError::InvalidRequest(
            "the body was cut short; resume from Upload-Offset".into(),
        )));
    }
    if offset == upload.length {
        return finish(media, TusUpload { offset, ..upload }).await;
    }
    Ok(offset_response(
        StatusCode::NO_CONTENT,
        &upload,
        offset,
        false,
    ))
}

/// Turns a complete upload into media (id = upload id).
async fn finish(media: &Media, upload: TusUpload) -> TusResult {
    let store = media.store();
    if store.media(&upload.upload_id).map_err(internal)?.is_none() {
        let path = store.tus_path(&upload.upload_id);
        let (sha256, head) = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(internal)?
                .map_err(internal)?
        };
        let new = NewMedia {
            media_id: upload.upload_id.clone(),
            owner_id: upload.owner_id,
            sha256: crate::auth::hex(&sha256),
            size: upload.length,
            mime: sniff(&head),
            file_name: upload.file_name.clone(),
            duration_ms: upload.duration_ms,
        };
        commit_file(media, path, new).await.map_err(api)?;
    }
    store.tus_complete(&upload.upload_id).map_err(internal)?;
    Ok(offset_response(
        StatusCode::NO_CONTENT,
        &upload,
        upload.length,
        true,
    ))
}

async fn terminate(
    Extension(media): Extension<Media>,
    auth: Auth,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
) -> TusResult {
    check_resumable(&headers)?;
    owned(&media, auth, &upload_id)?;
    let _busy = Busy::take(&media, &upload_id).ok_or_else(|| {
        api(ApiError::Conflict(
            "a PATCH of this upload is in progress".into(),
        ))
    })?;
    media.store().tus_delete(&upload_id).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_metadata() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a b").is_none());
        let meta =
            parse_metadata("filename dm9pY2Uub2dn,duration_ms MTIzNA==,is_confidential").unwrap();
        assert_eq!(meta.file_name.as_deref(), Some("voice.ogg"));
        assert_eq!(meta.duration_ms, Some(1234));
        assert!(parse_metadata("filename !!").is_err());
        assert!(parse_metadata("duration_ms eA==").is_err());
    }
}
