//! `steplog._native`: the PyO3 layer under the `steplog` Python package. It converts values
//! and errors and releases the GIL around every call that does I/O or compression; the
//! W&B-shaped API (nested-dict flattening, numpy scalars, `init`, context managers) is the
//! Python package's own (`python/steplog/__init__.py`).

use std::sync::Mutex;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};
use steplog::{Batch, Error as E, ErrorKind, Query, Reference, Resume, Stream, Value};

create_exception!(steplog, Error, PyException, "Any steplog error.");
create_exception!(steplog, StepRegressionError, Error, "A step went back.");
create_exception!(steplog, LockedError, Error, "Another writer holds the run.");
create_exception!(
    steplog,
    CorruptionError,
    Error,
    "A checksum or decode failure."
);
create_exception!(
    steplog,
    NotFoundError,
    Error,
    "No such store, run, version or key (a mistyped key lists the close ones)."
);
create_exception!(steplog, RunExistsError, Error, "The run already exists.");
create_exception!(
    steplog,
    ResumeRefusedError,
    Error,
    "resume= refused the start."
);
create_exception!(
    steplog,
    InvalidInputError,
    Error,
    "Bad input (name, reference, step, value)."
);
create_exception!(
    steplog,
    StoreIOError,
    Error,
    "An I/O error (the writer is poisoned)."
);
create_exception!(
    steplog,
    WriterClosedError,
    Error,
    "The writer is finished or poisoned."
);
create_exception!(
    steplog,
    ConflictError,
    Error,
    "Another writer changed what the operation read; nothing was changed (retry)."
);

/// The Python exception for a steplog error, with the same message as the CLI: one class
/// per `ErrorKind`, matched exhaustively (a new kind does not compile until it has one).
fn err(e: E) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::StepRegression => StepRegressionError::new_err(msg),
        ErrorKind::Locked => LockedError::new_err(msg),
        ErrorKind::Corruption => CorruptionError::new_err(msg),
        ErrorKind::NotFound => NotFoundError::new_err(msg),
        ErrorKind::AlreadyExists => RunExistsError::new_err(msg),
        ErrorKind::ResumeRefused => ResumeRefusedError::new_err(msg),
        ErrorKind::Io | ErrorKind::StorePoisoned => StoreIOError::new_err(msg),
        ErrorKind::WriterClosed => WriterClosedError::new_err(msg),
        ErrorKind::Conflict => ConflictError::new_err(msg),
        ErrorKind::InvalidInput => InvalidInputError::new_err(msg),
    }
}

fn to_value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    // bool before int: Python's bool is an int.
    if v.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(v.extract()?));
    }
    if v.is_instance_of::<PyInt>() {
        return v.extract::<i64>().map(Value::I64).map_err(|_| {
            InvalidInputError::new_err(format!("'{key}': integer out of the 64-bit range"))
        });
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(Value::F64(v.extract()?));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(Value::Str(v.extract()?));
    }
    Err(InvalidInputError::new_err(format!(
        "'{key}': cannot log a value of type {} (int, float, bool or str)",
        v.get_type().name()?
    )))
}

fn to_py(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::F64(x) => PyFloat::new(py, *x).into_any().unbind(),
        Value::I64(x) => x.into_pyobject(py)?.into_any().unbind(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::Str(s) => PyString::new(py, s).into_any().unbind(),
    })
}

fn json_arg(config: Option<&str>) -> PyResult<Option<serde_json::Value>> {
    config
        .map(|c| {
            serde_json::from_str(c)
                .map_err(|e| InvalidInputError::new_err(format!("config is not JSON: {e}")))
        })
        .transpose()
}

/// A steplog store: a directory holding runs, versions and their history.
#[pyclass(module = "steplog._native", frozen)]
struct Store {
    inner: steplog::Store,
}

