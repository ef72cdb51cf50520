//! Cron schedules as Metronome evaluates them, on jiff's calendar and time zones.
//!
//! Metronome parses a schedule's `cron` with cron-utils 9.0.0 and a definition of its own
//! (`CronSpec.scala`), so that is the dialect here:
//!
//! - five fields, `minute hour day-of-month month day-of-week`; `*`, lists (`1,15`), ranges
//!   (`1-5`), steps (`*/15`, `1-10/2`, `5/10` = from 5 to the end every 10), month names
//!   `JAN`-`DEC` and day names `SUN`-`SAT` in any case;
//! - day-of-week `0`-`7` with both `0` and `7` Sunday; a range may end on Sunday as `0` or
//!   `SUN` (`FRI-SUN` = Friday, Saturday, Sunday);
//! - day-of-month `L` (last day), `LW` (last weekday), `15W` (weekday nearest the 15th, within
//!   the month); day-of-week `5L` (last Friday of the month), `1#2` (second Monday);
//! - **a day must match day-of-month AND day-of-week.** Unix cron fires when either matches
//!   if both are restricted; Metronome's definition calls cron-utils'
//!   `matchDayOfWeekAndDayOfMonth()`, which (despite the comment next to it in Metronome)
//!   makes cron-utils intersect the two (`SingleExecutionTime`,
//!   `generateDayCandidatesQuestionMarkNotSupportedUsingDoWAndDoM`), and Metronome's own test
//!   "First Monday Of The Month" (`0 9 1-7 * 1`) relies on it. Jobs moved from Metronome must
//!   keep firing on the same days, so cairn follows Metronome, not Vixie cron. With AND, `*`
//!   simply matches every day and needs no special case.
//! - no macros (`@daily`): cron-utils 9.0.0 has none, so Metronome refuses them, and so does
//!   this parser, with a message that says what to write instead. No `?`, no `|` composites.
//! - a backwards range (`5-1`) is refused here; cron-utils accepts it and then never matches it.
//!
//! Not Metronome's: Metronome accepts an optional sixth field, the year. cairn instead reads six
//! fields as **seconds first** (`*/10 * * * * *` fires every ten seconds), an extension for tests
//! that want a schedule to fire within seconds; a Metronome schedule with a year field is
//! refused (or, if its year happens to be `*`, read with seconds first: avoid it).
//!
//! Time zones and daylight saving time: fields match the wall clock of the schedule's IANA zone
//! (jiff's embedded database). A wall-clock time that does not exist (a spring-forward gap)
//! fires at the instant jiff's `compatible` disambiguation gives it, shifted forward by the
//! gap (`30 2 * * *` in Europe/Berlin fires at 03:30 CEST on the day clocks jump from 02:00 to
//! 03:00); a wall-clock time that happens twice (an autumn fold) fires once, at the earlier of
//! the two instants (02:30 CEST, not again at 02:30 CET). That is also what
//! `java.time.ZonedDateTime` does with both, which cron-utils works on.
//!
//! Why a parser of our own rather than the `jiff-cron` crate: jiff-cron reads the Quartz-like
//! `sec min hour dom month dow year` form with Sunday = 1 and no `L`/`W`/`#`, so using it meant
//! parsing every Metronome field anyway (to renumber days of the week, expand `0-7` ranges and
//! steps) and rewriting the expression, with its own DST and search-bound behaviour on top.
//! Once the fields are parsed, evaluating them is a few bit sets and a day loop; all calendar
//! and time-zone arithmetic is jiff's.
//!
//! The search is bounded: [`CronSchedule::next_after`] skips whole months that do not match and
//! looks at most [`HORIZON_YEARS`] ahead, one full Gregorian cycle (the calendar, weekdays
//! included, repeats every 400 years, so an expression that matches no date in that window
//! matches none ever: `0 0 31 2 *` gives `None`, after at most a few thousand steps).

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// How far ahead [`CronSchedule::next_after`] looks: one Gregorian cycle.
pub const HORIZON_YEARS: i16 = 400;

/// A field of a cron expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CronField {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl CronField {
    pub fn name(self) -> &'static str {
        match self {
            CronField::Second => "second",
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a cron expression or its time zone cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with \
         seconds first; {expression:?} has {count}"
    )]
    FieldCount { expression: String, count: usize },
    #[error(
        "cron macros such as {0:?} are not supported (Metronome has none): write the 5 fields, \
         e.g. \"0 0 * * *\" for @daily"
    )]
    Macro(String),
    #[error("{field} field {value:?}: {reason}")]
    Field {
        field: CronField,
        value: String,
        reason: String,
    },
    #[error(
        "no time zone named {0:?} (an IANA name such as UTC, America/Chicago or Europe/Berlin)"
    )]
    TimeZone(String),
}

