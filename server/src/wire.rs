//! One connection's socket between requests and under hyper: the request-head gate, and the read
//! budget that hands hyper one request at a time.
//!
//! Memory is the point. hyper gives every connection it drives an 8 KiB read buffer and a write
//! buffer, so a connection parked in hyper (a slow head, an idle keep-alive) costs ~20 KiB. Here a
//! connection is handed to hyper only once a whole request head is in the kernel's socket buffer,
//! found by peeking (nothing is read, so a slow head costs us no buffer at all). hyper then keeps
//! it for the client's next requests only while they come quickly (10 ms): when it asks for more
//! and nothing comes, it is told the peer closed, finishes, and is dropped with its buffers, and
//! the next request starts at the gate again. Keep-alive is unchanged for the client; requests
//! with a body (or a head too large to find the end of) are left to hyper whole, and answered
//! with `Connection: close`.
//!
//! The peek is paid only where it decides something: for a connection's first request, after an
//! idle pause, and for every request when the server is near its connection cap. A busy
//! keep-alive client on a server with room reads straight into hyper's buffer (see `Wire`).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::conns::{Entry, Phase};

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

/// What is in the socket now, into `into` (left uninitialised beyond what arrives), without
/// waiting; `flags` as recv(2) takes them. Not through tokio, which would wait for readiness it
/// may have been told to forget (`forget_readiness`).
fn recv_now(stream: &TcpStream, into: &mut [MaybeUninit<u8>], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: recv writes at most `into.len()` bytes into `into`.
    let n = unsafe { libc::recv(stream.as_raw_fd(), into.as_mut_ptr().cast(), into.len(), flags | libc::MSG_DONTWAIT) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Looks at what the peer has sent without reading it.
pub fn peek(stream: &TcpStream) -> Peeked {
    // Not zeroed: a peek per request would otherwise clear 8 KiB for every request served.
    let mut buf = [MaybeUninit::<u8>::uninit(); MAX_HEAD_BYTES + 1];
    match recv_now(stream, &mut buf, libc::MSG_PEEK) {
        Ok(0) => Peeked::Closed,
        // SAFETY: recv initialised the first `n` bytes.
        Ok(n) => judge(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) }),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Peeked::Nothing,
        Err(_) => Peeked::Closed,
    }
}

/// Whether `bytes` (the start of what the peer sent) hold a whole request head, and how to serve it.
/// One pass from line to line: this runs on every request.
pub fn judge(bytes: &[u8]) -> Peeked {
    let named = |line: &[u8], name: &[u8]| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name);
    let mut has_body = false;
    let mut line_start = 0;
    while let Some(length) = bytes[line_start..].iter().position(|&b| b == b'\n') {
        let line = &bytes[line_start..line_start + length];
        let next = line_start + length + 1;
        // An empty line after the request line ends the head (hyper takes a bare LF too).
        if line_start > 0 && (line.is_empty() || line == b"\r") {
            if next > MAX_HEAD_BYTES {
                break;
            }
            return Peeked::Ready(if has_body { Next::Rest } else { Next::OneRequest(next) });
        }
        has_body |= named(line, b"content-length:") || named(line, b"transfer-encoding:");
        line_start = next;
    }
    if bytes.len() > MAX_HEAD_BYTES { Peeked::Ready(Next::Rest) } else { Peeked::Partial(bytes.len()) }
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

/// Whether `bytes`, starting at a request boundary, end at one too.
#[derive(Debug, PartialEq)]
pub enum Split {
    /// Whole bodiless requests, and nothing after them.
    Whole,
    /// Whole bodiless requests, then the start of a head from this offset.
    Partial(usize),
    /// A request with a body, or a head too large to find the end of.
    Rest,
}

pub fn split_requests(bytes: &[u8]) -> Split {
    let mut at = 0;
    while at < bytes.len() {
        match judge(&bytes[at..]) {
            Peeked::Ready(Next::OneRequest(len)) => at += len,
            Peeked::Ready(Next::Rest) => return Split::Rest,
            _ => return Split::Partial(at),
        }
    }
    Split::Whole
}

