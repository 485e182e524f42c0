//! A quantity's canonical text (apimachinery's `Quantity.String()`): the largest suffix of
//! its format that keeps the number whole, so `1.5` reads `1500m` and `1536Ki` reads
//! `1536Ki` while `2048Ki` reads `2Mi`. This is how kube-apiserver quotes quantities in
//! its messages.

use std::fmt;

use crate::{BINARY_SUFFIXES, DECIMAL_SUFFIXES, Format, Quantity, digits};

impl Quantity {
    /// Digits and an exponent that is a multiple of three (`1.5` → `1500`, -3).
    fn engineering(&self) -> (Vec<u8>, i64) {
        let mut digits = self.digits.clone();
        let down = self.exponent.rem_euclid(3);
        digits.extend(std::iter::repeat_n(0, usize::try_from(down).unwrap_or(0)));
        (digits, self.exponent - down)
    }

    fn decimal_si(&self) -> String {
        let (mut digits, mut exponent) = self.engineering();
        // Beyond exa there is no suffix: write the rest out as zeros.
        while exponent > 18 {
            digits.extend_from_slice(&[0, 0, 0]);
            exponent -= 3;
        }
        let suffix = DECIMAL_SUFFIXES
            .iter()
            .find(|(_, power)| *power == exponent)
            .map_or("", |(s, _)| s);
        format!("{}{suffix}", digits::text(&digits))
    }

    fn decimal_exponent(&self) -> String {
        let (digits, exponent) = self.engineering();
        if exponent == 0 {
            digits::text(&digits)
        } else {
            format!("{}e{exponent}", digits::text(&digits))
        }
    }

    /// Whole binary quantities of at least 1024 as `<n><Ki…Ei>`.
    fn binary_si(&self) -> Option<String> {
        if !self.is_integer() || self.digits.len() > 19 {
            return None;
        }
        let mut value = self.value().unsigned_abs();
        if value < 1024 {
            return None;
        }
        let mut power = 0;
        while value.is_multiple_of(1024) && power < BINARY_SUFFIXES.len() {
            value /= 1024;
            power += 1;
        }
        let suffix = power
            .checked_sub(1)
            .and_then(|i| BINARY_SUFFIXES.get(i))
            .map_or("", |(s, _)| s);
        Some(format!("{value}{suffix}"))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let body = match self.format {
            Format::BinarySi => self.binary_si().unwrap_or_else(|| self.decimal_si()),
            Format::DecimalSi => self.decimal_si(),
            Format::DecimalExponent => self.decimal_exponent(),
        };
        if self.negative {
            write!(f, "-{body}")
        } else {
            f.write_str(&body)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Quantity;

    fn canonical(text: &str) -> String {
        Quantity::parse(text).expect("a quantity").to_string()
    }

    #[test]
    fn renders_as_apimachinery_does() {
        for (text, expected) in [
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("100m", "100m"),
            ("1000m", "1"),
            ("2048Ki", "2Mi"),
            ("1536Ki", "1536Ki"),
            ("1.5Ki", "1536"),
            ("512Ki", "512Ki"),
            ("1000", "1k"),
            ("1e3", "1e3"),
            ("1e30", "1e30"),
            ("12e6", "12e6"),
            ("1.5e-3", "1500e-6"),
            ("-1", "-1"),
            ("-0.5", "-500m"),
            ("0", "0"),
            ("Mi", "0"),
            ("1e-30", "1e-9"),
            ("1n", "1n"),
            ("-2048Ki", "-2Mi"),
            ("1000E", "1000E"),
            ("8Ei", "9223372036854775807"),
        ] {
            assert_eq!(canonical(text), expected, "{text}");
        }
    }
}
