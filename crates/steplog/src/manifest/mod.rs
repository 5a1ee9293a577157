//! The manifest: the store's only mutable state. `State` is what it describes (runs, their
//! head versions, every version's lineage, config and segments); `Edit` is one change to it;
//! `log` persists edits in an append-only, checksummed file shared by all processes.
//!
//! Architecture invariants:
//! - a version's parent has a smaller id, so lineage has no cycles;
//! - a version's own segments hold only steps greater than its parent cutoff, so the rows of
//!   a version are its ancestors' rows up to the cutoffs, then its own (see [`State::plan`]).

mod base;
pub(crate) mod batch;
pub(crate) mod log;
mod plan;
pub(crate) mod table;

pub(crate) use base::Base;
pub(crate) use plan::{plan_of, Cover, Hop, Piece};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};

use serde::{Deserialize, Serialize};

use crate::types::{SegmentId, Stream, VersionId};

pub(crate) type Config = serde_json::Map<String, serde_json::Value>;

/// A version's config as the manifest keeps it: its JSON text (an object, checked when
/// made), shared. A short run's config is serialized once, when its bulk takes it, and then
/// written to frames and tables and shared by every copy of its record as it is, with no
/// map to copy or free; a read parses it. Serialized as the JSON object itself, so records
/// are the same bytes as with a map.
#[derive(Clone)]
pub(crate) struct ConfigJson(Arc<serde_json::value::RawValue>);

/// The same text: what this steplog writes is compact, so a config written twice compares
/// equal (a text read as it was stored compares as stored).
impl PartialEq for ConfigJson {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for ConfigJson {}

impl ConfigJson {
    /// The config of `map` (its compact JSON).
    pub fn of(map: &Config) -> ConfigJson {
        // A map of JSON values always serializes, as an object: its text is taken as
        // written, not parsed again.
        match serde_json::value::to_raw_value(map) {
            Ok(raw) => ConfigJson(Arc::from(raw)),
            Err(_) => ConfigJson::default(),
        }
    }

    /// The config whose JSON is `text`; refused unless it is a JSON object.
    pub fn parse(text: String) -> Result<ConfigJson, String> {
        let raw = serde_json::value::RawValue::from_string(text).map_err(|e| e.to_string())?;
        if !raw.get().starts_with('{') {
            return Err("a config must be a JSON object".into());
        }
        Ok(ConfigJson(Arc::from(raw)))
    }

    /// Its JSON text (compact, as it was written).
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The config as a map.
    pub fn map(&self) -> Config {
        // The text was checked as a JSON object when made.
        serde_json::from_str(self.text()).unwrap_or_default()
    }
}

impl Default for ConfigJson {
    /// `{}`.
    fn default() -> Self {
        let empty: &serde_json::value::RawValue =
            serde_json::from_str("{}").unwrap_or_else(|_| unreachable!("`{{}}` is JSON"));
        ConfigJson(Arc::from(empty.to_owned()))
    }
}

impl std::fmt::Debug for ConfigJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl Serialize for ConfigJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

thread_local! {
    /// Whether configs being read are read as raw JSON ([`ConfigJson::read_raw`]).
    static RAW_CONFIGS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl ConfigJson {
    /// Runs `read`, a `serde_json` read of records whose configs are not inside an edit,
    /// taking each config's text as it is (checked, not parsed into a map): what listing a
    /// million runs reads a million times.
    pub fn read_raw<T>(read: impl FnOnce() -> T) -> T {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                RAW_CONFIGS.with(|r| r.set(self.0));
            }
        }
        let _reset = Reset(RAW_CONFIGS.with(|r| r.replace(true)));
        read()
    }
}

/// Read as a map and written again (compact, its keys in their order), except within
/// [`ConfigJson::read_raw`]: inside an edit, whose `op` tag makes serde buffer its fields,
/// a raw value cannot be read.
impl<'de> Deserialize<'de> for ConfigJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !RAW_CONFIGS.with(|r| r.get()) {
            return Config::deserialize(d).map(|map| ConfigJson::of(&map));
        }
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            return Err(serde::de::Error::custom("a config must be a JSON object"));
        }
        Ok(ConfigJson(Arc::from(raw)))
    }
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The first version of a new run.
    New,
    /// The head of a run after a rewind; its parent is the archived version.
    Rewind,
    /// The first version of a run forked from another version.
    Fork,
    /// The head of a run started again from nothing (a source that restarts at step 0):
    /// no parent gives it rows; `restart_of` names the archived version.
    Restart,
}

/// What the manifest knows of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SealMeta {
    pub rows: u64,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentMeta {
    pub id: SegmentId,
    pub stream: Stream,
    pub sealed: Option<SealMeta>,
    /// The segment's bytes are in the manifest (an `inline` edit, then a table's `s`
    /// record), not in a file (manifest format 4; always sealed). Written only when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct VersionMeta {
    pub id: VersionId,
    pub run: String,
    pub origin: Origin,
    /// The version this one continues, and the last step taken from it.
    pub parent: Option<(VersionId, u64)>,
    /// For a restart: the archived version it started again from (lineage only: it takes
    /// no row from it). Written only when set, so older stores read as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_of: Option<VersionId>,
    pub config: ConfigJson,
    /// Seconds since the Unix epoch at creation.
    pub created: u64,
    pub finished: bool,
    pub archived: bool,
    pub purged: bool,
    /// Own segments, in append order (per stream, step order).
    pub segments: Vec<SegmentMeta>,
    /// Packs of this (archived) version's lineage (manifest format 5), lowest level first.
    /// Written only when there is one, so older records read as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<PackMeta>,
}

/// A pack: the rows a read of a version takes from its own segments and from those of the
/// ancestors above `base`, copied into inline segments (one per stream with rows), so that a
/// read of the version or of a descendant takes them in one piece and goes on at `base`
/// (`plan.rs`). Only an archived version is packed: it never gains a row, so its pack stays
/// exact. Built by `pack.rs`; `verify` checks it against the pieces it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackMeta {
    /// 1 for a pack of versions' own segments; n + 1 for a pack of packs of level n.
    pub level: u32,
    /// Where the read goes on: the first version below the pack and the last step taken
    /// from it (the lowest cutoff on the way down); `None`: the pack reaches the root.
    pub base: Option<(VersionId, u64)>,
    /// The pack's segments: inline, sealed, at most one per stream.
    pub segments: Vec<SegmentMeta>,
}

/// One inline segment of a `pack` edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackSegment {
    pub stream: Stream,
    pub segment: SegmentId,
    pub seal: SealMeta,
    /// The segment's bytes, exactly those of a sealed segment file (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub bytes: Bytes,
}

