//! Kubernetes resource quantities (`128Mi`, `1.5Gi`, `500m`, `2`, `1e3`), accepted exactly
//! as apimachinery's `resource.ParseQuantity` accepts them and held exactly (a decimal digit
//! string and a power of ten), so no value a client sends can overflow: reading one as an
//! integer ([`Quantity::value`], [`Quantity::milli_value`]) rounds up and saturates at
//! `i64::MAX`, and comparisons are exact whatever the size.

mod digits;
mod format;

use std::{cmp::Ordering, str::FromStr};

/// Why a text is not a quantity (apimachinery's `ErrFormatWrong` / `ErrSuffix`, worded as
/// kube-apiserver words them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not shaped as a quantity.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// Shaped as one, but the suffix is not a known one.
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// How a quantity was written, which is how it is written back (apimachinery's `Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `12e6`.
    DecimalExponent,
    /// `12Mi` (powers of 1024).
    BinarySi,
    /// `12M`, `500m` (powers of 1000).
    DecimalSi,
}

/// An exact quantity: `± digits × 10^exponent`. Equality and order are by value (`1000m`
/// equals `1`), as apimachinery's `Cmp`.
#[derive(Debug, Clone)]
pub struct Quantity {
    negative: bool,
    /// Decimal digits without leading or trailing zeros; empty for zero.
    digits: Vec<u8>,
    exponent: i64,
    format: Format,
}

/// Decimal SI suffixes and their powers of ten.
const DECIMAL_SUFFIXES: [(&str, i64); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
/// Binary SI suffixes and their powers of 1024.
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
/// How many decimal places [`Quantity::add`] aligns at most.
pub const MAX_ALIGN: i128 = 4096;
/// The smallest representable amount is 1n: finer values round up to it.
const NANO: i64 = -9;

/// What a suffix means.
enum Suffix {
    Decimal(i64, Format),
    Binary(u32),
}

fn interpret(suffix: &str) -> Result<Suffix, QuantityError> {
    if let Some((_, power)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok(Suffix::Decimal(*power, Format::DecimalSi));
    }
    if let Some((_, power)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok(Suffix::Binary(*power));
    }
    match suffix.as_bytes() {
        [b'e' | b'E', rest @ ..] if !rest.is_empty() => {
            let parsed: i64 = suffix[1..].parse().map_err(|_| QuantityError::Suffix)?;
            // apimachinery keeps the exponent as int32(parsed): larger ones wrap, and so
            // do they here, so both servers read the same number.
            let wrapped = i64::from(parsed as i32);
            Ok(Suffix::Decimal(wrapped, Format::DecimalExponent))
        }
        _ => Err(QuantityError::Suffix),
    }
}

/// The parts of a quantity's text (apimachinery's `parseQuantityString`, which is more
/// lenient than its regular expression: `.`, `+` and `Mi` alone are zero).
struct Parts<'a> {
    negative: bool,
    whole: &'a str,
    fraction: &'a str,
    suffix: &'a str,
}

fn split(text: &str) -> Result<Parts<'_>, QuantityError> {
    let bytes = text.as_bytes();
    let end = bytes.len();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };
    let digits_from = |mut at: usize| {
        while at < end && bytes[at].is_ascii_digit() {
            at += 1;
        }
        at
    };
    let whole_end = digits_from(pos);
    let whole = &text[pos..whole_end];
    pos = whole_end;
    let mut fraction = "";
    if pos < end && bytes[pos] == b'.' {
        let fraction_end = digits_from(pos + 1);
        fraction = &text[pos + 1..fraction_end];
        pos = fraction_end;
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if pos < end && matches!(bytes[pos], b'-' | b'+') {
        pos += 1;
    }
    pos = digits_from(pos);
    if pos < end {
        return Err(QuantityError::Format);
    }
    Ok(Parts {
        negative,
        whole,
        fraction,
        suffix: &text[suffix_start..],
    })
}

