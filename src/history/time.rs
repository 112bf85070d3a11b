//! Points in time as the history commands take and print them: RFC 3339 in UTC
//! (`2026-12-04T10:00:00Z`, an offset such as `+01:00` and fractions of a second accepted) or
//! an age (`90s`, `10m`, `2h`, `3d`).

/// `text` as milliseconds since the Unix epoch, an age counting back from `now_ms`.
pub fn parse(text: &str, now_ms: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?}: not a time (RFC 3339 like 2026-12-04T10:00:00Z, or an age like 90s, 10m, 2h, 3d)"
        )
    };
    if let Some(unit) = text.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = text[..text.len() - 1].parse::<u64>() {
            let ms = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return Ok(now_ms.saturating_sub(n.saturating_mul(ms)));
        }
    }
    rfc3339(text).ok_or_else(bad)
}

fn rfc3339(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om): (i64, i64) = (o[..2].parse().ok()?, o[3..].parse().ok()?);
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    u64::try_from(secs * 1000 + ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `ms` since the epoch as RFC 3339 in UTC, to the second.
pub fn format(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_ages_are_read_and_bad_text_is_named() {
        // 2026-12-04T10:00:00Z, computed with `date -u -d 2026-12-04T10:00:00Z +%s`.
        assert_eq!(parse("2026-12-04T10:00:00Z", 0).unwrap(), 1_796_378_400_000);
        assert_eq!(
            parse("2026-12-04T11:00:00+01:00", 0).unwrap(),
            1_796_378_400_000
        );
        assert_eq!(
            parse("2026-12-04T10:00:00.25Z", 0).unwrap(),
            1_796_378_400_250
        );
        assert_eq!(parse("1970-01-01T00:00:00Z", 0).unwrap(), 0);
        assert_eq!(parse("2000-02-29T00:00:00Z", 0).unwrap(), 951_782_400_000);
        assert_eq!(parse("90s", 100_000).unwrap(), 10_000);
        assert_eq!(parse("2h", 10 * 3_600_000).unwrap(), 8 * 3_600_000);
        assert_eq!(parse("3d", 0).unwrap(), 0, "before the epoch: the epoch");
        for bad in [
            "",
            "yesterday",
            "10x",
            "2026-13-04T10:00:00Z",
            "2026-12-04",
            "m",
        ] {
            let e = parse(bad, 0).unwrap_err();
            assert!(e.contains("not a time"), "{bad}: {e}");
        }
    }

    #[test]
    fn times_print_as_rfc3339_and_read_back() {
        for ms in [0, 951_782_400_000, 1_796_378_400_000, 4_102_444_799_000] {
            assert_eq!(parse(&format(ms), 0).unwrap(), ms, "{}", format(ms));
        }
        assert_eq!(format(1_796_378_400_999), "2026-12-04T10:00:00Z");
    }
}
