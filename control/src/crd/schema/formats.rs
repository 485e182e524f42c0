//! The `format`s kube validates in CRD schemas (apiextensions-apiserver's supported list at
//! 1.33, checked as kube-openapi's strfmt registry does). Unsupported formats are ignored;
//! integer (int32/int64) and number (float/double) formats only bound the numbers.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::LazyLock,
};

use base64::Engine;
use regex::Regex;

/// A format kube validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Int32,
    Int64,
    Float,
    Double,
    BsonObjectId,
    Uri,
    Email,
    Hostname,
    Ipv4,
    Ipv6,
    Cidr,
    Mac,
    Uuid,
    Uuid3,
    Uuid4,
    Uuid5,
    Isbn,
    Isbn10,
    Isbn13,
    CreditCard,
    Ssn,
    HexColor,
    RgbColor,
    Byte,
    Password,
    Date,
    Duration,
    DateTime,
}

impl Format {
    /// The format kube keeps for a schema of type `ty` (others are stripped).
    pub(crate) fn supported(ty: &str, name: &str) -> Option<Format> {
        match ty {
            "integer" => match name {
                "int32" => Some(Format::Int32),
                "int64" => Some(Format::Int64),
                _ => None,
            },
            "number" => match name {
                "float" => Some(Format::Float),
                "double" => Some(Format::Double),
                _ => None,
            },
            // go-openapi normalizes names by dropping dashes ("date-time" → "datetime").
            "" | "string" => Some(match name.replace('-', "").as_str() {
                "bsonobjectid" => Format::BsonObjectId,
                "uri" => Format::Uri,
                "email" => Format::Email,
                "hostname" => Format::Hostname,
                "ipv4" => Format::Ipv4,
                "ipv6" => Format::Ipv6,
                "cidr" => Format::Cidr,
                "mac" => Format::Mac,
                "uuid" => Format::Uuid,
                "uuid3" => Format::Uuid3,
                "uuid4" => Format::Uuid4,
                "uuid5" => Format::Uuid5,
                "isbn" => Format::Isbn,
                "isbn10" => Format::Isbn10,
                "isbn13" => Format::Isbn13,
                "creditcard" => Format::CreditCard,
                "ssn" => Format::Ssn,
                "hexcolor" => Format::HexColor,
                "rgbcolor" => Format::RgbColor,
                "byte" => Format::Byte,
                "password" => Format::Password,
                "date" => Format::Date,
                "duration" => Format::Duration,
                "datetime" => Format::DateTime,
                _ => return None,
            }),
            _ => None,
        }
    }

    /// Whether this is a string format (checked by kube-openapi's format validator).
    pub(crate) fn is_string_format(self) -> bool {
        !matches!(
            self,
            Format::Int32 | Format::Int64 | Format::Float | Format::Double
        )
    }

    /// Whether `s` is valid in this (string) format.
    pub(crate) fn is_valid(self, s: &str) -> bool {
        match self {
            Format::Int32 | Format::Int64 | Format::Float | Format::Double => true,
            Format::BsonObjectId => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            Format::Uri => is_request_uri(s),
            Format::Email => is_email(s),
            Format::Hostname => is_hostname(s),
            Format::Ipv4 => parse_ip_sloppy(s).is_some() && s.contains('.'),
            Format::Ipv6 => parse_ip_sloppy(s).is_some() && s.contains(':'),
            Format::Cidr => is_cidr(s),
            Format::Mac => is_mac(s),
            Format::Uuid => matches(&UUID, s),
            Format::Uuid3 => matches(&UUID3, s),
            Format::Uuid4 => matches(&UUID4, s),
            Format::Uuid5 => matches(&UUID5, s),
            Format::Isbn => is_isbn10(s) || is_isbn13(s),
            Format::Isbn10 => is_isbn10(s),
            Format::Isbn13 => is_isbn13(s),
            Format::CreditCard => is_credit_card(s),
            Format::Ssn => s.len() == 11 && matches(&SSN, s),
            Format::HexColor => matches(&HEX_COLOR, s),
            Format::RgbColor => matches(&RGB_COLOR, s),
            Format::Byte => is_base64(s),
            Format::Password => true,
            Format::Date => is_date(s),
            Format::Duration => is_duration(s),
            Format::DateTime => is_date_time(s),
        }
    }
}

fn regex(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(s))
}

static HOSTNAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
    )
});
static UUID: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID3: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID4: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static UUID5: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static SSN: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"^[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}$"));
static HEX_COLOR: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"));
static RGB_COLOR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let n = r"\s*(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])\s*";
    regex(&format!(r"^rgb\({n},{n},{n}\)$"))
});
static CREDIT_CARD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35[0-9]{3})[0-9]{11}|6[27][0-9]{14})$",
    )
});
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    // net/mail.ParseAddress: an addr-spec, optionally with a display name in front.
    regex(
        r#"^(?:[^<>]*<)?((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|"[^"\\]*")@(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|\[[^\]\\]*\]))>?$"#,
    )
});
static DATE_TIME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
});
static BASE64: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")
});

/// Go's `url.ParseRequestURI` (as govalidator.IsRequestURI uses it): an absolute URI or an
/// absolute path, without spaces or control characters.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn is_email(s: &str) -> bool {
    matches(&EMAIL, s.trim())
}

fn is_hostname(s: &str) -> bool {
    matches(&HOSTNAME, s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

/// netutils.ParseIPSloppy: Go's net.ParseIP, also accepting IPv4 octets with leading zeros.
fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Some(v4) = parse_v4_sloppy(s) {
        return Some(IpAddr::V4(v4));
    }
    if s.contains(':') {
        if let Ok(v6) = s.parse::<Ipv6Addr>() {
            return Some(IpAddr::V6(v6));
        }
        // An embedded IPv4 part with leading zeros.
        if let Some((head, tail)) = s.rsplit_once(':')
            && let Some(v4) = parse_v4_sloppy(tail)
        {
            return format!("{head}:{v4}")
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6);
        }
    }
    None
}

fn parse_v4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Some(ip) = parse_ip_sloppy(ip) else {
        return false;
    };
    let max = if ip.is_ipv4() && !s.contains(':') {
        32
    } else {
        128
    };
    !prefix.is_empty()
        && prefix.len() <= 3
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.parse::<u32>().is_ok_and(|p| p <= max)
}

/// Go's net.ParseMAC: 6, 8 or 20 octets as `xx:xx:..`, `xx-xx-..` or `xxxx.xxxx.xxxx`.
fn is_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let counts = [6usize, 8, 20];
    if s.len() >= 14 && s.as_bytes().get(4) == Some(&b'.') {
        let parts: Vec<&str> = s.split('.').collect();
        return counts.contains(&(parts.len() * 2)) && parts.iter().all(|p| hex(p, 4));
    }
    for sep in [':', '-'] {
        if s.as_bytes().get(2) == Some(&(sep as u8)) {
            let parts: Vec<&str> = s.split(sep).collect();
            return counts.contains(&parts.len()) && parts.iter().all(|p| hex(p, 2));
        }
    }
    false
}

fn isbn_digits(s: &str) -> Vec<char> {
    s.chars().filter(|c| *c != ' ' && *c != '-').collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 10 || !d[..9].iter().all(char::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, c) in d[..9].iter().enumerate() {
        sum += (i as u32 + 1) * c.to_digit(10).unwrap_or(0);
    }
    let last = match d[9] {
        'X' => 10,
        c => match c.to_digit(10) {
            Some(v) => v,
            None => return false,
        },
    };
    sum += 10 * last;
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 13 || !d.iter().all(char::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, c) in d[..12].iter().enumerate() {
        let w = if i % 2 == 0 { 1 } else { 3 };
        sum += w * c.to_digit(10).unwrap_or(0);
    }
    let check = (10 - sum % 10) % 10;
    d[12].to_digit(10) == Some(check)
}