impl CronError {
    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<CronField> {
        match self {
            CronError::Field { field, .. } => Some(*field),
            _ => None,
        }
    }
}

/// A parsed cron expression in its time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expression: String,
    timezone: TimeZone,
    has_seconds: bool,
    /// Bit n set = value n matches.
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1-12.
    months: u64,
    dom: DaysOfMonth,
    dow: DaysOfWeek,
}

#[derive(Clone, Debug, Default)]
struct DaysOfMonth {
    /// Bits 1-31.
    days: u64,
    /// `L`
    last: bool,
    /// `LW`
    last_weekday: bool,
    /// `nW`, bits 1-31.
    nearest_weekday: u64,
}

#[derive(Clone, Debug, Default)]
struct DaysOfWeek {
    /// Bits 0-6, Sunday = 0.
    days: u64,
    /// `nL`: bits 0-6.
    last: u64,
    /// `n#k`: for weekday n, bit k-1.
    nth: [u8; 7],
}

impl CronSchedule {
    /// Parses `cron` (Metronome's dialect, see the module doc) for the IANA zone `timezone`.
    pub fn parse(cron: &str, timezone: &str) -> Result<CronSchedule, CronError> {
        let fields: Vec<&str> = cron.split_whitespace().collect();
        if let [only] = fields.as_slice()
            && only.starts_with('@')
        {
            return Err(CronError::Macro((*only).to_string()));
        }
        let (seconds, rest) = match fields.len() {
            5 => (1, &fields[..]),
            6 => (parse_plain(CronField::Second, fields[0])?, &fields[1..]),
            count => {
                return Err(CronError::FieldCount {
                    expression: cron.to_string(),
                    count,
                });
            }
        };
        let minutes = parse_plain(CronField::Minute, rest[0])?;
        let hours = parse_plain(CronField::Hour, rest[1])?;
        let dom = parse_dom(rest[2])?;
        let months = parse_plain(CronField::Month, rest[3])?;
        let dow = parse_dow(rest[4])?;
        Ok(CronSchedule {
            expression: cron.to_string(),
            timezone: time_zone(timezone)?,
            has_seconds: fields.len() == 6,
            seconds,
            minutes,
            hours,
            months,
            dom,
            dow,
        })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> &TimeZone {
        &self.timezone
    }

    /// Whether the expression has cairn's seconds field (6 fields).
    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }

    /// The first tick strictly after `after`, or `None` if there is none within
    /// [`HORIZON_YEARS`] (or before the end of jiff's range, year 9999).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let mut wall = after.to_zoned(self.timezone.clone()).datetime();
        loop {
            wall = self.next_wall_time(wall)?;
            let at = self
                .timezone
                .to_ambiguous_timestamp(wall)
                .compatible()
                .ok()?;
            // In a fold, a later wall-clock time can still be an earlier instant than `after`
            // (02:45 CEST is before 02:10 CET): those were the first pass's ticks.
            if at > after {
                return Some(at);
            }
        }
    }

    /// The ticks in `(from_exclusive, to_inclusive]`, in order.
    pub fn ticks_between(
        &self,
        from_exclusive: Timestamp,
        to_inclusive: Timestamp,
    ) -> impl Iterator<Item = Timestamp> + '_ {
        let mut cursor = Some(from_exclusive);
        std::iter::from_fn(move || {
            let next = self
                .next_after(cursor?)
                .filter(|next| *next <= to_inclusive);
            cursor = next;
            next
        })
    }

    /// Whether no date ever matches (`0 0 31 2 *`, `0 0 1 * 1#5`): Metronome refuses such a
    /// schedule when it is created, where cron-utils would otherwise search forever.
    pub fn never_fires(&self) -> bool {
        // Any start will do: the window is a whole Gregorian cycle.
        self.next_wall_time(DateTime::constant(2000, 1, 1, 0, 0, 0, 0))
            .is_none()
    }

    /// The first matching wall-clock time strictly after `after` (whole seconds), within the
    /// horizon.
    fn next_wall_time(&self, after: DateTime) -> Option<DateTime> {
        let limit = after.year().saturating_add(HORIZON_YEARS);
        let mut date = after.date();
        let mut from = (
            after.hour() as u32,
            after.minute() as u32,
            after.second() as u32 + 1,
        );
        loop {
            if date.year() > limit {
                return None;
            }
            if !has(self.months, date.month() as u32) {
                date = first_of_next_month(date)?;
                from = (0, 0, 0);
                continue;
            }
            if self.dom.matches(date)
                && self.dow.matches(date)
                && let Some((h, m, s)) = self.time_from(from)
            {
                return Some(date.at(h as i8, m as i8, s as i8, 0));
            }
            date = date.tomorrow().ok()?;
            from = (0, 0, 0);
        }
    }

    /// The first matching time of day at or after `(h, m, s)` (which may overflow by one
    /// second: 60 carries into the next minute), or `None` if none is left in the day.
    fn time_from(&self, (mut h, mut m, mut s): (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        loop {
            if s >= 60 {
                s = 0;
                m += 1;
            }
            if m >= 60 {
                m = 0;
                h += 1;
            }
            if h >= 24 {
                return None;
            }
            let hour = first_from(self.hours, h)?;
            if hour > h {
                (h, m, s) = (hour, 0, 0);
                continue;
            }
            let Some(minute) = first_from(self.minutes, m) else {
                (m, s) = (60, 0);
                continue;
            };
            if minute > m {
                (m, s) = (minute, 0);
                continue;
            }
            match first_from(self.seconds, s) {
                Some(second) => return Some((h, m, second)),
                None => s = 60,
            }
        }
    }
}

