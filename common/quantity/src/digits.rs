//! Exact arithmetic on unsigned decimal digit strings (most significant digit first), the
//! little a quantity needs: multiplying by a small factor, rounding a tail away, and reading
//! the result as a saturated integer. Nothing here can overflow: digits grow instead.

use std::cmp::Ordering;

/// Drop leading zeros.
pub(crate) fn trim_leading_zeros(digits: &mut Vec<u8>) {
    let first = digits.iter().position(|d| *d != 0).unwrap_or(digits.len());
    digits.drain(..first);
}

/// Drop trailing zeros; returns how many were dropped (powers of ten moved out).
pub(crate) fn trim_trailing_zeros(digits: &mut Vec<u8>) -> usize {
    let kept = digits.iter().rposition(|d| *d != 0).map_or(0, |i| i + 1);
    let dropped = digits.len() - kept;
    digits.truncate(kept);
    dropped
}

/// `digits *= factor`.
pub(crate) fn multiply(digits: &mut Vec<u8>, factor: u32) {
    let mut carry: u64 = 0;
    for digit in digits.iter_mut().rev() {
        let product = u64::from(*digit) * u64::from(factor) + carry;
        *digit = (product % 10) as u8;
        carry = product / 10;
    }
    let mut head = Vec::new();
    while carry > 0 {
        head.push((carry % 10) as u8);
        carry /= 10;
    }
    if !head.is_empty() {
        head.reverse();
        head.append(digits);
        *digits = head;
    }
}

/// `digits += 1`.
pub(crate) fn increment(digits: &mut Vec<u8>) {
    for digit in digits.iter_mut().rev() {
        if *digit == 9 {
            *digit = 0;
        } else {
            *digit += 1;
            return;
        }
    }
    digits.insert(0, 1);
}

/// `ceil(digits / 10^places)` for digits without leading zeros and a non-zero value.
pub(crate) fn divide_rounding_up(digits: &[u8], places: u64) -> Vec<u8> {
    let len = digits.len() as u64;
    if places == 0 {
        return digits.to_vec();
    }
    if places >= len {
        return vec![1];
    }
    let keep = usize::try_from(len - places).unwrap_or(digits.len());
    let mut head = digits[..keep].to_vec();
    if digits[keep..].iter().any(|d| *d != 0) {
        increment(&mut head);
    }
    head
}

/// The magnitude `digits * 10^exponent` rounded up to an integer, saturated at
/// `i64::MAX`. `digits` has no leading zeros.
pub(crate) fn saturated(digits: &[u8], exponent: i64) -> i64 {
    if digits.is_empty() {
        return 0;
    }
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    // i64::MAX has 19 digits: any value with 20 or more does not fit.
    if exponent >= 0 {
        if len.saturating_add(exponent) > 19 {
            return i64::MAX;
        }
        let mut value: u128 = 0;
        for digit in digits {
            value = value * 10 + u128::from(*digit);
        }
        for _ in 0..exponent {
            value *= 10;
        }
        return i64::try_from(value).unwrap_or(i64::MAX);
    }
    let places = exponent.unsigned_abs();
    let rounded = divide_rounding_up(digits, places);
    if rounded.len() > 19 {
        return i64::MAX;
    }
    let mut value: u128 = 0;
    for digit in &rounded {
        value = value * 10 + u128::from(*digit);
    }
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `a + b` for digit strings of any lengths (leading zeros allowed).
pub(crate) fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0u8;
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 || j > 0 || carry > 0 {
        let x = if i > 0 {
            i -= 1;
            a[i]
        } else {
            0
        };
        let y = if j > 0 {
            j -= 1;
            b[j]
        } else {
            0
        };
        let sum = x + y + carry;
        out.push(sum % 10);
        carry = sum / 10;
    }
    out.reverse();
    out
}

/// `a - b` for digit strings with `a ≥ b` (leading zeros allowed).
pub(crate) fn subtract(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0i8;
    let mut j = b.len();
    for &x in a.iter().rev() {
        let y = if j > 0 {
            j -= 1;
            b[j] as i8
        } else {
            0
        };
        let mut d = x as i8 - y - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out.push(d as u8);
    }
    out.reverse();
    out
}

/// Compare `a * 10^ea` with `b * 10^eb`, both without leading zeros and non-zero.
pub(crate) fn compare(a: &[u8], ea: i64, b: &[u8], eb: i64) -> Ordering {
    // The position of the leading digit decides, then the digits themselves.
    let lead_a = i128::from(ea) + a.len() as i128;
    let lead_b = i128::from(eb) + b.len() as i128;
    lead_a.cmp(&lead_b).then_with(|| {
        let longest = a.len().max(b.len());
        let at = |d: &[u8], i: usize| d.get(i).copied().unwrap_or(0);
        (0..longest)
            .map(|i| at(a, i).cmp(&at(b, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    })
}

/// Digits of an unsigned integer.
pub(crate) fn of(mut value: u128) -> Vec<u8> {
    let mut digits = Vec::new();
    while value > 0 {
        digits.push((value % 10) as u8);
        value /= 10;
    }
    digits.reverse();
    digits
}

/// Render digits as text.
pub(crate) fn text(digits: &[u8]) -> String {
    if digits.is_empty() {
        return "0".to_owned();
    }
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_and_rounds_exactly() {
        let mut d = of(1023);
        multiply(&mut d, 1024);
        assert_eq!(text(&d), "1047552");
        let mut nines = of(999);
        increment(&mut nines);
        assert_eq!(text(&nines), "1000");
        assert_eq!(text(&divide_rounding_up(&of(1500), 3)), "2");
        assert_eq!(text(&divide_rounding_up(&of(1000), 3)), "1");
        assert_eq!(text(&divide_rounding_up(&of(5), 40)), "1");
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(saturated(&of(1), 30), i64::MAX);
        assert_eq!(saturated(&of(1), i64::MAX), i64::MAX);
        assert_eq!(saturated(&of(9_223_372_036_854_775_807), 0), i64::MAX);
        assert_eq!(saturated(&of(9_223_372_036_854_775_808), 0), i64::MAX);
        assert_eq!(saturated(&of(15), -1), 2);
        assert_eq!(saturated(&of(15), i64::MIN), 1);
        assert_eq!(saturated(&[], 5), 0);
    }

    #[test]
    fn compares_by_magnitude() {
        assert_eq!(compare(&of(1), 3, &of(1000), 0), Ordering::Equal);
        assert_eq!(compare(&of(12), 0, &of(123), -1), Ordering::Less);
        assert_eq!(compare(&of(2), 0, &of(19), -1), Ordering::Greater);
        assert_eq!(
            compare(&of(1), i64::MAX, &of(1), i64::MIN),
            Ordering::Greater
        );
    }
}
