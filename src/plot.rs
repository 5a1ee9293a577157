//! `steplog plot`: line charts of metrics with the run's lineage overlaid — the versions a
//! rewind archived and the forks, each in its own colour, drawn over the steps it owns and
//! joined to its parent at the step it branched from, with a dashed marker there.
//!
//! Every line is drawn from [`steplog::Store::downsample_snapped`] (M4 from block aggregates)
//! with one bucket per pixel column, so the cost depends on the chart's width, not the run's
//! length. Output: SVG (written here, by hand: plain paths and text), PNG (the same SVG
//! rasterised by resvg, labels in a system font), or a terminal chart when no file is given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use steplog::{Lineage, Origin, Series, Status, Store, VersionInfo};

use crate::args::PlotArgs;
use crate::error::{CliError, CliResult};
use crate::output::short;
use crate::progress::Bar;

/// The widest chart: in a terminal, in columns; in a file, in pixels.
const MAX_TERMINAL_WIDTH: usize = 1000;
const MAX_FILE_WIDTH: usize = 16384;

/// The most pixels of a PNG chart (drawn in memory at 4 bytes each: 256 MiB). 60 panels at
/// the widest took 2 GB.
const MAX_PNG_PIXELS: u64 = 1 << 26;

/// The most metrics on one chart, a panel each: 60 panels of `PANEL_H` pixels keep a chart
/// within `MAX_FILE_WIDTH` pixels in height too (3,000 keys made a 62 MB PNG in 6 GB).
const MAX_PANELS: usize = 60;

/// The most versions overlaid on one chart: the plotted one and those nearest it (more lines
/// could not be told apart; their colours would repeat).
const MAX_OVERLAY: usize = 8;

/// The lineage colours (Tableau 10); the plotted version takes the first.
const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const MARKERS: [char; 8] = ['●', '○', '◆', '◇', '▲', '△', '■', '□'];

/// One version's line in one panel.
struct Line {
    points: Vec<(u64, f64)>,
}

/// A version to draw: what it is, the steps it owns, and its colour.
struct Drawn {
    info: VersionInfo,
    from: u64,
    to: Option<u64>,
    focus: bool,
    colour: usize,
}

impl Drawn {
    fn label(&self) -> String {
        let how = self
            .info
            .how_made()
            .map_or(String::new(), |h| format!(", {h}"));
        format!(
            "{} {} [{}]{how}",
            self.info.id, self.info.run, self.info.status
        )
    }
}

/// The versions of `tree` to overlay with `focus`: the focus, then the others nearest to it in
/// the tree (its parent and children, theirs, ...), at most `MAX_OVERLAY` in all; and how many
/// were left out.
fn overlay(tree: &Lineage, focus: steplog::VersionId) -> (Vec<VersionInfo>, usize) {
    let n = tree.versions.len();
    let Some(start) = tree.index_of(focus) else {
        return (Vec::new(), n);
    };
    let mut parent = vec![None; n];
    for (i, kids) in tree.children.iter().enumerate() {
        for &c in kids {
            parent[c] = Some(i);
        }
    }
    // Breadth first from the focus, over parent and child edges.
    let mut seen = vec![false; n];
    let mut order = Vec::new();
    let mut queue = std::collections::VecDeque::from([start]);
    seen[start] = true;
    while let Some(i) = queue.pop_front() {
        if tree.versions[i].status != Status::Purged {
            order.push(i);
            if order.len() == MAX_OVERLAY {
                break;
            }
        }
        for j in parent[i]
            .into_iter()
            .chain(tree.children[i].iter().copied())
        {
            if !seen[j] {
                seen[j] = true;
                queue.push_back(j);
            }
        }
    }
    let live = tree
        .versions
        .iter()
        .filter(|v| v.status != Status::Purged)
        .count();
    let left_out = live - order.len();
    (
        order
            .into_iter()
            .map(|i| tree.versions[i].clone())
            .collect(),
        left_out,
    )
}