/// One new run of a `batch` edit (manifest format 6): created finished, its streams carried
/// as inline segments, which take the ids after the counter's in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BatchRun {
    pub run: String,
    pub version: VersionId,
    pub config: ConfigJson,
    pub time: u64,
    /// At most one per stream.
    pub segments: Vec<PackSegment>,
}

impl VersionMeta {
    /// Every segment the version holds: its own, then those of its packs.
    pub fn all_segments(&self) -> impl Iterator<Item = &SegmentMeta> + '_ {
        self.segments
            .iter()
            .chain(self.packs.iter().flat_map(|p| p.segments.iter()))
    }
}

/// Everything the manifest describes: its base (the tables of the last compaction, read
/// lazily) and what edits changed since (the overlay: every run and version an edit touched,
/// whole). A lookup asks the overlay, then the base.
#[derive(Debug, Clone)]
pub(crate) struct State {
    base: Arc<Base>,
    /// The overlay a compaction in flight is writing into a table ([`State::freeze`]), over
    /// the same base and under this one: a lookup asks this overlay, then the frozen one,
    /// then the base. `None` once that table is the base's ([`State::rebase`]).
    frozen: Option<Arc<State>>,
    /// Run name → head version, for runs changed since the base; `None` for a run deleted
    /// since (a compaction writes it as a tombstone over the base's record).
    runs: BTreeMap<String, Option<VersionId>>,
    /// Versions changed since the base.
    versions: BTreeMap<VersionId, Arc<VersionMeta>>,
    /// The bytes of the inline segments added since the base.
    inline: BTreeMap<SegmentId, Bytes>,
    /// Inline segments a purge dropped since the base (a compaction writes them as
    /// tombstones over the base's records).
    dropped_inline: BTreeSet<SegmentId>,
    pub next_version: u64,
    pub next_segment: u64,
    /// The format of the manifest file the state was read from (its header's; 0 for a
    /// state of no file): what its edits may carry (`takes_inline`, `takes_packs`).
    pub format: u16,
}

/// The whole state as a `snapshot` edit carries it (manifest formats 1 and 2, read only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    /// Run name → head version.
    pub runs: BTreeMap<String, VersionId>,
    /// Written as a list: JSON object keys are strings, and ids are numbers.
    #[serde(with = "version_list")]
    pub versions: BTreeMap<VersionId, VersionMeta>,
    pub next_version: u64,
    pub next_segment: u64,
}

mod version_list {
    use super::{VersionId, VersionMeta};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<VersionId, VersionMeta>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<VersionId, VersionMeta>, D::Error> {
        let list = Vec::<VersionMeta>::deserialize(d)?;
        Ok(list.into_iter().map(|v| (v.id, v)).collect())
    }
}

mod base64_bytes {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// One change to the manifest. Serialized as a JSON object with an `op` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Edit {
    Create {
        run: String,
        version: VersionId,
        config: Config,
        time: u64,
    },
    Rewind {
        run: String,
        archived: VersionId,
        version: VersionId,
        /// The last step the new head keeps; `None` (null): none, a restart. Required: an
        /// edit without it is corrupt, not a restart.
        #[serde(deserialize_with = "Option::deserialize")]
        step: Option<u64>,
        config: Config,
        time: u64,
        /// The new head is finished at once (a rewind done outside a writer).
        #[serde(default)]
        finished: bool,
    },
    Fork {
        run: String,
        version: VersionId,
        source: VersionId,
        step: u64,
        config: Config,
        time: u64,
        /// The new head is finished at once (a fork done outside a writer).
        #[serde(default)]
        finished: bool,
    },
    /// A finished or crashed head is written again (and its config replaced, if given).
    Resume {
        version: VersionId,
        config: Option<Config>,
    },
    AddSegment {
        version: VersionId,
        stream: Stream,
        segment: SegmentId,
    },
    Seal {
        version: VersionId,
        segment: SegmentId,
        seal: SealMeta,
    },
    Finish {
        version: VersionId,
    },
    /// A small sealed segment of `version`, carried whole in the manifest instead of a file
    /// (manifest format 4): what a short run's stream writes when it finishes.
    Inline {
        version: VersionId,
        stream: Stream,
        segment: SegmentId,
        seal: SealMeta,
        /// The segment's bytes, exactly those of a sealed segment file (base64 in JSON).
        #[serde(with = "base64_bytes")]
        bytes: Bytes,
    },
    /// A pack of archived `version`'s lineage (manifest format 5): its inline segments,
    /// which take the ids after the counter's in order.
    Pack {
        version: VersionId,
        level: u32,
        #[serde(deserialize_with = "Option::deserialize")]
        base: Option<(VersionId, u64)>,
        segments: Vec<PackSegment>,
    },
    /// New runs, each created finished with its inline segments, in one edit: all or none
    /// (manifest format 6): what `Store::bulk` commits.
    Batch {
        runs: Vec<BatchRun>,
    },
    /// The version is purged; `dropped` segments (of it or of other purged versions) are no
    /// longer referenced and their files may be deleted.
    Purge {
        version: VersionId,
        dropped: Vec<SegmentId>,
        /// The versions owning the dropped segments (manifest format 3 writes it: a state
        /// read lazily must know whose segment lists change). Older edits have none, and
        /// come only after a snapshot, which holds every version.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        owners: Vec<VersionId>,
    },
    /// Run `run`, whose head is `head`, is deleted (manifest format 7): every version of it
    /// that was not (`purged`, its head among them) is archived and purged, `dropped`
    /// segments (of those versions or of other purged ones, owned by `owners`) are no longer
    /// referenced, and the name is free. Versions of other runs forked from it keep what
    /// they read, as after a purge.
    Delete {
        run: String,
        head: VersionId,
        purged: Vec<VersionId>,
        dropped: Vec<SegmentId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        owners: Vec<VersionId>,
    },
    /// The whole state, first in a manifest of format 1 or 2 (read only).
    Snapshot {
        state: Snapshot,
    },
    /// The first frame of a manifest of format 3: the tables holding the state (newest
    /// first), and the counters.
    Base {
        tables: Vec<u64>,
        next_version: u64,
        next_segment: u64,
        next_table: u64,
    },
}

impl Default for State {
    /// An empty store; ids start at 1 (`v1`, segment 1).
    fn default() -> Self {
        State {
            base: Arc::new(Base::default()),
            frozen: None,
            runs: BTreeMap::new(),
            versions: BTreeMap::new(),
            inline: BTreeMap::new(),
            dropped_inline: BTreeSet::new(),
            next_version: 1,
            next_segment: 1,
            format: 0,
        }
    }
}

impl From<Snapshot> for State {
    fn from(s: Snapshot) -> State {
        State {
            base: Arc::new(Base::default()),
            runs: s.runs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            versions: s
                .versions
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
            next_version: s.next_version,
            next_segment: s.next_segment,
            ..State::default()
        }
    }
}