fn is_credit_card(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if !matches(&CREDIT_CARD, &digits) {
        return false;
    }
    // Luhn.
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut v = c.to_digit(10).unwrap_or(0);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn is_base64(s: &str) -> bool {
    matches(&BASE64, s) && base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// RFC 3339 full-date (`2006-01-02`) with a real day of month.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// strfmt.IsDateTime: a full-date, `T` (any case), then `hh:mm:ss[.frac](Z|±hh:mm)`.
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let Some(re) = DATE_TIME.as_ref() else {
        return false;
    };
    let Some(m) = re.captures(parts[1]) else {
        return false;
    };
    let field = |i: usize| m.get(i).map_or("", |g| g.as_str());
    field(1) <= "23" && field(2) <= "59" && field(3) <= "59"
}

/// strfmt.ParseDuration: Go's time.ParseDuration, or `<n> <unit>` pairs (`3 days`, `1 wk`).
fn is_duration(s: &str) -> bool {
    if is_go_duration(s) {
        return true;
    }
    const UNITS: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    static PAIR: LazyLock<Option<Regex>> = LazyLock::new(|| regex(r"(([0-9]+)\s*([A-Za-zµ]+))"));
    let Some(re) = PAIR.as_ref() else {
        return false;
    };
    re.captures_iter(s).any(|m| {
        let unit = m.get(3).map_or("", |g| g.as_str()).trim().to_lowercase();
        m.get(2).is_some_and(|n| n.as_str().parse::<i64>().is_ok())
            && UNITS.iter().any(|variants| {
                let last = variants.len() - 1;
                variants.iter().enumerate().any(|(i, v)| {
                    (i == last && unit.starts_with(v)) || v.eq_ignore_ascii_case(&unit)
                })
            })
    })
}

/// Go's time.ParseDuration syntax: `[-+]` then `<decimal><unit>` pairs, or `0`.
fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit_len],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_len..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: &str, good: &[&str], bad: &[&str]) {
        let f = Format::supported("string", format).unwrap();
        for s in good {
            assert!(f.is_valid(s), "{format}: {s} should be valid");
        }
        for s in bad {
            assert!(!f.is_valid(s), "{format}: {s} should be invalid");
        }
    }

    #[test]
    fn supported_formats_follow_the_type() {
        assert_eq!(
            Format::supported("string", "date-time"),
            Some(Format::DateTime)
        );
        assert_eq!(Format::supported("integer", "int32"), Some(Format::Int32));
        assert_eq!(Format::supported("integer", "uuid"), None);
        assert_eq!(
            Format::supported("string", "quantity"),
            None,
            "not validated by kube"
        );
        assert_eq!(Format::supported("boolean", "uuid"), None);
    }

    #[test]
    fn string_formats() {
        check(
            "uuid",
            &[
                "123e4567-e89b-12d3-a456-426614174000",
                "123E4567E89B12D3A456426614174000",
            ],
            &["x", "123e4567-e89b-12d3-a456"],
        );
        check(
            "ipv4",
            &["10.0.0.1", "010.0.0.1"],
            &["10.0.0", "::1", "256.1.1.1"],
        );
        check(
            "ipv6",
            &["::1", "fe80::1", "::ffff:1.2.3.4"],
            &["10.0.0.1", "x"],
        );
        check(
            "cidr",
            &["10.0.0.0/8", "fd00::/64"],
            &["10.0.0.0", "10.0.0.0/33"],
        );
        check(
            "mac",
            &["01:23:45:67:89:ab", "01-23-45-67-89-AB", "0123.4567.89ab"],
            &["01:23:45", "0123456789ab"],
        );
        check(
            "hostname",
            &["example.com", "a", "my-host.example"],
            &["-x.com", "a..b", &"a".repeat(64)],
        );
        check(
            "email",
            &["a@b.c", "Alice <alice@example.com>"],
            &["a", "a@", "@b"],
        );
        check(
            "uri",
            &["https://example.com/x", "/path", "mailto:a@b"],
            &["example.com", "", "http://a b"],
        );
        check(
            "date",
            &["2024-02-29", "2023-12-31"],
            &["2023-02-29", "2023-13-01", "20230101"],
        );
        check(
            "date-time",
            &["2024-01-02T15:04:05Z", "2024-01-02t15:04:05.123+02:00"],
            &["2024-01-02", "2024-01-02T25:00:00Z", "2024-01-02T15:04:05"],
        );
        check(
            "duration",
            &["1h30m", "-1.5s", "0", "3 days", "1 wk"],
            &["", "1x", "h"],
        );
        check("byte", &["aGVsbG8=", "YWJj"], &["a", "!!!!", ""]);
        check("hexcolor", &["#fff", "A0B1C2"], &["#ffff"]);
        check("rgbcolor", &["rgb(255, 0, 10)"], &["rgb(256,0,0)"]);
        check("isbn10", &["0321751043"], &["0321751044"]);
        check("isbn13", &["978-0321751041"], &["978-0321751042"]);
        check(
            "creditcard",
            &["4111 1111 1111 1111"],
            &["4111 1111 1111 1112"],
        );
        check("ssn", &["123-45-6789"], &["123456789"]);
        check("bsonobjectid", &["507f1f77bcf86cd799439011"], &["507f1f77"]);
        check("password", &["anything"], &[]);
    }
}
