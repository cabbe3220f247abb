//! Charts of `compare` results: `compare SCENARIO --csv FILE` appends the medians, `chart`
//! draws an SVG per scenario, link and metric, with a group of bars per x-axis category and a
//! bar per transport.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::BoxError;
use crate::report::Row;

/// The `chart` subcommand's arguments.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ChartArgs {
    /// The CSV file `compare SCENARIO --csv` appended to.
    #[arg(long)]
    pub(crate) csv: PathBuf,
    /// Directory for the SVG files.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// Draws the charts and prints the path of each file written.
pub(crate) fn run(args: &ChartArgs) -> Result<(), BoxError> {
    for file in draw_all(&args.csv, &args.out)? {
        println!("{}", args.out.join(file).display());
    }
    Ok(())
}

/// Colours by transport, in the order transports first appear.
const COLOURS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// One chart: categories on the x axis, a series per transport.
#[derive(Default)]
struct Chart {
    categories: Vec<String>,
    transports: Vec<String>,
    /// (category, transport) → value; a later row for the same point replaces an earlier one.
    values: BTreeMap<(usize, usize), f64>,
}

fn position(list: &mut Vec<String>, item: &str) -> usize {
    list.iter().position(|c| c == item).unwrap_or_else(|| {
        list.push(item.to_owned());
        list.len() - 1
    })
}

/// The charts in a CSV file's text, by (scenario, cell, metric).
type Charts = BTreeMap<(String, String, String), Chart>;

fn charts_in(text: &str) -> Charts {
    let mut charts = Charts::new();
    for row in text.lines().filter_map(Row::parse) {
        let chart = charts
            .entry((row.scenario, row.cell, row.metric))
            .or_default();
        let category = position(&mut chart.categories, &row.category);
        let transport = position(&mut chart.transports, &row.transport);
        chart.values.insert((category, transport), row.value);
    }
    charts
}

/// Reads the rows in `csv` and writes one SVG per (scenario, cell, metric) into `out`;
/// returns the files written.
fn draw_all(csv: &Path, out: &Path) -> Result<Vec<String>, BoxError> {
    let charts = charts_in(&std::fs::read_to_string(csv)?);
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for ((scenario, cell, metric), chart) in &charts {
        let name = format!("{}.svg", slug(&format!("{scenario} {cell} {metric}")));
        let title = format!("{scenario}: {metric}, {cell}");
        draw(&out.join(&name), &title, metric, chart)?;
        written.push(name);
    }
    Ok(written)
}

/// Lower-case letters and digits, runs of anything else as one `-`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '.' {
            out.push('p');
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

fn draw(path: &Path, title: &str, metric: &str, chart: &Chart) -> Result<(), BoxError> {
    let top = chart
        .values
        .values()
        .copied()
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.15;
    let groups = chart.categories.len();
    let series = chart.transports.len().max(1);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut plot = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups as f64, 0f64..top)?;
    plot.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(metric)
        .draw()?;
    let width = 0.8 / series as f64;
    for (t, transport) in chart.transports.iter().enumerate() {
        let colour = COLOURS[t % COLOURS.len()];
        let bars = chart
            .values
            .iter()
            .filter(|((_, tt), _)| *tt == t)
            .map(|((c, _), v)| {
                let left = *c as f64 + 0.1 + t as f64 * width;
                Rectangle::new([(left, 0.0), (left + width * 0.95, *v)], colour.filled())
            });
        plot.draw_series(bars)?
            .label(transport.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    // Category names under their groups, in the x-label area.
    let label = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (c, category) in chart.categories.iter().enumerate() {
        let (x, y) = plot.backend_coord(&(c as f64 + 0.5, 0.0));
        root.draw(&Text::new(category.as_str(), (x, y + 8), label.clone()))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{charts_in, slug};

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(
            slug("hol 1024 B; RTT 20 ms p99 latency (ms)"),
            "hol-1024-b-rtt-20-ms-p99-latency-ms"
        );
        assert_eq!(slug("loss 0.5 %"), "loss-0p5");
    }

    /// `compare mixed --csv`'s rows make a chart per metric with the bulk uploads on the x
    /// axis, in the order they ran, and a bar per transport.
    #[test]
    fn mixed_rows_chart_urgent_p99_against_bulk_uploads() {
        let mut text = String::new();
        for n in ["0 bulk", "8 bulk", "32 bulk"] {
            for transport in ["quicrpc QUIC", "quicrpc TCP fallback", "tonic TCP+TLS"] {
                for metric in ["CRITICAL p99 latency (ms)", "bulk MB per second"] {
                    text +=
                        &format!("mixed,loopback; 8 urgent callers,{n},{transport},{metric},1.5\n");
                }
            }
        }
        let charts = charts_in(&text);
        assert_eq!(charts.len(), 2);
        let key = (
            "mixed".to_owned(),
            "loopback; 8 urgent callers".to_owned(),
            "CRITICAL p99 latency (ms)".to_owned(),
        );
        let chart = &charts[&key];
        assert_eq!(chart.categories, ["0 bulk", "8 bulk", "32 bulk"]);
        assert_eq!(chart.transports.len(), 3);
        assert_eq!(chart.values.len(), 9);
        assert_eq!(
            slug("mixed loopback; 8 urgent callers CRITICAL p99 latency (ms)"),
            "mixed-loopback-8-urgent-callers-critical-p99-latency-ms"
        );
    }
}
