//! One connection's socket between requests and under hyper: the request-head gate, and the read
//! budget that hands hyper one request at a time.
//!
//! Memory is the point. hyper gives every connection it drives an 8 KiB read buffer and a write
//! buffer, so a connection parked in hyper (a slow head, an idle keep-alive) costs ~20 KiB. Here a
//! connection is handed to hyper only once a whole request head is in the kernel's socket buffer,
//! found by peeking (nothing is read, so a slow head costs us no buffer at all), and hyper may read
//! exactly that request (and the next whole ones a busy client sends within 10 ms): when it asks
//! for more, it is told the peer closed, finishes, and is dropped with its buffers. The next
//! request starts at the gate again. Keep-alive is unchanged
//! for the client; requests with a body (or a head too large to find the end of) are left to hyper
//! whole, and answered with `Connection: close`.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Largest request head accepted; beyond it hyper answers 431. 8 KiB is hyper's minimum.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// How a waiting connection's next bytes go to hyper.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// A whole head of this many bytes and no body: hyper gets exactly these bytes.
    OneRequest(usize),
    /// A body, or no end of head within the limit: hyper reads on, answers once, and the
    /// connection closes.
    Rest,
}

/// What a peek at the socket found.
#[derive(Debug, PartialEq)]
pub enum Peeked {
    Nothing,
    /// The start of a head, this many bytes so far.
    Partial(usize),
    Ready(Next),
    Closed,
}

/// Looks at what the peer has sent without reading it.
pub fn peek(stream: &TcpStream) -> Peeked {
    // Not zeroed: a peek per request would otherwise clear 8 KiB for every request served.
    let mut buf = std::mem::MaybeUninit::<[u8; MAX_HEAD_BYTES + 1]>::uninit();
    // SAFETY: recv writes at most `MAX_HEAD_BYTES + 1` bytes into `buf`.
    let n = unsafe { libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), MAX_HEAD_BYTES + 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    match n {
        0 => Peeked::Closed,
        n if n < 0 => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Peeked::Nothing,
            _ => Peeked::Closed,
        },
        // SAFETY: recv initialised the first `n` bytes.
        n => judge(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) }),
    }
}

/// Whether `bytes` (the start of what the peer sent) hold a whole request head, and how to serve it.
pub fn judge(bytes: &[u8]) -> Peeked {
    let end = bytes.iter().enumerate().find_map(|(i, &b)| {
        let rest = &bytes[i + 1..];
        (b == b'\n').then_some(()).and_then(|_| {
            if rest.starts_with(b"\r\n") {
                Some(i + 3)
            } else if rest.starts_with(b"\n") {
                Some(i + 2)
            } else {
                None
            }
        })
    });
    match end {
        Some(end) if end <= MAX_HEAD_BYTES => {
            let head = &bytes[..end];
            let has_body = head.split(|&b| b == b'\n').any(|line| {
                let named = |name: &[u8]| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name);
                named(b"content-length:") || named(b"transfer-encoding:")
            });
            Peeked::Ready(if has_body { Next::Rest } else { Next::OneRequest(end) })
        }
        _ if bytes.len() > MAX_HEAD_BYTES => Peeked::Ready(Next::Rest),
        _ => Peeked::Partial(bytes.len()),
    }
}

/// Resolves when the socket is readable or the peer has shut its side. Unlike
/// `TcpStream::readable`, the future holds no waiter of its own (the socket keeps one waker for
/// reads), which keeps every waiting connection's task smaller.
pub async fn readable(stream: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await
}

/// Whether the peer has shut its sending side or reset the connection.
pub fn peer_finished(stream: &TcpStream) -> bool {
    let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: one pollfd, no waiting.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Forgets that the socket is readable, so the next `readable()` waits for new bytes. Peeking
/// leaves bytes in the socket, which would otherwise keep it readable for ever.
pub fn forget_readiness(stream: &TcpStream) {
    let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
}

/// How long hyper keeps a connection after answering, for the client's next request. A busy
/// client (a benchmark, a proxy's pool) sends it within a round trip, and rebuilding hyper's
/// buffers for every request costs page faults under musl's allocator; an idle one goes back to
/// the gate, where it holds no buffer.
const NEXT_REQUEST_GRACE: Duration = Duration::from_millis(10);

/// The socket as hyper sees it, one whole request at a time: once a request's bytes are read, the
/// next whole bodiless request is handed over if it arrives within `NEXT_REQUEST_GRACE`, else
/// reads end with an end of stream (so hyper, idle after its answer, finishes). Shutdown is left
/// to the owner.
pub struct Wire<'a> {
    pub stream: &'a mut TcpStream,
    /// Bytes hyper may still read; `None`: no limit.
    budget: Option<usize>,
    /// hyper was told the stream ended because the budget was spent: the connection lives on.
    pub budget_spent: bool,
    /// Bytes written, for the drain check.
    written: &'a AtomicU64,
    /// Running while hyper waits for the next request.
    grace: Option<Pin<Box<Sleep>>>,
}

