//! The lineage tree drawn in text (`steplog lineage`, the demo).

use steplog::{Lineage, RowCount, Status, Store};

use crate::error::CliResult;

/// Versions drawn at each end of a long straight chain (each version the only child of the
/// one before: a campaign that rewinds after every crash); the ones between are one line.
const CHAIN_ENDS: usize = 2;

/// Draws a lineage tree with box-drawing characters; versions of `run` are marked. Long
/// straight chains are collapsed to their ends and one line (as `git log --graph` would), so
/// the drawing's size grows with the tree's branches, not its depth; `focus` is always shown.
pub fn draw_lineage(
    store: &Store,
    tree: &Lineage,
    run: &str,
    focus: Option<steplog::VersionId>,
) -> CliResult<String> {
    type Counts = std::collections::HashMap<steplog::VersionId, steplog::Result<RowCount>>;
    fn label(counts: &mut Counts, v: &steplog::VersionInfo, run: &str) -> CliResult<String> {
        let how = v.how_made().unwrap_or_else(|| "new run".to_string());
        let rows = if v.status == Status::Purged {
            String::new()
        } else {
            let RowCount {
                rows: c,
                last_step: last,
            } = match counts.remove(&v.id) {
                Some(counted) => counted?,
                None => RowCount::default(),
            };
            format!(
                ", {c} rows, last step {}",
                last.map_or("-".into(), |l| l.to_string())
            )
        };
        let mark = if v.run == run { " ◀" } else { "" };
        Ok(format!(
            "{} {} [{}] {how}{rows}{mark}",
            v.id, v.run, v.status
        ))
    }
    let n = tree.versions.len();
    let only_child = |i: usize| (tree.children[i].len() == 1).then(|| tree.children[i][0]);
    // hidden[i]: collapsed into the gap line of its chain, which `gap[i]` holds for the first.
    let mut hidden = vec![false; n];
    let mut gap: Vec<Option<(usize, usize, usize)>> = vec![None; n];
    let mut has_one_parent_child = vec![false; n];
    for i in 0..n {
        if let Some(c) = only_child(i) {
            has_one_parent_child[c] = true;
        }
    }
    for start in (0..n).filter(|&i| !has_one_parent_child[i]) {
        let mut chain = vec![start];
        while let Some(c) = only_child(*chain.last().unwrap_or(&start)) {
            chain.push(c);
        }
        if chain.len() <= 2 * CHAIN_ENDS + 1 {
            continue;
        }
        let middle = &chain[CHAIN_ENDS..chain.len() - CHAIN_ENDS];
        for part in middle.split(|&i| Some(tree.versions[i].id) == focus) {
            if let (Some(&first), Some(&last)) = (part.first(), part.last()) {
                for &i in part {
                    hidden[i] = true;
                }
                gap[first] = Some((part.len(), first, last));
            }
        }
    }
    // The rows of every version drawn, counted together (shared ancestry counted once).
    let drawn: Vec<steplog::VersionId> = (0..n)
        .filter(|&i| !hidden[i] && tree.versions[i].status != Status::Purged)
        .map(|i| tree.versions[i].id)
        .collect();
    let mut counts: Counts = drawn.iter().copied().zip(store.rows_of(&drawn)?).collect();
    let mut out = String::new();
    // (version, the prefix of its line, the prefix of its children's lines)
    let mut stack = vec![(0usize, String::new(), String::new())];
    while let Some((i, line, below)) = stack.pop() {
        if hidden[i] {
            if let Some((count, first, last)) = gap[i] {
                let (a, b) = (tree.versions[first].id, tree.versions[last].id);
                // At the column of the connector its line would have had.
                let lead: String = line
                    .chars()
                    .take(line.chars().count().saturating_sub(4))
                    .collect();
                out.push_str(&format!(
                    "{lead}⋮ {count} versions in a straight line, each from the one before \
                     ({a} … {b})\n"
                ));
            }
            // Its only child takes its place.
            if let Some(c) = only_child(i) {
                stack.push((c, line, below));
            }
            continue;
        }
        out.push_str(&format!(
            "{line}{}\n",
            label(&mut counts, &tree.versions[i], run)?
        ));
        let kids = &tree.children[i];
        for (k, &c) in kids.iter().enumerate().rev() {
            let last = k + 1 == kids.len();
            stack.push((
                c,
                format!("{below}{}", if last { "└── " } else { "├── " }),
                format!("{below}{}", if last { "    " } else { "│   " }),
            ));
        }
    }
    Ok(out)
}
