//! The read routes: runs, one version, its lineage, a metric's M4 series, a stream's rows
//! and the cheap state poll. Each parses its parameters (`params.rs`), calls the engine on
//! a blocking thread and answers JSON; what each returns is in docs/API.md.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Map, Value as Json_};
use steplog::{limits, Query, RunInfo, Snapshot, Status, Stream};

use crate::error::{ApiError, ApiResult};
use crate::json;
use crate::params::Params;
use crate::App;

/// Runs the engine call `f` on a blocking thread (the engine does file I/O), once one of
/// the server's engine slots is free: however many requests arrive, at most a few engine
/// calls run at once.
pub(crate) async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let _slot = app
        .engine
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("the server is stopping: {e}")))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the request's handler failed: {e}")))?
}

/// Rows of the runs table per page, at most.
pub const MAX_PAGE: u64 = 1000;
/// Metric columns (with sparklines) per runs page, at most.
pub const MAX_COLUMNS: usize = 20;
/// Points of a runs-table sparkline.
const SPARK_BUCKETS: usize = 24;
/// Pixel columns a series may ask for.
pub const MAX_WIDTH: u64 = 16_384;
/// Rows of a stream per request, at most.
pub const MAX_ROWS: u64 = 10_000;
/// References per state poll, at most.
pub const MAX_POLL: usize = 100;
/// Keys and config columns listed for a runs page's column chooser, at most.
const MAX_LISTED_KEYS: usize = 500;

/// A filter on the runs table by a metric's last value: `KEY<X`, `KEY<=X`, `KEY>X`, `KEY>=X`
/// or `KEY=X`.
struct MetricFilter {
    key: String,
    op: &'static str,
    value: f64,
}

impl MetricFilter {
    /// The operator is the last one in the text with a number after it, so a key may hold
    /// `<`, `>` or `=` itself (`a<b>3`: the key `a<b` above 3).
    fn parse(text: &str) -> ApiResult<MetricFilter> {
        let mut best: Option<MetricFilter> = None;
        for op in ["<=", ">=", "<", ">", "="] {
            let Some((key, value)) = text.rsplit_once(op) else {
                continue;
            };
            // `a<=3` splits at `=` too, leaving the key `a<`: the longer operator wins.
            let later = best
                .as_ref()
                .is_none_or(|b| key.len() > b.key.len() + b.op.len());
            if key.is_empty() || !later {
                continue;
            }
            if let Ok(value) = value.trim().parse::<f64>() {
                best = Some(MetricFilter {
                    key: key.to_owned(),
                    op,
                    value,
                });
            }
        }
        best.ok_or_else(|| {
            ApiError::bad_request(format!(
                "metric filter '{text}' is not KEY<X, KEY<=X, KEY>X, KEY>=X or KEY=X with X a \
                 number"
            ))
        })
    }

    fn keeps(&self, last: Option<f64>) -> bool {
        let Some(x) = last else { return false };
        match self.op {
            "<=" => x <= self.value,
            ">=" => x >= self.value,
            "<" => x < self.value,
            ">" => x > self.value,
            _ => x == self.value,
        }
    }
}

/// A config filter: `PATH=VALUE`, PATH with `/` between nested keys; a string value matches
/// its text, any other value its JSON text.
fn config_matches(config: &Json_, filter: &(String, String)) -> bool {
    let pointer = format!("/{}", filter.0);
    match config.pointer(&pointer) {
        Some(Json_::String(s)) => *s == filter.1,
        // Its JSON text (a number, a bool, an array), not a JSON string equal to it.
        Some(v) => serde_json::to_string(v).is_ok_and(|text| text == filter.1),
        None => false,
    }
}

/// The last numeric value of `key` in the run's head, if any.
fn last_number(summary: &steplog::Summary, key: &str) -> Option<f64> {
    summary
        .keys
        .get(key)
        .and_then(|k| k.last.as_ref())
        .and_then(|(_, v)| v.as_f64())
}

