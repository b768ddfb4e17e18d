//! The table of open connections: the cap, who is evicted at it, and the shedding log.
//!
//! A health check must get through whatever the flood, and a flood must not grow memory without
//! bound. Leaving new connections in the kernel's backlog while the cap is held (the old design)
//! fails the first: a probe queues behind thousands of slow clients and times out. So the server
//! always accepts, and at the cap it evicts instead:
//!
//! - Every connection is in one phase: waiting with nothing sent (a fresh or idle keep-alive
//!   connection), waiting on a request head that has begun but not ended, being served, or holding
//!   an answer the client is not taking (a slow reader). Each phase records when it began.
//! - At the cap, a new connection evicts the stalest connections that send or read nothing useful:
//!   the earliest-begun of those waiting, with a head pending, or not draining. A connection being
//!   served is never evicted; its answer takes microseconds unless the client stops reading, and
//!   then it becomes a slow reader. Nor is a new connection that has had less than a second to
//!   speak: when connections arrive faster than they are answered, the oldest new one is the next
//!   to be answered, and evicting it would drop real requests in arrival order. Eviction works in
//!   small batches (1/64 of the cap) so that a flood at a large cap costs one scan of the table
//!   per batch, not per connection.
//! - Loopback peers (the in-image probe, and `sh`/`curl`/`wget` health checks run by ECS) are
//!   treated like anyone else while something is evictable, so a flood from loopback (or a test
//!   tool on loopback) is bounded by the same cap. Only when nothing is evictable do they get a
//!   small reserve above the cap, so they do not wait. Anyone else then waits in the kernel's
//!   backlog for a slot, as before; that takes more clients than the cap all being answered or
//!   all connecting within the last second, which no slow-client flood does.
//! - Connections that wait for a request head hold no buffer of ours (`wire.rs` only peeks at the
//!   socket), so the cap can be large: measured per connection, see README "Limits".
//!
//! - One reaper task, not a timer per connection, enforces the timeouts (a head within 10 s of its
//!   first byte, 75 s idle) and the slow-read bound, scanning the table four times a second. It
//!   and eviction close a connection by shutting its socket down, which wakes the connection's
//!   task with an end of stream; so a waiting task holds nothing but its socket's readiness.
//!
//! Evictions and slow readers cut are counted, and at most one line a second says how many and
//! why; a flood never logs a line per connection.

use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Connections from loopback admitted above the cap when nothing can be evicted.
pub const LOOPBACK_RESERVE: usize = 64;
/// Descriptors kept free for listeners, the probe's own socket, stdio and the rest.
const SPARE_DESCRIPTORS: usize = 64;

/// What a connection is doing, for eviction. Stored in an `AtomicU8`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    /// Accepted, nothing sent yet.
    Fresh = 0,
    /// Nothing sent since the last answer (keep-alive).
    Idle = 1,
    /// A request head has begun and not ended.
    Head = 2,
    /// A request is being answered.
    Serving = 3,
    /// An answer sits unsent because the client is not reading it.
    SlowReader = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Head,
            3 => Phase::Serving,
            _ => Phase::SlowReader,
        }
    }
}

/// How long a new connection may stay silent before it can be evicted. When connections arrive
/// faster than they are answered, the oldest new one is the next to be answered, not a stale one:
/// evicting it would drop real requests (a health check among them) in arrival order.
const FRESH_GRACE_MS: u64 = 1000;

/// How often the reaper looks at every connection's deadlines and unsent answers.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// A client must take `MIN_DRAIN` bytes of an answer waiting for it (or all of it) within
/// `DRAIN_WINDOW`, or it is a slow reader (slowhttptest -X) and is cut. Any real client takes a
/// placeholder's few-KiB answer within a round trip; and a cut only ends keep-alive, as the
/// kernel still delivers an answer already handed to it.
pub const DRAIN_WINDOW: Duration = Duration::from_secs(1);
pub const MIN_DRAIN: u64 = 1024;