impl Quantity {
    /// Parse `text` as kube-apiserver decodes a quantity (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(QuantityError::Format);
        }
        let parts = split(text)?;
        let suffix = interpret(parts.suffix)?;
        let mut digits: Vec<u8> = parts
            .whole
            .bytes()
            .chain(parts.fraction.bytes())
            .map(|b| b - b'0')
            .collect();
        digits::trim_leading_zeros(&mut digits);
        let fraction_len = i64::try_from(parts.fraction.len()).unwrap_or(i64::MAX);
        let (mut exponent, mut format) = match suffix {
            Suffix::Decimal(power, format) => (power.saturating_sub(fraction_len), format),
            Suffix::Binary(power) => {
                for _ in 0..power {
                    digits::multiply(&mut digits, 1024);
                }
                (-fraction_len, Format::BinarySi)
            }
        };
        let zeros = digits::trim_trailing_zeros(&mut digits);
        exponent = exponent.saturating_add(i64::try_from(zeros).unwrap_or(i64::MAX));
        if !digits.is_empty() && exponent < NANO {
            // Round up to the smallest representable amount (1n), as apimachinery does.
            digits = digits::divide_rounding_up(&digits, NANO.abs_diff(exponent));
            exponent = NANO;
            let zeros = digits::trim_trailing_zeros(&mut digits);
            exponent = exponent.saturating_add(i64::try_from(zeros).unwrap_or(i64::MAX));
        }
        let mut quantity = Self {
            negative: parts.negative && !digits.is_empty(),
            digits,
            exponent,
            format,
        };
        if format == Format::BinarySi {
            let max = Self::from_i64(i64::MAX);
            if quantity.magnitude_cmp(&max) == Ordering::Greater {
                // apimachinery caps binary quantities at 2^63-1.
                quantity.digits = max.digits;
                quantity.exponent = max.exponent;
            }
            let one = Self::from_i64(1);
            if !quantity.is_zero() && quantity.magnitude_cmp(&one) == Ordering::Less {
                format = Format::DecimalSi;
            }
        }
        quantity.format = format;
        Ok(quantity)
    }

    /// An integer quantity.
    pub fn from_i64(value: i64) -> Self {
        let mut digits = digits::of(u128::from(value.unsigned_abs()));
        let zeros = digits::trim_trailing_zeros(&mut digits);
        Self {
            negative: value < 0,
            digits,
            exponent: i64::try_from(zeros).unwrap_or(0),
            format: Format::DecimalSi,
        }
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// How the quantity was written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in units of `10^scale`, rounded up (away from zero) and saturated at
    /// `i64::MAX` / `-i64::MAX` (apimachinery's `ScaledValue`, without its overflow).
    pub fn scaled_value(&self, scale: i32) -> i64 {
        let magnitude =
            digits::saturated(&self.digits, self.exponent.saturating_sub(i64::from(scale)));
        if self.negative { -magnitude } else { magnitude }
    }

    /// The value rounded up to an integer (memory in bytes, a pod count).
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded up (CPU in millicores).
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// True if the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.exponent >= 0 || self.digits.is_empty()
    }

    /// `self + other`, exact (apimachinery's `Add`; the result keeps `self`'s format, or
    /// `other`'s when `self` is zero). When the two values lie more than
    /// [`MAX_ALIGN`] decimal places apart the smaller one is below any difference a quota
    /// or a limit can express, and the larger is returned as it is, so a value such as
    /// `1e2000000000` never makes the sum build billions of digits.
    #[must_use]
    pub fn add(&self, other: &Self) -> Self {
        if other.is_zero() {
            return self.clone();
        }
        if self.is_zero() {
            return other.clone();
        }
        let low = self.exponent.min(other.exponent);
        let span = |q: &Self| i128::from(q.exponent) - i128::from(low) + q.digits.len() as i128;
        if span(self).max(span(other)) > MAX_ALIGN {
            let larger = if self.magnitude_cmp(other) == Ordering::Less {
                other
            } else {
                self
            };
            let mut result = larger.clone();
            result.format = self.format;
            return result;
        }
        let aligned = |q: &Self| {
            let mut digits = q.digits.clone();
            let pad = usize::try_from(q.exponent - low).unwrap_or(0);
            digits.extend(std::iter::repeat_n(0, pad));
            digits
        };
        let (a, b) = (aligned(self), aligned(other));
        let (negative, mut digits) = if self.negative == other.negative {
            (self.negative, digits::add(&a, &b))
        } else {
            match self.magnitude_cmp(other) {
                Ordering::Equal => (false, Vec::new()),
                Ordering::Greater => (self.negative, digits::subtract(&a, &b)),
                Ordering::Less => (other.negative, digits::subtract(&b, &a)),
            }
        };
        digits::trim_leading_zeros(&mut digits);
        let zeros = digits::trim_trailing_zeros(&mut digits);
        Self {
            negative: negative && !digits.is_empty(),
            exponent: if digits.is_empty() {
                0
            } else {
                low.saturating_add(i64::try_from(zeros).unwrap_or(0))
            },
            digits,
            format: self.format,
        }
    }

    /// `self - other` (see [`Quantity::add`]).
    #[must_use]
    pub fn sub(&self, other: &Self) -> Self {
        let mut negated = other.clone();
        negated.negative = !negated.negative && !negated.digits.is_empty();
        let mut result = self.add(&negated);
        if self.is_zero() {
            result.format = self.format;
        }
        result
    }

    /// Zero, in `self`'s format.
    #[must_use]
    pub fn zero_like(&self) -> Self {
        Self {
            negative: false,
            digits: Vec::new(),
            exponent: 0,
            format: self.format,
        }
    }

    fn magnitude_cmp(&self, other: &Self) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => {
                digits::compare(&self.digits, self.exponent, &other.digits, other.exponent)
            }
        }
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.magnitude_cmp(other),
            (true, true) => other.magnitude_cmp(self),
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Bytes of a memory quantity (rounded up, saturated); None if it is not a quantity.
pub fn bytes(text: &str) -> Option<i64> {
    Quantity::parse(text).ok().map(|q| q.value())
}