impl VersionMeta {
    /// The checks one version's record passes on its own (`State::validate` adds those
    /// that span records): ids in range, a parent older than the version, a restart with
    /// `restart_of` and no parent, a purged version archived.
    pub fn check(&self, (next_version, next_segment): (u64, u64)) -> Result<(), String> {
        let id = self.id;
        if id.0 == 0 || id.0 >= next_version {
            return Err(format!(
                "version {id} is outside the allocated ids (next {next_version})"
            ));
        }
        if let Some(p) = self.parent.map(|p| p.0).or(self.restart_of) {
            if p >= id || p.0 == 0 {
                return Err(format!(
                    "version {id} has parent {p}, which does not exist or is not older"
                ));
            }
        }
        let restart = self.origin == Origin::Restart;
        if restart != self.restart_of.is_some() || (restart && self.parent.is_some()) {
            return Err(format!(
                "version {id}: a restart has `restart_of` and no parent, and only a restart \
                 has `restart_of`"
            ));
        }
        // Own rows come after the parent's cutoff: a sealed segment says where it starts.
        if let Some((_, cut)) = self.parent {
            if let Some(f) = self
                .segments
                .iter()
                .filter_map(|s| s.sealed.and_then(|x| x.first_step))
                .find(|&f| f <= cut)
            {
                return Err(format!(
                    "version {id} holds step {f}, not after its parent's cutoff {cut}"
                ));
            }
        }
        if self.purged && !self.archived {
            return Err(format!("version {id} is purged but not archived"));
        }
        for s in &self.segments {
            if s.id.0 == 0 || s.id.0 >= next_segment {
                return Err(format!(
                    "segment {} of version {id} is outside the allocated ids (next {next_segment})",
                    s.id
                ));
            }
            if s.inline && s.sealed.is_none() {
                return Err(format!(
                    "inline segment {} of version {id} has no seal (an inline segment is \
                     always sealed)",
                    s.id
                ));
            }
        }
        for p in &self.packs {
            if !self.archived || self.purged {
                return Err(format!(
                    "version {id} has a pack but is not archived, or is purged"
                ));
            }
            check_pack(id, p)?;
            for s in &p.segments {
                if s.id.0 == 0 || s.id.0 >= next_segment {
                    return Err(format!(
                        "pack segment {} of version {id} is outside the allocated ids (next \
                         {next_segment})",
                        s.id
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The highest level of a pack: a pack of level l stands for at least 2^l versions, so no
/// lineage a store can hold needs more.
pub(crate) const MAX_PACK_LEVEL: u32 = 64;

/// The checks a pack of version `v` passes on its own: a level, a base older than `v`,
/// segments inline and sealed, one per stream, holding only steps after the base's cutoff.
fn check_pack(v: VersionId, p: &PackMeta) -> Result<(), String> {
    if p.level == 0 || p.level > MAX_PACK_LEVEL {
        return Err(format!(
            "a pack of {v} has level {}, outside 1 to {MAX_PACK_LEVEL}",
            p.level
        ));
    }
    if let Some((b, cut)) = p.base {
        if b >= v || b.0 == 0 {
            return Err(format!("a pack of {v} goes on at {b}, which is not older"));
        }
        if let Some(f) = p
            .segments
            .iter()
            .filter_map(|s| s.sealed.and_then(|x| x.first_step))
            .find(|&f| f <= cut)
        {
            return Err(format!(
                "a pack of {v} holds step {f}, not after its base's cutoff {cut}"
            ));
        }
    }
    let mut streams = std::collections::BTreeSet::new();
    for s in &p.segments {
        if !s.inline || s.sealed.is_none() {
            return Err(format!(
                "pack segment {} of {v} is not a sealed inline segment",
                s.id
            ));
        }
        if !streams.insert(s.stream) {
            return Err(format!("a pack of {v} holds two segments of one stream"));
        }
    }
    Ok(())
}

impl State {
    /// Takes `base` as its base, one of the same records in other tables (a merge of them):
    /// what the state's edits since hold over it is unchanged.
    pub fn replace_base(&mut self, base: Base) {
        self.set_base(Arc::new(base));
    }

    /// `base` as the base of this overlay and of the frozen ones under it.
    fn set_base(&mut self, base: Arc<Base>) {
        if let Some(frozen) = &mut self.frozen {
            Arc::make_mut(frozen).set_base(base.clone());
        }
        self.base = base;
    }

    /// Moves the overlay (every edit since the base) under a new, empty one, and returns it:
    /// the state a compaction writes into a table while edits go on over it. Lookups read
    /// the same as before; nothing is copied.
    pub fn freeze(&mut self) -> Arc<State> {
        let frozen = Arc::new(State {
            base: self.base.clone(),
            frozen: self.frozen.take(),
            runs: std::mem::take(&mut self.runs),
            versions: std::mem::take(&mut self.versions),
            inline: std::mem::take(&mut self.inline),
            dropped_inline: std::mem::take(&mut self.dropped_inline),
            next_version: self.next_version,
            next_segment: self.next_segment,
            format: self.format,
        });
        self.frozen = Some(frozen.clone());
        frozen
    }

    /// Takes `base`, which holds everything the frozen overlays do (the compaction of the
    /// state `freeze` returned), in their place: the edits since stay over it as they are.
    /// The frozen overlays and the old base are let go here, on this thread (its tables may
    /// be deleted now: their files close, unless a reader still holds that state). Freed on
    /// the compaction's thread instead, the many ingest took a fifth more CPU: memory
    /// allocated by one thread and freed by another costs glibc's allocator far more.
    pub fn rebase(&mut self, base: Base) {
        self.base = Arc::new(base);
        self.frozen = None;
    }

    /// The head of run `name` below this overlay (the frozen overlays, then the base).
    fn below_head(&self, name: &str) -> Result<Option<VersionId>> {
        match &self.frozen {
            Some(frozen) => frozen.head(name),
            None => self.base.head(name),
        }
    }

    /// Version `v`'s metadata below this overlay.
    fn below_meta(&self, v: VersionId) -> Result<Option<Arc<VersionMeta>>> {
        match &self.frozen {
            Some(frozen) => frozen.meta(v),
            None => self.base.version(v),
        }
    }

    /// The bytes of inline segment `id`, if the state holds them.
    fn find_segment(&self, id: SegmentId) -> Result<Option<Bytes>> {
        if let Some(b) = self.inline.get(&id) {
            // A copy (of at most an inline segment's 8 KiB): the overlay's bytes may be a
            // slice of a bulk's arena, which a reader's cached segment would keep whole
            // long after the state let it go.
            return Ok(Some(Bytes::copy_from_slice(b)));
        }
        match &self.frozen {
            Some(frozen) => frozen.find_segment(id),
            None => self.base.segment(id),
        }
    }

    /// The state a base describes, with no edit since.
    pub fn with_base(base: Base, next_version: u64, next_segment: u64) -> State {
        State {
            base: Arc::new(base),
            frozen: None,
            next_version,
            next_segment,
            ..State::default()
        }
    }

    /// Whether the manifest file may carry inline segments (format 4 or later: a format 3
    /// file gets them only after the compaction that rewrites it, so that a steplog of
    /// format 3 never misreads one).
    pub fn takes_inline(&self) -> bool {
        self.format >= log::FORMAT_INLINE
    }

    /// Whether the manifest file may carry packs (format 5 or later), likewise.
    pub fn takes_packs(&self) -> bool {
        self.format >= log::FORMAT_PACKS
    }

    /// Whether the manifest file may carry batches of runs (format 6 or later), likewise.
    pub fn takes_batch(&self) -> bool {
        self.format >= log::FORMAT_BATCH
    }

    /// Whether the manifest takes `delete` edits and run tombstones (format 7).
    pub fn takes_delete(&self) -> bool {
        self.format >= log::FORMAT_DELETE
    }

    pub fn base(&self) -> &Arc<Base> {
        &self.base
    }

    /// The head of run `name`, if the run exists.
    pub fn head(&self, name: &str) -> Result<Option<VersionId>> {
        match self.runs.get(name) {
            Some(v) => Ok(*v),
            None => self.below_head(name),
        }
    }

    /// The run's head in the overlay (loaded from the base by `prepare`), if it exists.
    fn overlay_head(&self, name: &str) -> Option<VersionId> {
        self.runs.get(name).copied().flatten()
    }

    /// Version `v`'s metadata, if it exists.
    pub fn meta(&self, v: VersionId) -> Result<Option<Arc<VersionMeta>>> {
        match self.versions.get(&v) {
            Some(m) => Ok(Some(m.clone())),
            None => self.below_meta(v),
        }
    }

    /// Version `v`'s metadata, which the state says exists (a reference from another
    /// record): missing, it is corruption.
    pub fn meta_of(&self, v: VersionId) -> Result<Arc<VersionMeta>> {
        self.meta(v)?.ok_or_else(|| {
            Error::corrupt(
                self.base.dir(),
                0,
                format!("the manifest refers to version {v}, which it does not hold"),
            )
        })
    }

    /// Whether version `v` is its run's head.
    pub fn is_head(&self, meta: &VersionMeta) -> Result<bool> {
        Ok(self.head(&meta.run)? == Some(meta.id))
    }

    /// The whole state in memory, without a base (what `validate` checks as one).
    pub fn materialize(&self) -> Result<State> {
        let mut whole = State {
            next_version: self.next_version,
            next_segment: self.next_segment,
            format: self.format,
            ..State::default()
        };
        for r in self.runs() {
            let (name, head) = r?;
            whole.runs.insert(name, Some(head));
        }
        for v in self.versions() {
            let v = v?;
            whole.versions.insert(v.id, v);
        }
        Ok(whole)
    }

    /// The bytes of inline segment `id`, which the state records: missing, it is
    /// corruption.
    pub fn inline_segment(&self, id: SegmentId) -> Result<Bytes> {
        self.find_segment(id)?.ok_or_else(|| {
            Error::corrupt(
                self.base.dir(),
                0,
                format!("the manifest records inline segment {id}, but holds no bytes for it"),
            )
        })
    }

    /// The inline segments changed since the base (in this overlay or a frozen one under
    /// it), by id: their bytes, or `None` for one a purge dropped (a tombstone over the
    /// base's record).
    pub fn overlay_inline(&self) -> Overlaid<'_, (SegmentId, Option<Bytes>)> {
        let added = self.inline.iter().map(|(k, v)| Ok((*k, Some(v.clone()))));
        let dropped = self.dropped_inline.iter().map(|k| Ok((*k, None)));
        let key = |a: &(SegmentId, Option<Bytes>), b: &(SegmentId, Option<Bytes>)| a.0.cmp(&b.0);
        let mine = merge_sorted(added, dropped, key);
        match &self.frozen {
            Some(frozen) => Box::new(merge_sorted(mine, frozen.overlay_inline(), key)),
            None => Box::new(mine),
        }
    }

    /// The runs changed since the base, in name order (`None`: deleted, a tombstone).
    pub fn overlay_runs(&self) -> Overlaid<'_, (String, Option<VersionId>)> {
        let mine = self.runs.iter().map(|(k, v)| Ok((k.clone(), *v)));
        match &self.frozen {
            Some(frozen) => Box::new(merge_sorted(mine, frozen.overlay_runs(), |a, b| {
                a.0.cmp(&b.0)
            })),
            None => Box::new(mine),
        }
    }

    /// The versions changed since the base, by id.
    pub fn overlay_versions(&self) -> Overlaid<'_, Arc<VersionMeta>> {
        let mine = self.versions.values().map(|m| Ok(m.clone()));
        match &self.frozen {
            Some(frozen) => Box::new(merge_sorted(mine, frozen.overlay_versions(), |a, b| {
                a.id.cmp(&b.id)
            })),
            None => Box::new(mine),
        }
    }

    /// Every run with its head, in name order (overlay over base, streamed; a run deleted
    /// since the base hides the base's record, and is not listed).
    pub fn runs(&self) -> impl Iterator<Item = Result<(String, VersionId)>> + '_ {
        let overlay = self.runs.iter().map(|(k, v)| Ok((k.clone(), *v)));
        let below: Overlaid<'_, (String, VersionId)> = match &self.frozen {
            Some(frozen) => Box::new(frozen.runs()),
            None => Box::new(self.base.runs()),
        };
        let below = below.map(|r| r.map(|(k, v)| (k, Some(v))));
        // Compared in place: a key cloned for every comparison was two allocations a run
        // listed.
        merge_sorted(overlay, below, |a: &(String, Option<VersionId>), b| {
            a.0.cmp(&b.0)
        })
        .filter_map(|r| match r {
            Ok((name, Some(head))) => Some(Ok((name, head))),
            Ok((_, None)) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// Every version, by id (overlay over base, streamed).
    pub fn versions(&self) -> impl Iterator<Item = Result<Arc<VersionMeta>>> + '_ {
        let overlay = self.versions.values().map(|m| Ok(m.clone()));
        let below: Overlaid<'_, Arc<VersionMeta>> = match &self.frozen {
            Some(frozen) => Box::new(frozen.versions()),
            None => Box::new(self.base.versions().map(|r| r.map(Arc::new))),
        };
        merge_sorted(overlay, below, |a: &Arc<VersionMeta>, b| a.id.cmp(&b.id))
    }

    /// Loads into the overlay what `edit` refers to, so that `apply` finds it there.
    pub fn prepare(&mut self, edit: &Edit) -> Result<()> {
        if self.base.is_empty() && self.frozen.is_none() {
            return Ok(());
        }
        if let Edit::Batch { runs } = edit {
            for r in runs {
                self.prepare_run(&r.run)?;
            }
            return Ok(());
        }
        let (run, versions): (Option<&String>, Vec<VersionId>) = match edit {
            Edit::Create { run, .. } => (Some(run), vec![]),
            Edit::Rewind { run, archived, .. } => (Some(run), vec![*archived]),
            Edit::Fork { run, source, .. } => (Some(run), vec![*source]),
            Edit::Resume { version, .. }
            | Edit::AddSegment { version, .. }
            | Edit::Seal { version, .. }
            | Edit::Inline { version, .. }
            | Edit::Pack { version, .. }
            | Edit::Finish { version } => (None, vec![*version]),
            Edit::Purge {
                version, owners, ..
            } => (
                None,
                std::iter::once(*version)
                    .chain(owners.iter().copied())
                    .collect(),
            ),
            Edit::Delete {
                run,
                purged,
                owners,
                ..
            } => (
                Some(run),
                purged.iter().chain(owners.iter()).copied().collect(),
            ),
            Edit::Snapshot { .. } | Edit::Base { .. } | Edit::Batch { .. } => (None, vec![]),
        };
        if let Some(run) = run {
            self.prepare_run(run)?;
        }
        for v in versions {
            self.load_version(v)?;
        }
        if let Edit::Delete { run, head, .. } = edit {
            // The run's whole chain, so that `apply` can check the edit names all of it.
            let mut at = Some(*head);
            while let Some(v) = at {
                let Some(m) = self.load_version(v)? else {
                    break;
                };
                if m.run != *run {
                    break;
                }
                at = m.parent.map(|(p, _)| p).or(m.restart_of);
            }
        }
        Ok(())
    }

    /// Version `v`'s record, loaded into the overlay from below if it is not there.
    fn load_version(&mut self, v: VersionId) -> Result<Option<Arc<VersionMeta>>> {
        if let Some(m) = self.versions.get(&v) {
            return Ok(Some(m.clone()));
        }
        let m = self.below_meta(v)?;
        if let Some(m) = &m {
            self.versions.insert(v, m.clone());
        }
        Ok(m)
    }

    /// The versions of run `run` not yet purged, down its chain from `head` (the `parent`
    /// and `restart_of` links that stay in the run: every version a run ever had), as the
    /// overlay holds them.
    fn chain_of(&self, run: &str, head: VersionId) -> BTreeSet<VersionId> {
        let mut out = BTreeSet::new();
        let mut at = Some(head);
        while let Some(m) = at.and_then(|v| self.versions.get(&v)) {
            if m.run != run {
                break;
            }
            if !m.purged {
                out.insert(m.id);
            }
            at = m.parent.map(|(p, _)| p).or(m.restart_of);
        }
        out
    }

    /// The first run `edit` creates (a `create`, or a run of a `batch`) that exists already,
    /// after `prepare(edit)`: the one rule a bulk's commit is refused by (`RunExists`), on the
    /// lookups `prepare` made (a bulk looks each new name up in the base once, not twice).
    pub fn taken_name<'e>(&self, edit: &'e Edit) -> Option<&'e str> {
        let taken = |r: &&'e String| self.overlay_head(r).is_some();
        match edit {
            Edit::Create { run, .. } => Some(run).filter(taken),
            Edit::Batch { runs } => runs.iter().map(|r| &r.run).find(taken),
            _ => None,
        }
        .map(String::as_str)
    }

    /// Loads run `run`'s head from below (the frozen overlays, the base) into the overlay,
    /// if it is there.
    fn prepare_run(&mut self, run: &str) -> Result<()> {
        if !self.runs.contains_key(run) {
            if let Some(head) = self.below_head(run)? {
                self.runs.insert(run.to_owned(), Some(head));
            }
        }
        Ok(())
    }

    /// Takes segment id `segment`, which must be the counter's or past it (ids only grow).
    fn allocate_segment(&mut self, segment: SegmentId) -> Result<(), String> {
        if segment.0 < self.next_segment {
            return Err(format!("segment {segment} allocated twice"));
        }
        self.next_segment = segment.0.checked_add(1).ok_or("segment id overflow")?;
        Ok(())
    }

    fn version_mut(&mut self, v: VersionId) -> Result<&mut VersionMeta, String> {
        self.versions
            .get_mut(&v)
            .map(Arc::make_mut)
            .ok_or_else(|| format!("edit refers to unknown version {v}"))
    }

    /// A version an edit branches from: it must exist and not be purged (its rows may be
    /// gone).
    fn readable(&self, v: VersionId, what: &str) -> Result<(), String> {
        match self.versions.get(&v) {
            None => Err(format!("{what} {v} does not exist")),
            Some(m) if m.purged => Err(format!("{what} {v} is purged")),
            Some(_) => Ok(()),
        }
    }

    /// Takes `dropped` segments out of every version holding them (a pack goes whole: its
    /// segments are one piece of a read), inline ones out of the manifest. Every dropped
    /// segment must belong to a version the state holds (the edit names its owners; after a
    /// snapshot, the state holds every version): one not found would stay referenced while
    /// its file is deleted.
    fn drop_segments(&mut self, what: &str, dropped: &[SegmentId]) -> Result<(), String> {
        let dropped: std::collections::HashSet<_> = dropped.iter().collect();
        let mut found = 0;
        for v in self.versions.values_mut() {
            let n = v.all_segments().filter(|s| dropped.contains(&s.id)).count();
            if n > 0 {
                found += n;
                let v = Arc::make_mut(v);
                let (gone, kept): (Vec<PackMeta>, Vec<PackMeta>) = std::mem::take(&mut v.packs)
                    .into_iter()
                    .partition(|p| p.segments.iter().any(|s| dropped.contains(&s.id)));
                v.packs = kept;
                let lost = gone.iter().flat_map(|p| p.segments.iter());
                for s in v
                    .segments
                    .iter()
                    .filter(|s| dropped.contains(&s.id))
                    .chain(lost)
                {
                    if s.inline {
                        self.inline.remove(&s.id);
                        self.dropped_inline.insert(s.id);
                    }
                }
                v.segments.retain(|s| !dropped.contains(&s.id));
            }
        }
        if found != dropped.len() {
            return Err(format!(
                "{what} drops {} segments, of which {found} belong to the versions it names",
                dropped.len()
            ));
        }
        Ok(())
    }

    /// A purged version keeps no pack (what reads through it take are its own segments,
    /// kept up to what they read): packs `drop_segments` was not told of (one with no
    /// segment) go too.
    fn drop_packs(&mut self, version: VersionId) -> Result<(), String> {
        let v = self.version_mut(version)?;
        let rest = std::mem::take(&mut v.packs);
        for s in rest.iter().flat_map(|p| p.segments.iter()) {
            self.inline.remove(&s.id);
            self.dropped_inline.insert(s.id);
        }
        Ok(())
    }

    fn add_version(&mut self, meta: VersionMeta) -> Result<(), String> {
        if meta.id.0 < self.next_version || self.versions.contains_key(&meta.id) {
            return Err(format!("version {} allocated twice", meta.id));
        }
        if let Some(p) = meta.parent.map(|p| p.0).or(meta.restart_of) {
            if p >= meta.id || !self.versions.contains_key(&p) {
                return Err(format!("version {} has an invalid parent {p}", meta.id));
            }
        }
        self.next_version = meta.id.0.checked_add(1).ok_or("version id overflow")?;
        self.runs.insert(meta.run.clone(), Some(meta.id));
        self.versions.insert(meta.id, Arc::new(meta));
        Ok(())
    }

    /// Adds inline segment `segment` to `version`: its bytes must have the length its seal
    /// records, its id must be the counter's or past it, its rows after the parent's cutoff.
    fn add_inline(
        &mut self,
        version: VersionId,
        stream: Stream,
        segment: SegmentId,
        seal: &SealMeta,
        bytes: &Bytes,
    ) -> Result<(), String> {
        if bytes.len() as u64 != seal.bytes {
            return Err(format!(
                "inline segment {segment} carries {} bytes, its seal records {}",
                bytes.len(),
                seal.bytes
            ));
        }
        self.allocate_segment(segment)?;
        let v = self.version_mut(version)?;
        after_cutoff(v, || format!("inline segment {segment}"), seal)?;
        v.segments.push(SegmentMeta {
            id: segment,
            stream,
            sealed: Some(*seal),
            inline: true,
        });
        self.inline.insert(segment, bytes.clone());
        Ok(())
    }

    /// Applies one edit; an edit that does not fit the state is an error (a corrupt manifest).
    /// What the edit refers to must be in the overlay ([`prepare`](Self::prepare)).
    pub fn apply(&mut self, edit: &Edit) -> Result<(), String> {
        let new = |id, run: &str, origin, parent, config: ConfigJson, time, finished| VersionMeta {
            id,
            run: run.to_owned(),
            origin,
            parent,
            restart_of: None,
            config,
            created: time,
            finished,
            archived: false,
            purged: false,
            segments: Vec::new(),
            packs: Vec::new(),
        };
        match edit {
            Edit::Create {
                run,
                version,
                config,
                time,
            } => {
                if self.overlay_head(run).is_some() {
                    return Err(format!("run '{run}' created twice"));
                }
                let config = ConfigJson::of(config);
                self.add_version(new(*version, run, Origin::New, None, config, *time, false))
            }
            Edit::Rewind {
                run,
                archived,
                version,
                step,
                config,
                time,
                finished,
            } => {
                if self.overlay_head(run) != Some(*archived) {
                    return Err(format!(
                        "rewind of '{run}' archives {archived}, not its head"
                    ));
                }
                self.readable(*archived, "rewound version")?;
                self.version_mut(*archived)?.archived = true;
                // A step of null keeps no row: a restart.
                let (origin, parent) = match step {
                    Some(step) => (Origin::Rewind, Some((*archived, *step))),
                    None => (Origin::Restart, None),
                };
                let config = ConfigJson::of(config);
                let mut meta = new(*version, run, origin, parent, config, *time, *finished);
                if step.is_none() {
                    meta.restart_of = Some(*archived);
                }
                self.add_version(meta)
            }
            Edit::Fork {
                run,
                version,
                source,
                step,
                config,
                time,
                finished,
            } => {
                if self.overlay_head(run).is_some() {
                    return Err(format!("fork creates run '{run}' twice"));
                }
                self.readable(*source, "fork source")?;
                let parent = Some((*source, *step));
                let meta = new(
                    *version,
                    run,
                    Origin::Fork,
                    parent,
                    ConfigJson::of(config),
                    *time,
                    *finished,
                );
                self.add_version(meta)
            }
            Edit::Resume { version, config } => {
                let v = self.version_mut(*version)?;
                v.finished = false;
                if let Some(c) = config {
                    v.config = ConfigJson::of(c);
                }
                Ok(())
            }
            Edit::AddSegment {
                version,
                stream,
                segment,
            } => {
                self.allocate_segment(*segment)?;
                self.version_mut(*version)?.segments.push(SegmentMeta {
                    id: *segment,
                    stream: *stream,
                    sealed: None,
                    inline: false,
                });
                Ok(())
            }
            Edit::Inline {
                version,
                stream,
                segment,
                seal,
                bytes,
            } => self.add_inline(*version, *stream, *segment, seal, bytes),
            Edit::Batch { runs } => {
                for r in runs {
                    if self.overlay_head(&r.run).is_some() {
                        return Err(format!("run '{}' created twice", r.run));
                    }
                    let meta = new(
                        r.version,
                        &r.run,
                        Origin::New,
                        None,
                        r.config.clone(),
                        r.time,
                        true,
                    );
                    self.add_version(meta)?;
                    let mut streams = [false; 3];
                    for s in &r.segments {
                        if std::mem::replace(&mut streams[s.stream.index()], true) {
                            return Err(format!(
                                "a batch gives {} two segments of one stream",
                                r.version
                            ));
                        }
                        self.add_inline(r.version, s.stream, s.segment, &s.seal, &s.bytes)?;
                    }
                }
                Ok(())
            }
            Edit::Pack {
                version,
                level,
                base,
                segments,
            } => {
                let mut pack = PackMeta {
                    level: *level,
                    base: *base,
                    segments: Vec::with_capacity(segments.len()),
                };
                for s in segments {
                    if s.bytes.len() as u64 != s.seal.bytes {
                        return Err(format!(
                            "pack segment {} carries {} bytes, its seal records {}",
                            s.segment,
                            s.bytes.len(),
                            s.seal.bytes
                        ));
                    }
                    self.allocate_segment(s.segment)?;
                    pack.segments.push(SegmentMeta {
                        id: s.segment,
                        stream: s.stream,
                        sealed: Some(s.seal),
                        inline: true,
                    });
                }
                let v = self.version_mut(*version)?;
                if !v.archived || v.purged {
                    return Err(format!(
                        "pack of {version}, which is not an archived version (or is purged)"
                    ));
                }
                check_pack(v.id, &pack)?;
                v.packs.push(pack);
                v.packs.sort_by_key(|p| p.level);
                for s in segments {
                    self.inline.insert(s.segment, s.bytes.clone());
                }
                Ok(())
            }
            Edit::Seal {
                version,
                segment,
                seal,
            } => {
                let v = self.version_mut(*version)?;
                after_cutoff(v, || format!("seal of {segment}"), seal)?;
                let s = v
                    .segments
                    .iter_mut()
                    .find(|s| s.id == *segment)
                    .ok_or_else(|| format!("seal of unknown segment {segment}"))?;
                s.sealed = Some(*seal);
                Ok(())
            }
            Edit::Finish { version } => {
                self.version_mut(*version)?.finished = true;
                Ok(())
            }
            Edit::Purge {
                version, dropped, ..
            } => {
                let v = self.version_mut(*version)?;
                if !v.archived || v.purged {
                    return Err(format!(
                        "purge of {version}, which is not an archived version"
                    ));
                }
                v.purged = true;
                self.drop_segments(&format!("purge of {version}"), dropped)?;
                self.drop_packs(*version)
            }
            Edit::Delete {
                run,
                head,
                purged,
                dropped,
                ..
            } => {
                if self.overlay_head(run) != Some(*head) || !purged.contains(head) {
                    return Err(format!("delete of '{run}' names {head}, not its head"));
                }
                // Every version of the run goes: one left would be a version of no run.
                let named: BTreeSet<VersionId> = purged.iter().copied().collect();
                if named.len() != purged.len() || named != self.chain_of(run, *head) {
                    return Err(format!(
                        "delete of '{run}' purges {purged:?}, not every version of the run \
                         left to purge"
                    ));
                }
                for v in purged {
                    let m = self.version_mut(*v)?;
                    if m.run != *run || m.purged || (m.archived == (v == head)) {
                        return Err(format!(
                            "delete of '{run}' purges {v}, which is not one of its versions \
                             left to purge"
                        ));
                    }
                    m.archived = true;
                    m.purged = true;
                }
                self.drop_segments(&format!("delete of '{run}'"), dropped)?;
                for v in purged {
                    self.drop_packs(*v)?;
                }
                self.runs.insert(run.clone(), None);
                Ok(())
            }
            // Only a manifest's first frame is a whole state (read by the log, and validated
            // whole): one later would replace the state unchecked.
            Edit::Snapshot { .. } => {
                Err("a snapshot frame after the manifest's first frame".into())
            }
            Edit::Base { .. } => Err("a base frame after the manifest's first frame".into()),
        }
    }

    /// Checks a state loaded from a snapshot: every reference resolves, parents are older
    /// than their children (so lineage has no cycle), ids are below their counters and no
    /// segment belongs to two versions. Edits keep these true one by one (`apply`); a
    /// snapshot is taken whole, so it is checked whole.
    pub fn validate(&self) -> Result<(), String> {
        for (name, head) in &self.runs {
            let Some(head) = head else {
                continue;
            };
            let m = self
                .versions
                .get(head)
                .ok_or_else(|| format!("run '{name}' has head {head}, which does not exist"))?;
            if m.run != *name {
                return Err(format!(
                    "run '{name}' has head {head}, a version of run '{}'",
                    m.run
                ));
            }
            if m.archived || m.purged {
                return Err(format!(
                    "run '{name}' has head {head}, which is archived or purged"
                ));
            }
        }
        let mut segments = std::collections::HashSet::new();
        for (id, m) in &self.versions {
            if m.id != *id {
                return Err(format!("version {} listed as {id}", m.id));
            }
            m.check((self.next_version, self.next_segment))?;
            if let Some(p) = m.parent.map(|p| p.0).or(m.restart_of) {
                if !self.versions.contains_key(&p) {
                    return Err(format!(
                        "version {id} has parent {p}, which does not exist or is not older"
                    ));
                }
            }
            if let Some(r) = m.restart_of {
                let of = &self.versions[&r];
                if of.run != m.run || !of.archived {
                    return Err(format!(
                        "version {id} restarts {r}, which is not an archived version of its run"
                    ));
                }
            }
            // A deleted run's versions are all purged; those of any other run belong to a
            // run that exists.
            if !m.purged && self.overlay_head(&m.run).is_none() {
                return Err(format!(
                    "version {id} belongs to run '{}', which does not exist",
                    m.run
                ));
            }
            if !m.archived && self.overlay_head(&m.run) != Some(*id) {
                return Err(format!(
                    "version {id} of run '{}' is neither archived nor its head",
                    m.run
                ));
            }
            for s in m.all_segments() {
                if !segments.insert(s.id) {
                    return Err(format!("segment {} belongs to two versions", s.id));
                }
            }
        }
        Ok(())
    }

    /// The hops a version's rows come from, newest first (the version itself, then what is
    /// below it with the cutoff on the way), lazily: a caller that stops early pays for what
    /// it read. A hop is a version's own segments, or its widest pack, which stands for the
    /// versions down to the pack's base. A version missing on the way is corruption.
    pub fn ancestry(&self, v: VersionId) -> impl Iterator<Item = Result<Hop>> + '_ {
        self.ancestry_with(v, None, true)
    }