/// The metrics a chart shows when none is named (as TensorBoard and W&B show every one):
/// the version's numeric keys, those starting with `_` (`_timestamp`, `_runtime`) left out,
/// in key order; past [`MAX_PANELS`], the first ones, with a note on standard error.
fn default_keys(store: &Store, reference: &str) -> CliResult<Vec<String>> {
    let summary = store.summary(reference)?;
    let keys: Vec<String> = summary
        .keys
        .iter()
        .filter(|(k, s)| s.is_numeric() && !k.starts_with('_'))
        .map(|(k, _)| k.clone())
        .collect();
    if keys.is_empty() {
        return Err(CliError::Usage(format!(
            "'{reference}' has no numeric metric to plot (name one with --keys)"
        )));
    }
    if keys.len() > MAX_PANELS {
        eprintln!(
            "steplog: plotting the first {MAX_PANELS} of {} metrics; name the others with --keys",
            keys.len()
        );
    }
    Ok(keys.into_iter().take(MAX_PANELS).collect())
}

pub fn plot(store: &Store, args: PlotArgs, out: &mut impl Write) -> CliResult {
    let named = args.keys.selected();
    let keys = match &named {
        Some(k) => k.clone(),
        None => default_keys(store, &args.reference)?,
    };
    if keys.len() > MAX_PANELS {
        return Err(CliError::Usage(format!(
            "{} metrics asked for: a chart has at most {MAX_PANELS} panels (one per metric); \
             plot them in several charts",
            keys.len()
        )));
    }
    let steplog::Resolved {
        version: focus,
        step: cut,
    } = store.resolve(&args.reference)?;
    let (mut infos, left_out) = if args.no_lineage {
        (vec![store.version(focus)?], 0)
    } else {
        overlay(&store.lineage(&args.reference)?, focus)
    };
    // The plotted version first (it takes the first colour and is drawn first, under the
    // others).
    infos.sort_by_key(|v| (v.id != focus, v.id));
    // The plotted version's ancestors, each with the step its descendant branched at: an
    // ancestor shares the plotted line up to there, and is drawn only from there on.
    let mut shared_to = std::collections::HashMap::new();
    let mut at = infos.iter().find(|v| v.id == focus).and_then(|v| v.parent);
    while let Some(p) = at {
        if shared_to.insert(p.version, p.step).is_some() {
            break;
        }
        at = infos
            .iter()
            .find(|v| v.id == p.version)
            .and_then(|v| v.parent);
    }
    let mut drawn = Vec::new();
    for (i, info) in infos.into_iter().enumerate() {
        if info.status == Status::Purged {
            continue;
        }
        let is_focus = info.id == focus;
        // A version owns the steps after its parent's cutoff; it is drawn from the cutoff
        // itself so that its line joins its parent's. An ancestor of the plotted version is
        // drawn from where the plotted line leaves it; the plotted version is drawn whole.
        let from = match (shared_to.get(&info.id), info.parent) {
            _ if is_focus || args.no_lineage => 0,
            (Some(&step), _) => step,
            (None, Some(p)) => p.step,
            (None, None) => 0,
        };
        drawn.push(Drawn {
            info,
            from,
            to: if is_focus { cut } else { None },
            focus: is_focus,
            colour: i % COLOURS.len(),
        });
    }
    if named.is_some() {
        check_keys(store, &args.reference, &drawn, &keys)?;
    }
    let (x_from, x_to) = (args.from.unwrap_or(0), args.to.unwrap_or(u64::MAX));
    let terminal = args.output.is_none();
    let (least, most) = if terminal {
        (20, MAX_TERMINAL_WIDTH)
    } else {
        (240, MAX_FILE_WIDTH)
    };
    let unit = if terminal {
        "columns in a terminal"
    } else {
        "pixels in a file"
    };
    if let Some(w) = args.width.filter(|&w| w > most) {
        return Err(CliError::Usage(format!(
            "--width {w} is wider than a chart can be: at most {most} {unit}"
        )));
    }
    if let Some(w) = args.width.filter(|&w| w < least) {
        return Err(CliError::Usage(format!(
            "--width {w} is narrower than a chart can be: at least {least} {unit}"
        )));
    }
    let width = args.width.unwrap_or(if terminal { 72 } else { 960 });
    let plot_w = if terminal {
        width
    } else {
        width.saturating_sub(110).max(50)
    };
    let bar = Bar::new();
    bar.stage("plot", (keys.len() * drawn.len()) as u64, false);
    let mut panels = Vec::new();
    for key in &keys {
        let mut lines = Vec::new();
        for d in &drawn {
            let lo = d.from.max(x_from);
            let hi = d.to.unwrap_or(u64::MAX).min(x_to);
            let points = if lo > hi {
                Vec::new()
            } else {
                match store.downsample_snapped(d.info.id, key, lo..=hi, plot_w)? {
                    Some(ds) => ds
                        .buckets
                        .iter()
                        .flatten()
                        .flat_map(|b| b.points())
                        .collect(),
                    None => Vec::new(),
                }
            };
            lines.push(Line { points });
            bar.set((panels.len() * drawn.len() + lines.len()) as u64);
        }
        if lines.iter().all(|l| l.points.is_empty()) {
            return Err(CliError::Usage(format!(
                "'{}' has no numeric values of '{key}' in the steps asked for",
                args.reference
            )));
        }
        panels.push((key.clone(), lines));
    }
    bar.done();
    match &args.output {
        None => {
            for (key, lines) in &panels {
                writeln!(out, "{key}")?;
                write!(out, "{}", terminal_chart(&drawn, lines, width))?;
            }
            if left_out > 0 {
                writeln!(
                    out,
                    "({left_out} more versions of the lineage not drawn: `steplog lineage {}` lists them)",
                    args.reference
                )?;
            }
        }
        Some(path) => {
            crate::outfile::refuse_inside_store(store.dir(), path)?;
            let svg = svg(&args.reference, &drawn, &panels, width);
            write_chart(path, &svg)?;
            let v = serde_json::json!({
                "file": path.display().to_string(),
                "versions": drawn.iter().map(|d| d.info.id.to_string()).collect::<Vec<_>>(),
                "versions_not_drawn": left_out,
                "points": panels.iter().flat_map(|(_, l)| l.iter().map(|l| l.points.len())).sum::<usize>(),
            });
            if crate::outfile::is_stdout(path) {
                // Standard output holds the chart: the report goes to standard error.
                eprintln!("steplog: {v}");
            } else {
                writeln!(out, "{v}")?;
            }
        }
    }
    Ok(())
}

