//! The byte stream under a connection: plain TCP, or TLS over TCP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// TCP or TLS. The TLS state is boxed: inline, every plain `ws://` connection would carry its
/// size (over a kilobyte) for its whole life.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, data),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The socket every managed connection runs over: TCP or TLS, its reads stamped when asked
/// ([`Stamped`](crate::stamped::Stamped)), speaking WebSocket.
pub(crate) type Socket = crate::wire::Wire<crate::stamped::Stamped<Transport>>;

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Bounds a wait of these tests: loopback answers at once or not at all.
    async fn within<F: std::future::Future>(fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .expect("the socket did not answer within 5 s")
    }

    #[tokio::test]
    async fn a_plain_transport_passes_every_kind_of_read_and_write_to_its_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut t = Transport::Plain(client);
        // Vectored writes go through as such: the socket says it takes them.
        assert!(t.is_write_vectored());
        let n = within(t.write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")]))
            .await
            .unwrap();
        assert_eq!(
            n, 4,
            "a vectored write of 4 bytes on loopback is taken whole"
        );
        within(t.write_all(b"ef")).await.unwrap();
        within(t.flush()).await.unwrap();
        server.write_all(b"xy").await.unwrap();
        let mut got = [0u8; 2];
        within(t.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"xy");
        // The shutdown reaches the peer as the end of the stream.
        within(t.shutdown()).await.unwrap();
        let mut all = Vec::new();
        within(server.read_to_end(&mut all)).await.unwrap();
        assert_eq!(all, b"abcdef");
    }
}
