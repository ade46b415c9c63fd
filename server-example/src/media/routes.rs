//! The media routes: upload (raw or multipart), download with `Range`, metadata, and the tus
//! routes from `tus.rs`.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::store::{BlobWriter, Hasher, MediaInfo, NewMedia, Variant, VariantState, sniff};
use super::{Media, check_file_name, new_id, thumbs, tus};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};
use crate::time::rfc3339;

/// Room for multipart boundaries and part headers on top of the file itself.
const MULTIPART_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Longest text field of a multipart upload.
const FORM_FIELD_BYTES_MAX: usize = 1024;

/// Bytes read from disk per chunk of a download.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Every media route, with the service attached. Uploads are bounded by
/// `MediaConfig::bytes_max` here, not by the server's JSON body limit.
pub fn router(media: Media) -> Router<AppState> {
    Router::new()
        .route("/api/v1/media/upload", post(upload))
        .route("/api/v1/media/{media_id}", get(download))
        .route("/api/v1/media/{media_id}/info", get(info))
        .merge(tus::routes())
        .layer(DefaultBodyLimit::disable())
        .layer(Extension(media))
}

/// Client metadata of an upload.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ClientMeta {
    /// As the client names the file.
    #[serde(default)]
    pub(crate) file_name: Option<String>,
    /// Voice notes and videos.
    #[serde(default)]
    pub(crate) duration_ms: Option<u64>,
}

impl ClientMeta {
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        if let Some(name) = &self.file_name {
            check_file_name(name)?;
        }
        Ok(())
    }
}

/// The answer to an upload and to `GET …/info`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MediaView {
    media_id: String,
    mime: String,
    size: u64,
    sha256: String,
    variants: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    created_at: String,
}

impl MediaView {
    pub(crate) fn new(m: MediaInfo) -> Self {
        let variants = if thumbs::has_variants(&m.mime) && m.variants != VariantState::Failed {
            vec!["original", "preview", "thumbnail"]
        } else {
            vec!["original"]
        };
        Self {
            media_id: m.media_id,
            mime: m.mime,
            size: m.size,
            sha256: m.sha256,
            variants,
            file_name: m.file_name,
            duration_ms: m.duration_ms,
            width: m.width,
            height: m.height,
            created_at: rfc3339(m.created_at_ms),
        }
    }
}

/// An upload being written to `media/tmp/`; removed on drop unless committed.
pub(crate) struct TempBlob {
    path: PathBuf,
    writer: Option<BlobWriter>,
    limit: u64,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl TempBlob {
    pub(crate) fn create(media: &Media) -> Result<Self, ApiError> {
        let path = media.store().tmp_dir().join(new_id());
        let file = std::fs::File::create_new(&path).map_err(ApiError::internal)?;
        Ok(Self {
            path,
            writer: Some(BlobWriter::new(
                file,
                Some(Hasher::Sha256(sha2::Sha256::default())),
            )),
            limit: media.config().bytes_max,
        })
    }

    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        let writer = self
            .writer
            .as_mut()
            .expect("an uncommitted blob has a writer");
        if writer.bytes() + chunk.len() as u64 > self.limit {
            return Err(ApiError::too_large("the upload", self.limit));
        }
        writer.write(chunk).await.map_err(ApiError::internal)
    }

    /// Syncs the file, sniffs and hashes it and records the media (owner `owner_id`).
    pub(crate) async fn commit(
        mut self,
        media: &Media,
        owner_id: u64,
        meta: ClientMeta,
    ) -> Result<MediaInfo, ApiError> {
        // With the writer taken, dropping `self` no longer removes the file: from here on
        // every path below removes it or moves it into the blob store.
        let writer = self
            .writer
            .take()
            .expect("an uncommitted blob has a writer");
        let written = match writer.finish().await {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                return Err(ApiError::internal(e));
            }
        };
        if written.bytes == 0 {
            let _ = std::fs::remove_file(&self.path);
            return Err(ApiError::InvalidRequest("the upload is empty".into()));
        }
        let digest = written.digest.expect("uploads are hashed");
        let new = NewMedia {
            media_id: new_id(),
            owner_id,
            sha256: crate::auth::hex(&digest),
            size: written.bytes,
            mime: sniff(&written.head),
            file_name: meta.file_name,
            duration_ms: meta.duration_ms,
        };
        commit_file(media, self.path.clone(), new).await
    }
}

