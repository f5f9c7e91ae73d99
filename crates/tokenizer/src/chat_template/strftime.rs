//! `strftime_now(format)` for chat templates (Llama 3.x writes "Today Date: 26 Jul 2024" with it).
//!
//! transformers calls Python's `datetime.now().strftime(format)`, i.e. local time. Here the clock is read
//! as UTC (servers usually run in UTC, and no time-zone database is needed). The date comes from the
//! days-since-epoch -> civil-date conversion of H. Hinnant's "chrono-compatible low-level date
//! algorithms"; the C locale's names. Supported: %a %A %b %B %h %d %e %H %I %j %m %M %p %S %y %Y %Z %z
//! %F %T %D %n %t %%, and glibc's %-d %-m %-H %-I %-M %-S %-j (no padding); anything else is copied.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::Error;

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub(super) fn strftime_now(format: &str) -> Result<String, Error> {
    // A clock before 1970 is a broken clock; print the epoch rather than fail the whole prompt.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(format_utc(secs, format))
}

/// A UTC instant broken into calendar fields.
struct Civil {
    year: i64,
    month: u32, // 1..=12
    day: u32,   // 1..=31
    yday: u32,  // 1..=366
    wday: u32,  // 0 = Sunday
    hour: u32,
    minute: u32,
    second: u32,
}

fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u32;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = BEFORE[month as usize - 1] + day + u32::from(leap && month > 2);
    Civil {
        year,
        month,
        day,
        yday,
        wday: (days + 4).rem_euclid(7) as u32, // 1970-01-01 was a Thursday
        hour: tod / 3600,
        minute: tod / 60 % 60,
        second: tod % 60,
    }
}

pub(super) fn format_utc(secs: i64, format: &str) -> String {
    let t = civil(secs);
    let hour12 = match t.hour % 12 {
        0 => 12,
        h => h,
    };
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let unpadded = spec == Some('-');
        if unpadded {
            spec = chars.next();
        }
        let num = |n: u32, width: usize| {
            if unpadded {
                n.to_string()
            } else {
                format!("{n:0width$}")
            }
        };
        let piece = match spec {
            Some('a') => DAYS[t.wday as usize][..3].to_owned(),
            Some('A') => DAYS[t.wday as usize].to_owned(),
            Some('b') | Some('h') => MONTHS[t.month as usize - 1][..3].to_owned(),
            Some('B') => MONTHS[t.month as usize - 1].to_owned(),
            Some('d') => num(t.day, 2),
            Some('e') => format!("{:2}", t.day),
            Some('H') => num(t.hour, 2),
            Some('I') => num(hour12, 2),
            Some('j') => num(t.yday, 3),
            Some('m') => num(t.month, 2),
            Some('M') => num(t.minute, 2),
            Some('p') => (if t.hour < 12 { "AM" } else { "PM" }).to_owned(),
            Some('S') => num(t.second, 2),
            Some('y') => format!("{:02}", t.year.rem_euclid(100)),
            Some('Y') => t.year.to_string(),
            Some('Z') => "UTC".to_owned(),
            Some('z') => "+0000".to_owned(),
            Some('F') => format!("{}-{:02}-{:02}", t.year, t.month, t.day),
            Some('T') => format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            Some('D') => format!("{:02}/{:02}/{:02}", t.month, t.day, t.year.rem_euclid(100)),
            Some('n') => "\n".to_owned(),
            Some('t') => "\t".to_owned(),
            Some('%') => "%".to_owned(),
            Some(other) => format!("%{}{other}", if unpadded { "-" } else { "" }),
            None => format!("%{}", if unpadded { "-" } else { "" }),
        };
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are what Python's time.strftime prints for time.gmtime(secs).
    #[test]
    fn known_instants() {
        assert_eq!(
            format_utc(0, "%Y-%m-%d %H:%M:%S %a %A %b %B %j %y"),
            "1970-01-01 00:00:00 Thu Thursday Jan January 001 70"
        );
        assert_eq!(
            format_utc(951_782_400, "%d %b %Y %j %A"),
            "29 Feb 2000 060 Tuesday"
        );
        assert_eq!(
            format_utc(1_700_000_000, "%F %T %I%p %e"),
            "2023-11-14 22:13:20 10PM 14"
        );
        assert_eq!(format_utc(1_721_952_000, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            format_utc(1_704_067_199, "%D %-d/%-m %-H %j"),
            "12/31/23 31/12 23 365"
        );
        assert_eq!(format_utc(1_735_603_200, "%j"), "366"); // 2024-12-31, a leap year
        assert_eq!(format_utc(4_107_542_400, "%F %a"), "2100-03-01 Mon"); // 2100 is not a leap year
        assert_eq!(format_utc(-86_400, "%F %a"), "1969-12-31 Wed");
        assert_eq!(format_utc(43_200, "%I %p|%%|%Q|%"), "12 PM|%|%Q|%");
    }

    #[test]
    fn now_is_a_plausible_date() {
        let now = strftime_now("%Y %m %d").unwrap();
        let fields: Vec<u32> = now.split(' ').map(|f| f.parse().unwrap()).collect();
        assert!(
            fields[0] >= 2024 && (1..=12).contains(&fields[1]) && (1..=31).contains(&fields[2]),
            "{now}"
        );
    }
}
