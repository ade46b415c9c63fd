//! A minimal HTTP/1.1 client for the webhook push sink: one `POST` per connection, plain
//! `http://` only, bounded by a timeout. Enough for a push gateway on the same host or network;
//! no TLS, redirects or keep-alive on purpose.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::sink::PushError;

/// Most response bytes read (status line and headers are all that matter).
const RESPONSE_BYTES_MAX: usize = 16 * 1024;

/// A parsed `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (80 if not given).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WebhookUrl {
    /// Parses `url`; only `http://` is supported.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!("`{url}`: credentials in URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| format!("`{url}`: unclosed ["))?;
            let port = v6[end + 1..].strip_prefix(':');
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace()) {
            return Err(format!("`{url}`: no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse().map_err(|_| format!("`{url}`: bad port"))?,
        };
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{url}`: bad path"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// POSTs `body` as JSON to `url`; returns the response status.
pub async fn post_json(url: &WebhookUrl, body: &[u8], timeout: Duration) -> Result<u16, PushError> {
    tokio::time::timeout(timeout, post_json_inner(url, body))
        .await
        .map_err(|_| PushError::Io(format!("timed out after {timeout:?}")))?
}

async fn post_json_inner(url: &WebhookUrl, body: &[u8]) -> Result<u16, PushError> {
    let io = |e: std::io::Error| PushError::Io(e.to_string());
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(io)?;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         user-agent: missive-server\r\nconnection: close\r\n\r\n",
        url.path,
        url.host_header(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut response = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !response.windows(2).any(|w| w == b"\r\n") && response.len() < RESPONSE_BYTES_MAX {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let line_end = response
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| PushError::Io("no HTTP status line in the response".into()))?;
    let line = std::str::from_utf8(&response[..line_end])
        .map_err(|_| PushError::Io("non-UTF-8 status line".into()))?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(status))) if v.starts_with("HTTP/1.") => Ok(status),
        _ => Err(PushError::Io(format!("bad status line `{line}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_urls() {
        assert_eq!(
            WebhookUrl::parse("http://127.0.0.1:9000/push?x=1").unwrap(),
            WebhookUrl {
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/push?x=1".into()
            }
        );
        assert_eq!(WebhookUrl::parse("http://localhost").unwrap().path, "/");
        assert_eq!(WebhookUrl::parse("http://[::1]:81/a").unwrap().host, "::1");
        for bad in [
            "https://x/",
            "ftp://x",
            "http://:80/",
            "http://a:b/",
            "http://u@h/",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn posts_and_reads_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("{\"a\":1}") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let status = post_json(&url, b"{\"a\":1}", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status, 204);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"));
        assert!(request.contains("content-length: 7\r\n"));
    }

    #[tokio::test]
    async fn refused_connections_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert!(
            post_json(&url, b"{}", Duration::from_secs(5))
                .await
                .is_err()
        );
    }
}