/// Moves a complete, synced file into the blob store as `new` and starts its variants.
pub(crate) async fn commit_file(
    media: &Media,
    path: PathBuf,
    new: NewMedia,
) -> Result<MediaInfo, ApiError> {
    let now = media.now_ms();
    let job = {
        let media = media.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || media.store().commit(&path, &new, now))
    };
    let result = job.await.map_err(ApiError::internal)?;
    let (info, needs_variants) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(ApiError::internal(e));
        }
    };
    if needs_variants {
        media.start_variants(&info.sha256);
    }
    Ok(info)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn upload(
    Extension(media): Extension<Media>,
    auth: Auth,
    Query(meta): Query<ClientMeta>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MediaView>), ApiError> {
    meta.check()?;
    let limit = media.config().bytes_max;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let multipart = content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data");
    let slack = if multipart {
        MULTIPART_OVERHEAD_BYTES
    } else {
        0
    };
    if content_length(&headers).is_some_and(|n| n > limit + slack) {
        return Err(ApiError::too_large("the upload", limit));
    }
    // A task of its own: if the client goes away, the handler is dropped but the task still
    // sees the body end early and removes the partial file.
    let task = tokio::spawn(async move {
        if multipart {
            receive_multipart(&media, auth.user_id, meta, &content_type, body).await
        } else {
            receive_raw(&media, auth.user_id, meta, body).await
        }
    });
    let info = task.await.map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(MediaView::new(info))))
}

fn cut_short() -> ApiError {
    ApiError::InvalidRequest("the upload was cut short".into())
}

async fn receive_raw(
    media: &Media,
    owner_id: u64,
    meta: ClientMeta,
    body: Body,
) -> Result<MediaInfo, ApiError> {
    let mut blob = TempBlob::create(media)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| cut_short())?;
        blob.write(&chunk).await?;
    }
    blob.commit(media, owner_id, meta).await
}

fn multipart_error(error: multer::Error) -> ApiError {
    match error {
        multer::Error::StreamSizeExceeded { limit }
        | multer::Error::FieldSizeExceeded { limit, .. } => {
            ApiError::too_large("the upload", limit)
        }
        multer::Error::StreamReadFailed(_) => cut_short(),
        e => ApiError::InvalidRequest(format!("malformed multipart body: {e}")),
    }
}

async fn receive_multipart(
    media: &Media,
    owner_id: u64,
    mut meta: ClientMeta,
    content_type: &str,
    body: Body,
) -> Result<MediaInfo, ApiError> {
    let limit = media.config().bytes_max;
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::InvalidRequest(format!("multipart: {e}")))?;
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(limit + MULTIPART_OVERHEAD_BYTES));
    let mut form =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut blob: Option<TempBlob> = None;
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        let is_file = field.file_name().is_some() || field.name() == Some("file");
        if is_file {
            if blob.is_some() {
                return Err(ApiError::InvalidRequest(
                    "one file per upload (found a second file part)".into(),
                ));
            }
            if meta.file_name.is_none() {
                meta.file_name = field.file_name().map(str::to_owned);
            }
            let mut file = TempBlob::create(media)?;
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                file.write(&chunk).await?;
            }
            blob = Some(file);
            continue;
        }
        let name = field.name().unwrap_or("").to_owned();
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if text.len() + chunk.len() > FORM_FIELD_BYTES_MAX {
                return Err(ApiError::InvalidRequest(format!(
                    "form field `{name}` is longer than {FORM_FIELD_BYTES_MAX} bytes"
                )));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text)
            .map_err(|_| ApiError::InvalidRequest(format!("form field `{name}` is not UTF-8")))?;
        match name.as_str() {
            "file_name" => meta.file_name = Some(text),
            "duration_ms" => {
                meta.duration_ms = Some(text.trim().parse().map_err(|_| {
                    ApiError::InvalidRequest("duration_ms is a whole number".into())
                })?);
            }
            // Other fields are ignored.
            _ => {}
        }
    }
    meta.check()?;
    let blob = blob.ok_or_else(|| {
        ApiError::InvalidRequest("no file part (a part with a filename, or named `file`)".into())
    })?;
    blob.commit(media, owner_id, meta).await
}

#[derive(Debug, Default, Deserialize)]
struct VariantQuery {
    #[serde(default)]
    variant: Variant,
}

/// Looks up `media_id` and checks that the caller may read it.
fn readable(
    state: &AppState,
    media: &Media,
    auth: Auth,
    media_id: &str,
) -> Result<MediaInfo, ApiError> {
    let info = media
        .info(media_id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound("no such media".into()))?;
    if !media
        .can_read(state.accounts.store(), auth.user_id, &info)
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::Forbidden(
            "only the uploader and members of a chat it was sent in may read this media".into(),
        ));
    }
    Ok(info)
}

async fn info(
    State(state): State<AppState>,
    Extension(media): Extension<Media>,
    auth: Auth,
    Path(media_id): Path<String>,
) -> Result<Json<MediaView>, ApiError> {
    Ok(Json(MediaView::new(readable(
        &state, &media, auth, &media_id,
    )?)))
}

/// A `Range` header against a representation of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No (usable) range: the whole representation.
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// 416.
    Unsatisfiable,
}