/// One run as the runs table needs it; its head's version record and summary are read
/// only when a filter, a sort or the page asks for them.
struct Row {
    info: RunInfo,
    version: Option<steplog::VersionInfo>,
    summary: Option<steplog::Summary>,
}

impl Row {
    fn version(&mut self, store: &Snapshot) -> ApiResult<&steplog::VersionInfo> {
        let v = match self.version.take() {
            Some(v) => v,
            None => store.version(self.info.head)?,
        };
        Ok(self.version.insert(v))
    }

    /// The head's summary; a damaged run's is empty (its damage is shown instead).
    fn summary(&mut self, store: &Snapshot) -> ApiResult<&steplog::Summary> {
        let s = match self.summary.take() {
            Some(s) => s,
            None => match store.summary(self.info.head) {
                Ok(s) => s,
                Err(e) if e.is_corruption() => steplog::Summary {
                    run: self.info.name.clone(),
                    version: self.info.head,
                    last_step: None,
                    rows: 0,
                    keys: BTreeMap::new(),
                },
                Err(e) => return Err(e.into()),
            },
        };
        Ok(self.summary.insert(s))
    }
}

/// `GET /api/runs`: a page of the runs table, filtered and sorted.
pub async fn runs(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<Json_>> {
    let p = Params::parse(
        q.as_deref(),
        &[
            "offset", "limit", "sort", "order", "filter", "config", "metric", "keys",
        ],
    )?;
    let offset = p.opt_u64("offset", 0, u64::MAX)?.unwrap_or(0);
    let limit = p.opt_u64("limit", 1, MAX_PAGE)?.unwrap_or(50);
    let sort = p.opt("sort")?.unwrap_or("name").to_owned();
    let desc = p.word("order", &["asc", "desc"], "asc")? == "desc";
    let name_filter = p.opt("filter")?.map(str::to_lowercase);
    let config_filters = p
        .all("config")
        .into_iter()
        .map(|c| {
            c.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("config filter '{c}' is not PATH=VALUE"))
                })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let metric_filters = p
        .all("metric")
        .into_iter()
        .map(MetricFilter::parse)
        .collect::<ApiResult<Vec<_>>>()?;
    let mut columns: Vec<String> = Vec::new();
    for k in p.all("keys") {
        if !columns.iter().any(|c| c == k) {
            columns.push(k.to_owned());
        }
    }
    if columns.len() > MAX_COLUMNS {
        return Err(ApiError::bad_request(format!(
            "{} metric columns asked for: at most {MAX_COLUMNS}",
            columns.len()
        )));
    }
    let sort_key = match sort.as_str() {
        "name" | "last_step" | "rows" | "status" | "created" => None,
        s => match s.strip_prefix("metric:") {
            Some(k) if !k.is_empty() => Some(k.to_owned()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "parameter 'sort' is '{s}': it takes name, last_step, rows, status, created \
                     or metric:KEY"
                )))
            }
        },
    };
    let store = app.store.clone();
    blocking(&app, move || {
        // One snapshot for the page: its listing, summaries and sparklines agree, and the
        // summaries a sort by metric reads (one per run) pay no manifest refresh each.
        let store = store.snapshot()?;
        let mut rows: Vec<Row> = store
            .runs()?
            .into_iter()
            .filter(|r| {
                name_filter
                    .as_ref()
                    .is_none_or(|f| r.name.to_lowercase().contains(f))
            })
            .map(|info| Row {
                info,
                version: None,
                summary: None,
            })
            .collect();
        if !config_filters.is_empty() {
            let mut kept = Vec::with_capacity(rows.len());
            for mut r in rows {
                let c = &r.version(&store)?.config;
                if config_filters.iter().all(|f| config_matches(c, f)) {
                    kept.push(r);
                }
            }
            rows = kept;
        }
        if !metric_filters.is_empty() {
            let mut kept = Vec::with_capacity(rows.len());
            for mut r in rows {
                let s = r.summary(&store)?;
                if metric_filters
                    .iter()
                    .all(|f| f.keeps(last_number(s, &f.key)))
                {
                    kept.push(r);
                }
            }
            rows = kept;
        }
        let mut rows = sort_rows(&store, rows, &sort, sort_key.as_deref(), desc)?;
        let total = rows.len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(total);
        let end = start.saturating_add(limit as usize).min(total);
        let mut keys = BTreeSet::new();
        let mut config_keys = BTreeSet::new();
        let mut page = Vec::with_capacity(end - start);
        for r in &mut rows[start..end] {
            let version = r.version(&store)?.clone();
            if let Some(c) = version.config.as_object() {
                config_keys.extend(c.keys().filter(|k| !k.starts_with('_')).cloned());
            }
            let head = r.info.head;
            let mut damage = r.info.damage.clone();
            let summary = r.summary(&store)?;
            keys.extend(summary.keys.keys().cloned());
            let mut metrics = Map::new();
            for k in &columns {
                let Some(ks) = summary.keys.get(k) else {
                    continue;
                };
                let spark = match sparkline(&store, head, k) {
                    Ok(spark) => spark,
                    // A damaged block shows as the run's damage, not as a failed page.
                    Err(e) if e.is_corruption() => {
                        damage.get_or_insert_with(|| e.to_string());
                        Vec::new()
                    }
                    Err(e) => return Err(e.into()),
                };
                let (last_step, last) = ks
                    .last
                    .as_ref()
                    .map_or((Json_::Null, Json_::Null), |(s, v)| {
                        ((*s).into(), json::value(v))
                    });
                metrics.insert(
                    k.clone(),
                    json!({ "last": last, "last_step": last_step, "spark": spark }),
                );
            }
            page.push(json!({
                "name": r.info.name,
                "head": r.info.head.to_string(),
                "status": r.info.status.name(),
                "last_step": r.info.last_step,
                "rows": r.info.rows,
                "damage": damage,
                "created": version.created,
                "how": version.how_made(),
                "config": version.config,
                "metrics": metrics,
            }));
        }
        Ok(Json(json!({
            "total": total,
            "offset": start,
            "runs": page,
            "keys": keys.into_iter().take(MAX_LISTED_KEYS).collect::<Vec<_>>(),
            "config_keys": config_keys.into_iter().take(MAX_LISTED_KEYS).collect::<Vec<_>>(),
        })))
    })
    .await
}