    /// [`ancestry`](Self::ancestry) of a version whose metadata the caller has.
    pub fn ancestry_of(&self, meta: Arc<VersionMeta>) -> impl Iterator<Item = Result<Hop>> + '_ {
        self.ancestry_with(meta.id, Some(meta), true)
    }

    /// [`ancestry`](Self::ancestry) through versions' own segments only, ignoring packs:
    /// what a pack is checked against (`verify`) and built from.
    pub fn ancestry_unpacked(&self, v: VersionId) -> impl Iterator<Item = Result<Hop>> + '_ {
        self.ancestry_with(v, None, false)
    }

    fn ancestry_with(
        &self,
        v: VersionId,
        mut first: Option<Arc<VersionMeta>>,
        packed: bool,
    ) -> impl Iterator<Item = Result<Hop>> + '_ {
        let mut next = Some((v, None::<u64>));
        std::iter::from_fn(move || {
            let (cur, limit) = next.take()?;
            let meta = match first.take().map_or_else(|| self.meta_of(cur), Ok) {
                Ok(m) => m,
                Err(e) => return Some(Err(e)),
            };
            let hop = Hop::new(meta, limit, packed);
            next = hop
                .below()
                // Parents and bases are older (`check`); even on a state that was not
                // validated, ids that only decrease make this walk end.
                .filter(|&(below, _)| below < cur)
                .map(|(below, step)| (below, Some(limit.map_or(step, |l| l.min(step)))));
            Some(Ok(hop))
        })
    }
}