/// A key named with `--keys` that no drawn version has is an error naming the plotted
/// version's close keys, not an empty panel; one that only a version of the lineage has (a
/// fork's own metric) is drawn for it.
fn check_keys(store: &Store, reference: &str, drawn: &[Drawn], keys: &[String]) -> CliResult {
    let history = steplog::Stream::History;
    for key in keys {
        let Err(e) = store.check_keys(reference, history, [key.as_str()]) else {
            continue;
        };
        let elsewhere = drawn
            .iter()
            .any(|d| store.check_keys(d.info.id, history, [key.as_str()]).is_ok());
        if !elsewhere {
            return Err(e.into());
        }
    }
    Ok(())
}

fn terminal_chart(drawn: &[Drawn], lines: &[Line], width: usize) -> String {
    let series: Vec<(String, char, Series)> = drawn
        .iter()
        .zip(lines)
        .filter(|(_, l)| !l.points.is_empty())
        .map(|(d, l)| {
            let (steps, values) = l.points.iter().copied().unzip();
            (
                format!("{} {}", d.info.id, d.info.run),
                MARKERS[d.colour % MARKERS.len()],
                Series { steps, values },
            )
        })
        .collect();
    // The plotted version last, so that it is drawn over the others.
    let mut refs: Vec<(&str, char, &Series)> =
        series.iter().map(|(n, m, s)| (n.as_str(), *m, s)).collect();
    refs.reverse();
    crate::chart::render(&refs, width, 14)
}

