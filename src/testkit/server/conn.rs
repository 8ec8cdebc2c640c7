//! One accepted connection: its socket (wrapped so that an aborted connection closes with a
//! TCP reset, and so that the server counts it open until the socket is closed) and the switch
//! a response uses to abort it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::Shared;

/// The abort switch of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    killed: AtomicBool,
    kill: Notify,
}

impl ConnCtl {
    /// Asks the connection's task to drop the connection at once, closing the socket with a
    /// reset.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill.notify_one();
    }

    /// Resolves once [`kill`](Self::kill) has been called.
    pub(crate) async fn killed(&self) {
        self.kill.notified().await;
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// The socket of a connection, counted open until dropped.
pub(crate) struct ConnIo {
    stream: TcpStream,
    ctl: Arc<ConnCtl>,
    shared: Arc<Shared>,
}

impl ConnIo {
    pub(crate) fn new(stream: TcpStream, ctl: Arc<ConnCtl>, shared: Arc<Shared>) -> Self {
        shared.connection_opened();
        Self {
            stream,
            ctl,
            shared,
        }
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.ctl.is_killed() || self.shared.past_grace() {
            // Close with RST rather than FIN. Failing to set it only makes the close polite.
            let _ = self.stream.set_zero_linger();
        }
        self.shared.connection_closed();
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
