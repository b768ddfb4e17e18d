//! The placeholder says what it is where people look: a line in the task's log (CloudWatch or
//! FireLens take the container's output) when it starts and then at a slow interval, so one left
//! serving real users for days is seen; and a response header (`serve.rs`).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// The response header every answer carries.
pub const HEADER: &str = "x-placeholder";
pub const HEADER_VALUE: &str = "ecs-minimal-container: the real image has not been deployed";

/// How often the line is said again while it serves; `PLACEHOLDER_NOTICE_SECONDS` sets another.
const INTERVAL: Duration = Duration::from_secs(15 * 60);

/// How long the first line waits for the container's name from the server's metadata lookup.
const NAME_WAIT: Duration = Duration::from_secs(5);

/// Says the line now (once the server's task metadata lookup, where it makes one, has named the
/// container) and again every interval, for as long as the server runs.
pub async fn keep_saying(name: Option<watch::Receiver<Option<String>>>, interval: Option<Duration>) {
    let since = utc(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    let mut container = None;
    if let Some(mut name) = name {
        let named = tokio::time::timeout(NAME_WAIT, name.wait_for(Option::is_some)).await;
        container = named.ok().and_then(|r| r.ok()).and_then(|n| n.clone()).filter(|n| !n.is_empty());
    }
    let container = container.unwrap_or_else(|| "this container".to_owned());
    let interval = interval.unwrap_or(INTERVAL).max(Duration::from_secs(1));
    loop {
        // On stderr: stdout carries the access log, one request a line. A closed stderr is no
        // reason to stop serving (eprintln! would panic, and a panic aborts the release build).
        let _ = writeln!(
            std::io::stderr(),
            "placeholder for {container} since {since}: the real image has not been deployed"
        );
        tokio::time::sleep(interval).await;
    }
}

/// `2026-12-01T10:05:18Z` for seconds since the epoch, in UTC (days to a civil date after
/// Howard Hinnant's `civil_from_days`).
fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (hour, minute, second) = ((seconds % 86_400) / 3600, (seconds % 3600) / 60, seconds % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_119_518), "2026-12-01T10:05:18Z");
        assert_eq!(utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