fn status_rank(s: Status) -> u8 {
    match s {
        Status::Running => 0,
        Status::Crashed => 1,
        Status::Finished => 2,
        Status::Archived => 3,
        Status::Purged => 4,
    }
}

/// Sorts the table; runs without the metric last, and ties by name from A to Z, whatever
/// the order.
fn sort_rows(
    store: &Snapshot,
    rows: Vec<Row>,
    sort: &str,
    metric: Option<&str>,
    desc: bool,
) -> ApiResult<Vec<Row>> {
    use std::cmp::Ordering;
    let flip = |o: Ordering| if desc { o.reverse() } else { o };
    if let Some(k) = metric {
        let mut keyed = Vec::with_capacity(rows.len());
        for mut r in rows {
            keyed.push((last_number(r.summary(store)?, k), r));
        }
        keyed.sort_by(|(x, a), (y, b)| {
            match (x, y) {
                (Some(x), Some(y)) => flip(x.total_cmp(y)),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
            .then_with(|| a.info.name.cmp(&b.info.name))
        });
        return Ok(keyed.into_iter().map(|(_, r)| r).collect());
    }
    let mut rows = rows;
    if sort == "created" {
        for r in rows.iter_mut() {
            r.version(store)?;
        }
    }
    rows.sort_by(|a, b| {
        let o = match sort {
            "last_step" => a.info.last_step.cmp(&b.info.last_step),
            "rows" => a.info.rows.cmp(&b.info.rows),
            "status" => status_rank(a.info.status).cmp(&status_rank(b.info.status)),
            "created" => a
                .version
                .as_ref()
                .map(|v| v.created)
                .cmp(&b.version.as_ref().map(|v| v.created)),
            _ => Ordering::Equal,
        };
        flip(o).then_with(|| a.info.name.cmp(&b.info.name))
    });
    Ok(rows)
}

/// A sparkline: the last value of each of a few buckets over the whole run.
fn sparkline(store: &Snapshot, head: steplog::VersionId, key: &str) -> steplog::Result<Vec<Json_>> {
    Ok(
        match store.downsample_snapped(head, key, .., SPARK_BUCKETS)? {
            Some(d) => d
                .buckets
                .iter()
                .map(|b| b.map_or(Json_::Null, |b| json::point(b.last.1)))
                .collect(),
            None => Vec::new(),
        },
    )
}

/// `GET /api/version?ref=`: a version's record, summary and streams.
pub async fn version(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<Json_>> {
    let p = Params::parse(q.as_deref(), &["ref"])?;
    let reference = p.req("ref")?.to_owned();
    let store = app.store.clone();
    blocking(&app, move || {
        let resolved = store.resolve(reference.as_str())?;
        let info = store.version(reference.as_str())?;
        let summary = store.summary(reference.as_str())?;
        let mut streams = vec![Stream::History.name()];
        for s in [Stream::System, Stream::Console] {
            let q = Query::new().stream(s);
            if store
                .history(reference.as_str(), &q)?
                .next()
                .transpose()?
                .is_some()
            {
                streams.push(s.name());
            }
        }
        let mut v = json::version(&info);
        v["step"] = resolved.step.into();
        v["summary"] = json::summary(&summary);
        v["streams"] = streams.into();
        Ok(Json(v))
    })
    .await
}

/// `GET /api/lineage?ref=`: the version's whole lineage tree, depth first.
pub async fn lineage(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<Json_>> {
    let p = Params::parse(q.as_deref(), &["ref"])?;
    let reference = p.req("ref")?.to_owned();
    let store = app.store.clone();
    blocking(&app, move || {
        let focus = store.resolve(reference.as_str())?.version;
        let tree = store.lineage(reference.as_str())?;
        let ids: Vec<_> = tree.versions.iter().map(|v| v.id).collect();
        let counts = store.rows_of(&ids)?;
        let mut out = Vec::with_capacity(ids.len());
        for visit in tree.depth_first() {
            let v = &tree.versions[visit.index];
            let mut j = json::version(v);
            j["depth"] = visit.depth.into();
            j["children"] = tree.children[visit.index]
                .iter()
                .map(|&c| Json_::from(tree.versions[c].id.to_string()))
                .collect::<Vec<_>>()
                .into();
            match &counts[visit.index] {
                Ok(c) => {
                    j["rows"] = c.rows.into();
                    j["last_step"] = c.last_step.into();
                }
                Err(e) => j["damage"] = e.to_string().into(),
            }
            out.push(j);
        }
        Ok(Json(json!({ "focus": focus.to_string(), "versions": out })))
    })
    .await
}

/// `GET /api/series?ref=&key=&from=&to=&width=`: exact M4 of one metric over a step range.
pub async fn series(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<Json_>> {
    let p = Params::parse(q.as_deref(), &["ref", "key", "from", "to", "width"])?;
    let reference = p.req("ref")?.to_owned();
    let key = p.req("key")?.to_owned();
    let from = p.opt_u64("from", 0, limits::MAX_STEP)?.unwrap_or(0);
    let to = p
        .opt_u64("to", 0, limits::MAX_STEP)?
        .unwrap_or(limits::MAX_STEP);
    if from > to {
        return Err(ApiError::bad_request(format!(
            "parameter 'from' ({from}) is after 'to' ({to})"
        )));
    }
    let width = p.opt_u64("width", 1, MAX_WIDTH)?.unwrap_or(1000) as usize;
    let store = app.store.clone();
    blocking(&app, move || {
        let version = store.resolve(reference.as_str())?.version;
        // The reference, not its version: `NAME?_step=S` is read up to S.
        let d = store.downsample(reference.as_str(), &key, from..=to, width)?;
        let Some(d) = d else {
            // No numeric value in the range: a key the version never had is an error.
            store.check_keys(reference.as_str(), steplog::Stream::History, [key.as_str()])?;
            return Ok(Json(json!({
                "version": version.to_string(), "key": key, "from": null, "to": null,
                "steps": [], "values": [],
            })));
        };
        let (mut steps, mut values) = (Vec::new(), Vec::new());
        for b in d.buckets.iter().flatten() {
            for (s, v) in b.points() {
                steps.push(Json_::from(s));
                values.push(json::point(v));
            }
        }
        Ok(Json(json!({
            "version": version.to_string(), "key": key, "from": d.from, "to": d.to,
            "steps": steps, "values": values,
        })))
    })
    .await
}

/// `GET /api/rows?ref=&stream=&from=&to=&skip=&limit=`: a page of a stream's rows.
pub async fn rows(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<Json_>> {
    let p = Params::parse(
        q.as_deref(),
        &["ref", "stream", "from", "to", "skip", "limit"],
    )?;
    let reference = p.req("ref")?.to_owned();
    let stream = match p.word("stream", &["history", "system", "console"], "console")? {
        "history" => Stream::History,
        "system" => Stream::System,
        _ => Stream::Console,
    };
    let from = p.opt_u64("from", 0, limits::MAX_STEP)?.unwrap_or(0);
    let to = p
        .opt_u64("to", 0, limits::MAX_STEP)?
        .unwrap_or(limits::MAX_STEP);
    let skip = p.opt_u64("skip", 0, u64::MAX)?.unwrap_or(0);
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    let limit = p.opt_u64("limit", 1, MAX_ROWS)?.unwrap_or(500) as usize;
    let store = app.store.clone();
    blocking(&app, move || {
        let q = Query::new().stream(stream).steps(from..=to);
        let mut page = Vec::with_capacity(limit.min(1024));
        // `next`: where the following page starts, as a step and the rows of that step
        // already returned (console rows may share a step).
        let mut next = Json_::Null;
        let mut at_step = (u64::MAX, 0usize);
        for (i, row) in store.history(reference.as_str(), &q)?.enumerate() {
            let row = row?;
            if row.step == at_step.0 {
                at_step.1 += 1;
            } else {
                at_step = (row.step, 1);
            }
            if i < skip {
                continue;
            }
            if page.len() == limit {
                next = json!({ "from": row.step, "skip": at_step.1 - 1 });
                break;
            }
            page.push(json::row(&row));
        }
        Ok(Json(
            json!({ "stream": stream.name(), "rows": page, "next": next }),
        ))
    })
    .await
}

/// `GET /api/state?ref=...` (repeatable): each reference's version, status, rows and last
/// step; the page polls it to follow live runs, at the cost of one row count per reference.
pub async fn state(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<Json_>> {
    let p = Params::parse(q.as_deref(), &["ref"])?;
    let refs: Vec<String> = p.all("ref").into_iter().map(str::to_owned).collect();
    if refs.is_empty() || refs.len() > MAX_POLL {
        return Err(ApiError::bad_request(format!(
            "give 1 to {MAX_POLL} 'ref' parameters (got {})",
            refs.len()
        )));
    }
    let store = app.store.clone();
    blocking(&app, move || {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let one = (|| -> steplog::Result<Json_> {
                let v = store.version(r.as_str())?;
                let c = store.rows(r.as_str())?;
                Ok(json!({
                    "ref": r, "version": v.id.to_string(), "status": v.status.name(),
                    "rows": c.rows, "last_step": c.last_step,
                }))
            })();
            out.push(one.unwrap_or_else(|e| json!({ "ref": r, "error": e.to_string() })));
        }
        Ok(Json(json!({ "states": out })))
    })
    .await
}
