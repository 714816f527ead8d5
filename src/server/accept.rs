//! The one accept loop every listener runs (gateway workers, admin, `tollgate dev`'s servers):
//! a cap on connections served at once, an optional
//! cap per client address (past it, the new connection is closed at once), and a back-off when
//! accepting fails (out of file descriptors: waiting, not spinning, lets connections close).
//!
//! At the cap, clients that speak win over sockets that do not. In HTTP/1, h2c and TLS alike the
//! client speaks first, at once, so a new connection at the cap whose first bytes are not already
//! there (one peek) is put on probation: if they arrive within a grace (a quarter of `header_read_timeout`, at most [`SHED_AFTER_MAX`]),
//! it takes the slot of the oldest connection that has not sent a request yet and is past the
//! same grace (as nginx reuses idle keep-alive connections when it runs out); if they do not, it
//! is closed. Otherwise sockets that send nothing would fill the slots, and every legitimate
//! client would wait in the kernel's queue until `header_read_timeout` frees one; and a silent
//! newcomer never sheds anyone, so sockets that reconnect as soon as they are closed cannot turn
//! the gateway into a loop of accepts and closes. A connection that has started is never shed;
//! when all have, a newcomer waits for a slot (at most one per worker waits accepted, the rest in
//! the kernel's backlog). Probation holds at most `max_connections` sockets more; when it is
//! full, new connections wait in the kernel's backlog.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio::time::Instant;

use super::connection::ConnectionState;

/// The first pause after a failed accept, doubled while failures go on, up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The longest grace at the cap: how long a newcomer has to speak, and an unstarted connection is
/// safe from being shed.
pub const SHED_AFTER_MAX: Duration = Duration::from_millis(250);
/// Newcomers that spoke on probation, on their way back to the accept loop.
const SPOKE_QUEUE: usize = 64;

/// What one listener admits; shared by the workers that accept on it.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    /// Places on probation (see the module's docs).
    probation: Arc<Semaphore>,
    per_ip: Option<Arc<PerAddress>>,
    unstarted: Arc<Unstarted>,
}

/// A connection accepted at the cap, not yet admitted.
struct Newcomer {
    stream: TcpStream,
    remote: SocketAddr,
    share: Option<Share>,
}

/// The connections admitted, oldest first, that may not have started yet (those that have, or
/// have ended, are skipped and pruned).
struct Unstarted {
    /// Prune when the queue is this long.
    prune_at: usize,
    /// How old a connection must be before it may be shed.
    grace: Duration,
    queue: Mutex<VecDeque<Weak<ConnectionState>>>,
}

/// Connections held per client address.
struct PerAddress {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's count against its address's cap, given back on drop.
struct Share(Arc<PerAddress>, IpAddr);

impl Drop for Share {
    fn drop(&mut self) {
        self.0.give_back(self.1);
    }
}

/// Held for a connection's life: its slot, its address's share, and the drain's tally.
pub struct Ticket {
    _slot: OwnedSemaphorePermit,
    _share: Option<Share>,
    _alive: mpsc::Sender<()>,
    state: Arc<ConnectionState>,
}

impl Ticket {
    /// The connection's state, which its driver and IO report to.
    pub fn state(&self) -> Arc<ConnectionState> {
        self.state.clone()
    }
}

impl Admission {
    /// `max`: connections at once; `per_ip`: per client address (0: no cap); `head_timeout`: the
    /// listener's `header_read_timeout`, which sets how long a new connection is safe from being
    /// shed.
    pub fn new(max: usize, per_ip: usize, head_timeout: Duration) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max)),
            probation: Arc::new(Semaphore::new(max)),
            per_ip: (per_ip > 0).then(|| {
                Arc::new(PerAddress {
                    cap: per_ip,
                    held: Mutex::new(HashMap::new()),
                })
            }),
            unstarted: Arc::new(Unstarted {
                prune_at: max.saturating_mul(2).saturating_add(16),
                grace: (head_timeout / 4).min(SHED_AFTER_MAX),
                queue: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Waits for a slot; at the cap, frees one by shedding (see the module's docs). While it
    /// waits it looks again at least every grace: a slot it freed may go to another worker's
    /// newcomer, and then this one needs another.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return Some(slot);
            }
            let next = self
                .unstarted
                .shed_oldest()
                .unwrap_or_else(|| Instant::now() + self.unstarted.grace);
            tokio::select! {
                slot = self.slots.clone().acquire_owned() => return slot.ok(),
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

impl Unstarted {
    fn push(&self, state: &Arc<ConnectionState>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= self.prune_at {
            queue.retain(|w| w.upgrade().is_some_and(|s| !s.is_started()));
        }
        queue.push_back(Arc::downgrade(state));
    }

    /// Sheds the oldest connection that has not started, if it is past its grace; else says when
    /// it will be (`None`: there is none to shed).
    fn shed_oldest(&self) -> Option<Instant> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = queue.front() {
            let Some(state) = entry.upgrade().filter(|s| !s.is_started()) else {
                queue.pop_front();
                continue;
            };
            let sheddable = state.origin() + self.grace;
            if Instant::now() < sheddable {
                return Some(sheddable);
            }
            queue.pop_front();
            state.shed();
            return None;
        }
        None
    }
}

impl PerAddress {
    fn take(&self, ip: IpAddr) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(ip).or_insert(0);
        if *count >= self.cap {
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, ip: IpAddr) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&ip);
            }
        }
    }
}