fn write_chart(path: &Path, svg: &str) -> CliResult {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        _ if crate::outfile::is_stdout(path) => svg.as_bytes().to_vec(),
        Some("svg") => svg.as_bytes().to_vec(),
        Some("png") => png(svg)?,
        _ => {
            return Err(CliError::Usage(format!(
                "{}: the chart file must end in .svg or .png",
                path.display()
            )))
        }
    };
    let (file, mut w) = crate::outfile::OutFile::create(path)?;
    w.write_all(&bytes).map_err(|e| match e.kind() {
        // A reader of `-o -` that stopped early (`| head`) is not an error.
        std::io::ErrorKind::BrokenPipe => CliError::Io(e),
        _ => CliError::Usage(format!("cannot write {}: {e}", path.display())),
    })?;
    file.finish(w)
}

fn png(svg: &str) -> CliResult<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut db = usvg::fontdb::Database::new();
    db.load_system_fonts();
    if db.is_empty() {
        eprintln!(
            "steplog: no system font found: the PNG has no labels (install one, e.g. \
             Debian's fonts-dejavu-core, or write .svg)"
        );
    }
    let opt = usvg::Options {
        fontdb: std::sync::Arc::new(db),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| CliError::Usage(format!("rendering the chart: {e}")))?;
    let size = tree.size().to_int_size();
    let pixels = u64::from(size.width()) * u64::from(size.height());
    if pixels > MAX_PNG_PIXELS {
        return Err(CliError::Usage(format!(
            "a PNG of {} × {} pixels is too large (at most {MAX_PNG_PIXELS} pixels, 256 MiB \
             to draw): ask for fewer metrics or a narrower --width, or write SVG",
            size.width(),
            size.height()
        )));
    }
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| CliError::Usage("the chart has no area".into()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| CliError::Usage(format!("encoding the PNG: {e}")))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About five round tick values covering `lo..=hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 12 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

const PANEL_H: f64 = 260.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 36.0;

fn svg(reference: &str, drawn: &[Drawn], panels: &[(String, Vec<Line>)], width: usize) -> String {
    let w = width as f64;
    let plot_w = w - LEFT - 40.0;
    // The legend names the versions drawn: a fork outside a zoomed range has no line.
    let shown: Vec<&Drawn> = drawn
        .iter()
        .enumerate()
        .filter(|(i, _)| panels.iter().any(|(_, ls)| !ls[*i].points.is_empty()))
        .map(|(_, d)| d)
        .collect();
    let legend_h = 18.0 * shown.len() as f64 + 10.0;
    let h = TOP + PANEL_H * panels.len() as f64 + legend_h;
    let mut s = String::new();
    let font = "font-family=\"DejaVu Sans, Liberation Sans, Arial, sans-serif\"";
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" {font} font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        esc(reference)
    );
    // One x range for every panel: the steps any line covers.
    let all = panels
        .iter()
        .flat_map(|(_, ls)| ls.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
    let (x0, x1) = all.fold((u64::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
    let x1 = x1.max(x0.saturating_add(1));
    let sx = |x: u64| LEFT + (x - x0) as f64 / (x1 - x0) as f64 * plot_w;
    for (p, (key, lines)) in panels.iter().enumerate() {
        let top = TOP + PANEL_H * p as f64 + 14.0;
        let ph = PANEL_H - 60.0;
        let ys = lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite());
        let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        if y0 > y1 {
            (y0, y1) = (0.0, 1.0);
        }
        if y1 - y0 < 1e-12 {
            (y0, y1) = (y0 - 0.5, y1 + 0.5);
        }
        let pad = (y1 - y0) * 0.05;
        let (y0, y1) = (y0 - pad, y1 + pad);
        let sy = |y: f64| top + ph - (y - y0) / (y1 - y0) * ph;
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{}</text>",
            top - 4.0,
            esc(key)
        );
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{plot_w}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"
        );
        for t in ticks(y0, y1) {
            let y = sy(t);
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                short(t)
            );
        }
        for t in ticks(x0 as f64, x1 as f64) {
            let x = LEFT + (t - x0 as f64) / (x1 - x0) as f64 * plot_w;
            let _ = writeln!(
                s,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                top + ph + 16.0,
                short(t)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">step</text>",
            LEFT + plot_w / 2.0,
            top + ph + 32.0
        );
        // Where versions branch: a dashed marker at the parent's cutoff, and the labels of
        // the versions branching at one step stacked, not drawn over each other.
        let mut at_step: BTreeMap<u64, usize> = BTreeMap::new();
        for d in drawn {
            if let Some(steplog::Parent {
                version: p,
                step: st,
            }) = d.info.parent
            {
                if st < x0 || st > x1 {
                    continue;
                }
                let x = sx(st);
                let what = if d.info.origin == Origin::Fork {
                    "fork"
                } else {
                    "rewind"
                };
                let nth = at_step.entry(st).or_insert(0);
                let _ = writeln!(
                    s,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"{}\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"10\" fill=\"{}\">{what} {p}@{st}</text>",
                    top + ph,
                    COLOURS[d.colour],
                    x + 3.0,
                    top + 12.0 + 12.0 * *nth as f64,
                    COLOURS[d.colour]
                );
                *nth += 1;
            }
        }
        // The plotted version first, wide, and the others over it, narrower: where a fork
        // follows the plotted line exactly (it was forked from it), both stay visible.
        let mut order: Vec<usize> = (0..drawn.len()).collect();
        order.sort_by_key(|&i| !drawn[i].focus);
        for i in order {
            let (d, l) = (&drawn[i], &lines[i]);
            let mut path = String::new();
            let mut pen_down = false;
            for &(x, y) in &l.points {
                if !y.is_finite() {
                    pen_down = false;
                    continue;
                }
                let _ = write!(
                    path,
                    "{}{:.1} {:.1} ",
                    if pen_down { "L" } else { "M" },
                    sx(x),
                    sy(y)
                );
                pen_down = true;
            }
            if path.is_empty() {
                continue;
            }
            let (wd, op, dash) = match (d.focus, d.info.status) {
                (true, _) => (3.2, 1.0, ""),
                (false, Status::Archived) => (1.4, 0.6, " stroke-dasharray=\"5 3\""),
                _ => (1.4, 0.7, ""),
            };
            let _ = writeln!(
                s,
                "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{wd}\" stroke-opacity=\"{op}\" stroke-linejoin=\"round\"{dash}/>",
                path.trim_end(),
                COLOURS[d.colour]
            );
        }
    }
    let mut y = TOP + PANEL_H * panels.len() as f64 + 4.0;
    for d in shown {
        let dash = if d.info.status == Status::Archived {
            " stroke-dasharray=\"5 3\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{}{}</text>",
            LEFT + 24.0,
            COLOURS[d.colour],
            LEFT + 30.0,
            y + 4.0,
            esc(&d.label()),
            if d.focus { " (plotted)" } else { "" }
        );
        y += 18.0;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1.0);
        assert_eq!(t.len(), 6, "{t:?}");
        for (i, x) in t.iter().enumerate() {
            assert!((x - i as f64 * 0.2).abs() < 1e-12, "{t:?}");
        }
        let t = ticks(3.0, 10_000_000.0);
        assert!(t.len() >= 4 && t.len() <= 7, "{t:?}");
        assert!(t.iter().all(|x| x % 1_000_000.0 == 0.0));
    }
}