#[pymethods]
impl Store {
    /// Opens (creating if needed) the store in `path`. `durability` is "process" (survives
    /// a killed process) or "power" (every commit fsynced: survives power loss).
    #[new]
    #[pyo3(signature = (path, durability = "process"))]
    fn new(py: Python<'_>, path: std::path::PathBuf, durability: &str) -> PyResult<Store> {
        let d = match durability {
            "process" => steplog::Durability::Process,
            "power" => steplog::Durability::PowerLoss,
            o => {
                return Err(InvalidInputError::new_err(format!(
                    "durability '{o}': expected 'process' or 'power'"
                )))
            }
        };
        let inner = py
            .detach(|| steplog::Options::new().durability(d).open(&path))
            .map_err(err)?;
        Ok(Store { inner })
    }

    /// Starts writing a run (see `steplog.init`).
    #[pyo3(signature = (name, config = None, resume = "allow", resume_from = None, fork_from = None))]
    fn start(
        &self,
        py: Python<'_>,
        name: &str,
        config: Option<&str>,
        resume: &str,
        resume_from: Option<u64>,
        fork_from: Option<&str>,
    ) -> PyResult<Writer> {
        let mode: Resume = resume.parse().map_err(err)?;
        let mut b = self.inner.run(name).resume(mode);
        if let Some(c) = json_arg(config)? {
            b = b.config(c);
        }
        if let Some(s) = resume_from {
            b = b.resume_from(s);
        }
        if let Some(r) = fork_from {
            // W&B's `fork_from="NAME?_step=S"`: the step is the reference's.
            let r: Reference = r.parse().map_err(err)?;
            let Some(step) = r.step else {
                return Err(InvalidInputError::new_err(format!(
                    "fork_from='{r}' needs a step: NAME?_step=STEP"
                )));
            };
            b = b.fork_from(r, step);
        }
        let w = py.detach(|| b.start()).map_err(err)?;
        Ok(Writer {
            name: name.to_owned(),
            inner: Mutex::new(Some(w)),
        })
    }