/// Tells connections to finish, and waits until they have.
pub struct Drain {
    watched: Mutex<Watched>,
    alive: mpsc::Sender<()>,
    gone: mpsc::Receiver<()>,
}

/// The connections a drain will tell to finish.
#[derive(Default)]
struct Watched {
    states: Vec<Weak<ConnectionState>>,
    /// The list is swept of closed connections when it reaches this length.
    sweep_at: usize,
    draining: bool,
}

/// The least length at which the list of watched connections is swept.
const SWEEP_AT: usize = 64;

impl Default for Drain {
    fn default() -> Self {
        let (alive, gone) = mpsc::channel(1);
        Drain {
            watched: Mutex::default(),
            alive,
            gone,
        }
    }
}

impl Drain {
    /// Tells `state`'s connection when to finish: at once if the drain has begun. Sweeping the
    /// closed ones when the list has doubled keeps it at most twice the open connections, at a
    /// constant cost per connection.
    pub fn watch(&self, state: &Arc<ConnectionState>) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if watched.draining {
            state.drain();
            return;
        }
        if watched.states.len() >= watched.sweep_at.max(SWEEP_AT) {
            watched.states.retain(|w| w.strong_count() > 0);
            watched.sweep_at = watched.states.len() * 2;
        }
        watched.states.push(Arc::downgrade(state));
    }

    /// Asks every connection to finish and waits up to `grace`; `true` if all did.
    pub async fn finish(self, grace: Duration) -> bool {
        let Drain {
            watched,
            alive,
            mut gone,
        } = self;
        {
            let mut watched = watched.lock().unwrap_or_else(|e| e.into_inner());
            watched.draining = true;
            for state in watched.states.iter().filter_map(Weak::upgrade) {
                state.drain();
            }
        }
        drop(alive);
        // `recv` answers `None` once every connection's ticket (holding a sender) is dropped.
        tokio::time::timeout(grace, gone.recv()).await.is_ok()
    }
}

/// Accepts on `listener` until the future is dropped, handing each admitted connection to
/// `serve` (which runs it in a task of its own and keeps the ticket until it closes).
pub async fn accept_loop<F>(
    listener: &TcpListener,
    admission: &Admission,
    drain: &Drain,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, Ticket),
{
    let mut backoff = BACKOFF_FIRST;
    let (spoke, mut spoken) = mpsc::channel(SPOKE_QUEUE);
    let mut admit = |newcomer: Newcomer, slot: OwnedSemaphorePermit| {
        let Newcomer {
            stream,
            remote,
            share,
        } = newcomer;
        let _ = stream.set_nodelay(true);
        let state = ConnectionState::new();
        admission.unstarted.push(&state);
        let ticket = Ticket {
            _slot: slot,
            _share: share,
            _alive: drain.alive.clone(),
            state,
        };
        serve(stream, remote, ticket);
    };
    loop {
        // Accept, then look for a slot: a worker waiting for a slot before accepting would hold
        // one while its own socket (each worker has one) may have nothing to accept, and leave
        // another worker's queued connections unserved.
        let speaker = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    backoff = BACKOFF_FIRST;
                    let Some(newcomer) = admission.newcomer(stream, remote) else {
                        continue;
                    };
                    match admission.slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            admit(newcomer, slot);
                            continue;
                        }
                        Err(TryAcquireError::Closed) => return,
                        // Its request is here already (the common case): no probation.
                        Err(TryAcquireError::NoPermits) if has_spoken(&newcomer.stream) => newcomer,
                        Err(TryAcquireError::NoPermits) => {
                            admission.probe(newcomer, spoke.clone()).await;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    if backoff == BACKOFF_FIRST {
                        tracing::warn!(error = %e, "accept failed; backing off");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
            Some(newcomer) = spoken.recv() => newcomer,
        };
        // A newcomer that spoke at the cap: it takes a silent connection's slot, or waits.
        let Some(slot) = admission.slot().await else {
            return;
        };
        admit(speaker, slot);
    }
}

