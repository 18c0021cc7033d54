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

/// The most lines kept of one failed test binary's report: a test that dumps a whole
/// daemon log must not push the other failures off the end of CI's output.
const REPORT_LINES: usize = 120;

/// Collects what libtest prints after a failing binary's tests — from its `failures:` line
/// to its `test result:` line — so the run can repeat it at its very end. CI shows only the
/// tail of a 40-minute log, and the tail must name the test that failed and why.
#[derive(Default)]
pub struct FailureReports {
    current: Option<Vec<String>>,
    reports: Vec<Vec<String>>,
}

impl FailureReports {
    pub fn feed(&mut self, line: &str) {
        if line.starts_with("test result: ") {
            if let Some(report) = self.current.take() {
                self.reports.push(report);
            }
            return;
        }
        match &mut self.current {
            Some(report) => {
                report.push(line.to_owned());
                if report.len() > REPORT_LINES {
                    report.remove(0);
                }
            }
            None if line.trim_end() == "failures:" => self.current = Some(Vec::new()),
            None => {}
        }
    }

    /// Prints every report, and one cut short (a binary killed by a signal prints no
    /// `test result:` line).
    pub fn print(&self, heading: &str) {
        for report in self.reports.iter().chain(&self.current) {
            println!("==== {heading}: what a failed test binary printed (last {REPORT_LINES} lines at most)");
            for line in report {
                println!("{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{count_before, FailureReports};

    #[test]
    fn keeps_what_libtest_printed_about_failures() {
        let mut reports = FailureReports::default();
        for line in [
            "test a::ok ... ok",
            "test result: ok. 1 passed; 0 failed",
            "test b::bad ... FAILED",
            "",
            "failures:",
            "",
            "---- b::bad stdout ----",
            "thread 'b::bad' panicked at tests/b.rs:3:5:",
            "",
            "failures:",
            "    b::bad",
            "",
            "test result: FAILED. 0 passed; 1 failed",
            "test c::fine ... ok",
        ] {
            reports.feed(line);
        }
        assert_eq!(reports.reports.len(), 1);
        let report = &reports.reports[0];
        assert!(report.iter().any(|l| l.contains("panicked at tests/b.rs")));
        assert_eq!(report.last().map(String::as_str), Some(""));
        assert!(report.iter().any(|l| l == "    b::bad"));
        assert!(!report.iter().any(|l| l.contains("c::fine")));
    }

    #[test]
    fn keeps_only_the_tail_of_a_long_report() {
        let mut reports = FailureReports::default();
        reports.feed("failures:");
        for n in 0..1000 {
            reports.feed(&format!("log line {n}"));
        }
        reports.feed("test result: FAILED. 0 passed; 1 failed");
        let report = &reports.reports[0];
        assert_eq!(report.len(), super::REPORT_LINES);
        assert_eq!(report.last().map(String::as_str), Some("log line 999"));
    }

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
