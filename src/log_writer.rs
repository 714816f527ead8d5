//! The log's writer when serving: one buffer that every thread appends its whole lines to, and one
//! thread that writes the buffer out, many lines to a system call.
//!
//! A line costs its thread a lock it holds for one copy, nothing more: no allocation, no message
//! on a channel, no wake-up of the writer while it is busy. The writer writes as soon as a line
//! arrives after a quiet spell, so an idle gateway's log is live; then it waits
//! [`GATHER`] before its next write, so a busy one writes a batch a few times a second and
//! its workers do not wake it once a line. A batch over [`EARLY`] bytes is written at once.
//!
//! Lines keep the order in which they were appended, access lines and every other event alike,
//! and they are never torn: one thread writes, each line whole.
//!
//! The buffer never holds more than [`LIMIT`] bytes. When standard output does not keep up (a
//! stalled pipeline, a pipe nobody reads), further lines are dropped and counted: a request never
//! waits for the log.

use std::io::Write;
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, Thread};
use std::time::Duration;

/// How long the writer gathers lines after a write before it writes again.
pub const GATHER: Duration = Duration::from_millis(50);

/// A batch this large is written without waiting out [`GATHER`].
pub const EARLY: usize = 256 * 1024;

/// The most bytes the buffer holds: about 5,000 access lines, more than a busy gateway appends
/// in a gathering interval. Past it, lines are dropped.
pub const LIMIT: usize = 2 * 1024 * 1024;

/// How long dropping the [`Guard`] waits for the last lines to be written.
const LAST_WRITE: Duration = Duration::from_secs(1);

/// A handle to append lines with; cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread, woken when a line arrives while it waits.
    writer: Thread,
    /// [`GATHER`], but for tests.
    gather: Duration,
    dropped: AtomicU64,
}

struct State {
    /// Whole lines, in the order appended, not yet taken by the writer.
    lines: Vec<u8>,
    /// The writer found nothing to write and is parked until a line arrives.
    waiting: bool,
    /// The guard is gone: the writer writes what is left and ends.
    closing: bool,
}

/// Writes what is left when dropped, waiting at most a second (a stalled standard output must not
/// hold up an exit).
pub struct Guard {
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
}

impl LogWriter {
    /// Starts the writer thread on `out`.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(out: Box<dyn Write + Send>) -> std::io::Result<(Self, Guard)> {
        Self::gathering(out, GATHER)
    }

    /// [`start`](Self::start), gathering for `gather` after each write.
    fn gathering(out: Box<dyn Write + Send>, gather: Duration) -> std::io::Result<(Self, Guard)> {
        let (ready, handle) = mpsc::channel::<Arc<Shared>>();
        let (finished, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("tollgate-log".into())
            .spawn(move || {
                if let Ok(shared) = handle.recv() {
                    write_out(&shared, out);
                }
                let _ = finished.send(());
            })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lines: Vec::with_capacity(64 * 1024),
                waiting: false,
                closing: false,
            }),
            writer: thread.thread().clone(),
            gather,
            dropped: AtomicU64::new(0),
        });
        // The thread is only waiting for this; it cannot have gone.
        let _ = ready.send(Arc::clone(&shared));
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            Guard { shared, done },
        ))
    }

    /// Appends `line`, which ends with a newline, or drops and counts it when the buffer is full.
    pub fn append(&self, line: &[u8]) {
        let wake = {
            let mut state = self.shared.lock();
            let before = state.lines.len();
            if before + line.len() > LIMIT {
                drop(state);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            state.lines.extend_from_slice(line);
            let crossed = before < EARLY && state.lines.len() >= EARLY;
            mem::take(&mut state.waiting) || crossed
        };
        if wake {
            self.shared.writer.unpark();
        }
    }

    /// Lines dropped so far because the buffer was full or standard output failed.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still whole lines.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread: takes the buffer whenever it has lines and writes it in one go.
fn write_out(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        {
            let mut state = shared.lock();
            if state.lines.is_empty() {
                if state.closing {
                    return;
                }
                state.waiting = true;
                drop(state);
                // A line or the guard unparks; a spurious return just looks again.
                thread::park();
                continue;
            }
            mem::swap(&mut state.lines, &mut spare);
        }
        if out.write_all(&spare).and_then(|()| out.flush()).is_err() {
            let lost = spare.iter().filter(|&&b| b == b'\n').count();
            shared.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        }
        spare.clear();
        // A burst may have grown it; do not keep the growth for ever.
        if spare.capacity() > EARLY * 2 {
            spare = Vec::with_capacity(64 * 1024);
        }
        // Gather more lines before the next write; a batch past `EARLY` or the guard cuts it
        // short. While closing, write what is left at once.
        if !shared.lock().closing {
            thread::park_timeout(shared.gather);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.writer.unpark();
        let _ = self.done.recv_timeout(LAST_WRITE);
    }
}

/// tracing's events go through the same buffer as access lines, each event one line.
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// tracing-subscriber writes each event whole, in one `write_all`, so each write is a line.
impl Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
