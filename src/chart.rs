//! A terminal line chart: several series over one step axis, each column showing the min
//! and max of the points that fall in it, so spikes survive downsampling.

use steplog::Series;

use crate::output::short;

/// Draws `series` (label, marker, data) in a `width` × `height` character grid.
pub fn render(series: &[(&str, char, &Series)], width: usize, height: usize) -> String {
    let points = series
        .iter()
        .flat_map(|(_, _, s)| s.steps.iter().zip(&s.values));
    let (mut x0, mut x1, mut y0, mut y1) = (u64::MAX, 0u64, f64::INFINITY, f64::NEG_INFINITY);
    for (&x, &y) in points {
        if !y.is_finite() {
            continue;
        }
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 || width < 2 || height < 2 {
        return "(no data)\n".into();
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let mut grid = vec![vec![' '; width]; height];
    for (_, marker, s) in series {
        let mut cols: Vec<Option<(f64, f64)>> = vec![None; width];
        for (&x, &y) in s.steps.iter().zip(&s.values) {
            if !y.is_finite() {
                continue;
            }
            let c =
                ((x - x0) as f64 / (x1 - x0).max(1) as f64 * (width - 1) as f64).round() as usize;
            let slot = &mut cols[c.min(width - 1)];
            *slot = Some(slot.map_or((y, y), |(lo, hi)| (lo.min(y), hi.max(y))));
        }
        let row_of = |y: f64| {
            let r = ((y - y0) / (y1 - y0) * (height - 1) as f64).round() as usize;
            height - 1 - r.min(height - 1)
        };
        for (c, range) in cols.iter().enumerate() {
            if let Some((lo, hi)) = range {
                for line in grid.iter_mut().take(row_of(*lo) + 1).skip(row_of(*hi)) {
                    line[c] = *marker;
                }
            }
        }
    }
    let label_w = [short(y1), short(y0)]
        .iter()
        .map(|s| s.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (r, line) in grid.iter().enumerate() {
        let label = if r == 0 {
            short(y1)
        } else if r == height - 1 {
            short(y0)
        } else {
            String::new()
        };
        out += &format!("{label:>label_w$} │{}\n", line.iter().collect::<String>());
    }
    out += &format!("{:>label_w$} └{}\n", "", "─".repeat(width));
    let (l, r) = (format!("step {x0}"), format!("step {x1}"));
    let gap = (width + 1).saturating_sub(l.len() + r.len());
    out += &format!("{:>label_w$}  {l}{}{r}\n", "", " ".repeat(gap));
    let legend: Vec<String> = series
        .iter()
        .map(|(name, m, _)| format!("{m} {name}"))
        .collect();
    out += &format!("{:>label_w$}  {}\n", "", legend.join("   "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_survives_downsampling() {
        let mut s = Series::default();
        for i in 0..10_000u64 {
            s.steps.push(i);
            s.values.push(if i == 5_000 { 100.0 } else { 1.0 });
        }
        let text = render(&[("loss", '*', &s)], 40, 10);
        let first_row = text.lines().next().unwrap();
        assert!(first_row.contains('*'), "{text}");
        assert!(first_row.starts_with("100"));
    }
}
