//! What the benches read off a component's Prometheus `/metrics`: the page itself (one plain
//! HTTP/1.0 GET, no client library), a sample's value, and a histogram's buckets, whose
//! difference between two scrapes gives the quantiles of what happened in between — the way
//! kube's scheduler_perf computes its latency percentiles.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `/metrics` endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    /// `host:port`.
    addr: String,
    path: String,
}

impl Target {
    /// `http://host:port[/path]`; the path defaults to `/metrics`.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only http:// metrics URLs are read"))?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        if addr.is_empty() {
            bail!("{url}: no host:port");
        }
        Ok(Target {
            url: url.to_owned(),
            addr: addr.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The page's text; an answer other than 200 is an error naming the URL.
    pub async fn fetch(&self) -> anyhow::Result<String> {
        let fetch = async {
            let mut stream = tokio::net::TcpStream::connect(&self.addr).await?;
            let request = format!("GET {} HTTP/1.0\r\nHost: {}\r\n\r\n", self.path, self.addr);
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            anyhow::Ok(answer)
        };
        let answer = tokio::time::timeout(Duration::from_secs(2), fetch)
            .await
            .with_context(|| format!("{}: no answer within 2 s", self.url))?
            .with_context(|| format!("fetching {}", self.url))?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("{}: not an HTTP answer", self.url))?;
        if head.split_whitespace().nth(1) != Some("200") {
            bail!("{}: {}", self.url, head.lines().next().unwrap_or(""));
        }
        Ok(body.to_owned())
    }
}

/// The sum of the samples of `name` (every label set), if it has any.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name{...} 3` or `name 3`, not `name_total ...`.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// The cumulative buckets `(le, count)` of the histogram `name` whose series carries every
/// label of `labels` (`key="value"` strings), in the page's order (ascending, `+Inf` last).
pub fn buckets(text: &str, name: &str, labels: &[&str]) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (set, value) = rest.split_once("} ")?;
            if !labels
                .iter()
                .all(|label| set.split(',').any(|l| l == *label))
            {
                return None;
            }
            let le = set
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))?
                .trim_end_matches('"');
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// The buckets of `after` minus those of `before` (the same series scraped twice): what was
/// observed in between. A bucket missing from `before` counts from zero.
pub fn delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c);
            (le, (count - earlier).max(0.0))
        })
        .collect()
}

/// The `q` quantile (0..=1) of cumulative `buckets` as Prometheus' `histogram_quantile`
/// computes it: linear within the bucket the rank falls in, from the bucket's lower bound (0
/// for the first); a rank in `+Inf` gives the highest finite bound. `None` without
/// observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(lower.0 + (le - lower.0) * (rank - lower.1) / in_bucket);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP scheduler_scheduling_attempt_duration_seconds Scheduling attempt latency.
# TYPE scheduler_scheduling_attempt_duration_seconds histogram
scheduler_scheduling_attempt_duration_seconds_sum{result=\"scheduled\",profile=\"default-scheduler\"} 1.5
scheduler_scheduling_attempt_duration_seconds_count{result=\"scheduled\",profile=\"default-scheduler\"} 100
scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.001\",result=\"scheduled\",profile=\"default-scheduler\"} 10
scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.002\",result=\"scheduled\",profile=\"default-scheduler\"} 50
scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.004\",result=\"scheduled\",profile=\"default-scheduler\"} 90
scheduler_scheduling_attempt_duration_seconds_bucket{le=\"+Inf\",result=\"scheduled\",profile=\"default-scheduler\"} 100
scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.001\",result=\"unschedulable\",profile=\"default-scheduler\"} 7
scheduler_scheduling_attempt_duration_seconds_bucket{le=\"+Inf\",result=\"unschedulable\",profile=\"default-scheduler\"} 7
scheduler_pending_pods{queue=\"active\"} 3
scheduler_pending_pods{queue=\"backoff\"} 2
scheduler_pending_pods_total 99
";

    #[test]
    fn buckets_are_read_for_the_series_whose_labels_match() {
        let scheduled = buckets(
            PAGE,
            "scheduler_scheduling_attempt_duration_seconds",
            &["result=\"scheduled\""],
        );
        assert_eq!(
            scheduled,
            vec![
                (0.001, 10.0),
                (0.002, 50.0),
                (0.004, 90.0),
                (f64::INFINITY, 100.0)
            ]
        );
        let unschedulable = buckets(
            PAGE,
            "scheduler_scheduling_attempt_duration_seconds",
            &["result=\"unschedulable\""],
        );
        assert_eq!(unschedulable, vec![(0.001, 7.0), (f64::INFINITY, 7.0)]);
        assert!(buckets(PAGE, "scheduler_nothing", &[]).is_empty());
    }

    fn close(value: Option<f64>, expected: f64) -> bool {
        value.is_some_and(|v| (v - expected).abs() < 1e-12)
    }

    #[test]
    fn quantiles_interpolate_as_histogram_quantile_does() {
        let b = buckets(
            PAGE,
            "scheduler_scheduling_attempt_duration_seconds",
            &["result=\"scheduled\""],
        );
        // Rank 50 is the top of the second bucket; rank 70 half-way through the third.
        assert!(close(quantile(&b, 0.5), 0.002));
        assert!(close(quantile(&b, 0.7), 0.003));
        // Rank 5 is half-way through the first bucket, which starts at 0.
        assert!(close(quantile(&b, 0.05), 0.0005));
        // Rank 99 is in +Inf: the highest finite bound, as Prometheus answers.
        assert!(close(quantile(&b, 0.99), 0.004));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[(0.001, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn a_delta_holds_only_what_was_observed_between_two_scrapes() {
        let before = vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)];
        let after = vec![(0.001, 10.0), (0.002, 30.0), (f64::INFINITY, 30.0)];
        let between = delta(&before, &after);
        assert_eq!(
            between,
            vec![(0.001, 0.0), (0.002, 20.0), (f64::INFINITY, 20.0)]
        );
        // Every observation in between fell in (0.001, 0.002].
        assert!(close(quantile(&between, 0.5), 0.0015));
        // A series that appeared between the scrapes counts from zero.
        assert_eq!(delta(&[], &after), after);
    }

    #[test]
    fn sums_take_every_label_set_and_no_longer_names() {
        assert_eq!(sum(PAGE, "scheduler_pending_pods"), Some(5.0));
        assert_eq!(sum(PAGE, "scheduler_nothing"), None);
    }

    #[test]
    fn urls_other_than_plain_http_are_refused_by_name() {
        let error = Target::parse("https://127.0.0.1:9/metrics")
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("https://127.0.0.1:9/metrics")));
        assert!(Target::parse("http:///metrics").is_err());
        let target = Target::parse("http://127.0.0.1:9").expect("parses");
        assert_eq!(
            (target.addr.as_str(), target.path.as_str()),
            ("127.0.0.1:9", "/metrics")
        );
    }
}
