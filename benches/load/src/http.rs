//! Just enough HTTP/1.1 for registering users and creating groups: one JSON request per
//! connection (`Connection: close`), `Content-Length` or chunked answers.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::AnyResult;

/// Longest wait for one request's answer.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest answer read.
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// `POST path` with a JSON body (and a bearer token); returns the status and the JSON answer
/// (`Null` when empty).
pub(crate) async fn post(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> AnyResult<(u16, Value)> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, path, token, body))
        .await
        .map_err(|_| format!("{path}: no answer within {REQUEST_TIMEOUT:?}"))?
}

async fn exchange(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> AnyResult<(u16, Value)> {
    let body = body.to_string();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if response.len() > RESPONSE_BYTES_MAX {
            return Err(format!("{path}: answer over {RESPONSE_BYTES_MAX} bytes").into());
        }
    }
    parse(&response).map_err(|e| format!("{path}: {e}").into())
}

fn parse(response: &[u8]) -> Result<(u16, Value), String> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&response[..split]).map_err(|e| e.to_string())?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = response[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("status {status}, bad JSON: {e}"))?
    };
    Ok((status, value))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| e.to_string())?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_answers() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 9\r\n\r\n{\"a\": 1}\n";
        assert_eq!(parse(plain).unwrap(), (201, serde_json::json!({"a": 1})));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"b\"\r\n3\r\n:2}\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap(), (200, serde_json::json!({"b": 2})));
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            (204, Value::Null)
        );
        assert!(parse(b"garbage").is_err());
    }
}
