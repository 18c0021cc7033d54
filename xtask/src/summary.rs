//! Reading `cargo test`'s result lines, on the host and off the guest's console.

/// The number just before `label` in `ok. 5 passed; 0 failed; …`.
pub fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_cargo_test_result_lines() {
        let ok = "ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.55s";
        assert_eq!(
            (count_before(ok, " passed"), count_before(ok, " failed")),
            (5, 0)
        );
        let bad =
            "FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s";
        assert_eq!(
            (count_before(bad, " passed"), count_before(bad, " failed")),
            (3, 2)
        );
        assert_eq!(count_before("garbage", " passed"), 0);
    }
}
