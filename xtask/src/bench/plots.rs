//! PNG plots of the network benchmark (plotters' bitmap backend, text with Debian's DejaVu
//! Sans through ab_glyph, so no fontconfig is needed).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::Value;

/// DejaVu Sans from Debian's fonts-dejavu-core (installed by setup).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<()> {
    let bytes = std::fs::read(FONT).with_context(|| {
        format!("reading {FONT} (cargo xtask setup installs fonts-dejavu-core)")
    })?;
    // plotters keeps fonts for the process's lifetime.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e}")
}

/// A series: a name and (x, y) points.
type Series = (String, Vec<(f64, f64)>);

fn line_chart(path: &Path, title: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .collect();
    let x_max = xs.iter().copied().fold(1.0, f64::max) * 1.5;
    let y_max = ys.iter().copied().fold(1.0, f64::max) * 2.0;
    let y_min = ys.iter().copied().fold(f64::MAX, f64::min).max(0.1) / 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((0.8f64..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("Services present")
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(plot_error)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// `latency_vs_services.png` and `programming_vs_services.png` in `dir`.
pub fn network(net: &Value, dir: &Path) -> Result<()> {
    register_font()?;
    let scale = net["scale"].as_array().cloned().unwrap_or_default();
    let paths = [
        "direct pod IP (Skiff node)",
        "Skiff socket LB",
        "Skiff tc (per packet)",
        "direct pod IP (bare node)",
    ];
    // kube-proxy's rows are named with the rule or Service count: matched by prefix (for
    // iptables the worst case, the rule last).
    let kube_proxy = [
        (
            "kube-proxy iptables, rule last",
            "kube-proxy iptables (rule last",
        ),
        ("kube-proxy nftables", "kube-proxy nftables ("),
    ];
    let mut latency: Vec<Series> = Vec::new();
    for quantile in ["p50_us", "p99_us"] {
        let series = |label: &str, is_path: &dyn Fn(&str) -> bool| -> Series {
            let points = scale
                .iter()
                .filter_map(|p| {
                    let rows = p["paths"]["rows"].as_array()?;
                    let row = rows.iter().find(|r| {
                        r["mode"].as_str() == Some("tcp_rr")
                            && r["path"].as_str().is_some_and(is_path)
                    })?;
                    Some((p["services"].as_f64()?, row[quantile].as_f64()?))
                })
                .collect();
            (format!("{label} {}", &quantile[..3]), points)
        };
        for path in paths {
            latency.push(series(path, &|name| name == path));
        }
        for (label, prefix) in kube_proxy {
            let found = series(label, &|name| name.starts_with(prefix));
            // Reports from before the nftables rows have none.
            if !found.1.is_empty() {
                latency.push(found);
            }
        }
    }
    line_chart(
        &dir.join("latency_vs_services.png"),
        "TCP_RR latency against the number of Services",
        "latency (µs)",
        &latency,
    )?;
    let mut programming: Vec<Series> = Vec::new();
    let operation = |group: &str, index: usize, name: &str| -> Series {
        let points = scale
            .iter()
            .filter_map(|p| {
                let op = p["programming"][group]["operations"]
                    .as_array()?
                    .get(index)?;
                Some((p["services"].as_f64()?, op["p50_us"].as_f64()?))
            })
            .collect();
        (name.to_owned(), points)
    };
    programming.push(operation(
        "skiff_maps",
        0,
        "Skiff: add a Service (map writes)",
    ));
    programming.push(operation("skiff_maps", 1, "Skiff: change one endpoint"));
    programming.push(operation(
        "iptables",
        0,
        "kube-proxy: iptables-restore, full",
    ));
    programming.push(operation(
        "iptables",
        1,
        "kube-proxy: iptables-restore, partial",
    ));
    for (index, name) in [
        (0, "kube-proxy: nft -f, full"),
        (1, "kube-proxy: nft -f, partial"),
    ] {
        let series = operation("nftables", index, name);
        if !series.1.is_empty() {
            programming.push(series);
        }
    }
    let end_to_end = scale
        .iter()
        .filter_map(|p| {
            Some((
                p["services"].as_f64()?,
                p["programming"]["end_to_end"]["p50_us"].as_f64()?,
            ))
        })
        .collect();
    programming.push((
        "Skiff: API write → every node answers".to_owned(),
        end_to_end,
    ));
    line_chart(
        &dir.join("programming_vs_services.png"),
        "Programming one Service against the number of Services (p50)",
        "time (µs)",
        &programming,
    )
}
