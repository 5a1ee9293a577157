//! References to runs and versions as users write them: a run name (its head version), a
//! version id (`v12`), and W&B's `NAME?_step=S` where a step is meant.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::types::VersionId;

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A run, meaning its head version.
    Run(String),
    /// A version, by its immutable id.
    Version(VersionId),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Run(r) => f.write_str(r),
            Target::Version(v) => write!(f, "{v}"),
        }
    }
}

/// A parsed reference: a run or version, and optionally a step (`NAME?_step=S`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The run or version.
    pub target: Target,
    /// The step after `?_step=`, if given.
    pub step: Option<u64>,
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadReference {
            reference: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (name, query) = match s.split_once('?') {
            Some((n, q)) => (n, Some(q)),
            None => (s, None),
        };
        if name.is_empty() {
            return Err(bad("the run name or version id is empty"));
        }
        let step = match query {
            None => None,
            Some(q) => {
                let value = q
                    .strip_prefix("_step=")
                    .ok_or_else(|| bad("expected NAME?_step=STEP"))?;
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(
                        "the step after '?_step=' must be a non-negative integer",
                    ));
                }
                Some(
                    value
                        .parse()
                        .map_err(|_| bad("the step does not fit in 64 bits"))?,
                )
            }
        };
        let target = match name.parse::<VersionId>() {
            Ok(v) => Target::Version(v),
            Err(_) => Target::Run(name.to_owned()),
        };
        Ok(Reference { target, step })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(s) => write!(f, "{}?_step={s}", self.target),
            None => write!(f, "{}", self.target),
        }
    }
}

impl Reference {
    /// The head of run `name`, taken as a name whatever it reads like (no run is named like
    /// a version id, `v12`: such a reference finds no run; parse the string for that).
    pub fn run(name: impl Into<String>) -> Reference {
        Reference {
            target: Target::Run(name.into()),
            step: None,
        }
    }

    /// The same run or version read only up to `step` (W&B's `NAME?_step=S`).
    #[must_use]
    pub fn at(mut self, step: u64) -> Reference {
        self.step = Some(step);
        self
    }
}

impl From<VersionId> for Reference {
    fn from(v: VersionId) -> Reference {
        Reference {
            target: Target::Version(v),
            step: None,
        }
    }
}

impl VersionId {
    /// This version read only up to `step`: `v12?_step=S`.
    pub fn at(self, step: u64) -> Reference {
        Reference::from(self).at(step)
    }
}

/// Anything that names a run or version: a string as users write references (`"train"`,
/// `"v12"`, `"train?_step=200"`), a [`VersionId`], or a [`Reference`]. Every method of
/// [`Store`](crate::Store) that reads or branches from a version takes one.
pub trait IntoReference {
    /// The reference, or [`Error::BadReference`] for a string that is not one.
    fn into_reference(self) -> Result<Reference, Error>;
}

impl IntoReference for Reference {
    fn into_reference(self) -> Result<Reference, Error> {
        Ok(self)
    }
}

impl IntoReference for &Reference {
    fn into_reference(self) -> Result<Reference, Error> {
        Ok(self.clone())
    }
}

impl IntoReference for VersionId {
    fn into_reference(self) -> Result<Reference, Error> {
        Ok(self.into())
    }
}

impl IntoReference for &VersionId {
    fn into_reference(self) -> Result<Reference, Error> {
        Ok((*self).into())
    }
}

impl IntoReference for &str {
    fn into_reference(self) -> Result<Reference, Error> {
        self.parse()
    }
}

impl IntoReference for &String {
    fn into_reference(self) -> Result<Reference, Error> {
        self.parse()
    }
}

impl IntoReference for String {
    fn into_reference(self) -> Result<Reference, Error> {
        self.parse()
    }
}

/// Checks a run name: 1 to 256 bytes of UTF-8 without control characters or `?`, and not of
/// the form of a version id (`v` and digits), so that every reference has one meaning.
pub(crate) fn validate_run_name(name: &str) -> Result<(), Error> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() || name.len() > 256 {
        return bad("a run name must be 1 to 256 bytes long");
    }
    if name.chars().any(|c| c.is_control() || c == '?') {
        return bad("a run name cannot hold control characters or '?'");
    }
    if name.parse::<VersionId>().is_ok() {
        return bad("'v' followed by digits is reserved for version ids");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_versions_and_steps() {
        let r: Reference = "train-1?_step=200".parse().unwrap();
        assert_eq!(r.target, Target::Run("train-1".into()));
        assert_eq!(r.step, Some(200));
        let r: Reference = "v7".parse().unwrap();
        assert_eq!(r.target, Target::Version(VersionId(7)));
        assert_eq!(r.step, None);
        for bad in [
            "",
            "?_step=1",
            "a?step=1",
            "a?_step=",
            "a?_step=-1",
            "a?_step=1x",
            "a?_step=99999999999999999999",
        ] {
            assert!(
                matches!(bad.parse::<Reference>(), Err(Error::BadReference { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_form_of_a_reference_is_the_same_reference() {
        let parsed: Reference = "v7?_step=3".parse().unwrap();
        assert_eq!(VersionId(7).at(3), parsed);
        assert_eq!(parsed.to_string(), "v7?_step=3");
        assert_eq!(
            Reference::run("r").at(5),
            "r?_step=5".into_reference().unwrap()
        );
        assert_eq!(VersionId(7).into_reference().unwrap().to_string(), "v7");
        for text in [
            "train",
            "v12",
            "a b?_step=0",
            "ünï?_step=18446744073709551615",
        ] {
            let r = text.into_reference().unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(r.to_string().into_reference().unwrap(), r);
        }
    }

    #[test]
    fn run_names_cannot_look_like_version_ids() {
        assert!(validate_run_name("v12").is_err());
        assert!(validate_run_name("a?b").is_err());
        assert!(validate_run_name("line\nbreak").is_err());
        assert!(validate_run_name("v12-retry").is_ok());
        assert!(validate_run_name("train/loss ünï").is_ok());
    }
}
