//! Guest stdout and stderr, turned into `tracing` events that carry the
//! tenant, service, version and request id of the instance that wrote them.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

use super::guest_output::GuestIdentity;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces, so a guest that never writes a
/// newline cannot grow the buffer without bound.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Which of the guest's two output streams this is.
#[derive(Debug, Clone, Copy)]
pub enum Stdio {
    Stdout,
    Stderr,
}

/// A guest output stream that logs complete lines. Clones share one buffer,
/// as wasmtime hands out a fresh stream handle each time the guest asks.
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<GuestLogInner>,
}

struct GuestLogInner {
    stream: Stdio,
    who: GuestIdentity,
    pending: Mutex<Vec<u8>>,
}

impl GuestLog {
    pub fn new(stream: Stdio, who: GuestIdentity) -> Self {
        Self {
            inner: Arc::new(GuestLogInner {
                stream,
                who,
                pending: Mutex::new(Vec::new()),
            }),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let Ok(mut pending) = self.inner.pending.lock() else {
            return;
        };
        pending.extend_from_slice(bytes);
        while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            self.inner.emit(&line[..line.len() - 1]);
        }
        if pending.len() >= MAX_LINE_BYTES {
            let chunk: Vec<u8> = std::mem::take(&mut *pending);
            self.inner.emit(&chunk);
        }
    }
}

impl GuestLogInner {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        match self.stream {
            Stdio::Stdout => self.who.record("stdout", tracing::Level::INFO, line),
            Stdio::Stderr => self.who.record("stderr", tracing::Level::WARN, line),
        }
    }
}

impl Drop for GuestLogInner {
    /// A last line without a newline is still logged when the instance ends.
    fn drop(&mut self) {
        let rest = match self.pending.get_mut() {
            Ok(pending) => std::mem::take(pending),
            Err(_) => return,
        };
        if !rest.is_empty() {
            self.emit(&rest);
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