impl DaysOfMonth {
    fn matches(&self, date: Date) -> bool {
        let day = date.day() as u32;
        let len = date.days_in_month() as u32;
        has(self.days, day)
            || (self.last && day == len)
            || (self.last_weekday && day == nearest_weekday(date, len))
            || (self.nearest_weekday != 0
                && (1..=len)
                    .filter(|n| has(self.nearest_weekday, *n))
                    .any(|n| nearest_weekday(date, n) == day))
    }
}

impl DaysOfWeek {
    fn matches(&self, date: Date) -> bool {
        let weekday = date.weekday().to_sunday_zero_offset() as usize;
        let day = date.day() as u32;
        let len = date.days_in_month() as u32;
        has(self.days, weekday as u32)
            || (has(self.last, weekday as u32) && day + 7 > len)
            || self.nth[weekday] & (1 << ((day - 1) / 7)) != 0
    }
}

/// The weekday (Monday-Friday) nearest to day `n` of `date`'s month, without leaving the month
/// (Quartz's and cron-utils' `W`): a Saturday moves to the Friday before, or to Monday the 3rd
/// if it is the 1st; a Sunday to the Monday after, or to the Friday before if it is the last
/// day.
fn nearest_weekday(date: Date, n: u32) -> u32 {
    let Ok(day) = Date::new(date.year(), date.month(), n as i8) else {
        return 0;
    };
    let len = date.days_in_month() as u32;
    match day.weekday().to_sunday_zero_offset() {
        6 if n == 1 => 3,
        6 => n - 1,
        0 if n == len => n - 2,
        0 => n + 1,
        _ => n,
    }
}