/// Has a newcomer's first byte arrived? One non-blocking peek: tokio's own readiness would need a
/// round through the event loop, and can be reported spuriously.
fn has_spoken(stream: &TcpStream) -> bool {
    let mut first = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(socket2::SockRef::from(stream).peek(&mut first), Ok(n) if n > 0)
}

impl Admission {
    /// The per-address cap first: an address over its share is refused before it can shed or
    /// wait for anything.
    fn newcomer(&self, stream: TcpStream, remote: SocketAddr) -> Option<Newcomer> {
        let share = match &self.per_ip {
            Some(per_ip) if !per_ip.take(remote.ip()) => {
                metrics::counter!(crate::measure::CONNECTIONS_CLOSED, "reason" => "max_connections_per_ip").increment(1);
                tracing::debug!(%remote, "connection refused: max_connections_per_ip");
                return None;
            }
            Some(per_ip) => Some(Share(per_ip.clone(), remote.ip())),
            None => None,
        };
        Some(Newcomer {
            stream,
            remote,
            share,
        })
    }

    /// Probation at the cap: a newcomer whose first bytes arrive within the grace goes back to
    /// the accept loop through `spoke`; one that stays silent is closed. With probation full, the
    /// loop waits for a place (newcomers wait in the kernel's backlog): closing them unseen would
    /// refuse clients whose first bytes were a moment behind the handshake.
    async fn probe(&self, newcomer: Newcomer, spoke: mpsc::Sender<Newcomer>) {
        let Ok(place) = self.probation.clone().acquire_owned().await else {
            return;
        };
        let grace = self.unstarted.grace;
        tokio::spawn(async move {
            // `peek`, not `readable`: readiness can be reported spuriously; a byte cannot.
            let mut first = [0u8; 1];
            let spoken = tokio::time::timeout(grace, newcomer.stream.peek(&mut first)).await;
            drop(place);
            if matches!(spoken, Ok(Ok(n)) if n > 0) {
                let _ = spoke.send(newcomer).await;
            } else {
                metrics::counter!(crate::measure::CONNECTIONS_CLOSED, "reason" => "silent_at_capacity").increment(1);
            }
        });
    }
}

/// Runs `connection` in a task of its own, holding `ticket` until it ends.
pub fn spawn_connection(ticket: Ticket, connection: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        connection.await;
        drop(ticket);
    });
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::server::connection::Raised;

    fn raised(state: &ConnectionState) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        pin!(Raised::draining(state)).poll(&mut cx) == Poll::Ready(())
    }

    #[tokio::test]
    async fn a_drain_tells_the_open_connections_and_forgets_the_closed_ones() {
        let drain = Drain::default();
        let kept: Vec<_> = (0..10).map(|_| ConnectionState::new()).collect();
        for state in &kept {
            drain.watch(state);
        }
        for _ in 0..1000 {
            drain.watch(&ConnectionState::new());
        }
        let listed = drain.watched.lock().unwrap().states.len();
        assert!(listed <= 2 * SWEEP_AT, "swept as it grows: {listed}");
        assert!(!kept.iter().any(|s| raised(s)));
        assert!(
            drain.finish(Duration::from_millis(10)).await,
            "no ticket held"
        );
        assert!(kept.iter().all(|s| raised(s)), "every open connection told");
    }

    #[test]
    fn a_connection_watched_after_the_drain_began_is_told_at_once() {
        let drain = Drain::default();
        drain.watched.lock().unwrap().draining = true;
        let late = ConnectionState::new();
        drain.watch(&late);
        assert!(raised(&late));
    }
}