/// Timeouts the reaper enforces.
#[derive(Clone, Copy)]
pub struct Timeouts {
    /// From a request head's first byte to its end.
    pub header: Duration,
    /// With nothing sent, on a new connection or after an answer.
    pub idle: Duration,
}

/// One open connection as the table sees it. Times are milliseconds since the table's epoch.
struct Conn {
    slot: usize,
    socket: RawFd,
    phase: AtomicU8,
    /// When the phase began.
    since: AtomicU64,
    /// When the reaper closes it; 0: never.
    deadline: AtomicU64,
    /// Closed by the server (evicted, timed out, cut, or stopping), and out of the table.
    removed: AtomicBool,
    /// Bytes written, counted by `wire::Wire`, for the drain check.
    written: AtomicU64,
    /// When the reaper next looks at the unsent bytes; 0: no answer is being watched.
    look_at: AtomicU64,
    /// Unsent and written bytes at the last look, when `looked`.
    unsent_then: AtomicU64,
    written_then: AtomicU64,
    looked: AtomicBool,
}

struct Slots {
    entries: Vec<Option<Arc<Conn>>>,
    free: Vec<usize>,
    open: usize,
}

pub struct Table {
    cap: usize,
    timeouts: Timeouts,
    epoch: Instant,
    slots: Mutex<Slots>,
    freed: Notify,
    /// Wakes the reaper when the table stops being empty.
    occupied: Notify,
    stopping: AtomicBool,
    /// Evictions since the last report, by the phase they were evicted in.
    evicted: [AtomicU64; 5],
    cut_readers: AtomicU64,
    shed: Notify,
}

