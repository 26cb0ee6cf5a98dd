//! The client's transport: plain TCP or TLS, whole during login, then split into a read half
//! and a write half that the session loop polls side by side.
//!
//! Plain TCP is split with [`TcpStream::into_split`] (the socket's own halves, no lock). TLS
//! keeps one state for both directions, so it goes through [`tokio::io::split`], which takes a
//! lock on every poll.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::ClientIo;

/// Calls `$e` with `$s` bound to the pinned transport of whichever variant `$self` is.
macro_rules! each_variant {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Self::Tls($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

/// A whole client connection (startup, TLS handshake, authentication).
pub(crate) enum ClientStream {
    Tcp(TcpStream),
    Tls(Box<dyn ClientIo>),
}

/// The read half of a client connection.
pub(crate) enum ClientReader {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<Box<dyn ClientIo>>),
}

/// The write half of a client connection.
pub(crate) enum ClientWriter {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<Box<dyn ClientIo>>),
}

impl ClientStream {
    /// The read and write halves for the session loop.
    pub fn into_split(self) -> (ClientReader, ClientWriter) {
        match self {
            ClientStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ClientReader::Tcp(r), ClientWriter::Tcp(w))
            }
            ClientStream::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                (ClientReader::Tls(r), ClientWriter::Tls(w))
            }
        }
    }
}

/// `AsyncRead` by delegation to the variant's transport.
macro_rules! delegate_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                each_variant!(self, s => s.poll_read(cx, buf))
            }
        }
    };
}

/// `AsyncWrite` by delegation to the variant's transport.
macro_rules! delegate_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                each_variant!(self, s => s.poll_write(cx, buf))
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_variant!(self, s => s.poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_variant!(self, s => s.poll_shutdown(cx))
            }
        }
    };
}

delegate_read!(ClientStream);
delegate_read!(ClientReader);
delegate_write!(ClientStream);
delegate_write!(ClientWriter);