/// How long hyper keeps a connection after answering, for the client's next request. A busy
/// client (a benchmark, a proxy's pool) sends it within a round trip, and rebuilding hyper's
/// buffers for every request costs page faults under musl's allocator; an idle one goes back to
/// the gate, where it holds no buffer.
const NEXT_REQUEST_GRACE: Duration = Duration::from_millis(10);

/// The socket as hyper sees it, one whole request at a time: once a request's bytes are read, the
/// next requests are handed over if they arrive within `NEXT_REQUEST_GRACE`, else reads end with
/// an end of stream (so hyper, idle after its answer, finishes). Shutdown is left to the owner.
///
/// How the next requests are handed over depends on how full the server is. Near its cap, each is
/// peeked at first, as at the gate, and hyper gets exactly its bytes. Far from it, hyper reads
/// them straight into the buffer it already holds (a peek per request is a third of the system
/// calls of a keep-alive request), and what it read is judged afterwards: if a head was cut short,
/// the connection counts as a slow head (evictable, under the head timeout) until the rest comes.
pub struct Wire<'a> {
    pub stream: &'a mut TcpStream,
    entry: Entry<'a>,
    /// Bytes hyper may still read; `None`: no limit.
    budget: Option<usize>,
    /// hyper was told the stream ended because the budget was spent: the connection lives on.
    pub budget_spent: bool,
    /// Set once hyper has read past a request boundary into a body or an endless head: the answer
    /// must close the connection, which cannot come back to the gate.
    closing: &'a AtomicBool,
    /// The start of a head hyper has read and not yet seen the end of (read straight, far from
    /// the cap); empty at a request boundary.
    pending_head: Vec<u8>,
    /// Runs while hyper waits for the next request; kept between requests and reset.
    grace: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// The last read found the socket emptied (fewer bytes than there was room for) and tokio was
    /// told to forget its readiness: the next read waits for readiness instead of trying a recv
    /// that would only fail (one system call per keep-alive request, as tokio's own reads save).
    drained: bool,
}

impl<'a> Wire<'a> {
    pub fn new(stream: &'a mut TcpStream, entry: Entry<'a>, next: Next, closing: &'a AtomicBool) -> Wire<'a> {
        let budget = match next {
            Next::OneRequest(len) => Some(len),
            Next::Rest => None,
        };
        closing.store(budget.is_none(), Ordering::Relaxed);
        Wire {
            stream,
            entry,
            budget,
            budget_spent: false,
            closing,
            pending_head: Vec::new(),
            grace: None,
            waiting: false,
            drained: false,
        }
    }
}

impl AsyncRead for Wire<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.budget == Some(0) && (!self.pending_head.is_empty() || self.entry.roomy()) {
            return self.read_straight(cx, buf);
        }
        // Peeked at and read exactly from here on, which can leave bytes in the socket: a later
        // straight read must try the socket before it waits.
        self.drained = false;
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
        let result = self.read_within(cx, buf, limit);
        let read = buf.filled().len() - before;
        if let Some(budget) = &mut self.budget {
            *budget -= read;
        }
        result
    }
}

