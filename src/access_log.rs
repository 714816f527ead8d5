//! The access log's line: one per request, formatted by hand into a buffer each thread reuses and
//! appended to the same writer as every other log line ([`crate::log_writer`]), in the same two
//! formats. It is the one log line every request pays for, so it skips what a general event costs
//! in `tracing-subscriber` (a span, field visitors, `fmt` machinery, a fresh `String`): about a
//! quarter of a cached request's instructions before. The filter is still tracing's: the line is
//! written when `tollgate::access` is enabled at `INFO` (the default `level = "info"`; `warn` or
//! `tollgate::access=off` turn it off).
//!
//! The fields and their spelling are those the README documents (`api`, `method`, `path`, never
//! the query, `decision`, `reason`, `client`, `client_id`, `status`, `grpc_status` when there is
//! one, `latency_ms`), under target `tollgate::access` and message `request`, with the timestamp
//! tracing-subscriber writes (RFC 3339, microseconds, UTC). Nothing here sees a token.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;
use crate::log_writer::LogWriter;

pub const TARGET: &str = "tollgate::access";

/// What one access line says.
pub struct AccessLine<'a> {
    pub api: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub decision: &'static str,
    pub reason: &'static str,
    pub client: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub status: u16,
    pub grpc_status: Option<u8>,
    pub latency: Duration,
}

/// Where lines go: the log's background writer, or standard output line by line.
pub enum Sink {
    Queue(LogWriter),
    Stdout,
}

struct AccessLog {
    format: LogFormat,
    ansi: bool,
    sink: Sink,
    /// The filter's answer for `tollgate::access` at `INFO`, asked once: it is fixed for the
    /// process's life, and asking walks its directives.
    enabled: OnceLock<bool>,
}

static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

thread_local! {
    /// The line being formatted.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
    /// The last timestamp: its second, and its text up to the microseconds.
    static STAMP: RefCell<Stamp> = const { RefCell::new(Stamp { second: None, text: String::new() }) };
}

/// A timestamp as tracing-subscriber's `SystemTime` timer writes it
/// (`2026-12-02T03:40:00.123456Z`): the date and time formatted once a second, the microseconds
/// on every line.
struct Stamp {
    second: Option<u64>,
    /// `2026-12-02T03:40:00.`, then the microseconds and `Z` of the last line.
    text: String,
}

/// The part of [`Stamp::text`] that lasts a second: up to and with the `.`.
const STAMP_SECOND: usize = "2026-12-02T03:40:00.".len();

impl Stamp {
    fn at(&mut self, now: SystemTime) -> &str {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.second != Some(since.as_secs()) {
            self.text.clear();
            let whole = UNIX_EPOCH + Duration::from_secs(since.as_secs());
            let _ = write!(self.text, "{}", humantime::format_rfc3339_seconds(whole));
            self.text.pop(); // its `Z`
            self.text.push('.');
            self.second = Some(since.as_secs());
        }
        self.text.truncate(STAMP_SECOND);
        zero_padded(&mut self.text, since.subsec_micros().into(), 6);
        self.text.push('Z');
        &self.text
    }
}

/// `n` in decimal, with leading zeros to `width` digits.
fn zero_padded(buf: &mut String, n: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    for _ in digits.len()..width {
        buf.push('0');
    }
    buf.push_str(digits);
}

/// Sets where access lines go and how they look; the first call in a process wins, as tracing's
/// global subscriber does.
pub fn install(format: LogFormat, ansi: bool, sink: Sink) {
    let _ = ACCESS_LOG.set(AccessLog {
        format,
        ansi,
        sink,
        enabled: OnceLock::new(),
    });
}

/// Whether a line would be written: the filter allows it and a sink is installed.
pub fn enabled() -> bool {
    ACCESS_LOG.get().is_some_and(|log| {
        *log.enabled
            .get_or_init(|| tracing::enabled!(target: TARGET, tracing::Level::INFO))
    })
}

/// Writes the line; the caller asked [`enabled`] when the request arrived (the filter is fixed
/// for the process's life). A full buffer drops it and counts the drop, as for any line.
pub fn write(line: &AccessLine<'_>) {
    let Some(log) = ACCESS_LOG.get() else {
        return;
    };
    LINE.with_borrow_mut(|buf| {
        buf.clear();
        STAMP.with_borrow_mut(|stamp| {
            let stamp = stamp.at(SystemTime::now());
            match log.format {
                LogFormat::Json => json(buf, stamp, line),
                LogFormat::Text => text(buf, stamp, line, log.ansi),
            }
        });
        buf.push('\n');
        match &log.sink {
            Sink::Queue(writer) => writer.append(buf.as_bytes()),
            // A failed write has nowhere to be reported but the log itself.
            Sink::Stdout => drop(std::io::stdout().lock().write_all(buf.as_bytes())),
        }
    });
}