    /// Rows of a run or version as a list of (step, {key: value}).
    #[pyo3(signature = (reference, keys = None, start = None, end = None))]
    fn history(
        &self,
        py: Python<'_>,
        reference: &str,
        keys: Option<Vec<String>>,
        start: Option<u64>,
        end: Option<u64>,
    ) -> PyResult<Py<PyList>> {
        let q = query(keys.clone(), start, end);
        let rows = py
            .detach(|| {
                // A mistyped key is an error naming the close ones, not empty rows.
                let keys = keys.iter().flatten().map(String::as_str);
                self.inner.check_keys(reference, Stream::History, keys)?;
                self.inner
                    .history(reference, &q)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(err)?;
        let out = PyList::empty(py);
        for r in rows {
            let d = PyDict::new(py);
            for (k, v) in &r.fields {
                d.set_item(k, to_py(py, v)?)?;
            }
            out.append((r.step, d))?;
        }
        Ok(out.unbind())
    }

    /// One metric as (steps, values) lists of the numeric values in `[start, end]`.
    #[pyo3(signature = (reference, key, start = None, end = None))]
    fn metric(
        &self,
        py: Python<'_>,
        reference: &str,
        key: &str,
        start: Option<u64>,
        end: Option<u64>,
    ) -> PyResult<(Vec<u64>, Vec<f64>)> {
        let (a, b) = (start.unwrap_or(0), end.unwrap_or(u64::MAX));
        let s = py
            .detach(|| {
                self.inner.check_keys(reference, Stream::History, [key])?;
                self.inner.metric(reference, key, a..=b)
            })
            .map_err(err)?;
        Ok((s.steps, s.values))
    }

    /// The summary: {key: {count, first, last, min, max, mean, sum, nan_count}}, plus the
    /// run, version, rows and last step.
    fn summary(&self, py: Python<'_>, reference: &str) -> PyResult<Py<PyDict>> {
        let s = py.detach(|| self.inner.summary(reference)).map_err(err)?;
        let out = PyDict::new(py);
        out.set_item("run", &s.run)?;
        out.set_item("version", s.version.to_string())?;
        out.set_item("rows", s.rows)?;
        out.set_item("last_step", s.last_step)?;
        let keys = PyDict::new(py);
        for (k, ks) in &s.keys {
            let d = PyDict::new(py);
            d.set_item("count", ks.count)?;
            d.set_item("nan_count", ks.nan_count)?;
            d.set_item("sum", ks.sum)?;
            d.set_item("mean", ks.mean())?;
            for (name, v) in [
                ("first", &ks.first),
                ("last", &ks.last),
                ("min", &ks.min),
                ("max", &ks.max),
            ] {
                match v {
                    Some((step, v)) => d.set_item(name, (step, to_py(py, v)?))?,
                    None => d.set_item(name, py.None())?,
                }
            }
            keys.set_item(k, d)?;
        }
        out.set_item("keys", keys)?;
        Ok(out.unbind())
    }

    /// Every run: [{name, head, status, last_step, rows}].
    fn runs(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let runs = py.detach(|| self.inner.runs()).map_err(err)?;
        let out = PyList::empty(py);
        for r in runs {
            let d = PyDict::new(py);
            d.set_item("name", &r.name)?;
            d.set_item("head", r.head.to_string())?;
            d.set_item("status", r.status.name())?;
            d.set_item("last_step", r.last_step)?;
            d.set_item("rows", r.rows)?;
            out.append(d)?;
        }
        Ok(out.unbind())
    }

    /// Every version: [{id, run, status, parent: (id, step) or None, restart_of: id or None
    /// (a restart: started again from nothing after that version), config (JSON text)}].
    fn versions(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let vs = py.detach(|| self.inner.versions()).map_err(err)?;
        let out = PyList::empty(py);
        for v in &vs {
            out.append(version_dict(py, v)?)?;
        }
        Ok(out.unbind())
    }

    /// The lineage tree of a run or version, flat: its versions, the root first and each
    /// after its parent, each a version dict with `children` (their ids).
    fn lineage(&self, py: Python<'_>, reference: &str) -> PyResult<Py<PyList>> {
        let tree = py.detach(|| self.inner.lineage(reference)).map_err(err)?;
        let out = PyList::empty(py);
        for (v, kids) in tree.versions.iter().zip(&tree.children) {
            let d = version_dict(py, v)?;
            let ids: Vec<String> = kids
                .iter()
                .map(|&c| tree.versions[c].id.to_string())
                .collect();
            d.set_item("children", ids)?;
            out.append(d)?;
        }
        Ok(out.unbind())
    }

    /// Rewinds `run` to `step` outside a writer: returns (archived id, new head id).
    #[pyo3(signature = (run, step, config = None))]
    fn rewind(
        &self,
        py: Python<'_>,
        run: &str,
        step: u64,
        config: Option<&str>,
    ) -> PyResult<(String, String)> {
        let mut b = self.inner.run(run).resume_from(step);
        if let Some(c) = json_arg(config)? {
            b = b.config(c);
        }
        let r = py.detach(|| b.apply()).map_err(err)?;
        let archived = r.archived.map(|v| v.to_string()).unwrap_or_default();
        Ok((archived, r.head.to_string()))
    }

    /// Forks run `name` from `source` (a run or version id) at `step`; returns its head id.
    #[pyo3(signature = (source, step, name, config = None))]
    fn fork(
        &self,
        py: Python<'_>,
        source: &str,
        step: u64,
        name: &str,
        config: Option<&str>,
    ) -> PyResult<String> {
        let mut b = self.inner.run(name).fork_from(source, step);
        if let Some(c) = json_arg(config)? {
            b = b.config(c);
        }
        let r = py.detach(|| b.apply()).map_err(err)?;
        Ok(r.head.to_string())
    }

    /// Purges an archived version (`v12`); returns the number of files deleted.
    fn purge(&self, py: Python<'_>, version: &str) -> PyResult<usize> {
        py.detach(|| {
            let v = self.inner.resolve(version)?.version;
            self.inner.purge(v)
        })
        .map_err(err)
    }

    /// Deletes a run with all its versions; returns (versions purged, files deleted).
    fn delete(&self, py: Python<'_>, run: &str) -> PyResult<(Vec<String>, usize)> {
        let d = py.detach(|| self.inner.delete(run)).map_err(err)?;
        Ok((d.versions.iter().map(|v| v.to_string()).collect(), d.files))
    }

    /// Checks every checksum; returns the problems found (empty when all is well).
    fn verify(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let report = py.detach(|| self.inner.verify()).map_err(err)?;
        Ok(report.problems.iter().map(|p| p.to_string()).collect())
    }

    /// The name of every run, in order, from the manifest's run records alone.
    fn run_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.run_names()).map_err(err)
    }

