//! The access line, written without the general formatter.
//!
//! One line per request made the general formatter a tenth of the service's CPU on a replayed
//! webhook (BENCHMARKS.md, issue 14): the calendar worked out from the epoch for every timestamp,
//! each field passed through styling wrappers, the elapsed time through exact float formatting.
//! The access event always has the same five fields in the same order, so its line is put together
//! here, byte for byte what the general formatter writes (unit tests compare the two), with the
//! timestamp's date and time of day worked out once per second.
//!
//! Anything unexpected (another target or level, other fields, colours, a value with a quote, a
//! backslash or a control character, a year outside 0–9999) goes to the general formatter.

use std::{
    cell::RefCell,
    fmt::{self, Write},
    time::SystemTime,
};

use chrono::{DateTime, Datelike, Utc};
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{
    field::Visit,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// The target of the access event.
pub(super) const TARGET: &str = "portal_invites::access";

/// The access event's fields, in the order it records them. The fourth is a number.
const FIELDS: [&str; 5] = ["message", "method", "route", "status", "elapsed_ms"];
const NUMBER: usize = 3;

/// The general formatter `inner`, with the access line written directly.
pub(super) struct FastAccess<F> {
    inner: F,
    json: bool,
}

impl<F> FastAccess<F> {
    /// Beside the text formatter (`time  LEVEL message name=value…`, no target, no colours).
    pub(super) fn text(inner: F) -> Self {
        Self { inner, json: false }
    }

    /// Beside the JSON formatter with the event's fields flattened.
    pub(super) fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for FastAccess<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() == TARGET && *meta.level() == Level::INFO && !writer.has_ansi_escapes() {
            let mut fields = AccessFields::default();
            event.record(&mut fields);
            if fields.complete()
                && let Some(written) = write_line(&mut writer, &fields, self.json, SystemTime::now())
            {
                return written;
            }
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// The access line, or `None` (nothing written) when the time cannot be written here.
fn write_line(
    out: &mut impl Write,
    fields: &AccessFields,
    json: bool,
    now: SystemTime,
) -> Option<fmt::Result> {
    let mut stamp = Value::default();
    write_timestamp(&mut stamp, now)?;
    let [message, method, route, status, elapsed] = fields.values.each_ref().map(Value::as_str);
    Some(if json {
        writeln!(
            out,
            r#"{{"timestamp":"{stamp}","level":"INFO","message":"{message}","method":"{method}","route":"{route}","status":{status},"elapsed_ms":"{elapsed}","target":"{TARGET}"}}"#,
            stamp = stamp.as_str()
        )
    } else {
        writeln!(
            out,
            "{stamp}  INFO {message} method={method} route={route} status={status} elapsed_ms={elapsed}",
            stamp = stamp.as_str()
        )
    })
}

/// `2026-12-08T02:53:38.064851Z`, as the general formatter writes it; `None` outside years 0–9999
/// (written differently there) or before 1970.
fn write_timestamp(out: &mut impl Write, now: SystemTime) -> Option<()> {
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let second = since_epoch.as_secs();
    thread_local! {
        /// The last second written, and its text up to the fraction.
        static SECOND: RefCell<(u64, Value)> = RefCell::new((u64::MAX, Value::default()));
    }
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != second {
            let time = DateTime::<Utc>::from_timestamp(i64::try_from(second).ok()?, 0)?;
            if !(0..=9999).contains(&time.year()) {
                return None;
            }
            *prefix = Value::default();
            write!(prefix, "{}", time.format("%Y-%m-%dT%H:%M:%S.")).ok()?;
            *cached = second;
        }
        write!(out, "{}{:06}Z", prefix.as_str(), since_epoch.subsec_micros()).ok()
    })
}

/// The access event's values as written, in order.
struct AccessFields {
    values: [Value; 5],
    /// How many fields were recorded as expected; `None` once one was not.
    seen: Option<usize>,
}

impl AccessFields {
    fn complete(&self) -> bool {
        self.seen == Some(FIELDS.len())
    }

    /// Writes the next field's value with `write`, if `field` is the one expected next.
    fn next(&mut self, field: &Field, number: bool, write: impl FnOnce(&mut Value) -> fmt::Result) {
        let at = match self.seen {
            Some(at) if at < FIELDS.len() && FIELDS[at] == field.name() && (at == NUMBER) == number => at,
            _ => {
                self.seen = None;
                return;
            }
        };
        self.seen = write(&mut self.values[at]).ok().map(|()| at + 1);
    }
}

impl Default for AccessFields {
    fn default() -> Self {
        Self { values: Default::default(), seen: Some(0) }
    }
}

impl Visit for AccessFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.next(field, true, |out| write!(out, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.next(field, false, |out| write!(out, "{value:?}"));
    }
}

/// A short value on the stack. Writing fails past its room, and on any character that text and
/// JSON would not both show as is (quotes, backslashes, control and non-ASCII characters): the
/// general formatter then writes the line.
struct Value {
    bytes: [u8; 96],
    len: usize,
}

impl Default for Value {
    fn default() -> Self {
        Self { bytes: [0; 96], len: 0 }
    }
}

impl Value {
    fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Write for Value {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let plain = |b: &u8| *b == b' ' || (b.is_ascii_graphic() && *b != b'"' && *b != b'\\');
        let end = self.len + s.len();
        if end > self.bytes.len() || !s.bytes().all(|b| plain(&b)) {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use chrono::SecondsFormat;
    use poem::http::{Method, StatusCode};
    use tracing_subscriber::{fmt, prelude::*};

    use super::*;

    /// What was written, for a test to read.
    #[derive(Clone, Default)]
    pub(in crate::telemetry) struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        pub(in crate::telemetry) fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    /// What the general formatter and ours write for the events `emit` logs, in text and JSON.
    fn both(emit: impl Fn()) -> [(String, String); 2] {
        let (general, fast) = (Lines::default(), Lines::default());
        type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
        fn text(lines: Lines, fast: bool) -> Boxed {
            let layer = fmt::layer().with_target(false).with_ansi(false).with_writer(move || lines.clone());
            let format = fmt::format().with_target(false);
            if fast {
                layer.event_format(FastAccess::text(format)).boxed()
            } else {
                layer.event_format(format).boxed()
            }
        }
        fn json(lines: Lines, fast: bool) -> Boxed {
            let layer = fmt::layer().json().flatten_event(true).with_writer(move || lines.clone());
            let format = fmt::format().json().flatten_event(true);
            if fast {
                layer.event_format(FastAccess::json(format)).boxed()
            } else {
                layer.event_format(format).boxed()
            }
        }
        [text as fn(Lines, bool) -> Boxed, json].map(|layer| {
            let subscriber = tracing_subscriber::registry()
                .with(vec![layer(general.clone(), false), layer(fast.clone(), true)]);
            tracing::subscriber::with_default(subscriber, &emit);
            (general.take(), fast.take())
        })
    }

    /// `line` with its timestamp (the only part that may differ) blanked.
    fn untimed(line: &str) -> String {
        let stamp = line.find("20").expect("a timestamp");
        format!("{}{}", &line[..stamp], &line[stamp + 27..])
    }

    fn assert_same(general: &str, fast: &str) {
        let (general, fast): (Vec<_>, Vec<_>) = (general.lines().collect(), fast.lines().collect());
        assert_eq!(general.len(), fast.len(), "{general:?} against {fast:?}");
        for (general, fast) in general.iter().zip(&fast) {
            assert_eq!(untimed(general), untimed(fast));
        }
    }

    #[test]
    fn the_access_line_is_what_the_general_formatter_writes() {
        let requests = [
            (Method::GET, "/healthz", StatusCode::OK, Duration::from_micros(40)),
            (Method::POST, "/webhooks", StatusCode::NO_CONTENT, Duration::from_micros(1_240)),
            (Method::GET, "(unmatched)", StatusCode::NOT_FOUND, Duration::from_secs(3)),
            (
                Method::from_bytes(b"PURGE").unwrap(),
                "/p/:shop/login",
                StatusCode::from_u16(599).unwrap(),
                Duration::ZERO,
            ),
        ];
        let [text, json] = both(|| {
            for (method, route, status, elapsed) in &requests {
                crate::telemetry::log_access(method, route, *status, *elapsed);
            }
        });
        assert!(
            text.0.contains("  INFO request method=POST route=/webhooks status=204 elapsed_ms=1.2\n"),
            "{}",
            text.0
        );
        assert!(
            json.0.contains(r#""route":"/webhooks","status":204,"elapsed_ms":"1.2","target""#),
            "{}",
            json.0
        );
        for (general, fast) in [text, json] {
            assert_eq!(general.lines().count(), requests.len());
            assert_same(&general, &fast);
        }
    }

    #[test]
    fn anything_else_is_left_to_the_general_formatter() {
        let [text, json] = both(|| {
            tracing::info!(target: TARGET, method = "GET", "request");
            tracing::info!(target: TARGET, method = %"GET", route = %"/a\"b", status = 200u16, elapsed_ms = "0.1", "request");
            tracing::info!(target: TARGET, method = %"GET", route = %"/é", status = 200u16, elapsed_ms = %"0.1", "request");
            tracing::warn!(target: TARGET, method = %"GET", route = %"/a", status = 200u16, elapsed_ms = %"0.1", "request");
            tracing::info!(shop = "shop_1", "something else");
        });
        for (general, fast) in [text, json] {
            assert_eq!(general.lines().count(), 5);
            assert_same(&general, &fast);
        }
    }

    #[test]
    fn the_timestamp_is_written_as_rfc_3339_with_microseconds_across_seconds() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_697_218);
        for micros in [0, 1, 999_999, 1_000_000, 1_000_001, 86_400_000_000, 86_400_999_999, 3_000_000_000_000]
        {
            let now = start + Duration::from_micros(micros);
            let mut written = Value::default();
            write_timestamp(&mut written, now).unwrap();
            let expected = DateTime::<Utc>::from(now).to_rfc3339_opts(SecondsFormat::Micros, true);
            assert_eq!(written.as_str(), expected);
        }
        let mut written = Value::default();
        assert!(write_timestamp(&mut written, SystemTime::UNIX_EPOCH - Duration::from_secs(1)).is_none());
    }

    #[test]
    fn a_value_takes_plain_ascii_only_and_no_more_than_its_room() {
        let mut value = Value::default();
        assert!(write!(value, "/p/:shop/login (x)").is_ok());
        for refused in ["\"", "\\", "\n", "\u{1b}", "é"] {
            assert!(Value::default().write_str(refused).is_err(), "{refused:?}");
        }
        assert!(Value::default().write_str(&"a".repeat(97)).is_err());
        assert_eq!(value.as_str(), "/p/:shop/login (x)");
    }
}