fn json(buf: &mut String, stamp: &str, line: &AccessLine<'_>) {
    buf.push_str("{\"timestamp\":\"");
    buf.push_str(stamp);
    buf.push_str("\",\"level\":\"INFO\",\"message\":\"request\"");
    json_member(buf, "api", line.api.unwrap_or("-"));
    json_member(buf, "method", line.method);
    json_member(buf, "path", line.path);
    json_member(buf, "decision", line.decision);
    json_member(buf, "reason", line.reason);
    json_member(buf, "client", line.client.unwrap_or("-"));
    json_member(buf, "client_id", line.client_id.unwrap_or("-"));
    buf.push_str(",\"status\":");
    zero_padded(buf, line.status.into(), 0);
    if let Some(code) = line.grpc_status {
        let _ = write!(buf, ",\"grpc_status\":{code}");
    }
    buf.push_str(",\"latency_ms\":");
    milliseconds(buf, line.latency);
    buf.push_str(",\"target\":\"");
    buf.push_str(TARGET);
    buf.push_str("\"}");
}

fn json_member(buf: &mut String, name: &str, value: &str) {
    buf.push_str(",\"");
    buf.push_str(name);
    buf.push_str("\":");
    json_string(buf, value);
}

/// A JSON string (RFC 8259 §7): quotes, backslashes and control characters escaped.
fn json_string(buf: &mut String, value: &str) {
    buf.push('"');
    let mut rest = value;
    while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        buf.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or(' ');
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            _ => {
                let _ = write!(buf, "\\u{:04x}", u32::from(c));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    buf.push_str(rest);
    buf.push('"');
}

/// The text format tracing-subscriber writes for an event: `TIMESTAMP  INFO target: message
/// name=value ...`, strings quoted and escaped as `Debug` does, the method and path bare.
fn text(buf: &mut String, stamp: &str, line: &AccessLine<'_>, ansi: bool) {
    buf.push_str(stamp);
    if ansi {
        buf.push_str(" \x1b[32m INFO\x1b[0m \x1b[2mtollgate::access\x1b[0m\x1b[2m:\x1b[0m request");
    } else {
        buf.push_str("  INFO tollgate::access: request");
    }
    text_quoted(buf, " api=", line.api.unwrap_or("-"));
    buf.push_str(" method=");
    buf.push_str(line.method);
    buf.push_str(" path=");
    buf.push_str(line.path);
    text_quoted(buf, " decision=", line.decision);
    text_quoted(buf, " reason=", line.reason);
    text_quoted(buf, " client=", line.client.unwrap_or("-"));
    text_quoted(buf, " client_id=", line.client_id.unwrap_or("-"));
    buf.push_str(" status=");
    zero_padded(buf, line.status.into(), 0);
    if let Some(code) = line.grpc_status {
        let _ = write!(buf, " grpc_status={code}");
    }
    buf.push_str(" latency_ms=");
    milliseconds(buf, line.latency);
}

/// ` name="value"`: `field` is ` name=`, the value quoted and escaped as `Debug` does.
fn text_quoted(buf: &mut String, field: &str, value: &str) {
    buf.push_str(field);
    // What `Debug` leaves alone, copied as it is (the common case: `Debug` goes char by char).
    // Every byte is looked at, with no early exit, so the loop has no branch per byte.
    if value
        .bytes()
        .fold(true, |plain, b| plain & DEBUG_PLAIN[usize::from(b)])
    {
        buf.push('"');
        buf.push_str(value);
        buf.push('"');
    } else {
        let _ = write!(buf, "{value:?}");
    }
}

/// The bytes `Debug` writes as they are inside a string's quotes: printable ASCII but `"` and `\`.
static DEBUG_PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        plain[b as usize] = b != b'"' && b != b'\\';
        b += 1;
    }
    plain
};

/// Milliseconds with three decimals (microseconds), the precision the line needs.
fn milliseconds(buf: &mut String, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    zero_padded(buf, micros / 1000, 0);
    buf.push('.');
    zero_padded(buf, micros % 1000, 3);
}

#[cfg(test)]
mod tests;