/// Parses a single byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`). Other units, several
/// ranges and malformed headers are ignored (the whole representation is sent, as RFC 9110
/// allows).
pub(crate) fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (false, Some(start), None) if last.is_empty() => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start,
                    end: size - 1,
                }
            }
        }
        (false, Some(start), Some(end)) if start <= end => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
        _ => RangeRequest::Full,
    }
}

/// A body reading `len` bytes of `file` from its current position, 64 KiB at a time on the
/// blocking pool.
fn file_body(file: std::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::unfold((Some(file), len), |(file, remaining)| async move {
        let file = file?;
        if remaining == 0 {
            return None;
        }
        let n = remaining.min(READ_CHUNK_BYTES as u64) as usize;
        let read = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut buf = vec![0; n];
            file.read_exact(&mut buf).map(|()| (file, buf))
        })
        .await;
        match read {
            Ok(Ok((file, buf))) => Some((Ok(Bytes::from(buf)), (Some(file), remaining - n as u64))),
            Ok(Err(e)) => Some((Err(e), (None, 0))),
            Err(e) => Some((Err(io::Error::other(e)), (None, 0))),
        }
    });
    Body::from_stream(stream)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("generated header values are visible ASCII")
}

async fn download(
    State(state): State<AppState>,
    Extension(media): Extension<Media>,
    auth: Auth,
    Path(media_id): Path<String>,
    Query(query): Query<VariantQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let info = readable(&state, &media, auth, &media_id)?;
    let variant = query.variant;
    let (mime, etag) = match variant {
        Variant::Original => (info.mime.clone(), format!("\"{}\"", info.sha256)),
        Variant::Preview | Variant::Thumbnail => {
            if !thumbs::has_variants(&info.mime) {
                return Err(ApiError::NotFound(format!(
                    "{} media has no {} variant",
                    info.mime,
                    variant.as_str()
                )));
            }
            match media
                .settled_variants(&info)
                .await
                .map_err(ApiError::internal)?
            {
                VariantState::Ready => {}
                VariantState::Pending => {
                    return Err(ApiError::Unavailable(format!(
                        "the {} is not ready yet; retry shortly",
                        variant.as_str()
                    )));
                }
                VariantState::None | VariantState::Failed => {
                    return Err(ApiError::NotFound(format!(
                        "this image has no {} (it could not be decoded)",
                        variant.as_str()
                    )));
                }
            }
            (
                "image/jpeg".to_owned(),
                format!("\"{}.{}\"", info.sha256, variant.as_str()),
            )
        }
    };
    let cache_control = format!(
        "private, max-age={}, immutable",
        media.config().cache_max_age_s
    );
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::ETAG, header_value(&etag));
    response_headers.insert(header::CACHE_CONTROL, header_value(&cache_control));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );

    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.trim() == "*" || v.split(',').any(|t| t.trim() == etag)) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }

    let path = media.store().path(&info.sha256, variant);
    let open = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        Ok::<_, io::Error>((file, size))
    })
    .await
    .map_err(ApiError::internal)?;
    let (mut file, size) = match open {
        Ok(x) => x,
        Err(e) => return Err(ApiError::internal(format!("media {media_id}: {e}"))),
    };
    response_headers.insert(header::CONTENT_TYPE, header_value(&mime));
    let inline = ["image/", "video/", "audio/"]
        .iter()
        .any(|p| mime.starts_with(p));
    response_headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(if inline { "inline" } else { "attachment" }),
    );

    // If-Range: a range only applies to the representation the client has.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) if if_range_ok => parse_range(value, size),
        _ => RangeRequest::Full,
    };
    match range {
        RangeRequest::Full => {
            response_headers.insert(header::CONTENT_LENGTH, header_value(&size.to_string()));
            Ok((StatusCode::OK, response_headers, file_body(file, size)).into_response())
        }
        RangeRequest::Partial { start, end } => {
            let len = end - start + 1;
            file.seek(SeekFrom::Start(start))
                .map_err(ApiError::internal)?;
            response_headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{size}")),
            );
            response_headers.insert(header::CONTENT_LENGTH, header_value(&len.to_string()));
            Ok((
                StatusCode::PARTIAL_CONTENT,
                response_headers,
                file_body(file, len),
            )
                .into_response())
        }
        RangeRequest::Unsatisfiable => {
            response_headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            let body = serde_json::json!({"error": {
                "code": "range_not_satisfiable",
                "message": format!("the range is outside the {size} bytes of this media"),
            }});
            response_headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response_headers.remove(header::CONTENT_DISPOSITION);
            Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                response_headers,
                body.to_string(),
            )
                .into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-200", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=10-", 100),
            Partial { start: 10, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=x-1", 100), Full);
        assert_eq!(parse_range("bytes=-", 100), Full);
    }
}
