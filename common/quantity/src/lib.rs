//! Kubernetes resource quantities (`128Mi`, `1.5Gi`, `500m`, `2`) as numbers.

/// Bytes of a memory quantity.
pub fn bytes(text: &str) -> Option<i64> {
    let text = text.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Pi", 1024.0f64.powi(5)),
        ("Ei", 1024.0f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number
                .parse::<f64>()
                .ok()
                .map(|n| (n * factor).ceil() as i64);
        }
    }
    if let Some(number) = text.strip_suffix('m') {
        return number
            .parse::<f64>()
            .ok()
            .map(|n| (n / 1000.0).ceil() as i64);
    }
    text.parse::<f64>().ok().map(|n| n.ceil() as i64)
}

/// Millicores of a CPU quantity.
pub fn millicores(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(number) = text.strip_suffix('m') {
        return number.parse::<f64>().ok().map(|n| n.ceil() as i64);
    }
    text.parse::<f64>().ok().map(|n| (n * 1000.0).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_api() {
        assert_eq!(bytes("128Mi"), Some(128 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("512"), Some(512));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("x"), None);
        assert_eq!(millicores("500m"), Some(500));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("0.1"), Some(100));
    }
}
