//! Quantities as clients write them (`cpu: 1e30`): parsing, reading as integers, ordering
//! and the canonical text, which must parse back to the same amount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_quantity::Quantity;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = skiff_quantity::bytes(text);
    let _ = skiff_quantity::millicores(text);
    let Ok(quantity) = Quantity::parse(text) else {
        return;
    };
    let milli = quantity.milli_value();
    let _ = quantity.value();
    let _ = quantity.is_integer();
    assert_eq!(quantity.cmp(&quantity), std::cmp::Ordering::Equal);
    let canonical = quantity.to_string();
    let again = Quantity::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical {canonical:?} of {text:?} does not parse: {e}"));
    // apimachinery wraps exponents beyond int32, so only amounts a client can read back
    // unchanged are compared: those that did not saturate.
    if milli.unsigned_abs() < i64::MAX.unsigned_abs() {
        assert_eq!(again.milli_value(), milli, "{text:?} → {canonical:?}");
        assert_eq!(again, quantity, "{text:?} → {canonical:?}");
    }
});