impl<'a> Wire<'a> {
    pub fn new(stream: &'a mut TcpStream, next: Next, written: &'a AtomicU64) -> Wire<'a> {
        let budget = match next {
            Next::OneRequest(len) => Some(len),
            Next::Rest => None,
        };
        Wire { stream, budget, budget_spent: false, written, grace: None }
    }
}

impl AsyncRead for Wire<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.budget == Some(0) {
            match self.next_request(cx) {
                Poll::Ready(Some(len)) => self.budget = Some(len),
                Poll::Ready(None) => {
                    self.budget_spent = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let limit = self.budget.unwrap_or(usize::MAX).min(buf.remaining());
        let before = buf.filled().len();
        // Read directly first: the gate saw these bytes in the socket, and made tokio forget it
        // was readable, so tokio's own read would wait for bytes that already arrived.
        let unfilled = buf.initialize_unfilled_to(limit);
        // SAFETY: recv writes at most `unfilled.len()` bytes into `unfilled`.
        let n = unsafe {
            libc::recv(self.stream.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len(), libc::MSG_DONTWAIT)
        };
        let result = if n >= 0 {
            buf.advance(n as usize);
            Poll::Ready(Ok(()))
        } else {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::WouldBlock {
                return Poll::Ready(Err(error));
            }
            let mut limited = buf.take(limit);
            let result = Pin::new(&mut *self.stream).poll_read(cx, &mut limited);
            let n = limited.filled().len();
            buf.set_filled(before + n); // initialised above, up to `limit`
            result
        };
        let read = buf.filled().len() - before;
        if let Some(budget) = &mut self.budget {
            *budget -= read;
        }
        result
    }
}

impl Wire<'_> {
    /// The length of the next whole bodiless request once it is in the socket; `None` when the
    /// grace ends first, or the next request is anything else (the gate deals with it).
    fn next_request(&mut self, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        loop {
            forget_readiness(self.stream);
            match peek(self.stream) {
                Peeked::Ready(Next::OneRequest(len)) => {
                    self.grace = None;
                    return Poll::Ready(Some(len));
                }
                Peeked::Nothing => {}
                _ => return Poll::Ready(None),
            }
            let grace = self.grace.get_or_insert_with(|| Box::pin(tokio::time::sleep(NEXT_REQUEST_GRACE)));
            if grace.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            if self.stream.poll_read_ready(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut *self.stream).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut *self.stream).poll_write_vectored(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // the connection's owner closes it, or serves the next request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_ready_at_its_empty_line_and_never_before() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(judge(get), Peeked::Ready(Next::OneRequest(get.len())));
        for cut in 1..get.len() {
            assert_eq!(judge(&get[..cut]), Peeked::Partial(cut), "{cut}");
        }
        // Pipelined: only the first request is handed over.
        let two = [&get[..], &get[..]].concat();
        assert_eq!(judge(&two), Peeked::Ready(Next::OneRequest(get.len())));
        // Bare LF, which hyper accepts too.
        assert_eq!(judge(b"GET / HTTP/1.1\nHost: x\n\nrest"), Peeked::Ready(Next::OneRequest(24)));
    }

    #[test]
    fn bodies_and_oversize_heads_go_to_hyper_whole() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\ncontent-LENGTH: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            assert_eq!(judge(head), Peeked::Ready(Next::Rest), "{}", String::from_utf8_lossy(head));
        }
        // A header merely mentioning a length is not a body.
        let mention = b"GET / HTTP/1.1\r\nX-Content-Length: 5\r\n\r\n";
        assert_eq!(judge(mention), Peeked::Ready(Next::OneRequest(mention.len())));
        let endless = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; MAX_HEAD_BYTES]].concat();
        assert_eq!(judge(&endless), Peeked::Ready(Next::Rest));
        assert_eq!(judge(&endless[..MAX_HEAD_BYTES]), Peeked::Partial(MAX_HEAD_BYTES));
    }
}
