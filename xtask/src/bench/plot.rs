//! Line charts of bench results, as SVG (plotters): one line per proxy mode, N on the x axis.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws `series` (name, points) into an SVG at `path`, both axes logarithmic: N spans 1 to
/// 10,000 and the modes' costs four orders of magnitude, which linear axes flatten into the
/// floor. Points that are not positive (nothing to place on a log axis) are left out.
pub fn lines(path: &Path, title: &str, series: &[(String, Vec<(f64, f64)>)]) -> anyhow::Result<()> {
    lines_over(path, title, "services", series)
}

/// [`lines`] with another quantity on the x axis (`x_desc`).
pub fn lines_over(
    path: &Path,
    title: &str,
    x_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let series: Vec<(&String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, points)| {
            let plottable = |v: f64| v.is_finite() && v > 0.0;
            let kept = points
                .iter()
                .copied()
                .filter(|(x, y)| plottable(*x) && plottable(*y))
                .collect();
            (name, kept)
        })
        .collect();
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let bounds = |pick: fn(&(f64, f64)) -> f64| {
        let (low, high) = points()
            .map(pick)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if low.is_finite() {
            (low / 2.0, high * 2.0)
        } else {
            (0.1, 10.0) // nothing to plot: an empty chart with a legend
        }
    };
    let (x_min, x_max) = bounds(|p| p.0);
    let (y_min, y_max) = bounds(|p| p.1);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}, log-log"), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("keel-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("chart.svg");
        let series = vec![
            ("ebpf".to_owned(), vec![(1.0, 0.1), (1000.0, 16.0)]),
            ("nftables".to_owned(), vec![(1.0, 14.0), (1000.0, 700.0)]),
            // A zero and a NaN have no place on a log axis: left out, not a failure.
            ("iptables".to_owned(), vec![(1.0, 0.0), (1000.0, f64::NAN)]),
        ];
        lines(&path, "program", &series)?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(
            svg.starts_with("<svg") && svg.contains("nftables"),
            "{}",
            &svg[..svg.len().min(200)]
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
