use super::*;

use std::sync::Condvar;
use std::time::Instant;

/// The bytes written, and how many writes they took.
type Got = (Vec<u8>, usize);

/// What the writer thread has written.
#[derive(Clone, Default)]
struct Written {
    inner: Arc<(Mutex<Got>, Condvar)>,
    /// While set, each write blocks (a standard output nobody reads).
    stalled: Arc<(Mutex<bool>, Condvar)>,
}

impl Written {
    fn bytes(&self) -> Vec<u8> {
        self.inner.0.lock().unwrap().0.clone()
    }

    fn writes(&self) -> usize {
        self.inner.0.lock().unwrap().1
    }

    /// Waits (at most 10 s) until `lines` lines are written.
    fn wait_lines(&self, lines: usize) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (lock, cond) = &*self.inner;
        let mut got = lock.lock().unwrap();
        while got.0.iter().filter(|&&b| b == b'\n').count() < lines {
            let left = deadline.saturating_duration_since(Instant::now());
            let written = got.0.iter().filter(|&&b| b == b'\n').count();
            assert!(!left.is_zero(), "{written} of {lines} lines written");
            got = cond.wait_timeout(got, left).unwrap().0;
        }
        got.0.clone()
    }

    fn stall(&self, on: bool) {
        *self.stalled.0.lock().unwrap() = on;
        self.stalled.1.notify_all();
    }
}

impl Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        {
            let (lock, cond) = &*self.stalled;
            let mut stalled = lock.lock().unwrap();
            while *stalled {
                stalled = cond.wait(stalled).unwrap();
            }
        }
        let (lock, cond) = &*self.inner;
        let mut got = lock.lock().unwrap();
        got.0.extend_from_slice(buf);
        got.1 += 1;
        cond.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A standard output whose reader has gone.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_line_after_a_quiet_spell_is_written_without_waiting_for_more() {
    let out = Written::default();
    let (log, _guard) = LogWriter::start(Box::new(out.clone())).unwrap();
    log.append(b"one\n");
    assert_eq!(out.wait_lines(1), b"one\n");
    // The writer gathers for a while after a write, then waits for the next line again.
    thread::sleep(GATHER * 3);
    log.append(b"two\n");
    assert_eq!(out.wait_lines(2), b"one\ntwo\n");
}

#[test]
fn lines_from_many_threads_are_whole_and_in_each_threads_order() {
    let out = Written::default();
    let (log, guard) = LogWriter::start(Box::new(out.clone())).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            thread::spawn(move || {
                for i in 0..2_000 {
                    log.append(
                        format!("thread {t} line {i:04} {}\n", "x".repeat(i % 97)).as_bytes(),
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(guard);
    let text = String::from_utf8(out.bytes()).unwrap();
    let mut next = [0usize; 4];
    for line in text.lines() {
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("thread"), "a torn line: {line:?}");
        let t: usize = words.next().unwrap().parse().unwrap();
        assert_eq!(words.next(), Some("line"));
        let i: usize = words.next().unwrap().parse().unwrap();
        assert_eq!(
            words.next().unwrap(),
            "x".repeat(i % 97),
            "a torn line: {line:?}"
        );
        assert_eq!(i, next[t], "thread {t}'s lines out of order");
        next[t] += 1;
    }
    assert_eq!(next, [2_000; 4], "every line written once");
    assert_eq!(log.dropped(), 0);
    // 8,000 lines took far fewer writes than lines.
    assert!(out.writes() < 4_000, "{} writes", out.writes());
}

#[test]
fn a_stalled_output_costs_lines_past_the_limit_not_waits() {
    let out = Written::default();
    let (log, guard) = LogWriter::start(Box::new(out.clone())).unwrap();
    // The writer takes the first line and blocks writing it.
    out.stall(true);
    log.append(b"first\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.shared.lock().lines.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the writer never took the first line"
        );
        thread::sleep(Duration::from_millis(1));
    }
    // Then the buffer fills to its limit; every line after that is dropped and counted, and no
    // append waits for the writer.
    let line = [b'a'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    let sent = LIMIT / line.len() + 100;
    for _ in 0..sent {
        log.append(&line);
    }
    let kept = LIMIT / line.len();
    assert_eq!(log.dropped(), (sent - kept) as u64);
    out.stall(false);
    drop(guard);
    let written = out.bytes();
    assert_eq!(
        written.len(),
        b"first\n".len() + kept * line.len(),
        "the kept lines, whole"
    );
}

#[test]
fn the_guard_writes_what_is_left_and_gives_up_on_a_stalled_output() {
    let out = Written::default();
    let (log, guard) = LogWriter::start(Box::new(out.clone())).unwrap();
    log.append(b"one\n");
    out.wait_lines(1);
    // Inside the gathering interval: only the guard's last write puts it out now.
    log.append(b"two\n");
    drop(guard);
    assert_eq!(out.bytes(), b"one\ntwo\n");

    let out = Written::default();
    let (log, guard) = LogWriter::start(Box::new(out.clone())).unwrap();
    out.stall(true);
    log.append(b"stuck\n");
    let started = Instant::now();
    drop(guard);
    assert!(
        started.elapsed() < LAST_WRITE + Duration::from_secs(5),
        "an exit waited on a stalled output"
    );
    out.stall(false);
}

#[test]
fn lines_a_failed_write_lost_are_counted() {
    let (log, guard) = LogWriter::start(Box::new(Broken)).unwrap();
    log.append(b"one\n");
    log.append(b"two\nthree\n");
    drop(guard);
    assert_eq!(log.dropped(), 3);
}

#[test]
fn a_batch_past_the_early_mark_is_written_without_waiting_out_the_interval() {
    let out = Written::default();
    // An interval no test outlasts: whatever is written after the first line was written early.
    let (log, _guard) =
        LogWriter::gathering(Box::new(out.clone()), Duration::from_secs(3600)).unwrap();
    log.append(b"start\n");
    out.wait_lines(1);
    let line = [b'b'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    let below = EARLY / line.len() - 1;
    for _ in 0..below {
        log.append(&line);
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        out.writes(),
        1,
        "below the mark, the writer keeps gathering"
    );
    // The line that reaches the mark wakes the writer.
    log.append(&line);
    assert_eq!(
        out.wait_lines(1 + below + 1).len(),
        6 + (below + 1) * line.len()
    );
}