/// Millicores of a CPU quantity (rounded up, saturated); None if it is not a quantity.
pub fn millicores(text: &str) -> Option<i64> {
    Quantity::parse(text).ok().map(|q| q.milli_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).expect("a quantity")
    }

    #[test]
    fn adds_and_subtracts_exactly() {
        assert_eq!(q("500m").add(&q("1")).to_string(), "1500m");
        assert_eq!(q("128Mi").add(&q("128Mi")).to_string(), "256Mi");
        assert_eq!(q("1").sub(&q("1500m")).to_string(), "-500m");
        assert_eq!(q("2").sub(&q("2000m")).to_string(), "0");
        assert_eq!(q("0").add(&q("100m")).to_string(), "100m");
        assert_eq!(q("1e30").add(&q("1")), q("1000000000000000000000000000001"));
        assert_eq!(q("-1").add(&q("-1")), q("-2"));
        // Values thousands of places apart: the larger one, without building the digits.
        assert_eq!(q("1e2000000000").add(&q("1")), q("1e2000000000"));
        assert_eq!(q("1").sub(&q("1e2000000000")), q("-1e2000000000"));
    }

    #[test]
    fn parses_like_the_api() {
        assert_eq!(bytes("128Mi"), Some(128 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("512"), Some(512));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes(" 1Ki "), Some(1024));
        assert_eq!(bytes("100m"), Some(1));
        assert_eq!(bytes("x"), None);
        assert_eq!(millicores("500m"), Some(500));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("0.1"), Some(100));
        assert_eq!(millicores("1e3"), Some(1_000_000));
        assert_eq!(millicores("1.5e-3"), Some(2));
        assert_eq!(millicores("-1"), Some(-1000));
    }

    #[test]
    fn refuses_what_the_api_refuses() {
        for text in [
            "", "x", "1.2.3", "inf", "NaN", "0x10", "1KiB", "1 Ki", "1e5.0",
        ] {
            assert_eq!(
                Quantity::parse(text),
                Err(QuantityError::Format),
                "{text:?}"
            );
        }
        for text in ["1e", "1ki", "1k5", "1e+", "1Mii", "1i", "--1"] {
            assert_eq!(
                Quantity::parse(text),
                Err(QuantityError::Suffix),
                "{text:?}"
            );
        }
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn accepts_what_the_api_accepts_even_oddities() {
        // apimachinery's scanner reads these as zero.
        for text in ["0", ".", "+", "-", "Mi", "m", "-0", "0.000"] {
            assert!(q(text).is_zero(), "{text:?}");
            assert!(!q(text).is_negative(), "{text:?}");
        }
        assert_eq!(q("1.").value(), 1);
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("1e+2").value(), 100);
    }

    #[test]
    fn huge_values_saturate_and_tiny_ones_round_up() {
        // kube-apiserver accepts cpu: 1e30; reading it must not overflow.
        let huge = q("1e30");
        assert_eq!(huge.milli_value(), i64::MAX);
        assert_eq!(huge.value(), i64::MAX);
        assert_eq!(q("-1e30").milli_value(), -i64::MAX);
        assert_eq!(q("99999999999999999999999999").value(), i64::MAX);
        assert_eq!(q("1e2147483647").value(), i64::MAX);
        // The exponent wraps as apimachinery's int32 conversion does.
        assert_eq!(q("1e4294967296").value(), 1);
        // Binary quantities are capped at 2^63-1.
        assert_eq!(q("8Ei"), q("9223372036854775807"));
        assert_eq!(q("1e-30").value(), 1);
        assert_eq!(q("1e-30"), q("1n"));
        assert_eq!(q("1e-2147483648").milli_value(), 1);
    }

    #[test]
    fn compares_exactly() {
        assert_eq!(q("1Gi").cmp(&q("1G")), Ordering::Greater);
        assert_eq!(q("1000m").cmp(&q("1")), Ordering::Equal);
        assert_eq!(q("1.5").cmp(&q("1500m")), Ordering::Equal);
        assert_eq!(q("-1").cmp(&q("0")), Ordering::Less);
        assert_eq!(q("-2").cmp(&q("-1")), Ordering::Less);
        assert_eq!(q("1e30").cmp(&q("1e29")), Ordering::Greater);
        assert_eq!(q("0").cmp(&q("-0")), Ordering::Equal);
    }
}
