//! Process CPU and memory from `/proc`, and the control plane's own log
//! lines (when to say the registry's change was seen and translated).

use std::{
    fs,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// CPU time and memory of a process at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime.
    pub cpu: Duration,
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `VmHWM`: the peak RSS so far.
    pub hwm_kib: u64,
}

/// Read `/proc/PID/stat` and `/proc/PID/status` (`"self"` for this
/// process).
pub fn sample(pid: &str) -> Result<ProcSample, String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e} (is the process still running?)"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let ticks = cpu_ticks(&stat).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    Ok(ProcSample {
        cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()),
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

/// utime + stime in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// When the control plane logged `needle` (tracing's default format
/// starts each line with an RFC 3339 UTC timestamp), every occurrence
/// at or after `since`.
pub fn log_times(log: &str, needle: &str, since: SystemTime) -> Vec<SystemTime> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| parse_rfc3339_utc(l.split_whitespace().next()?))
        .filter(|t| *t >= since)
        .collect()
}

/// `2026-11-24T01:30:46.123456Z` → a time. Only the UTC form tracing
/// writes; anything else is `None`.
pub fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{frac:0<9}").parse().ok()?
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces_and_parens() {
        let stat = "1234 (ringmesh (x) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_fields_in_kib() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample("self").unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }

    #[test]
    fn rfc3339_utc_timestamps() {
        let t = parse_rfc3339_utc("2026-11-24T01:30:46.123456Z").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        // date -u -d 2026-11-24T01:30:46Z +%s
        assert_eq!(d.as_secs(), 1_795_483_846);
        assert_eq!(d.subsec_micros(), 123_456);
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339_utc("2000-03-01T00:00:00Z")
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            951_868_800
        );
        assert_eq!(parse_rfc3339_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_utc("2026-11-24T01:30:46+01:00"), None);
        assert_eq!(parse_rfc3339_utc("x"), None);
    }

    #[test]
    fn log_times_pick_matching_lines_after_since() {
        let log = "2026-11-24T01:00:00.5Z  INFO c: mesh state changed version=1\n\
                   2026-11-24T01:00:01Z  INFO c: ADS stream opened\n\
                   garbage mesh state changed\n\
                   2026-11-24T01:00:02.25Z  INFO c: mesh state changed version=2\n";
        let since = parse_rfc3339_utc("2026-11-24T01:00:01Z").unwrap();
        let got = log_times(log, "mesh state changed", since);
        assert_eq!(got, [parse_rfc3339_utc("2026-11-24T01:00:02.25Z").unwrap()]);
    }
}
