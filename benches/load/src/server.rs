//! The server under load: started by us (`--spawn-server`) or given (`--server`, `--server-pid`),
//! and its resident memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::AnyResult;

/// The flags a server under load needs besides `--dev`: every per-IP and per-user rate limit
/// off (all users come from a few loopback addresses and send as fast as asked), and room for
/// the connections. A server started by hand for `missive-load` needs the same.
pub(crate) const LOAD_FLAGS: &[&str] = &[
    "--ip-requests-per-s",
    "0",
    "--user-requests-per-s",
    "0",
    "--ws-frames-per-s",
    "0",
    "--verify-per-ip-per-min",
    "0",
    "--connections-max",
    "19500",
];

/// A server process we started; stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct SpawnedServer {
    child: Option<Child>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its process id.
    pub(crate) pid: u32,
    _data: tempfile::TempDir,
}

/// The server binary: `bin`, else `missive-server` next to this executable (both are built into
/// the same target directory by `cargo build --release -p missive-server -p missive-load`).
pub(crate) fn find_binary(bin: Option<&Path>) -> AnyResult<PathBuf> {
    if let Some(bin) = bin {
        return Ok(bin.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("missive-server");
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(format!(
            "no {} (build it with `cargo build --release -p missive-server`, or pass --server-bin)",
            sibling.display()
        )
        .into())
    }
}

impl SpawnedServer {
    /// Starts `bin` on 127.0.0.1, a free port and a new temporary data directory, with `--dev`,
    /// [`LOAD_FLAGS`] and `extra`; waits for its `listening on http://ADDR` line.
    pub(crate) async fn start(bin: &Path, extra: &[String]) -> AnyResult<SpawnedServer> {
        let data = tempfile::Builder::new()
            .prefix("missive-load-server-")
            .tempdir()?;
        let mut child = Command::new(bin)
            .args([
                "--dev",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--log",
                "warn",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args(LOAD_FLAGS)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let stdout = child.stdout.take().ok_or("the server's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Some(addr.parse()?));
                }
            }
            Ok(None)
        })
        .await
        .map_err(|_| "the server did not say where it listens within 60 s")??
        .ok_or("the server exited before listening")?;
        // Keep draining its stdout so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(SpawnedServer {
            child: Some(child),
            addr,
            pid,
            _data: data,
        })
    }

    /// Stops it: SIGTERM (a graceful shutdown), then SIGKILL after `grace`.
    pub(crate) async fn stop(mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// The resident memory of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_rss() {
        let rss = rss_bytes(std::process::id()).expect("our own status");
        assert!(rss > 100 * 1024);
        assert_eq!(rss_bytes(u32::MAX), None);
    }
}