impl Table {
    pub fn new(cap: usize, timeouts: Timeouts) -> Arc<Table> {
        Arc::new(Table {
            cap: cap.max(1),
            timeouts,
            epoch: Instant::now(),
            slots: Mutex::new(Slots { entries: Vec::new(), free: Vec::new(), open: 0 }),
            freed: Notify::new(),
            occupied: Notify::new(),
            stopping: AtomicBool::new(false),
            evicted: Default::default(),
            cut_readers: AtomicU64::new(0),
            shed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned in the
        // shipped binary; tests run with unwinding and would rather see the table.
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Whether a new connection would get a slot now, evicting the stalest idle or slow ones at
    /// the cap; false when nothing can be evicted (and, for loopback, the reserve is used up too).
    pub fn make_room(&self, loopback: bool) -> bool {
        let mut slots = self.lock();
        if slots.open >= self.cap {
            self.evict_stalest(&mut slots);
        }
        slots.open < if loopback { self.cap + LOOPBACK_RESERVE } else { self.cap }
    }

    /// Enters a connection that `make_room` found room for.
    pub fn admit(self: &Arc<Self>, stream: TcpStream) -> Lease {
        let mut slots = self.lock();
        let slot = slots.free.pop().unwrap_or_else(|| {
            slots.entries.push(None);
            slots.entries.len() - 1
        });
        let now = self.now_ms();
        let conn = Arc::new(Conn {
            slot,
            socket: stream.as_raw_fd(),
            phase: AtomicU8::new(Phase::Fresh as u8),
            since: AtomicU64::new(now),
            deadline: AtomicU64::new(now + self.timeouts.idle.as_millis() as u64),
            removed: AtomicBool::new(false),
            written: AtomicU64::new(0),
            look_at: AtomicU64::new(0),
            unsent_then: AtomicU64::new(0),
            written_then: AtomicU64::new(0),
            looked: AtomicBool::new(false),
        });
        slots.entries[slot] = Some(conn.clone());
        slots.open += 1;
        if slots.open == 1 {
            self.occupied.notify_one();
        }
        Lease { table: self.clone(), conn, stream }
    }

    /// Takes a connection out of the table and shuts its socket, which ends its task. The socket
    /// is still open: a connection's `Lease` leaves the table before its socket closes.
    fn remove(&self, slots: &mut Slots, slot: usize) -> Option<Phase> {
        let conn = slots.entries[slot].take()?;
        conn.removed.store(true, Ordering::Relaxed);
        // SAFETY: shutdown on a descriptor this table knows to be open; it only changes socket state.
        unsafe { libc::shutdown(conn.socket, libc::SHUT_RDWR) };
        slots.free.push(slot);
        slots.open -= 1;
        self.freed.notify_one();
        Some(Phase::from_u8(conn.phase.load(Ordering::Relaxed)))
    }

    fn evict_stalest(&self, slots: &mut Slots) {
        let batch = (self.cap / 64).clamp(1, 64).max(slots.open + 1 - self.cap);
        // The `batch` earliest phase starts: a max-heap whose top is the latest kept so far.
        let mut stalest: BinaryHeap<(u64, usize)> = BinaryHeap::with_capacity(batch + 1);
        let now = self.now_ms();
        for conn in slots.entries.iter().flatten() {
            let since = conn.since.load(Ordering::Relaxed);
            match Phase::from_u8(conn.phase.load(Ordering::Relaxed)) {
                Phase::Serving => continue,
                Phase::Fresh if since + FRESH_GRACE_MS > now => continue,
                _ => {}
            }
            stalest.push((since, conn.slot));
            if stalest.len() > batch {
                stalest.pop();
            }
        }
        let mut any = false;
        for (_, slot) in stalest {
            if let Some(phase) = self.remove(slots, slot) {
                self.evicted[phase as usize].fetch_add(1, Ordering::Relaxed);
                any = true;
            }
        }
        if any {
            self.shed.notify_one();
        }
    }

    /// Closes connections past their deadline and readers not taking their answers, for as long
    /// as the server runs.
    pub async fn reap(self: Arc<Self>) {
        loop {
            if self.open() == 0 {
                self.occupied.notified().await;
            }
            tokio::time::sleep(REAP_EVERY).await;
            self.reap_once();
        }
    }

    fn reap_once(&self) {
        let mut slots = self.lock();
        let now = self.now_ms();
        let window = DRAIN_WINDOW.as_millis() as u64;
        for slot in 0..slots.entries.len() {
            let Some(conn) = slots.entries[slot].clone() else { continue };
            let deadline = conn.deadline.load(Ordering::Relaxed);
            if deadline != 0 && now >= deadline {
                self.remove(&mut slots, slot);
                continue;
            }
            let look_at = conn.look_at.load(Ordering::Relaxed);
            if look_at == 0 || now < look_at {
                continue;
            }
            let unsent = unsent_bytes(conn.socket);
            let written = conn.written.load(Ordering::Relaxed);
            if conn.looked.load(Ordering::Relaxed) && unsent > 0 {
                let before =
                    written - conn.written_then.load(Ordering::Relaxed) + conn.unsent_then.load(Ordering::Relaxed);
                if before.saturating_sub(unsent) < MIN_DRAIN {
                    self.remove(&mut slots, slot);
                    self.cut_readers.fetch_add(1, Ordering::Relaxed);
                    self.shed.notify_one();
                    continue;
                }
            }
            let phase = Phase::from_u8(conn.phase.load(Ordering::Relaxed));
            if unsent == 0 {
                conn.look_at.store(0, Ordering::Relaxed);
                conn.looked.store(false, Ordering::Relaxed);
                if phase == Phase::SlowReader {
                    conn.phase.store(Phase::Idle as u8, Ordering::Relaxed);
                }
            } else {
                conn.unsent_then.store(unsent, Ordering::Relaxed);
                conn.written_then.store(written, Ordering::Relaxed);
                conn.looked.store(true, Ordering::Relaxed);
                conn.look_at.store(now + window, Ordering::Relaxed);
                if matches!(phase, Phase::Idle | Phase::Serving) {
                    conn.since.store(now, Ordering::Relaxed);
                    conn.phase.store(Phase::SlowReader as u8, Ordering::Relaxed);
                }
            }
        }
    }

    /// Resolves when a connection closes (or was evicted).
    pub async fn slot_freed(&self) {
        self.freed.notified().await;
    }

    /// Closes every connection that is not answering a request; those that are finish first.
    pub fn stop_all(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let mut slots = self.lock();
        for slot in 0..slots.entries.len() {
            let serving = slots.entries[slot]
                .as_ref()
                .is_some_and(|conn| conn.phase.load(Ordering::Relaxed) == Phase::Serving as u8);
            if !serving {
                self.remove(&mut slots, slot);
            }
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub async fn until_empty(&self) {
        while self.open() > 0 {
            self.freed.notified().await;
        }
    }

    /// Logs what was shed, at most once a second, for as long as the server runs.
    pub async fn report_shedding(self: Arc<Self>) {
        loop {
            self.shed.notified().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let take = |counter: &AtomicU64| counter.swap(0, Ordering::Relaxed);
            let [fresh, idle, head, _, slow] = [0, 1, 2, 3, 4].map(|phase| take(&self.evicted[phase]));
            let idle = fresh + idle;
            let cut = take(&self.cut_readers);
            // A wake-up stored while the last line was written may find nothing new.
            if head + idle + slow + cut > 0 {
                eprintln!("{}", shedding_line(head, idle, slow, cut, self.open()));
            }
        }
    }
}

fn shedding_line(heads: u64, idle: u64, slow_readers: u64, cut: u64, open: usize) -> String {
    let evicted = heads + idle + slow_readers;
    let cut_part = format!("cut {cut} readers not draining their answers");
    let what = match (evicted, cut) {
        (0, _) => format!("{cut_part} in the last 1s"),
        _ => {
            let mut what = format!(
                "evicted {evicted} connections in the last 1s ({heads} slow request heads, {idle} idle connections, \
                 {slow_readers} slow readers)"
            );
            if cut > 0 {
                what.push_str(&format!("; {cut_part}"));
            }
            what
        }
    };
    format!("shedding: {what}; {open} open")
}

/// A connection's entry in the table, as the code that holds its socket sees it: what phase it is
/// in, what was written to it, and how full the table is.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    table: &'a Table,
    conn: &'a Conn,
}

impl Entry<'_> {
    /// Records that the connection entered `phase` now, with that phase's deadline.
    pub fn enter(&self, phase: Phase) {
        let now = self.table.now_ms();
        let timeout = match phase {
            Phase::Fresh | Phase::Idle => Some(self.table.timeouts.idle),
            Phase::Head => Some(self.table.timeouts.header),
            Phase::Serving | Phase::SlowReader => None, // the drain check watches these
        };
        self.conn.since.store(now, Ordering::Relaxed);
        self.conn.phase.store(phase as u8, Ordering::Relaxed);
        self.conn.deadline.store(timeout.map_or(0, |t| now + t.as_millis() as u64), Ordering::Relaxed);
        if phase == Phase::Serving && self.conn.look_at.load(Ordering::Relaxed) == 0 {
            // An answer that takes this long is stuck on a client that does not read.
            self.conn.look_at.store(now + DRAIN_WINDOW.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Counts bytes written to the socket, for the drain check.
    pub fn wrote(&self, bytes: usize) {
        self.conn.written.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Whether fewer than half of the table's slots are taken: far enough from the cap that a
    /// connection may hold hyper's buffers while it waits for its next request.
    pub fn roomy(&self) -> bool {
        self.table.open() < self.table.cap / 2
    }
}

/// A connection and its place in the table. Dropping it leaves the table first, then closes the
/// socket, so the table never shuts down a descriptor that was closed and reused.
pub struct Lease {
    table: Arc<Table>,
    conn: Arc<Conn>,
    pub stream: TcpStream,
}

impl Lease {
    /// Records that the connection entered `phase` now, with that phase's deadline.
    pub fn enter(&self, phase: Phase) {
        self.entry().enter(phase);
    }

    /// The connection's entry in the table, for what hyper's side of it records.
    pub fn entry(&self) -> Entry<'_> {
        Entry { table: &self.table, conn: &self.conn }
    }

    /// Idle, and closed by the reaper after `within` at the latest.
    pub fn close_within(&self, within: Duration) {
        self.enter(Phase::Idle);
        self.conn.deadline.store(self.table.now_ms() + within.as_millis() as u64, Ordering::Relaxed);
    }

    /// Has the reaper check, soon, that the client takes the answer just written.
    pub fn watch_answer(&self) {
        if self.conn.look_at.load(Ordering::Relaxed) == 0 || !self.conn.looked.load(Ordering::Relaxed) {
            self.conn.look_at.store(self.table.now_ms(), Ordering::Relaxed);
        }
    }

    /// The socket for hyper to read and write, and the entry that records what it does.
    pub fn socket_and_entry(&mut self) -> (&mut TcpStream, Entry<'_>) {
        (&mut self.stream, Entry { table: &self.table, conn: &self.conn })
    }

    /// Closed by the server: evicted, timed out, cut as a slow reader, or stopping.
    pub fn removed(&self) -> bool {
        self.conn.removed.load(Ordering::Relaxed)
    }

    pub fn stopping(&self) -> bool {
        self.table.stopping()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slots = self.table.lock();
        // A removed connection's slot was freed then, and may hold another by now.
        if !self.conn.removed.load(Ordering::Relaxed) {
            slots.entries[self.conn.slot] = None;
            slots.free.push(self.conn.slot);
            slots.open -= 1;
            self.table.freed.notify_one();
        }
    }
}

/// Bytes written to a socket that the peer has not acknowledged yet (SIOCOUTQ).
fn unsent_bytes(socket: RawFd) -> u64 {
    let mut unsent: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int.
    let ok = unsafe { libc::ioctl(socket, libc::TIOCOUTQ as _, &mut unsent) } == 0;
    if ok { unsent.max(0) as u64 } else { 0 }
}

/// Raises the open-file soft limit to the hard limit, and returns how many connections fit in it.
pub fn raise_open_file_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: both calls only read or write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return usize::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX).saturating_sub(SPARE_DESCRIPTORS + LOOPBACK_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts { header: Duration::from_secs(10), idle: Duration::from_secs(75) };

    /// Real loopback connections to enter in a table.
    struct Peers {
        listener: std::net::TcpListener,
        clients: Vec<std::net::TcpStream>,
    }

    impl Peers {
        fn new() -> Peers {
            Peers { listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(), clients: Vec::new() }
        }

        fn arrive(&mut self, table: &Arc<Table>, loopback: bool) -> Option<Lease> {
            if !table.make_room(loopback) {
                return None;
            }
            self.clients.push(std::net::TcpStream::connect(self.listener.local_addr().unwrap()).unwrap());
            let (accepted, _) = self.listener.accept().unwrap();
            accepted.set_nonblocking(true).unwrap();
            Some(table.admit(TcpStream::from_std(accepted).unwrap()))
        }
    }

    fn phase_of(table: &Table, lease: &Lease) -> Option<Phase> {
        table.lock().entries[lease.conn.slot].as_ref().map(|c| Phase::from_u8(c.phase.load(Ordering::Relaxed)))
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_stalest_idle_or_slow_connection_is_evicted_never_one_being_served() {
        let (table, mut peers) = (Table::new(3, TIMEOUTS), Peers::new());
        let serving = peers.arrive(&table, false).unwrap();
        serving.enter(Phase::Serving);
        tokio::time::advance(Duration::from_millis(10)).await;
        let old_head = peers.arrive(&table, false).unwrap();
        old_head.enter(Phase::Head);
        tokio::time::advance(Duration::from_millis(10)).await;
        let newer_idle = peers.arrive(&table, false).unwrap();
        newer_idle.enter(Phase::Idle);
        tokio::time::advance(Duration::from_millis(10)).await;

        let newcomer = peers.arrive(&table, false).expect("admitted by eviction");
        assert!(old_head.removed() && !serving.removed() && !newer_idle.removed());
        assert_eq!(phase_of(&table, &serving), Some(Phase::Serving));
        assert_eq!(table.open(), 3);
        assert_eq!(table.evicted[Phase::Head as usize].load(Ordering::Relaxed), 1);
        // Evicted means shut down: its task sees the end of the stream.
        let ready = old_head.stream.ready(tokio::io::Interest::READABLE).await.unwrap();
        assert!(ready.is_read_closed());
        drop(old_head); // the evicted task ends: its freed slot is not freed twice
        assert_eq!(table.open(), 3);
        drop(newcomer);
        assert_eq!(table.open(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn when_nothing_can_be_evicted_only_loopback_gets_in_up_to_the_reserve() {
        let (table, mut peers) = (Table::new(2, TIMEOUTS), Peers::new());
        let mut held = Vec::new();
        for loopback in [false, false] {
            let lease = peers.arrive(&table, loopback).unwrap();
            lease.enter(Phase::Serving);
            held.push(lease);
        }
        assert!(peers.arrive(&table, false).is_none(), "no one to evict: a remote client waits");
        for _ in 0..LOOPBACK_RESERVE {
            let lease = peers.arrive(&table, true).expect("loopback does not wait");
            lease.enter(Phase::Serving);
            held.push(lease);
        }
        assert!(peers.arrive(&table, true).is_none(), "the reserve is bounded");
        assert_eq!(table.open(), 2 + LOOPBACK_RESERVE);
        assert!(held.iter().all(|lease| !lease.removed()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_loopback_flood_is_bounded_by_the_cap() {
        let (table, mut peers) = (Table::new(20, TIMEOUTS), Peers::new());
        let mut flood = Vec::new();
        for _ in 0..200 {
            let lease = peers.arrive(&table, true).unwrap();
            lease.enter(Phase::Head);
            flood.push(lease);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(table.open(), 20);
        assert_eq!(flood.iter().filter(|lease| !lease.removed()).count(), 20);
        assert!(flood[180..].iter().all(|lease| !lease.removed()), "the stalest go first");
    }

    #[tokio::test(start_paused = true)]
    async fn new_connections_are_not_evicted_before_they_could_speak() {
        let (table, mut peers) = (Table::new(2, TIMEOUTS), Peers::new());
        let first = peers.arrive(&table, false).unwrap();
        let _second = peers.arrive(&table, false).unwrap();
        assert!(peers.arrive(&table, false).is_none(), "both just arrived: the newcomer waits");
        tokio::time::advance(Duration::from_millis(FRESH_GRACE_MS + 1)).await;
        let _third = peers.arrive(&table, false).expect("a silent connection past its grace is evicted");
        assert!(first.removed());
    }

    #[tokio::test(start_paused = true)]
    async fn the_reaper_closes_slow_heads_and_idle_connections_at_their_deadlines() {
        let (table, mut peers) = (Table::new(10, TIMEOUTS), Peers::new());
        let head = peers.arrive(&table, false).unwrap();
        head.enter(Phase::Head);
        let idle = peers.arrive(&table, false).unwrap();
        let serving = peers.arrive(&table, false).unwrap();
        serving.enter(Phase::Serving);
        tokio::time::advance(TIMEOUTS.header + REAP_EVERY).await;
        table.reap_once();
        assert!(head.removed() && !idle.removed());
        tokio::time::advance(TIMEOUTS.idle).await;
        table.reap_once();
        assert!(idle.removed() && !serving.removed());
    }

    #[test]
    fn the_shedding_line_says_how_many_and_why() {
        assert_eq!(
            shedding_line(640, 172, 0, 0, 1024),
            "shedding: evicted 812 connections in the last 1s (640 slow request heads, 172 idle connections, 0 slow readers); 1024 open"
        );
        assert_eq!(
            shedding_line(0, 0, 0, 3, 10),
            "shedding: cut 3 readers not draining their answers in the last 1s; 10 open"
        );
        assert!(
            shedding_line(1, 0, 0, 3, 10)
                .ends_with("0 slow readers); cut 3 readers not draining their answers; 10 open")
        );
    }
}
