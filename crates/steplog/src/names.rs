//! The names a version has, and the names close to a mistyped one: the one rule for "a key
//! the version never had is an error that lists the keys it does have close to it"
//! ([`Store::check_keys`]), and the one measure of "close" ([`close_matches`]) that every
//! front end (CLI, Python, web view) uses for keys and run names alike.
//!
//! A key a version has is one with a value in one of its rows of the stream, up to the
//! reference's step: the keys of its ancestors' rows up to the branch step count, keys logged
//! only after the branch step by an ancestor do not. Sealed segments answer from their
//! footers' aggregates; a segment straddling the cutoff or a head segment from its blocks'
//! directories, decoding columns only for the one block that straddles a cutoff.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::manifest::{Cover, State};
use crate::reference::IntoReference;
use crate::store::Store;
use crate::types::{Stream, VersionId};

/// Up to five of `candidates` a few edits from `name` (a typo: at most 2 edits, or a fifth
/// of the name's length for long names, and 1 for a name of 3 characters or fewer, so that
/// `x` does not suggest `lr`), closest first, ties in the candidates' order.
pub fn close_matches<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let len = name.chars().count();
    let most = if len <= 3 { 1 } else { 2.max(len / 5) };
    let mut close: Vec<(usize, usize, &str)> = candidates
        .into_iter()
        .enumerate()
        .filter(|(_, c)| *c != name)
        .map(|(i, c)| (strsim::levenshtein(name, c), i, c))
        .filter(|(d, _, _)| *d <= most)
        .collect();
    close.sort_unstable();
    close
        .into_iter()
        .take(5)
        .map(|(_, _, c)| c.to_owned())
        .collect()
}

/// ` (did you mean 'a', 'b'?)` for a non-empty list of close names (from
/// [`close_matches`]), else nothing: the hint every error about a mistyped name ends with.
pub fn did_you_mean(close: &[String]) -> String {
    if close.is_empty() {
        return String::new();
    }
    let names: Vec<String> = close.iter().map(|n| format!("'{n}'")).collect();
    format!(" (did you mean {}?)", names.join(", "))
}

impl Store {
    /// Every key of `stream` the version `reference` names has a value for (up to the
    /// reference's step), sorted.
    pub fn keys(&self, reference: impl IntoReference, stream: Stream) -> Result<Vec<String>> {
        let (state, v, step) = self.read_target(reference)?;
        let mut keys = BTreeSet::new();
        self.visit_keys(&state, v, stream, step.unwrap_or(u64::MAX), &mut |k| {
            keys.insert(k.to_owned());
            false
        })?;
        Ok(keys.into_iter().collect())
    }

    /// `Ok` if the version `reference` names has a value for every one of `keys` in
    /// `stream` (at any step up to the reference's: a key that exists but has no value in
    /// the range a caller then reads is not an error), else [`Error::KeyNotFound`] for the
    /// first key it never had, with the version's keys close to it. Reads stop as soon as
    /// every key is found, so the usual case reads a footer or two.
    pub fn check_keys<'k>(
        &self,
        reference: impl IntoReference,
        stream: Stream,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<()> {
        let mut wanted: BTreeSet<&str> = keys.into_iter().collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let (state, v, step) = self.read_target(reference)?;
        let limit = step.unwrap_or(u64::MAX);
        self.visit_keys(&state, v, stream, limit, &mut |k| {
            wanted.remove(k);
            wanted.is_empty()
        })?;
        let Some(missing) = wanted.first() else {
            return Ok(());
        };
        let mut all = BTreeSet::new();
        self.visit_keys(&state, v, stream, limit, &mut |k| {
            all.insert(k.to_owned());
            false
        })?;
        let meta = state.meta_of(v)?;
        Err(Error::KeyNotFound {
            run: meta.run.clone(),
            version: v.to_string(),
            stream: stream.name().to_owned(),
            key: (*missing).to_owned(),
            close: close_matches(missing, all.iter().map(String::as_str)),
        })
    }

    /// Calls `found` with each key of version `v`'s `stream` up to step `limit` (a key may
    /// come more than once), until it returns true.
    fn visit_keys(
        &self,
        state: &State,
        v: VersionId,
        stream: Stream,
        limit: u64,
        found: &mut dyn FnMut(&str) -> bool,
    ) -> Result<()> {
        for p in state.plan(v, stream, 0, limit)? {
            if p.cover == Cover::Whole {
                for k in self.open_sealed(&p.segment)?.agg()?.keys.keys() {
                    if found(k) {
                        return Ok(());
                    }
                }
                continue;
            }
            let view = self.segment_view(&p.segment)?;
            for (i, e) in view.index()?.iter().enumerate() {
                if e.first_step > p.hi {
                    break;
                }
                let names: Vec<String> = match view.block_agg(i)? {
                    Some(b) if e.last_step <= p.hi => b.keys.keys().cloned().collect(),
                    _ if e.last_step <= p.hi => {
                        // Every row of the block is in range: its directory names its keys.
                        let seen = RefCell::new(Vec::new());
                        view.block_keys(e, &|k| {
                            seen.borrow_mut().push(k.to_owned());
                            false
                        })?;
                        seen.into_inner()
                    }
                    _ => {
                        // The block straddles the cutoff: only keys with a value up to it.
                        let block = view.block(e)?;
                        let cut = block.steps.partition_point(|&s| s <= p.hi);
                        block
                            .columns
                            .into_iter()
                            .filter(|c| c.rows.first().is_some_and(|&r| (r as usize) < cut))
                            .map(|c| c.key)
                            .collect()
                    }
                };
                for k in &names {
                    if found(k) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_a_few_edits_away_closest_first() {
        let keys = ["train/loss", "train/acc", "eval/loss", "lr"];
        assert_eq!(close_matches("train/los", keys), ["train/loss"]);
        assert_eq!(close_matches("acx", ["acc", "loss", "ac"]), ["acc", "ac"]);
        assert!(close_matches("zzzzzz", keys).is_empty());
        assert!(
            close_matches("x", ["lr", "ab"]).is_empty(),
            "short names: one edit"
        );
        assert_eq!(close_matches("lx", ["lr", "ab"]), ["lr"]);
        // The name itself is not a suggestion.
        assert!(close_matches("lr", ["lr"]).is_empty());
        assert_eq!(did_you_mean(&[]), "");
        assert_eq!(
            did_you_mean(&["a".into(), "b".into()]),
            " (did you mean 'a', 'b'?)"
        );
    }
}