/// A sealed segment (`what`, for the error) of version `v` holds only steps after its
/// parent's cutoff.
fn after_cutoff(
    v: &VersionMeta,
    what: impl FnOnce() -> String,
    seal: &SealMeta,
) -> Result<(), String> {
    if let (Some((_, cut)), Some(f)) = (v.parent, seal.first_step) {
        if f <= cut {
            return Err(format!(
                "{} puts step {f} in {}, not after its parent's cutoff {cut}",
                what(),
                v.id
            ));
        }
    }
    Ok(())
}

/// Records of an overlay and of the frozen ones under it, merged in key order.
pub(crate) type Overlaid<'a, T> = Box<dyn Iterator<Item = Result<T>> + 'a>;

/// Merges two streams sorted by their keys (`cmp` compares two items' keys) into one, `a`'s
/// item winning where both have a key; the first error ends the stream.
fn merge_sorted<T>(
    a: impl Iterator<Item = Result<T>>,
    b: impl Iterator<Item = Result<T>>,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> impl Iterator<Item = Result<T>> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let take_a = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) => true,
            (_, Some(Err(_))) => false,
            (Some(Ok(_)), None) => true,
            (None, Some(Ok(_))) => false,
            (Some(Ok(x)), Some(Ok(y))) => {
                let order = cmp(x, y);
                if order.is_eq() {
                    b.next();
                }
                order.is_le()
            }
        };
        let item = if take_a { a.next() } else { b.next() };
        if matches!(item, Some(Err(_))) {
            failed = true;
        }
        item
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(run: &str, v: u64) -> Edit {
        Edit::Create {
            run: run.into(),
            version: VersionId(v),
            config: Default::default(),
            time: 0,
        }
    }

    #[test]
    fn a_frozen_overlay_reads_through_and_rebase_lets_its_base_go() {
        let mut s = State::default();
        s.apply(&create("a", 1)).unwrap();
        let frozen = s.freeze();
        // The frozen edits read through the new, empty overlay; later edits go over them.
        assert_eq!(s.head("a").unwrap(), Some(VersionId(1)));
        let b = create("b", 2);
        s.prepare(&b).unwrap();
        s.apply(&b).unwrap();
        let again = create("a", 3);
        s.prepare(&again).unwrap();
        assert_eq!(s.taken_name(&again), Some("a"));
        assert_eq!(s.taken_name(&create("c", 3)), None);
        // A compaction of the frozen state writes its edits only; of the whole, every layer.
        let names = |s: &State| -> Vec<String> { s.overlay_runs().map(|r| r.unwrap().0).collect() };
        assert_eq!(names(&frozen), ["a"]);
        assert_eq!(names(&s), ["a", "b"]);
        let old = s.base().clone();
        drop(frozen);
        s.rebase(Base::default());
        // Nothing keeps the old base's tables open (a compaction deletes those it replaced).
        assert_eq!(Arc::strong_count(&old), 1);
        assert_eq!(s.head("b").unwrap(), Some(VersionId(2)));
    }

    #[test]
    fn edits_that_refer_to_a_purged_or_missing_version_are_refused() {
        let mut s = State::default();
        s.apply(&create("r", 1)).unwrap();
        let rewind = |archived, version| Edit::Rewind {
            run: "r".into(),
            archived: VersionId(archived),
            version: VersionId(version),
            step: Some(0),
            config: Default::default(),
            time: 0,
            finished: true,
        };
        s.apply(&rewind(1, 2)).unwrap();
        let purge = Edit::Purge {
            version: VersionId(1),
            dropped: vec![],
            owners: vec![],
        };
        s.apply(&purge).unwrap();
        assert!(s.validate().is_ok());
        let fork = |source, version| Edit::Fork {
            run: "f".into(),
            version: VersionId(version),
            source: VersionId(source),
            step: 0,
            config: Default::default(),
            time: 0,
            finished: true,
        };
        assert!(
            s.clone().apply(&fork(1, 3)).is_err(),
            "fork of a purged version"
        );
        assert!(
            s.clone().apply(&fork(9, 3)).is_err(),
            "fork of a missing version"
        );
        assert!(s.clone().apply(&purge).is_err(), "purge twice");
        let purge_head = Edit::Purge {
            version: VersionId(2),
            dropped: vec![],
            owners: vec![],
        };
        assert!(s.clone().apply(&purge_head).is_err(), "purge of a head");
        s.apply(&fork(2, 3)).unwrap();
        assert!(s.validate().is_ok());
    }

    /// A delete names every version of its run left to purge, and frees the name.
    #[test]
    fn a_delete_names_the_whole_run_and_frees_its_name() {
        let mut s = State::default();
        s.apply(&create("r", 1)).unwrap();
        s.apply(&Edit::Rewind {
            run: "r".into(),
            archived: VersionId(1),
            version: VersionId(2),
            step: Some(0),
            config: Default::default(),
            time: 0,
            finished: true,
        })
        .unwrap();
        let delete = |purged: &[u64], head: u64| Edit::Delete {
            run: "r".into(),
            head: VersionId(head),
            purged: purged.iter().map(|&v| VersionId(v)).collect(),
            dropped: vec![],
            owners: vec![],
        };
        assert!(s.clone().apply(&delete(&[2], 2)).is_err(), "v1 left behind");
        assert!(
            s.clone().apply(&delete(&[1, 2], 1)).is_err(),
            "not the head"
        );
        assert!(
            s.clone().apply(&delete(&[2, 2, 1], 2)).is_err(),
            "named twice"
        );
        s.apply(&delete(&[2, 1], 2)).unwrap();
        assert!(s.validate().is_ok());
        assert_eq!(s.head("r").unwrap(), None);
        assert_eq!(s.runs().count(), 0);
        assert!(
            s.clone().apply(&delete(&[2, 1], 2)).is_err(),
            "deleted twice"
        );
        s.apply(&create("r", 3)).unwrap();
        assert_eq!(s.head("r").unwrap(), Some(VersionId(3)));
        assert!(s.validate().is_ok());
    }

    /// An inline segment's bytes must be what its seal says, and a table record naming an
    /// inline segment without a seal is corruption (it would be read as a head file).
    #[test]
    fn inline_segments_are_sealed_and_as_long_as_their_seal() {
        let mut s = State::default();
        s.apply(&create("r", 1)).unwrap();
        let seal = SealMeta {
            rows: 1,
            first_step: Some(0),
            last_step: Some(0),
            bytes: 3,
        };
        let inline = |bytes: &'static [u8]| Edit::Inline {
            version: VersionId(1),
            stream: Stream::History,
            segment: SegmentId(1),
            seal,
            bytes: Bytes::from_static(bytes),
        };
        assert!(
            s.clone().apply(&inline(b"ab")).is_err(),
            "shorter than its seal"
        );
        s.apply(&inline(b"abc")).unwrap();
        assert_eq!(s.inline_segment(SegmentId(1)).unwrap(), &b"abc"[..]);
        assert!(
            s.clone().apply(&inline(b"abc")).is_err(),
            "an id allocated twice"
        );
        let mut meta = (*s.meta_of(VersionId(1)).unwrap()).clone();
        assert!(meta.check((2, 2)).is_ok());
        meta.segments[0].sealed = None;
        assert!(meta.check((2, 2)).is_err(), "inline and unsealed");
    }
}
