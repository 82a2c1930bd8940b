//! Counting open connections on the unix listener, so that the process running an
//! embedded server can keep serving until the other processes using it are done.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

/// The number of connections open right now.
#[derive(Clone, Debug, Default)]
pub struct ConnectionGauge(Arc<AtomicUsize>);

impl ConnectionGauge {
    pub fn open(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Wraps a new connection; the count drops when it closes.
    pub fn track(&self, stream: UnixStream) -> CountedStream {
        self.0.fetch_add(1, Ordering::SeqCst);
        CountedStream {
            inner: stream,
            gauge: self.clone(),
        }
    }
}

/// A unix stream that is counted by a [`ConnectionGauge`] while it lives.
pub struct CountedStream {
    inner: UnixStream,
    gauge: ConnectionGauge,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.gauge.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connected for CountedStream {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
