//! The one accept loop every listener runs (gateway workers, admin, `tollgate dev`'s servers):
//! a cap on connections served at once (past it, new ones wait in the kernel's backlog, and at
//! most one per worker waits accepted for a slot), an optional
//! cap per client address (past it, the new connection is closed at once), and a back-off when
//! accepting fails (out of file descriptors: waiting, not spinning, lets connections close).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// The first pause after a failed accept, doubled while failures go on, up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What one listener admits; shared by the workers that accept on it.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    per_ip: Option<Arc<PerAddress>>,
}

/// Connections held per client address.
struct PerAddress {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// Held for a connection's life: its slot, its address's share, and the drain's tally.
pub struct Ticket {
    _slot: OwnedSemaphorePermit,
    address: Option<(Arc<PerAddress>, IpAddr)>,
    _alive: mpsc::Sender<()>,
}

impl Admission {
    /// `max`: connections at once; `per_ip`: per client address (0: no cap).
    pub fn new(max: usize, per_ip: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max)),
            per_ip: (per_ip > 0).then(|| {
                Arc::new(PerAddress {
                    cap: per_ip,
                    held: Mutex::new(HashMap::new()),
                })
            }),
        }
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

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((per_ip, ip)) = &self.address {
            per_ip.give_back(*ip);
        }
    }
}

/// Tells connections to finish, and waits until they have.
pub struct Drain {
    stop: watch::Sender<bool>,
    alive: mpsc::Sender<()>,
    gone: mpsc::Receiver<()>,
}

impl Default for Drain {
    fn default() -> Self {
        let (alive, gone) = mpsc::channel(1);
        Drain {
            stop: watch::channel(false).0,
            alive,
            gone,
        }
    }
}

impl Drain {
    /// What a connection watches to learn it should finish.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Asks every connection to finish and waits up to `grace`; `true` if all did.
    pub async fn finish(self, grace: Duration) -> bool {
        let Drain {
            stop,
            alive,
            mut gone,
        } = self;
        let _ = stop.send(true);
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
    loop {
        // Accept, then wait for a slot: a worker waiting for a slot before accepting would hold
        // one while its own socket (each worker has one) may have nothing to accept, and leave
        // another worker's queued connections unserved.
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => {
                backoff = BACKOFF_FIRST;
                accepted
            }
            Err(e) => {
                if backoff == BACKOFF_FIRST {
                    tracing::warn!(error = %e, "accept failed; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let Ok(slot) = admission.slots.clone().acquire_owned().await else {
            return;
        };
        let address = match &admission.per_ip {
            Some(per_ip) if !per_ip.take(remote.ip()) => {
                metrics::counter!(crate::measure::CONNECTIONS_CLOSED, "reason" => "max_connections_per_ip").increment(1);
                tracing::debug!(%remote, "connection refused: max_connections_per_ip");
                drop(stream);
                continue;
            }
            Some(per_ip) => Some((per_ip.clone(), remote.ip())),
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let ticket = Ticket {
            _slot: slot,
            address,
            _alive: drain.alive.clone(),
        };
        serve(stream, remote, ticket);
    }
}

/// Runs `connection` in a task of its own, holding `ticket` until it ends.
pub fn spawn_connection(ticket: Ticket, connection: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        connection.await;
        drop(ticket);
    });
}