fn first_of_next_month(date: Date) -> Option<Date> {
    let (year, month) = if date.month() == 12 {
        (date.year().checked_add(1)?, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    Date::new(year, month, 1).ok()
}

fn has(bits: u64, n: u32) -> bool {
    n < 64 && bits & (1 << n) != 0
}

/// The smallest set bit at or above `from`.
fn first_from(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

/// Looks up an IANA zone name exactly as written: Metronome checks it against Java's
/// `ZoneId.getAvailableZoneIds`, which is case-sensitive, where jiff's lookup is not.
pub(crate) fn time_zone(name: &str) -> Result<TimeZone, CronError> {
    match TimeZone::get(name) {
        Ok(tz) if tz.iana_name() == Some(name) => Ok(tz),
        _ => Err(CronError::TimeZone(name.to_string())),
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The smallest and largest value of a field.
fn bounds(field: CronField) -> (u32, u32) {
    match field {
        CronField::Second | CronField::Minute => (0, 59),
        CronField::Hour => (0, 23),
        CronField::DayOfMonth => (1, 31),
        CronField::Month => (1, 12),
        CronField::DayOfWeek => (0, 7),
    }
}

fn field_error(field: CronField, value: &str, reason: impl Into<String>) -> CronError {
    CronError::Field {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// One number or name of `field`.
fn value(field: CronField, text: &str, whole: &str) -> Result<u32, CronError> {
    let (min, max) = bounds(field);
    let names: &[&str] = match field {
        CronField::Month => &MONTHS,
        CronField::DayOfWeek => &DAYS,
        _ => &[],
    };
    let upper = text.to_ascii_uppercase();
    let n = if let Some(i) = names.iter().position(|n| *n == upper) {
        // Month names count from 1, day names from 0 (Sunday).
        i as u32 + min
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>().unwrap_or(u32::MAX)
    } else {
        let hint = if names.is_empty() {
            String::new()
        } else {
            format!(" or a name ({}-{})", names[0], names[names.len() - 1])
        };
        return Err(field_error(
            field,
            whole,
            format!("{text:?} is not a number{hint}"),
        ));
    };
    if n < min || n > max {
        return Err(field_error(
            field,
            whole,
            format!("{text} is out of range {min}-{max}"),
        ));
    }
    Ok(n)
}

/// `*`, `a`, `a-b`, each optionally `/step`, as the set of values it covers (day-of-week
/// values still 0-7).
fn item(field: CronField, text: &str, whole: &str) -> Result<u64, CronError> {
    let (min, max) = bounds(field);
    let (range, step) = match text.split_once('/') {
        Some((range, step)) => {
            let ok = !step.is_empty() && step.bytes().all(|b| b.is_ascii_digit());
            let step = if ok {
                step.parse::<u32>().unwrap_or(0)
            } else {
                0
            };
            // cron-utils: a period must be in (0, max - min].
            if step == 0 || step > max - min {
                return Err(field_error(
                    field,
                    whole,
                    format!("step must be 1-{}", max - min),
                ));
            }
            (range, Some(step))
        }
        None => (text, None),
    };
    let (from, to) = if range == "*" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        let from = value(field, a, whole)?;
        let mut to = value(field, b, whole)?;
        // A day-of-week range may end on Sunday written as 0 (or SUN): FRI-SUN.
        if field == CronField::DayOfWeek && to == 0 && from > 0 {
            to = 7;
        }
        if from > to {
            return Err(field_error(
                field,
                whole,
                format!("range {range} is backwards"),
            ));
        }
        (from, to)
    } else {
        let from = value(field, range, whole)?;
        // `5/10`: from 5 to the end of the range.
        (from, if step.is_some() { max } else { from })
    };
    let mut bits = 0u64;
    let mut n = from;
    while n <= to {
        bits |= 1 << n;
        n += step.unwrap_or(1);
    }
    Ok(bits)
}

fn items(field: CronField, text: &str) -> Result<Vec<&str>, CronError> {
    let items: Vec<&str> = text.split(',').collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(field_error(field, text, "empty list item"));
    }
    Ok(items)
}

/// Seconds, minutes, hours, months: lists of items.
fn parse_plain(field: CronField, text: &str) -> Result<u64, CronError> {
    let mut bits = 0;
    for i in items(field, text)? {
        bits |= item(field, i, text)?;
    }
    Ok(bits)
}

fn parse_dom(text: &str) -> Result<DaysOfMonth, CronError> {
    let field = CronField::DayOfMonth;
    let mut dom = DaysOfMonth::default();
    for i in items(field, text)? {
        let upper = i.to_ascii_uppercase();
        if upper == "L" {
            dom.last = true;
        } else if upper == "LW" {
            dom.last_weekday = true;
        } else if let Some(n) = upper.strip_suffix('W') {
            dom.nearest_weekday |= 1 << value(field, n, text)?;
        } else if upper.contains(['L', 'W', '?', '#']) {
            return Err(field_error(
                field,
                text,
                format!("{i:?}: day-of-month takes numbers, ranges, steps, L, LW and nW"),
            ));
        } else {
            dom.days |= item(field, i, text)?;
        }
    }
    Ok(dom)
}

fn parse_dow(text: &str) -> Result<DaysOfWeek, CronError> {
    let field = CronField::DayOfWeek;
    let mut dow = DaysOfWeek::default();
    // 7 is Sunday, as 0.
    let day = |n: u32| n % 7;
    for i in items(field, text)? {
        let upper = i.to_ascii_uppercase();
        if let Some((n, k)) = upper.split_once('#') {
            let n = day(value(field, n, text)?);
            match k.parse::<u8>() {
                Ok(k @ 1..=5) => dow.nth[n as usize] |= 1 << (k - 1),
                _ => {
                    return Err(field_error(
                        field,
                        text,
                        format!("{i:?}: the week of the month after # must be 1-5"),
                    ));
                }
            }
        } else if let Some(n) = upper.strip_suffix('L')
            && !n.is_empty()
        {
            dow.last |= 1 << day(value(field, n, text)?);
        } else if upper.contains(['L', 'W', '?']) {
            return Err(field_error(
                field,
                text,
                format!("{i:?}: day-of-week takes numbers, names, ranges, steps, nL and n#k"),
            ));
        } else {
            let bits = item(field, i, text)?;
            for n in 0..=7 {
                if has(bits, n) {
                    dow.days |= 1 << day(n);
                }
            }
        }
    }
    Ok(dow)
}