    /// Starts a bulk of new short runs, committed together (see `steplog.Bulk`).
    fn bulk(&self) -> Bulk {
        Bulk {
            inner: Mutex::new(self.inner.bulk()),
        }
    }
}

fn query(keys: Option<Vec<String>>, start: Option<u64>, end: Option<u64>) -> Query {
    let mut q = Query::new().steps(start.unwrap_or(0)..=end.unwrap_or(u64::MAX));
    if let Some(k) = keys {
        q = q.keys(k);
    }
    q
}

fn version_dict<'py>(py: Python<'py>, v: &steplog::VersionInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", v.id.to_string())?;
    d.set_item("run", &v.run)?;
    d.set_item("status", v.status.name())?;
    d.set_item("parent", v.parent.map(|p| (p.version.to_string(), p.step)))?;
    d.set_item("restart_of", v.restart_of.map(|r| r.to_string()))?;
    d.set_item("config", v.config.to_string())?;
    Ok(d)
}

/// One column of `log_columns`.
enum Col {
    F(Vec<f64>),
    I(Vec<i64>),
    B(Vec<bool>),
}

/// Little-endian 8-byte words of `bytes`, or an error naming `what`.
fn words<'a>(what: &str, bytes: &'a [u8]) -> PyResult<impl Iterator<Item = [u8; 8]> + 'a> {
    if !bytes.len().is_multiple_of(8) {
        return Err(InvalidInputError::new_err(format!(
            "{what}: {} bytes is not a whole number of 8-byte values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| <[u8; 8]>::try_from(c).unwrap_or_default()))
}

/// The steps of `log_columns`: a list of ints, or bytes of little-endian u64.
fn step_column(v: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    if let Ok(b) = v.cast::<pyo3::types::PyBytes>() {
        return Ok(words("steps", b.as_bytes())?
            .map(u64::from_le_bytes)
            .collect());
    }
    let list = v
        .cast::<PyList>()
        .map_err(|_| InvalidInputError::new_err("steps: expected a list of ints or an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        if item.is_instance_of::<PyBool>() || !item.is_instance_of::<PyInt>() {
            return Err(InvalidInputError::new_err(format!(
                "steps[{i}]: expected an int, got {}",
                item.get_type().name()?
            )));
        }
        out.push(item.extract::<u64>().map_err(|_| {
            InvalidInputError::new_err(format!("steps[{i}]: {item} is not a step (0 ..= 2^63 - 1)"))
        })?);
    }
    Ok(out)
}

/// One column of `log_columns`, checked item by item: a bool among numbers or a number
/// among bools is refused (Python's bool is an int), as is an int out of the 64-bit range.
fn column(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Col> {
    if let Ok((kind, bytes)) = v.extract::<(String, Bound<'_, pyo3::types::PyBytes>)>() {
        let bytes = bytes.as_bytes();
        let what = format!("column '{key}'");
        return match kind.as_str() {
            "f8" => Ok(Col::F(
                words(&what, bytes)?.map(f64::from_le_bytes).collect(),
            )),
            "i8" => Ok(Col::I(
                words(&what, bytes)?.map(i64::from_le_bytes).collect(),
            )),
            "b1" => Ok(Col::B(bytes.iter().map(|&b| b != 0).collect())),
            k => Err(InvalidInputError::new_err(format!(
                "{what}: unknown kind '{k}' (f8, i8 or b1)"
            ))),
        };
    }
    let list = v.cast::<PyList>().map_err(|_| {
        InvalidInputError::new_err(format!(
            "column '{key}': expected a list or an array, got {}",
            v.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let kind_of = |item: &Bound<'_, PyAny>| {
        if item.is_instance_of::<PyBool>() {
            'b'
        } else if item.is_instance_of::<PyInt>() {
            'i'
        } else if item.is_instance_of::<PyFloat>() {
            'f'
        } else {
            '?'
        }
    };
    let mut kind = None;
    for (i, item) in list.iter().enumerate() {
        let k = kind_of(&item);
        let bad = |why: &str| {
            InvalidInputError::new_err(format!(
                "column '{key}', item {i} ({item}): {why}; a column is all floats, all ints or \
                 all bools"
            ))
        };
        kind = Some(match (kind, k) {
            (_, '?') => return Err(bad(&format!("a {}", item.get_type().name()?))),
            (None, k) => k,
            (Some('b'), 'b') => 'b',
            (Some('b'), _) | (Some(_), 'b') => return Err(bad("bools and numbers mixed")),
            (Some('f'), _) | (Some(_), 'f') => 'f',
            (Some(k), _) => k,
        });
    }
    let out_of_range = |i: usize| {
        InvalidInputError::new_err(format!(
            "column '{key}', item {i}: integer out of the 64-bit range"
        ))
    };
    Ok(match kind.unwrap_or('f') {
        'b' => Col::B(list.iter().map(|x| x.extract()).collect::<PyResult<_>>()?),
        'i' => Col::I(
            list.iter()
                .enumerate()
                .map(|(i, x)| x.extract::<i64>().map_err(|_| out_of_range(i)))
                .collect::<PyResult<_>>()?,
        ),
        _ => Col::F(
            list.iter()
                .enumerate()
                .map(|(i, x)| x.extract::<f64>().map_err(|_| out_of_range(i)))
                .collect::<PyResult<_>>()?,
        ),
    })
}

/// A dict of str keys as (key, converted value) pairs, `convert` naming the key in errors.
fn dict_arg<T>(
    d: &Bound<'_, PyDict>,
    convert: impl Fn(&str, &Bound<'_, PyAny>) -> PyResult<T>,
) -> PyResult<Vec<(String, T)>> {
    let mut out = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        let key: String = k
            .extract()
            .map_err(|_| InvalidInputError::new_err("keys must be str"))?;
        let value = convert(&key, &v)?;
        out.push((key, value));
    }
    Ok(out)
}

/// A flat {key: int|float|bool|str} as a row.
fn row_arg(fields: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Value)>> {
    dict_arg(fields, to_value)
}

/// {key: column} as typed columns (see `Writer.log_columns`).
fn columns_arg(columns: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Col)>> {
    dict_arg(columns, column)
}

/// The columns as the engine's batches.
fn batch(cols: &[(String, Col)]) -> Vec<(&str, Batch<'_>)> {
    cols.iter()
        .map(|(k, c)| match c {
            Col::F(v) => (k.as_str(), Batch::F64(v)),
            Col::I(v) => (k.as_str(), Batch::I64(v)),
            Col::B(v) => (k.as_str(), Batch::Bool(v)),
        })
        .collect()
}

/// Many new short runs, committed in one manifest append; made by `Store.bulk`.
#[pyclass(module = "steplog._native", frozen)]
struct Bulk {
    inner: Mutex<steplog::Bulk>,
}

#[pymethods]
impl Bulk {
    /// A new short run named `name` (with a JSON `config`), to log into and then `add`.
    #[pyo3(signature = (name, config = None))]
    fn run(&self, py: Python<'_>, name: &str, config: Option<&str>) -> PyResult<ShortRun> {
        let config = json_arg(config)?;
        let mut run = py.detach(|| {
            self.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .run(name)
        });
        if let Some(c) = config {
            run.set_config(c);
        }
        Ok(ShortRun {
            name: name.to_owned(),
            inner: Mutex::new(Some(run)),
        })
    }

    /// Adds `run` to the bulk (its name and config checked, its rows encoded). The run is
    /// used up, added or refused.
    fn add(&self, py: Python<'_>, run: &ShortRun) -> PyResult<()> {
        let taken = py.detach(|| run.inner.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(r) = taken else {
            return Err(WriterClosedError::new_err(format!(
                "short run '{}' was already added to a bulk",
                run.name
            )));
        };
        py.detach(|| self.inner.lock().unwrap_or_else(|p| p.into_inner()).add(r))
            .map_err(err)
    }

    /// Creates every run of the bulk, finished, at once (all or none); returns their
    /// version ids in the order they were added, and empties the bulk.
    fn commit(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let versions = py
            .detach(|| {
                self.inner
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .commit()
            })
            .map_err(err)?;
        Ok(versions.iter().map(ToString::to_string).collect())
    }

    /// How many runs the bulk holds, not yet committed.
    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| self.inner.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// The bytes the bulk holds (at most 16 MiB).
    #[getter]
    fn bytes(&self, py: Python<'_>) -> usize {
        py.detach(|| self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes())
    }
}

/// One short run's rows, in memory until it is added to its bulk; made by `Bulk.run`.
#[pyclass(module = "steplog._native", frozen)]
struct ShortRun {
    name: String,
    inner: Mutex<Option<steplog::ShortRun>>,
}

impl ShortRun {
    /// Runs `f` on the short run with the GIL released (a full block is compressed); fails
    /// if it was added.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut steplog::ShortRun) -> Result<T, E> + Send,
    ) -> PyResult<T> {
        with_slot(py, &self.inner, f).map_err(|f| match f {
            Fail::Closed => WriterClosedError::new_err(format!(
                "short run '{}' was added to a bulk: log before adding it",
                self.name
            )),
            Fail::Error(e) => err(e),
        })
    }
}

#[pymethods]
impl ShortRun {
    /// The run's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The step the next `log` without a step would use.
    #[getter]
    fn next_step(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |r| Ok(r.next_step(Stream::History)))
    }

    /// Logs flat {key: int|float|bool|str} at `step` (or the next step); returns the step.
    #[pyo3(signature = (fields, step = None))]
    fn log(&self, py: Python<'_>, fields: &Bound<'_, PyDict>, step: Option<u64>) -> PyResult<u64> {
        let row = row_arg(fields)?;
        self.with(py, |r| r.log_row(Stream::History, step, row))
    }

    /// Logs whole columns, as `Writer.log_columns`.
    fn log_columns(
        &self,
        py: Python<'_>,
        steps: &Bound<'_, PyAny>,
        columns: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let (steps, cols) = (step_column(steps)?, columns_arg(columns)?);
        self.with(py, |r| r.log_columns(&steps, &batch(&cols)))
    }

    /// Whether the run was added to a bulk (no more logging).
    #[getter]
    fn added(&self, py: Python<'_>) -> bool {
        py.detach(|| self.inner.lock().map_or(true, |g| g.is_none()))
    }
}

/// A run being written; made by `Store.start`.
#[pyclass(module = "steplog._native", frozen)]
struct Writer {
    name: String,
    inner: Mutex<Option<steplog::RunWriter>>,
}

/// Why a call on a writer failed (computed without the GIL, turned into an exception with it).
enum Fail {
    Closed,
    Error(E),
}

/// Runs `f` on what `slot` holds (a writer, a short run) with the GIL released. The lock
/// is taken with the GIL released too: a thread waiting for it while holding the GIL would
/// deadlock with the thread inside, which needs the GIL back to return.
fn with_slot<W: Send, T: Send>(
    py: Python<'_>,
    slot: &Mutex<Option<W>>,
    f: impl FnOnce(&mut W) -> Result<T, E> + Send,
) -> Result<T, Fail> {
    py.detach(|| {
        let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(w) => f(w).map_err(Fail::Error),
            None => Err(Fail::Closed),
        }
    })
}

impl Writer {
    /// Runs `f` on the writer with the GIL released (`with_slot`).
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut steplog::RunWriter) -> Result<T, E> + Send,
    ) -> PyResult<T> {
        with_slot(py, &self.inner, f).map_err(|f| self.fail(f))
    }

    /// Takes the writer out (for `finish` and `abort`), with the GIL released.
    fn take(&self, py: Python<'_>) -> PyResult<steplog::RunWriter> {
        py.detach(|| self.inner.lock().unwrap_or_else(|p| p.into_inner()).take())
            .ok_or_else(|| self.fail(Fail::Closed))
    }

    fn fail(&self, f: Fail) -> PyErr {
        match f {
            Fail::Closed => WriterClosedError::new_err(format!(
                "run '{}' is finished: its writer was closed by finish() or abort()",
                self.name
            )),
            Fail::Error(e) => err(e),
        }
    }
}

#[pymethods]
impl Writer {
    /// The run's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The version being written.
    #[getter]
    fn version(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |w| Ok(w.version().to_string()))
    }

    /// The version archived by a rewind start, if any.
    #[getter]
    fn archived(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |w| Ok(w.archived().map(|v| v.to_string())))
    }

    /// The step the next `log` without a step would use.
    #[getter]
    fn next_step(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |w| Ok(w.next_step(Stream::History)))
    }

    /// Logs flat {key: int|float|bool|str} at `step` (or the next step); returns the step.
    /// With `commit`, the step is closed and written.
    #[pyo3(signature = (fields, step = None, commit = false))]
    fn log(
        &self,
        py: Python<'_>,
        fields: &Bound<'_, PyDict>,
        step: Option<u64>,
        commit: bool,
    ) -> PyResult<u64> {
        let row = row_arg(fields)?;
        self.with(py, |w| {
            let s = w.log_row(Stream::History, step, row)?;
            if commit {
                w.commit()?;
            }
            Ok(s)
        })
    }

    /// Logs whole columns: `steps` (increasing) and {key: column}, one value per step. The
    /// bulk path. Steps are a list of ints or `bytes` of little-endian u64; a column is a
    /// list of floats (ints allowed among them), of ints or of bools, or a pair
    /// `(kind, bytes)` with kind "f8", "i8" or "b1" (little-endian; what the Python package
    /// makes of a numpy array without building a list). Errors name the column and the item.
    fn log_columns(
        &self,
        py: Python<'_>,
        steps: &Bound<'_, PyAny>,
        columns: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let (steps, cols) = (step_column(steps)?, columns_arg(columns)?);
        self.with(py, |w| w.log_columns(&steps, &batch(&cols)))
    }

    /// Writes what was logged (readers see it once this returns).
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |w| w.commit())
    }

    /// Commits, seals and marks the run finished.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        let w = self.take(py)?;
        py.detach(|| w.finish()).map_err(err)
    }

    /// Commits and leaves the run `crashed` (as an exception inside `with` does).
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        let w = self.take(py)?;
        py.detach(|| w.abort()).map_err(err)
    }

    /// Whether the writer is finished (or aborted).
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.inner.lock().map_or(true, |g| g.is_none()))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Store>()?;
    m.add_class::<Writer>()?;
    m.add_class::<Bulk>()?;
    m.add_class::<ShortRun>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("StepRegressionError", py.get_type::<StepRegressionError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("CorruptionError", py.get_type::<CorruptionError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("RunExistsError", py.get_type::<RunExistsError>())?;
    m.add("ResumeRefusedError", py.get_type::<ResumeRefusedError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("StoreIOError", py.get_type::<StoreIOError>())?;
    m.add("WriterClosedError", py.get_type::<WriterClosedError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    Ok(())
}