impl Wire<'_> {
    /// Reads at most `limit` bytes into `buf`.
    fn read_within(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>, limit: usize) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        // Read directly first: the gate saw these bytes in the socket, and made tokio forget it
        // was readable, so tokio's own read would wait for bytes that already arrived.
        let unfilled = buf.initialize_unfilled_to(limit);
        // SAFETY: initialised bytes are valid `MaybeUninit`s, and recv only writes bytes.
        let unfilled = unsafe { &mut *(unfilled as *mut [u8] as *mut [MaybeUninit<u8>]) };
        match recv_now(self.stream, unfilled, 0) {
            Ok(n) => {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
            Err(_) => {}
        }
        let mut limited = buf.take(limit);
        let result = Pin::new(&mut *self.stream).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.set_filled(before + n); // initialised above, up to `limit`
        result
    }

    /// Far from the cap, at a request boundary or inside a head: hyper reads what there is, and
    /// the bytes are judged after.
    fn read_straight(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining();
        let received = if self.drained {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            // Not initialised first: that would clear hyper's whole buffer for every request.
            // SAFETY: recv writes only bytes, and nothing here reads the rest.
            recv_now(self.stream, unsafe { buf.unfilled_mut() }, 0)
        };
        let n = match received {
            Ok(n) => n,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
            Err(_) => {
                if !self.drained {
                    forget_readiness(self.stream);
                }
                self.drained = false;
                // The grace is for a client between requests; one inside a head has the head timeout.
                if self.pending_head.is_empty() && self.grace_over(cx) {
                    self.budget_spent = true;
                    return Poll::Ready(Ok(()));
                }
                return match self.stream.poll_read_ready(cx) {
                    // Bytes arrived since the read: read them.
                    Poll::Ready(Ok(())) => self.read_straight(cx, buf),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        if n > 0 && n < room {
            // The socket is empty: bytes arriving from here on raise a new readiness event (tokio
            // registers sockets edge-triggered, and this one thread runs the reactor only between
            // polls), so forgetting the old one loses nothing.
            forget_readiness(self.stream);
            self.drained = true;
        }
        self.waiting = false;
        // SAFETY: recv initialised the first `n` bytes of the unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        if n > 0 {
            self.judge_read(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }

    /// Follows request boundaries through bytes hyper read straight.
    fn judge_read(&mut self, read: &[u8]) {
        let was_in_head = !self.pending_head.is_empty();
        let split = if was_in_head {
            self.pending_head.extend_from_slice(read);
            split_requests(&self.pending_head)
        } else {
            split_requests(read)
        };
        match split {
            Split::Whole => {
                self.pending_head = Vec::new();
                if was_in_head {
                    self.entry.enter(Phase::Serving);
                }
            }
            Split::Partial(at) => {
                if was_in_head {
                    self.pending_head.drain(..at);
                } else {
                    self.pending_head = read[at..].to_vec();
                }
                if !was_in_head || at > 0 {
                    self.entry.enter(Phase::Head);
                }
            }
            Split::Rest => {
                self.pending_head = Vec::new();
                self.budget = None;
                self.closing.store(true, Ordering::Relaxed);
                if was_in_head {
                    self.entry.enter(Phase::Serving);
                }
            }
        }
    }

    /// Whether the wait for the next request has lasted the grace; starts the wait if it has not.
    fn grace_over(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + NEXT_REQUEST_GRACE;
            match &mut self.grace {
                Some(grace) => grace.as_mut().reset(deadline),
                None => self.grace = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.grace.as_mut().is_some_and(|grace| grace.as_mut().poll(cx).is_ready())
    }

    /// The length of the next whole bodiless request once it is in the socket; `None` when the
    /// grace ends first, or the next request is anything else (the gate deals with it).
    fn next_request(&mut self, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        loop {
            forget_readiness(self.stream);
            match peek(self.stream) {
                Peeked::Ready(Next::OneRequest(len)) => {
                    self.waiting = false;
                    return Poll::Ready(Some(len));
                }
                Peeked::Nothing => {}
                _ => return Poll::Ready(None),
            }
            if self.grace_over(cx) {
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
            self.entry.wrote(n);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut *self.stream).poll_write_vectored(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            self.entry.wrote(n);
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
    fn read_bytes_are_followed_from_request_to_request() {
        let get = &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..];
        assert_eq!(split_requests(get), Split::Whole);
        assert_eq!(split_requests(&[get, get, get].concat()), Split::Whole);
        assert_eq!(split_requests(&get[..7]), Split::Partial(0));
        assert_eq!(split_requests(&[get, &get[..7]].concat()), Split::Partial(get.len()));
        let post = &b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"[..];
        assert_eq!(split_requests(&[get, post].concat()), Split::Rest);
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
